/*
 * Threads and their lifecycle: create, the worker loop, idling, destroy.
 *
 * An idle worker first spins briefly, watching the pool's generation
 * counter, so that back-to-back maps hand over work without a system call;
 * then it sleeps on work_cv. At most max_spinners workers spin at once
 * (one fewer than the CPUs), so a pool with far more threads than CPUs,
 * as blocking-I/O maps want, never lets spinners starve the threads that
 * have real work.
 *
 * Lock order: only pool->lock, never held while user code runs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Waits for a job to be queued (or the pool to stop), spinning first if
 * few enough others spin. Called and returns with pool->lock held. */
static void idle(parmap_pool *pool)
{
    unsigned long seen =
        atomic_load_explicit(&pool->gen, memory_order_relaxed);

    if (atomic_load_explicit(&pool->spinners, memory_order_relaxed) <
        pool->max_spinners) {
        atomic_fetch_add_explicit(&pool->spinners, 1, memory_order_relaxed);
        parmap__mutex_unlock(&pool->lock);

        uint64_t deadline = parmap__now_ns() + PARMAP__SPIN_NS;
        int changed = 0;
        for (unsigned i = 1;; i++) {
            if (atomic_load_explicit(&pool->gen, memory_order_acquire) !=
                seen) {
                changed = 1;
                break;
            }
            parmap__cpu_relax();
            if ((i & 63) == 0 && parmap__now_ns() > deadline)
                break;
        }

        atomic_fetch_sub_explicit(&pool->spinners, 1, memory_order_relaxed);
        parmap__mutex_lock(&pool->lock);
        if (changed)
            return;
    }

    pool->sleeping++;
    while (!pool->stopping &&
           atomic_load_explicit(&pool->gen, memory_order_relaxed) == seen)
        parmap__cond_wait(&pool->work_cv, &pool->lock);
    pool->sleeping--;
}

static void *worker_main(void *arg)
{
    parmap_pool *pool = arg;

    parmap__mutex_lock(&pool->lock);
    for (;;) {
        struct parmap__job *job = parmap__queue_take(pool);
        if (job != NULL) {
            parmap__mutex_unlock(&pool->lock);
            job->work(job);
            parmap__mutex_lock(&pool->lock);
            parmap__queue_leave(pool, job);
            continue;
        }
        if (pool->stopping)
            break;
        idle(pool);
    }
    parmap__mutex_unlock(&pool->lock);
    return NULL;
}

/* Stops and joins the first `started` workers. */
static void stop_workers(parmap_pool *pool, size_t started)
{
    parmap__mutex_lock(&pool->lock);
    pool->stopping = 1;
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
    parmap__cond_broadcast(&pool->work_cv);
    parmap__mutex_unlock(&pool->lock);
    for (size_t i = 0; i < started; i++)
        pthread_join(pool->threads[i], NULL);
}

static void free_pool(parmap_pool *pool)
{
    free(pool->threads);
    free(pool);
}

/* Creates the lock and condition variables; on failure destroys those it
 * made. */
static int init_sync(parmap_pool *pool)
{
    int rc = parmap__mutex_init(&pool->lock);
    if (rc != 0)
        return rc;
    rc = parmap__cond_init(&pool->work_cv);
    if (rc != 0)
        goto fail_work;
    rc = parmap__cond_init(&pool->done_cv);
    if (rc != 0)
        goto fail_done;
    return 0;

fail_done:
    parmap__cond_destroy(&pool->work_cv);
fail_work:
    parmap__mutex_destroy(&pool->lock);
    return rc;
}

static void destroy_sync(parmap_pool *pool)
{
    parmap__cond_destroy(&pool->done_cv);
    parmap__cond_destroy(&pool->work_cv);
    parmap__mutex_destroy(&pool->lock);
}

static int start_workers(parmap_pool *pool, const parmap_pool_opts *opts)
{
    pthread_attr_t attr, *pattr = NULL;
    size_t started;
    int rc = 0;

    if (opts != NULL && opts->stack_size != 0) {
        if (pthread_attr_init(&attr) != 0)
            return -ENOMEM;
        if (pthread_attr_setstacksize(&attr, opts->stack_size) != 0) {
            pthread_attr_destroy(&attr);
            return -EINVAL;
        }
        pattr = &attr;
    }
    for (started = 0; started < pool->nworkers; started++) {
        rc = parmap__thread_create(&pool->threads[started], pattr,
                                   worker_main, pool);
        if (rc != 0)
            break;
    }
    if (pattr != NULL)
        pthread_attr_destroy(pattr);
    if (rc != 0) {
        stop_workers(pool, started);
        /* EAGAIN is what users can act on ("too many threads"); other
         * pthread_create failures are resource failures too. */
        return rc == -EINVAL ? -EINVAL : -EAGAIN;
    }
    return 0;
}

int parmap_pool_create(parmap_pool **out, size_t nthreads,
                       const parmap_pool_opts *opts)
{
    parmap_pool *pool;
    size_t cpus;
    int rc;

    if (out == NULL)
        return -EINVAL;
    if (nthreads == 0)
        nthreads = parmap__default_threads();

    /* The struct has cache-line-aligned members; calloc only promises
     * alignment for the fundamental types. */
    if (PARMAP__FAULT_HIT())
        return -ENOMEM;
    pool = aligned_alloc(PARMAP__CACHELINE,
                         (sizeof *pool + PARMAP__CACHELINE - 1) /
                             PARMAP__CACHELINE * PARMAP__CACHELINE);
    if (pool == NULL)
        return -ENOMEM;
    memset(pool, 0, sizeof *pool);

    pool->nthreads = nthreads;
    pool->nworkers = nthreads - 1;
    cpus = parmap_cpu_count();
    pool->max_spinners = cpus > 1 ? (unsigned)(cpus - 1 < 64 ? cpus - 1 : 64)
                                  : 0;
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->spinners, 0);
    atomic_init(&pool->calls, 0);

    if (pool->nworkers > 0) {
        pool->threads = parmap__calloc(pool->nworkers, sizeof(pthread_t));
        if (pool->threads == NULL) {
            free(pool);
            return -ENOMEM;
        }
    }
    rc = init_sync(pool);
    if (rc != 0) {
        free_pool(pool);
        return rc;
    }
    rc = start_workers(pool, opts);
    if (rc != 0) {
        destroy_sync(pool);
        free_pool(pool);
        return rc;
    }
    *out = pool;
    return 0;
}

static int is_own_worker(const parmap_pool *pool)
{
    pthread_t self = pthread_self();

    for (size_t i = 0; i < pool->nworkers; i++)
        if (pthread_equal(pool->threads[i], self))
            return 1;
    return 0;
}

int parmap_pool_destroy(parmap_pool *pool)
{
    if (pool == NULL)
        return 0;
    if (is_own_worker(pool))
        return -EDEADLK;
    /* Taking the lock orders this check after any call's final release
     * of it (parmap__job_finish). */
    parmap__mutex_lock(&pool->lock);
    size_t calls = atomic_load_explicit(&pool->calls, memory_order_acquire);
    parmap__mutex_unlock(&pool->lock);
    if (calls != 0)
        return -EBUSY;

    stop_workers(pool, pool->nworkers);
    destroy_sync(pool);
    free_pool(pool);
    return 0;
}

size_t parmap_pool_size(const parmap_pool *pool)
{
    return pool != NULL ? pool->nthreads : 0;
}
