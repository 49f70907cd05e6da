// Hand-written loops for the scoring hot path. Each fast kernel carries its own target attribute and is
// chosen at run time by CPU feature checks, so no special compiler flags are required from users.
#include "CLatentKernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define LW_X86 1
#include <immintrin.h>
#else
#define LW_X86 0
#endif

size_t lw_tri8_count(int d) {
    size_t m = ((size_t)d + 7) / 8;
    return 64 * m * (m + 1) / 2;
}

// ---------------------------------------------------------------------------------------------------------
// Portable versions.

static float lw_half_to_float_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            // Subnormal: normalise.
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            mant &= 0x3ff;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t lw_float_to_half_scalar(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) {  // Inf or NaN
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    }
    if (absx >= 0x477ff000u) {  // rounds to >= 65520: overflow to Inf
        return (uint16_t)(sign | 0x7c00);
    }
    if (absx < 0x38800000u) {  // below the smallest normal half: subnormal or zero
        // Use float arithmetic for correct rounding: value * 2^24 rounded to integer.
        float af;
        memcpy(&af, &absx, sizeof af);
        float scaled = af * 16777216.0f;  // 2^24
        // round half to even
        uint32_t r = (uint32_t)scaled;
        float frac = scaled - (float)r;
        if (frac > 0.5f || (frac == 0.5f && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t e = (absx >> 23) - 127 + 15;
    uint32_t mant = absx & 0x7fffff;
    uint32_t half = (e << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1u))) half++;
    return (uint16_t)(sign | half);
}

// One pass over the tri8 blocks; FINISH(t, value) consumes row 8m + t of y = W xc.
#define LW_GENERIC_BODY(TO_FLOAT, FINISH)                                                       \
    int mb = (d + 7) / 8;                                                                       \
    for (int m = 0; m < mb; m++) {                                                              \
        float y[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                  \
        for (int c = 0; c <= m; c++) {                                                          \
            const float *xv = xc + 8 * c;                                                       \
            for (int t = 0; t < 8; t++) {                                                       \
                float s = 0;                                                                    \
                for (int l = 0; l < 8; l++) s += TO_FLOAT(p[t * 8 + l]) * xv[l];                \
                y[t] += s;                                                                      \
            }                                                                                   \
            p += 64;                                                                            \
        }                                                                                       \
        for (int t = 0; t < 8; t++) FINISH(t, y[t]);                                            \
    }

#define LW_AS_FLOAT(v) (v)
#define LW_HALF_AS_FLOAT(v) lw_half_to_float_scalar(v)
#define LW_GENERIC_SQ(t, v) total += (double)(v) * (double)(v)
#define LW_GENERIC_STORE(t, v) out[8 * m + (t)] = (v)

static double lw_tri8_generic_f32(const float *w, const float *xc, int d) {
    const float *p = w;
    double total = 0;
    LW_GENERIC_BODY(LW_AS_FLOAT, LW_GENERIC_SQ)
    return total;
}

static double lw_tri8_generic_f16(const uint16_t *w, const float *xc, int d) {
    const uint16_t *p = w;
    double total = 0;
    LW_GENERIC_BODY(LW_HALF_AS_FLOAT, LW_GENERIC_SQ)
    return total;
}

static void lw_tri8_generic_matvec_f32(const float *w, const float *xc, int d, float *out) {
    const float *p = w;
    LW_GENERIC_BODY(LW_AS_FLOAT, LW_GENERIC_STORE)
}

static void lw_tri8_generic_matvec_f16(const uint16_t *w, const float *xc, int d, float *out) {
    const uint16_t *p = w;
    LW_GENERIC_BODY(LW_HALF_AS_FLOAT, LW_GENERIC_STORE)
}

// Sum of (a_i - b_i)^2 in double over 8 lanes (lane i mod 8, fused multiply-add), reduced in a fixed tree: the
// same operations in the same order as the AVX2 version, so both give the same result bit for bit.
static double lw_sqdist_reduce(const double *lane) {
    return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

// Adds elements from..n-1 to their lanes (i mod 8).
static void lw_sqdist_lanes(const float *a, const float *b, int from, int n, double *lane) {
    for (int i = from; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        lane[i & 7] = fma(d, d, lane[i & 7]);
    }
}

static double lw_sqdist_generic(const float *a, const float *b, int n) {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    lw_sqdist_lanes(a, b, 0, n, lane);
    return lw_sqdist_reduce(lane);
}

// Row distances in float over 8 lanes: lane i mod 8 accumulates fmaf(e, e, lane) with e = z_i - row_i, and the
// lanes reduce as t_j = l_j + l_{4+j}, (t_0 + t_2) + (t_1 + t_3): what the AVX2 version's accumulator and its
// horizontal halves compute, one row or eight at a time.
static float lw_rowdist_reduce(const float *l) {
    float t[4];
    for (int j = 0; j < 4; j++) t[j] = l[j] + l[4 + j];
    return (t[0] + t[2]) + (t[1] + t[3]);
}

#define LW_ROWDIST_GENERIC(ROW_AT)                                                              \
    {                                                                                           \
        float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                  \
        for (int i = 0; i < d; i++) {                                                           \
            float e = z[i] - ROW_AT(i);                                                         \
            l[i & 7] = fmaf(e, e, l[i & 7]);                                                    \
        }                                                                                       \
        dist = lw_rowdist_reduce(l);                                                            \
    }

static void lw_sqdists_generic_f32(const float *rows, int count, int d, const float *z, float *out) {
    for (int r = 0; r < count; r++) {
        const float *row = rows + (size_t)r * (size_t)d;
        float dist;
#define LW_F32_AT(i) row[i]
        LW_ROWDIST_GENERIC(LW_F32_AT)
#undef LW_F32_AT
        out[r] = dist;
    }
}

static float lw_nearest_generic_f16(const uint16_t *rows, int count, int d, const float *z) {
    float best = INFINITY;
    for (int r = 0; r < count; r++) {
        const uint16_t *row = rows + (size_t)r * (size_t)d;
        float dist;
#define LW_F16_AT(i) lw_half_to_float_scalar(row[i])
        LW_ROWDIST_GENERIC(LW_F16_AT)
#undef LW_F16_AT
        if (dist < best) best = dist;
    }
    return best;
}

// Integer codes (see lw_codes_pack in the header). The query's sums are taken once per call.
typedef struct {
    uint32_t qn;    // sum q_i^2
    uint32_t qsum;  // sum q_i
} lw_code_query;

static lw_code_query lw_code_query_sums(const int8_t *q, int dp) {
    lw_code_query s = {0, 0};
    for (int i = 0; i < dp; i++) {
        s.qn += (uint32_t)((int32_t)q[i] * (int32_t)q[i]);
        s.qsum += (uint32_t)(int32_t)q[i];
    }
    return s;
}

// norm + qn - 2 (dot_u - 128 qsum), where dot_u = sum q_i (r_i + 128): wrapping unsigned arithmetic, exact when the
// distance fits in 31 bits.
static inline int32_t lw_code_distance(uint32_t norm, lw_code_query s, uint32_t dot_u) {
    return (int32_t)(norm + s.qn + 256u * s.qsum - 2u * dot_u);
}

static int8_t lw_code_of(float u) {
    if (u != u) return 0;
    if (u >= 127.0f) return 127;
    if (u <= -127.0f) return -127;
    return (int8_t)lrintf(u);  // the default rounding mode: to nearest, ties to even
}

// The part of the coordinates beyond the clamp, in index order.
static double lw_code_beyond(const float *z, int from, int d, float inv_scale) {
    double beyond = 0;
    for (int i = from; i < d; i++) {
        float u = z[i] * inv_scale;
        if (u != u) return INFINITY;
        double a = fabs((double)u);
        // An explicit fused multiply-add: the same rounding whatever the compiler contracts in each variant.
        if (a > 127) beyond = fma(a - 127, a - 127, beyond);
    }
    return beyond;
}

static double lw_codes_quantise_generic(const float *z, int d, float inv_scale, int8_t *q) {
    int dp = (d + 3) / 4 * 4;
    int clamped = 0;
    for (int i = 0; i < d; i++) {
        float u = z[i] * inv_scale;
        q[i] = lw_code_of(u);
        if (!(fabsf(u) <= 127.0f)) clamped = 1;
    }
    for (int i = d; i < dp; i++) q[i] = 0;
    return clamped ? lw_code_beyond(z, 0, d, inv_scale) : 0;
}

static uint32_t lw_code_dot_generic(const uint8_t *block, int k, int dp, const int8_t *q) {
    uint32_t dot = 0;
    for (int g = 0; g < dp / 4; g++)
        for (int j = 0; j < 4; j++)
            dot += (uint32_t)((int32_t)q[4 * g + j] * (int32_t)block[64 * g + 4 * k + j]);
    return dot;
}

static void lw_codes_sqdists_generic(const uint8_t *packed, const int32_t *norms, int count, int dp,
                                     const int8_t *q, int32_t *out) {
    lw_code_query s = lw_code_query_sums(q, dp);
    for (int r = 0; r < count; r++) {
        const uint8_t *block = packed + (size_t)(r / 16) * 16 * (size_t)dp;
        out[r] = lw_code_distance((uint32_t)norms[r], s, lw_code_dot_generic(block, r % 16, dp, q));
    }
}

static int32_t lw_codes_nearest_generic(const uint8_t *packed, const int32_t *norms, int count, int dp,
                                        const int8_t *q) {
    lw_code_query s = lw_code_query_sums(q, dp);
    int32_t best = INT32_MAX;
    for (int r = 0; r < count; r++) {
        const uint8_t *block = packed + (size_t)(r / 16) * 16 * (size_t)dp;
        int32_t v = lw_code_distance((uint32_t)norms[r], s, lw_code_dot_generic(block, r % 16, dp, q));
        if (v < best) best = v;
    }
    return best;
}

// ---------------------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C versions.

#if LW_X86
#define LW_AVX2 __attribute__((target("avx2,fma,f16c")))

LW_AVX2 static inline __m256 lw_reduce8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                                        __m256 a6, __m256 a7) {
    __m256 h01 = _mm256_hadd_ps(a0, a1);
    __m256 h23 = _mm256_hadd_ps(a2, a3);
    __m256 h45 = _mm256_hadd_ps(a4, a5);
    __m256 h67 = _mm256_hadd_ps(a6, a7);
    __m256 h0123 = _mm256_hadd_ps(h01, h23);
    __m256 h4567 = _mm256_hadd_ps(h45, h67);
    __m256 lo = _mm256_permute2f128_ps(h0123, h4567, 0x20);
    __m256 hi = _mm256_permute2f128_ps(h0123, h4567, 0x31);
    return _mm256_add_ps(lo, hi);
}

LW_AVX2 static inline __m256d lw_accumulate_squares(__m256d acc, __m256 y) {
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(y));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(y, 1));
    acc = _mm256_fmadd_pd(lo, lo, acc);
    return _mm256_fmadd_pd(hi, hi, acc);
}

LW_AVX2 static inline double lw_hsum_pd(__m256d v) {
    __m128d lo = _mm256_castpd256_pd128(v);
    __m128d hi = _mm256_extractf128_pd(v, 1);
    lo = _mm_add_pd(lo, hi);
    __m128d sh = _mm_unpackhi_pd(lo, lo);
    return _mm_cvtsd_f64(_mm_add_sd(lo, sh));
}

// One block row m of W times xc: the 8 rows' dot products over chunks 0..m, reduced into one vector (y).
// p points at the block's first chunk and is left after its last.
#define LW_TRI8_BLOCK(LOAD, xc, m, y)                                                           \
    {                                                                                           \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),    \
               a3 = _mm256_setzero_ps(), a4 = _mm256_setzero_ps(), a5 = _mm256_setzero_ps(),    \
               a6 = _mm256_setzero_ps(), a7 = _mm256_setzero_ps();                              \
        for (int c = 0; c <= (m); c++) {                                                        \
            __m256 xv = _mm256_loadu_ps((xc) + 8 * c);                                          \
            a0 = _mm256_fmadd_ps(LOAD(p + 0), xv, a0);                                          \
            a1 = _mm256_fmadd_ps(LOAD(p + 8), xv, a1);                                          \
            a2 = _mm256_fmadd_ps(LOAD(p + 16), xv, a2);                                         \
            a3 = _mm256_fmadd_ps(LOAD(p + 24), xv, a3);                                         \
            a4 = _mm256_fmadd_ps(LOAD(p + 32), xv, a4);                                         \
            a5 = _mm256_fmadd_ps(LOAD(p + 40), xv, a5);                                         \
            a6 = _mm256_fmadd_ps(LOAD(p + 48), xv, a6);                                         \
            a7 = _mm256_fmadd_ps(LOAD(p + 56), xv, a7);                                         \
            p += 64;                                                                            \
        }                                                                                       \
        y = lw_reduce8(a0, a1, a2, a3, a4, a5, a6, a7);                                         \
    }

#define LW_TRI8_BODY(LOAD, FINISH, RESULT)                                                      \
    int mb = (d + 7) / 8;                                                                       \
    __m256d total = _mm256_setzero_pd();                                                        \
    (void)total;                                                                                \
    for (int m = 0; m < mb; m++) {                                                              \
        __m256 y;                                                                               \
        LW_TRI8_BLOCK(LOAD, xc, m, y)                                                           \
        FINISH(y);                                                                              \
    }                                                                                           \
    RESULT

#define LW_LOAD_F32(ptr) _mm256_loadu_ps(ptr)
#define LW_LOAD_F16(ptr) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ptr)))

#define LW_FINISH_SQ(v) total = lw_accumulate_squares(total, (v));
#define LW_RESULT_SQ return lw_hsum_pd(total);
#define LW_FINISH_STORE(v) _mm256_storeu_ps(out + 8 * m, (v));
#define LW_RESULT_NONE

LW_AVX2 static double lw_tri8_avx2_f32(const float *w, const float *xc, int d) {
    const float *p = w;
    LW_TRI8_BODY(LW_LOAD_F32, LW_FINISH_SQ, LW_RESULT_SQ)
}

LW_AVX2 static double lw_tri8_avx2_f16(const uint16_t *w, const float *xc, int d) {
    const uint16_t *p = w;
    LW_TRI8_BODY(LW_LOAD_F16, LW_FINISH_SQ, LW_RESULT_SQ)
}

LW_AVX2 static void lw_tri8_avx2_matvec_f32(const float *w, const float *xc, int d, float *out) {
    const float *p = w;
    LW_TRI8_BODY(LW_LOAD_F32, LW_FINISH_STORE, LW_RESULT_NONE)
}

LW_AVX2 static void lw_tri8_avx2_matvec_f16(const uint16_t *w, const float *xc, int d, float *out) {
    const uint16_t *p = w;
    LW_TRI8_BODY(LW_LOAD_F16, LW_FINISH_STORE, LW_RESULT_NONE)
}

// Several inputs per pass over W: tiles of 3 inputs share every load of W. Rows are taken 4 at a time
// (4 rows x 3 inputs = 12 accumulators, with 3 input chunks and one row of W: 16 registers). Each accumulator
// sees the same FMAs in the same order as the one-input kernel, and the row sums are reduced with the same
// hadd tree (lw_reduce8 split in its two halves), so every result equals the one-input kernel's bit for bit.
// W is walked in panels of block rows small enough to stay in L2 while all tiles pass over them; each
// input's partial sum of squares (a __m256d, as in the one-input kernel) waits in `totals` between panels.

#ifndef LW_BATCH_PANEL_CHUNKS
#define LW_BATCH_PANEL_CHUNKS 384 /* 8x8 chunks per panel: 96 KB of float32 W, 48 KB of float16 */
#endif

// Block rows m0..m1-1 of W for input `row` alone (the one-input kernel's blocks), added to its total.
#define LW_TRI8_ONE_INPUT(LOAD, row)                                                               \
    {                                                                                              \
        const float *x0 = xc + (size_t)(row) * ld;                                                 \
        __m256d t0 = _mm256_loadu_pd(totals + 4 * (size_t)(row));                                  \
        const WT *p = w + (size_t)64 * ((size_t)m0 * (m0 + 1) / 2);                                \
        for (int m = m0; m < m1; m++) {                                                            \
            __m256 y;                                                                              \
            LW_TRI8_BLOCK(LOAD, x0, m, y)                                                          \
            t0 = lw_accumulate_squares(t0, y);                                                     \
        }                                                                                          \
        _mm256_storeu_pd(totals + 4 * (size_t)(row), t0);                                          \
    }

#define LW_TRI8_BATCH_BODY(LOAD)                                                                   \
    int mb = (d + 7) / 8;                                                                          \
    for (int i = 0; i < n; i++) _mm256_storeu_pd(totals + 4 * i, _mm256_setzero_pd());             \
    int m0 = 0;                                                                                    \
    while (m0 < mb) {                                                                              \
        int m1 = m0 + 1;                                                                           \
        while (m1 < mb && (m1 + 1) * (m1 + 2) / 2 - m0 * (m0 + 1) / 2 <= LW_BATCH_PANEL_CHUNKS) m1++; \
        int i = 0;                                                                                 \
        for (; i + 3 <= n; i += 3) {                                                               \
            const float *x0 = xc + (size_t)i * ld, *x1 = x0 + ld, *x2 = x1 + ld;                   \
            __m256d t0 = _mm256_loadu_pd(totals + 4 * i);                                          \
            __m256d t1 = _mm256_loadu_pd(totals + 4 * i + 4);                                     \
            __m256d t2 = _mm256_loadu_pd(totals + 4 * i + 8);                                      \
            for (int m = m0; m < m1; m++) {                                                        \
                __m256 lo[3];                                                                      \
                for (int half = 0; half < 2; half++) {                                             \
                    const WT *p = w + (size_t)64 * ((size_t)m * (m + 1) / 2) + 32 * half;         \
                    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;             \
                    __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;                             \
                    __m256 a20 = a00, a21 = a00, a22 = a00, a23 = a00;                             \
                    for (int c = 0; c <= m; c++) {                                                 \
                        __m256 v0 = _mm256_loadu_ps(x0 + 8 * c);                                   \
                        __m256 v1 = _mm256_loadu_ps(x1 + 8 * c);                                   \
                        __m256 v2 = _mm256_loadu_ps(x2 + 8 * c);                                   \
                        __m256 r = LOAD(p + 0);                                                    \
                        a00 = _mm256_fmadd_ps(r, v0, a00);                                         \
                        a10 = _mm256_fmadd_ps(r, v1, a10);                                         \
                        a20 = _mm256_fmadd_ps(r, v2, a20);                                         \
                        r = LOAD(p + 8);                                                           \
                        a01 = _mm256_fmadd_ps(r, v0, a01);                                         \
                        a11 = _mm256_fmadd_ps(r, v1, a11);                                         \
                        a21 = _mm256_fmadd_ps(r, v2, a21);                                         \
                        r = LOAD(p + 16);                                                          \
                        a02 = _mm256_fmadd_ps(r, v0, a02);                                         \
                        a12 = _mm256_fmadd_ps(r, v1, a12);                                         \
                        a22 = _mm256_fmadd_ps(r, v2, a22);                                         \
                        r = LOAD(p + 24);                                                          \
                        a03 = _mm256_fmadd_ps(r, v0, a03);                                         \
                        a13 = _mm256_fmadd_ps(r, v1, a13);                                         \
                        a23 = _mm256_fmadd_ps(r, v2, a23);                                         \
                        p += 64;                                                                   \
                    }                                                                              \
                    __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(a00, a01), _mm256_hadd_ps(a02, a03)); \
                    __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(a10, a11), _mm256_hadd_ps(a12, a13)); \
                    __m256 h2 = _mm256_hadd_ps(_mm256_hadd_ps(a20, a21), _mm256_hadd_ps(a22, a23)); \
                    if (half == 0) {                                                               \
                        lo[0] = h0;                                                                \
                        lo[1] = h1;                                                                \
                        lo[2] = h2;                                                                \
                    } else {                                                                       \
                        t0 = lw_accumulate_squares(t0, lw_join_halves(lo[0], h0));                 \
                        t1 = lw_accumulate_squares(t1, lw_join_halves(lo[1], h1));                 \
                        t2 = lw_accumulate_squares(t2, lw_join_halves(lo[2], h2));                 \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            _mm256_storeu_pd(totals + 4 * i, t0);                                                  \
            _mm256_storeu_pd(totals + 4 * i + 4, t1);                                              \
            _mm256_storeu_pd(totals + 4 * i + 8, t2);                                              \
        }                                                                                          \
        for (; i < n; i++) LW_TRI8_ONE_INPUT(LOAD, i)                                              \
        m0 = m1;                                                                                   \
    }                                                                                              \
    for (int i = 0; i < n; i++) out[(size_t)i * out_stride] = lw_hsum_pd(_mm256_loadu_pd(totals + 4 * i));

// The last step of lw_reduce8, from its two halves' hadd results (rows 0-3 and rows 4-7).
LW_AVX2 static inline __m256 lw_join_halves(__m256 h0123, __m256 h4567) {
    __m256 lo = _mm256_permute2f128_ps(h0123, h4567, 0x20);
    __m256 hi = _mm256_permute2f128_ps(h0123, h4567, 0x31);
    return _mm256_add_ps(lo, hi);
}

LW_AVX2 static void lw_tri8_avx2_batch_f32(const float *w, const float *xc, size_t ld, int n, int d, double *out,
                                           size_t out_stride, double *totals) {
#define WT float
    LW_TRI8_BATCH_BODY(LW_LOAD_F32)
#undef WT
}

LW_AVX2 static void lw_tri8_avx2_batch_f16(const uint16_t *w, const float *xc, size_t ld, int n, int d,
                                           double *out, size_t out_stride, double *totals) {
#define WT uint16_t
    LW_TRI8_BATCH_BODY(LW_LOAD_F16)
#undef WT
}

// ---------------------------------------------------------------------------------------------------------
// AVX-512 (F, DQ, VL) multi-input kernel. A 512-bit register holds the accumulators of one row of W for two
// inputs (lanes 0-7 and 8-15). Tiles of eight inputs (four pairs) take rows four at a time, as the AVX2 batch
// kernel does: 16 accumulators, four input pairs and one row of W, 21 of the 32 registers. Each lane sees the same
// FMAs in the same order as the AVX2 one-input kernel, and each input's row sums are reduced by the same hadd tree
// on their 256-bit halves (lw_reduce8 in its two halves), so every result equals the one-input kernel's bit for bit.

#define LW_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma,f16c")))

LW_AVX512 static inline __m512 lw_dup8(__m256 v) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(v), v, 1);
}

LW_AVX512 static inline __m512 lw_pair8(const float *a, const float *b) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(a)), _mm256_loadu_ps(b), 1);
}

#define LW_LOAD2_F32(ptr) _mm512_broadcast_f32x8(_mm256_loadu_ps(ptr))
#define LW_LOAD2_F16(ptr) lw_dup8(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ptr))))

#define LW_Z512_ROW(LOAD, t)                                                                       \
    {                                                                                              \
        __m512 r = LOAD(p + 8 * (t));                                                              \
        a0##t = _mm512_fmadd_ps(r, v0, a0##t);                                                     \
        a1##t = _mm512_fmadd_ps(r, v1, a1##t);                                                     \
        a2##t = _mm512_fmadd_ps(r, v2, a2##t);                                                     \
        a3##t = _mm512_fmadd_ps(r, v3, a3##t);                                                     \
    }

// _mm256_hadd_ps on both 256-bit halves at once (a0 + a1, a2 + a3, b0 + b1, b2 + b3 in each 128-bit lane; the
// same additions, so the same bits). It keeps the accumulators in EVEX instructions, which reach all 32
// registers; the VEX hadd would pin them to the first 16.
#define LW_HADD512(a, b) _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xdd))

// The four rows' hadd result (lw_reduce8's first two steps) of pair j's two inputs, in their halves of the lanes.
#define LW_Z512_HADD(j) LW_HADD512(LW_HADD512(a##j##0, a##j##1), LW_HADD512(a##j##2, a##j##3))

// One half (rows 0-3 or 4-7) of block row m for the tile's eight inputs: each input's four-row hadd result into
// sums[8 s .. 8 s + 7]. Kept out of line so the compiler allocates the 16 accumulators to registers on their own.
#define LW_TRI8_HALF512(NAME, WT, LOAD)                                                            \
    LW_AVX512 __attribute__((noinline)) static void NAME(const WT *p, const float *const *xs, int m,   \
                                                         float *sums) {                            \
        __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;                         \
        __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;                                         \
        __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00;                                         \
        __m512 a30 = a00, a31 = a00, a32 = a00, a33 = a00;                                         \
        const float *x0 = xs[0], *x1 = xs[1], *x2 = xs[2], *x3 = xs[3];                            \
        const float *x4 = xs[4], *x5 = xs[5], *x6 = xs[6], *x7 = xs[7];                            \
        for (int c = 0; c <= m; c++) {                                                             \
            __m512 v0 = lw_pair8(x0 + 8 * c, x1 + 8 * c);                                          \
            __m512 v1 = lw_pair8(x2 + 8 * c, x3 + 8 * c);                                          \
            __m512 v2 = lw_pair8(x4 + 8 * c, x5 + 8 * c);                                          \
            __m512 v3 = lw_pair8(x6 + 8 * c, x7 + 8 * c);                                          \
            LW_Z512_ROW(LOAD, 0)                                                                   \
            LW_Z512_ROW(LOAD, 1)                                                                   \
            LW_Z512_ROW(LOAD, 2)                                                                   \
            LW_Z512_ROW(LOAD, 3)                                                                   \
            p += 64;                                                                               \
        }                                                                                          \
        _mm512_storeu_ps(sums + 0, LW_Z512_HADD(0));                                               \
        _mm512_storeu_ps(sums + 16, LW_Z512_HADD(1));                                              \
        _mm512_storeu_ps(sums + 32, LW_Z512_HADD(2));                                              \
        _mm512_storeu_ps(sums + 48, LW_Z512_HADD(3));                                              \
    }

LW_TRI8_HALF512(lw_tri8_avx512_half_f32, float, LW_LOAD2_F32)
LW_TRI8_HALF512(lw_tri8_avx512_half_f16, uint16_t, LW_LOAD2_F16)

// Panels of W as in the AVX2 batch kernel; tiles of eight inputs, the last one padded by repeating its last
// input (whose padded results are not used), except that a last tile of one or two inputs runs the one-input
// block (LOAD), which costs less than eight inputs' work and gives the same bits.
#define LW_TRI8_BATCH512_BODY(HALF, LOAD)                                                          \
    int mb = (d + 7) / 8;                                                                          \
    float lo[64], hi[64];                                                                          \
    for (int i = 0; i < n; i++) _mm256_storeu_pd(totals + 4 * i, _mm256_setzero_pd());             \
    int m0 = 0;                                                                                    \
    while (m0 < mb) {                                                                              \
        int m1 = m0 + 1;                                                                           \
        while (m1 < mb && (m1 + 1) * (m1 + 2) / 2 - m0 * (m0 + 1) / 2 <= LW_BATCH512_PANEL_CHUNKS) m1++; \
        for (int i = 0; i < n; i += 8) {                                                           \
            int live = n - i < 8 ? n - i : 8;                                                      \
            if (live <= 2) {                                                                       \
                for (int s = 0; s < live; s++) LW_TRI8_ONE_INPUT(LOAD, i + s)                      \
                continue;                                                                          \
            }                                                                                      \
            const float *xs[8];                                                                    \
            for (int s = 0; s < 8; s++) xs[s] = xc + (size_t)(i + (s < live ? s : live - 1)) * ld; \
            for (int m = m0; m < m1; m++) {                                                        \
                const WT *p = w + (size_t)64 * ((size_t)m * (m + 1) / 2);                          \
                HALF(p, xs, m, lo);                                                                \
                HALF(p + 32, xs, m, hi);                                                           \
                for (int s = 0; s < live; s++) {                                                   \
                    __m256 y = lw_join_halves(_mm256_loadu_ps(lo + 8 * s), _mm256_loadu_ps(hi + 8 * s)); \
                    double *tp = totals + 4 * ((size_t)i + s);                                     \
                    _mm256_storeu_pd(tp, lw_accumulate_squares(_mm256_loadu_pd(tp), y));           \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        m0 = m1;                                                                                   \
    }                                                                                              \
    for (int i = 0; i < n; i++) out[(size_t)i * out_stride] = lw_hsum_pd(_mm256_loadu_pd(totals + 4 * i));

#ifndef LW_BATCH512_PANEL_CHUNKS
#define LW_BATCH512_PANEL_CHUNKS 384 /* 8x8 chunks per panel: 96 KB of float32 W, 48 KB of float16 */
#endif

LW_AVX512 static void lw_tri8_avx512_batch_f32(const float *w, const float *xc, size_t ld, int n, int d,
                                               double *out, size_t out_stride, double *totals) {
#define WT float
    LW_TRI8_BATCH512_BODY(lw_tri8_avx512_half_f32, LW_LOAD_F32)
#undef WT
}

LW_AVX512 static void lw_tri8_avx512_batch_f16(const uint16_t *w, const float *xc, size_t ld, int n, int d,
                                               double *out, size_t out_stride, double *totals) {
#define WT uint16_t
    LW_TRI8_BATCH512_BODY(lw_tri8_avx512_half_f16, LW_LOAD_F16)
#undef WT
}

LW_AVX2 static void lw_f16_to_f32_avx2(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    }
    for (; i < n; i++) dst[i] = lw_half_to_float_scalar(src[i]);
}

LW_AVX2 static void lw_f32_to_f16_avx2(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    for (; i < n; i++) dst[i] = lw_float_to_half_scalar(src[i]);
}

LW_AVX2 static double lw_sqdist_avx2(const float *a, const float *b, int n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 av = _mm256_loadu_ps(a + i), bv = _mm256_loadu_ps(b + i);
        __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(av)),
                                   _mm256_cvtps_pd(_mm256_castps256_ps128(bv)));
        __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(av, 1)),
                                   _mm256_cvtps_pd(_mm256_extractf128_ps(bv, 1)));
        s0 = _mm256_fmadd_pd(d0, d0, s0);
        s1 = _mm256_fmadd_pd(d1, d1, s1);
    }
    double lane[8];
    _mm256_storeu_pd(lane, s0);
    _mm256_storeu_pd(lane + 4, s1);
    lw_sqdist_lanes(a, b, i, n, lane);
    return lw_sqdist_reduce(lane);
}

// Eight rows' distances at a time (see lw_rowdist_reduce): eight independent accumulators, so the fused
// multiply-adds of one row do not wait on each other's latency; the last partial block of 8 elements is loaded into
// zero-padded copies, whose padded lanes add fma(0, 0, a) = a. LOAD(r, i) loads elements i..i+7 of row r as floats,
// AT(r, i) element i. Rows past `n` are not touched; dist[k] receives row k's distance.
LW_AVX2 static inline float lw_hsum8(__m256 v) {
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

#define LW_ROWDISTS8_AVX2(LOAD, AT)                                                              \
    {                                                                                            \
        __m256 acc[8];                                                                           \
        for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_ps();                                \
        int i = 0;                                                                               \
        for (; i + 8 <= d; i += 8) {                                                             \
            __m256 zv = _mm256_loadu_ps(z + i);                                                  \
            for (int k = 0; k < n; k++) {                                                        \
                __m256 e = _mm256_sub_ps(zv, LOAD(k, i));                                        \
                acc[k] = _mm256_fmadd_ps(e, e, acc[k]);                                          \
            }                                                                                    \
        }                                                                                        \
        if (i < d) {                                                                             \
            float zp[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                              \
            for (int j = 0; i + j < d; j++) zp[j] = z[i + j];                                    \
            __m256 zv = _mm256_loadu_ps(zp);                                                     \
            for (int k = 0; k < n; k++) {                                                        \
                float rp[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                          \
                for (int j = 0; i + j < d; j++) rp[j] = AT(k, i + j);                            \
                __m256 e = _mm256_sub_ps(zv, _mm256_loadu_ps(rp));                               \
                acc[k] = _mm256_fmadd_ps(e, e, acc[k]);                                          \
            }                                                                                    \
        }                                                                                        \
        for (int k = 0; k < n; k++) dist[k] = lw_hsum8(acc[k]);                                  \
    }

LW_AVX2 static void lw_sqdists_avx2_f32(const float *rows, int count, int d, const float *z, float *out) {
    for (int r = 0; r < count; r += 8) {
        const float *base = rows + (size_t)r * (size_t)d;
        int n = count - r < 8 ? count - r : 8;
        float *dist = out + r;
#define LW_RD_LOAD_F32(k, i) _mm256_loadu_ps(base + (size_t)(k) * (size_t)d + (i))
#define LW_RD_AT_F32(k, i) base[(size_t)(k) * (size_t)d + (i)]
        if (n == 8) {
            const int n = 8; /* a constant trip count: the accumulators stay in registers */
            LW_ROWDISTS8_AVX2(LW_RD_LOAD_F32, LW_RD_AT_F32)
        } else {
            LW_ROWDISTS8_AVX2(LW_RD_LOAD_F32, LW_RD_AT_F32)
        }
#undef LW_RD_LOAD_F32
#undef LW_RD_AT_F32
    }
}

LW_AVX2 static float lw_nearest_avx2_f16(const uint16_t *rows, int count, int d, const float *z) {
    float best = INFINITY;
    float dist[8];
    const size_t total = (size_t)count * (size_t)d;
    for (int r = 0; r < count; r += 8) {
        const uint16_t *base = rows + (size_t)r * (size_t)d;
        int n = count - r < 8 ? count - r : 8;
        // The rows two groups ahead, into the cache (a cell is read once per input, from L3 or memory); offsets are
        // clamped to the rows, so no pointer leaves the array.
        size_t ahead = (size_t)(r + 16) * (size_t)d, until = (size_t)(r + 24) * (size_t)d;
        if (until > total) until = total;
        for (size_t e = ahead; e < until; e += 32) _mm_prefetch((const char *)(rows + e), _MM_HINT_T0);
#define LW_RD_LOAD_F16(k, i) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(base + (size_t)(k) * (size_t)d + (i))))
#define LW_RD_AT_F16(k, i) lw_half_to_float_scalar(base[(size_t)(k) * (size_t)d + (i)])
        if (n == 8) {
            const int n = 8;
            LW_ROWDISTS8_AVX2(LW_RD_LOAD_F16, LW_RD_AT_F16)
        } else {
            LW_ROWDISTS8_AVX2(LW_RD_LOAD_F16, LW_RD_AT_F16)
        }
#undef LW_RD_LOAD_F16
#undef LW_RD_AT_F16
        for (int k = 0; k < n; k++)
            if (dist[k] < best) best = dist[k];
    }
    return best;
}

// A query's codes, eight at a time: multiply, round to nearest even (the default mode), clamp, narrow; any
// coordinate beyond the clamp (or NaN) sends the sum to the same scalar pass the portable version takes.
LW_AVX2 static double lw_codes_quantise_avx2(const float *z, int d, float inv_scale, int8_t *q) {
    int dp = (d + 3) / 4 * 4;
    __m256 s = _mm256_set1_ps(inv_scale), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 over = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 u = _mm256_mul_ps(_mm256_loadu_ps(z + i), s);
        // NaN or |u| > 127: not (|u| <= 127).
        over = _mm256_or_ps(over, _mm256_cmp_ps(_mm256_and_ps(u, absmask), hi, _CMP_NLE_UQ));
        __m256 c = _mm256_min_ps(_mm256_max_ps(u, lo), hi);  // NaN -> -127 here; fixed below
        __m256i v = _mm256_cvtps_epi32(c);
        __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        __m128i p8 = _mm_packs_epi16(p16, p16);
        _mm_storel_epi64((__m128i *)(q + i), p8);
    }
    int clamped = _mm256_movemask_ps(over) != 0;
    for (; i < d; i++) {
        float u = z[i] * inv_scale;
        q[i] = lw_code_of(u);
        if (!(fabsf(u) <= 127.0f)) clamped = 1;
    }
    for (int j = d; j < dp; j++) q[j] = 0;
    if (!clamped) return 0;
    // Rare: redo the codes of NaN coordinates (0, as the portable version) and sum what lies beyond the clamp.
    for (int j = 0; j < d; j++)
        if (z[j] * inv_scale != z[j] * inv_scale) q[j] = 0;
    return lw_code_beyond(z, 0, d, inv_scale);
}

// Integer codes, AVX2: a group of four dimensions of 16 rows is four loads of 16 bytes (4 rows x 4 codes), each
// widened to 16-bit and multiplied-and-paired with the query's four codes (vpmaddwd); a horizontal add and a
// permutation put the 16 rows' dot products in order. Integer sums: any order gives the same result.
LW_AVX2 static inline void lw_code_dots16_avx2(const uint8_t *block, int dp, const int8_t *q, uint32_t *dot) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (int g = 0; g < dp / 4; g++) {
        int32_t q4;
        memcpy(&q4, q + 4 * g, 4);
        __m256i qq = _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(q4)));
        const uint8_t *p = block + 64 * (size_t)g;
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p)), qq));
        a1 = _mm256_add_epi32(a1,
                              _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p + 16))), qq));
        a2 = _mm256_add_epi32(a2,
                              _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p + 32))), qq));
        a3 = _mm256_add_epi32(a3,
                              _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p + 48))), qq));
    }
    // a0 = rows 0-3 (two partial sums each), a1 rows 4-7: hadd gives [r0 r1 r4 r5 | r2 r3 r6 r7].
    __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a0, a1), 0xD8);
    __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a2, a3), 0xD8);
    _mm256_storeu_si256((__m256i *)dot, lo);
    _mm256_storeu_si256((__m256i *)(dot + 8), hi);
}

LW_AVX2 static void lw_codes_sqdists_avx2(const uint8_t *packed, const int32_t *norms, int count, int dp,
                                          const int8_t *q, int32_t *out) {
    lw_code_query s = lw_code_query_sums(q, dp);
    uint32_t dot[16];
    for (int r = 0; r < count; r += 16) {
        lw_code_dots16_avx2(packed + (size_t)r * (size_t)dp, dp, q, dot);
        int n = count - r < 16 ? count - r : 16;
        for (int k = 0; k < n; k++) out[r + k] = lw_code_distance((uint32_t)norms[r + k], s, dot[k]);
    }
}

LW_AVX2 static int32_t lw_codes_nearest_avx2(const uint8_t *packed, const int32_t *norms, int count, int dp,
                                             const int8_t *q) {
    lw_code_query s = lw_code_query_sums(q, dp);
    uint32_t dot[16];
    int32_t best = INT32_MAX;
    for (int r = 0; r < count; r += 16) {
        lw_code_dots16_avx2(packed + (size_t)r * (size_t)dp, dp, q, dot);
        int n = count - r < 16 ? count - r : 16;
        for (int k = 0; k < n; k++) {
            int32_t v = lw_code_distance((uint32_t)norms[r + k], s, dot[k]);
            if (v < best) best = v;
        }
    }
    return best;
}

// Integer codes, AVX-512 VNNI: one vpdpbusd per group of four dimensions multiplies the 16 rows' unsigned codes by
// the query's four signed codes (broadcast) and adds each row's four products to its lane; the 16 distances then
// come out in order, with no horizontal reduction.
#define LW_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2")))

LW_VNNI static inline __m512i lw_code_dists16_vnni(const uint8_t *block, const int32_t *norms, int dp, const int8_t *q,
                                                   __m512i corr) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0;
    int g = 0, groups = dp / 4;
    for (; g + 2 <= groups; g += 2) {
        int32_t q0, q1;
        memcpy(&q0, q + 4 * g, 4);
        memcpy(&q1, q + 4 * g + 4, 4);
        a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(block + 64 * (size_t)g), _mm512_set1_epi32(q0));
        a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(block + 64 * (size_t)g + 64), _mm512_set1_epi32(q1));
    }
    if (g < groups) {
        int32_t q0;
        memcpy(&q0, q + 4 * g, 4);
        a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(block + 64 * (size_t)g), _mm512_set1_epi32(q0));
    }
    __m512i dot = _mm512_add_epi32(a0, a1);
    return _mm512_add_epi32(_mm512_loadu_si512(norms), _mm512_sub_epi32(corr, _mm512_slli_epi32(dot, 1)));
}

LW_VNNI static void lw_codes_sqdists_vnni(const uint8_t *packed, const int32_t *norms, int count, int dp,
                                          const int8_t *q, int32_t *out) {
    lw_code_query s = lw_code_query_sums(q, dp);
    __m512i corr = _mm512_set1_epi32((int32_t)(s.qn + 256u * s.qsum));
    for (int r = 0; r < count; r += 16) {
        __m512i v = lw_code_dists16_vnni(packed + (size_t)r * (size_t)dp, norms + r, dp, q, corr);
        int n = count - r < 16 ? count - r : 16;
        _mm512_mask_storeu_epi32(out + r, (__mmask16)((1u << n) - 1u), v);
    }
}

LW_VNNI static int32_t lw_codes_nearest_vnni(const uint8_t *packed, const int32_t *norms, int count, int dp,
                                             const int8_t *q) {
    lw_code_query s = lw_code_query_sums(q, dp);
    __m512i corr = _mm512_set1_epi32((int32_t)(s.qn + 256u * s.qsum));
    __m512i best = _mm512_set1_epi32(INT32_MAX);
    size_t total = (size_t)count * (size_t)dp;
    for (int r = 0; r < count; r += 16) {
        // The block after next into the cache (a cell is read once per input); clamped to the rows.
        size_t ahead = (size_t)(r + 32) * (size_t)dp, until = (size_t)(r + 48) * (size_t)dp;
        if (until > total) until = total;
        for (size_t e = ahead; e < until; e += 64) _mm_prefetch((const char *)(packed + e), _MM_HINT_T0);
        __m512i v = lw_code_dists16_vnni(packed + (size_t)r * (size_t)dp, norms + r, dp, q, corr);
        int n = count - r < 16 ? count - r : 16;
        best = _mm512_mask_min_epi32(best, (__mmask16)((1u << n) - 1u), best, v);
    }
    return _mm512_reduce_min_epi32(best);
}

LW_AVX2 static double lw_stream_read_avx2(const float *p, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
    }
    float lane[8];
    _mm256_storeu_ps(lane, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    double total = 0;
    for (int l = 0; l < 8; l++) total += lane[l];
    for (; i < n; i++) total += p[i];
    return total;
}

static int lw_detect_cpu_variant(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")))
        return LW_KERNELS_PORTABLE;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return LW_KERNELS_AVX512;
    return LW_KERNELS_AVX2;
}

// Whether the CPU runs the VNNI code kernels (AVX-512 F, BW, VL and VNNI), cached: -1 unknown.
static volatile int lw_vnni_state = -1;
static int lw_have_vnni(void) {
    int s = lw_vnni_state;
    if (s < 0) {
        __builtin_cpu_init();
        s = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
        lw_vnni_state = s;
    }
    return s;
}

unsigned lw_cpu_features(void) {
    __builtin_cpu_init();
    unsigned f = 0;
    if (__builtin_cpu_supports("avx2")) f |= LW_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= LW_CPU_FMA;
    if (__builtin_cpu_supports("f16c")) f |= LW_CPU_F16C;
    if (__builtin_cpu_supports("avx512f")) f |= LW_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bw")) f |= LW_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512dq")) f |= LW_CPU_AVX512DQ;
    if (__builtin_cpu_supports("avx512vl")) f |= LW_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512vnni")) f |= LW_CPU_AVX512VNNI;
    if (__builtin_cpu_is("amd")) f |= LW_CPU_AMD;
    if (__builtin_cpu_is("intel")) f |= LW_CPU_INTEL;
    return f;
}
#else
static int lw_detect_cpu_variant(void) { return LW_KERNELS_PORTABLE; }
unsigned lw_cpu_features(void) { return 0; }
#endif

// The CPU's best variant, capped by LATENTWATCH_KERNELS ("portable", "avx2"; anything else leaves it).
static int lw_detect_variant(void) {
    int v = lw_detect_cpu_variant();
    const char *cap = getenv("LATENTWATCH_KERNELS");
    if (cap != NULL && strcmp(cap, "portable") == 0) return LW_KERNELS_PORTABLE;
    if (cap != NULL && strcmp(cap, "avx2") == 0 && v > LW_KERNELS_AVX2) return LW_KERNELS_AVX2;
    return v;
}

// The best variant this CPU runs, cached: -1 unknown. A benign race: every thread computes the same value.
static volatile int lw_variant_state = -1;

// Tests only: a cap per thread, so a test forcing a variant cannot change what tests running at the same time
// on other threads compute.
static _Thread_local int lw_variant_cap = LW_KERNELS_AVX512;

int lw_kernels_variant(void) {
    int s = lw_variant_state;
    if (s < 0) {
        s = lw_detect_variant();
        lw_variant_state = s;
    }
    return s < lw_variant_cap ? s : lw_variant_cap;
}

int lw_kernels_have_avx2(void) { return lw_kernels_variant() >= LW_KERNELS_AVX2; }

void lw_kernels_limit(int variant) {
    lw_variant_cap = variant < LW_KERNELS_PORTABLE ? LW_KERNELS_PORTABLE
                     : variant > LW_KERNELS_AVX512 ? LW_KERNELS_AVX512
                                                   : variant;
}

static void lw_center(const float *x, const float *mu, int d, float *scratch) {
    int dp = ((d + 7) / 8) * 8;
    for (int i = 0; i < d; i++) scratch[i] = x[i] - mu[i];
    for (int i = d; i < dp; i++) scratch[i] = 0;
}

double lw_tri8_sqnorm_centered_f32(const float *w, const float *xc, int d) {
#if LW_X86
    if (lw_kernels_have_avx2()) return lw_tri8_avx2_f32(w, xc, d);
#endif
    return lw_tri8_generic_f32(w, xc, d);
}

double lw_tri8_sqnorm_centered_f16(const uint16_t *w, const float *xc, int d) {
#if LW_X86
    if (lw_kernels_have_avx2()) return lw_tri8_avx2_f16(w, xc, d);
#endif
    return lw_tri8_generic_f16(w, xc, d);
}

double lw_tri8_sqnorm_f32(const float *w, const float *x, const float *mu, int d, float *scratch) {
    lw_center(x, mu, d, scratch);
    return lw_tri8_sqnorm_centered_f32(w, scratch, d);
}

double lw_tri8_sqnorm_f16(const uint16_t *w, const float *x, const float *mu, int d, float *scratch) {
    lw_center(x, mu, d, scratch);
    return lw_tri8_sqnorm_centered_f16(w, scratch, d);
}

void lw_tri8_sqnorm_batch_f32(const float *w, const float *xc, size_t ld, int n, int d, double *out,
                              size_t out_stride, double *totals) {
#if LW_X86
    int variant = lw_kernels_variant();
    if (variant == LW_KERNELS_AVX512) {
        lw_tri8_avx512_batch_f32(w, xc, ld, n, d, out, out_stride, totals);
        return;
    }
    if (variant == LW_KERNELS_AVX2) {
        lw_tri8_avx2_batch_f32(w, xc, ld, n, d, out, out_stride, totals);
        return;
    }
#endif
    (void)totals;
    for (int i = 0; i < n; i++) out[(size_t)i * out_stride] = lw_tri8_generic_f32(w, xc + (size_t)i * ld, d);
}

void lw_tri8_sqnorm_batch_f16(const uint16_t *w, const float *xc, size_t ld, int n, int d, double *out,
                              size_t out_stride, double *totals) {
#if LW_X86
    int variant = lw_kernels_variant();
    if (variant == LW_KERNELS_AVX512) {
        lw_tri8_avx512_batch_f16(w, xc, ld, n, d, out, out_stride, totals);
        return;
    }
    if (variant == LW_KERNELS_AVX2) {
        lw_tri8_avx2_batch_f16(w, xc, ld, n, d, out, out_stride, totals);
        return;
    }
#endif
    (void)totals;
    for (int i = 0; i < n; i++) out[(size_t)i * out_stride] = lw_tri8_generic_f16(w, xc + (size_t)i * ld, d);
}

void lw_tri8_matvec_f32(const float *w, const float *xc, int d, float *y) {
#if LW_X86
    if (lw_kernels_have_avx2()) {
        lw_tri8_avx2_matvec_f32(w, xc, d, y);
        return;
    }
#endif
    lw_tri8_generic_matvec_f32(w, xc, d, y);
}

void lw_tri8_matvec_f16(const uint16_t *w, const float *xc, int d, float *y) {
#if LW_X86
    if (lw_kernels_have_avx2()) {
        lw_tri8_avx2_matvec_f16(w, xc, d, y);
        return;
    }
#endif
    lw_tri8_generic_matvec_f16(w, xc, d, y);
}

void lw_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
#if LW_X86
    if (lw_kernels_have_avx2()) {
        lw_f16_to_f32_avx2(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = lw_half_to_float_scalar(src[i]);
}

void lw_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
#if LW_X86
    if (lw_kernels_have_avx2()) {
        lw_f32_to_f16_avx2(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = lw_float_to_half_scalar(src[i]);
}

double lw_stream_read_f32(const float *p, size_t n) {
#if LW_X86
    if (lw_kernels_have_avx2()) return lw_stream_read_avx2(p, n);
#endif
    double total = 0;
    for (size_t i = 0; i < n; i++) total += p[i];
    return total;
}

void lw_sqdists_f32(const float *rows, int count, int d, const float *z, float *out) {
#if LW_X86
    if (lw_kernels_have_avx2()) {
        lw_sqdists_avx2_f32(rows, count, d, z, out);
        return;
    }
#endif
    lw_sqdists_generic_f32(rows, count, d, z, out);
}

float lw_nearest_sqdist_f16(const uint16_t *rows, int count, int d, const float *z) {
#if LW_X86
    if (lw_kernels_have_avx2()) return lw_nearest_avx2_f16(rows, count, d, z);
#endif
    return lw_nearest_generic_f16(rows, count, d, z);
}

size_t lw_codes_padded_dimension(int d) { return d <= 0 ? 0 : ((size_t)d + 3) / 4 * 4; }

size_t lw_codes_packed_bytes(int count, int d) {
    return count <= 0 ? 0 : ((size_t)count + 15) / 16 * 16 * lw_codes_padded_dimension(d);
}

void lw_codes_pack(const int8_t *codes, int count, int d, uint8_t *packed, int32_t *norms) {
    size_t dp = lw_codes_padded_dimension(d), rows = ((size_t)count + 15) / 16 * 16;
    memset(packed, 128, rows * dp);
    for (size_t r = 0; r < rows; r++) {
        int32_t norm = 0;
        if (r < (size_t)count) {
            uint8_t *block = packed + r / 16 * 16 * dp;
            for (int i = 0; i < d; i++) {
                int32_t c = codes[r * (size_t)d + (size_t)i];
                block[64 * (size_t)(i / 4) + 4 * (r % 16) + (size_t)(i % 4)] = (uint8_t)(c + 128);
                norm += c * c;
            }
        }
        norms[r] = norm;
    }
}

double lw_codes_quantise(const float *z, int d, float inv_scale, int8_t *q) {
#if LW_X86
    if (lw_kernels_have_avx2()) return lw_codes_quantise_avx2(z, d, inv_scale, q);
#endif
    return lw_codes_quantise_generic(z, d, inv_scale, q);
}

void lw_codes_sqdists(const uint8_t *packed, const int32_t *norms, int count, int d, const int8_t *q, int32_t *out) {
    int dp = (int)lw_codes_padded_dimension(d);
#if LW_X86
    int variant = lw_kernels_variant();
    if (variant == LW_KERNELS_AVX512 && lw_have_vnni()) {
        lw_codes_sqdists_vnni(packed, norms, count, dp, q, out);
        return;
    }
    if (variant >= LW_KERNELS_AVX2) {
        lw_codes_sqdists_avx2(packed, norms, count, dp, q, out);
        return;
    }
#endif
    lw_codes_sqdists_generic(packed, norms, count, dp, q, out);
}

int32_t lw_codes_nearest_sqdist(const uint8_t *packed, const int32_t *norms, int count, int d, const int8_t *q) {
    int dp = (int)lw_codes_padded_dimension(d);
#if LW_X86
    int variant = lw_kernels_variant();
    if (variant == LW_KERNELS_AVX512 && lw_have_vnni()) return lw_codes_nearest_vnni(packed, norms, count, dp, q);
    if (variant >= LW_KERNELS_AVX2) return lw_codes_nearest_avx2(packed, norms, count, dp, q);
#endif
    return lw_codes_nearest_generic(packed, norms, count, dp, q);
}

double lw_sqdist_f32(const float *a, const float *b, int n) {
#if LW_X86
    if (lw_kernels_have_avx2()) return lw_sqdist_avx2(a, b, n);
#endif
    return lw_sqdist_generic(a, b, n);
}
