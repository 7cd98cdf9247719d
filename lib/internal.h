/*
 * Private declarations shared by the files of lib/.
 *
 * The pool (pool.c) owns threads. The queue (queue.c) holds jobs in slots:
 * one job per running call (a map today; streams and task groups later),
 * each knowing how to hand out its own work. A job is owned by the thread
 * that made the call; it lives in that thread's stack frame, and the owner
 * does not return before every worker that joined the job has left it.
 *
 * Lock order: pool->lock is the only lock the library holds; it guards only
 * sleeping and waking, and is never held while user code runs.
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

/* Calls that can be queued on one pool at once. A call that finds every
 * slot taken runs on its caller alone, which is slower but still correct. */
#define PARMAP__SLOTS 64

struct parmap__job;

/* Runs the job's work on the calling thread until there is nothing left to
 * claim. Called by the owner and by every worker that joins. */
typedef void (*parmap__work_fn)(struct parmap__job *job);

struct parmap__slot;

struct parmap__job {
    /* Set by the owner before the job is queued, then read-only. */
    parmap__work_fn work;
    size_t limit; /* threads allowed inside work(), the owner included */
    size_t want;  /* workers worth waking for it */
    struct parmap__slot *slot; /* where it is published, or NULL */
};

/*
 * Where a queued job is published. Whether a worker may join is decided
 * by one word, `state`: a tag that changes each time the slot is reused,
 * an OPEN bit, and the number of helpers inside the job. A worker joins by
 * one compare-and-swap on that word and only then reads the job pointer;
 * the owner closes the word and waits only for helpers that did join. So
 * no worker can reach a job whose owner has returned, and an owner whose
 * job nobody joined never waits at all.
 */
#define PARMAP__SLOT_OPEN (UINT64_C(1) << 31)
#define PARMAP__SLOT_HELPERS (PARMAP__SLOT_OPEN - 1)
#define PARMAP__SLOT_TAG (UINT64_C(1) << 32)

struct parmap__slot {
    PARMAP__ALIGNED atomic_uint_least64_t state;
    _Atomic(struct parmap__job *) job; /* valid to those who joined */
    atomic_size_t limit;               /* the job's limit, for joiners */
    atomic_int busy;                   /* owned by a call */
    atomic_int owner_waiting;          /* owner sleeps on done_cv */
};

struct parmap_pool {
    pthread_mutex_t lock;   /* guards sleeping on the condition variables */
    pthread_cond_t work_cv; /* idle workers wait here for a new job */
    pthread_cond_t done_cv; /* owners wait here for their helpers to leave,
                               and create for its workers to start */
    size_t started;         /* workers that reached their loop; lock */

    /* Bumped whenever a job is queued or the pool stops; idle workers
     * watch it, spinning without the lock or sleeping with it. */
    PARMAP__ALIGNED atomic_ulong gen;
    /* Bit s set while slot s holds a job. */
    atomic_uint_least64_t active;
    /* Workers sleeping on work_cv (changed under lock) and spinning. */
    PARMAP__ALIGNED atomic_size_t sleeping;
    atomic_uint spinners;
    atomic_int stopping;
    /* Calls in progress; destroy refuses while non-zero. */
    PARMAP__ALIGNED atomic_size_t calls;

    /* Immutable after create. */
    PARMAP__ALIGNED size_t nthreads; /* threads per map, caller included */
    size_t nworkers;                 /* nthreads - 1 */
    unsigned max_spinners;
    unsigned fork_gen; /* parmap__fork_generation() at create */
    pthread_t *threads;

    struct parmap__slot slots[PARMAP__SLOTS];
};

/* stop.c: why and how a call stops early, shared by maps, streams and
 * groups. */
struct parmap_cancel {
    atomic_int triggered;
};

enum parmap__stop_reason {
    PARMAP__RUNNING = 0,
    PARMAP__STOP_SOON, /* start nothing new; running items finish */
    PARMAP__STOP_NOW,  /* also ask running items to stop */
    PARMAP__STOPPING   /* being stopped: the code is being written */
};

struct parmap__stop {
    /* A parmap__stop_reason: RUNNING, then STOPPING (taken by one thread,
     * by CAS, while it writes `code`), then SOON or NOW (released). */
    PARMAP__ALIGNED atomic_int state;
    /* Written by the thread that stopped the call, before it publishes
     * SOON or NOW: the call's result, and the status of items that never
     * start (PARMAP_ETIMEDOUT only when the deadline stopped it). */
    int code;
    int not_run;

    /* Counts of final outcomes for the halt rule; only kept when a rule
     * is set. */
    PARMAP__ALIGNED atomic_size_t ok, failed;

    /* Read-only after parmap__stop_init. */
    PARMAP__ALIGNED parmap_cancel *cancel;
    uint64_t deadline_ns;     /* 0 = none */
    uint64_t item_timeout_ns; /* 0 = none */
    parmap_halt halt;
    size_t total; /* 0 = unknown */
};

/* The item a thread is running, for parmap_should_stop(). */
struct parmap__running {
    struct parmap__stop *stop;
    uint64_t item_deadline_ns; /* 0 = none */
    struct parmap__running *outer; /* an enclosing call's, when nested */
};

/* Checks the option fields stop.c uses; 0 or PARMAP_EINVAL. */
int parmap__stop_check_opts(const parmap_opts *opts);
void parmap__stop_init(struct parmap__stop *st, const parmap_opts *opts,
                       size_t total, uint64_t start_ns);
/* Stops the call with `code` unless it has stopped already; `now` also
 * asks running items to stop. Returns 1 if this call did it. */
int parmap__stop(struct parmap__stop *st, int now, int code);
/* Non-zero once stopped; also notices a triggered token or a passed
 * deadline (read the clock only when `now_ns` is non-zero or a deadline
 * is set). */
int parmap__stop_poll(struct parmap__stop *st);
/* Records one item's final outcome and applies the halt rule. */
void parmap__stop_count(struct parmap__stop *st, int rc);
/* The status of an item that never started: ENOTRUN or ETIMEDOUT. */
int parmap__stop_not_run_status(const struct parmap__stop *st);
/* Makes parmap_should_stop() on this thread answer for `r`. */
void parmap__running_enter(struct parmap__running *r,
                           struct parmap__stop *st);
void parmap__running_leave(struct parmap__running *r);

/* The delay before the retry that follows attempt `attempts` (1 = the
 * first attempt): first_ns doubled for each further attempt, capped at
 * max_ns when that is non-zero. */
uint64_t parmap__backoff_ns(uint64_t first_ns, uint64_t max_ns,
                           unsigned attempts);

/* Seconds (validated non-negative) to nanoseconds, saturating. */
uint64_t parmap__seconds_to_ns(double seconds);

/* fork.c: how many times this process line has forked since the library
 * was first used; a pool remembers the value it was created under. */
unsigned parmap__fork_generation(void);

/* 1 when `pool` was inherited across fork(). */
static inline int parmap__pool_forked(const parmap_pool *pool)
{
    return pool->fork_gen != parmap__fork_generation();
}

/* cpu.c */
size_t parmap__default_threads(void);

/* queue.c: the owner's side of a job's life. */
void parmap__job_init(struct parmap__job *job, parmap__work_fn work,
                      size_t limit, size_t want);
void parmap__job_start(parmap_pool *pool, struct parmap__job *job);
void parmap__job_finish(parmap_pool *pool, struct parmap__job *job);
/* Marks the job as having nothing left to claim, so no more workers join.
 * Only a thread inside the job (its owner or a helper) may call it. */
void parmap__job_close(struct parmap__job *job);
/* Opens a closed job again (more work arrived) and wakes job->want workers
 * for it. Only the job's owner or a thread inside the job may call it,
 * between start and finish and never concurrently with finish: the slot
 * stays the job's until then. A group or a stream is its job's owner, so
 * any thread holding its lock may, setting job->want just before (only
 * start and reopen read it). */
void parmap__job_reopen(parmap_pool *pool, struct parmap__job *job);

/* queue.c: the worker's side. Finds a job with room, joins it, runs its
 * work and leaves; returns 0 if no job had room. */
int parmap__queue_work(parmap_pool *pool);

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
