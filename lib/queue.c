/*
 * The work queue: the jobs of the calls running on a pool, one job per call,
 * each published in a slot of the pool.
 *
 * Items are not queued one by one: each job hands out its own work (a map
 * hands out index ranges with an atomic counter), so the queue costs a few
 * atomic operations per thread joining a call, not per item, and carries
 * work from many calls at once. Publishing, joining and leaving take no
 * lock; the lock is only taken to sleep or to wake a sleeper.
 *
 * A job's life, seen from its owner (the thread that made the call):
 *   parmap__job_start()   publish it and wake workers worth waking;
 *   job->work(job)        take part, like every helper;
 *   parmap__job_finish()  retire it and wait until no worker refers to it.
 * After finish returns no other thread holds a pointer to the job, so it
 * can live on the owner's stack.
 *
 * Lock order: only pool->lock, held only around condition variables.
 */
#include "internal.h"

void parmap__job_init(struct parmap__job *job, parmap__work_fn work,
                      size_t limit, size_t want)
{
    job->work = work;
    job->limit = limit;
    job->want = want;
    job->slot = NULL;
}

/* Wakes sleeping workers for a newly published job, leaving out those
 * that spin: they see the new generation without a system call. */
static void wake_for(parmap_pool *pool, const struct parmap__job *job)
{
    size_t want = job->want;
    size_t spinning = atomic_load(&pool->spinners);
    size_t sleeping = atomic_load(&pool->sleeping);

    if (sleeping == 0 || want <= spinning)
        return;
    want -= spinning;
    parmap__mutex_lock(&pool->lock);
    if (want >= sleeping)
        parmap__cond_broadcast(&pool->work_cv);
    else
        while (want-- > 0)
            parmap__cond_signal(&pool->work_cv);
    parmap__mutex_unlock(&pool->lock);
}

void parmap__job_start(parmap_pool *pool, struct parmap__job *job)
{
    atomic_fetch_add_explicit(&pool->calls, 1, memory_order_relaxed);
    if (job->limit < 2 || job->want == 0 || pool->nworkers == 0)
        return; /* Nobody could help: run it on the caller, unqueued. */

    for (int s = 0; s < PARMAP__SLOTS; s++) {
        struct parmap__slot *slot = &pool->slots[s];
        int free_slot = 0;
        if (atomic_load_explicit(&slot->busy, memory_order_relaxed) != 0 ||
            !atomic_compare_exchange_strong(&slot->busy, &free_slot, 1))
            continue;

        /* The slot is closed with no helpers (its last owner saw to
         * that); open it under a new tag. */
        uint64_t old = atomic_load_explicit(&slot->state, memory_order_relaxed);
        job->slot = slot;
        atomic_store_explicit(&slot->job, job, memory_order_relaxed);
        atomic_store_explicit(&slot->limit, job->limit, memory_order_relaxed);
        atomic_store(&slot->state, (old & ~(PARMAP__SLOT_TAG - 1)) +
                                       PARMAP__SLOT_TAG + PARMAP__SLOT_OPEN);
        atomic_fetch_or(&pool->active, UINT64_C(1) << s);
        atomic_fetch_add(&pool->gen, 1);
        wake_for(pool, job);
        return;
    }
    /* Every slot taken: the caller runs the job alone. */
}

void parmap__job_close(struct parmap__job *job)
{
    if (job->slot != NULL &&
        (atomic_load_explicit(&job->slot->state, memory_order_relaxed) &
         PARMAP__SLOT_OPEN))
        atomic_fetch_and(&job->slot->state, ~PARMAP__SLOT_OPEN);
}

void parmap__job_finish(parmap_pool *pool, struct parmap__job *job)
{
    struct parmap__slot *slot = job->slot;

    if (slot != NULL) {
        uint64_t state = atomic_fetch_and(&slot->state, ~PARMAP__SLOT_OPEN);
        atomic_fetch_and(&pool->active,
                         ~(UINT64_C(1) << (slot - pool->slots)));

        if ((state & PARMAP__SLOT_HELPERS) != 0) {
            /* Helpers are finishing their last items; those are usually
             * short, so spin a little before sleeping. */
            uint64_t deadline = 0;
            for (unsigned i = 1; (atomic_load(&slot->state) &
                                  PARMAP__SLOT_HELPERS) != 0;
                 i++) {
                parmap__cpu_relax();
                if ((i & 63) == 0) {
                    uint64_t now = parmap__now_ns();
                    if (deadline == 0)
                        deadline = now + PARMAP__SPIN_NS;
                    else if (now > deadline)
                        break;
                }
            }
            parmap__mutex_lock(&pool->lock);
            atomic_store(&slot->owner_waiting, 1);
            while ((atomic_load(&slot->state) & PARMAP__SLOT_HELPERS) != 0)
                parmap__cond_wait(&pool->done_cv, &pool->lock);
            atomic_store(&slot->owner_waiting, 0);
            parmap__mutex_unlock(&pool->lock);
        }
        atomic_store_explicit(&slot->busy, 0, memory_order_release);
    }
    /* The last access to the pool: destroy may free it from here on. */
    atomic_fetch_sub_explicit(&pool->calls, 1, memory_order_release);
}

/* Joins the job in `slot` if it is open and has room under its limit;
 * returns it, or NULL. */
static struct parmap__job *try_join(struct parmap__slot *slot)
{
    uint64_t state = atomic_load(&slot->state);

    while (state & PARMAP__SLOT_OPEN) {
        /* A limit read from a newer use of the slot comes with a newer
         * tag, and then the exchange below fails. The owner is always
         * inside the job, so helpers + 1 < limit keeps the bound exact. */
        size_t limit =
            atomic_load_explicit(&slot->limit, memory_order_relaxed);
        if ((state & PARMAP__SLOT_HELPERS) + 1 >= limit)
            return NULL;
        if (atomic_compare_exchange_weak(&slot->state, &state, state + 1))
            return atomic_load_explicit(&slot->job, memory_order_relaxed);
    }
    return NULL;
}

/* Leaves the job in `slot`; wakes its owner if it waits for the last
 * helper. Release: the owner that sees no helpers also sees every write
 * the helper made to the caller's arrays. */
static void leave(parmap_pool *pool, struct parmap__slot *slot)
{
    uint64_t old = atomic_fetch_sub(&slot->state, 1);

    if ((old & PARMAP__SLOT_HELPERS) == 1 && !(old & PARMAP__SLOT_OPEN) &&
        atomic_load(&slot->owner_waiting)) {
        parmap__mutex_lock(&pool->lock);
        parmap__cond_broadcast(&pool->done_cv);
        parmap__mutex_unlock(&pool->lock);
    }
}

int parmap__queue_work(parmap_pool *pool)
{
    uint64_t mask = atomic_load(&pool->active);

    while (mask != 0) {
        struct parmap__slot *slot = &pool->slots[__builtin_ctzll(mask)];
        mask &= mask - 1;

        struct parmap__job *job = try_join(slot);
        if (job != NULL) {
            job->work(job);
            leave(pool, slot);
            return 1;
        }
    }
    return 0;
}

void parmap__job_reopen(parmap_pool *pool, struct parmap__job *job)
{
    struct parmap__slot *slot = job->slot;

    if (slot == NULL)
        return;
    atomic_fetch_or(&slot->state, PARMAP__SLOT_OPEN);
    atomic_fetch_or(&pool->active, UINT64_C(1) << (slot - pool->slots));
    atomic_fetch_add(&pool->gen, 1);
    wake_for(pool, job);
}
