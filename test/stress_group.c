/*
 * Randomised stress of task groups as a plain program, for
 * ThreadSanitizer (which cannot run Criterion binaries), ASan/UBSan and
 * valgrind. Three scenarios, on pools of 1, 3 and 8 threads:
 *
 *   mixed:   8 threads submit at once, tasks submit children, tasks fail
 *            and are retried (at once or after a delay), two consumers
 *            report completions with WAIT_ANY and resubmit some failures,
 *            a third thread reads outcomes and counts meanwhile.
 *   cancel:  the same under a halt rule and a cancellation token that
 *            another thread triggers at a random moment, with an item
 *            timeout: submits race the stop.
 *   groups:  threads create and destroy many small groups on one pool
 *            (more than it has slots) while maps run on it.
 *
 * Every task records what it did; after each scenario the program checks
 * ids, run counts, statuses, attempts and reports against those records.
 *
 * Usage: stress_group [seed]   (or PARMAP_TEST_SEED; PARMAP_TEST_QUICK=1
 * shrinks). Prints a summary; exits 1 on any wrong result.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CPU_COUNT, sched_getaffinity, nanosleep, dprintf */
#endif
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

#define FAIL_CODE (-1000)

static atomic_size_t mismatches;

/* What the scenarios did, to show that they reach the interesting cases. */
static struct {
    size_t tasks, attempts, resubmits, not_run, refused, stopped;
} stats;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t seed_of_run;

static void bad(const char *fmt, ...)
{
    va_list ap;
    if (atomic_fetch_add(&mismatches, 1) >= 20)
        return;
    pthread_mutex_lock(&report_lock);
    va_start(ap, fmt);
    printf("MISMATCH (seed %" PRIu64 "): ", seed_of_run);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    pthread_mutex_unlock(&report_lock);
}

/* ------------------------------------------------------------------------ */
/* Task records                                                             */
/* ------------------------------------------------------------------------ */

struct scenario;

struct rec {
    struct scenario *sc;
    size_t id;            /* written by submit before the task can start */
    int has_id;
    unsigned fail_attempts; /* the first this many attempts fail */
    unsigned children;      /* submitted by the first attempt */
    unsigned depth;
    long work_us;
    atomic_uint runs;       /* attempts made */
    atomic_int last_rc;     /* what the last attempt returned */
};

struct scenario {
    parmap_group *g;
    struct rec *recs;      /* in creation order, not id order */
    size_t cap;
    atomic_uint *reports;   /* by id: times WAIT_ANY reported it */
    atomic_uint *resubmits; /* by id: times a consumer resubmitted it */
    atomic_size_t used;
    atomic_size_t submitted;  /* submits that returned 0 */
    atomic_size_t refused;    /* submits that returned ECANCELED */
    atomic_int producers_left;
    int stopping;             /* halt/cancel scenario */
    uint64_t seed;
};

static struct rec *new_rec(struct scenario *sc, uint64_t *rng, unsigned depth)
{
    size_t k = atomic_fetch_add(&sc->used, 1);
    if (k >= sc->cap)
        return NULL;
    struct rec *r = &sc->recs[k];
    r->sc = sc;
    r->has_id = 0;
    r->id = SIZE_MAX;
    r->fail_attempts = pt_below(rng, 4) == 0 ? (unsigned)pt_below(rng, 4) : 0;
    r->children = depth > 0 && pt_below(rng, 3) == 0
                      ? (unsigned)pt_below(rng, 3) + 1 : 0;
    r->depth = depth;
    r->work_us = pt_below(rng, 8) == 0 ? (long)pt_below(rng, 300) : 0;
    atomic_init(&r->runs, 0);
    atomic_init(&r->last_rc, 0x7eadbeef);
    return r;
}

static int rec_task(void *ctx);

static int submit_rec(struct scenario *sc, struct rec *r)
{
    int rc = parmap_group_submit(sc->g, rec_task, r, &r->id);
    if (rc == 0) {
        r->has_id = 1;
        atomic_fetch_add(&sc->submitted, 1);
    } else if (rc == PARMAP_ECANCELED) {
        atomic_fetch_add(&sc->refused, 1);
        if (!sc->stopping)
            bad("submit refused in a group that cannot stop");
    } else {
        bad("submit returned %d (%s)", rc, parmap_err_name(rc));
    }
    return rc;
}

static int rec_task(void *ctx)
{
    struct rec *r = ctx;
    struct scenario *sc = r->sc;
    unsigned n = atomic_fetch_add(&r->runs, 1) + 1;
    size_t done, pending;

    /* The id was written before the task could start (TSan checks the
     * ordering; this checks the value). */
    if (r->id >= sc->cap)
        bad("task started before its id was written");
    if (parmap_group_counts(sc->g, &done, &pending) != 0 || pending == 0)
        bad("a running task sees pending = 0");
    if (n == 1 && r->children > 0) {
        uint64_t rng = pt_mix(sc->seed ^ (uint64_t)(uintptr_t)r);
        for (unsigned c = 0; c < r->children; c++) {
            struct rec *child = new_rec(sc, &rng, r->depth - 1);
            if (child == NULL || submit_rec(sc, child) != 0)
                break;
        }
    }
    if (r->work_us > 0) {
        double end = pt_now() + r->work_us * 1e-6;
        while (pt_now() < end) {
            int s = parmap_should_stop();
            if (s != 0) {
                atomic_store(&r->last_rc, s);
                return s;
            }
            pt_sleep_us(50);
        }
    }
    int rc = n <= r->fail_attempts ? FAIL_CODE - (int)n : 0;
    atomic_store(&r->last_rc, rc);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Mixed and cancel scenarios                                               */
/* ------------------------------------------------------------------------ */

struct producer {
    struct scenario *sc;
    size_t roots;
    uint64_t seed;
};

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    uint64_t rng = p->seed;
    for (size_t i = 0; i < p->roots; i++) {
        struct rec *r = new_rec(p->sc, &rng, (unsigned)pt_below(&rng, 4));
        if (r == NULL || submit_rec(p->sc, r) != 0)
            break;
        if (pt_below(&rng, 50) == 0)
            sched_yield();
    }
    atomic_fetch_sub(&p->sc->producers_left, 1);
    return NULL;
}


struct consumer {
    struct scenario *sc;
    uint64_t seed;
};

static void *consumer_main(void *arg)
{
    struct consumer *c = arg;
    struct scenario *sc = c->sc;
    uint64_t rng = c->seed;

    for (;;) {
        size_t id = SIZE_MAX;
        int status = 0x7eadbeef;
        double timeout = pt_below(&rng, 3) == 0 ? 0.0 : 0.005;
        int rc = parmap_group_wait(sc->g, PARMAP_WAIT_ANY, timeout, &id,
                                   &status);
        if (rc == PARMAP_ETIMEDOUT)
            continue;
        if (rc == PARMAP_ENOENT) {
            /* Nothing pending or unreported; the end once no producer
             * can add more (tasks only add while pending). */
            if (atomic_load(&sc->producers_left) == 0)
                break;
            pt_sleep_us(100);
            continue;
        }
        if (rc != 0) {
            bad("WAIT_ANY returned %d (%s)", rc, parmap_err_name(rc));
            break;
        }
        if (id >= sc->cap) {
            bad("WAIT_ANY reported unknown id %zu", id);
            continue;
        }
        atomic_fetch_add(&sc->reports[id], 1);
        int status2 = 0;
        rc = parmap_group_task(sc->g, id, &status2, NULL);
        if (rc != 0) {
            /* Only this consumer may have resubmitted it since. */
            bad("reported task %zu reads as %d (%s)", id, rc,
                parmap_err_name(rc));
            continue;
        }
        if (status2 != status)
            bad("task %zu: WAIT_ANY status %d, parmap_group_task %d", id,
                status, status2);
        /* Rerun some failures under the same id; count it before, so the
         * final check never sees a report the count does not cover. */
        if (status <= FAIL_CODE && pt_below(&rng, 2) == 0) {
            atomic_fetch_add(&sc->resubmits[id], 1);
            rc = parmap_group_resubmit(sc->g, id);
            if (rc != 0) {
                atomic_fetch_sub(&sc->resubmits[id], 1);
                if (!(rc == PARMAP_ECANCELED && sc->stopping))
                    bad("resubmit(%zu) = %d (%s)", id, rc,
                        parmap_err_name(rc));
            }
        }
    }
    return NULL;
}

/* Reads outcomes and counts while everything runs, to race the lock. */
static void *reader_main(void *arg)
{
    struct scenario *sc = arg;
    uint64_t rng = sc->seed ^ 0x5eed;
    size_t last_done = 0;

    while (atomic_load(&sc->producers_left) > 0) {
        size_t done = 0, pending = 0;
        if (parmap_group_counts(sc->g, &done, &pending) != 0)
            bad("counts failed");
        (void)last_done;
        last_done = done;
        size_t used = atomic_load(&sc->used);
        size_t id = (size_t)pt_below(&rng, used + 2);
        int status;
        unsigned attempts;
        int rc = parmap_group_task(sc->g, id, &status, &attempts);
        if (rc != 0 && rc != PARMAP_EBUSY && rc != PARMAP_ENOENT)
            bad("task(%zu) = %d", id, rc);
        pt_sleep_us(50);
    }
    return NULL;
}

struct cancel_at {
    parmap_cancel *cancel;
    long delay_us;
};

static void *cancel_main(void *arg)
{
    struct cancel_at *c = arg;
    pt_sleep_us(c->delay_us);
    parmap_cancel_trigger(c->cancel);
    return NULL;
}

/* Checks every record against what the group says about its id. */
static void check_scenario(struct scenario *sc, const char *name,
                           size_t nthreads)
{
    size_t used = atomic_load(&sc->used);
    size_t n = atomic_load(&sc->submitted);
    size_t done = 0, pending = 1;
    unsigned char *seen;

    if (used > sc->cap)
        used = sc->cap;
    parmap_group_counts(sc->g, &done, &pending);
    if (done != n || pending != 0)
        bad("%s/%zu: counts done=%zu pending=%zu, %zu submitted", name,
            nthreads, done, pending, n);
    seen = calloc(n ? n : 1, 1);
    if (seen == NULL) {
        bad("out of memory");
        return;
    }
    for (size_t k = 0; k < used; k++) {
        struct rec *r = &sc->recs[k];
        if (!r->has_id)
            continue;
        if (r->id >= n) {
            bad("%s/%zu: id %zu beyond %zu tasks", name, nthreads, r->id, n);
            continue;
        }
        if (seen[r->id]++)
            bad("%s/%zu: id %zu given twice", name, nthreads, r->id);
        int status;
        unsigned attempts;
        int rc = parmap_group_task(sc->g, r->id, &status, &attempts);
        unsigned runs = atomic_load(&r->runs);
        unsigned resub = atomic_load(&sc->resubmits[r->id]);
        unsigned reports = atomic_load(&sc->reports[r->id]);
        if (rc != 0) {
            bad("%s/%zu: task %zu reads %d at the end", name, nthreads,
                r->id, rc);
            continue;
        }
        if (attempts != runs)
            bad("%s/%zu: task %zu: %u attempts recorded, %u made", name,
                nthreads, r->id, attempts, runs);
        if (runs == 0) {
            if (!sc->stopping || (status != PARMAP_ENOTRUN &&
                                  status != PARMAP_ETIMEDOUT))
                bad("%s/%zu: task %zu never ran, status %d", name, nthreads,
                    r->id, status);
        } else if (status != atomic_load(&r->last_rc) &&
                   !(sc->stopping && (status == PARMAP_ENOTRUN ||
                                      status == PARMAP_ETIMEDOUT))) {
            /* A resubmitted task the stop caught before its rerun is "not
             * run"; that reads ETIMEDOUT when the halt was triggered by a
             * task returning -ETIMEDOUT (see stop.c). */
            bad("%s/%zu: task %zu status %d, its last attempt returned %d",
                name, nthreads, r->id, status, atomic_load(&r->last_rc));
        }
        if (!sc->stopping) {
            /* Without stops a task ends only when it succeeded or used
             * up its retries in its last run. */
            if (status != 0 && status > FAIL_CODE)
                bad("%s/%zu: task %zu odd status %d", name, nthreads, r->id,
                    status);
            if ((runs > r->fail_attempts) != (status == 0))
                bad("%s/%zu: task %zu: %u runs, %u failing, status %d",
                    name, nthreads, r->id, runs, r->fail_attempts, status);
        }
        stats.attempts += runs;
        stats.resubmits += resub;
        stats.not_run += status == PARMAP_ENOTRUN ||
                         (status == PARMAP_ETIMEDOUT && runs == 0);
        if (reports != resub + 1)
            bad("%s/%zu: task %zu reported %u times, finished %u times",
                name, nthreads, r->id, reports, resub + 1);
    }
    for (size_t i = 0; i < n; i++)
        if (!seen[i])
            bad("%s/%zu: id %zu belongs to no record", name, nthreads, i);
    free(seen);
}

static int retry_some(void *ctx, size_t index, int err, unsigned attempt)
{
    (void)ctx;
    (void)attempt;
    return (index + (size_t)err) % 5 != 0;
}

/* One run of the mixed (stopping = 0) or cancel (stopping = 1) scenario. */
static void run_scenario(size_t nthreads, int stopping, uint64_t seed,
                         size_t roots_per_producer, size_t *tasks_out)
{
    enum { PRODUCERS = 8, CONSUMERS = 2 };
    uint64_t rng = seed;
    parmap_pool *pool = NULL;
    parmap_cancel *cancel = NULL;
    struct scenario sc;
    int rc;

    memset(&sc, 0, sizeof sc);
    sc.cap = PRODUCERS * roots_per_producer * 16;
    sc.recs = calloc(sc.cap, sizeof *sc.recs);
    sc.reports = calloc(sc.cap, sizeof *sc.reports);
    sc.resubmits = calloc(sc.cap, sizeof *sc.resubmits);
    sc.stopping = stopping;
    sc.seed = seed;
    atomic_init(&sc.used, 0);
    atomic_init(&sc.submitted, 0);
    atomic_init(&sc.refused, 0);
    atomic_init(&sc.producers_left, PRODUCERS);
    if (!sc.recs || !sc.reports || !sc.resubmits) {
        bad("out of memory");
        goto out;
    }
    for (size_t i = 0; i < sc.cap; i++) {
        atomic_init(&sc.reports[i], 0);
        atomic_init(&sc.resubmits[i], 0);
    }
    if ((rc = parmap_pool_create(&pool, nthreads, NULL)) != 0) {
        bad("pool_create = %d", rc);
        goto out;
    }

    parmap_opts o = {0};
    o.max_concurrency = pt_below(&rng, 2) ? 0 : 1 + pt_below(&rng, nthreads + 1);
    o.retries = (unsigned)pt_below(&rng, 3);
    o.retry_delay = pt_below(&rng, 2) ? 0.0 : 0.0005;
    o.retry_delay_max = 0.002;
    if (pt_below(&rng, 2))
        o.retry_if = retry_some;
    if (stopping) {
        if (parmap_cancel_create(&cancel) != 0) {
            bad("cancel_create failed");
            goto out;
        }
        o.cancel = cancel;
        o.item_timeout = 0.0002;
        if (pt_below(&rng, 2))
            o.halt = (parmap_halt){PARMAP_HALT_NOW, PARMAP_HALT_ON_FAIL,
                                   20 + (size_t)pt_below(&rng, 50), 0.0};
    }
    if ((rc = parmap_group_create(&sc.g, pool, &o)) != 0) {
        bad("group_create = %d", rc);
        goto out;
    }

    pthread_t prod[PRODUCERS], cons[CONSUMERS], reader, trig;
    struct producer p[PRODUCERS];
    struct consumer c[CONSUMERS];
    struct cancel_at ca = {cancel, (long)pt_below(&rng, 3000)};
    for (size_t i = 0; i < PRODUCERS; i++) {
        p[i] = (struct producer){&sc, roots_per_producer, pt_mix(seed + i)};
        pthread_create(&prod[i], NULL, producer_main, &p[i]);
    }
    for (size_t i = 0; i < CONSUMERS; i++) {
        c[i] = (struct consumer){&sc, pt_mix(seed ^ (i + 100))};
        pthread_create(&cons[i], NULL, consumer_main, &c[i]);
    }
    pthread_create(&reader, NULL, reader_main, &sc);
    if (stopping)
        pthread_create(&trig, NULL, cancel_main, &ca);
    for (size_t i = 0; i < PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    for (size_t i = 0; i < CONSUMERS; i++)
        pthread_join(cons[i], NULL);
    pthread_join(reader, NULL);
    if (stopping)
        pthread_join(trig, NULL);

    /* Every task finished and was reported; ALL and ANY agree. */
    if ((rc = parmap_group_wait(sc.g, PARMAP_WAIT_ALL, 0.0, NULL, NULL)) != 0)
        bad("final WAIT_ALL = %d", rc);
    if ((rc = parmap_group_wait(sc.g, PARMAP_WAIT_ANY, 0.0, NULL, NULL)) !=
        PARMAP_ENOENT)
        bad("final WAIT_ANY = %d", rc);
    check_scenario(&sc, stopping ? "cancel" : "mixed", nthreads);
    if (stopping && parmap_cancel_triggered(cancel)) {
        struct rec extra;
        memset(&extra, 0, sizeof extra);
        if (parmap_group_submit(sc.g, rec_task, &extra, NULL) !=
            PARMAP_ECANCELED)
            bad("submit after cancel was accepted");
    }
    *tasks_out += atomic_load(&sc.submitted);
    stats.tasks += atomic_load(&sc.submitted);
    stats.refused += atomic_load(&sc.refused);
    stats.stopped += stopping && atomic_load(&sc.refused) > 0;
    if ((rc = parmap_group_destroy(sc.g)) != 0)
        bad("group_destroy = %d", rc);
out:
    if (pool != NULL && (rc = parmap_pool_destroy(pool)) != 0)
        bad("pool_destroy = %d", rc);
    parmap_cancel_destroy(cancel);
    free(sc.recs);
    free((void *)sc.reports);
    free((void *)sc.resubmits);
}

/* ------------------------------------------------------------------------ */
/* Many groups on one pool, with maps                                       */
/* ------------------------------------------------------------------------ */

struct many {
    parmap_pool *pool;
    uint64_t seed;
    size_t rounds;
    atomic_size_t *tasks;
};

static int add_one(void *ctx)
{
    atomic_fetch_add((atomic_size_t *)ctx, 1);
    return 0;
}

static int map_item(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx;
    (void)in;
    *(uint64_t *)out = pt_f(i);
    return 0;
}

static void *many_main(void *arg)
{
    struct many *m = arg;
    uint64_t rng = m->seed;
    enum { HELD = 12 };
    parmap_group *held[HELD];
    atomic_size_t ran[HELD];

    for (size_t round = 0; round < m->rounds; round++) {
        /* Hold several groups at once, so that five threads exceed the
         * pool's 64 slots and some groups get none. */
        size_t want[HELD];
        for (size_t h = 0; h < HELD; h++) {
            atomic_init(&ran[h], 0);
            held[h] = NULL;
            parmap_opts o = {.max_concurrency = (size_t)pt_below(&rng, 3)};
            if (parmap_group_create(&held[h], m->pool, &o) != 0) {
                bad("many: group_create failed");
                continue;
            }
            want[h] = (size_t)pt_below(&rng, 20);
            for (size_t t = 0; t < want[h]; t++)
                if (parmap_group_submit(held[h], add_one, &ran[h], NULL) != 0)
                    bad("many: submit failed");
        }
        uint64_t out[100];
        if (parmap_map(m->pool, 100, NULL, 0, out, sizeof out[0], map_item,
                       NULL, NULL) != 0)
            bad("many: map failed");
        for (size_t i = 0; i < 100; i++)
            if (out[i] != pt_f(i))
                bad("many: map slot %zu wrong", i);
        for (size_t h = 0; h < HELD; h++) {
            if (held[h] == NULL)
                continue;
            if (pt_below(&rng, 2) &&
                parmap_group_wait(held[h], PARMAP_WAIT_ALL, -1.0, NULL,
                                  NULL) != 0)
                bad("many: wait failed");
            if (parmap_group_destroy(held[h]) != 0)
                bad("many: destroy failed");
            if (atomic_load(&ran[h]) != want[h])
                bad("many: %zu of %zu tasks ran", (size_t)atomic_load(&ran[h]),
                    want[h]);
            atomic_fetch_add(m->tasks, want[h]);
        }
    }
    return NULL;
}

static void run_many(size_t nthreads, uint64_t seed, size_t rounds,
                     size_t *tasks_out)
{
    enum { THREADS = 6 };
    parmap_pool *pool = NULL;
    atomic_size_t tasks;
    atomic_init(&tasks, 0);
    if (parmap_pool_create(&pool, nthreads, NULL) != 0) {
        bad("many: pool_create failed");
        return;
    }
    pthread_t th[THREADS];
    struct many m[THREADS];
    for (size_t i = 0; i < THREADS; i++) {
        m[i] = (struct many){pool, pt_mix(seed + 7 * i), rounds, &tasks};
        pthread_create(&th[i], NULL, many_main, &m[i]);
    }
    for (size_t i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    if (parmap_pool_destroy(pool) != 0)
        bad("many: pool_destroy failed");
    *tasks_out += atomic_load(&tasks);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : pt_seed();
    static const size_t pools[] = {1, 3, 8};
    int quick = pt_quick();
    size_t rounds = quick ? 2 : 6;

    seed_of_run = seed;
    atomic_init(&mismatches, 0);
    printf("parmap group stress: seed %" PRIu64 "%s\n", seed,
           quick ? " (quick)" : "");
    for (size_t p = 0; p < sizeof pools / sizeof pools[0]; p++) {
        size_t tasks = 0;
        double t0 = pt_now();
        for (size_t r = 0; r < rounds; r++) {
            run_scenario(pools[p], 0, seed + 100 * p + r, quick ? 30 : 80,
                         &tasks);
            run_scenario(pools[p], 1, seed + 100 * p + r + 50,
                         quick ? 30 : 80, &tasks);
        }
        run_many(pools[p], seed + p, quick ? 3 : 10, &tasks);
        printf("pool %zu: %zu tasks, %.2f s\n", pools[p], tasks,
               pt_now() - t0);
    }
    printf("scenarios: %zu tasks, %zu attempts, %zu resubmits, %zu not run, "
           "%zu submits refused, %zu groups stopped while submitting\n",
           stats.tasks, stats.attempts, stats.resubmits, stats.not_run,
           stats.refused, stats.stopped);
    size_t n = atomic_load(&mismatches);
    printf("%s (%zu mismatches)\n",
           n ? "group stress: FAILED" : "group stress: all tasks correct", n);
    return n ? 1 : 0;
}
