/*
 * Tests of lib/progress.c: progress callbacks see monotonic, truthful
 * counts, never overlap, are throttled, end with a final call on the
 * caller's thread, and can cancel a map without losing finished results.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CPU_COUNT, sched_getaffinity, nanosleep, dprintf */
#endif
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "common.h"

TestSuite(progress, .timeout = 30.);

struct prog_ctx {
    pt_progress *p;
    pt_calls calls;
    long sleep_us;
    size_t fail_every; /* items with i % fail_every == 1 fail; 0 = none */
};

static int item_code(const struct prog_ctx *c, size_t i)
{
    return c->fail_every && i % c->fail_every == 1 ? -(int)(1 + i % 50) : 0;
}

static int f_prog(void *ctx, size_t i, const void *in, void *out)
{
    struct prog_ctx *c = ctx;
    atomic_fetch_add(&c->calls.count[i], 1);
    if (c->sleep_us)
        pt_sleep_us(c->sleep_us);
    *(uint64_t *)out = pt_f(*(const uint64_t *)in);
    int rc = item_code(c, i);
    pt_progress_item_returns(c->p, rc);
    return rc;
}

struct run {
    size_t n;
    uint64_t *in, *out;
    int *status;
    parmap_summary sum;
    int rc;
    double seconds;
};

/* Runs one map with progress recorder p and options o (progress fields are
 * filled in here). */
static void run_map(parmap_pool *pool, struct run *r, struct prog_ctx *c,
                    parmap_opts *o)
{
    r->in = malloc(r->n * sizeof *r->in);
    r->out = malloc(r->n * sizeof *r->out);
    r->status = malloc(r->n * sizeof *r->status);
    cr_assert(r->in && r->out && r->status);
    for (size_t i = 0; i < r->n; i++) {
        r->in[i] = pt_mix(i + 3);
        r->out[i] = PT_SENTINEL;
        r->status[i] = 0x7eadbeef;
    }
    cr_assert_eq(pt_calls_init(&c->calls, r->n), 0);
    o->progress = pt_progress_fn;
    o->progress_ctx = c->p;
    o->status = r->status;
    o->summary = &r->sum;
    double t0 = pt_now();
    r->rc = parmap_map(pool, r->n, r->in, sizeof *r->in, r->out,
                       sizeof *r->out, f_prog, c, o);
    r->seconds = pt_now() - t0;
}

static void free_run(struct run *r, struct prog_ctx *c)
{
    free(r->in);
    free(r->out);
    free(r->status);
    pt_calls_free(&c->calls);
}

/* The rules every progress sequence must follow. */
static void check_rules(const pt_progress *p)
{
    cr_assert_eq(atomic_load(&p->overlaps), 0,
                 "%zu progress calls overlapped another",
                 (size_t)atomic_load(&p->overlaps));
    cr_assert_eq(atomic_load(&p->decreasing), 0,
                 "done, failed or elapsed decreased %zu times",
                 (size_t)atomic_load(&p->decreasing));
    cr_assert_eq(atomic_load(&p->bad_total), 0, "total != n");
    cr_assert_eq(atomic_load(&p->failed_over_done), 0,
                 "%zu snapshots reported more failed items than done ones",
                 (size_t)atomic_load(&p->failed_over_done));
    cr_assert_eq(atomic_load(&p->ahead), 0,
                 "%zu calls reported more items done (or failed) than "
                 "callbacks had returned", (size_t)atomic_load(&p->ahead));
    cr_assert_eq(atomic_load(&p->bad_elapsed), 0,
                 "elapsed negative or NaN");
    cr_assert_geq(atomic_load(&p->calls), 1, "progress was never called");
}

static void check_collect_progress(size_t nthreads, size_t n, long sleep_us,
                                   size_t fail_every, size_t chunk,
                                   long progress_sleep_us)
{
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, nthreads, NULL), 0);
    pt_progress p;
    pt_progress_init(&p, n);
    p.sleep_us = progress_sleep_us;
    struct prog_ctx c = {.p = &p, .sleep_us = sleep_us,
                         .fail_every = fail_every};
    struct run r = {.n = n};
    parmap_opts o = {.chunk_size = chunk};
    run_map(pool, &r, &c, &o);

    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(pt_calls_get(&c.calls, i), 1);
        cr_assert_eq(r.status[i], item_code(&c, i));
        cr_assert_eq(r.out[i], pt_f(r.in[i]));
        failed += item_code(&c, i) != 0;
    }
    cr_assert_eq(r.rc, failed ? PARMAP_EFAILED : 0);
    check_rules(&p);
    cr_assert_eq(p.last_done, n, "the last call reported done=%zu of %zu",
                 p.last_done, n);
    cr_assert_eq(p.last_failed, failed, "the last call reported failed=%zu, "
                 "want %zu", p.last_failed, failed);
    cr_assert(pthread_equal(p.last_thread, pthread_self()),
              "the last progress call was not on the caller's thread");
    cr_assert_leq(p.last_elapsed, r.seconds + 0.01,
                  "elapsed %.3f s exceeds the map's %.3f s", p.last_elapsed,
                  r.seconds);
    free_run(&r, &c);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(progress, counts_are_monotonic_truthful_and_final_on_caller)
{
    static const size_t threads[] = {1, 2, 3, 8};
    for (size_t t = 0; t < 4; t++) {
        check_collect_progress(threads[t], 1223, 0, 0, 0, 0);
        check_collect_progress(threads[t], 1223, 0, 0, 1, 0);
        check_collect_progress(threads[t], 300, 200, 0, 1, 0);
        check_collect_progress(threads[t], 1, 0, 0, 0, 0);
    }
}

Test(progress, failed_items_are_counted)
{
    check_collect_progress(1, 1223, 0, 7, 0, 0);
    check_collect_progress(4, 1223, 0, 7, 1, 0);
    check_collect_progress(8, 500, 100, 3, 0, 0);
}

Test(progress, calls_never_overlap_even_when_slow)
{
    /* A slow progress callback on a busy pool: completions keep arriving
     * on every thread while a progress call is running. */
    check_collect_progress(8, 2000, 50, 5, 1, 300);
    check_collect_progress(3, 5000, 0, 0, 1, 100);
}

Test(progress, big_map_reports_every_item_once_finished)
{
    check_collect_progress(4, pt_big_n(), 0, 1000, 0, 0);
}

static void check_throttle(size_t nthreads, double interval)
{
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, nthreads, NULL), 0);
    pt_progress p;
    size_t n = 100 * nthreads;
    pt_progress_init(&p, n);
    /* ~0.5 s in total: 100 rounds of 5 ms items. */
    struct prog_ctx c = {.p = &p, .sleep_us = 5000};
    struct run r = {.n = n};
    parmap_opts o = {.chunk_size = 1, .progress_interval = interval};
    run_map(pool, &r, &c, &o);
    cr_assert_eq(r.rc, 0);
    check_rules(&p);
    cr_assert_eq(p.last_done, n);
    size_t calls = atomic_load(&p.calls);
    /* At most one call per interval over the map's wall time, plus the
     * final call and one for rounding. */
    double bound = r.seconds / interval + 2.0;
    cr_assert_leq((double)calls, bound,
                  "%zu progress calls in %.3f s with interval %.3f s", calls,
                  r.seconds, interval);
    /* A 0.5 s map with 0.05 s interval reports along the way, not only
     * at the end. */
    cr_assert_geq(calls, 2, "only %zu progress calls in %.3f s", calls,
                  r.seconds);
    cr_assert_geq(r.seconds, 0.45);
    free_run(&r, &c);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(progress, interval_throttles_calls)
{
    check_throttle(1, 0.05);
    check_throttle(2, 0.05);
    check_throttle(4, 0.1);
}

Test(progress, zero_interval_reports_along_the_way)
{
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, 2, NULL), 0);
    pt_progress p;
    size_t n = 60;
    pt_progress_init(&p, n);
    struct prog_ctx c = {.p = &p, .sleep_us = 2000};
    struct run r = {.n = n};
    parmap_opts o = {.chunk_size = 1};
    run_map(pool, &r, &c, &o);
    cr_assert_eq(r.rc, 0);
    check_rules(&p);
    /* 60 slow items in chunks of 1: far more than the final call. */
    cr_assert_geq(atomic_load(&p.calls), 10, "only %zu calls",
                  (size_t)atomic_load(&p.calls));
    cr_assert_leq(atomic_load(&p.calls), n + 1);
    free_run(&r, &c);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

static void check_cancel(size_t nthreads, size_t n, size_t cancel_at,
                         size_t chunk, size_t fail_every, long sleep_us)
{
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, nthreads, NULL), 0);
    pt_progress p;
    pt_progress_init(&p, n);
    p.cancel_at = cancel_at;
    struct prog_ctx c = {.p = &p, .sleep_us = sleep_us,
                         .fail_every = fail_every};
    struct run r = {.n = n};
    parmap_opts o = {.chunk_size = chunk};
    run_map(pool, &r, &c, &o);
    cr_assert(atomic_load(&p.cancelled), "the progress callback never asked "
                                         "to stop");
    cr_assert_eq(r.rc, PARMAP_ECANCELED, "rc = %d (%s)", r.rc,
                 parmap_err_name(r.rc));

    unsigned *snap = malloc(n * sizeof *snap);
    cr_assert_not_null(snap);
    for (size_t i = 0; i < n; i++)
        snap[i] = pt_calls_get(&c.calls, i);
    pt_sleep_us(20000);

    size_t ok = 0, failed = 0, notrun = 0, first = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        unsigned calls = pt_calls_get(&c.calls, i);
        cr_assert_eq(calls, snap[i], "item %zu started after return", i);
        if (r.status[i] == PARMAP_ENOTRUN) {
            cr_assert_eq(calls, 0, "item %zu is ENOTRUN but ran", i);
            cr_assert_eq(r.out[i], PT_SENTINEL);
            notrun++;
            continue;
        }
        cr_assert_eq(calls, 1, "item %zu ran %u times", i, calls);
        cr_assert_eq(r.status[i], item_code(&c, i), "status[%zu]", i);
        /* No finished result is lost. */
        cr_assert_eq(r.out[i], pt_f(r.in[i]), "out[%zu]", i);
        if (r.status[i] == 0) {
            ok++;
        } else {
            if (first == (size_t)-1)
                first = i;
            failed++;
        }
    }
    cr_assert_geq(ok + failed, cancel_at);
    cr_assert_gt(notrun, 0, "nothing was cancelled (%zu items)", n);
    cr_assert_eq(ok + failed + notrun, n);
    cr_assert_eq(r.sum.succeeded, ok);
    cr_assert_eq(r.sum.failed, failed);
    cr_assert_eq(r.sum.not_run, notrun);
    cr_assert_eq(r.sum.first_failed, first);
    cr_assert_eq(r.sum.first_error, first == (size_t)-1 ? 0 : r.status[first]);
    check_rules(&p);
    cr_assert_eq(p.last_done, ok + failed, "final call done=%zu, but %zu "
                 "items finished", p.last_done, ok + failed);
    cr_assert_eq(p.last_failed, failed);
    cr_assert(pthread_equal(p.last_thread, pthread_self()));
    free(snap);
    free_run(&r, &c);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(progress, nonzero_return_cancels_and_keeps_finished_results)
{
    check_cancel(1, 1000, 10, 1, 0, 200);
    check_cancel(2, 1000, 10, 1, 0, 500);
    check_cancel(8, 1000, 50, 1, 0, 500);
    check_cancel(3, 1000, 20, 0, 0, 500);
    check_cancel(4, 1000, 30, 0, 4, 300);
    check_cancel(1, 100000, 500, 0, 0, 0);
}

Test(progress, cancel_stops_items_already_handed_to_another_thread)
{
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, 2, NULL), 0);
    size_t chunk = 400, n = 3 * chunk;
    pt_progress p;
    pt_progress_init(&p, n);
    p.cancel_at = 1;
    pt_late l;
    pt_late_init(&l, chunk, 1000, 0, &p);
    cr_assert_eq(pt_calls_init(&l.calls, n), 0);
    int *status = malloc(n * sizeof *status);
    cr_assert_not_null(status);
    parmap_summary sum;
    parmap_opts o = {.chunk_size = chunk, .status = status, .summary = &sum,
                     .progress = pt_progress_fn, .progress_ctx = &p};
    int rc = parmap_map(pool, n, NULL, 0, NULL, 0, pt_late_fn, &l, &o);
    cr_assert_eq(atomic_load(&l.wait_timeouts), 0,
                 "the second thread never took a chunk");
    cr_assert(atomic_load(&p.cancelled));
    cr_assert_eq(rc, PARMAP_ECANCELED);
    cr_assert_eq(atomic_load(&l.late), 0,
                 "%zu items started more than %.2f s after the cancel",
                 (size_t)atomic_load(&l.late), l.grace);
    size_t notrun = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned calls = pt_calls_get(&l.calls, i);
        if (status[i] == PARMAP_ENOTRUN) {
            cr_assert_eq(calls, 0, "item %zu", i);
            notrun++;
        } else {
            cr_assert_eq(calls, 1, "item %zu", i);
            cr_assert_eq(status[i], 0);
        }
    }
    cr_assert_eq(sum.not_run, notrun);
    cr_assert_eq(sum.succeeded, n - notrun);
    cr_assert_gt(notrun, chunk + chunk / 2, "only %zu items not run", notrun);
    check_rules(&p);
    pt_calls_free(&l.calls);
    free(status);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

static int f_fail_all(void *ctx, size_t i, const void *in, void *out)
{
    pt_progress *p = ctx;
    (void)i;
    (void)in;
    (void)out;
    pt_progress_item_returns(p, -EIO);
    return -EIO;
}

/* Every item fails and completions are published one at a time from every
 * thread, so `done` and `failed` change constantly while progress calls
 * read them: each snapshot must still be consistent (failed <= done). */
Test(progress, snapshot_never_reports_more_failures_than_done)
{
    static const size_t threads[] = {3, 8};
    /* The race this looks for is rare: keep trying for a while (and stop
     * at the first inconsistent snapshot). */
    double budget = pt_quick() ? 0.5 : 2.0;
    for (size_t t = 0; t < 2; t++) {
        parmap_pool *pool = NULL;
        cr_assert_eq(parmap_pool_create(&pool, threads[t], NULL), 0);
        size_t n = 2000, over = 0, calls = 0;
        double end = pt_now() + budget;
        for (size_t m = 0; over == 0 && (m < 20 || pt_now() < end); m++) {
            pt_progress p;
            pt_progress_init(&p, n);
            parmap_summary sum;
            parmap_opts o = {.chunk_size = 1, .progress = pt_progress_fn,
                             .progress_ctx = &p, .summary = &sum};
            int rc = parmap_map(pool, n, NULL, 0, NULL, 0, f_fail_all, &p, &o);
            cr_assert_eq(rc, PARMAP_EFAILED);
            cr_assert_eq(sum.failed, n);
            cr_assert_eq(p.last_done, n);
            cr_assert_eq(p.last_failed, n);
            /* `ahead` also counts failed > done, reported below. */
            cr_assert_eq(atomic_load(&p.ahead) -
                             atomic_load(&p.failed_over_done),
                         0, "done or failed ran ahead of the callbacks");
            cr_assert_eq(atomic_load(&p.decreasing), 0);
            cr_assert_eq(atomic_load(&p.overlaps), 0);
            over += atomic_load(&p.failed_over_done);
            calls += atomic_load(&p.calls);
        }
        cr_assert_eq(over, 0, "pool %zu: %zu of %zu progress snapshots had "
                     "failed > done", threads[t], over, calls);
        cr_assert_eq(parmap_pool_destroy(pool), 0);
    }
}
