/*
 * Private declarations shared by the files of lib/.
 *
 * The pool (pool.c) owns threads. The queue (queue.c) is a list of jobs:
 * one job per running call (a map today; streams and task groups later),
 * each knowing how to hand out its own work. A job is owned by the thread
 * that made the call; it lives in that thread's stack frame, and the owner
 * does not return before every worker that joined the job has left it.
 *
 * Lock order: pool->lock is the only lock the library holds, and it is
 * never held while user code runs.
 */
#ifndef PARMAP_INTERNAL_H
#define PARMAP_INTERNAL_H

/* Every file of lib/ includes this header first, so the feature macro is
 * seen before any system header: clock_gettime, CPU_COUNT_S and friends. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stddef.h>
#include <stdint.h>

#include "parmap.h"
#include "sync.h"

/* How long an idle thread busy-waits for new work before it sleeps on the
 * condition variable. Long enough to bridge the gap between back-to-back
 * maps, short enough that an idle pool costs no measurable CPU. */
#define PARMAP__SPIN_NS 100000u

struct parmap__job;

/* Runs the job's work on the calling thread until there is nothing left to
 * claim. Called by the owner and by every worker that joins. */
typedef void (*parmap__work_fn)(struct parmap__job *job);

struct parmap__job {
    /* Set by the owner before the job is queued, then read-only. */
    parmap__work_fn work;
    size_t limit; /* threads allowed inside work(), the owner included */
    size_t want;  /* workers worth waking for it */

    /* Protected by pool->lock. */
    struct parmap__job *prev, *next;
    int queued;
    int owner_waiting;

    /* Changed under pool->lock; the owner may also read it without the
     * lock while it spins waiting for helpers to leave. */
    atomic_size_t helpers;

    /* 1 while work may be left to claim. Cleared by whichever thread
     * finds the job exhausted or stopped; read by workers choosing a job. */
    atomic_int open;
};

struct parmap_pool {
    pthread_mutex_t lock;
    pthread_cond_t work_cv; /* idle workers wait here for a new job */
    pthread_cond_t done_cv; /* owners wait here for helpers to leave */

    /* Protected by lock. */
    struct parmap__job *head, *tail;
    size_t sleeping; /* workers blocked on work_cv */
    int stopping;

    /* Bumped (under lock) whenever a job is queued or the pool stops;
     * spinning workers watch it without the lock. */
    PARMAP__ALIGNED atomic_ulong gen;
    /* Workers busy-waiting right now; incremented under lock. */
    atomic_uint spinners;
    /* Calls in progress; destroy refuses while non-zero. */
    atomic_size_t calls;

    /* Immutable after create. */
    PARMAP__ALIGNED size_t nthreads; /* threads per map, caller included */
    size_t nworkers;                 /* nthreads - 1 */
    unsigned max_spinners;
    pthread_t *threads;
};

/* cpu.c */
size_t parmap__default_threads(void);

/* queue.c: the owner's side of a job's life. */
void parmap__job_init(struct parmap__job *job, parmap__work_fn work,
                      size_t limit, size_t want);
void parmap__job_start(parmap_pool *pool, struct parmap__job *job);
void parmap__job_finish(parmap_pool *pool, struct parmap__job *job);

/* queue.c: the worker's side, called with pool->lock held. */
struct parmap__job *parmap__queue_take(parmap_pool *pool);
void parmap__queue_leave(parmap_pool *pool, struct parmap__job *job);

/* progress.c: counts of finished items and the serialised, throttled
 * progress callback. */
struct parmap__progress {
    PARMAP__ALIGNED atomic_size_t done;
    atomic_size_t failed;
    PARMAP__ALIGNED atomic_int busy; /* 1 while a callback runs */
    atomic_uint_least64_t last_ns;   /* when the last callback started */
    parmap_progress_fn fn;
    void *ctx;
    uint64_t interval_ns;
    uint64_t start_ns;
    size_t total;
};

void parmap__progress_init(struct parmap__progress *p, parmap_progress_fn fn,
                           void *ctx, double interval, size_t total,
                           uint64_t start_ns);
/* Adds finished items; returns non-zero if the callback, when it was due
 * and called, asked to stop. */
int parmap__progress_add(struct parmap__progress *p, size_t ok, size_t bad,
                         uint64_t now_ns);
/* Makes the final call with the final counts. */
void parmap__progress_final(struct parmap__progress *p, uint64_t now_ns);

#endif /* PARMAP_INTERNAL_H */
