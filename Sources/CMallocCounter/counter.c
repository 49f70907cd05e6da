// Counts heap allocations for the benchmark by interposing glibc's allocator entry points.
#define _GNU_SOURCE
#include "CMallocCounter.h"

#include <stdatomic.h>
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static atomic_long lw_count;
static _Thread_local long lw_thread_count;

long lw_allocation_count(void) { return atomic_load_explicit(&lw_count, memory_order_relaxed); }
long lw_thread_allocation_count(void) { return lw_thread_count; }

void *malloc(size_t n) {
    atomic_fetch_add_explicit(&lw_count, 1, memory_order_relaxed);
    lw_thread_count++;
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b) {
    atomic_fetch_add_explicit(&lw_count, 1, memory_order_relaxed);
    lw_thread_count++;
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n) {
    atomic_fetch_add_explicit(&lw_count, 1, memory_order_relaxed);
    lw_thread_count++;
    return __libc_realloc(p, n);
}

void *memalign(size_t alignment, size_t n) {
    atomic_fetch_add_explicit(&lw_count, 1, memory_order_relaxed);
    lw_thread_count++;
    return __libc_memalign(alignment, n);
}

void *aligned_alloc(size_t alignment, size_t n) { return memalign(alignment, n); }

int posix_memalign(void **out, size_t alignment, size_t n) {
    void *p = memalign(alignment, n);
    if (!p) return 12;  // ENOMEM
    *out = p;
    return 0;
}

void free(void *p) { __libc_free(p); }
