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
 * Lock order: only pool->lock, held only around the condition variables,
 * never while user code runs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Waits until the generation moves past `seen` (a job was published or
 * the pool is stopping), spinning first if few enough others spin. */
static void idle(parmap_pool *pool, unsigned long seen)
{
    unsigned spinning = atomic_load(&pool->spinners);

    while (spinning < pool->max_spinners) {
        if (!atomic_compare_exchange_weak(&pool->spinners, &spinning,
                                          spinning + 1))
            continue;
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
        atomic_fetch_sub(&pool->spinners, 1);
        if (changed)
            return;
        break;
    }

    /* Sleep. Publishers bump gen and then read sleeping; we raise sleeping
     * and then read gen: one of the two sees the other. */
    parmap__mutex_lock(&pool->lock);
    atomic_fetch_add(&pool->sleeping, 1);
    while (atomic_load(&pool->gen) == seen)
        parmap__cond_wait(&pool->work_cv, &pool->lock);
    atomic_fetch_sub(&pool->sleeping, 1);
    parmap__mutex_unlock(&pool->lock);
}

static void *worker_main(void *arg)
{
    parmap_pool *pool = arg;

    /* Tell create we are up: by now the thread's own start-up (stack,
     * thread-local storage, a sanitizer's bookkeeping) is done. */
    parmap__mutex_lock(&pool->lock);
    if (++pool->started == pool->nworkers)
        parmap__cond_broadcast(&pool->done_cv);
    parmap__mutex_unlock(&pool->lock);

    for (;;) {
        /* Read the generation before looking for work, so a job
         * published after the look is never slept through. */
        unsigned long seen = atomic_load(&pool->gen);
        if (parmap__queue_work(pool))
            continue;
        if (atomic_load(&pool->stopping))
            break;
        idle(pool, seen);
    }
    return NULL;
}

/* Stops and joins the first `started` workers. */
static void stop_workers(parmap_pool *pool, size_t started)
{
    atomic_store(&pool->stopping, 1);
    parmap__mutex_lock(&pool->lock);
    atomic_fetch_add(&pool->gen, 1);
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
    rc = parmap__cond_init_monotonic(&pool->done_cv);
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
    if (rc == 0) {
        /* Return only once every worker runs its loop, so no thread of the
         * pool is half-started when create returns: a fork() right after
         * then cannot catch one inside the allocator. */
        parmap__mutex_lock(&pool->lock);
        while (pool->started < pool->nworkers)
            parmap__cond_wait(&pool->done_cv, &pool->lock);
        parmap__mutex_unlock(&pool->lock);
    }
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

    pool = parmap__aligned_calloc(sizeof *pool);
    if (pool == NULL)
        return -ENOMEM;

    pool->fork_gen = parmap__fork_generation();
    pool->nthreads = nthreads;
    pool->nworkers = nthreads - 1;
    cpus = parmap_cpu_count();
    pool->max_spinners = cpus > 1 ? (unsigned)(cpus - 1 < 64 ? cpus - 1 : 64)
                                  : 0;
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->active, 0);
    atomic_init(&pool->sleeping, 0);
    atomic_init(&pool->spinners, 0);
    atomic_init(&pool->stopping, 0);
    atomic_init(&pool->calls, 0);
    for (int s = 0; s < PARMAP__SLOTS; s++) {
        atomic_init(&pool->slots[s].state, 0);
        atomic_init(&pool->slots[s].job, NULL);
        atomic_init(&pool->slots[s].limit, 0);
        atomic_init(&pool->slots[s].busy, 0);
        atomic_init(&pool->slots[s].owner_waiting, 0);
    }

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
    if (parmap__pool_forked(pool)) {
        /* The workers, and whatever state the lock was in, stayed behind
         * in the parent: only the memory is ours to free. */
        free_pool(pool);
        return 0;
    }
    if (is_own_worker(pool))
        return -EDEADLK;
    /* Acquire pairs with the release that ends every call, so nothing a
     * finished call did to the pool can come after the frees below. */
    if (atomic_load_explicit(&pool->calls, memory_order_acquire) != 0)
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
