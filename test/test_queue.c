/*
 * Tests of lib/queue.c: the work queue hands out every index once, honours
 * each map's concurrency limit exactly, and is shared fairly enough by maps
 * from several threads that all of them complete.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CPU_COUNT, sched_getaffinity, nanosleep, dprintf */
#endif
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "common.h"

TestSuite(queue, .timeout = 30.);

/* Items that measure how many callbacks of their map run at once. Each
 * item, while the peak is still below the expected one, waits a little for
 * others to come in, so that reaching the limit does not depend on lucky
 * timing; once the peak was reached items only sleep ~1 ms. */
struct conc_ctx {
    pt_gauge g;
    size_t expect;  /* the concurrency the map should reach */
    long sleep_us;
    pt_calls calls;
};

static int f_conc(void *ctx, size_t i, const void *in, void *out)
{
    struct conc_ctx *c = ctx;
    (void)in;
    atomic_fetch_add(&c->calls.count[i], 1);
    pt_gauge_enter(&c->g);
    if (atomic_load(&c->g.peak) < c->expect) {
        /* Wait up to 50 ms for the others; a limit that is too low shows
         * up as a peak below `expect`. */
        double end = pt_now() + 0.05;
        while (atomic_load(&c->g.peak) < c->expect && pt_now() < end)
            pt_sleep_us(100);
    }
    pt_sleep_us(c->sleep_us);
    pt_gauge_leave(&c->g);
    if (out)
        *(uint64_t *)out = pt_f(i);
    return 0;
}

/* Runs a map of n ~1 ms items with the given limit and returns its peak
 * concurrency after checking results. */
static size_t run_limited(parmap_pool *pool, size_t n, size_t maxc,
                          size_t expect, size_t chunk)
{
    struct conc_ctx c = {.expect = expect, .sleep_us = 1000};
    atomic_init(&c.g.cur, 0);
    atomic_init(&c.g.peak, 0);
    cr_assert_eq(pt_calls_init(&c.calls, n), 0);
    uint64_t *out = malloc(n * sizeof *out);
    cr_assert_not_null(out);
    parmap_opts o = {.max_concurrency = maxc, .chunk_size = chunk};
    int rc = parmap_map(pool, n, NULL, 0, out, sizeof *out, f_conc, &c, &o);
    cr_assert_eq(rc, 0);
    cr_assert_eq(pt_calls_first_not(&c.calls, 1), n);
    cr_assert_eq(atomic_load(&c.g.cur), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(out[i], pt_f(i));
    free(out);
    pt_calls_free(&c.calls);
    return atomic_load(&c.g.peak);
}

static void check_limits_on_pool(size_t nthreads)
{
    static const size_t limits[] = {1, 2, 3, 5};
    static const size_t chunks[] = {0, 1, 4};
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, nthreads, NULL), 0);
    for (size_t l = 0; l < 4; l++)
        for (size_t ch = 0; ch < 3; ch++) {
            size_t k = limits[l];
            size_t peak = run_limited(pool, 30 * k, k, k, chunks[ch]);
            cr_assert_leq(peak, k, "pool %zu, max_concurrency %zu, chunk %zu:"
                          " %zu callbacks ran at once", nthreads, k,
                          chunks[ch], peak);
            cr_assert_eq(peak, k, "pool %zu, max_concurrency %zu, chunk %zu: "
                         "peak only %zu", nthreads, k, chunks[ch], peak);
        }
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(queue, max_concurrency_is_exact_on_pool_of_8)
{
    check_limits_on_pool(8);
}

Test(queue, max_concurrency_is_exact_on_pool_of_64)
{
    check_limits_on_pool(64);
}

Test(queue, max_concurrency_above_pool_size_is_capped_at_pool_size)
{
    static const size_t sizes[] = {1, 2, 4};
    for (size_t s = 0; s < 3; s++) {
        size_t t = sizes[s];
        parmap_pool *pool = NULL;
        cr_assert_eq(parmap_pool_create(&pool, t, NULL), 0);
        size_t peak = run_limited(pool, 20 * t, t + 3, t, 1);
        cr_assert_leq(peak, t, "pool %zu ran %zu callbacks at once", t, peak);
        cr_assert_eq(peak, t, "pool %zu reached only %zu", t, peak);
        peak = run_limited(pool, 20 * t, (size_t)-1, t, 0);
        cr_assert_eq(peak, t, "pool %zu with SIZE_MAX limit: peak %zu", t,
                     peak);
        cr_assert_eq(parmap_pool_destroy(pool), 0);
    }
}

Test(queue, zero_max_concurrency_means_pool_size)
{
    static const size_t sizes[] = {1, 3, 8};
    for (size_t s = 0; s < 3; s++) {
        size_t t = sizes[s];
        parmap_pool *pool = NULL;
        cr_assert_eq(parmap_pool_create(&pool, t, NULL), 0);
        size_t peak = run_limited(pool, 20 * t, 0, t, 1);
        cr_assert_eq(peak, t, "pool %zu, max_concurrency 0: peak %zu", t, peak);
        cr_assert_eq(parmap_pool_destroy(pool), 0);
    }
}

Test(queue, limit_of_one_serialises_callbacks_on_a_big_pool)
{
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, 8, NULL), 0);
    /* Many cheap items: a limit of 1 must hold even when chunks are handed
     * out quickly. */
    struct conc_ctx c = {.expect = 1, .sleep_us = 0};
    atomic_init(&c.g.cur, 0);
    atomic_init(&c.g.peak, 0);
    size_t n = 20000;
    cr_assert_eq(pt_calls_init(&c.calls, n), 0);
    parmap_opts o = {.max_concurrency = 1};
    cr_assert_eq(parmap_map(pool, n, NULL, 0, NULL, 0, f_conc, &c, &o), 0);
    cr_assert_eq(pt_calls_first_not(&c.calls, 1), n);
    cr_assert_eq(atomic_load(&c.g.peak), 1);
    pt_calls_free(&c.calls);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* Several threads run limited maps on one pool at once; each map keeps its
 * own limit and all complete. */
struct limited_caller {
    parmap_pool *pool;
    size_t limit;
    size_t maps;
    size_t worst_peak; /* highest peak over this caller's maps */
    long bad;          /* maps with a wrong result */
};

static void *limited_caller_thread(void *arg)
{
    struct limited_caller *a = arg;
    a->worst_peak = 0;
    a->bad = 0;
    for (size_t m = 0; m < a->maps; m++) {
        struct conc_ctx c = {.expect = 0, .sleep_us = 300};
        atomic_init(&c.g.cur, 0);
        atomic_init(&c.g.peak, 0);
        size_t n = 40 + m * 7;
        uint64_t *out = malloc(n * sizeof *out);
        if (out == NULL || pt_calls_init(&c.calls, n) != 0) {
            a->bad++;
            free(out);
            continue;
        }
        parmap_opts o = {.max_concurrency = a->limit, .chunk_size = m % 3};
        int rc = parmap_map(a->pool, n, NULL, 0, out, sizeof *out, f_conc, &c,
                            &o);
        if (rc != 0 || pt_calls_first_not(&c.calls, 1) != n)
            a->bad++;
        for (size_t i = 0; i < n; i++)
            if (out[i] != pt_f(i)) {
                a->bad++;
                break;
            }
        size_t peak = atomic_load(&c.g.peak);
        if (peak > a->worst_peak)
            a->worst_peak = peak;
        pt_calls_free(&c.calls);
        free(out);
    }
    return NULL;
}

static void check_shared_queue(size_t nthreads)
{
    enum { NCALLERS = 4 };
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, nthreads, NULL), 0);
    struct limited_caller a[NCALLERS];
    pthread_t tid[NCALLERS];
    for (size_t i = 0; i < NCALLERS; i++) {
        a[i] = (struct limited_caller){pool, i, 10, 0, -1};
        cr_assert_eq(pthread_create(&tid[i], NULL, limited_caller_thread,
                                    &a[i]),
                     0);
    }
    for (size_t i = 0; i < NCALLERS; i++)
        pthread_join(tid[i], NULL);
    for (size_t i = 0; i < NCALLERS; i++) {
        cr_assert_eq(a[i].bad, 0, "caller %zu: %ld bad maps", i, a[i].bad);
        /* limit 0 means the pool's size. */
        size_t cap = a[i].limit ? a[i].limit : nthreads;
        if (cap > nthreads)
            cap = nthreads;
        cr_assert_leq(a[i].worst_peak, cap,
                      "pool %zu, limit %zu: %zu at once", nthreads,
                      a[i].limit, a[i].worst_peak);
        cr_assert_geq(a[i].worst_peak, 1);
    }
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(queue, maps_from_several_threads_share_the_queue_and_keep_limits)
{
    check_shared_queue(2);
    check_shared_queue(8);
}

/* More calls at once than the queue has room to publish: the ones that do
 * not fit must still complete (on their callers) with correct results and
 * within their limits. */
struct crowd_arg {
    parmap_pool *pool;
    pthread_barrier_t *start;
    size_t id;
    long bad;
    size_t worst_peak;
};

static void *crowd_thread(void *arg)
{
    struct crowd_arg *a = arg;
    a->bad = 0;
    a->worst_peak = 0;
    pthread_barrier_wait(a->start);
    for (size_t m = 0; m < 5; m++) {
        size_t n = 60 + (a->id * 7 + m) % 40;
        struct conc_ctx c = {.expect = 0, .sleep_us = 200};
        atomic_init(&c.g.cur, 0);
        atomic_init(&c.g.peak, 0);
        uint64_t *out = malloc(n * sizeof *out);
        if (out == NULL || pt_calls_init(&c.calls, n) != 0) {
            a->bad++;
            free(out);
            continue;
        }
        parmap_opts o = {.max_concurrency = 2, .chunk_size = 1};
        int rc = parmap_map(a->pool, n, NULL, 0, out, sizeof *out, f_conc, &c,
                            &o);
        if (rc != 0 || pt_calls_first_not(&c.calls, 1) != n)
            a->bad++;
        for (size_t i = 0; i < n; i++)
            if (out[i] != pt_f(i)) {
                a->bad++;
                break;
            }
        size_t peak = atomic_load(&c.g.peak);
        if (peak > a->worst_peak)
            a->worst_peak = peak;
        pt_calls_free(&c.calls);
        free(out);
    }
    return NULL;
}

Test(queue, more_concurrent_maps_than_queue_slots_all_complete)
{
    enum { NCALLERS = 100 };
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, 4, NULL), 0);
    pthread_barrier_t start;
    cr_assert_eq(pthread_barrier_init(&start, NULL, NCALLERS), 0);
    struct crowd_arg *a = calloc(NCALLERS, sizeof *a);
    pthread_t *tid = calloc(NCALLERS, sizeof *tid);
    cr_assert(a && tid);
    for (size_t i = 0; i < NCALLERS; i++) {
        a[i] = (struct crowd_arg){pool, &start, i, -1, 0};
        cr_assert_eq(pthread_create(&tid[i], NULL, crowd_thread, &a[i]), 0);
    }
    for (size_t i = 0; i < NCALLERS; i++)
        pthread_join(tid[i], NULL);
    for (size_t i = 0; i < NCALLERS; i++) {
        cr_assert_eq(a[i].bad, 0, "caller %zu: %ld bad maps", i, a[i].bad);
        cr_assert_leq(a[i].worst_peak, 2, "caller %zu: %zu at once", i,
                      a[i].worst_peak);
        cr_assert_geq(a[i].worst_peak, 1);
    }
    free(a);
    free(tid);
    pthread_barrier_destroy(&start);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}
