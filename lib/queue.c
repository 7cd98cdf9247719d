/*
 * The work queue: a list of jobs, one per running call, in arrival order.
 *
 * Items are not queued one by one: each job hands out its own work (a map
 * hands out index ranges with an atomic counter), so the queue costs one
 * lock round trip per thread joining a call, not per item, and can carry
 * work from many calls at once.
 *
 * A job's life, seen from its owner (the thread that made the call):
 *   parmap__job_start()   queue it and wake workers worth waking;
 *   job->work(job)        take part, like every helper;
 *   parmap__job_finish()  unqueue it and wait until every helper has left.
 * After finish returns no other thread holds a pointer to the job, so it
 * can live on the owner's stack.
 *
 * Lock order: only pool->lock, never held while user code runs.
 */
#include "internal.h"

void parmap__job_init(struct parmap__job *job, parmap__work_fn work,
                      size_t limit, size_t want)
{
    job->work = work;
    job->limit = limit;
    job->want = want;
    job->prev = job->next = NULL;
    job->queued = 0;
    job->owner_waiting = 0;
    atomic_init(&job->helpers, 0);
    atomic_init(&job->open, 1);
}

/* Wakes sleeping workers for a newly queued job, leaving out those that
 * are spinning: they see the new generation without a system call. */
static void wake_for(parmap_pool *pool, const struct parmap__job *job)
{
    size_t want = job->want;
    size_t spinning = atomic_load_explicit(&pool->spinners,
                                           memory_order_relaxed);

    if (pool->sleeping == 0 || want <= spinning)
        return;
    want -= spinning;
    if (want >= pool->sleeping) {
        parmap__cond_broadcast(&pool->work_cv);
        return;
    }
    while (want-- > 0)
        parmap__cond_signal(&pool->work_cv);
}

void parmap__job_start(parmap_pool *pool, struct parmap__job *job)
{
    atomic_fetch_add_explicit(&pool->calls, 1, memory_order_relaxed);
    if (job->limit < 2 || job->want == 0 || pool->nworkers == 0)
        return; /* Nobody could help: run it on the caller, unqueued. */

    parmap__mutex_lock(&pool->lock);
    job->prev = pool->tail;
    job->next = NULL;
    if (pool->tail != NULL)
        pool->tail->next = job;
    else
        pool->head = job;
    pool->tail = job;
    job->queued = 1;
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
    wake_for(pool, job);
    parmap__mutex_unlock(&pool->lock);
}

static void unlink_job(parmap_pool *pool, struct parmap__job *job)
{
    if (job->prev != NULL)
        job->prev->next = job->next;
    else
        pool->head = job->next;
    if (job->next != NULL)
        job->next->prev = job->prev;
    else
        pool->tail = job->prev;
    job->prev = job->next = NULL;
    job->queued = 0;
}

void parmap__job_finish(parmap_pool *pool, struct parmap__job *job)
{
    if (job->queued) {
        /* Helpers still inside work() are finishing their last items;
         * those are usually short, so spin a little before sleeping. */
        uint64_t deadline = 0;
        for (unsigned i = 0;
             atomic_load_explicit(&job->helpers, memory_order_acquire) > 0;
             i++) {
            parmap__cpu_relax();
            if ((i & 63) == 63) {
                uint64_t now = parmap__now_ns();
                if (deadline == 0)
                    deadline = now + PARMAP__SPIN_NS;
                else if (now > deadline)
                    break;
            }
        }

        parmap__mutex_lock(&pool->lock);
        unlink_job(pool, job);
        job->owner_waiting = 1;
        while (atomic_load_explicit(&job->helpers, memory_order_relaxed) > 0)
            parmap__cond_wait(&pool->done_cv, &pool->lock);
        parmap__mutex_unlock(&pool->lock);
    }
    /* The last access to the pool: destroy may free it from here on. */
    atomic_fetch_sub_explicit(&pool->calls, 1, memory_order_release);
}

struct parmap__job *parmap__queue_take(parmap_pool *pool)
{
    for (struct parmap__job *job = pool->head; job != NULL; job = job->next) {
        size_t helpers =
            atomic_load_explicit(&job->helpers, memory_order_relaxed);
        /* The owner is always inside work(), so it counts towards the
         * limit: helpers + 1 < limit keeps the bound exact. */
        if (helpers + 1 < job->limit &&
            atomic_load_explicit(&job->open, memory_order_relaxed)) {
            atomic_store_explicit(&job->helpers, helpers + 1,
                                  memory_order_relaxed);
            return job;
        }
    }
    return NULL;
}

void parmap__queue_leave(parmap_pool *pool, struct parmap__job *job)
{
    size_t left = atomic_load_explicit(&job->helpers, memory_order_relaxed);

    /* Release: the owner's acquire load of 0 sees every write the helper
     * made to the caller's arrays. */
    atomic_store_explicit(&job->helpers, left - 1, memory_order_release);
    if (left == 1 && job->owner_waiting)
        parmap__cond_broadcast(&pool->done_cv);
}
