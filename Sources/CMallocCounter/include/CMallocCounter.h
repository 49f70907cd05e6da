#ifndef LATENTWATCH_MALLOC_COUNTER_H
#define LATENTWATCH_MALLOC_COUNTER_H
/// Number of malloc/calloc/realloc/memalign calls in this process so far (benchmark builds only: linking
/// this target interposes the allocator through glibc's __libc_* entry points).
long lw_allocation_count(void);
/// The same, counted on the calling thread only.
long lw_thread_allocation_count(void);
#endif
