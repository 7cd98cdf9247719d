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
#include <string.h>
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

/* A condition variable whose timed waits use CLOCK_MONOTONIC, so a clock
 * change does not stretch or cut a timeout. */
static inline int parmap__cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t attr;
    int rc;

    if (PARMAP__FAULT_HIT())
        return -ENOMEM;
    if ((rc = pthread_condattr_init(&attr)) != 0)
        return -rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
    return -rc;
}

/* Waits until signalled or until the monotonic time `deadline_ns`; the
 * condition variable must come from parmap__cond_init_monotonic(). Returns
 * 0, or ETIMEDOUT once the deadline has passed. */
static inline int parmap__cond_timedwait_ns(pthread_cond_t *c,
                                            pthread_mutex_t *m,
                                            uint64_t deadline_ns)
{
    struct timespec ts;
    int rc;

    ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
    ts.tv_nsec = (long)(deadline_ns % 1000000000u);
    rc = pthread_cond_timedwait(c, m, &ts);
    if (rc != 0 && rc != ETIMEDOUT)
        abort();
    return rc;
}

static inline void *parmap__calloc(size_t n, size_t size)
{
    if (PARMAP__FAULT_HIT())
        return NULL;
    return calloc(n, size);
}

/* Zeroed memory aligned to a cache line, for structs with PARMAP__ALIGNED
 * members (calloc only promises alignment for the fundamental types). */
static inline void *parmap__aligned_calloc(size_t size)
{
    size_t rounded;
    void *p;

    if (PARMAP__FAULT_HIT())
        return NULL;
    rounded = (size + PARMAP__CACHELINE - 1) / PARMAP__CACHELINE *
              PARMAP__CACHELINE;
    p = aligned_alloc(PARMAP__CACHELINE, rounded);
    if (p != NULL)
        memset(p, 0, rounded);
    return p;
}

static inline void *parmap__realloc(void *p, size_t size)
{
    if (PARMAP__FAULT_HIT())
        return NULL;
    return realloc(p, size);
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
