/*
 * Checks of liblatentwatch.so through its C header, run as a real process by Tests/CAPITests (Swift), which
 * compiles this file with gcc (and with clang -fsanitize=thread for the thread check).
 *
 * Activations are float32 .npy files (or raw float32), labels int64 .npy files.
 *
 *   capi_check score MODEL1 RAW1 [MODEL2 RAW2]  prints, per input of the activation files, the model scores and
 *                                               the inline monitor's assessment as hex floats (%a), then the
 *                                               alerts the callback received
 *   capi_check errors MODEL                     every bad-input case returns its status; the process survives
 *   capi_check threads MODEL RAW [THREADS]      THREADS threads (default 8) assess and score at once
 *   capi_check allocations MODEL RAW            steady-state lw_monitor_assess and lw_model_score allocate nothing
 *   capi_check fit RAW LABELS DIM OUT.lwm       fit from buffers, write, load back, background monitor, flush
 *   capi_check regression TRAIN TRAIN_Y CAL CAL_Y TEST DIM
 *                                               fits a regression-tied model (8 target bins) from buffers with
 *                                               targets (float64 .npy), prints per test row the prediction, spread,
 *                                               spread p-value and 90 % interval as hex floats, and checks the
 *                                               bad-input cases and structs compiled before the prediction fields
 *   capi_check regression TRAIN TRAIN_Y CAL CAL_Y TEST DIM CAL_HOST TEST_HOST
 *                                               also calibrates the disagreement with the host's predictions
 *                                               (float64 .npy) and prints "D distance p-value flags" per test row
 *                                               of a monitor given them
 *
 * Exit status 0 when every check passed; each failure prints "FAIL ..." on stderr.
 */
#define _GNU_SOURCE
#include "latentwatch.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond, ...)                                                                                             \
    do {                                                                                                             \
        if (!(cond)) {                                                                                               \
            failures++;                                                                                              \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                     \
            fprintf(stderr, __VA_ARGS__);                                                                            \
            fprintf(stderr, " (last error: %s)\n", lw_last_error());                                                 \
        }                                                                                                            \
    } while (0)

#define EXPECT_STATUS(call, status)                                                                                  \
    do {                                                                                                             \
        int got_ = (call);                                                                                           \
        CHECK(got_ == (status), "%s returned %s, expected %s", #call, lw_status_name(got_), lw_status_name(status)); \
        if (got_ != LW_OK) CHECK(strlen(lw_last_error()) > 0, "%s left no message", #call);                          \
    } while (0)

/* ---- malloc counting (interposes the process's allocator; counts the calling thread's allocations while counting
 * is on: the library's own threads, delivering alerts, are not the call being measured). Left out of the
 * ThreadSanitizer build (-DLW_NO_MALLOC_COUNTER), whose runtime interposes malloc itself. ---- */

static _Thread_local int counting = 0;
static atomic_long allocations = 0;

#ifndef LW_NO_MALLOC_COUNTER

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

void *malloc(size_t n) {
    if (counting) atomic_fetch_add(&allocations, 1);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    if (counting) atomic_fetch_add(&allocations, 1);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    if (counting) atomic_fetch_add(&allocations, 1);
    return __libc_realloc(p, n);
}
int posix_memalign(void **out, size_t alignment, size_t n) {
    if (counting) atomic_fetch_add(&allocations, 1);
    void *p = __libc_memalign(alignment, n);
    if (!p) return 12;
    *out = p;
    return 0;
}
void *aligned_alloc(size_t alignment, size_t n) {
    if (counting) atomic_fetch_add(&allocations, 1);
    return __libc_memalign(alignment, n);
}
void free(void *p) { __libc_free(p); }
#endif

/* ---- helpers ---- */

/* Reads a whole file; for a .npy file (version 1, C order) checks its dtype and returns the data after the header. */
static void *read_file(const char *path, const char *dtype, size_t width, size_t *count) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *v = malloc((size_t)bytes + 1);
    if (fread(v, 1, (size_t)bytes, f) != (size_t)bytes) exit(2);
    fclose(f);
    size_t offset = 0;
    if (bytes > 10 && memcmp(v, "\x93NUMPY\x01", 7) == 0) {
        size_t header = (size_t)v[8] | ((size_t)v[9] << 8);
        offset = 10 + header;
        v[bytes] = 0;
        char want[32];
        snprintf(want, sizeof want, "'descr': '%s'", dtype);
        if (!strstr((char *)v + 10, want) || strstr((char *)v + 10, "'fortran_order': True")) {
            fprintf(stderr, "%s: expected a C-order .npy of dtype %s\n", path, dtype);
            exit(2);
        }
    }
    *count = ((size_t)bytes - offset) / width;
    void *out = malloc((size_t)bytes - offset + 1);
    memcpy(out, v + offset, (size_t)bytes - offset);
    free(v);
    return out;
}

/* float32 values from a .npy (<f4) or a raw file. */
static float *read_raw(const char *path, size_t *count) { return read_file(path, "<f4", sizeof(float), count); }

static lw_model *load(const char *path) {
    lw_model *m = NULL;
    int s = lw_model_load(path, &m);
    if (s != LW_OK) {
        fprintf(stderr, "cannot load %s: %s\n", path, lw_last_error());
        exit(2);
    }
    return m;
}

static size_t input_count(const lw_model *m) {
    lw_model_info info = {.struct_size = sizeof info};
    if (lw_model_get_info(m, &info) != LW_OK) exit(2);
    return (size_t)info.input_count;
}

/* ---- score: scores and assessments for the Swift test to compare bit for bit ---- */

static void on_alert_print(const lw_alert *a, void *ctx) {
    FILE *out = ctx;
    fprintf(out, "alert %s %lld %a %s\n", a->kind_name, (long long)a->index, a->p_value,
            a->request_id ? a->request_id : "-");
}

static int run_score(int argc, char **argv) {
    int layers = (argc - 2) / 2;
    lw_model *models[2];
    float *data[2];
    size_t lengths[2], dims[2];
    size_t rows = 0;
    for (int l = 0; l < layers; l++) {
        models[l] = load(argv[2 + 2 * l]);
        data[l] = read_raw(argv[3 + 2 * l], &lengths[l]);
        dims[l] = input_count(models[l]);
        rows = lengths[l] / dims[l];
    }
    FILE *alerts = tmpfile();
    lw_monitor_config config;
    lw_monitor_config_init(&config);
    config.layer_count = (uint32_t)layers;
    config.models = (const lw_model *const *)models;
    config.on_alert = on_alert_print;
    config.on_alert_context = alerts;
    lw_monitor *monitor = NULL;
    EXPECT_STATUS(lw_monitor_create(&config, &monitor), LW_OK);
    lw_inputs in;
    lw_inputs_init(&in);
    const void *buffers[2];
    in.layer_count = (uint32_t)layers;
    in.layers = buffers;
    in.lengths = dims;
    for (size_t r = 0; r < rows; r++) {
        for (int l = 0; l < layers; l++) {
            buffers[l] = data[l] + r * dims[l];
            lw_scores s = {.struct_size = sizeof s};
            EXPECT_STATUS(lw_model_score(models[l], data[l] + r * dims[l], dims[l], &s), LW_OK);
            printf("score %zu %d %a %a %a %a %a %a %a %lld\n", r, l, s.surprise, s.surprise_p_value, s.entropy,
                   s.entropy_p_value, s.mahalanobis, s.relative_mahalanobis, s.max_posterior,
                   (long long)s.predicted_label);
        }
        char id[32];
        snprintf(id, sizeof id, "r%zu", r);
        lw_assessment a = {.struct_size = sizeof a};
        EXPECT_STATUS(lw_monitor_assess(monitor, &in, id, &a), LW_OK);
        printf("assess %zu %lld %u %a %a %a %a %lld", r, (long long)a.index, a.flags, a.fused_p_value, a.entropy,
               a.entropy_p_value, a.shift_log_evidence, (long long)a.predicted_label);
        for (uint32_t l = 0; l < a.layer_count; l++) printf(" %a %a", a.layers[l].surprise, a.layers[l].p_value);
        printf("\n");
    }
    /* The batch form of the first layer's model scores equals the one-input form within rounding (BLAS). */
    double *surprise = malloc(rows * sizeof(double));
    int32_t *status = malloc(rows * sizeof(int32_t));
    lw_score_columns cols = {.struct_size = sizeof cols, .surprise = surprise, .status = status};
    EXPECT_STATUS(lw_model_score_batch(models[0], data[0], rows * dims[0], rows, &cols), LW_OK);
    for (size_t r = 0; r < rows; r++) printf("batch %zu %d %a\n", r, status[r], surprise[r]);
    EXPECT_STATUS(lw_monitor_close(monitor), LW_OK);
    fflush(alerts);
    rewind(alerts);
    char line[512];
    while (fgets(line, sizeof line, alerts)) fputs(line, stdout);
    fclose(alerts);
    for (int l = 0; l < layers; l++) {
        EXPECT_STATUS(lw_model_free(models[l]), LW_OK);
        free(data[l]);
    }
    free(surprise);
    free(status);
    return failures ? 1 : 0;
}

/* ---- errors: every bad input is refused with its status and the process goes on ---- */

/* An initialiser wrote the struct as the first header had it: struct_size says `size` bytes, and nothing past them
 * (the buffer was filled with 0xAB). */
static void check_written(const unsigned char *buffer, size_t length, size_t size, const char *what) {
    uint32_t written;
    memcpy(&written, buffer, sizeof written);
    CHECK(written == size, "%s: struct_size %u, expected %zu", what, written, size);
    for (size_t i = size; i < length; i++) CHECK(buffer[i] == 0xAB, "%s wrote byte %zu", what, i);
}

static void never_called(const lw_alert *a, void *ctx) {
    (void)a;
    (void)ctx;
}

static int run_errors(const char *model_path) {
    CHECK(lw_abi_version() == LW_ABI_VERSION, "abi %u", lw_abi_version());
    CHECK(strlen(lw_version()) > 0, "version");
    CHECK(strcmp(lw_status_name(LW_ERR_NON_FINITE), "LW_ERR_NON_FINITE") == 0, "status name");
    CHECK(strcmp(lw_status_name(12345), "LW_ERR_UNKNOWN") == 0, "unknown status name");

    lw_model *m = NULL;
    /* Loading. */
    EXPECT_STATUS(lw_model_load(NULL, &m), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_model_load(model_path, NULL), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_model_load("/nonexistent/model.lwm", &m), LW_ERR_IO);
    CHECK(m == NULL, "out set on failure");
    CHECK(strstr(lw_last_error(), "/nonexistent/model.lwm") != NULL, "message names the path: %s", lw_last_error());
    EXPECT_STATUS(lw_model_load_bytes(NULL, 10, &m), LW_ERR_INVALID_ARGUMENT);
    const char junk[] = "definitely not a model file, just some bytes of text";
    EXPECT_STATUS(lw_model_load_bytes(junk, sizeof junk, &m), LW_ERR_MALFORMED_FILE);
    EXPECT_STATUS(lw_model_load_bytes(junk, 0, &m), LW_ERR_MALFORMED_FILE);

    /* A good model, then its bytes truncated and damaged. */
    m = load(model_path);
    size_t length = 0;
    EXPECT_STATUS(lw_model_encode(m, 0, 0, NULL, 0, &length), LW_ERR_BUFFER_TOO_SMALL);
    CHECK(length > 100, "encoded length %zu", length);
    unsigned char *bytes = malloc(length);
    EXPECT_STATUS(lw_model_encode(m, 0, 0, bytes, length, &length), LW_OK);
    lw_model *copy = NULL;
    EXPECT_STATUS(lw_model_load_bytes(bytes, length, &copy), LW_OK);
    EXPECT_STATUS(lw_model_free(copy), LW_OK);
    EXPECT_STATUS(lw_model_load_bytes(bytes, length / 2, &copy), LW_ERR_MALFORMED_FILE);
    bytes[length / 2] ^= 0x5A;
    EXPECT_STATUS(lw_model_load_bytes(bytes, length, &copy), LW_ERR_MALFORMED_FILE);
    CHECK(copy == NULL, "no handle for damaged bytes");
    free(bytes);

    /* Info and labels. */
    lw_model_info info = {.struct_size = 8};
    EXPECT_STATUS(lw_model_get_info(m, &info), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_model_get_info(m, NULL), LW_ERR_INVALID_ARGUMENT);
    /* A struct ending at fit_notes (a program compiled against a header without posterior_temperature) is
     * filled up to there and no further. */
    info.struct_size = (uint32_t)offsetof(lw_model_info, posterior_temperature);
    info.posterior_temperature = -7;
    EXPECT_STATUS(lw_model_get_info(m, &info), LW_OK);
    CHECK(info.posterior_temperature == -7 && info.fit_notes != NULL, "short lw_model_info");
    CHECK(info.struct_size == offsetof(lw_model_info, posterior_temperature), "struct_size %u", info.struct_size);
    info.struct_size = sizeof info;
    EXPECT_STATUS(lw_model_get_info(m, &info), LW_OK);
    CHECK(info.posterior_temperature >= 0, "posterior_temperature %g", info.posterior_temperature);
    size_t n = (size_t)info.input_count;
    size_t nlabels = 0;
    EXPECT_STATUS(lw_model_class_labels(m, NULL, 0, &nlabels), LW_ERR_BUFFER_TOO_SMALL);
    CHECK(nlabels == info.component_count, "labels %zu", nlabels);

    /* Scoring. */
    float *x = calloc(n + 1, sizeof(float));
    lw_scores s = {.struct_size = sizeof s};
    EXPECT_STATUS(lw_model_score(m, NULL, n, &s), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_model_score(m, x, n - 1, &s), LW_ERR_SHAPE_MISMATCH);
    EXPECT_STATUS(lw_model_score(m, x, n + 1, &s), LW_ERR_SHAPE_MISMATCH);
    EXPECT_STATUS(lw_model_score(m, x, n, NULL), LW_ERR_INVALID_ARGUMENT);
    s.struct_size = 4;
    EXPECT_STATUS(lw_model_score(m, x, n, &s), LW_ERR_INVALID_ARGUMENT);
    s.struct_size = sizeof s;
    x[3] = NAN;
    EXPECT_STATUS(lw_model_score(m, x, n, &s), LW_ERR_NON_FINITE);
    x[3] = INFINITY;
    EXPECT_STATUS(lw_model_score(m, x, n, &s), LW_ERR_NON_FINITE);
    x[3] = 0;
    EXPECT_STATUS(lw_model_score(m, x, n, &s), LW_OK);
    CHECK(strlen(lw_last_error()) == 0, "message cleared after success");
    CHECK(lw_last_status() == LW_OK, "last status");
    /* Batch: a bad row is reported per row; a wrong total length refuses the call. */
    float *two = calloc(2 * n, sizeof(float));
    two[n + 1] = NAN;
    double sur[2];
    int32_t st[2];
    lw_score_columns cols = {.struct_size = sizeof cols, .surprise = sur, .status = st};
    EXPECT_STATUS(lw_model_score_batch(m, two, 2 * n, 2, &cols), LW_OK);
    CHECK(st[0] == LW_OK && st[1] == LW_ERR_NON_FINITE && isnan(sur[1]) && isfinite(sur[0]), "batch rows");
    EXPECT_STATUS(lw_model_score_batch(m, two, 2 * n - 1, 2, &cols), LW_ERR_SHAPE_MISMATCH);
    EXPECT_STATUS(lw_model_score_batch(m, two, SIZE_MAX, SIZE_MAX / 2, &cols), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_model_score_batch(m, two, SIZE_MAX / 2, SIZE_MAX / 4, &cols), LW_ERR_SHAPE_MISMATCH);
    EXPECT_STATUS(lw_model_score_batch(m, NULL, 2 * n, 2, &cols), LW_ERR_INVALID_ARGUMENT);

    /* Handles: NULL, foreign, freed, of the other kind. */
    EXPECT_STATUS(lw_model_score(NULL, x, n, &s), LW_ERR_INVALID_HANDLE);
    int local = 0;
    EXPECT_STATUS(lw_model_score((const lw_model *)&local, x, n, &s), LW_ERR_INVALID_HANDLE);
    EXPECT_STATUS(lw_model_score((const lw_model *)(uintptr_t)0xdeadbeef0, x, n, &s), LW_ERR_INVALID_HANDLE);
    lw_model *gone = load(model_path);
    EXPECT_STATUS(lw_model_free(gone), LW_OK);
    EXPECT_STATUS(lw_model_score(gone, x, n, &s), LW_ERR_INVALID_HANDLE);
    EXPECT_STATUS(lw_model_free(gone), LW_ERR_INVALID_HANDLE);
    EXPECT_STATUS(lw_model_free(NULL), LW_OK);

    /* The unsized initialisers, which programs compiled against ABI version 1's first header call, write the
     * structs as those programs know them and not a byte further. */
    {
        unsigned char guard[sizeof(lw_monitor_config) + sizeof(lw_fit_config)];
        memset(guard, 0xAB, sizeof guard);
        (lw_monitor_config_init)((lw_monitor_config *)guard);
        check_written(guard, sizeof guard, offsetof(lw_monitor_config, shift_betting), "lw_monitor_config_init");
        memset(guard, 0xAB, sizeof guard);
        (lw_fit_config_init)((lw_fit_config *)guard);
        check_written(guard, sizeof guard, offsetof(lw_fit_config, calibrate_posterior), "lw_fit_config_init");
        lw_monitor_config full;
        lw_monitor_config_init(&full);
        CHECK(full.struct_size == sizeof full && full.shift_jump_rate == 0.001 && full.calibration_correction == 1 &&
                  full.shift_reference == LW_SHIFT_REFERENCE_CALIBRATION_AND_STREAM,
              "lw_monitor_config_init (sized) defaults");
    }

    /* Monitor configuration. */
    lw_monitor *mon = NULL;
    lw_monitor_config c;
    lw_monitor_config_init(&c);
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_CONFIGURATION); /* no layers */
    c.layer_count = 1;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_ARGUMENT); /* models NULL */
    const lw_model *models[1] = {gone};
    c.models = models;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_HANDLE); /* a freed model */
    models[0] = m;
    c.input_alpha = 1.5;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_CONFIGURATION);
    c.input_alpha = NAN;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_CONFIGURATION);
    c.input_alpha = 0.01;
    c.shift = 77;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_ARGUMENT);
    c.shift = LW_SHIFT_ANYTIME;
    c.layer_count = LW_MAX_LAYERS + 1;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_CONFIGURATION);
    c.layer_count = 1;
    c.struct_size = 16;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_ARGUMENT);
    c.struct_size = sizeof c;
    c.shift_betting = 9;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_ARGUMENT);
    c.shift_betting = LW_BETTING_LINEAR;
    c.shift_jump_rate = 1.5;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_CONFIGURATION);
    c.shift_jump_rate = NAN;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_CONFIGURATION);
    c.shift_jump_rate = 0.01;
    c.calibration_correction = 2;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_ARGUMENT);
    c.calibration_correction = 1;
    c.shift_reference = 5;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_ARGUMENT);
    c.shift_reference = LW_SHIFT_REFERENCE_CALIBRATION_AND_STREAM;
    c.reserved = 1;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_ARGUMENT);
    c.reserved = 0;
    /* A program compiled before shift_reference passes a struct ending at shift_jump_rate: the default. */
    c.struct_size = (uint32_t)offsetof(lw_monitor_config, shift_reference);
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_OK);
    EXPECT_STATUS(lw_monitor_close(mon), LW_OK);
    c.struct_size = sizeof c;
    c.shift_reference = LW_SHIFT_REFERENCE_CALIBRATION_SET;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_OK);
    EXPECT_STATUS(lw_monitor_close(mon), LW_OK);
    c.calibration_correction = 2;
    /* A program compiled before the shift detector's fields passes a struct ending at record_rate: the library
     * reads no further (the garbage below is never seen) and uses the defaults. */
    c.struct_size = (uint32_t)offsetof(lw_monitor_config, shift_betting);
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_OK);
    EXPECT_STATUS(lw_monitor_close(mon), LW_OK);
    c.struct_size = (uint32_t)offsetof(lw_monitor_config, shift_betting) - 8;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_ERR_INVALID_ARGUMENT);
    c.struct_size = sizeof c;
    c.shift_betting = LW_BETTING_MIXTURE;
    c.calibration_correction = 1;
    c.shift_jump_rate = 0.001;
    c.on_alert = never_called;
    c.alerts_path = "/nonexistent-dir/alerts.jsonl"; /* fails at delivery, counted, never here */
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_OK);
    CHECK(mon != NULL, "monitor");

    /* Assessing. */
    lw_assessment a = {.struct_size = sizeof a};
    lw_inputs in;
    lw_inputs_init(&in);
    const void *layer[1] = {x};
    size_t len[1] = {n};
    EXPECT_STATUS(lw_monitor_assess(mon, NULL, NULL, &a), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_monitor_assess(mon, &in, NULL, &a), LW_ERR_SHAPE_MISMATCH); /* layer_count 0 */
    in.layer_count = 1;
    EXPECT_STATUS(lw_monitor_assess(mon, &in, NULL, &a), LW_ERR_INVALID_ARGUMENT); /* layers NULL */
    in.layers = layer;
    EXPECT_STATUS(lw_monitor_assess(mon, &in, NULL, &a), LW_ERR_INVALID_ARGUMENT); /* lengths NULL */
    in.lengths = len;
    len[0] = n - 1;
    EXPECT_STATUS(lw_monitor_assess(mon, &in, NULL, &a), LW_ERR_SHAPE_MISMATCH);
    len[0] = n;
    in.dtype = 9;
    EXPECT_STATUS(lw_monitor_assess(mon, &in, NULL, &a), LW_ERR_INVALID_ARGUMENT);
    in.dtype = LW_DTYPE_FLOAT32;
    layer[0] = NULL;
    EXPECT_STATUS(lw_monitor_assess(mon, &in, NULL, &a), LW_ERR_INVALID_ARGUMENT);
    layer[0] = x;
    x[0] = NAN;
    EXPECT_STATUS(lw_monitor_assess(mon, &in, "nan", &a), LW_ERR_NON_FINITE);
    x[0] = 0;
    float outputs[3] = {1, 2, 3};
    in.outputs = outputs;
    in.outputs_length = 3;
    EXPECT_STATUS(lw_monitor_assess(mon, &in, NULL, &a), LW_ERR_INVALID_ARGUMENT); /* not configured */
    in.outputs = NULL;
    EXPECT_STATUS(lw_monitor_assess(mon, &in, NULL, &a), LW_ERR_INVALID_ARGUMENT); /* length without buffer */
    in.outputs_length = 0;
    a.struct_size = 3;
    EXPECT_STATUS(lw_monitor_assess(mon, &in, NULL, &a), LW_ERR_INVALID_ARGUMENT);
    a.struct_size = sizeof a;
    EXPECT_STATUS(lw_monitor_assess((lw_monitor *)m, &in, NULL, &a), LW_ERR_INVALID_HANDLE); /* a model */
    EXPECT_STATUS(lw_monitor_submit(mon, &in, NULL, NULL), LW_ERR_WRONG_STATE); /* inline monitor */
    EXPECT_STATUS(lw_monitor_assess_batch(mon, &in, 0, NULL, &a), LW_ERR_INVALID_ARGUMENT);
    /* After all that, a good input is assessed as the first of the stream. */
    EXPECT_STATUS(lw_monitor_assess(mon, &in, "good", &a), LW_OK);
    CHECK(a.index == 0, "refused inputs left the stream untouched: index %lld", (long long)a.index);
    CHECK(a.layer_count == 1 && isfinite(a.layers[0].surprise), "layer scores");
    lw_monitor_stats stats = {.struct_size = sizeof stats};
    EXPECT_STATUS(lw_monitor_get_stats(mon, &stats), LW_OK);
    CHECK(stats.assessed == 1, "assessed %llu", (unsigned long long)stats.assessed);
    CHECK(stats.refused >= 8, "refused %llu", (unsigned long long)stats.refused);
    /* Binary16 inputs: zeros are zeros. */
    uint16_t *h = calloc(n, sizeof(uint16_t));
    layer[0] = h;
    in.dtype = LW_DTYPE_FLOAT16;
    lw_assessment b = {.struct_size = sizeof b};
    EXPECT_STATUS(lw_monitor_assess(mon, &in, NULL, &b), LW_OK);
    CHECK(b.layers[0].surprise == a.layers[0].surprise, "float16 zeros score as float32 zeros");
    h[1] = 0x7C00; /* +inf */
    EXPECT_STATUS(lw_monitor_assess(mon, &in, NULL, &b), LW_ERR_NON_FINITE);
    free(h);

    EXPECT_STATUS(lw_monitor_close(mon), LW_OK);
    EXPECT_STATUS(lw_monitor_assess(mon, &in, NULL, &a), LW_ERR_INVALID_HANDLE);
    EXPECT_STATUS(lw_monitor_close(mon), LW_ERR_INVALID_HANDLE);
    EXPECT_STATUS(lw_monitor_close(NULL), LW_OK);

    /* Fitting. */
    lw_fit_config fc;
    lw_fit_config_init(&fc);
    lw_activations train;
    lw_activations_init(&train);
    lw_model *fitted = NULL;
    EXPECT_STATUS(lw_fit(NULL, NULL, &fc, &fitted), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_fit(&train, NULL, &fc, &fitted), LW_ERR_INVALID_ARGUMENT); /* rank 0 */
    train.rank = 1;
    train.shape[0] = 4;
    train.count = 10;
    train.length = 39;
    EXPECT_STATUS(lw_fit(&train, NULL, &fc, &fitted), LW_ERR_SHAPE_MISMATCH);
    train.length = 40;
    EXPECT_STATUS(lw_fit(&train, NULL, &fc, &fitted), LW_ERR_INVALID_ARGUMENT); /* values NULL */
    float v[40] = {0};
    train.values = v;
    fc.family = "no-such-family";
    EXPECT_STATUS(lw_fit(&train, NULL, &fc, &fitted), LW_ERR_INVALID_CONFIGURATION);
    fc.family = "gda";
    EXPECT_STATUS(lw_fit(&train, NULL, &fc, &fitted), LW_ERR_INVALID_CONFIGURATION); /* gda without labels */
    CHECK(fitted == NULL, "no model");
    fc.calibration_fraction = 1.5;
    EXPECT_STATUS(lw_fit(&train, NULL, &fc, &fitted), LW_ERR_INVALID_CONFIGURATION);
    fc.calibration_fraction = 0.2;
    fc.calibrate_posterior = 2;
    EXPECT_STATUS(lw_fit(&train, NULL, &fc, &fitted), LW_ERR_INVALID_ARGUMENT);
    fc.calibrate_posterior = 1;
    fc.struct_size = (uint32_t)offsetof(lw_fit_config, calibrate_posterior) - 8;
    EXPECT_STATUS(lw_fit(&train, NULL, &fc, &fitted), LW_ERR_INVALID_ARGUMENT);
    fc.struct_size = sizeof fc;

    /* Sizes that would wrap or exhaust memory are refused before anything is allocated. */
    fc.calibration_fraction = 0.2;
    train.rank = 3;
    train.shape[0] = (int64_t)1 << 31;
    train.shape[1] = (int64_t)1 << 31;
    train.shape[2] = 4;
    train.count = 1;
    train.length = 0;
    EXPECT_STATUS(lw_fit(&train, NULL, &fc, &fitted), LW_ERR_INVALID_ARGUMENT); /* row product overflows */
    train.rank = 1;
    train.shape[0] = 4;
    train.count = (size_t)-1;
    EXPECT_STATUS(lw_fit(&train, NULL, &fc, &fitted), LW_ERR_INVALID_ARGUMENT); /* count beyond INT64_MAX */
    {
        /* 10 rows of a 200,704-wide flattened layer: 2 x 322 GB of statistics per class. */
        size_t wide = 200704;
        float *big = calloc(10 * wide, sizeof(float));
        lw_activations w;
        lw_activations_init(&w);
        w.rank = 1;
        w.shape[0] = (int64_t)wide;
        w.values = big;
        w.count = 10;
        w.length = 10 * wide;
        fc.family = "gmm-diag";
        EXPECT_STATUS(lw_fit(&w, NULL, &fc, &fitted), LW_ERR_FIT_FAILED);
        CHECK(strstr(lw_last_error(), "MiB") != NULL, "message says why: %s", lw_last_error());
        fc.family = "gda";
        free(big);
    }
    EXPECT_STATUS(lw_model_load_bytes(junk, (size_t)-1, &copy), LW_ERR_INVALID_ARGUMENT);
    {
        lw_monitor_config c2;
        lw_monitor_config_init(&c2);
        const lw_model *ms[1] = {m};
        c2.layer_count = 1;
        c2.models = ms;
        c2.window_length = 0xFFFFFFFFu;
        EXPECT_STATUS(lw_monitor_create(&c2, &mon), LW_ERR_INVALID_CONFIGURATION);
        c2.window_length = 200;
        c2.mode = LW_MODE_BACKGROUND;
        c2.batch_size = 0xFFFFFFFFu;
        EXPECT_STATUS(lw_monitor_create(&c2, &mon), LW_ERR_INVALID_CONFIGURATION);
        c2.batch_size = 32;
        c2.queue_capacity = 0xFFFFFFFFu;
        EXPECT_STATUS(lw_monitor_create(&c2, &mon), LW_ERR_INVALID_CONFIGURATION);
        c2.queue_capacity = 4;
        c2.batch_size = 2;
        c2.overflow = LW_OVERFLOW_REJECT;
        c2.outputs = LW_OUTPUTS_LOGITS;
        c2.output_count = 3;
        c2.record_path = "/tmp/lw-capi-never.lwr";
        EXPECT_STATUS(lw_monitor_create(&c2, &mon), LW_ERR_INVALID_CONFIGURATION); /* background cannot record outputs */
        CHECK(access("/tmp/lw-capi-never.lwr", F_OK) != 0, "a refused configuration left a recording file");
        c2.record_path = NULL;
        /* A model without calibration scores could never alert: refused. */
        lw_fit_config nc;
        lw_fit_config_init(&nc);
        nc.family = "gmm-diag";
        nc.mixture_components = 1;
        nc.calibration_fraction = 0;
        float vals[80];
        for (int i = 0; i < 80; i++) vals[i] = (float)((i * 7) % 11);
        lw_activations a2;
        lw_activations_init(&a2);
        a2.rank = 1;
        a2.shape[0] = 4;
        a2.values = vals;
        a2.count = 20;
        a2.length = 80;
        lw_model *uncal = NULL;
        EXPECT_STATUS(lw_fit(&a2, NULL, &nc, &uncal), LW_OK);
        const lw_model *us[1] = {uncal};
        c2.models = us;
        EXPECT_STATUS(lw_monitor_create(&c2, &mon), LW_ERR_INVALID_CONFIGURATION);
        EXPECT_STATUS(lw_model_free(uncal), LW_OK);
        /* A background monitor with outputs: the outputs are refused by submit; a full queue rejects. */
        c2.models = ms;
        c2.record_path = NULL;
        lw_monitor *bg = NULL;
        EXPECT_STATUS(lw_monitor_create(&c2, &bg), LW_OK);
        lw_inputs bi;
        lw_inputs_init(&bi);
        const void *bl[1] = {x};
        size_t blen[1] = {n};
        bi.layer_count = 1;
        bi.layers = bl;
        bi.lengths = blen;
        float outs[3] = {1, 2, 3};
        bi.outputs = outs;
        bi.outputs_length = 3;
        int32_t accepted = 0;
        EXPECT_STATUS(lw_monitor_submit(bg, &bi, NULL, &accepted), LW_ERR_INVALID_ARGUMENT);
        bi.outputs = NULL;
        bi.outputs_length = 0;
        int rejected = 0;
        for (int i = 0; i < 200; i++) {
            int st = lw_monitor_submit(bg, &bi, NULL, &accepted);
            if (st == LW_ERR_QUEUE_FULL) rejected++;
            else CHECK(st == LW_OK, "submit %d: %s", i, lw_status_name(st));
        }
        CHECK(rejected > 0, "a queue of 4 under 200 immediate submits rejected none");
        EXPECT_STATUS(lw_monitor_flush(bg, 30000), LW_OK);
        lw_monitor_stats bs = {.struct_size = sizeof bs};
        EXPECT_STATUS(lw_monitor_get_stats(bg, &bs), LW_OK);
        CHECK(bs.assessed + bs.dropped == 200, "assessed %llu + dropped %llu != 200", (unsigned long long)bs.assessed,
              (unsigned long long)bs.dropped);
        EXPECT_STATUS(lw_monitor_close(bg), LW_OK);
    }
    {
        /* An inline monitor with logits: NaN outputs are NON_FINITE; a successful batch with a wider stride. */
        lw_monitor_config c3;
        lw_monitor_config_init(&c3);
        const lw_model *ms[1] = {m};
        c3.layer_count = 1;
        c3.models = ms;
        c3.outputs = LW_OUTPUTS_LOGITS;
        c3.output_count = 3;
        lw_monitor *om = NULL;
        EXPECT_STATUS(lw_monitor_create(&c3, &om), LW_OK);
        float *rows3 = calloc(3 * n, sizeof(float));
        float outs[9] = {1, 2, 3, 3, 2, 1, 0, 0, 5};
        const void *ol[1] = {rows3};
        size_t olen[1] = {3 * n};
        lw_inputs oi;
        lw_inputs_init(&oi);
        oi.layer_count = 1;
        oi.layers = ol;
        oi.lengths = olen;
        oi.outputs = outs;
        oi.outputs_length = 9;
        size_t stride = sizeof(lw_assessment) + 16;
        unsigned char *buf = aligned_alloc(8, 3 * stride);
        ((lw_assessment *)buf)->struct_size = (uint32_t)stride;
        EXPECT_STATUS(lw_monitor_assess_batch(om, &oi, 3, NULL, (lw_assessment *)buf), LW_OK);
        for (int r = 0; r < 3; r++) {
            lw_assessment *e = (lw_assessment *)(buf + r * stride);
            CHECK(e->index == r && e->struct_size == stride && e->output_predicted == (r == 0 ? 2 : r == 1 ? 0 : 2),
                  "batch entry %d: index %lld predicted %lld", r, (long long)e->index, (long long)e->output_predicted);
        }
        ((lw_assessment *)buf)->struct_size = (uint32_t)(sizeof(lw_assessment) + 4); /* not a multiple of 8 */
        EXPECT_STATUS(lw_monitor_assess_batch(om, &oi, 3, NULL, (lw_assessment *)buf), LW_ERR_INVALID_ARGUMENT);
        ((lw_assessment *)buf)->struct_size = (uint32_t)stride;
        EXPECT_STATUS(lw_monitor_assess_batch(om, &oi, (size_t)-1, NULL, (lw_assessment *)buf), LW_ERR_INVALID_ARGUMENT);
        outs[4] = NAN;
        EXPECT_STATUS(lw_monitor_assess_batch(om, &oi, 3, NULL, (lw_assessment *)buf), LW_ERR_NON_FINITE);
        outs[4] = 2;
        /* Misaligned activations. */
        ol[0] = (const char *)rows3 + 1;
        olen[0] = n;
        oi.outputs_length = 3;
        lw_assessment one = {.struct_size = sizeof one};
        EXPECT_STATUS(lw_monitor_assess(om, &oi, NULL, &one), LW_ERR_INVALID_ARGUMENT);
        lw_monitor_stats os = {.struct_size = sizeof os};
        EXPECT_STATUS(lw_monitor_get_stats(om, &os), LW_OK);
        CHECK(os.assessed == 3 && os.refused == 3 + 1, "assessed %llu refused %llu", (unsigned long long)os.assessed,
              (unsigned long long)os.refused);
        EXPECT_STATUS(lw_monitor_close(om), LW_OK);
        free(buf);
        free(rows3);
    }

    EXPECT_STATUS(lw_model_write(m, "/nonexistent-dir/x.lwm", 0, 0), LW_ERR_IO);
    EXPECT_STATUS(lw_model_write(m, NULL, 0, 0), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_model_write(m, "/tmp/x.lwm", 7, 0), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_model_write(m, "/tmp/x.lwm", 0, 99), LW_ERR_INVALID_ARGUMENT);

    EXPECT_STATUS(lw_model_free(m), LW_OK);
    free(x);
    free(two);
    if (!failures) printf("errors: all cases returned their status\n");
    return failures ? 1 : 0;
}

/* ---- threads: many threads assess and score at once ---- */

typedef struct {
    lw_monitor *monitor;
    lw_model *model;
    const float *data;
    size_t rows, dim;
    const double *expected; /* single-threaded surprise per row */
    int bad;
} worker_args;

static void *worker(void *p) {
    worker_args *w = p;
    lw_inputs in;
    lw_inputs_init(&in);
    const void *layer[1];
    in.layer_count = 1;
    in.layers = layer;
    in.lengths = &w->dim;
    for (size_t r = 0; r < w->rows; r++) {
        layer[0] = w->data + r * w->dim;
        lw_assessment a = {.struct_size = sizeof a};
        if (lw_monitor_assess(w->monitor, &in, NULL, &a) != LW_OK) w->bad++;
        if (a.layers[0].surprise != w->expected[r]) w->bad++;
        lw_scores s = {.struct_size = sizeof s};
        if (lw_model_score(w->model, w->data + r * w->dim, w->dim, &s) != LW_OK) w->bad++;
        if (s.surprise != w->expected[r]) w->bad++;
        /* A bad call on this thread does not disturb the others. */
        if (r % 97 == 0 && lw_model_score(w->model, NULL, w->dim, &s) != LW_ERR_INVALID_ARGUMENT) w->bad++;
    }
    return NULL;
}

static atomic_long alerts_seen = 0;
static void count_alert(const lw_alert *a, void *ctx) {
    (void)a;
    (void)ctx;
    atomic_fetch_add(&alerts_seen, 1);
}

static int run_threads(const char *model_path, const char *raw, int threads) {
    lw_model *m = load(model_path);
    size_t total = 0;
    float *data = read_raw(raw, &total);
    size_t dim = input_count(m);
    size_t rows = total / dim;
    if (rows > 500) rows = 500;
    double *expected = malloc(rows * sizeof(double));
    for (size_t r = 0; r < rows; r++) {
        lw_scores s = {.struct_size = sizeof s};
        if (lw_model_score(m, data + r * dim, dim, &s) != LW_OK) exit(2);
        expected[r] = s.surprise;
    }
    lw_monitor_config c;
    lw_monitor_config_init(&c);
    const lw_model *models[1] = {m};
    c.layer_count = 1;
    c.models = models;
    c.on_alert = count_alert;
    lw_monitor *mon = NULL;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_OK);
    pthread_t t[64];
    worker_args w[64];
    for (int i = 0; i < threads; i++) {
        w[i] = (worker_args){mon, m, data, rows, dim, expected, 0};
        pthread_create(&t[i], NULL, worker, &w[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].bad == 0, "thread %d: %d mismatches", i, w[i].bad);
    }
    EXPECT_STATUS(lw_monitor_flush(mon, 10000), LW_OK);
    lw_monitor_stats stats = {.struct_size = sizeof stats};
    EXPECT_STATUS(lw_monitor_get_stats(mon, &stats), LW_OK);
    CHECK(stats.assessed == (uint64_t)threads * rows, "assessed %llu", (unsigned long long)stats.assessed);
    CHECK(stats.alerts == (uint64_t)atomic_load(&alerts_seen), "alerts %llu vs %ld", (unsigned long long)stats.alerts,
          atomic_load(&alerts_seen));
    EXPECT_STATUS(lw_monitor_close(mon), LW_OK);
    EXPECT_STATUS(lw_model_free(m), LW_OK);
    free(data);
    free(expected);
    if (!failures) printf("threads: %d threads × %zu inputs, all equal to the single-threaded scores\n", threads, rows);
    return failures ? 1 : 0;
}

/* ---- allocations: steady-state calls allocate nothing ---- */

static int run_allocations(const char *model_path, const char *raw) {
    lw_model *m = load(model_path);
    size_t total = 0;
    float *data = read_raw(raw, &total);
    size_t dim = input_count(m);
    size_t rows = total / dim;
    lw_monitor_config c;
    lw_monitor_config_init(&c);
    const lw_model *models[1] = {m};
    c.layer_count = 1;
    c.models = models;
    lw_monitor *mon = NULL;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_OK);
    lw_inputs in;
    lw_inputs_init(&in);
    const void *layer[1];
    in.layer_count = 1;
    in.layers = layer;
    in.lengths = &dim;
    lw_assessment a = {.struct_size = sizeof a};
    lw_scores s = {.struct_size = sizeof s};
    /* Warm up: per-thread buffers, workspaces, lazily initialised runtime state. */
    size_t measured = rows < 200 ? rows : 200;
    for (int rep = 0; rep < 3; rep++) {
        for (size_t r = 0; r < measured; r++) {
            layer[0] = data + r * dim;
            lw_monitor_assess(mon, &in, "warm", &a);
            lw_model_score(m, data + r * dim, dim, &s);
        }
    }
    /* Count allocations per call; a call that raises an alert (an input flagged, or an episode opening or
     * closing) allocates the alert, as documented, and is left out. */
    long calls = 0, counted = 0, skipped = 0;
    uint32_t previous = 0;
    for (int rep = 0; rep < 10; rep++) {
        for (size_t r = 0; r < measured; r++) {
            layer[0] = data + r * dim;
            atomic_store(&allocations, 0);
            counting = 1;
            int sa = lw_monitor_assess(mon, &in, "req-12345", &a);
            int sb = lw_model_score(m, data + r * dim, dim, &s);
            counting = 0;
            if (sa != LW_OK || sb != LW_OK) failures++;
            if (a.flags != 0 || previous != 0) {
                skipped++;
            } else {
                counted += atomic_load(&allocations);
                calls += 2;
            }
            previous = a.flags;
        }
    }
    printf("allocations: %ld in %ld calls (lw_monitor_assess and lw_model_score, %zu floats per input; %ld inputs "
           "that raised alerts left out)\n",
           counted, calls, dim, skipped);
    CHECK(calls > 1000, "too few calls without alerts: %ld", calls);
    CHECK(counted == 0, "steady-state calls allocated %ld times", counted);
    EXPECT_STATUS(lw_monitor_close(mon), LW_OK);
    EXPECT_STATUS(lw_model_free(m), LW_OK);
    free(data);
    return failures ? 1 : 0;
}

/* ---- fit: from buffers, write, load, background monitor ---- */

static atomic_long fit_alerts = 0;
static void count_fit_alert(const lw_alert *a, void *ctx) {
    (void)ctx;
    if (a->kind == LW_ALERT_INPUT) atomic_fetch_add(&fit_alerts, 1);
}

/* The largest relative difference of two models' surprise over every 7th row (|surprise| below 1 counts as 1). */
static double surprise_difference(const lw_model *x, const lw_model *y, const float *data, size_t rows, size_t dim) {
    double worst = 0;
    for (size_t r = 0; r < rows && x && y; r += 7) {
        lw_scores a = {.struct_size = sizeof a}, b = {.struct_size = sizeof b};
        EXPECT_STATUS(lw_model_score(x, data + r * dim, dim, &a), LW_OK);
        EXPECT_STATUS(lw_model_score(y, data + r * dim, dim, &b), LW_OK);
        double d = fabs(a.surprise - b.surprise) / (fabs(b.surprise) > 1 ? fabs(b.surprise) : 1);
        if (d > worst) worst = d;
    }
    return worst;
}

static int run_fit(const char *raw, const char *labels_raw, size_t dim, const char *out_path) {
    size_t total = 0, nl = 0;
    float *data = read_raw(raw, &total);
    int64_t *labels = read_file(labels_raw, "<i8", sizeof(int64_t), &nl);
    size_t rows = total / dim;
    if (nl != rows) {
        fprintf(stderr, "%zu labels for %zu rows\n", nl, rows);
        exit(2);
    }
    lw_activations train;
    lw_activations_init(&train);
    train.rank = 1;
    train.shape[0] = (int64_t)dim;
    train.values = data;
    train.length = total;
    train.count = rows;
    train.labels = labels;
    lw_fit_config fc;
    lw_fit_config_init(&fc);
    fc.layer_name = "fitted-from-c";
    lw_model *m = NULL;
    EXPECT_STATUS(lw_fit(&train, NULL, &fc, &m), LW_OK);
    EXPECT_STATUS(lw_model_write(m, out_path, LW_DTYPE_FLOAT16, 0), LW_OK);
    lw_model *back = load(out_path);
    lw_model_info info = {.struct_size = sizeof info};
    EXPECT_STATUS(lw_model_get_info(back, &info), LW_OK);
    CHECK(strcmp(info.layer, "fitted-from-c") == 0, "layer %s", info.layer);
    CHECK(strcmp(info.family, "gda") == 0, "family %s", info.family);
    CHECK(info.has_fingerprint == 1 && info.precision == LW_DTYPE_FLOAT16, "fingerprint and precision");
    CHECK(info.input_count == dim && info.input_rank == 1 && info.input_shape[0] == (int64_t)dim, "shape");
    CHECK(info.calibration_count > 0 && info.fit_samples + info.calibration_count == rows, "split %llu + %llu",
          (unsigned long long)info.fit_samples, (unsigned long long)info.calibration_count);
    printf("fit: %llu rows fitted, %llu calibration, fingerprint %08x\n", (unsigned long long)info.fit_samples,
           (unsigned long long)info.calibration_count, info.fingerprint);

    /* Background monitor: submit everything, flush, then the callback has seen every alert. */
    lw_monitor_config c;
    lw_monitor_config_init(&c);
    const lw_model *models[1] = {back};
    c.layer_count = 1;
    c.models = models;
    c.mode = LW_MODE_BACKGROUND;
    c.queue_capacity = (uint32_t)(rows + 8);
    c.on_alert = count_fit_alert;
    lw_monitor *mon = NULL;
    EXPECT_STATUS(lw_monitor_create(&c, &mon), LW_OK);
    lw_inputs in;
    lw_inputs_init(&in);
    const void *layer[1];
    in.layer_count = 1;
    in.layers = layer;
    in.lengths = &dim;
    float *shifted = malloc(dim * sizeof(float));
    size_t accepted_total = 0;
    for (size_t r = 0; r < rows; r++) {
        int32_t accepted = 0;
        /* The last tenth is shifted far from the data: these inputs must raise input alerts. */
        const float *row = data + r * dim;
        if (r >= rows - rows / 10) {
            for (size_t i = 0; i < dim; i++) shifted[i] = row[i] * 3.0f + 5.0f;
            row = shifted;
        }
        layer[0] = row;
        EXPECT_STATUS(lw_monitor_submit(mon, &in, NULL, &accepted), LW_OK);
        accepted_total += (size_t)accepted;
    }
    CHECK(accepted_total == rows, "accepted %zu of %zu", accepted_total, rows);
    EXPECT_STATUS(lw_monitor_flush(mon, 60000), LW_OK);
    lw_monitor_stats st = {.struct_size = sizeof st};
    EXPECT_STATUS(lw_monitor_get_stats(mon, &st), LW_OK);
    CHECK(st.assessed == rows && st.queued == 0 && st.dropped == 0, "assessed %llu queued %llu",
          (unsigned long long)st.assessed, (unsigned long long)st.queued);
    long seen = atomic_load(&fit_alerts);
    CHECK(seen >= (long)(rows / 10) * 9 / 10, "input alerts %ld for %zu shifted inputs", seen, rows / 10);
    printf("fit: background monitor assessed %llu, %ld input alerts delivered by flush\n",
           (unsigned long long)st.assessed, seen);

    /* Replacing the monitor's model: the fitted float32 model in place of its float16 copy; then refusals. */
    const lw_model *replacement[1] = {m};
    EXPECT_STATUS(lw_monitor_replace_models(mon, replacement, 1), LW_OK);
    EXPECT_STATUS(lw_monitor_replace_models(mon, replacement, 2), LW_ERR_INVALID_CONFIGURATION);
    EXPECT_STATUS(lw_monitor_replace_models(mon, NULL, 1), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_monitor_replace_models(NULL, replacement, 1), LW_ERR_INVALID_HANDLE);
    /* A model of half the activation size. */
    size_t half = dim / 2;
    float *narrow = malloc(rows * half * sizeof(float));
    for (size_t r = 0; r < rows; r++) memcpy(narrow + r * half, data + r * dim, half * sizeof(float));
    lw_activations small = train;
    small.shape[0] = (int64_t)half;
    small.values = narrow;
    small.length = rows * half;
    lw_model *smaller = NULL;
    EXPECT_STATUS(lw_fit(&small, NULL, &fc, &smaller), LW_OK);
    const lw_model *wrong[1] = {smaller};
    EXPECT_STATUS(lw_monitor_replace_models(mon, wrong, 1), LW_ERR_INVALID_CONFIGURATION);
    CHECK(strstr(lw_last_error(), "takes") != NULL, "message: %s", lw_last_error());
    layer[0] = data;
    EXPECT_STATUS(lw_monitor_submit(mon, &in, NULL, NULL), LW_OK);
    EXPECT_STATUS(lw_monitor_flush(mon, 60000), LW_OK);
    lw_monitor_stats after = {.struct_size = sizeof after};
    EXPECT_STATUS(lw_monitor_get_stats(mon, &after), LW_OK);
    CHECK(after.replacements == 1 && after.assessed == rows + 1, "replacements %llu, assessed %llu",
          (unsigned long long)after.replacements, (unsigned long long)after.assessed);
    /* A program compiled before `replacements` passes a shorter struct: filled up to alerts. */
    lw_monitor_stats older = {.struct_size = offsetof(lw_monitor_stats, replacements), .replacements = 77};
    EXPECT_STATUS(lw_monitor_get_stats(mon, &older), LW_OK);
    CHECK(older.struct_size == offsetof(lw_monitor_stats, replacements) && older.replacements == 77,
          "old stats struct: size %u, replacements %llu", older.struct_size, (unsigned long long)older.replacements);
    printf("replace: 1 replacement, %llu inputs assessed, wrong count, null and narrower models refused\n",
           (unsigned long long)after.assessed);
    EXPECT_STATUS(lw_monitor_close(mon), LW_OK);

    /* A neighbour index: its size, the scores it adds (one input, a batch, an older lw_scores), a model file
     * round trip, and the refusals. */
    {
        CHECK(fc.neighbour_rows == 0 && fc.neighbour_cells == 0 && fc.neighbour_probes == 0 &&
                  fc.neighbour_index == LW_NEIGHBOURS_AUTOMATIC,
              "neighbour defaults");
        lw_fit_config fn = fc;
        fn.neighbour_cells = 4;
        fn.neighbour_index = LW_NEIGHBOURS_OFF;
        lw_model *refused = NULL;
        EXPECT_STATUS(lw_fit(&train, NULL, &fn, &refused), LW_ERR_INVALID_CONFIGURATION);
        CHECK(strstr(lw_last_error(), "LW_NEIGHBOURS_OFF") != NULL, "message: %s", lw_last_error());
        fn.neighbour_index = 7;
        EXPECT_STATUS(lw_fit(&train, NULL, &fn, &refused), LW_ERR_INVALID_CONFIGURATION);
        CHECK(strstr(lw_last_error(), "neighbour_index") != NULL, "message: %s", lw_last_error());
        /* The default (automatic) leaves the index out of a fit calibrated on fewer than 1,000 rows, as `back`
         * below was; a required one is kept whatever the calibration. */
        fn.neighbour_index = LW_NEIGHBOURS_REQUIRED;
        fn.neighbour_rows = 300;
        lw_model *nm = NULL;
        EXPECT_STATUS(lw_fit(&train, NULL, &fn, &nm), LW_OK);
        char nb_path[4096];
        snprintf(nb_path, sizeof nb_path, "%s.neighbours.lwm", out_path);
        EXPECT_STATUS(lw_model_write(nm, nb_path, LW_DTYPE_FLOAT32, 0), LW_OK);
        lw_model *nb = load(nb_path);
        lw_model_info ni = {.struct_size = sizeof ni};
        EXPECT_STATUS(lw_model_get_info(nb, &ni), LW_OK);
        size_t kept = info.fit_samples < 300 ? (size_t)info.fit_samples : 300;
        CHECK(ni.neighbour_count == kept, "neighbour_count %llu, expected %zu", (unsigned long long)ni.neighbour_count,
              kept);
        lw_model_info no = {.struct_size = sizeof no, .neighbour_count = 9};
        EXPECT_STATUS(lw_model_get_info(back, &no), LW_OK);
        CHECK(no.neighbour_count == 0, "a model without an index: neighbour_count %llu",
              (unsigned long long)no.neighbour_count);
        lw_scores plain_s = {.struct_size = sizeof plain_s};
        EXPECT_STATUS(lw_model_score(back, data, dim, &plain_s), LW_OK);
        CHECK(isnan(plain_s.neighbour_distance) && plain_s.epistemic_p_value == plain_s.surprise_p_value,
              "without an index: distance %g, epistemic p %g, surprise p %g", plain_s.neighbour_distance,
              plain_s.epistemic_p_value, plain_s.surprise_p_value);
        lw_scores near = {.struct_size = sizeof near}, far = {.struct_size = sizeof far};
        EXPECT_STATUS(lw_model_score(nb, data, dim, &near), LW_OK);
        for (size_t i = 0; i < dim; i++) shifted[i] = data[i] * 3.0f + 5.0f;
        EXPECT_STATUS(lw_model_score(nb, shifted, dim, &far), LW_OK);
        CHECK(near.neighbour_distance >= 0 && far.neighbour_distance > near.neighbour_distance,
              "neighbour distances %g, shifted %g", near.neighbour_distance, far.neighbour_distance);
        /* The shifted input is beyond every calibration input on both scores: at most 2 / (n + 1), the second
         * count being a calibration input that is the most extreme of its calibration on both (a tie). */
        CHECK(near.epistemic_p_value > 0 && near.epistemic_p_value <= 1 &&
                  far.epistemic_p_value <= 2.0 / (double)(info.calibration_count + 1) + 1e-12,
              "epistemic p %g, shifted %g", near.epistemic_p_value, far.epistemic_p_value);
        /* A program compiled before the neighbour fields: filled up to spread_p_value. */
        lw_scores older_s = {.struct_size = offsetof(lw_scores, neighbour_distance), .neighbour_distance = 42,
                             .epistemic_p_value = 43};
        EXPECT_STATUS(lw_model_score(nb, data, dim, &older_s), LW_OK);
        CHECK(older_s.neighbour_distance == 42 && older_s.epistemic_p_value == 43 &&
                  older_s.surprise == near.surprise, "older lw_scores");
        size_t n = 16;
        double dist[16], ep[16];
        lw_score_columns cols = {.struct_size = sizeof cols, .neighbour_distance = dist, .epistemic_p_value = ep};
        EXPECT_STATUS(lw_model_score_batch(nb, data, n * dim, n, &cols), LW_OK);
        CHECK(fabs(dist[0] - near.neighbour_distance) <= 1e-6 * (1 + near.neighbour_distance) &&
                  fabs(ep[0] - near.epistemic_p_value) <= 1e-9, "batch row 0: %g %g against %g %g", dist[0], ep[0],
              near.neighbour_distance, near.epistemic_p_value);
        printf("neighbours: %llu rows indexed, distance %.4g (shifted %.4g), epistemic p %.4g (shifted %.4g)\n",
               (unsigned long long)ni.neighbour_count, near.neighbour_distance, far.neighbour_distance,
               near.epistemic_p_value, far.epistemic_p_value);
        EXPECT_STATUS(lw_model_free(nb), LW_OK);
        EXPECT_STATUS(lw_model_free(nm), LW_OK);
    }

    /* Jointly calibrated fusion: a second "layer" (the same rows, transformed), both fits carving the same
     * calibration rows; then the refusals, and monitors that use the joint calibration or refuse to go without. */
    float *other = malloc(total * sizeof(float));
    for (size_t i = 0; i < total; i++) other[i] = data[i] * 0.5f + data[(i / dim) * dim + (i + 1) % dim];
    lw_activations train2 = train;
    train2.values = other;
    lw_fit_config fc2 = fc;
    fc2.layer_name = "second";
    lw_model *m2 = NULL;
    EXPECT_STATUS(lw_fit(&train2, NULL, &fc2, &m2), LW_OK);
    const lw_model *pair[2] = {m, m2};
    const lw_activations *pair_rows[2] = {&train, &train2};
    lw_model *joint[2] = {NULL, NULL};
    EXPECT_STATUS(lw_calibrate_jointly(pair, pair_rows, 1, &fc, LW_JOINT_CAUCHY, joint), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_calibrate_jointly(NULL, pair_rows, 2, &fc, LW_JOINT_CAUCHY, joint), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_calibrate_jointly(pair, NULL, 2, &fc, LW_JOINT_CAUCHY, joint), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_calibrate_jointly(pair, pair_rows, 2, &fc, 7, joint), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_calibrate_jointly(pair, pair_rows, 2, &fc, LW_JOINT_CAUCHY, NULL), LW_ERR_INVALID_ARGUMENT);
    const lw_activations *narrow_rows[2] = {&train, &small};
    EXPECT_STATUS(lw_calibrate_jointly(pair, narrow_rows, 2, &fc, LW_JOINT_CAUCHY, joint), LW_ERR_SHAPE_MISMATCH);
    /* Every row instead of the carved calibration rows: not the models' calibration inputs. */
    EXPECT_STATUS(lw_calibrate_jointly(pair, pair_rows, 2, NULL, LW_JOINT_CAUCHY, joint), LW_ERR_INVALID_CONFIGURATION);
    CHECK(strstr(lw_last_error(), "not the ones its model was calibrated on") != NULL, "message: %s", lw_last_error());
    CHECK(joint[0] == NULL && joint[1] == NULL, "a refused call leaves out NULL");
    EXPECT_STATUS(lw_calibrate_jointly(pair, pair_rows, 2, &fc, LW_JOINT_CAUCHY, joint), LW_OK);
    lw_model_info ji = {.struct_size = sizeof ji};
    EXPECT_STATUS(lw_model_get_info(joint[1], &ji), LW_OK);
    CHECK(ji.joint_count == info.calibration_count, "joint_count %llu, calibration %llu",
          (unsigned long long)ji.joint_count, (unsigned long long)info.calibration_count);
    lw_model_info plain = {.struct_size = sizeof plain, .joint_count = 99};
    EXPECT_STATUS(lw_model_get_info(m, &plain), LW_OK);
    CHECK(plain.joint_count == 0, "a model without a joint calibration: joint_count %llu",
          (unsigned long long)plain.joint_count);
    /* A struct ending at posterior_temperature is filled up to there. */
    lw_model_info shorter = {.struct_size = offsetof(lw_model_info, joint_count), .joint_count = 5};
    EXPECT_STATUS(lw_model_get_info(joint[0], &shorter), LW_OK);
    CHECK(shorter.joint_count == 5 && shorter.struct_size == offsetof(lw_model_info, joint_count), "short info");
    lw_monitor_config jc;
    lw_monitor_config_init(&jc);
    CHECK(jc.fusion == LW_FUSION_AUTOMATIC, "default fusion %d", jc.fusion);
    jc.layer_count = 2;
    jc.models = pair;
    jc.fusion = LW_FUSION_CALIBRATED;
    lw_monitor *jm = NULL;
    EXPECT_STATUS(lw_monitor_create(&jc, &jm), LW_ERR_INVALID_CONFIGURATION);
    CHECK(strstr(lw_last_error(), "calibrate") != NULL, "message: %s", lw_last_error());
    jc.models = (const lw_model *const *)joint;
    EXPECT_STATUS(lw_monitor_create(&jc, &jm), LW_OK);
    const void *two[2] = {data, other};
    size_t two_lengths[2] = {dim, dim};
    lw_inputs ji2;
    lw_inputs_init(&ji2);
    ji2.layer_count = 2;
    ji2.layers = two;
    ji2.lengths = two_lengths;
    lw_assessment ja = {.struct_size = sizeof ja};
    EXPECT_STATUS(lw_monitor_assess(jm, &ji2, NULL, &ja), LW_OK);
    CHECK(ja.fused_p_value > 0 && ja.fused_p_value <= 1, "fused p %g", ja.fused_p_value);
    EXPECT_STATUS(lw_monitor_close(jm), LW_OK);
    printf("joint: %llu joint calibration inputs; fused p of the first row %g\n", (unsigned long long)ji.joint_count,
           ja.fused_p_value);
    EXPECT_STATUS(lw_model_free(joint[0]), LW_OK);
    EXPECT_STATUS(lw_model_free(joint[1]), LW_OK);
    EXPECT_STATUS(lw_model_free(m2), LW_OK);
    free(other);

    /* Sharded fitting: two halves' statistics, round-tripped through bytes and a file, merged, fitted with explicit
     * calibration rows; the model scores as lw_fit on all rows with the same calibration. */
    size_t cut = rows / 2;
    lw_activations first = train, second = train;
    first.count = cut;
    first.length = cut * dim;
    second.values = data + cut * dim;
    second.labels = labels + cut;
    second.count = rows - cut;
    second.length = (rows - cut) * dim;
    lw_statistics *s1 = NULL, *s2 = NULL;
    EXPECT_STATUS(lw_statistics_gather(&first, &fc, 0, &s1), LW_OK);
    EXPECT_STATUS(lw_statistics_gather(&second, &fc, (int64_t)cut, &s2), LW_OK);
    size_t need = 0;
    EXPECT_STATUS(lw_statistics_encode(s2, NULL, 0, &need), LW_ERR_BUFFER_TOO_SMALL);
    unsigned char *bytes = malloc(need);
    EXPECT_STATUS(lw_statistics_encode(s2, bytes, need, &need), LW_OK);
    lw_statistics *s2back = NULL;
    EXPECT_STATUS(lw_statistics_load_bytes(bytes, need, &s2back), LW_OK);
    lw_statistics *refused = NULL;
    EXPECT_STATUS(lw_statistics_load_bytes(bytes, need / 2, &refused), LW_ERR_MALFORMED_FILE);
    char stats_path[4096];
    snprintf(stats_path, sizeof stats_path, "%s.lws", out_path);
    EXPECT_STATUS(lw_statistics_write(s1, stats_path), LW_OK);
    lw_statistics *s1back = NULL;
    EXPECT_STATUS(lw_statistics_load(stats_path, &s1back), LW_OK);
    EXPECT_STATUS(lw_statistics_load(out_path, &refused), LW_ERR_MALFORMED_FILE); /* a model file */
    CHECK(refused == NULL, "a refused load leaves *out NULL");
    EXPECT_STATUS(lw_statistics_merge(s1back, s2back), LW_OK);
    EXPECT_STATUS(lw_statistics_merge(s1back, s2), LW_ERR_FIT_FAILED); /* the second half twice */
    CHECK(strstr(lw_last_error(), "in two") != NULL, "message: %s", lw_last_error());
    lw_statistics_info si = {.struct_size = sizeof si};
    EXPECT_STATUS(lw_statistics_get_info(s1back, &si), LW_OK);
    CHECK(si.samples == rows && si.range_count == 1 && si.first_row == 0 && si.end_row == (int64_t)rows,
          "info: %llu samples, %llu ranges, [%lld, %lld)", (unsigned long long)si.samples,
          (unsigned long long)si.range_count, (long long)si.first_row, (long long)si.end_row);
    CHECK(strcmp(si.layer, "fitted-from-c") == 0 && strcmp(si.family, "gda") == 0 && si.input_rank == 1 &&
              si.input_shape[0] == (int64_t)dim,
          "info: layer %s family %s", si.layer, si.family);
    lw_activations calibration = train; /* all rows, labelled */
    lw_model *from_stats = NULL, *one_pass = NULL;
    EXPECT_STATUS(lw_statistics_fit(s1back, NULL, &from_stats), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_statistics_fit(s1back, &small, &from_stats), LW_ERR_SHAPE_MISMATCH);
    EXPECT_STATUS(lw_statistics_fit(s1back, &calibration, &from_stats), LW_OK);
    EXPECT_STATUS(lw_fit(&train, &calibration, &fc, &one_pass), LW_OK);
    double worst = surprise_difference(from_stats, one_pass, data, rows, dim);
    CHECK(worst <= 1e-5, "sharded and one-pass surprise differ by %g relative", worst);
    lw_fit_config unknown = fc;
    unknown.family = "no-such-family";
    lw_statistics *none = NULL;
    EXPECT_STATUS(lw_statistics_gather(&first, &unknown, 0, &none), LW_ERR_INVALID_CONFIGURATION);
    EXPECT_STATUS(lw_statistics_gather(&first, &fc, -1, &none), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_statistics_gather(NULL, &fc, 0, &none), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_statistics_merge(s1back, NULL), LW_ERR_INVALID_HANDLE);
    EXPECT_STATUS(lw_statistics_get_info((lw_statistics *)m, &si), LW_ERR_INVALID_HANDLE); /* a model handle */
    EXPECT_STATUS(lw_statistics_free(NULL), LW_OK);
    printf("statistics: two halves merged (%llu rows), sharded and one-pass surprise within %.2g relative\n",
           (unsigned long long)si.samples, worst);
    /* A program compiled against ABI version 2 passes the struct that ends at family: filled up to there. */
    lw_statistics_info v2 = {.struct_size = offsetof(lw_statistics_info, kind), .kind = 77};
    EXPECT_STATUS(lw_statistics_get_info(s1back, &v2), LW_OK);
    CHECK(v2.struct_size == offsetof(lw_statistics_info, kind) && v2.kind == 77 && v2.samples == rows,
          "old info struct: size %u, kind %d", v2.struct_size, v2.kind);
    CHECK(si.kind == LW_STATISTICS_SHARD && si.round == 0 && strcmp(si.fingerprint, "") == 0 &&
              isnan(si.log_likelihood),
          "shard info: kind %d", si.kind);

    /* A sharded mixture: the two halves' gmm-diag statistics (no labels), round 0, one E-step per half and round
     * until finished; the model scores as lw_fit on all rows with the same calibration. */
    lw_fit_config gmm = fc;
    gmm.family = "gmm-diag";
    gmm.mixture_components = 3;
    gmm.pca_components = 8;
    lw_activations mfirst = first, msecond = second, mall = train;
    mfirst.labels = msecond.labels = mall.labels = NULL;
    lw_statistics *g1 = NULL, *g2 = NULL, *round = NULL;
    EXPECT_STATUS(lw_statistics_gather(&mfirst, &gmm, 0, &g1), LW_OK);
    EXPECT_STATUS(lw_statistics_gather(&msecond, &gmm, (int64_t)cut, &g2), LW_OK);
    EXPECT_STATUS(lw_statistics_merge(g1, g2), LW_OK);
    EXPECT_STATUS(lw_mixture_start(s1back, &round), LW_ERR_INVALID_CONFIGURATION); /* gda statistics */
    EXPECT_STATUS(lw_mixture_start(g1, &round), LW_OK);
    lw_statistics_info ri = {.struct_size = sizeof ri};
    EXPECT_STATUS(lw_statistics_get_info(round, &ri), LW_OK);
    CHECK(ri.kind == LW_STATISTICS_MIXTURE_ROUND && ri.round == 0 && ri.finished == 0 && strlen(ri.fingerprint) == 8 &&
              strcmp(ri.family, "gmm-diag") == 0 && ri.samples == rows,
          "round 0 info: kind %d round %d finished %d family %s", ri.kind, ri.round, ri.finished, ri.family);
    int rounds = 0;
    while (round && !ri.finished && rounds < 200) {
        lw_statistics *e1 = NULL, *e2 = NULL, *next = NULL;
        EXPECT_STATUS(lw_mixture_expectation(round, &mfirst, 0, &e1), LW_OK);
        EXPECT_STATUS(lw_mixture_expectation(round, &msecond, (int64_t)cut, &e2), LW_OK);
        if (rounds == 0) {
            EXPECT_STATUS(lw_mixture_advance(round, e2, &next), LW_ERR_FIT_FAILED); /* the first half missing */
            CHECK(strstr(lw_last_error(), "cover rows") != NULL, "message: %s", lw_last_error());
            EXPECT_STATUS(lw_statistics_merge(round, e1), LW_ERR_INVALID_ARGUMENT);
            EXPECT_STATUS(lw_mixture_expectation(e1, &mfirst, 0, &next), LW_ERR_INVALID_ARGUMENT);
            EXPECT_STATUS(lw_mixture_expectation(round, &small, 0, &next), LW_ERR_SHAPE_MISMATCH);
            EXPECT_STATUS(lw_mixture_expectation(round, NULL, 0, &next), LW_ERR_INVALID_ARGUMENT);
            lw_model *early = NULL;
            EXPECT_STATUS(lw_statistics_fit(round, &calibration, &early), LW_ERR_FIT_FAILED); /* unfinished */
            CHECK(early == NULL, "a refused fit leaves *out NULL");
            /* An E-step survives its file. */
            size_t n = 0;
            EXPECT_STATUS(lw_statistics_encode(e2, NULL, 0, &n), LW_ERR_BUFFER_TOO_SMALL);
            unsigned char *eb = malloc(n);
            EXPECT_STATUS(lw_statistics_encode(e2, eb, n, &n), LW_OK);
            lw_statistics_free(e2);
            EXPECT_STATUS(lw_statistics_load_bytes(eb, n, &e2), LW_OK);
            free(eb);
        }
        EXPECT_STATUS(lw_statistics_merge(e1, e2), LW_OK);
        EXPECT_STATUS(lw_mixture_advance(round, e1, &next), LW_OK);
        lw_statistics_free(e1);
        lw_statistics_free(e2);
        lw_statistics_free(round);
        round = next;
        rounds++;
        if (round) EXPECT_STATUS(lw_statistics_get_info(round, &ri), LW_OK);
    }
    CHECK(ri.finished == 1 && ri.round == rounds && !isnan(ri.log_likelihood), "EM finished after %d rounds", rounds);
    lw_model *mix_sharded = NULL, *mix_one = NULL;
    EXPECT_STATUS(lw_statistics_fit(round, &calibration, &mix_sharded), LW_OK);
    EXPECT_STATUS(lw_fit(&mall, &calibration, &gmm, &mix_one), LW_OK);
    double mix_worst = surprise_difference(mix_sharded, mix_one, data, rows, dim);
    CHECK(mix_worst <= 1e-9, "sharded and one-pass mixture surprise differ by %g relative", mix_worst);
    printf("mixture: %d EM rounds over two halves, mean log-likelihood %.6f, sharded and one-pass surprise within "
           "%.2g relative\n", rounds, ri.log_likelihood, mix_worst);
    EXPECT_STATUS(lw_statistics_free(g1), LW_OK);
    EXPECT_STATUS(lw_statistics_free(g2), LW_OK);
    EXPECT_STATUS(lw_statistics_free(round), LW_OK);
    EXPECT_STATUS(lw_model_free(mix_sharded), LW_OK);
    EXPECT_STATUS(lw_model_free(mix_one), LW_OK);

    EXPECT_STATUS(lw_statistics_free(s1), LW_OK);
    EXPECT_STATUS(lw_statistics_free(s2), LW_OK);
    EXPECT_STATUS(lw_statistics_free(s1back), LW_OK);
    EXPECT_STATUS(lw_statistics_free(s2back), LW_OK);
    EXPECT_STATUS(lw_statistics_free(s1back), LW_ERR_INVALID_HANDLE);
    EXPECT_STATUS(lw_model_free(from_stats), LW_OK);
    EXPECT_STATUS(lw_model_free(one_pass), LW_OK);
    EXPECT_STATUS(lw_model_free(smaller), LW_OK);
    EXPECT_STATUS(lw_model_free(m), LW_OK);
    EXPECT_STATUS(lw_model_free(back), LW_OK);
    free(bytes);
    free(narrow);
    free(shifted);
    free(data);
    free(labels);
    return failures ? 1 : 0;
}

/* Activations of dim columns with optional float64 targets. */
static lw_activations activations_of(const float *values, size_t total, size_t dim, const double *targets) {
    lw_activations a;
    lw_activations_init(&a);
    a.rank = 1;
    a.shape[0] = (int64_t)dim;
    a.values = values;
    a.length = total;
    a.count = total / dim;
    a.targets = targets;
    return a;
}

static int run_regression(char **argv) {
    size_t dim = (size_t)atol(argv[7]);
    size_t nt = 0, nty = 0, nc = 0, ncy = 0, nx = 0;
    float *train = read_raw(argv[2], &nt);
    double *train_y = read_file(argv[3], "<f8", sizeof(double), &nty);
    float *cal = read_raw(argv[4], &nc);
    double *cal_y = read_file(argv[5], "<f8", sizeof(double), &ncy);
    float *test = read_raw(argv[6], &nx);
    if (nty * dim != nt || ncy * dim != nc) {
        fprintf(stderr, "targets and rows disagree\n");
        exit(2);
    }
    lw_activations tr = activations_of(train, nt, dim, train_y);
    lw_activations ca = activations_of(cal, nc, dim, cal_y);
    lw_fit_config fc;
    lw_fit_config_init(&fc);
    fc.family = "regression-tied";
    fc.layer_name = "h2";
    fc.target_bins = 8;
    lw_model *m = NULL;
    EXPECT_STATUS(lw_fit(&tr, &ca, &fc, &m), LW_OK);
    if (!m) return 1;
    lw_model_info info = {.struct_size = sizeof info};
    EXPECT_STATUS(lw_model_get_info(m, &info), LW_OK);
    CHECK(strcmp(info.family, "regression-tied") == 0, "family %s", info.family);
    CHECK(info.target_bins == 8 && info.interval_count == ncy && info.has_class_labels == 0,
          "target_bins %llu, interval_count %llu", (unsigned long long)info.target_bins,
          (unsigned long long)info.interval_count);
    size_t rows = nx / dim;
    for (size_t i = 0; i < rows; i++) {
        lw_scores sc = {.struct_size = sizeof sc};
        EXPECT_STATUS(lw_model_score(m, test + i * dim, dim, &sc), LW_OK);
        double low = 0, high = 0;
        EXPECT_STATUS(lw_model_prediction_interval(m, sc.prediction, sc.predictive_spread, 0.9, &low, &high), LW_OK);
        CHECK(sc.predicted_label == -1, "predicted_label %lld", (long long)sc.predicted_label);
        printf("%a %a %a %a %a\n", sc.prediction, sc.predictive_spread, sc.spread_p_value, low, high);
    }
    /* The batch columns agree with one-row scores. */
    double *pred = calloc(rows, sizeof(double)), *spread = calloc(rows, sizeof(double));
    lw_score_columns cols = {.struct_size = sizeof cols, .prediction = pred, .predictive_spread = spread};
    EXPECT_STATUS(lw_model_score_batch(m, test, nx, rows, &cols), LW_OK);
    for (size_t i = 0; i < rows; i++) {
        lw_scores sc = {.struct_size = sizeof sc};
        lw_model_score(m, test + i * dim, dim, &sc);
        CHECK(pred[i] == sc.prediction && spread[i] == sc.predictive_spread, "batch row %zu", i);
    }
    /* A program compiled before the prediction fields: its shorter structs are filled up to their end only. */
    unsigned char buffer[sizeof(lw_scores) + 16];
    memset(buffer, 0xAB, sizeof buffer);
    size_t old_size = offsetof(lw_scores, prediction);
    ((lw_scores *)buffer)->struct_size = (uint32_t)old_size;
    EXPECT_STATUS(lw_model_score(m, test, dim, (lw_scores *)buffer), LW_OK);
    for (size_t b = old_size; b < sizeof buffer; b++) CHECK(buffer[b] == 0xAB, "old lw_scores: byte %zu written", b);
    /* ABI version 4's lw_score_columns (ending at status): the prediction columns are not read. */
    {
        unsigned char cbuf[sizeof(lw_score_columns) + 8];
        memset(cbuf, 0xAB, sizeof cbuf);
        lw_score_columns *oc = (lw_score_columns *)cbuf;
        memset(oc, 0, offsetof(lw_score_columns, prediction));
        oc->struct_size = (uint32_t)offsetof(lw_score_columns, prediction);
        double surprise[2];
        oc->surprise = surprise;
        EXPECT_STATUS(lw_model_score_batch(m, test, 2 * dim, 2, oc), LW_OK);
        for (size_t b = offsetof(lw_score_columns, prediction); b < sizeof cbuf; b++)
            CHECK(cbuf[b] == 0xAB, "old lw_score_columns: byte %zu changed", b);
    }
    /* A monitor: the regression fields, and ABI version 4's lw_assessment (ending at layers) left untouched. */
    {
        lw_monitor_config config;
        lw_monitor_config_init(&config);
        config.layer_count = 1;
        config.models = (const lw_model *const *)&m;
        lw_monitor *monitor = NULL;
        EXPECT_STATUS(lw_monitor_create(&config, &monitor), LW_OK);
        lw_inputs in;
        lw_inputs_init(&in);
        const void *buffers[1] = {test};
        in.layer_count = 1;
        in.layers = buffers;
        in.lengths = &dim;
        lw_assessment a = {.struct_size = sizeof a};
        EXPECT_STATUS(lw_monitor_assess(monitor, &in, NULL, &a), LW_OK);
        lw_scores first = {.struct_size = sizeof first};
        lw_model_score(m, test, dim, &first);
        CHECK(a.prediction == first.prediction && a.predictive_spread == first.predictive_spread &&
                  a.spread_p_value == first.spread_p_value && a.predicted_label == -1,
              "assessment %a %a vs scores %a %a", a.prediction, a.predictive_spread, first.prediction,
              first.predictive_spread);
        /* The interval at the default level 0.9 equals lw_model_prediction_interval's. */
        double want_low = 0, want_high = 0;
        EXPECT_STATUS(
            lw_model_prediction_interval(m, first.prediction, first.predictive_spread, 0.9, &want_low, &want_high),
            LW_OK
        );
        CHECK(a.interval_low == want_low && a.interval_high == want_high, "interval [%a, %a] vs [%a, %a]",
              a.interval_low, a.interval_high, want_low, want_high);
        /* A struct ending at spread_p_value (the first ABI version 5 header) gets the prediction, not the
         * interval. */
        {
            unsigned char pbuf[sizeof(lw_assessment) + 8];
            memset(pbuf, 0xAB, sizeof pbuf);
            ((lw_assessment *)pbuf)->struct_size = (uint32_t)offsetof(lw_assessment, interval_low);
            EXPECT_STATUS(lw_monitor_assess(monitor, &in, NULL, (lw_assessment *)pbuf), LW_OK);
            CHECK(((lw_assessment *)pbuf)->prediction == first.prediction, "short lw_assessment: no prediction");
            for (size_t b = offsetof(lw_assessment, interval_low); b < sizeof pbuf; b++)
                CHECK(pbuf[b] == 0xAB, "lw_assessment ending at spread_p_value: byte %zu written", b);
        }
        unsigned char abuf[sizeof(lw_assessment) + 8];
        memset(abuf, 0xAB, sizeof abuf);
        ((lw_assessment *)abuf)->struct_size = (uint32_t)offsetof(lw_assessment, prediction);
        EXPECT_STATUS(lw_monitor_assess(monitor, &in, NULL, (lw_assessment *)abuf), LW_OK);
        for (size_t b = offsetof(lw_assessment, prediction); b < sizeof abuf; b++)
            CHECK(abuf[b] == 0xAB, "old lw_assessment: byte %zu written", b);
        EXPECT_STATUS(lw_monitor_close(monitor), LW_OK);
        /* interval_level 0: no interval; outside (0, 1): refused. */
        config.interval_level = 0;
        EXPECT_STATUS(lw_monitor_create(&config, &monitor), LW_OK);
        EXPECT_STATUS(lw_monitor_assess(monitor, &in, NULL, &a), LW_OK);
        CHECK(isnan(a.interval_low) && isnan(a.interval_high) && a.prediction == first.prediction,
              "interval_level 0: [%a, %a]", a.interval_low, a.interval_high);
        EXPECT_STATUS(lw_monitor_close(monitor), LW_OK);
        config.interval_level = 1.5;
        EXPECT_STATUS(lw_monitor_create(&config, &monitor), LW_ERR_INVALID_CONFIGURATION);
        /* A program compiled before interval_level passes a struct ending at reserved: the library reads no
         * further (the 1.5 above is never seen) and uses the default 0.9. */
        config.struct_size = (uint32_t)offsetof(lw_monitor_config, interval_level);
        EXPECT_STATUS(lw_monitor_create(&config, &monitor), LW_OK);
        EXPECT_STATUS(lw_monitor_assess(monitor, &in, NULL, &a), LW_OK);
        CHECK(a.interval_low == want_low && a.interval_high == want_high, "old config: [%a, %a]", a.interval_low,
              a.interval_high);
        EXPECT_STATUS(lw_monitor_close(monitor), LW_OK);
        lw_monitor_config fresh;
        lw_monitor_config_init(&fresh);
        CHECK(fresh.interval_level == 0.9, "lw_monitor_config_init: interval_level %a", fresh.interval_level);
    }
    /* A zero spread gives the prediction alone (or an unbounded interval), never a crash. */
    {
        double lo = 0, hi = 0;
        EXPECT_STATUS(lw_model_prediction_interval(m, 3.0, 0.0, 0.5, &lo, &hi), LW_OK);
        CHECK(lo == 3.0 && hi == 3.0, "spread 0: [%a, %a]", lo, hi);
        EXPECT_STATUS(lw_model_prediction_interval(m, 3.0, 0.0, 0.9999, &lo, &hi), LW_OK);
        CHECK(isinf(lo) && isinf(hi) && lo < 0 && hi > 0, "spread 0 at 0.9999: [%a, %a]", lo, hi);
    }
    lw_activations old = tr;
    old.struct_size = (uint32_t)offsetof(lw_activations, targets);
    EXPECT_STATUS(lw_fit(&old, NULL, &fc, &(lw_model *){NULL}), LW_ERR_INVALID_CONFIGURATION); /* no targets */
    /* Bad input. */
    lw_model *none = NULL;
    lw_activations no_targets = tr;
    no_targets.targets = NULL;
    EXPECT_STATUS(lw_fit(&no_targets, NULL, &fc, &none), LW_ERR_INVALID_CONFIGURATION);
    lw_fit_config gda;
    lw_fit_config_init(&gda);
    EXPECT_STATUS(lw_fit(&tr, NULL, &gda, &none), LW_ERR_INVALID_CONFIGURATION); /* targets with gda */
    double saved = train_y[5];
    train_y[5] = NAN;
    EXPECT_STATUS(lw_fit(&tr, NULL, &fc, &none), LW_ERR_NON_FINITE);
    train_y[5] = saved;
    fc.target_bins = 5000;
    EXPECT_STATUS(lw_fit(&tr, NULL, &fc, &none), LW_ERR_INVALID_CONFIGURATION);
    CHECK(none == NULL, "a refused fit returned a model");
    double low = 0, high = 0;
    EXPECT_STATUS(lw_model_prediction_interval(m, 1, 1, 1.5, &low, &high), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_model_prediction_interval(m, NAN, 1, 0.9, &low, &high), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_model_prediction_interval(m, 1, 1, 0.9, NULL, &high), LW_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(lw_model_prediction_interval(NULL, 1, 1, 0.9, &low, &high), LW_ERR_INVALID_HANDLE);
    /* Sharded: two shards' statistics binned on all the training targets, merged, fit the same model (predictions
     * within 1e-6 relative: the moments merge in another order). */
    {
        fc.target_bins = 8;
        size_t ntr = nty, cut = ntr / 3;
        lw_activations s0 = activations_of(train, cut * dim, dim, train_y);
        lw_activations s1 = activations_of(train + cut * dim, (ntr - cut) * dim, dim, train_y + cut);
        lw_statistics *a = NULL, *b = NULL;
        EXPECT_STATUS(lw_statistics_gather_targets(&s0, train_y, ntr, &fc, 0, &a), LW_OK);
        EXPECT_STATUS(lw_statistics_gather_targets(&s1, train_y, ntr, &fc, (int64_t)cut, &b), LW_OK);
        EXPECT_STATUS(lw_statistics_merge(a, b), LW_OK);
        lw_model *sharded = NULL;
        EXPECT_STATUS(lw_statistics_fit(a, &ca, &sharded), LW_OK);
        for (size_t i = 0; sharded && i < rows; i++) {
            lw_scores x = {.struct_size = sizeof x}, y = {.struct_size = sizeof y};
            lw_model_score(m, test + i * dim, dim, &x);
            lw_model_score(sharded, test + i * dim, dim, &y);
            CHECK(fabs(x.prediction - y.prediction) <= 1e-6 * fmax(1, fabs(x.prediction)) &&
                      fabs(x.predictive_spread - y.predictive_spread) <= 1e-6 * fmax(1, x.predictive_spread),
                  "sharded row %zu: %a %a vs %a %a", i, y.prediction, y.predictive_spread, x.prediction,
                  x.predictive_spread);
        }
        /* Shards binned on other targets do not merge; no targets, no binning, a class family are refused. */
        lw_statistics *odd = NULL, *none_s = NULL;
        EXPECT_STATUS(lw_statistics_gather_targets(&s1, train_y, cut, &fc, (int64_t)ntr, &odd), LW_OK);
        EXPECT_STATUS(lw_statistics_merge(a, odd), LW_ERR_FIT_FAILED);
        lw_activations s_plain = s0;
        s_plain.targets = NULL;
        EXPECT_STATUS(lw_statistics_gather_targets(&s_plain, train_y, ntr, &fc, 0, &none_s), LW_ERR_INVALID_ARGUMENT);
        EXPECT_STATUS(lw_statistics_gather_targets(&s0, NULL, ntr, &fc, 0, &none_s), LW_ERR_INVALID_ARGUMENT);
        EXPECT_STATUS(lw_statistics_gather(&s0, &fc, 0, &none_s), LW_ERR_INVALID_CONFIGURATION);
        lw_fit_config cls;
        lw_fit_config_init(&cls);
        EXPECT_STATUS(lw_statistics_gather_targets(&s0, train_y, ntr, &cls, 0, &none_s), LW_ERR_INVALID_CONFIGURATION);
        CHECK(none_s == NULL, "a refused gather returned statistics");
        lw_model_free(sharded);
        lw_statistics_free(a);
        lw_statistics_free(b);
        lw_statistics_free(odd);
    }
    /* The host's own predictions: the disagreement calibrated from C buffers, and a monitor given them. Prints
     * "D distance p-value flags" per test row for the Swift test to compare with the SDK's. */
    if (argv[8]) {
        size_t ncp = 0, nxp = 0;
        double *cal_p = read_file(argv[8], "<f8", sizeof(double), &ncp);
        double *test_p = read_file(argv[9], "<f8", sizeof(double), &nxp);
        CHECK(ncp == ncy && nxp == rows, "predictions: %zu calibration, %zu test", ncp, nxp);
        lw_model *d = NULL;
        EXPECT_STATUS(lw_calibrate_disagreement(m, &ca, cal_p, ncp, &d), LW_OK);
        lw_model_info di = {.struct_size = sizeof di};
        EXPECT_STATUS(lw_model_get_info(d, &di), LW_OK);
        CHECK(di.disagreement_count == ncp, "disagreement_count %llu", (unsigned long long)di.disagreement_count);
        CHECK(info.disagreement_count == 0, "the model given gained a calibration");
        /* A program compiled before disagreement_count: its lw_model_info is filled up to interval_count. */
        {
            unsigned char ibuf[sizeof(lw_model_info) + 8];
            memset(ibuf, 0xAB, sizeof ibuf);
            ((lw_model_info *)ibuf)->struct_size = (uint32_t)offsetof(lw_model_info, disagreement_count);
            EXPECT_STATUS(lw_model_get_info(d, (lw_model_info *)ibuf), LW_OK);
            for (size_t b = offsetof(lw_model_info, disagreement_count); b < sizeof ibuf; b++)
                CHECK(ibuf[b] == 0xAB, "lw_model_info ending at interval_count: byte %zu written", b);
        }
        /* Bad input: every case returns its status and no model. */
        lw_model *none_d = NULL;
        EXPECT_STATUS(lw_calibrate_disagreement(NULL, &ca, cal_p, ncp, &none_d), LW_ERR_INVALID_HANDLE);
        EXPECT_STATUS(lw_calibrate_disagreement(m, NULL, cal_p, ncp, &none_d), LW_ERR_INVALID_ARGUMENT);
        EXPECT_STATUS(lw_calibrate_disagreement(m, &ca, NULL, ncp, &none_d), LW_ERR_INVALID_ARGUMENT);
        EXPECT_STATUS(lw_calibrate_disagreement(m, &ca, cal_p, ncp, NULL), LW_ERR_INVALID_ARGUMENT);
        EXPECT_STATUS(lw_calibrate_disagreement(m, &ca, cal_p, ncp - 1, &none_d), LW_ERR_SHAPE_MISMATCH);
        double saved_p = cal_p[7];
        cal_p[7] = INFINITY;
        EXPECT_STATUS(lw_calibrate_disagreement(m, &ca, cal_p, ncp, &none_d), LW_ERR_NON_FINITE);
        cal_p[7] = saved_p;
        lw_activations short_rows = activations_of(cal, (ncy - 1) * dim, dim, NULL);
        EXPECT_STATUS(lw_calibrate_disagreement(m, &short_rows, cal_p, ncp, &none_d), LW_ERR_SHAPE_MISMATCH);
        CHECK(none_d == NULL, "a refused calibration returned a model");

        lw_monitor_config config;
        lw_monitor_config_init(&config);
        CHECK(config.disagreement_alpha == 0.01, "lw_monitor_config_init: disagreement_alpha %a",
              config.disagreement_alpha);
        config.layer_count = 1;
        config.models = (const lw_model *const *)&d;
        config.outputs = LW_OUTPUTS_PREDICTION;
        config.output_count = 2;
        lw_monitor *monitor = NULL;
        EXPECT_STATUS(lw_monitor_create(&config, &monitor), LW_ERR_INVALID_CONFIGURATION);
        config.output_count = 1;
        config.disagreement_alpha = 1.5;
        EXPECT_STATUS(lw_monitor_create(&config, &monitor), LW_ERR_INVALID_CONFIGURATION);
        config.disagreement_alpha = 0.05;
        config.input_alpha = 1e-9; /* only the disagreement speaks */
        config.aleatoric_alpha = 0;
        EXPECT_STATUS(lw_monitor_create(&config, &monitor), LW_OK);
        lw_inputs in;
        lw_inputs_init(&in);
        const void *buffers[1];
        in.layer_count = 1;
        in.layers = buffers;
        in.lengths = &dim;
        for (size_t i = 0; monitor && i < rows; i++) {
            buffers[0] = test + i * dim;
            float host = (float)test_p[i];
            in.outputs = &host;
            in.outputs_length = 1;
            lw_assessment a = {.struct_size = sizeof a};
            EXPECT_STATUS(lw_monitor_assess(monitor, &in, NULL, &a), LW_OK);
            CHECK(a.host_prediction == (double)host && a.disagreement == fabs(a.host_prediction - a.prediction),
                  "row %zu: host %a, disagreement %a, prediction %a", i, a.host_prediction, a.disagreement,
                  a.prediction);
            CHECK(((a.flags & LW_FLAG_DISAGREEMENT) != 0) == (a.disagreement_p_value <= 0.05), "row %zu flag", i);
            printf("D %a %a %u\n", a.disagreement, a.disagreement_p_value, a.flags);
        }
        /* A non-finite prediction is refused; an input without outputs carries none of it. */
        {
            buffers[0] = test;
            float bad = NAN;
            in.outputs = &bad;
            lw_assessment a = {.struct_size = sizeof a};
            EXPECT_STATUS(lw_monitor_assess(monitor, &in, NULL, &a), LW_ERR_NON_FINITE);
            in.outputs = NULL;
            in.outputs_length = 0;
            EXPECT_STATUS(lw_monitor_assess(monitor, &in, NULL, &a), LW_OK);
            CHECK(isnan(a.host_prediction) && isnan(a.disagreement) && isnan(a.disagreement_p_value),
                  "no outputs: %a %a", a.host_prediction, a.disagreement);
            /* A struct ending at interval_high (before the host-prediction fields) is not written past it. */
            float host = 1000;
            in.outputs = &host;
            in.outputs_length = 1;
            unsigned char hbuf[sizeof(lw_assessment) + 8];
            memset(hbuf, 0xAB, sizeof hbuf);
            ((lw_assessment *)hbuf)->struct_size = (uint32_t)offsetof(lw_assessment, host_prediction);
            EXPECT_STATUS(lw_monitor_assess(monitor, &in, NULL, (lw_assessment *)hbuf), LW_OK);
            for (size_t b = offsetof(lw_assessment, host_prediction); b < sizeof hbuf; b++)
                CHECK(hbuf[b] == 0xAB, "lw_assessment ending at interval_high: byte %zu written", b);
        }
        EXPECT_STATUS(lw_monitor_close(monitor), LW_OK);
        /* A program compiled before disagreement_alpha passes a config ending at interval_level: the default. */
        config.struct_size = (uint32_t)offsetof(lw_monitor_config, disagreement_alpha);
        config.disagreement_alpha = 1.5; /* never read */
        EXPECT_STATUS(lw_monitor_create(&config, &monitor), LW_OK);
        EXPECT_STATUS(lw_monitor_close(monitor), LW_OK);
        lw_model_free(d);
        free(cal_p);
        free(test_p);
    }
    /* Without calibration targets there is no interval. */
    lw_activations ca_plain = ca;
    ca_plain.targets = NULL;
    fc.target_bins = 0;
    lw_model *plain = NULL;
    EXPECT_STATUS(lw_fit(&tr, &ca_plain, &fc, &plain), LW_OK);
    EXPECT_STATUS(lw_model_prediction_interval(plain, 1, 1, 0.9, &low, &high), LW_ERR_INVALID_ARGUMENT);
    lw_model_free(plain);
    lw_model_free(m);
    free(pred);
    free(spread);
    free(train);
    free(train_y);
    free(cal);
    free(cal_y);
    free(test);
    return failures == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 4 && strcmp(argv[1], "score") == 0) return run_score(argc, argv);
    if (argc == 3 && strcmp(argv[1], "errors") == 0) return run_errors(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "threads") == 0) return run_threads(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 8);
    if (argc == 4 && strcmp(argv[1], "allocations") == 0) return run_allocations(argv[2], argv[3]);
    if ((argc == 8 || argc == 10) && strcmp(argv[1], "regression") == 0) return run_regression(argv);
    if (argc == 6 && strcmp(argv[1], "fit") == 0) return run_fit(argv[2], argv[3], (size_t)atol(argv[4]), argv[5]);
    fprintf(stderr, "usage: see the comment at the top of capi_check.c\n");
    return 2;
}
