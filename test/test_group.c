/*
 * Tests of lib/group.c: task groups. Ids, outcomes by id, the three waits
 * (each finished task reported once by WAIT_ANY), timeouts, resubmits,
 * submission from many threads and from inside tasks, the exact
 * concurrency limit, halt rules, cancellation, deadlines, retries with
 * backoff, destroy from inside a task, bad arguments, and allocation
 * failures at every fault site.
 *
 * Callbacks never assert: they record into atomics, and the test asserts
 * on its own thread once the wait has returned.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CPU_COUNT, sched_getaffinity, nanosleep, dprintf */
#endif
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fault.h"

TestSuite(group, .timeout = 30.);

static parmap_pool *make_pool(size_t nthreads)
{
    parmap_pool *pool = NULL;
    int rc = parmap_pool_create(&pool, nthreads, NULL);
    cr_assert_eq(rc, 0, "parmap_pool_create(%zu) = %d", nthreads, rc);
    return pool;
}

static parmap_group *make_group(parmap_pool *pool, const parmap_opts *opts)
{
    parmap_group *g = NULL;
    int rc = parmap_group_create(&g, pool, opts);
    cr_assert_eq(rc, 0, "parmap_group_create = %d (%s)", rc,
                 parmap_err_name(rc));
    cr_assert_not_null(g);
    return g;
}

/* ------------------------------------------------------------------------ */
/* A configurable task                                                      */
/* ------------------------------------------------------------------------ */

/* What one task does and what it saw. Shared fields are pointers to the
 * test's atomics; the rest belong to this task alone. */
struct job {
    int rc;                 /* returned from attempt `fail_until` on */
    int early_rc;           /* returned before attempt `fail_until` */
    unsigned fail_until;    /* attempts (1-based) that return early_rc */
    long sleep_us;          /* work time per attempt */
    int poll_stop;          /* sleep in slices, stopping on should_stop */
    atomic_int *gate;       /* if set, wait until it is non-zero */
    pt_gauge *gauge;        /* if set, counts concurrent tasks */
    atomic_size_t *ran;     /* if set, bumped per attempt */
    atomic_size_t *started; /* if set, bumped on the first attempt */
    atomic_size_t *entered; /* if set, bumped on every attempt */

    /* Recorded by the task. */
    atomic_uint calls;
    atomic_int stop_seen;   /* last non-zero parmap_should_stop() */
    double t[8];            /* start of each of the first 8 attempts */
    double end;
};

static void job_init(struct job *j)
{
    memset(j, 0, sizeof *j);
    atomic_init(&j->calls, 0);
    atomic_init(&j->stop_seen, 0);
}

static int run_job(void *ctx)
{
    struct job *j = ctx;
    unsigned n = atomic_fetch_add(&j->calls, 1) + 1;
    if (n <= 8)
        j->t[n - 1] = pt_now();
    if (n == 1 && j->started != NULL)
        atomic_fetch_add(j->started, 1);
    if (j->entered != NULL)
        atomic_fetch_add(j->entered, 1);
    if (j->gauge != NULL)
        pt_gauge_enter(j->gauge);
    if (j->gate != NULL)
        while (!atomic_load(j->gate)) {
            int s = parmap_should_stop();
            if (s != 0 && j->poll_stop) {
                atomic_store(&j->stop_seen, s);
                break;
            }
            pt_sleep_us(200);
        }
    if (j->sleep_us > 0) {
        if (j->poll_stop) {
            double end = pt_now() + j->sleep_us * 1e-6;
            while (pt_now() < end) {
                int s = parmap_should_stop();
                if (s != 0) {
                    atomic_store(&j->stop_seen, s);
                    break;
                }
                pt_sleep_us(500);
            }
        } else {
            pt_sleep_us(j->sleep_us);
        }
    }
    if (j->gauge != NULL)
        pt_gauge_leave(j->gauge);
    if (j->ran != NULL)
        atomic_fetch_add(j->ran, 1);
    j->end = pt_now();
    int s = atomic_load(&j->stop_seen);
    if (s != 0 && j->poll_stop)
        return s;
    return n < j->fail_until ? j->early_rc : j->rc;
}

static size_t submit(parmap_group *g, struct job *j)
{
    size_t id = (size_t)-7;
    int rc = parmap_group_submit(g, run_job, j, &id);
    cr_assert_eq(rc, 0, "submit = %d (%s)", rc, parmap_err_name(rc));
    return id;
}

static void check_task(parmap_group *g, size_t id, int want_status,
                       unsigned want_attempts)
{
    int status = 0x7eadbeef;
    unsigned attempts = 12345;
    int rc = parmap_group_task(g, id, &status, &attempts);
    cr_assert_eq(rc, 0, "task %zu: parmap_group_task = %d (%s)", id, rc,
                 parmap_err_name(rc));
    cr_assert_eq(status, want_status, "task %zu: status %d (%s), want %d (%s)",
                 id, status, parmap_err_name(status), want_status,
                 parmap_err_name(want_status));
    cr_assert_eq(attempts, want_attempts, "task %zu: %u attempts, want %u",
                 id, attempts, want_attempts);
}

/* ------------------------------------------------------------------------ */
/* Ids and outcomes                                                         */
/* ------------------------------------------------------------------------ */

Test(group, ids_count_from_zero_and_outcomes_are_read_by_id)
{
    parmap_pool *pool = make_pool(3);
    parmap_group *g = make_group(pool, NULL);
    atomic_int gate;
    atomic_init(&gate, 0);
    struct job jobs[6];
    for (size_t i = 0; i < 6; i++) {
        job_init(&jobs[i]);
        jobs[i].rc = i % 3 == 2 ? -(int)(100 + i) : 0;
        jobs[i].gate = &gate;
        size_t id = submit(g, &jobs[i]);
        cr_assert_eq(id, i, "task %zu got id %zu", i, id);
    }
    /* Nothing can finish before the gate opens. */
    int status = 99;
    unsigned attempts = 99;
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(parmap_group_task(g, i, &status, &attempts),
                     PARMAP_EBUSY, "task %zu readable before it finished", i);
    cr_assert_eq(status, 99, "status written for an unfinished task");
    cr_assert_eq(parmap_group_task(g, 6, &status, &attempts), PARMAP_ENOENT);
    cr_assert_eq(parmap_group_task(g, SIZE_MAX, NULL, NULL), PARMAP_ENOENT);
    size_t done = 9, pending = 9;
    cr_assert_eq(parmap_group_counts(g, &done, &pending), 0);
    cr_assert_eq(done, 0);
    cr_assert_eq(pending, 6);

    atomic_store(&gate, 1);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    for (size_t i = 0; i < 6; i++) {
        check_task(g, i, jobs[i].rc, 1);
        cr_assert_eq(atomic_load(&jobs[i].calls), 1);
    }
    cr_assert_eq(parmap_group_task(g, 6, NULL, NULL), PARMAP_ENOENT);
    cr_assert_eq(parmap_group_counts(g, &done, &pending), 0);
    cr_assert_eq(done, 6);
    cr_assert_eq(pending, 0);
    /* A NULL id out-pointer is allowed and ids go on counting. */
    struct job last;
    job_init(&last);
    cr_assert_eq(parmap_group_submit(g, run_job, &last, NULL), 0);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    check_task(g, 6, 0, 1);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* The waits, on pools of 1, 2 and 8 threads                                */
/* ------------------------------------------------------------------------ */

ParameterizedTestParameters(group, wait_any_reports_each_task_once)
{
    static size_t threads[] = {1, 2, 8};
    return cr_make_param_array(size_t, threads,
                               sizeof threads / sizeof threads[0]);
}

ParameterizedTest(size_t *nthreads, group, wait_any_reports_each_task_once)
{
    enum { N = 60 };
    parmap_pool *pool = make_pool(*nthreads);
    parmap_group *g = make_group(pool, NULL);
    static struct job jobs[N];
    unsigned seen[N] = {0};
    for (size_t i = 0; i < N; i++) {
        job_init(&jobs[i]);
        jobs[i].sleep_us = (long)(pt_mix(i) % 3000);
        jobs[i].rc = i % 7 == 3 ? -(int)i - 1 : 0;
        submit(g, &jobs[i]);
    }
    size_t reported = 0, id;
    int status, rc;
    while ((rc = parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &id, &status)) ==
           0) {
        cr_assert_lt(id, N, "reported id %zu", id);
        seen[id]++;
        cr_assert_eq(seen[id], 1, "task %zu reported twice", id);
        cr_assert_eq(status, jobs[id].rc, "task %zu status %d", id, status);
        cr_assert_eq(atomic_load(&jobs[id].calls), 1,
                     "task %zu reported but ran %u times", id,
                     atomic_load(&jobs[id].calls));
        reported++;
    }
    cr_assert_eq(rc, PARMAP_ENOENT, "the end of WAIT_ANY is %d (%s)", rc,
                 parmap_err_name(rc));
    cr_assert_eq(reported, N, "%zu of %d tasks reported", reported, N);
    /* Still nothing left, and counts agree. */
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ANY, 0.0, &id, &status),
                 PARMAP_ENOENT);
    size_t done, pending;
    parmap_group_counts(g, &done, &pending);
    cr_assert_eq(done, N);
    cr_assert_eq(pending, 0);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, wait_any_on_an_empty_group_is_enoent)
{
    parmap_pool *pool = make_pool(2);
    parmap_group *g = make_group(pool, NULL);
    size_t id = 77;
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &id, NULL),
                 PARMAP_ENOENT);
    cr_assert_eq(id, 77);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_FIRST_ERROR, -1.0, NULL,
                                   NULL),
                 0);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

ParameterizedTestParameters(group, wait_all_runs_every_task)
{
    static size_t threads[] = {1, 2, 8};
    return cr_make_param_array(size_t, threads,
                               sizeof threads / sizeof threads[0]);
}

ParameterizedTest(size_t *nthreads, group, wait_all_runs_every_task)
{
    enum { N = 200 };
    parmap_pool *pool = make_pool(*nthreads);
    parmap_group *g = make_group(pool, NULL);
    static struct job jobs[N];
    atomic_size_t ran;
    atomic_init(&ran, 0);
    for (size_t i = 0; i < N; i++) {
        job_init(&jobs[i]);
        jobs[i].ran = &ran;
        jobs[i].sleep_us = i % 10 == 0 ? 1000 : 0;
        submit(g, &jobs[i]);
    }
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&ran), N);
    for (size_t i = 0; i < N; i++)
        check_task(g, i, 0, 1);
    size_t pending = 1;
    parmap_group_counts(g, NULL, &pending);
    cr_assert_eq(pending, 0);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

ParameterizedTestParameters(group, wait_first_error_returns_the_failure)
{
    static size_t threads[] = {1, 2, 8};
    return cr_make_param_array(size_t, threads,
                               sizeof threads / sizeof threads[0]);
}

ParameterizedTest(size_t *nthreads, group, wait_first_error_returns_the_failure)
{
    parmap_pool *pool = make_pool(*nthreads);
    parmap_group *g = make_group(pool, NULL);
    struct job jobs[8];
    for (size_t i = 0; i < 8; i++) {
        job_init(&jobs[i]);
        jobs[i].sleep_us = 2000;
        jobs[i].rc = i == 5 ? -42 : 0;
        submit(g, &jobs[i]);
    }
    size_t id = 0;
    int status = 0;
    int rc = parmap_group_wait(g, PARMAP_WAIT_FIRST_ERROR, -1.0, &id, &status);
    cr_assert_eq(rc, -42, "FIRST_ERROR returned %d", rc);
    cr_assert_eq(id, 5);
    cr_assert_eq(status, -42);
    check_task(g, 5, -42, 1);
    /* The failure was reported; the rest finish without one. */
    rc = parmap_group_wait(g, PARMAP_WAIT_FIRST_ERROR, -1.0, &id, &status);
    cr_assert_eq(rc, 0, "second FIRST_ERROR returned %d", rc);
    cr_assert_eq(status, 0);
    size_t pending = 1;
    parmap_group_counts(g, NULL, &pending);
    cr_assert_eq(pending, 0, "FIRST_ERROR returned 0 with tasks pending");
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, waits_time_out_promptly)
{
    parmap_pool *pool = make_pool(4);
    parmap_group *g = make_group(pool, NULL);
    atomic_int gate;
    atomic_init(&gate, 0);
    struct job j;
    job_init(&j);
    j.gate = &gate;
    atomic_size_t started;
    atomic_init(&started, 0);
    j.started = &started;
    submit(g, &j);
    /* Once a worker runs it, no wait below can take it (a waiter runs
     * tasks the workers leave, and this one only ends when the gate
     * opens). */
    cr_assert(pt_wait_atleast(&started, 1, 5.0));

    /* Record first and assert once the gate is open, so that a failed
     * assertion cannot leave the task running forever. */
    static const enum parmap_wait modes[] = {
        PARMAP_WAIT_ANY, PARMAP_WAIT_ALL, PARMAP_WAIT_FIRST_ERROR};
    int rc[3][2];
    double dt[3][2];
    for (size_t m = 0; m < 3; m++)
        for (size_t z = 0; z < 2; z++) {
            double t0 = pt_now();
            rc[m][z] = parmap_group_wait(g, modes[m], z ? 0.0 : 0.05, NULL,
                                         NULL);
            dt[m][z] = pt_now() - t0;
        }
    atomic_store(&gate, 1);
    for (size_t m = 0; m < 3; m++) {
        cr_assert_eq(rc[m][0], PARMAP_ETIMEDOUT, "mode %zu: %d", m, rc[m][0]);
        cr_assert_geq(dt[m][0], 0.045, "mode %zu returned after %.3f s", m,
                      dt[m][0]);
        cr_assert_lt(dt[m][0], 0.5, "mode %zu returned after %.3f s", m,
                     dt[m][0]);
        cr_assert_eq(rc[m][1], PARMAP_ETIMEDOUT, "mode %zu, timeout 0: %d", m,
                     rc[m][1]);
        cr_assert_lt(dt[m][1], 0.2, "a zero timeout took %.3f s", dt[m][1]);
    }
    size_t id = 9;
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ANY, 5.0, &id, NULL), 0);
    cr_assert_eq(id, 0);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* Resubmission                                                             */
/* ------------------------------------------------------------------------ */

Test(group, resubmit_reruns_a_failed_task_under_its_id)
{
    parmap_pool *pool = make_pool(2);
    parmap_group *g = make_group(pool, NULL);
    struct job j;
    job_init(&j);
    j.early_rc = -5; /* the first attempt fails, later ones succeed */
    j.fail_until = 2;
    size_t id = submit(g, &j);
    size_t got;
    int status;
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &got, &status), 0);
    cr_assert_eq(got, id);
    cr_assert_eq(status, -5);
    check_task(g, id, -5, 1);

    cr_assert_eq(parmap_group_resubmit(g, id), 0);
    cr_assert_eq(parmap_group_resubmit(g, id + 1), PARMAP_ENOENT);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &got, &status), 0);
    cr_assert_eq(got, id, "the rerun came back as %zu", got);
    cr_assert_eq(status, 0);
    check_task(g, id, 0, 2);
    cr_assert_eq(atomic_load(&j.calls), 2);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &got, &status),
                 PARMAP_ENOENT, "the first outcome was reported again");

    /* A task not yet finished cannot be resubmitted. */
    atomic_int gate;
    atomic_init(&gate, 0);
    struct job k;
    job_init(&k);
    k.gate = &gate;
    size_t kid = submit(g, &k);
    cr_assert_eq(parmap_group_resubmit(g, kid), PARMAP_EBUSY);
    atomic_store(&gate, 1);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&k.calls), 1);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, resubmit_before_the_report_reports_once)
{
    parmap_pool *pool = make_pool(2);
    parmap_group *g = make_group(pool, NULL);
    struct job j;
    job_init(&j);
    j.rc = -3;
    size_t id = submit(g, &j);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    /* Finished and unreported; rerun it before anyone asked. */
    cr_assert_eq(parmap_group_resubmit(g, id), 0);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    size_t got;
    int status;
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &got, &status), 0);
    cr_assert_eq(got, id);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &got, &status),
                 PARMAP_ENOENT, "a resubmitted task was reported twice");
    check_task(g, id, -3, 2);
    /* FIRST_ERROR reports the failure once too. */
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_FIRST_ERROR, -1.0, &got,
                                   &status),
                 -3);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_FIRST_ERROR, -1.0, &got,
                                   &status),
                 0);

    /* Finished, unreported, resubmitted and still running: its old
     * outcome must not be reported meanwhile. */
    atomic_int gate;
    atomic_init(&gate, 0);
    atomic_size_t entered;
    atomic_init(&entered, 0);
    struct job k;
    job_init(&k);
    k.rc = -4;
    size_t kid = submit(g, &k);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    k.gate = &gate; /* only the rerun waits */
    k.entered = &entered;
    cr_assert_eq(parmap_group_resubmit(g, kid), 0);
    int waited = pt_wait_atleast(&entered, 1, 5.0);
    int rc_any = parmap_group_wait(g, PARMAP_WAIT_ANY, 0.05, &got, &status);
    int rc_err = parmap_group_wait(g, PARMAP_WAIT_FIRST_ERROR, 0.05, &got,
                                   &status);
    atomic_store(&gate, 1);
    cr_assert(waited, "the rerun never started");
    cr_assert_eq(rc_any, PARMAP_ETIMEDOUT,
                 "WAIT_ANY reported a rerun task while it ran (%d)", rc_any);
    cr_assert_eq(rc_err, PARMAP_ETIMEDOUT,
                 "FIRST_ERROR reported a rerun task while it ran (%d)", rc_err);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &got, &status), 0);
    cr_assert_eq(got, kid);
    cr_assert_eq(status, -4);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &got, &status),
                 PARMAP_ENOENT);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* Concurrent and nested submission                                         */
/* ------------------------------------------------------------------------ */

enum { SUBMITTERS = 8, PER_SUBMITTER = 400 };

struct submitter {
    parmap_group *g;
    atomic_uint *runs; /* per (thread, k) */
    size_t *ids;       /* per (thread, k) */
    size_t t;
    atomic_size_t *errors;
};

static int count_run(void *ctx)
{
    atomic_fetch_add((atomic_uint *)ctx, 1);
    return 0;
}

static void *submit_many(void *arg)
{
    struct submitter *s = arg;
    for (size_t k = 0; k < PER_SUBMITTER; k++) {
        size_t slot = s->t * PER_SUBMITTER + k;
        if (parmap_group_submit(s->g, count_run, &s->runs[slot],
                                &s->ids[slot]) != 0)
            atomic_fetch_add(s->errors, 1);
    }
    return NULL;
}

ParameterizedTestParameters(group, concurrent_submission_from_8_threads)
{
    static size_t threads[] = {1, 2, 8};
    return cr_make_param_array(size_t, threads,
                               sizeof threads / sizeof threads[0]);
}

ParameterizedTest(size_t *nthreads, group,
                  concurrent_submission_from_8_threads)
{
    enum { TOTAL = SUBMITTERS * PER_SUBMITTER };
    parmap_pool *pool = make_pool(*nthreads);
    parmap_group *g = make_group(pool, NULL);
    static atomic_uint runs[TOTAL];
    static size_t ids[TOTAL];
    static unsigned char id_used[TOTAL];
    atomic_size_t errors;
    atomic_init(&errors, 0);
    for (size_t i = 0; i < TOTAL; i++) {
        atomic_init(&runs[i], 0);
        ids[i] = SIZE_MAX;
        id_used[i] = 0;
    }
    struct submitter s[SUBMITTERS];
    pthread_t th[SUBMITTERS];
    for (size_t t = 0; t < SUBMITTERS; t++) {
        s[t] = (struct submitter){g, runs, ids, t, &errors};
        cr_assert_eq(pthread_create(&th[t], NULL, submit_many, &s[t]), 0);
    }
    for (size_t t = 0; t < SUBMITTERS; t++)
        pthread_join(th[t], NULL);
    cr_assert_eq(atomic_load(&errors), 0);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    for (size_t i = 0; i < TOTAL; i++) {
        cr_assert_lt(ids[i], TOTAL, "submission %zu got id %zu", i, ids[i]);
        cr_assert_eq(id_used[ids[i]], 0, "id %zu given twice", ids[i]);
        id_used[ids[i]] = 1;
        cr_assert_eq(atomic_load(&runs[i]), 1, "submission %zu ran %u times",
                     i, atomic_load(&runs[i]));
    }
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* A task that submits two children until depth runs out: a full binary
 * tree of 2^(depth+1) - 1 tasks. */
struct tree {
    parmap_group *g;
    atomic_size_t ran;
    atomic_size_t errors;
    struct tree_node *nodes;
    atomic_size_t next; /* next free node */
};

struct tree_node {
    struct tree *tree;
    unsigned depth;
};

static int tree_task(void *ctx)
{
    struct tree_node *n = ctx;
    struct tree *t = n->tree;
    atomic_fetch_add(&t->ran, 1);
    if (n->depth > 0)
        for (int c = 0; c < 2; c++) {
            size_t k = atomic_fetch_add(&t->next, 1);
            t->nodes[k] = (struct tree_node){t, n->depth - 1};
            if (parmap_group_submit(t->g, tree_task, &t->nodes[k], NULL) != 0)
                atomic_fetch_add(&t->errors, 1);
        }
    return 0;
}

ParameterizedTestParameters(group, tasks_submit_tasks)
{
    static size_t threads[] = {1, 2, 8};
    return cr_make_param_array(size_t, threads,
                               sizeof threads / sizeof threads[0]);
}

ParameterizedTest(size_t *nthreads, group, tasks_submit_tasks)
{
    enum { DEPTH = 9, NODES = (1 << (DEPTH + 1)) - 1 };
    parmap_pool *pool = make_pool(*nthreads);
    struct tree t = {.g = make_group(pool, NULL)};
    atomic_init(&t.ran, 0);
    atomic_init(&t.errors, 0);
    atomic_init(&t.next, 1);
    t.nodes = calloc(NODES, sizeof *t.nodes);
    cr_assert_not_null(t.nodes);
    t.nodes[0] = (struct tree_node){&t, DEPTH};
    cr_assert_eq(parmap_group_submit(t.g, tree_task, &t.nodes[0], NULL), 0);
    cr_assert_eq(parmap_group_wait(t.g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&t.errors), 0);
    cr_assert_eq(atomic_load(&t.ran), NODES, "%zu of %d tasks ran",
                 (size_t)atomic_load(&t.ran), NODES);
    size_t done;
    parmap_group_counts(t.g, &done, NULL);
    cr_assert_eq(done, NODES);
    /* destroy also waits for tasks submitted by tasks. */
    atomic_store(&t.ran, 0);
    atomic_store(&t.next, 1);
    cr_assert_eq(parmap_group_submit(t.g, tree_task, &t.nodes[0], NULL), 0);
    cr_assert_eq(parmap_group_destroy(t.g), 0);
    cr_assert_eq(atomic_load(&t.ran), NODES);
    free(t.nodes);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* The vaccination-stations pattern: the consumer keeps `stations` tasks
 * in flight, replacing each finished one, until `total` have finished. */
ParameterizedTestParameters(group, consumer_replaces_finished_tasks)
{
    static size_t threads[] = {1, 2, 8};
    return cr_make_param_array(size_t, threads,
                               sizeof threads / sizeof threads[0]);
}

ParameterizedTest(size_t *nthreads, group, consumer_replaces_finished_tasks)
{
    enum { STATIONS = 3, TOTAL = 30 };
    parmap_pool *pool = make_pool(*nthreads);
    parmap_group *g = make_group(pool, NULL);
    static struct job jobs[TOTAL + STATIONS];
    size_t started = 0, finished = 0, restarted = 0;
    for (; started < STATIONS; started++) {
        job_init(&jobs[started]);
        jobs[started].sleep_us = 1000 + (long)(pt_mix(started) % 2000);
        submit(g, &jobs[started]);
    }
    size_t id;
    int status;
    while (finished < TOTAL) {
        int rc = parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &id, &status);
        cr_assert_eq(rc, 0, "wait returned %d after %zu", rc, finished);
        size_t pending;
        parmap_group_counts(g, NULL, &pending);
        cr_assert_leq(pending, STATIONS - 1);
        if (status != 0) {
            /* Failed: rerun the same box. */
            cr_assert_eq(parmap_group_resubmit(g, id), 0);
            restarted++;
            continue;
        }
        finished++;
        if (started < TOTAL) {
            job_init(&jobs[started]);
            jobs[started].sleep_us = 1000 + (long)(pt_mix(started) % 2000);
            jobs[started].early_rc = -1;
            jobs[started].fail_until = started % 4 == 0 ? 2 : 0;
            submit(g, &jobs[started]);
            started++;
        }
    }
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &id, &status),
                 PARMAP_ENOENT);
    cr_assert_gt(restarted, 0);
    for (size_t i = 0; i < TOTAL; i++)
        check_task(g, i, 0, jobs[i].fail_until == 2 ? 2 : 1);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* Concurrency limit                                                        */
/* ------------------------------------------------------------------------ */

struct limit_case {
    size_t threads, limit, want_peak;
};

ParameterizedTestParameters(group, concurrency_limit_is_exact)
{
    static struct limit_case cases[] = {
        {8, 3, 3}, {8, 1, 1}, {2, 0, 2}, {4, 0, 4}, {1, 0, 1}, {2, 5, 2}};
    return cr_make_param_array(struct limit_case, cases,
                               sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct limit_case *c, group, concurrency_limit_is_exact)
{
    enum { N = 24 };
    parmap_pool *pool = make_pool(c->threads);
    parmap_opts o = {.max_concurrency = c->limit};
    parmap_group *g = make_group(pool, &o);
    pt_gauge gauge;
    atomic_init(&gauge.cur, 0);
    atomic_init(&gauge.peak, 0);
    static struct job jobs[N];
    for (size_t i = 0; i < N; i++) {
        job_init(&jobs[i]);
        jobs[i].gauge = &gauge;
        jobs[i].sleep_us = 15000;
        submit(g, &jobs[i]);
    }
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&gauge.peak), c->want_peak,
                 "pool %zu, limit %zu: peak %zu, want %zu", c->threads,
                 c->limit, (size_t)atomic_load(&gauge.peak), c->want_peak);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* Stopping: halt, cancel, timeouts                                         */
/* ------------------------------------------------------------------------ */

ParameterizedTestParameters(group, halt_now_on_first_failure_cancels_siblings)
{
    static size_t threads[] = {2, 8};
    return cr_make_param_array(size_t, threads,
                               sizeof threads / sizeof threads[0]);
}

ParameterizedTest(size_t *nthreads, group,
                  halt_now_on_first_failure_cancels_siblings)
{
    enum { N = 20 };
    parmap_pool *pool = make_pool(*nthreads);
    /* asyncio's TaskGroup. */
    parmap_opts o = {.max_concurrency = 2,
                     .halt = {PARMAP_HALT_NOW, PARMAP_HALT_ON_FAIL, 1, 0.0}};
    parmap_group *g = make_group(pool, &o);
    static struct job jobs[N];
    atomic_int never;
    atomic_init(&never, 0);
    atomic_size_t started;
    atomic_init(&started, 0);
    for (size_t i = 0; i < N; i++) {
        job_init(&jobs[i]);
        jobs[i].started = &started;
    }
    jobs[0].rc = -77;
    jobs[0].sleep_us = 20000;
    jobs[1].gate = &never; /* runs until told to stop */
    jobs[1].poll_stop = 1;
    for (size_t i = 0; i < N; i++)
        submit(g, &jobs[i]);

    size_t id = 99;
    int status = 0;
    int rc = parmap_group_wait(g, PARMAP_WAIT_FIRST_ERROR, -1.0, &id, &status);
    cr_assert_eq(rc, -77, "FIRST_ERROR returned %d (%s)", rc,
                 parmap_err_name(rc));
    cr_assert_eq(id, 0);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);

    cr_assert_eq(atomic_load(&jobs[1].stop_seen), PARMAP_ECANCELED,
                 "the running sibling saw should_stop = %d",
                 atomic_load(&jobs[1].stop_seen));
    check_task(g, 0, -77, 1);
    check_task(g, 1, PARMAP_ECANCELED, 1);
    for (size_t i = 2; i < N; i++) {
        check_task(g, i, PARMAP_ENOTRUN, 0);
        cr_assert_eq(atomic_load(&jobs[i].calls), 0, "task %zu started", i);
    }
    cr_assert_eq(atomic_load(&started), 2);
    struct job late;
    job_init(&late);
    size_t late_id = 1234;
    cr_assert_eq(parmap_group_submit(g, run_job, &late, &late_id),
                 PARMAP_ECANCELED);
    cr_assert_eq(late_id, 1234, "id written for a refused task");
    cr_assert_eq(parmap_group_resubmit(g, 0), PARMAP_ECANCELED);
    cr_assert_eq(parmap_group_task(g, N, NULL, NULL), PARMAP_ENOENT);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(atomic_load(&late.calls), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, halt_soon_lets_running_tasks_finish)
{
    parmap_pool *pool = make_pool(4);
    parmap_opts o = {.max_concurrency = 2,
                     .halt = {PARMAP_HALT_SOON, PARMAP_HALT_ON_FAIL, 1, 0.0}};
    parmap_group *g = make_group(pool, &o);
    struct job jobs[6];
    for (size_t i = 0; i < 6; i++)
        job_init(&jobs[i]);
    jobs[0].rc = -1;
    jobs[0].sleep_us = 10000;
    jobs[1].sleep_us = 60000;
    jobs[1].poll_stop = 1; /* would stop early if asked */
    for (size_t i = 0; i < 6; i++)
        submit(g, &jobs[i]);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    check_task(g, 0, -1, 1);
    check_task(g, 1, 0, 1);
    cr_assert_eq(atomic_load(&jobs[1].stop_seen), 0);
    for (size_t i = 2; i < 6; i++)
        check_task(g, i, PARMAP_ENOTRUN, 0);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, cancel_token_stops_the_group)
{
    parmap_pool *pool = make_pool(4);
    parmap_cancel *cancel = NULL;
    cr_assert_eq(parmap_cancel_create(&cancel), 0);
    parmap_opts o = {.max_concurrency = 2, .cancel = cancel};
    parmap_group *g = make_group(pool, &o);
    atomic_int never;
    atomic_init(&never, 0);
    atomic_size_t started;
    atomic_init(&started, 0);
    struct job jobs[10];
    for (size_t i = 0; i < 10; i++) {
        job_init(&jobs[i]);
        jobs[i].gate = &never;
        jobs[i].poll_stop = 1;
        jobs[i].started = &started;
        submit(g, &jobs[i]);
    }
    cr_assert(pt_wait_atleast(&started, 2, 5.0));
    double t0 = pt_now();
    parmap_cancel_trigger(cancel);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    cr_assert_lt(pt_now() - t0, 1.0);
    for (size_t i = 0; i < 10; i++) {
        int status;
        cr_assert_eq(parmap_group_task(g, i, &status, NULL), 0);
        if (i < 2)
            cr_assert_eq(status, PARMAP_ECANCELED, "task %zu: %d", i, status);
        else
            cr_assert_eq(status, PARMAP_ENOTRUN, "task %zu: %d", i, status);
    }
    cr_assert_eq(atomic_load(&started), 2);
    struct job late;
    job_init(&late);
    cr_assert_eq(parmap_group_submit(g, run_job, &late, NULL),
                 PARMAP_ECANCELED);
    cr_assert_eq(parmap_group_destroy(g), 0);
    parmap_cancel_destroy(cancel);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, cancel_token_wakes_a_sleeping_waiter)
{
    /* Nothing finishes on its own: only polling the token ends the wait. */
    parmap_pool *pool = make_pool(2);
    parmap_cancel *cancel = NULL;
    cr_assert_eq(parmap_cancel_create(&cancel), 0);
    parmap_opts o = {.max_concurrency = 1, .cancel = cancel};
    parmap_group *g = make_group(pool, &o);
    atomic_int gate;
    atomic_init(&gate, 0);
    struct job a, b;
    job_init(&a);
    job_init(&b);
    a.gate = &gate; /* ignores should_stop: keeps running */
    atomic_size_t started;
    atomic_init(&started, 0);
    a.started = &started;
    submit(g, &a);
    submit(g, &b);
    cr_assert(pt_wait_atleast(&started, 1, 5.0));
    parmap_cancel_trigger(cancel);
    /* b is queued behind the limit; the cancel finishes it as not run. */
    size_t id = 9;
    int status = 0;
    double t0 = pt_now();
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ANY, 5.0, &id, &status), 0);
    cr_assert_lt(pt_now() - t0, 1.0);
    cr_assert_eq(id, 1);
    cr_assert_eq(status, PARMAP_ENOTRUN);
    atomic_store(&gate, 1);
    cr_assert_eq(parmap_group_destroy(g), 0);
    parmap_cancel_destroy(cancel);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, group_timeout_finishes_queued_tasks_as_timed_out)
{
    parmap_pool *pool = make_pool(4);
    parmap_opts o = {.max_concurrency = 1, .timeout = 0.1};
    parmap_group *g = make_group(pool, &o);
    static struct job jobs[20];
    for (size_t i = 0; i < 20; i++) {
        job_init(&jobs[i]);
        jobs[i].sleep_us = 30000;
        jobs[i].poll_stop = 1;
        submit(g, &jobs[i]);
    }
    double t0 = pt_now();
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    double dt = pt_now() - t0;
    cr_assert_lt(dt, 1.0, "the group ran %.3f s past a 0.1 s timeout", dt);
    size_t ok = 0, timed_out = 0, not_run = 0;
    for (size_t i = 0; i < 20; i++) {
        int status;
        unsigned attempts;
        cr_assert_eq(parmap_group_task(g, i, &status, &attempts), 0);
        if (status == 0)
            ok++;
        else if (status == PARMAP_ETIMEDOUT && attempts == 0)
            not_run++;
        else if (status == PARMAP_ETIMEDOUT && attempts == 1)
            timed_out++; /* saw it through should_stop */
        else
            cr_assert_fail("task %zu: status %d, %u attempts", i, status,
                           attempts);
    }
    cr_assert_geq(ok, 1);
    cr_assert_leq(ok, 4);
    cr_assert_leq(timed_out, 1);
    cr_assert_geq(not_run, 15);
    cr_assert_eq(parmap_group_submit(g, run_job, &jobs[0], NULL),
                 PARMAP_ECANCELED);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, item_timeout_is_seen_through_should_stop)
{
    parmap_pool *pool = make_pool(2);
    parmap_opts o = {.item_timeout = 0.05};
    parmap_group *g = make_group(pool, &o);
    struct job j, quick;
    job_init(&j);
    job_init(&quick);
    j.sleep_us = 5000000;
    j.poll_stop = 1;
    quick.sleep_us = 1000;
    quick.poll_stop = 1;
    size_t id = submit(g, &j);
    size_t qid = submit(g, &quick);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    check_task(g, id, PARMAP_ETIMEDOUT, 1);
    check_task(g, qid, 0, 1);
    double ran = j.end - j.t[0];
    cr_assert_geq(ran, 0.045, "stopped after %.3f s", ran);
    cr_assert_lt(ran, 1.0, "stopped after %.3f s", ran);
    /* The item timeout does not stop the group. */
    struct job after;
    job_init(&after);
    cr_assert_eq(parmap_group_submit(g, run_job, &after, NULL), 0);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(atomic_load(&after.calls), 1);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* Progress                                                                 */
/* ------------------------------------------------------------------------ */

struct prog {
    atomic_int in_call;
    atomic_size_t overlaps;
    atomic_size_t calls;
    size_t last_done, last_failed, bad_total;
    size_t stop_at; /* return non-zero once done reaches it (0 = never) */
};

static int prog_fn(void *ctx, const parmap_progress *p)
{
    struct prog *s = ctx;
    if (atomic_exchange(&s->in_call, 1))
        atomic_fetch_add(&s->overlaps, 1);
    atomic_fetch_add(&s->calls, 1);
    if (p->total != 0)
        s->bad_total++;
    s->last_done = p->done;
    s->last_failed = p->failed;
    pt_sleep_us(100);
    atomic_store(&s->in_call, 0);
    return s->stop_at != 0 && p->done >= s->stop_at;
}

/* ------------------------------------------------------------------------ */
/* Retries                                                                  */
/* ------------------------------------------------------------------------ */

ParameterizedTestParameters(group, retries_back_off)
{
    static size_t threads[] = {1, 2, 8};
    return cr_make_param_array(size_t, threads,
                               sizeof threads / sizeof threads[0]);
}

ParameterizedTest(size_t *nthreads, group, retries_back_off)
{
    parmap_pool *pool = make_pool(*nthreads);
    parmap_opts o = {.retries = 3, .retry_delay = 0.02,
                     .retry_delay_max = 0.03};
    parmap_group *g = make_group(pool, &o);
    struct job always, third;
    job_init(&always);
    job_init(&third);
    always.rc = -9;
    third.early_rc = -8; /* fails twice, then succeeds */
    third.fail_until = 3;
    size_t a = submit(g, &always);
    size_t b = submit(g, &third);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    check_task(g, a, -9, 4);
    check_task(g, b, 0, 3);
    /* Delays 20, 40 capped to 30, 30 ms; sleeping can only make them
     * longer, and a loaded machine a good deal longer. */
    static const double want[] = {0.02, 0.03, 0.03};
    for (int k = 0; k < 3; k++) {
        double gap = always.t[k + 1] - always.t[k];
        cr_assert_geq(gap, want[k] * 0.95, "gap %d: %.4f s < %.3f s", k, gap,
                      want[k]);
        cr_assert_lt(gap, want[k] + 0.5, "gap %d: %.4f s", k, gap);
    }
    cr_assert_geq(third.t[1] - third.t[0], 0.019);
    cr_assert_geq(third.t[2] - third.t[1], 0.0285);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

static int retry_only_eagain(void *ctx, size_t index, int err,
                             unsigned attempt)
{
    atomic_size_t *calls = ctx;
    (void)index;
    (void)attempt;
    atomic_fetch_add(calls, 1);
    return err == -EAGAIN;
}

Test(group, retry_if_decides_which_failures_retry)
{
    parmap_pool *pool = make_pool(2);
    atomic_size_t asked;
    atomic_init(&asked, 0);
    parmap_opts o = {.retries = 2, .retry_if = retry_only_eagain,
                     .retry_ctx = &asked};
    parmap_group *g = make_group(pool, &o);
    struct job io, again;
    job_init(&io);
    job_init(&again);
    io.rc = -EIO;
    again.rc = -EAGAIN;
    size_t a = submit(g, &io);
    size_t b = submit(g, &again);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    check_task(g, a, -EIO, 1);
    check_task(g, b, -EAGAIN, 3);
    /* Asked once for -EIO, twice for -EAGAIN (not after the last try). */
    cr_assert_eq(atomic_load(&asked), 3);
    /* A resubmit gets a fresh set of retries; attempts keep counting. */
    cr_assert_eq(parmap_group_resubmit(g, b), 0);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    check_task(g, b, -EAGAIN, 6);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, halt_stops_a_pending_retry)
{
    parmap_pool *pool = make_pool(2);
    parmap_opts o = {.retries = 5, .retry_delay = 0.2,
                     .halt = {PARMAP_HALT_NOW, PARMAP_HALT_ON_FAIL, 1, 0.0}};
    /* retry_if keeps the second task's failure from retrying, so it is
     * final and halts the group while the first waits for its retry. */
    atomic_size_t asked;
    atomic_init(&asked, 0);
    o.retry_if = retry_only_eagain;
    o.retry_ctx = &asked;
    struct prog s = {0};
    o.progress = prog_fn;
    o.progress_ctx = &s;
    parmap_group *g = make_group(pool, &o);
    struct job flaky, fatal;
    job_init(&flaky);
    job_init(&fatal);
    flaky.rc = -EAGAIN;
    fatal.rc = -EIO;
    fatal.sleep_us = 30000;
    size_t a = submit(g, &flaky);
    size_t b = submit(g, &fatal);
    double t0 = pt_now();
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    cr_assert_lt(pt_now() - t0, 0.19, "the wait sat out the retry delay");
    check_task(g, a, -EAGAIN, 1);
    check_task(g, b, -EIO, 1);
    cr_assert_eq(parmap_group_destroy(g), 0);
    /* The abandoned retry counts as a finished failure. */
    cr_assert_eq(s.last_done, 2);
    cr_assert_eq(s.last_failed, 2);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, progress_reports_finished_tasks)
{
    enum { N = 50 };
    parmap_pool *pool = make_pool(4);
    struct prog s = {0};
    parmap_opts o = {.progress = prog_fn, .progress_ctx = &s};
    parmap_group *g = make_group(pool, &o);
    static struct job jobs[N];
    for (size_t i = 0; i < N; i++) {
        job_init(&jobs[i]);
        jobs[i].rc = i % 5 == 0 ? -1 : 0;
        jobs[i].sleep_us = 200;
        submit(g, &jobs[i]);
    }
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(atomic_load(&s.overlaps), 0);
    cr_assert_eq(s.bad_total, 0, "progress total should be 0 (unknown)");
    cr_assert_geq(atomic_load(&s.calls), 2);
    cr_assert_eq(s.last_done, N);
    cr_assert_eq(s.last_failed, N / 5);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, progress_callback_can_cancel)
{
    enum { N = 40 };
    parmap_pool *pool = make_pool(2);
    struct prog s = {.stop_at = 5};
    parmap_opts o = {.progress = prog_fn, .progress_ctx = &s,
                     .max_concurrency = 1};
    parmap_group *g = make_group(pool, &o);
    static struct job jobs[N];
    for (size_t i = 0; i < N; i++) {
        job_init(&jobs[i]);
        jobs[i].sleep_us = 1000;
        submit(g, &jobs[i]);
    }
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    size_t ran = 0, not_run = 0;
    for (size_t i = 0; i < N; i++) {
        int status;
        cr_assert_eq(parmap_group_task(g, i, &status, NULL), 0);
        ran += status == 0;
        not_run += status == PARMAP_ENOTRUN;
    }
    cr_assert_eq(ran + not_run, N);
    cr_assert_geq(ran, 5);
    cr_assert_leq(ran, 7);
    cr_assert_eq(parmap_group_submit(g, run_job, &jobs[0], NULL),
                 PARMAP_ECANCELED);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* Calls from inside tasks, the pool, bad arguments                         */
/* ------------------------------------------------------------------------ */

struct self_call {
    parmap_group *g;
    int destroy_rc;
    int wait_all_rc;
    int submit_rc;
    atomic_uint child_runs;
};

static int child_task(void *ctx)
{
    struct self_call *s = ctx;
    atomic_fetch_add(&s->child_runs, 1);
    return 0;
}

static int self_call_task(void *ctx)
{
    struct self_call *s = ctx;
    s->destroy_rc = parmap_group_destroy(s->g);
    s->wait_all_rc = parmap_group_wait(s->g, PARMAP_WAIT_ALL, -1.0, NULL,
                                       NULL);
    s->submit_rc = parmap_group_submit(s->g, child_task, s, NULL);
    return 0;
}

ParameterizedTestParameters(group, destroy_from_inside_a_task_is_ebusy)
{
    static size_t threads[] = {1, 2, 8};
    return cr_make_param_array(size_t, threads,
                               sizeof threads / sizeof threads[0]);
}

ParameterizedTest(size_t *nthreads, group, destroy_from_inside_a_task_is_ebusy)
{
    parmap_pool *pool = make_pool(*nthreads);
    struct self_call s = {.g = make_group(pool, NULL)};
    atomic_init(&s.child_runs, 0);
    cr_assert_eq(parmap_group_submit(s.g, self_call_task, &s, NULL), 0);
    cr_assert_eq(parmap_group_wait(s.g, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    cr_assert_eq(s.destroy_rc, PARMAP_EBUSY);
    cr_assert_eq(s.wait_all_rc, PARMAP_EDEADLK);
    cr_assert_eq(s.submit_rc, 0);
    cr_assert_eq(atomic_load(&s.child_runs), 1);
    /* The pool cannot go while the group holds it. */
    cr_assert_eq(parmap_pool_destroy(pool), PARMAP_EBUSY);
    cr_assert_eq(parmap_group_destroy(s.g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, bad_arguments_are_einval)
{
    parmap_pool *pool = make_pool(2);
    parmap_group *g = (parmap_group *)(uintptr_t)0x5e771e;
    cr_assert_eq(parmap_group_create(NULL, pool, NULL), PARMAP_EINVAL);
    cr_assert_eq(parmap_group_create(&g, NULL, NULL), PARMAP_EINVAL);
    parmap_opts bad = {.timeout = -1.0};
    cr_assert_eq(parmap_group_create(&g, pool, &bad), PARMAP_EINVAL);
    bad = (parmap_opts){.retry_delay = NAN};
    cr_assert_eq(parmap_group_create(&g, pool, &bad), PARMAP_EINVAL);
    bad = (parmap_opts){.halt = {PARMAP_HALT_NOW, PARMAP_HALT_ON_FAIL, 0,
                                 150.0}};
    cr_assert_eq(parmap_group_create(&g, pool, &bad), PARMAP_EINVAL);
    cr_assert_eq(g, (parmap_group *)(uintptr_t)0x5e771e,
                 "out-pointer written on failure");

    g = make_group(pool, NULL);
    cr_assert_eq(parmap_group_submit(NULL, run_job, NULL, NULL),
                 PARMAP_EINVAL);
    cr_assert_eq(parmap_group_submit(g, NULL, NULL, NULL), PARMAP_EINVAL);
    cr_assert_eq(parmap_group_resubmit(NULL, 0), PARMAP_EINVAL);
    cr_assert_eq(parmap_group_resubmit(g, 0), PARMAP_ENOENT);
    cr_assert_eq(parmap_group_wait(NULL, PARMAP_WAIT_ANY, 0.0, NULL, NULL),
                 PARMAP_EINVAL);
    cr_assert_eq(parmap_group_wait(g, (enum parmap_wait)7, 0.0, NULL, NULL),
                 PARMAP_EINVAL);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, NAN, NULL, NULL),
                 PARMAP_EINVAL);
    cr_assert_eq(parmap_group_task(NULL, 0, NULL, NULL), PARMAP_EINVAL);
    cr_assert_eq(parmap_group_counts(NULL, NULL, NULL), PARMAP_EINVAL);
    cr_assert_eq(parmap_group_destroy(NULL), 0);
    cr_assert_eq(parmap_group_destroy(g), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, two_groups_on_one_pool_are_independent)
{
    parmap_pool *pool = make_pool(3);
    parmap_opts halt = {.halt = {PARMAP_HALT_NOW, PARMAP_HALT_ON_FAIL, 1, 0}};
    parmap_group *a = make_group(pool, &halt);
    parmap_group *b = make_group(pool, NULL);
    struct job fail, ok[10];
    job_init(&fail);
    fail.rc = -1;
    submit(a, &fail);
    cr_assert_eq(parmap_group_wait(a, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    for (size_t i = 0; i < 10; i++) {
        job_init(&ok[i]);
        submit(b, &ok[i]);
    }
    cr_assert_eq(parmap_group_wait(b, PARMAP_WAIT_ALL, -1.0, NULL, NULL), 0);
    for (size_t i = 0; i < 10; i++)
        check_task(b, i, 0, 1);
    cr_assert_eq(parmap_group_destroy(a), 0);
    cr_assert_eq(parmap_group_destroy(b), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* Allocation failures                                                      */
/* ------------------------------------------------------------------------ */

#define MAX_SITES 10000L

/* Arms the k-th fault site, then creates a group and submits n tasks;
 * each failing call must be ENOMEM, and the group must go on working
 * (a failed submit adds nothing). */
static void walk_faults(size_t nthreads, const parmap_opts *opts, size_t n)
{
    parmap_pool *pool = make_pool(nthreads);
    struct job *jobs = calloc(n, sizeof *jobs);
    cr_assert_not_null(jobs);
    long k;
    size_t failures = 0;
    for (k = 0; k < MAX_SITES; k++) {
        parmap_group *g = (parmap_group *)(uintptr_t)0x5e771e;
        parmap__fault_arm(k);
        int rc = parmap_group_create(&g, pool, opts);
        if (rc != 0) {
            parmap__fault_arm(-1);
            cr_assert_eq(rc, PARMAP_ENOMEM, "site %ld: create = %d", k, rc);
            cr_assert_eq(g, (parmap_group *)(uintptr_t)0x5e771e);
            failures++;
            continue;
        }
        size_t added = 0, refused = 0;
        for (size_t i = 0; i < n; i++) {
            job_init(&jobs[i]);
            jobs[i].early_rc = -EAGAIN;
            jobs[i].fail_until = i % 3 == 0 ? 2 : 0;
            size_t id = SIZE_MAX;
            rc = parmap_group_submit(g, run_job, &jobs[i], &id);
            if (rc == 0) {
                cr_assert_eq(id, added, "site %ld: id %zu, want %zu", k, id,
                             added);
                added++;
            } else {
                cr_assert_eq(rc, PARMAP_ENOMEM, "site %ld: submit = %d", k,
                             rc);
                cr_assert_eq(id, SIZE_MAX);
                refused++;
            }
        }
        int fired = parmap__fault_fired();
        parmap__fault_arm(-1);
        cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL),
                     0);
        size_t done = 0;
        parmap_group_counts(g, &done, NULL);
        cr_assert_eq(done, added);
        for (size_t i = 0; i < n; i++)
            cr_assert_leq(atomic_load(&jobs[i].calls), 2);
        cr_assert_eq(parmap_group_destroy(g), 0);
        failures += refused;
        if (!fired) {
            cr_assert_eq(refused, 0);
            break;
        }
    }
    cr_assert_lt(k, MAX_SITES);
    /* Create has three sites (struct, mutex, condvar); submit grows the
     * record array (and the retry heap) at 16, 32, 64, ... tasks. */
    cr_assert_geq(failures, 3 + (opts != NULL && opts->retry_delay > 0 ? 2 : 1),
                  "only %zu fault sites", failures);
    free(jobs);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(group, allocation_failures_are_enomem_at_every_site)
{
    walk_faults(1, NULL, 40);
    walk_faults(3, NULL, 40);
    parmap_opts o = {.retries = 1, .retry_delay = 0.001};
    walk_faults(3, &o, 70);
}
