#ifndef LATENTWATCH_KERNELS_H
#define LATENTWATCH_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Blocked lower-triangular layout ("tri8"): the matrix W (d x d, lower triangular) is padded to
/// dp = 8 * ceil(d / 8) and split into row blocks of 8. Block m (rows 8m..8m+7) holds chunks c = 0..m;
/// chunk c holds, for each of the 8 rows t, the 8 entries W[8m + t][8c .. 8c + 7] (zero above the diagonal
/// and outside d). Offset of block m: 64 * m * (m + 1) / 2 elements; total 64 * M * (M + 1) / 2 with M = dp / 8.
/// The layout makes a triangular matrix-vector product one sequential pass over memory.
size_t lw_tri8_count(int d);

/// Returns sum_i y_i^2 with y = W (x - mu), W in tri8 layout (float32), accumulated in double.
/// scratch must hold dp floats. x and mu hold d floats.
double lw_tri8_sqnorm_f32(const float *w, const float *x, const float *mu, int d, float *scratch);

/// The same with W stored as IEEE binary16 (converted on the fly).
double lw_tri8_sqnorm_f16(const uint16_t *w, const float *x, const float *mu, int d, float *scratch);

/// Same quantity with the centred vector already in scratch (dp floats, zero padded).
double lw_tri8_sqnorm_centered_f32(const float *w, const float *xc, int d);
double lw_tri8_sqnorm_centered_f16(const uint16_t *w, const float *xc, int d);

/// Squared norms ||W xc_i||^2 of n centred, zero-padded vectors (row i at xc + i * ld, ld >= dp floats), written
/// to out[i * out_stride]. Each equals lw_tri8_sqnorm_centered_* of the same row bit for bit (the same operations
/// in the same order), but W is read once per tile of three rows, in panels that stay in L2. totals is scratch of
/// 4 * n doubles.
void lw_tri8_sqnorm_batch_f32(const float *w, const float *xc, size_t ld, int n, int d, double *out,
                              size_t out_stride, double *totals);
void lw_tri8_sqnorm_batch_f16(const uint16_t *w, const float *xc, size_t ld, int n, int d, double *out,
                              size_t out_stride, double *totals);

/// y = W xc for a centred, zero-padded xc (dp floats); writes dp floats to y (entries past d are 0).
void lw_tri8_matvec_f32(const float *w, const float *xc, int d, float *y);
void lw_tri8_matvec_f16(const uint16_t *w, const float *xc, int d, float *y);

/// Sum over i < n of ((double)a[i] - (double)b[i])^2, accumulated in double in 8 lanes (i mod 8) with fused
/// multiply-adds and reduced in a fixed order: the AVX2 and portable versions agree bit for bit.
double lw_sqdist_f32(const float *a, const float *b, int n);

/// Squared distances from z (d floats) to `count` rows stored back to back (row r at rows + r * d), in float: each
/// sums (z_i - row_i)^2 over 8 lanes (i mod 8, fused multiply-adds, the last block of 8 padded with zeros) reduced
/// in a fixed tree, so the AVX2 and portable versions agree bit for bit. `lw_sqdists_f32` writes every distance to out;
/// `lw_nearest_sqdist_f16` (float16 rows) returns the smallest, or +infinity for no rows.
void lw_sqdists_f32(const float *rows, int count, int d, const float *z, float *out);
float lw_nearest_sqdist_f16(const uint16_t *rows, int count, int d, const float *z);

/// Squared Euclidean distances between integer codes (a neighbour index's rows quantised to one scale), exact in
/// 32-bit integers. Rows are packed into blocks of 16 rows (the last padded with zero rows): within a block, each
/// group of four dimensions holds the 16 rows' four codes back to back, each stored as code + 128 (an unsigned byte),
/// dimensions padded with code 0 to dp = 4 * ceil(d / 4). norms[r] = sum of row r's squared codes (0 for padded
/// rows). A query q holds dp signed codes (zero past d). The distance sum_i (q_i - r_i)^2 is computed as
/// norms[r] + sum q_i^2 - 2 sum q_i r_i with 32-bit wrapping arithmetic, which is exact whenever the distance itself
/// is below 2^31: always for codes in [-127, 127] and d <= 33,000. Every variant (AVX-512 VNNI, AVX2, portable)
/// gives the same integers.
size_t lw_codes_padded_dimension(int d);
/// Bytes of the packed rows of `count` rows (blocks of 16 rows of dp bytes); norms need 16 * ceil(count / 16).
size_t lw_codes_packed_bytes(int count, int d);
/// Packs `count` rows of d codes (row-major) into `packed` and their squared norms into `norms`.
void lw_codes_pack(const int8_t *codes, int count, int d, uint8_t *packed, int32_t *norms);
/// A query's codes: q[i] = u_i rounded to nearest (ties to even) and clamped at +-127, u_i = z[i] * inv_scale in
/// float, for i < d; q is zero from d to dp. Returns the sum over clamped coordinates of (|u_i| - 127)^2, in double,
/// added in index order (+infinity when some u_i is NaN, whose code is 0). Every variant gives the same codes and sum.
double lw_codes_quantise(const float *z, int d, float inv_scale, int8_t *q);
/// Distances from q to every packed row, written to out[0 ..< count].
void lw_codes_sqdists(const uint8_t *packed, const int32_t *norms, int count, int d, const int8_t *q, int32_t *out);
/// The smallest distance from q to the packed rows, or INT32_MAX for no rows.
int32_t lw_codes_nearest_sqdist(const uint8_t *packed, const int32_t *norms, int count, int d, const int8_t *q);

/// Benchmarks only: reads n floats once (AVX2 loads into four accumulators where the CPU has AVX2) and returns their
/// sum, so the reads cannot be dropped: the time to stream a factor's bytes at this core's read rate.
double lw_stream_read_f32(const float *p, size_t n);

/// Converts n binary16 values to float32 and back (round to nearest even).
void lw_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void lw_f32_to_f16(const float *src, uint16_t *dst, size_t n);

/// CPU features (bits of lw_cpu_features()), from CPUID.
enum {
    LW_CPU_AVX2 = 1 << 0,
    LW_CPU_FMA = 1 << 1,
    LW_CPU_F16C = 1 << 2,
    LW_CPU_AVX512F = 1 << 3,
    LW_CPU_AVX512BW = 1 << 4,
    LW_CPU_AVX512DQ = 1 << 5,
    LW_CPU_AVX512VL = 1 << 6,
    LW_CPU_AVX512VNNI = 1 << 7,
    LW_CPU_AMD = 1 << 8,
    LW_CPU_INTEL = 1 << 9
};

/// The CPU's features that the kernels and the BLAS core choice depend on (0 off x86-64).
unsigned lw_cpu_features(void);

/// The kernel variants, in the order of what they need from the CPU.
enum {
    /// Portable C loops.
    LW_KERNELS_PORTABLE = 0,
    /// AVX2 + FMA + F16C.
    LW_KERNELS_AVX2 = 1,
    /// AVX-512 (F, DQ, VL) for the multi-input kernel, AVX2 + FMA + F16C for the others.
    LW_KERNELS_AVX512 = 2
};

/// The variant in use on the calling thread: the best this CPU runs, within the environment's cap
/// (LATENTWATCH_KERNELS=avx2 or portable, read once per process) and the thread's (lw_kernels_limit).
int lw_kernels_variant(void);

/// 1 when the AVX2 + FMA + F16C kernels (or better) are in use on the calling thread, else 0 (portable C loops).
int lw_kernels_have_avx2(void);

/// Tests and benchmarks only: caps the variant on the calling thread (LW_KERNELS_*; the CPU's best stays the
/// ceiling). LW_KERNELS_AVX512 restores CPU detection.
void lw_kernels_limit(int variant);

#ifdef __cplusplus
}
#endif

#endif
