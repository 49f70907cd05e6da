// The multi-input tri8 kernel alone, beside the machine's one-thread SGEMM rate, in one run.
//
//   clang -O2 -I Sources/CLatentKernels/include Tests/Benchmarks/kernel_bench.c Sources/CLatentKernels/kernels.c \
//       -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas -lm -o /tmp/kernel_bench && \
//   OPENBLAS_NUM_THREADS=1 /tmp/kernel_bench
//
// Scores 1,024 centred rows of D = 512 against 10 packed factors with lw_tri8_sqnorm_batch_f32 (best of 7; the
// AVX2 variant, then each better one the CPU runs), and
// times cblas_sgemm on 2,048 x 2,048 float32 matrices (best of 5) with the OpenBLAS this links (its core printed).
// Useful work counts the triangle only: d (d + 1) / 2 multiply-adds per row and factor.
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "CLatentKernels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    const int d = 512, n = 1024, k = 10, dp = (d + 7) / 8 * 8;
    const size_t count = lw_tri8_count(d);
    float *w = malloc(count * sizeof(float) * k);
    float *x = malloc((size_t)n * dp * sizeof(float));
    double *out = malloc((size_t)n * k * sizeof(double)), *totals = malloc((size_t)n * 4 * sizeof(double));
    srand(1);
    for (size_t i = 0; i < count * k; i++) w[i] = (float)(rand() % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < (size_t)n * dp; i++) x[i] = (float)(rand() % 1000) / 1000.0f;
    // Each variant this CPU runs, forced in turn on this thread (LW_KERNELS_AVX2, then the CPU's best).
    int best_variant = lw_kernels_variant();
    double rate[3] = {0, 0, 0}, kernel[3] = {0, 0, 0};
    for (int v = LW_KERNELS_AVX2; v <= best_variant; v++) {
        lw_kernels_limit(v);
        double best = 1e30;
        for (int r = 0; r < 7; r++) {
            double t0 = now();
            for (int c = 0; c < k; c++) lw_tri8_sqnorm_batch_f32(w + c * count, x, dp, n, d, out + c, k, totals);
            double t = now() - t0;
            if (t < best) best = t;
        }
        rate[v] = n / best;
        kernel[v] = (double)d * (d + 1) / 2 * 2 * k * n / best / 1e9;
    }
    lw_kernels_limit(LW_KERNELS_AVX512);

    const int m = 2048;
    float *a = malloc((size_t)m * m * sizeof(float)), *b = malloc((size_t)m * m * sizeof(float));
    float *c = malloc((size_t)m * m * sizeof(float));
    for (size_t i = 0; i < (size_t)m * m; i++) a[i] = b[i] = (float)(rand() % 1000) / 1000.0f;
    double gbest = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, m, m, 1.0f, a, m, b, m, 0.0f, c, m);
        double t = now() - t0;
        if (t < gbest) gbest = t;
    }
    double sgemm = 2.0 * m * m * m / gbest / 1e9;
    static const char *names[3] = {"portable C", "AVX2+FMA+F16C", "AVX-512"};
    printf("CPU's best scoring kernels: %s; OpenBLAS core: %s\n", names[best_variant], openblas_get_corename());
    printf("cblas_sgemm %dx%d, one thread: %.1f GFLOP/s\n", m, m, sgemm);
    for (int v = LW_KERNELS_AVX2; v <= best_variant; v++) {
        printf("lw_tri8_sqnorm_batch_f32 (%s), D=%d, K=%d, %d rows: %.0f inputs/s, %.1f GFLOP/s of useful work, "
               "%.0f %% of SGEMM\n",
               names[v], d, k, n, rate[v], kernel[v], 100 * kernel[v] / sgemm);
    }
    return 0;
}
