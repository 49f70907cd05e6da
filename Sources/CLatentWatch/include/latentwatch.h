/*
 * latentwatch.h: the C interface of LatentWatch, runtime uncertainty monitoring for neural networks.
 *
 * Fit densities on a layer's activations, store them as model files, score inputs for epistemic uncertainty
 * (surprise, -log p(z)) and aleatoric uncertainty (entropy of p(y | z)) as calibrated p-values, and raise
 * alerts on streams of inputs. This header is the documentation of the C interface; Docs/CAPI.md shows it in
 * use and Docs/Statistics.md states what the scores and alerts mean.
 *
 * Library: liblatentwatch.so. It carries the Swift runtime (no Swift toolchain needed on the host) and exports
 * only the lw_ functions below. It needs glibc 2.35 or later, libstdc++ of GCC 12 or later, libopenblas,
 * liblapacke, libzstd and zlib (Debian 12 and Ubuntu 22.04 or later have them).
 *
 * Conventions
 * - Every function that can fail returns an int status: LW_OK (0) or one of the LW_ERR_ codes below. After a
 *   failure, lw_last_error() on the same thread says what went wrong, with which input, and how to remedy it.
 * - Nothing traps on bad input. Null pointers, wrong lengths, NaN or infinite values, closed or foreign
 *   handles and structs whose struct_size is too small are refused with a status; the handle stays usable.
 * - Handles (lw_model, lw_monitor, lw_statistics) are opaque. Create and free them in pairs. A freed handle is refused
 *   (LW_ERR_INVALID_HANDLE) by later calls. Freeing a handle while another thread uses it is safe: the object
 *   lives until that call returns.
 * - Structs the library fills or reads start with uint32_t struct_size, which the caller sets to
 *   sizeof(the struct) as compiled (the *_init functions do it). Later versions only append fields, so a
 *   program compiled against this header keeps working with later libraries: the library reads and writes at
 *   most struct_size bytes, and a struct it filled says in struct_size how many bytes it wrote.
 * - Buffers are aligned for their element type (float: 4 bytes, binary16: 2, structs: 8); a misaligned one is
 *   refused with LW_ERR_INVALID_ARGUMENT.
 * - Strings are UTF-8 and NUL-terminated. Strings the library returns are owned by the library and stay valid
 *   as the function says.
 * - Thread safety: every function may be called from any thread. Models and monitors may be used by many
 *   threads at once.
 */
#ifndef LATENTWATCH_H
#define LATENTWATCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes. lw_abi_version() returns the library's; a library accepts programs
 * compiled against its own ABI version or an earlier one. Version 2 added the lw_statistics functions and
 * lw_monitor_replace_models (and lw_monitor_stats.replacements). Version 3 added sharded mixtures: mixture
 * statistics, the lw_mixture functions, and lw_statistics_info's fields from kind on. Version 4 added jointly
 * calibrated fusion: lw_calibrate_jointly, LW_FUSION_AUTOMATIC (the new default) and LW_FUSION_CALIBRATED, and
 * lw_model_info.joint_count. Version 5 added regression models: lw_activations.targets, lw_fit_config.target_bins
 * (which was reserved), lw_statistics_gather_targets, the prediction fields at the end of lw_scores,
 * lw_score_columns, lw_model_info and
 * lw_assessment, with lw_assessment's prediction interval at lw_monitor_config.interval_level, and
 * lw_model_prediction_interval; and the host's predictions: lw_calibrate_disagreement, LW_OUTPUTS_PREDICTION,
 * lw_monitor_config.disagreement_alpha, lw_model_info.disagreement_count, lw_assessment's host-prediction fields
 * and LW_ALERT_DISAGREEMENT; and the neighbour index: lw_fit_config.neighbour_rows, _cells, _probes and
 * neighbour_index (LW_NEIGHBOURS_*),
 * lw_scores.neighbour_distance and epistemic_p_value (and their lw_score_columns), lw_model_info.neighbour_count. */
#define LW_ABI_VERSION 5

/* ---------------------------------------------------------------------------------------------------------------
 * Status codes and errors
 * ------------------------------------------------------------------------------------------------------------- */

#define LW_OK 0
/* A null pointer, a zero or mismatched length, a struct_size too small, an unknown enum value. */
#define LW_ERR_INVALID_ARGUMENT 1
/* A handle that is null, was freed, is of another type, or never came from this library. */
#define LW_ERR_INVALID_HANDLE 2
/* A file could not be opened, read or written. */
#define LW_ERR_IO 3
/* Bytes that are not a valid model file: truncated, damaged (checksum), implausible sizes, bad metadata. */
#define LW_ERR_MALFORMED_FILE 4
/* A model file of a newer format version, or needing a feature (a density family) this library lacks. */
#define LW_ERR_UNSUPPORTED 5
/* An activation or output buffer of the wrong length for the model or monitor. */
#define LW_ERR_SHAPE_MISMATCH 6
/* An activation or a classifier output holding NaN or infinity. */
#define LW_ERR_NON_FINITE 7
/* The monitor's background queue is full and its overflow policy is LW_OVERFLOW_REJECT. */
#define LW_ERR_QUEUE_FULL 8
/* The monitor has been closed or shut down. */
#define LW_ERR_SHUT_DOWN 9
/* A configuration the library cannot use: unknown family, alpha outside (0, 1), no layers, too many layers. */
#define LW_ERR_INVALID_CONFIGURATION 10
/* Fitting failed: too little data, a class with too few rows, a covariance that cannot be factorised. */
#define LW_ERR_FIT_FAILED 11
/* An output buffer is too small; the call says how large it must be. */
#define LW_ERR_BUFFER_TOO_SMALL 12
/* The call needs a monitor in another mode (submit on an inline monitor), or was made from an alert callback
 * where it would deadlock (closing or flushing the monitor that called it). */
#define LW_ERR_WRONG_STATE 13
/* An internal error; please report it with lw_last_error()'s text. */
#define LW_ERR_INTERNAL 99

/* The ABI version of the loaded library (compare with LW_ABI_VERSION). */
uint32_t lw_abi_version(void);

/* The library version, for example "0.7.0". Static storage. */
const char *lw_version(void);

/* A short name for a status code ("LW_ERR_SHAPE_MISMATCH"); "LW_ERR_UNKNOWN" for codes this version does not
 * know. Static storage. */
const char *lw_status_name(int status);

/* The message of the last failed call on this thread: what went wrong, with which input, and how to remedy it.
 * "" when the last call on this thread succeeded. Valid until the next lw_ call on this thread. */
const char *lw_last_error(void);

/* The status of the last lw_ call on this thread. */
int lw_last_status(void);

/* ---------------------------------------------------------------------------------------------------------------
 * Element types
 * ------------------------------------------------------------------------------------------------------------- */

#define LW_DTYPE_FLOAT32 1 /* IEEE binary32, host byte order */
#define LW_DTYPE_FLOAT16 2 /* IEEE binary16, host byte order */

/* ---------------------------------------------------------------------------------------------------------------
 * Models: a fitted density of one layer's activations
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct lw_model lw_model;

/* Reads a model file (.lwm). Every size and checksum is verified before anything is used.
 * On success *out is a new handle; free it with lw_model_free. */
int lw_model_load(const char *path, lw_model **out);

/* The same from bytes in memory (length bytes at bytes; the bytes are not kept). */
int lw_model_load_bytes(const void *bytes, size_t length, lw_model **out);

/* Frees a model. Monitors created from it keep their own reference and are unaffected. Null is accepted. */
int lw_model_free(lw_model *model);

#define LW_MAX_RANK 8

/* What a model describes. Strings stay valid until the model is freed. */
typedef struct lw_model_info {
    uint32_t struct_size;
    uint32_t input_rank;              /* entries used in input_shape (at most LW_MAX_RANK; input_count is exact) */
    int64_t input_shape[LW_MAX_RANK]; /* the shape of one activation, as fitted (for example 512, or 64,7,7) */
    uint64_t input_count;             /* elements of one activation: the product of input_shape */
    uint64_t latent_dimension;        /* dimension after pooling and projection */
    uint64_t component_count;         /* classes or mixture components */
    uint64_t calibration_count;       /* held-out scores behind the p-values */
    uint64_t fit_samples;             /* rows the density was fitted on */
    uint32_t fingerprint;             /* CRC-32 of the model file's bytes; valid when has_fingerprint is 1 */
    uint32_t has_fingerprint;         /* 0 for a model fitted in this process and not read back */
    int32_t precision;                /* LW_DTYPE_FLOAT32 or LW_DTYPE_FLOAT16: how its parameters are held */
    uint32_t has_class_labels;        /* 1 for class-conditional families (gda, tied); 0 for mixtures and regression */
    const char *layer;                /* layer name stored in the file */
    const char *family;               /* "gda", "tied", "gmm-full", "gmm-diag" */
    const char *fit_notes;            /* what the fit chose (shrinkage, components, ...) */
    double posterior_temperature;     /* the calibrated class posterior's temperature (Docs/Statistics.md); 0:
                                         Bayes' rule on the density (mixtures, fits without calibration labels).
                                         A struct_size that ends at fit_notes is filled up to there */
    uint64_t joint_count;             /* inputs of the joint calibration the model carries (lw_calibrate_jointly);
                                         0: none. A struct_size that ends at posterior_temperature is filled up
                                         to there */
    uint64_t target_bins;             /* a regression model's target bins (families "regression" and
                                         "regression-tied"); 0 for classifiers and mixtures. A struct_size that
                                         ends at joint_count is filled up to there */
    uint64_t interval_count;          /* calibration inputs behind its prediction interval; 0: none */
    uint64_t disagreement_count;      /* calibration inputs behind the p-value of its disagreement with the
                                         host's prediction (lw_calibrate_disagreement); 0: none. A struct_size
                                         that ends at interval_count is filled up to there */
    uint64_t neighbour_count;         /* rows in the model's neighbour index; 0: none. A struct_size that ends at
                                         disagreement_count is filled up to there */
} lw_model_info;

/* Fills *info (set info->struct_size first). */
int lw_model_get_info(const lw_model *model, lw_model_info *info);

/* Copies the class labels (component order) into labels[0 .. capacity). *count receives the number of labels
 * (0 for mixtures). With labels NULL or capacity too small, only *count is set and the call returns
 * LW_ERR_BUFFER_TOO_SMALL (or LW_OK when there are no labels). */
int lw_model_class_labels(const lw_model *model, int64_t *labels, size_t capacity, size_t *count);

/* Scores of one activation. */
typedef struct lw_scores {
    uint32_t struct_size;
    int32_t reserved;
    double surprise;             /* -log p(z): epistemic */
    double surprise_p_value;     /* conformal p-value of the surprise; NaN when the model has no calibration */
    double entropy;              /* entropy of p(y | z), nats: aleatoric */
    double entropy_p_value;      /* conformal p-value of the entropy; NaN when not calibrated */
    double log_density;          /* log p(z) */
    double max_posterior;        /* max_k p(k | z) */
    double mahalanobis;          /* squared Mahalanobis distance to the nearest component */
    double relative_mahalanobis; /* mahalanobis minus the background Gaussian's */
    int64_t predicted_component; /* argmax_k p(k | z) (for a regression model, the most probable target bin) */
    int64_t predicted_label;     /* its class label; -1 for mixtures and regression models */
    /* Regression models only (NaN otherwise; a struct_size that ends at predicted_label is filled up to there): */
    double prediction;           /* the predictive distribution's mean of the target */
    double predictive_spread;    /* its standard deviation: aleatoric */
    double spread_p_value;       /* conformal p-value of the spread; NaN when not calibrated */
    /* A struct_size that ends at spread_p_value is filled up to there: */
    double neighbour_distance;   /* distance to the nearest row of the model's neighbour index; NaN without one */
    double epistemic_p_value;    /* the p-value the monitor alarms on: surprise_p_value, or with a neighbour
                                    index the conformal p-value of the surprise and neighbour_distance combined */
} lw_scores;

/* Scores one raw activation of length input_count (float32). Allocates nothing in steady state (one scoring
 * workspace is kept per thread and model). */
int lw_model_score(const lw_model *model, const float *activation, size_t length, lw_scores *out);

/* Batch scores written column by column: each pointer is NULL (not wanted) or holds count entries. */
typedef struct lw_score_columns {
    uint32_t struct_size;
    int32_t reserved;
    double *surprise;
    double *surprise_p_value;
    double *entropy;
    double *entropy_p_value;
    double *log_density;
    double *max_posterior;
    double *mahalanobis;
    double *relative_mahalanobis;
    int64_t *predicted_label;
    /* Per row: LW_OK, or the status that row was refused with (NaN/Inf); its other columns are then NaN
     * (predicted_label -1). A row's failure does not affect the others. */
    int32_t *status;
    /* Regression models (NaN for others); a struct_size that ends at status leaves them out. */
    double *prediction;
    double *predictive_spread;
    double *spread_p_value;
    /* lw_scores' last two fields; a struct_size that ends at spread_p_value leaves them out. */
    double *neighbour_distance;
    double *epistemic_p_value;
} lw_score_columns;

/* Scores count activations stored back to back (count * input_count floats, length elements). Large batches
 * use BLAS. Returns LW_OK when the call was valid, even if some rows were refused (see columns->status). */
int lw_model_score_batch(
    const lw_model *model, const float *activations, size_t length, size_t count, lw_score_columns *columns
);

/* A regression model's conformal prediction interval at level (0 < level < 1) around a prediction and spread from
 * lw_scores: prediction -/+ q * spread (Docs/Statistics.md). *low and *high are -inf and +inf when the calibration
 * holds too few inputs for the level. LW_ERR_INVALID_ARGUMENT for a level outside (0, 1), a non-finite prediction
 * or spread, or a model without an interval calibration (classifiers, mixtures, fits without calibration
 * targets). */
int lw_model_prediction_interval(
    const lw_model *model, double prediction, double spread, double level, double *low, double *high
);

/* ---------------------------------------------------------------------------------------------------------------
 * Fitting and writing models
 * ------------------------------------------------------------------------------------------------------------- */

#define LW_POOL_FLATTEN 0        /* use the activation as it is */
#define LW_POOL_GLOBAL_AVERAGE 1 /* (C, H, W) -> (C): mean over the spatial axes */
#define LW_POOL_MEAN_TOKENS 2    /* (T, D) -> (D): mean over tokens */

typedef struct lw_fit_config {
    uint32_t struct_size;
    int32_t pooling;              /* LW_POOL_*; default LW_POOL_FLATTEN */
    const char *family;           /* "gda" (default), "tied", "gmm-full", "gmm-diag", "regression",
                                     "regression-tied"; gda and tied need labels, the regression families
                                     targets */
    const char *layer_name;       /* stored in the model file; default "layer" */
    int32_t l2_normalize;         /* 1 (default) or 0 */
    int32_t precision;            /* LW_DTYPE_FLOAT32 (default) or LW_DTYPE_FLOAT16 (factors and means of gda,
                                     tied, gmm-full and the regression families; gmm-diag parameters stay
                                     float32) */
    uint32_t pca_components;      /* project onto this many principal components; 0 (default): no projection */
    double pca_variance_fraction; /* or keep this fraction of the variance (0 < f <= 1); 0 (default): off */
    double calibration_fraction;  /* held out for calibration when no calibration rows are given; default 0.2 */
    uint64_t split_seed;          /* seed of that split; default 0 */
    uint32_t mixture_components;  /* gmm-*: components; default 8 */
    uint32_t fit_background;      /* the background Gaussian behind relative_mahalanobis; default 1 */
    uint64_t mixture_seed;        /* gmm-*: seed of the initialisation; default 0 */
    int32_t calibrate_posterior;  /* 1 (default): calibrate p(y | z) on the labelled calibration rows (gda, tied)
                                     or the posterior over target bins on the calibration rows' targets
                                     (regression families); 0: Bayes' rule on the density. A struct_size that ends at mixture_seed
                                     gives the default */
    uint32_t target_bins;         /* regression families: quantile bins of the targets; 0 (default): 10 */
    uint64_t neighbour_rows;      /* the neighbour index keeps at most this many fitting rows (a seeded uniform
                                     sample, stored as one-byte codes, at most 16 MiB of them): its nearest-row
                                     distance is combined with the surprise into lw_scores.epistemic_p_value
                                     (Docs/Statistics.md); needs calibration rows. 0 (default): 32,768; at most
                                     1,048,576 */
    uint32_t neighbour_cells;     /* k-means cells of that index; 0 (default): the square root of the rows kept; at
                                     most 4,096 */
    uint32_t neighbour_probes;    /* cells searched per input; 0 (default): 2; at most 4,096 */
    int32_t neighbour_index;      /* LW_NEIGHBOURS_* below; default LW_NEIGHBOURS_AUTOMATIC. A struct_size that ends
                                     at target_bins or neighbour_probes gives the defaults */
} lw_fit_config;

#define LW_NEIGHBOURS_AUTOMATIC 0 /* keep a neighbour index where the fit can and it pays; where it cannot
                                     (statistics without a sample, a sharded mixture, a latent dimension beyond
                                     32,768) or the model is calibrated on fewer than 1,000 rows (too few to resolve
                                     the combined p-value's small values) the model has none and its notes say why */
#define LW_NEIGHBOURS_OFF 1       /* no neighbour index */
#define LW_NEIGHBOURS_REQUIRED 2  /* keep one or fail (lw_last_error says why) */

/* Sets struct_size and the defaults above, writing at most size bytes (sizeof *config as the caller compiled it;
 * the macro below passes it). */
void lw_fit_config_init_sized(lw_fit_config *config, size_t size);

/* The same for a struct that ends at mixture_seed (ABI version 1's first header): writes those bytes only. */
void lw_fit_config_init(lw_fit_config *config);
#define lw_fit_config_init(config) lw_fit_config_init_sized((config), sizeof *(config))

/* Activations in memory: count rows of the shape given, float32, back to back. */
typedef struct lw_activations {
    uint32_t struct_size;
    uint32_t rank;                  /* entries used in shape (1 to LW_MAX_RANK) */
    int64_t shape[LW_MAX_RANK];     /* the shape of one row */
    const float *values;            /* count * product(shape) floats */
    size_t length;                  /* elements at values */
    size_t count;                   /* rows */
    const int64_t *labels;          /* count class labels, or NULL (mixtures need none) */
    const double *targets;          /* count finite regression targets, or NULL (the regression families need
                                       them for training rows; for calibration rows they give the calibrated
                                       predictive distribution and interval). A struct_size that ends at labels
                                       has none */
} lw_activations;

/* Sets struct_size and zeroes the rest. */
void lw_activations_init(lw_activations *activations);

/* Fits a model on train. When calibration is NULL, config->calibration_fraction of train is held out (by a
 * seeded hash of the row index) and never used for fitting; otherwise the p-values are calibrated on
 * calibration's rows (same shape; labels optional). The data are read during the call only. On success *out
 * is a new model; free it with lw_model_free. */
int lw_fit(
    const lw_activations *train, const lw_activations *calibration, const lw_fit_config *config, lw_model **out
);

/* Writes a model file atomically (a temporary file renamed into place). precision: 0 to keep the model's,
 * or LW_DTYPE_FLOAT16 to store means and factors at half the size (gda, tied, gmm-full; gmm-diag models are
 * small and stay float32); compression_level: zstd level, 0 for the
 * default (9). */
int lw_model_write(const lw_model *model, const char *path, int32_t precision, int32_t compression_level);

/* The model file's bytes in memory: writes them to buffer when capacity suffices and sets *length to their
 * size either way (call with buffer NULL to learn it; LW_ERR_BUFFER_TOO_SMALL when capacity is short). */
int lw_model_encode(
    const lw_model *model, int32_t precision, int32_t compression_level, void *buffer, size_t capacity,
    size_t *length
);

/* How a joint calibration combines the layers' p-values: Docs/Statistics.md, "Jointly calibrated fusion". */
#define LW_JOINT_CAUCHY 0 /* mean of tan((1/2 - p) pi): the default */
#define LW_JOINT_FISHER 1 /* -sum of log p */

/* Calibrates the fused p-value of count (2 to LW_MAX_LAYERS) models fitted on the same inputs' activations of
 * different layers. calibration[i] holds model i's calibration rows, row r being the same input on every layer:
 * the calibration rows its fit was given, or, when the fits carved their calibration rows off their training
 * rows, those training rows with carved_by pointing to the fits' configuration (its split_seed and
 * calibration_fraction pick the same rows); carved_by is NULL otherwise. Each layer's scores are checked against
 * its model's calibration (LW_ERR_INVALID_CONFIGURATION for other rows). On success out[i] is a new model, model i
 * carrying the joint calibration (free each with lw_model_free; write it with lw_model_write); the models given
 * are unchanged. A monitor of exactly these layers then fuses their p-values with it (LW_FUSION_AUTOMATIC,
 * LW_FUSION_CALIBRATED). */
int lw_calibrate_jointly(
    const lw_model *const *models, const lw_activations *const *calibration, size_t count,
    const lw_fit_config *carved_by, int32_t statistic, lw_model **out
);

/* Calibrates the distance between a regression host's own prediction and the model's (Docs/Statistics.md,
 * "Host-prediction disagreement"): model is a regression model (families regression, regression-tied),
 * calibration holds held-out in-distribution rows (best the rows it was calibrated on; rows holding NaN are
 * skipped, as its other calibrations skip them) and host_predictions the host's prediction of each of its count
 * rows, in the targets' units. On success *out is a new model carrying the calibration (free it with
 * lw_model_free; write it with lw_model_write); the model given is unchanged. A monitor of it configured with
 * LW_OUTPUTS_PREDICTION then reports each input's disagreement and its p-value, and raises
 * LW_ALERT_DISAGREEMENT at disagreement_alpha. */
int lw_calibrate_disagreement(
    const lw_model *model, const lw_activations *calibration, const double *host_predictions, size_t count,
    lw_model **out
);

/* ---------------------------------------------------------------------------------------------------------------
 * Sharded fitting: mergeable statistics (Docs/ModelFormat.md, "Statistics files"), and mixtures in EM rounds
 * ------------------------------------------------------------------------------------------------------------- */

/* An lw_statistics handle holds one of three kinds of statistics file; lw_statistics_info.kind says which. */
#define LW_STATISTICS_SHARD 0         /* a shard's statistics, or several merged */
#define LW_STATISTICS_MIXTURE_ROUND 1 /* a sharded mixture fit between EM iterations */
#define LW_STATISTICS_MIXTURE_STEP 2  /* one round's E-step over a shard, or several merged */

typedef struct lw_statistics lw_statistics;

/* Gathers the sufficient statistics of rows for a fit configured by config: gda and tied (labels required), or
 * gmm-full and gmm-diag (labels not used; the statistics keep a reservoir sample of at most 10,000 rows for the
 * k-means++ start, the rows of smallest seeded hash of their index, so merged shards keep one pass's sample;
 * one start, 100 iterations at most, tolerance 1e-3, as `latentwatch fit` by default). Its calibration settings
 * are not used here: calibration rows go to lw_statistics_fit. first_index is the index of rows' first row in the
 * whole data set, so that the validation split (which chooses the shrinkage) and the reservoir are those of a
 * single pass. Regression families: lw_statistics_gather_targets. On success *out is a new handle; free it with
 * lw_statistics_free. */
int lw_statistics_gather(
    const lw_activations *rows, const lw_fit_config *config, int64_t first_index, lw_statistics **out
);

/* Gathers a shard's statistics for a regression family (config->family "regression" or "regression-tied";
 * ABI version 5): rows->targets (required) label the rows by target bin, the config->target_bins bins being cut at
 * the quantiles of binning[0 .. binning_count), the whole data set's fitting targets (every shard's, in any order),
 * so that every shard bins alike and their statistics merge. Otherwise as lw_statistics_gather; lw_statistics_fit
 * then takes the calibration rows' targets (calibration->targets). */
int lw_statistics_gather_targets(
    const lw_activations *rows, const double *binning, size_t binning_count, const lw_fit_config *config,
    int64_t first_index, lw_statistics **out
);

/* Merges other into statistics (other is unchanged; the two may be used by other threads meanwhile): two shards'
 * statistics, or two E-steps of one round. Refused with LW_ERR_FIT_FAILED, statistics unchanged, when they were
 * gathered for another shape, layer or fit configuration (E-steps: another round), or hold a row in common (a
 * shard merged twice); with LW_ERR_INVALID_ARGUMENT for other kinds (a round does not merge). */
int lw_statistics_merge(lw_statistics *statistics, const lw_statistics *other);

/* Reads a statistics file of any kind (.lws, written by lw_statistics_write, `latentwatch fit --statistics-only`
 * or `--mixture-round`, or `latentwatch merge`), or its bytes. Damaged or truncated bytes and model files are
 * refused (LW_ERR_MALFORMED_FILE). */
int lw_statistics_load(const char *path, lw_statistics **out);
int lw_statistics_load_bytes(const void *bytes, size_t length, lw_statistics **out);

/* Writes a statistics file atomically (a temporary file renamed into place). */
int lw_statistics_write(const lw_statistics *statistics, const char *path);

/* The statistics file's bytes in memory, as lw_model_encode does for models. */
int lw_statistics_encode(const lw_statistics *statistics, void *buffer, size_t capacity, size_t *length);

/* What statistics hold. Strings stay valid until the statistics are freed. */
typedef struct lw_statistics_info {
    uint32_t struct_size;
    uint32_t input_rank;              /* entries used in input_shape */
    int64_t input_shape[LW_MAX_RANK]; /* the shape of one row (an E-step has none: input_rank 0) */
    uint64_t samples;                 /* rows gathered (merged) */
    uint64_t range_count;             /* separate row ranges held (1 when the shards merged are contiguous) */
    int64_t first_row;                /* the first row index held */
    int64_t end_row;                  /* one past the last row index held */
    const char *layer;                /* layer name the model will carry */
    const char *family;               /* "gda", "tied", "gmm-full" or "gmm-diag"; "" for an E-step */
    /* ABI version 3 (a shorter struct_size is filled up to family): */
    int32_t kind;                     /* LW_STATISTICS_SHARD, _MIXTURE_ROUND or _MIXTURE_STEP */
    int32_t round;                    /* rounds: EM iterations done (0: the start); E-steps: the round computed
                                         against; shards: 0 */
    int32_t converged;                /* rounds: 1 when the last iteration changed the mean log-likelihood by less
                                         than the tolerance */
    int32_t finished;                 /* rounds: 1 when converged or at the iteration limit: lw_statistics_fit
                                         then builds the model */
    double log_likelihood;            /* rounds: the data's mean log-likelihood at the last E-step (NaN at round
                                         0); E-steps: the sum over their rows; shards: NaN */
    const char *fingerprint;          /* rounds and E-steps: the round's parameters, 8 hex digits; shards: "" */
} lw_statistics_info;

/* Fills *info (set info->struct_size first). */
int lw_statistics_get_info(const lw_statistics *statistics, lw_statistics_info *info);

/* Fits a model from (merged) gda, tied or regression statistics with the configuration they were gathered with,
 * or from a finished mixture round, calibrated on calibration's rows (required: the statistics hold none; labels
 * calibrate p(y | z); for regression statistics, calibration->targets calibrate the predictive distribution and
 * the prediction interval). The model equals what lw_fit gives on all the rows with the same calibration, up to rounding. Refused:
 * an unfinished round (LW_ERR_FIT_FAILED), gmm statistics that have not run EM (LW_ERR_INVALID_CONFIGURATION), an
 * E-step (LW_ERR_INVALID_ARGUMENT). On success *out is a new model; free it with lw_model_free. */
int lw_statistics_fit(const lw_statistics *statistics, const lw_activations *calibration, lw_model **out);

/* Sharded mixtures, one EM iteration per round (Docs/Operations.md, "Mixtures, in EM rounds"):
 *   round = lw_mixture_start(merged gmm statistics)
 *   until info.finished: every shard's lw_mixture_expectation(round, its rows, its first_index), the steps merged
 *     with lw_statistics_merge, then round = lw_mixture_advance(round, merged steps)
 *   lw_statistics_fit(round, calibration)
 * The rounds repeat lw_fit's iterations on all the rows, so the model is the same up to rounding. */

/* Round 0 from merged gmm-full or gmm-diag statistics: the PCA projection and the k-means++ start. Refused:
 * statistics of another family or with restarts (LW_ERR_INVALID_CONFIGURATION), a round or an E-step
 * (LW_ERR_INVALID_ARGUMENT). On success *round is a new handle. */
int lw_mixture_start(const lw_statistics *statistics, lw_statistics **round);

/* One shard's E-step against a round: rows (labels not used) starting at first_index in the whole data set.
 * Refused: a finished round (LW_ERR_INVALID_CONFIGURATION), a handle that is not a round (LW_ERR_INVALID_ARGUMENT),
 * rows of another shape (LW_ERR_SHAPE_MISMATCH), non-finite rows (LW_ERR_FIT_FAILED). On success *step is a new
 * handle. */
int lw_mixture_expectation(
    const lw_statistics *round, const lw_activations *rows, int64_t first_index, lw_statistics **step
);

/* The next round: the M-step on steps, the E-steps of every shard merged. Refused with LW_ERR_FIT_FAILED when they
 * were computed against another round or do not cover exactly the fit's rows (a shard missing or counted twice);
 * with LW_ERR_INVALID_CONFIGURATION when the round is finished; with LW_ERR_INVALID_ARGUMENT for handles of the
 * wrong kinds. On success *next is a new handle; round is unchanged. */
int lw_mixture_advance(const lw_statistics *round, const lw_statistics *steps, lw_statistics **next);

/* Frees statistics. Null is accepted. */
int lw_statistics_free(lw_statistics *statistics);

/* ---------------------------------------------------------------------------------------------------------------
 * Monitors: assess inputs of one or more layers and raise alerts
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct lw_monitor lw_monitor;

#define LW_MAX_LAYERS 16

#define LW_ALERT_INPUT 1     /* an input's fused p-value is at most input_alpha */
#define LW_ALERT_ALEATORIC 2 /* an input's aleatoric p-value (entropy; spread for regression) is at most aleatoric_alpha */
#define LW_ALERT_WINDOW 3    /* the rate of small p-values over the window is too high for chance */
#define LW_ALERT_SHIFT 4     /* the shift detector's evidence passed its threshold */
#define LW_ALERT_RESOLVED 5  /* a window or shift episode ended */
#define LW_ALERT_DISAGREEMENT 6 /* a regression host's prediction lies far from the activations' prediction:
                                   its disagreement p-value is at most disagreement_alpha */

/* One alert, as the callback receives it. Pointers are valid during the callback only. */
typedef struct lw_alert {
    uint32_t struct_size;
    int32_t kind;           /* LW_ALERT_* */
    const char *kind_name;  /* "input", "aleatoric", "window", "shift", "resolved", "disagreement" */
    int64_t index;          /* the input's index in the monitor's stream */
    const char *request_id; /* the host's id of that input, or NULL */
    double p_value;         /* the p-value behind the alert; NaN when none */
    int32_t episode;        /* for LW_ALERT_RESOLVED: the kind of the episode it closes; 0 otherwise */
    int32_t reserved;
    const char *detail;     /* a human-readable explanation */
    double time;            /* seconds since the Unix epoch */
} lw_alert;

/* Called for every alert, one at a time and in stream order, on a library thread (never on the thread that
 * called assess; the library's threads are shared by its monitors). It must return promptly and must not wait
 * for a thread that calls into the library. It must not call lw_monitor_flush or lw_monitor_close (refused
 * with LW_ERR_WRONG_STATE: they would wait for the thread it runs on). */
typedef void (*lw_alert_callback)(const lw_alert *alert, void *context);

#define LW_SHIFT_OFF 0
#define LW_SHIFT_ANYTIME 1          /* no false alarm ever, with probability 1 - shift_delta */
#define LW_SHIFT_CHANGE_DETECTION 2 /* Shiryaev-Roberts with mean run length shift_mean_run_length */

#define LW_FUSION_BONFERRONI 0 /* valid under any dependence between layers, conservative */
#define LW_FUSION_CAUCHY 1     /* valid asymptotically, more powerful when layers agree */
#define LW_FUSION_AUTOMATIC 2  /* the models' joint calibration when they carry one for exactly these layers
                                  (lw_calibrate_jointly), otherwise Bonferroni */
#define LW_FUSION_CALIBRATED 3 /* the joint calibration: a conformal p-value, valid at every level; a monitor of
                                  two or more layers refuses models without a matching one */

/* The shift detector's betting functions (Docs/Statistics.md). */
#define LW_BETTING_MIXTURE 0 /* no bet, a log e-value and two power functions: near and far shifts */
#define LW_BETTING_POWER 1   /* power functions only: fastest on far shifts */
#define LW_BETTING_LINEAR 2  /* Vovk's simple jumper: at most a factor 1.5 per input */

/* What the anytime shift detector ranks each input against (Docs/Statistics.md). */
#define LW_SHIFT_REFERENCE_CALIBRATION_AND_STREAM 0 /* the calibration set and the stream's earlier inputs */
#define LW_SHIFT_REFERENCE_CALIBRATION_SET 1        /* the calibration set alone, corrected: slower */

#define LW_MODE_INLINE 0     /* assess on the caller's thread */
#define LW_MODE_BACKGROUND 1 /* submit copies into a bounded queue scored on a library thread */

#define LW_OVERFLOW_DROP_NEWEST 0 /* a full queue drops the new input (counted) */
#define LW_OVERFLOW_REJECT 1      /* a full queue refuses it with LW_ERR_QUEUE_FULL */

#define LW_OUTPUTS_NONE 0
#define LW_OUTPUTS_LOGITS 1
#define LW_OUTPUTS_PROBABILITIES 2
#define LW_OUTPUTS_PREDICTION 3 /* a regression host's prediction of its target (output_count 1); the primary
                                   layer's model must be a regression model */

#define LW_LOG_OFF 0
#define LW_LOG_ERROR 1
#define LW_LOG_WARNING 2
#define LW_LOG_INFO 3
#define LW_LOG_DEBUG 4

typedef struct lw_monitor_config {
    uint32_t struct_size;
    uint32_t layer_count;               /* models in layer order (1 to LW_MAX_LAYERS) */
    const lw_model *const *models;      /* layer_count models; the monitor keeps its own references */
    const char *const *layer_names;     /* NULL, or layer_count names (a NULL entry: the model's own) */
    int32_t primary_layer;              /* whose p(y | z) gives entropy and class; -1 (default): the last */
    /* Alert policy (Docs/Statistics.md). */
    double input_alpha;                 /* per-input level on the fused p-value; default 0.01 */
    double aleatoric_alpha;             /* level on the aleatoric p-value (of the entropy; of the predictive
                                           spread for regression models); default 0.01; 0 turns it off */
    uint32_t window_length;             /* inputs in the rate window; default 200; 0 turns the window off */
    uint32_t window_cooldown;           /* inputs before a window episode may resolve; 0 (default): length */
    double window_level;                /* the window's false-alarm level; default 1e-4 */
    int32_t shift;                      /* LW_SHIFT_*; default LW_SHIFT_ANYTIME */
    int32_t fusion;                     /* LW_FUSION_*; default LW_FUSION_AUTOMATIC */
    double shift_delta;                 /* anytime: default 0.01 */
    double shift_mean_run_length;       /* change detection: default 10000 */
    /* Scoring. */
    int32_t mode;                       /* LW_MODE_*; default LW_MODE_INLINE */
    int32_t overflow;                   /* LW_OVERFLOW_*; default LW_OVERFLOW_DROP_NEWEST */
    uint32_t queue_capacity;            /* background: inputs; default 4096 */
    uint32_t batch_size;                /* background: inputs scored together; default 32 */
    int32_t outputs;                    /* LW_OUTPUTS_*: what the host passes beside the activations */
    uint32_t output_count;              /* elements of the outputs of one input (classes; 1 for
                                           LW_OUTPUTS_PREDICTION) */
    /* Sinks: alerts go to every one configured. */
    lw_alert_callback on_alert;         /* NULL: none */
    void *on_alert_context;             /* passed to on_alert */
    const char *alerts_path;            /* a JSON-lines file (rotated at 64 MiB, 5 kept); NULL: none */
    int32_t log_level;                  /* LW_LOG_*: the monitor's diagnostics and alerts to stderr; default
                                           LW_LOG_OFF */
    uint32_t sink_buffer_capacity;      /* alerts buffered per sink before drops; default 4096 */
    /* Recorder: NULL record_path records nothing. */
    const char *record_path;            /* recording file (.lwr); rotated files get a numeric suffix. With
                                           outputs configured, every input must carry its outputs, and a
                                           background monitor (whose queue holds activations only) cannot
                                           record */
    double record_rate;                 /* share of inputs recorded (0, 1]; default 1 */
    /* Shift detector details. A struct_size that ends at record_rate (a program compiled against a header
       without them) gives these their defaults. */
    int32_t shift_betting;              /* LW_BETTING_*; default LW_BETTING_MIXTURE */
    int32_t calibration_correction;     /* 1 (default): the window's guarantee, and the shift detector's
                                           against LW_SHIFT_REFERENCE_CALIBRATION_SET and in change
                                           detection, hold given the calibration set (corrected p-values);
                                           0: on average over calibration sets only */
    double shift_jump_rate;             /* the betting jumper's jump rate, in [0, 1]; default 0.001 */
    /* A struct_size that ends at shift_jump_rate gives this its default. */
    int32_t shift_reference;            /* LW_SHIFT_REFERENCE_*; default CALIBRATION_AND_STREAM: P(any false
                                           alarm) <= shift_delta on average over calibration sets; with
                                           CALIBRATION_SET and calibration_correction the bound holds given
                                           the calibration set. Change detection always uses the set */
    int32_t reserved;                   /* must be 0 */
    /* A struct_size that ends at reserved gives this its default. */
    double interval_level;              /* coverage of the prediction interval of each lw_assessment of a
                                           regression model fitted with calibration targets, in (0, 1);
                                           default 0.9; 0: none */
    /* A struct_size that ends at interval_level gives this its default. */
    double disagreement_alpha;          /* with LW_OUTPUTS_PREDICTION: level on the p-value of the distance
                                           between the host's prediction and the model's (a model calibrated
                                           by lw_calibrate_disagreement); default 0.01; 0 turns it off */
} lw_monitor_config;

/* Sets struct_size and the defaults above, writing at most size bytes (sizeof *config as the caller compiled it;
 * the macro below passes it). */
void lw_monitor_config_init_sized(lw_monitor_config *config, size_t size);

/* The same for a struct that ends at record_rate (what programs compiled against ABI version 1's first header
 * pass): writes those bytes only. Programs compiled against this header reach lw_monitor_config_init_sized
 * through the macro. */
void lw_monitor_config_init(lw_monitor_config *config);
#define lw_monitor_config_init(config) lw_monitor_config_init_sized((config), sizeof *(config))

/* Creates a monitor and starts its work on the library's threads (alert delivery; background scoring). Every
 * model must carry calibration scores (a model without them could never raise an alert), and the sizes are
 * bounded (window_length at most 10^6, queue_capacity at most 2^24 and its queue at most half of the
 * machine's memory, batch_size at most 4096): otherwise LW_ERR_INVALID_CONFIGURATION, before anything is
 * created. On success *out is a new handle; close it with lw_monitor_close. */
int lw_monitor_create(const lw_monitor_config *config, lw_monitor **out);

/* One or more inputs' activations: one buffer per monitored layer, in layer order, each holding count rows
 * back to back (count = 1 for lw_monitor_assess and lw_monitor_submit). */
typedef struct lw_inputs {
    uint32_t struct_size;
    int32_t dtype;                  /* LW_DTYPE_FLOAT32 or LW_DTYPE_FLOAT16 (all layers alike) */
    uint32_t layer_count;           /* must equal the monitor's */
    uint32_t reserved;
    const void *const *layers;      /* layer_count buffers */
    const size_t *lengths;          /* elements in each buffer: count * the layer's input_count */
    const float *outputs;           /* the classifier's outputs or the host's predictions (count * output_count),
                                       or NULL */
    size_t outputs_length;          /* elements at outputs */
} lw_inputs;

/* Sets struct_size and zeroes the rest. */
void lw_inputs_init(lw_inputs *inputs);

#define LW_FLAG_OUT_OF_DISTRIBUTION 1 /* fused p-value at most input_alpha */
#define LW_FLAG_AMBIGUOUS 2           /* aleatoric p-value at most aleatoric_alpha (entropy; spread for regression) */
#define LW_FLAG_WINDOW_ALARM 4        /* a window episode is open */
#define LW_FLAG_SHIFT_ALARM 8         /* a shift episode is open */
#define LW_FLAG_DISAGREEMENT 16       /* the classifier's outputs predict another class than p(y | z); a
                                         regression host's disagreement p-value is at most disagreement_alpha */

typedef struct lw_layer_assessment {
    double surprise; /* -log p(z) at this layer */
    double p_value;  /* the layer's epistemic p-value: the surprise's conformal p-value, or with a neighbour
                        index that of the surprise and the neighbour distance combined (lw_scores.epistemic_p_value) */
} lw_layer_assessment;

/* What the monitor concluded about one input. */
typedef struct lw_assessment {
    uint32_t struct_size;
    uint32_t flags;                  /* LW_FLAG_* */
    int64_t index;                   /* the input's index in the monitor's stream */
    double fused_p_value;            /* the layers' p-values fused */
    double entropy;                  /* entropy of p(y | z) at the primary layer */
    double entropy_p_value;          /* its p-value; NaN when not calibrated */
    double shift_log_evidence;       /* the shift detector's log evidence after this input; NaN when off */
    int64_t predicted_label;         /* class predicted from p(y | z); -1 for mixtures */
    int64_t output_predicted;        /* from the classifier's outputs when given; -1 otherwise */
    double output_confidence;        /* max softmax probability of the outputs; NaN when not given */
    double output_entropy;           /* entropy of the outputs' softmax; NaN when not given */
    double output_energy;            /* -logsumexp(logits); NaN when not given or probabilities */
    uint32_t layer_count;            /* entries used in layers */
    uint32_t reserved;
    lw_layer_assessment layers[LW_MAX_LAYERS];
    /* When the primary layer's model is a regression model (NaN otherwise; a struct_size that ends at layers
     * leaves them out). LW_FLAG_AMBIGUOUS then comes from spread_p_value. */
    double prediction;               /* the target's predictive mean */
    double predictive_spread;        /* its standard deviation */
    double spread_p_value;           /* conformal p-value of the spread */
    /* The conformal prediction interval at the monitor's interval_level (NaN when the model has no interval
     * calibration or interval_level is 0; infinite ends when unbounded; a struct_size that ends at
     * spread_p_value leaves them out). */
    double interval_low;
    double interval_high;
    /* When the host passed its prediction (LW_OUTPUTS_PREDICTION; NaN otherwise; a struct_size that ends at
     * interval_high leaves them out). LW_FLAG_DISAGREEMENT then comes from disagreement_p_value. */
    double host_prediction;          /* the host's prediction */
    double disagreement;             /* |host_prediction - prediction| */
    double disagreement_p_value;     /* its conformal p-value; NaN when the model's disagreement is not
                                        calibrated */
} lw_assessment;

/* Assesses one input on the calling thread and fills *out (set out->struct_size first). request_id may be
 * NULL. With either mode. Allocates nothing in steady state (per-thread buffers are kept), unless it raises an
 * alert, a recorder is configured (it copies the input), or request_id is longer than 15 bytes. A refused
 * input (wrong length, NaN or Inf in the activations or outputs) returns its status, is counted, and leaves
 * the stream untouched. */
int lw_monitor_assess(lw_monitor *monitor, const lw_inputs *inputs, const char *request_id, lw_assessment *out);

/* Assesses count inputs in order into out[0 .. count). The stride between entries is out[0].struct_size (at
 * least sizeof(lw_assessment), a multiple of 8); the library sets every entry's struct_size to it. request_ids
 * is NULL or count ids (entries may be NULL). Every row is validated before any is assessed: one bad row
 * refuses the whole batch (its message names the row), nothing is assessed, and all count inputs are counted
 * as refused. */
int lw_monitor_assess_batch(
    lw_monitor *monitor, const lw_inputs *inputs, size_t count, const char *const *request_ids,
    lw_assessment *out
);

/* Background mode: validates one input, copies it into the queue and returns at once. The queue holds
 * activations only: inputs->outputs must be NULL (LW_ERR_INVALID_ARGUMENT otherwise). *accepted (may be NULL)
 * is 1 when queued, 0 when the full queue dropped it (LW_OVERFLOW_DROP_NEWEST; counted). */
int lw_monitor_submit(lw_monitor *monitor, const lw_inputs *inputs, const char *request_id, int32_t *accepted);

/* Waits until every input submitted so far has been assessed and every alert raised so far has been
 * delivered to the sinks, or until timeout_ms passes (LW_ERR_WRONG_STATE then, nothing lost). */
int lw_monitor_flush(lw_monitor *monitor, uint32_t timeout_ms);

typedef struct lw_monitor_stats {
    uint32_t struct_size;
    uint32_t layer_count;
    uint64_t assessed;          /* inputs assessed (inline and background) */
    uint64_t refused;           /* inputs refused as invalid (every input of a refused batch) */
    uint64_t dropped;           /* background inputs dropped or rejected by a full queue */
    uint64_t queued;            /* inputs waiting in the background queue now */
    uint64_t alerts;            /* alerts delivered to the callback (when one is set) */
    uint64_t replacements;      /* times lw_monitor_replace_models swapped the models (ABI 2; a struct_size that
                                   ends at alerts is filled up to there) */
} lw_monitor_stats;

/* Fills *stats (set stats->struct_size first). */
int lw_monitor_get_stats(lw_monitor *monitor, lw_monitor_stats *stats);

/* Replaces the models of every layer at once while other threads keep assessing (a retrained model, a new
 * calibration). models holds layer_count models in the monitor's layer order; the layers keep the monitor's names.
 * Every input is assessed by the old models or the new ones, never a mix, and none is lost or assessed twice.
 * The window and shift detectors restart on the new models' calibration; an open alarm episode gets an
 * LW_ALERT_RESOLVED alert saying so. Each model must take the layer's activation size and carry calibration
 * scores: otherwise LW_ERR_INVALID_CONFIGURATION, and the old models stay. The monitor keeps its own references:
 * the handles may be freed afterwards. */
int lw_monitor_replace_models(lw_monitor *monitor, const lw_model *const *models, uint32_t layer_count);

/* Stops accepting inputs, assesses what is queued, delivers the remaining alerts, flushes the sinks and the
 * recorder, waits until the monitor's work on the library's threads has ended and frees the monitor. Null is
 * accepted. */
int lw_monitor_close(lw_monitor *monitor);

#ifdef __cplusplus
}
#endif

#endif /* LATENTWATCH_H */
