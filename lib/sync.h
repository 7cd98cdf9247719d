/*
 * Lock wrappers, clocks and platform defaults shared by the library.
 *
 * A failing lock, unlock, wait or signal means a corrupted or misused
 * object: a programmer error that cannot be reported to the caller in any
 * useful way, so these wrappers abort(), as libuv's do. Initialisation can
 * fail for resource reasons and returns an error code instead; so do the
 * allocation and thread-creation wrappers, which are also the fault
 * injection sites of the test build.
 */
#ifndef PARMAP_SYNC_H
#define PARMAP_SYNC_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "fault.h"

/* Shared counters that different threads write live on their own cache
 * lines so that one thread's updates do not slow another's reads. */
#define PARMAP__CACHELINE 64
#define PARMAP__ALIGNED _Alignas(PARMAP__CACHELINE)

static inline void parmap__mutex_lock(pthread_mutex_t *m)
{
    if (pthread_mutex_lock(m) != 0)
        abort();
}

static inline void parmap__mutex_unlock(pthread_mutex_t *m)
{
    if (pthread_mutex_unlock(m) != 0)
        abort();
}

static inline void parmap__cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    if (pthread_cond_wait(c, m) != 0)
        abort();
}

static inline void parmap__cond_signal(pthread_cond_t *c)
{
    if (pthread_cond_signal(c) != 0)
        abort();
}

static inline void parmap__cond_broadcast(pthread_cond_t *c)
{
    if (pthread_cond_broadcast(c) != 0)
        abort();
}

static inline void parmap__mutex_destroy(pthread_mutex_t *m)
{
    if (pthread_mutex_destroy(m) != 0)
        abort();
}

static inline void parmap__cond_destroy(pthread_cond_t *c)
{
    if (pthread_cond_destroy(c) != 0)
        abort();
}

static inline int parmap__mutex_init(pthread_mutex_t *m)
{
    if (PARMAP__FAULT_HIT())
        return -ENOMEM;
    return -pthread_mutex_init(m, NULL);
}

static inline int parmap__cond_init(pthread_cond_t *c)
{
    if (PARMAP__FAULT_HIT())
        return -ENOMEM;
    return -pthread_cond_init(c, NULL);
}

static inline void *parmap__calloc(size_t n, size_t size)
{
    if (PARMAP__FAULT_HIT())
        return NULL;
    return calloc(n, size);
}

static inline int parmap__thread_create(pthread_t *t, const pthread_attr_t *a,
                                        void *(*fn)(void *), void *arg)
{
    if (PARMAP__FAULT_HIT())
        return -EAGAIN;
    return -pthread_create(t, a, fn, arg);
}

/* Monotonic time in nanoseconds. About 20 ns through the vDSO, cheap enough
 * to read once per chunk of work but not once per item. */
static inline uint64_t parmap__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Tells the CPU we are busy-waiting, so a sibling hyperthread gets the
 * core's resources and the spin costs less power. */
static inline void parmap__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif /* PARMAP_SYNC_H */
