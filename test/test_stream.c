/*
 * Tests of lib/stream.c: streams deliver every produced item once, in input
 * order or as they finish, within their bounds (limit, prefetch, reorder,
 * window) however many items flow; they stop cleanly on producer errors,
 * halt rules, cancellation and timeouts, retry with backoff, report
 * progress with an unknown total, reject bad arguments, survive injected
 * allocation failures, and can be destroyed mid-way.
 *
 * As everywhere in test/, callbacks never assert: they record into atomics
 * and the test asserts on its own thread afterwards.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nanosleep, getrusage */
#endif
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "common.h"
#include "fault.h"

TestSuite(stream, .timeout = 60.);

/* ------------------------------------------------------------------------ */
/* A configurable producer and callback, and a consumer that records        */
/* ------------------------------------------------------------------------ */

struct gen;
typedef int (*code_fn)(struct gen *g, size_t i, unsigned attempt);

struct gen {
    /* Producer: items 0..n-1 (n = SIZE_MAX: endless), input pt_mix(i);
     * at index fail_at it returns fail_code instead. */
    size_t n;
    size_t fail_at;
    int fail_code;
    atomic_size_t prod_calls;
    atomic_size_t prod_items;
    pt_gauge prod_gauge; /* producers running at once */

    /* Window check: when `window` is set, the producer asked for item k
     * must see k + 1 - consumed <= window. */
    size_t window;
    atomic_size_t consumed; /* bumped by the consumer per item received */
    atomic_size_t over_window;

    /* Callback. */
    pt_gauge run_gauge; /* callbacks running at once */
    atomic_size_t fn_calls;
    pt_calls calls;     /* per index, when calls.count != NULL */
    long sleep_us;      /* every item sleeps this long */
    long rand_sleep_us; /* plus a random 0..rand_sleep_us, seeded by index */
    uint64_t seed;
    code_fn code; /* the item's return value, NULL = 0 */
    atomic_size_t bad_in;
    pt_progress *progress;

    /* Completion order: seq[i] = the order in which item i returned. */
    atomic_size_t seq_next;
    atomic_size_t *seq; /* n entries, or NULL */

    void *user; /* test-specific */
};

static void gen_init(struct gen *g, size_t n)
{
    memset(g, 0, sizeof *g);
    g->n = n;
    g->fail_at = SIZE_MAX;
    atomic_init(&g->prod_calls, 0);
    atomic_init(&g->prod_items, 0);
    atomic_init(&g->consumed, 0);
    atomic_init(&g->over_window, 0);
    atomic_init(&g->fn_calls, 0);
    atomic_init(&g->bad_in, 0);
    atomic_init(&g->seq_next, 0);
    atomic_init(&g->prod_gauge.cur, 0);
    atomic_init(&g->prod_gauge.peak, 0);
    atomic_init(&g->run_gauge.cur, 0);
    atomic_init(&g->run_gauge.peak, 0);
}

/* Per-index call counts for the first `n` indices. */
static void gen_track(struct gen *g, size_t n)
{
    cr_assert_eq(pt_calls_init(&g->calls, n), 0);
}

static void gen_free(struct gen *g)
{
    pt_calls_free(&g->calls);
    free((void *)g->seq);
}

static int gen_produce(void *ctx, size_t i, void *in)
{
    struct gen *g = ctx;
    int rc = 1;

    pt_gauge_enter(&g->prod_gauge);
    atomic_fetch_add(&g->prod_calls, 1);
    if (g->window != 0 && i + 1 - atomic_load(&g->consumed) > g->window)
        atomic_fetch_add(&g->over_window, 1);
    if (i >= g->n)
        rc = 0;
    else if (i == g->fail_at)
        rc = g->fail_code;
    else if (in != NULL)
        *(uint64_t *)in = pt_mix(i);
    if (rc == 1)
        atomic_fetch_add(&g->prod_items, 1);
    pt_gauge_leave(&g->prod_gauge);
    return rc;
}

static int gen_fn(void *ctx, size_t i, const void *in, void *out)
{
    struct gen *g = ctx;
    unsigned attempt = 1;

    pt_gauge_enter(&g->run_gauge);
    atomic_fetch_add(&g->fn_calls, 1);
    if (g->calls.count != NULL && i < g->calls.n)
        attempt = atomic_fetch_add(&g->calls.count[i], 1) + 1;
    if (in != NULL && *(const uint64_t *)in != pt_mix(i))
        atomic_fetch_add(&g->bad_in, 1);
    long us = g->sleep_us;
    if (g->rand_sleep_us > 0)
        us += (long)(pt_mix(g->seed ^ i) % (uint64_t)(g->rand_sleep_us + 1));
    if (us > 0)
        pt_sleep_us(us);
    if (out != NULL)
        *(uint64_t *)out = pt_f(pt_mix(i));
    int rc = g->code != NULL ? g->code(g, i, attempt) : 0;
    if (g->seq != NULL && i < g->n)
        atomic_store(&g->seq[i], atomic_fetch_add(&g->seq_next, 1));
    if (g->progress != NULL)
        pt_progress_item_returns(g->progress, rc);
    pt_gauge_leave(&g->run_gauge);
    return rc;
}

/* What a consumer received. */
struct got {
    size_t n, cap;
    size_t *index;
    int *status;
    unsigned *attempts;
    size_t bad_out; /* items with status 0 whose output is wrong */
    size_t bad_in;  /* items whose input is not pt_mix(index) */
    int rc;         /* the call that ended the loop */
};

static void got_free(struct got *r)
{
    free(r->index);
    free(r->status);
    free(r->attempts);
    memset(r, 0, sizeof *r);
}

/* Consumes until next() returns something other than 1, or `max` items
 * have been received (then r->rc is 1). */
static void consume(parmap_stream *s, struct gen *g, struct got *r,
                    size_t max)
{
    parmap_stream_item it;

    for (;;) {
        if (r->n >= max) {
            r->rc = 1;
            return;
        }
        memset(&it, 0xa5, sizeof it);
        int rc = parmap_stream_next(s, &it);
        if (rc != 1) {
            r->rc = rc;
            return;
        }
        if (r->n == r->cap) {
            r->cap = r->cap ? 2 * r->cap : 64;
            r->index = realloc(r->index, r->cap * sizeof *r->index);
            r->status = realloc(r->status, r->cap * sizeof *r->status);
            r->attempts = realloc(r->attempts, r->cap * sizeof *r->attempts);
            cr_assert(r->index && r->status && r->attempts);
        }
        r->index[r->n] = it.index;
        r->status[r->n] = it.status;
        r->attempts[r->n] = it.attempts;
        if (it.in != NULL && *(const uint64_t *)it.in != pt_mix(it.index))
            r->bad_in++;
        if (it.status == 0 && it.out != NULL &&
            *(const uint64_t *)it.out != pt_f(pt_mix(it.index)))
            r->bad_out++;
        r->n++;
        if (g != NULL)
            atomic_fetch_add(&g->consumed, 1);
    }
}

static parmap_pool *make_pool(size_t nthreads)
{
    parmap_pool *pool = NULL;
    int rc = parmap_pool_create(&pool, nthreads, NULL);
    cr_assert_eq(rc, 0, "parmap_pool_create(%zu) = %d", nthreads, rc);
    return pool;
}

static parmap_stream *make_stream(parmap_pool *pool, struct gen *g,
                                  const parmap_opts *o)
{
    parmap_stream *s = NULL;
    int rc = parmap_stream_create(&s, pool, gen_produce, g, sizeof(uint64_t),
                                  gen_fn, g, sizeof(uint64_t), o);
    cr_assert_eq(rc, 0, "parmap_stream_create = %d (%s)", rc,
                 parmap_err_name(rc));
    cr_assert_not_null(s);
    return s;
}

static void destroy_all(parmap_stream *s, parmap_pool *pool)
{
    cr_assert_eq(parmap_stream_destroy(s), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* Asserts r holds items 0..n-1 exactly once each, all successful with one
 * attempt and correct data; in input order when `ordered`. */
static void assert_all_once(const struct got *r, size_t n, int ordered,
                            const char *what)
{
    cr_assert_eq(r->n, n, "%s: %zu items delivered, want %zu", what, r->n, n);
    unsigned char *seen = calloc(n ? n : 1, 1);
    cr_assert_not_null(seen);
    for (size_t k = 0; k < n; k++) {
        size_t i = r->index[k];
        if (ordered)
            cr_assert_eq(i, k, "%s: position %zu holds index %zu", what, k,
                         i);
        cr_assert_lt(i, n, "%s: index %zu out of range", what, i);
        cr_assert_eq(seen[i], 0, "%s: index %zu delivered twice", what, i);
        seen[i] = 1;
        cr_assert_eq(r->status[k], 0, "%s: index %zu status %d", what, i,
                     r->status[k]);
        cr_assert_eq(r->attempts[k], 1, "%s: index %zu attempts %u", what, i,
                     r->attempts[k]);
    }
    free(seen);
    cr_assert_eq(r->bad_in, 0, "%s: %zu items with a wrong input", what,
                 r->bad_in);
    cr_assert_eq(r->bad_out, 0, "%s: %zu items with a wrong output", what,
                 r->bad_out);
}

/* ------------------------------------------------------------------------ */
/* Order, completeness, pool sizes                                          */
/* ------------------------------------------------------------------------ */

struct order_case {
    size_t threads;
    size_t limit;
    unsigned flags;
};

ParameterizedTestParameters(stream, delivers_every_item_once_per_pool_size)
{
    static struct order_case cases[] = {
        {1, 0, 0},  {1, 0, PARMAP_UNORDERED}, {2, 0, 0},
        {2, 0, PARMAP_UNORDERED}, {2, 1, 0},  {3, 2, PARMAP_UNORDERED},
        {8, 0, 0},  {8, 0, PARMAP_UNORDERED}, {8, 3, 0},
        {64, 0, PARMAP_UNORDERED},
    };
    return cr_make_param_array(struct order_case, cases,
                               sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct order_case *c, stream,
                  delivers_every_item_once_per_pool_size)
{
    static const size_t sizes[] = {0, 1, 2, 1223};
    parmap_pool *pool = make_pool(c->threads);
    size_t limit = c->limit ? c->limit : c->threads;

    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        size_t n = sizes[z];
        struct gen g;
        gen_init(&g, n);
        gen_track(&g, n);
        parmap_opts o = {0};
        o.flags = c->flags;
        o.max_concurrency = c->limit;
        parmap_stream *s = make_stream(pool, &g, &o);
        struct got r = {0};
        consume(s, &g, &r, SIZE_MAX);
        cr_assert_eq(r.rc, 0, "threads=%zu n=%zu: end code %d", c->threads,
                     n, r.rc);
        assert_all_once(&r, n, !(c->flags & PARMAP_UNORDERED), "pool sizes");
        cr_assert_eq(pt_calls_first_not(&g.calls, 1), n,
                     "an item was not called exactly once");
        cr_assert_leq(atomic_load(&g.run_gauge.peak), limit,
                      "%zu callbacks ran at once, limit %zu",
                      (size_t)atomic_load(&g.run_gauge.peak), limit);
        cr_assert_eq(atomic_load(&g.prod_gauge.peak) <= 1, 1,
                     "two producers ran at once");
        /* The producer is asked once past the end, never again. */
        cr_assert_eq(atomic_load(&g.prod_calls), n + 1);
        /* The end is sticky. */
        parmap_stream_item it;
        cr_assert_eq(parmap_stream_next(s, &it), 0);
        cr_assert_eq(parmap_stream_next(s, &it), 0);
        parmap_stream_stats st;
        cr_assert_eq(parmap_stream_inspect(s, &st), 0);
        cr_assert_eq(st.produced, n);
        cr_assert_eq(st.delivered, n);
        cr_assert_eq(st.waiting + st.running + st.held, 0);
        cr_assert_eq(st.holdup_index, (size_t)-1);
        cr_assert_eq(st.holdup_seconds, 0.0);
        cr_assert_eq(parmap_stream_destroy(s), 0);
        got_free(&r);
        gen_free(&g);
    }
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

ParameterizedTestParameters(stream, ordered_delivery_follows_input_order)
{
    static size_t threads[] = {1, 2, 3, 8};
    return cr_make_param_array(size_t, threads,
                               sizeof threads / sizeof threads[0]);
}

ParameterizedTest(size_t *threads, stream,
                  ordered_delivery_follows_input_order)
{
    const size_t n = 400;
    parmap_pool *pool = make_pool(*threads);
    struct gen g;
    gen_init(&g, n);
    gen_track(&g, n);
    g.rand_sleep_us = 2000; /* items finish far out of order */
    g.seed = pt_seed();
    g.seq = calloc(n, sizeof *g.seq);
    cr_assert_not_null(g.seq);
    parmap_opts o = {0};
    o.prefetch = 3;
    o.reorder = 5;
    parmap_stream *s = make_stream(pool, &g, &o);
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, 0);
    assert_all_once(&r, n, 1, "ordered");
    cr_assert_leq(atomic_load(&g.run_gauge.peak), *threads);
    /* With several threads, items did finish out of order, so the order
     * above was restored by the stream, not given by the schedule. */
    if (*threads > 1) {
        size_t inversions = 0;
        for (size_t i = 1; i < n; i++)
            inversions += atomic_load(&g.seq[i]) < atomic_load(&g.seq[i - 1]);
        cr_assert_gt(inversions, 0, "no item finished out of order");
    }
    got_free(&r);
    gen_free(&g);
    destroy_all(s, pool);
}

/* Item i of 4 sleeps (4 - i) * 80 ms, so they finish 3, 2, 1, 0. */
static const long plan_us[4] = {320000, 240000, 160000, 80000};

static int plan_fn(void *ctx, size_t i, const void *in, void *out)
{
    pt_sleep_us(plan_us[i]);
    return gen_fn(ctx, i, in, out);
}

Test(stream, unordered_delivers_in_completion_order)
{
    const size_t n = 4;
    parmap_pool *pool = make_pool(4);
    struct gen g;
    gen_init(&g, n);
    gen_track(&g, n);
    parmap_opts o = {0};
    o.flags = PARMAP_UNORDERED;
    o.prefetch = 4;
    parmap_stream *s = NULL;
    int rc = parmap_stream_create(&s, pool, gen_produce, &g, sizeof(uint64_t),
                                  plan_fn, &g, sizeof(uint64_t), &o);
    cr_assert_eq(rc, 0);
    double t0 = pt_now();
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    double dt = pt_now() - t0;
    cr_assert_eq(r.rc, 0);
    assert_all_once(&r, n, 0, "unordered");
    for (size_t k = 0; k < n; k++)
        cr_assert_eq(r.index[k], n - 1 - k,
                     "position %zu holds item %zu; want completion order "
                     "3, 2, 1, 0",
                     k, r.index[k]);
    /* They ran at once: about the slowest one's time, not the sum. */
    cr_assert_lt(dt, 0.75, "took %.3f s", dt);
    got_free(&r);
    gen_free(&g);
    destroy_all(s, pool);
}

/* Every index exactly once, unordered, with random durations. */
Test(stream, unordered_delivers_every_index_once_with_random_durations)
{
    const size_t n = 1223;
    parmap_pool *pool = make_pool(4);
    struct gen g;
    gen_init(&g, n);
    gen_track(&g, n);
    g.rand_sleep_us = 500;
    g.seed = pt_seed();
    g.seq = calloc(n, sizeof *g.seq);
    cr_assert_not_null(g.seq);
    parmap_opts o = {0};
    o.flags = PARMAP_UNORDERED;
    parmap_stream *s = make_stream(pool, &g, &o);
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, 0);
    assert_all_once(&r, n, 0, "unordered");
    cr_assert_eq(pt_calls_first_not(&g.calls, 1), n);
    /* Delivery is not simply input order. */
    size_t out_of_order = 0;
    for (size_t k = 0; k < n; k++)
        out_of_order += r.index[k] != k;
    cr_assert_gt(out_of_order, 0, "unordered stream delivered in input order");
    got_free(&r);
    gen_free(&g);
    destroy_all(s, pool);
}

/* ------------------------------------------------------------------------ */
/* Bounds over a long stream                                                */
/* ------------------------------------------------------------------------ */

struct bound_case {
    size_t limit;
    unsigned flags;
};

#if defined(__SANITIZE_ADDRESS__)
#define RUNNING_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RUNNING_UNDER_ASAN 1
#endif
#endif
#ifndef RUNNING_UNDER_ASAN
#define RUNNING_UNDER_ASAN 0
#endif

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

ParameterizedTestParameters(stream, bounds_hold_over_millions_of_items)
{
    static struct bound_case cases[] = {
        {2, 0},
        {3, PARMAP_UNORDERED},
        {4, 0},
    };
    return cr_make_param_array(struct bound_case, cases,
                               sizeof cases / sizeof cases[0]);
}

/* 10,000,000 items (1,000,000 quick) through L, P = 4, R = 8: the
 * callbacks and the producer count what is in flight, and the test samples
 * parmap_stream_inspect() on the way. Memory must stay flat. */
ParameterizedTest(struct bound_case *c, stream,
                  bounds_hold_over_millions_of_items, .timeout = 120.)
{
    const size_t n = pt_quick() ? 1000000 : 10000000;
    const size_t P = 4, R = 8, L = c->limit, W = L + P + R;
    const int ordered = !(c->flags & PARMAP_UNORDERED);
    parmap_pool *pool = make_pool(4);
    struct gen g;
    gen_init(&g, n);
    g.window = W;
    parmap_opts o = {0};
    o.flags = c->flags;
    o.max_concurrency = L;
    o.prefetch = P;
    o.reorder = R;
    long rss0 = max_rss_kb();
    double t0 = pt_now();
    parmap_stream *s = make_stream(pool, &g, &o);

    parmap_stream_item it;
    size_t count = 0, bad = 0, misordered = 0, bad_stats = 0;
    uint64_t sum = 0, mixsum = 0;
    int rc;
    while ((rc = parmap_stream_next(s, &it)) == 1) {
        if (ordered && it.index != count)
            misordered++;
        if (it.status != 0 || it.attempts != 1 ||
            *(const uint64_t *)it.in != pt_mix(it.index) ||
            *(const uint64_t *)it.out != pt_f(pt_mix(it.index)))
            bad++;
        sum += it.index;
        mixsum += pt_mix(it.index);
        count++;
        atomic_fetch_add(&g.consumed, 1);
        if ((count & 0xffff) == 0) {
            parmap_stream_stats st;
            parmap_stream_inspect(s, &st);
            if (st.running > L || st.waiting > P ||
                (ordered && st.held > R) ||
                st.produced - st.delivered + 1 > W ||
                st.delivered != count)
                bad_stats++;
        }
    }
    double dt = pt_now() - t0;
    long rss1 = max_rss_kb();
    cr_assert_eq(rc, 0);
    cr_assert_eq(count, n);
    cr_assert_eq(misordered, 0);
    cr_assert_eq(bad, 0, "%zu items with a wrong outcome", bad);
    uint64_t want_mix = 0;
    for (size_t i = 0; i < n; i++)
        want_mix += pt_mix(i);
    cr_assert_eq(sum, (uint64_t)n * (n - 1) / 2, "indices do not add up");
    cr_assert_eq(mixsum, want_mix, "indices do not add up");
    cr_assert_leq(atomic_load(&g.run_gauge.peak), L,
                  "%zu callbacks ran at once, limit %zu",
                  (size_t)atomic_load(&g.run_gauge.peak), L);
    cr_assert_eq(atomic_load(&g.prod_gauge.peak), 1, "producers overlapped");
    cr_assert_eq(atomic_load(&g.over_window), 0,
                 "the producer was asked for an item beyond the window %zu "
                 "times",
                 (size_t)atomic_load(&g.over_window));
    cr_assert_eq(bad_stats, 0, "%zu inspect samples broke a bound",
                 bad_stats);
    /* Nothing grows per item: 10 million items of 16 bytes would be
     * 160 MB. AddressSanitizer's quarantine and shadow memory grow with
     * every allocation the runtime sees, so there the in-flight counts
     * above are the proof, and the RSS bound is only checked natively. */
    if (!RUNNING_UNDER_ASAN)
        cr_assert_lt(rss1 - rss0, 8 * 1024, "peak RSS grew by %ld KB",
                     rss1 - rss0);
    fprintf(stderr,
            "stream bounds: %zu items, L=%zu P=%zu R=%zu %s: %.2f s "
            "(%.0f ns/item), peak RSS %ld KB (grew %ld KB)\n",
            n, L, P, R, ordered ? "ordered" : "unordered", dt, dt * 1e9 / n,
            rss1, rss1 - rss0);
    destroy_all(s, pool);
}

/* ------------------------------------------------------------------------ */
/* The reorder bound behind one slow item                                   */
/* ------------------------------------------------------------------------ */

struct slow_ctx {
    struct gen g;
    parmap_stream *s;
    size_t slow;
    size_t P, R;
    atomic_int slow_done;
    atomic_size_t max_started; /* highest index started while slow runs */
    parmap_stream_stats seen;  /* inspect from inside the slow item */
    atomic_int seen_ok;        /* the wait for the bound did not time out */
    int fills;                 /* other items can run beside the slow one */
};

static void atomic_max(atomic_size_t *m, size_t v)
{
    size_t cur = atomic_load(m);
    while (v > cur && !atomic_compare_exchange_weak(m, &cur, v)) {
    }
}

static int slow_fn(void *ctx, size_t i, const void *in, void *out)
{
    struct slow_ctx *c = ctx;

    if (!atomic_load(&c->slow_done))
        atomic_max(&c->max_started, i);
    if (i == c->slow) {
        /* Wait until the stream has filled its reorder buffer and its
         * prefetch behind this item, then give it time to overstep, and
         * look. */
        parmap_stream_stats st;
        double end = pt_now() + (c->fills ? 10.0 : 0.0);
        for (;;) {
            parmap_stream_inspect(c->s, &st);
            if (st.held == c->R - 1 && st.waiting == c->P) {
                atomic_store(&c->seen_ok, 1);
                break;
            }
            if (pt_now() > end)
                break;
            pt_sleep_us(1000);
        }
        pt_sleep_us(100000);
        parmap_stream_inspect(c->s, &c->seen);
        atomic_store(&c->slow_done, 1);
    }
    return gen_fn(&c->g, i, in, out);
}

ParameterizedTestParameters(stream, slow_item_stops_workers_at_reorder_bound)
{
    static size_t threads[] = {1, 4};
    return cr_make_param_array(size_t, threads,
                               sizeof threads / sizeof threads[0]);
}

ParameterizedTest(size_t *threads, stream,
                  slow_item_stops_workers_at_reorder_bound)
{
    const size_t n = 60, L = *threads, P = 4, R = 8;
    parmap_pool *pool = make_pool(*threads);
    struct slow_ctx c;
    memset(&c, 0, sizeof c);
    gen_init(&c.g, n);
    c.slow = 5;
    c.P = P;
    c.R = R;
    atomic_init(&c.slow_done, 0);
    atomic_init(&c.max_started, 0);
    atomic_init(&c.seen_ok, 0);
    c.fills = L > 1;
    parmap_opts o = {0};
    o.max_concurrency = L;
    o.prefetch = P;
    o.reorder = R;
    int rc = parmap_stream_create(&c.s, pool, gen_produce, &c.g,
                                  sizeof(uint64_t), slow_fn, &c,
                                  sizeof(uint64_t), &o);
    cr_assert_eq(rc, 0);
    struct got r = {0};
    consume(c.s, &c.g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, 0);
    assert_all_once(&r, n, 1, "slow item");

    if (L == 1) {
        /* Nothing else can run beside the slow item: the buffer never
         * fills. */
        cr_assert_eq(c.seen.running, 1);
        cr_assert_eq(c.seen.holdup_index, c.slow);
        cr_assert_eq(c.seen.held, 0);
        cr_assert_eq(atomic_load(&c.max_started), c.slow);
    } else {
        size_t d = c.seen.delivered;
        cr_assert_eq(atomic_load(&c.seen_ok), 1,
                     "the stream never reached held = R - 1 with P waiting");
        cr_assert_leq(d, c.slow);
        cr_assert_eq(c.seen.running, 1, "running %zu", c.seen.running);
        cr_assert_eq(c.seen.held, R - 1, "held %zu", c.seen.held);
        cr_assert_eq(c.seen.waiting, P, "waiting %zu", c.seen.waiting);
        cr_assert_eq(c.seen.produced, d + R + P, "produced %zu, delivered %zu",
                     c.seen.produced, d);
        cr_assert_eq(atomic_load(&c.max_started), d + R - 1,
                     "item %zu started while %zu was held up (d=%zu)",
                     (size_t)atomic_load(&c.max_started), c.slow, d);
        cr_assert_eq(c.seen.holdup_index, c.slow);
    }
    cr_assert_geq(c.seen.holdup_seconds, 0.1, "holdup %.3f s",
                  c.seen.holdup_seconds);
    cr_assert_lt(c.seen.holdup_seconds, 30.0);
    got_free(&r);
    gen_free(&c.g);
    destroy_all(c.s, pool);
}

/* ------------------------------------------------------------------------ */
/* Producer errors                                                          */
/* ------------------------------------------------------------------------ */

struct prod_case {
    size_t threads;
    unsigned flags;
};

ParameterizedTestParameters(stream, producer_error_ends_after_earlier_items)
{
    static struct prod_case cases[] = {
        {1, 0}, {4, 0}, {1, PARMAP_UNORDERED}, {4, PARMAP_UNORDERED}};
    return cr_make_param_array(struct prod_case, cases,
                               sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct prod_case *c, stream,
                  producer_error_ends_after_earlier_items)
{
    const size_t n = 100, fail_at = 37;
    parmap_pool *pool = make_pool(c->threads);
    struct gen g;
    gen_init(&g, n);
    gen_track(&g, n);
    g.fail_at = fail_at;
    g.fail_code = -EIO;
    g.rand_sleep_us = 300;
    g.seed = pt_seed();
    parmap_opts o = {0};
    o.flags = c->flags;
    parmap_stream *s = make_stream(pool, &g, &o);
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, -EIO, "end code %d, want -EIO", r.rc);
    assert_all_once(&r, fail_at, !(c->flags & PARMAP_UNORDERED), "producer");
    for (size_t i = fail_at; i < n; i++)
        cr_assert_eq(pt_calls_get(&g.calls, i), 0, "item %zu ran", i);
    /* Asked once for the failing item, never again. */
    cr_assert_eq(atomic_load(&g.prod_calls), fail_at + 1);
    parmap_stream_item it;
    cr_assert_eq(parmap_stream_next(s, &it), -EIO, "the code is sticky");
    got_free(&r);
    gen_free(&g);
    destroy_all(s, pool);
}

Test(stream, producer_error_on_first_item_runs_nothing)
{
    parmap_pool *pool = make_pool(2);
    struct gen g;
    gen_init(&g, 10);
    g.fail_at = 0;
    g.fail_code = -42;
    parmap_stream *s = make_stream(pool, &g, NULL);
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, -42);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(atomic_load(&g.fn_calls), 0);
    got_free(&r);
    destroy_all(s, pool);
}

/* ------------------------------------------------------------------------ */
/* Stopping: fail-fast, halt rules, cancellation, timeouts                  */
/* ------------------------------------------------------------------------ */

/* Checks a stopped stream's deliveries: contiguous indices from 0 in input
 * order, items that never ran marked `not_run` with 0 attempts, the rest
 * with the status their callback returned. */
static void assert_stopped_well(const struct got *r, struct gen *g,
                                int not_run, int ordered, size_t *ran,
                                size_t *skipped)
{
    *ran = *skipped = 0;
    for (size_t k = 0; k < r->n; k++) {
        size_t i = r->index[k];
        if (ordered)
            cr_assert_eq(i, k, "position %zu holds %zu", k, i);
        unsigned calls = pt_calls_get(&g->calls, i);
        if (r->status[k] == not_run && r->attempts[k] == 0) {
            cr_assert_eq(calls, 0, "item %zu reported not run but ran", i);
            (*skipped)++;
        } else {
            cr_assert_eq(calls, r->attempts[k], "item %zu: %u calls, %u "
                         "attempts", i, calls, r->attempts[k]);
            cr_assert_eq(r->attempts[k], 1);
            int want = g->code != NULL ? g->code(g, i, 1) : 0;
            cr_assert_eq(r->status[k], want, "item %zu status %d want %d", i,
                         r->status[k], want);
            (*ran)++;
        }
    }
    cr_assert_eq(r->bad_out, 0);
    cr_assert_eq(r->bad_in, 0);
    /* Every item taken from the producer was delivered; nothing else ran. */
    cr_assert_eq(r->n, atomic_load(&g->prod_items));
    cr_assert_eq(pt_calls_total(&g->calls), *ran);
}

static int fail_at_10(struct gen *g, size_t i, unsigned attempt)
{
    (void)g;
    (void)attempt;
    return i == 10 ? -42 : 0;
}

ParameterizedTestParameters(stream, fail_fast_stops_at_first_failure)
{
    static struct prod_case cases[] = {
        {1, 0}, {4, 0}, {4, PARMAP_UNORDERED}};
    return cr_make_param_array(struct prod_case, cases,
                               sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct prod_case *c, stream, fail_fast_stops_at_first_failure)
{
    const size_t n = 100000;
    parmap_pool *pool = make_pool(c->threads);
    struct gen g;
    gen_init(&g, n);
    gen_track(&g, n);
    g.code = fail_at_10;
    g.sleep_us = 200;
    parmap_opts o = {0};
    o.flags = PARMAP_FAIL_FAST | c->flags;
    o.prefetch = 6;
    parmap_stream *s = make_stream(pool, &g, &o);
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, -42, "end code %d", r.rc);
    size_t ran, skipped;
    assert_stopped_well(&r, &g, PARMAP_ENOTRUN,
                        !(c->flags & PARMAP_UNORDERED), &ran, &skipped);
    cr_assert_lt(r.n, 100, "%zu items were taken after the failure", r.n);
    /* The failure itself was delivered. */
    int found = 0;
    for (size_t k = 0; k < r.n; k++)
        found |= r.index[k] == 10 && r.status[k] == -42;
    cr_assert(found, "item 10 was not delivered with its failure");
    parmap_stream_item it;
    cr_assert_eq(parmap_stream_next(s, &it), -42, "the code is sticky");
    got_free(&r);
    gen_free(&g);
    destroy_all(s, pool);
}

static int fail_odd(struct gen *g, size_t i, unsigned attempt)
{
    (void)g;
    (void)attempt;
    return i % 2 == 1 ? -(int)(100 + i) : 0;
}

Test(stream, halt_on_successes_returns_ehalted)
{
    parmap_pool *pool = make_pool(3);
    struct gen g;
    gen_init(&g, SIZE_MAX);
    gen_track(&g, 100000);
    g.sleep_us = 300;
    parmap_opts o = {0};
    o.halt.when = PARMAP_HALT_SOON;
    o.halt.on = PARMAP_HALT_ON_SUCCESS;
    o.halt.count = 20;
    parmap_stream *s = make_stream(pool, &g, &o);
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, PARMAP_EHALTED, "end code %d", r.rc);
    size_t ran, skipped;
    assert_stopped_well(&r, &g, PARMAP_ENOTRUN, 1, &ran, &skipped);
    cr_assert_geq(ran, 20);
    cr_assert_lt(ran, 20 + 3 + 1, "%zu ran: more than the running ones "
                 "finished after the halt", ran);
    got_free(&r);
    gen_free(&g);
    destroy_all(s, pool);
}

Test(stream, halt_on_failure_percent_returns_the_failure)
{
    parmap_pool *pool = make_pool(2);
    struct gen g;
    gen_init(&g, 10000);
    gen_track(&g, 10000);
    g.code = fail_odd;
    parmap_opts o = {0};
    o.halt.when = PARMAP_HALT_SOON;
    o.halt.on = PARMAP_HALT_ON_FAIL;
    o.halt.percent = 40.0;
    o.max_concurrency = 1; /* deterministic: items finish in order */
    parmap_stream *s = make_stream(pool, &g, &o);
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    /* Item 0 succeeds (0 %), item 1 fails (50 % of those finished). */
    cr_assert_eq(r.rc, -101, "end code %d", r.rc);
    size_t ran, skipped;
    assert_stopped_well(&r, &g, PARMAP_ENOTRUN, 1, &ran, &skipped);
    cr_assert_eq(ran, 2);
    got_free(&r);
    gen_free(&g);
    destroy_all(s, pool);
}

/* Item 0 fails once items 1 to 3 have started (or after 5 s); those poll
 * parmap_should_stop() for up to 5 s and record what they saw. */
struct now_ctx {
    struct gen g;
    atomic_size_t started;
    atomic_int saw[4];
};

static int now_fn(void *ctx, size_t i, const void *in, void *out)
{
    struct now_ctx *c = ctx;
    int rc = gen_fn(&c->g, i, in, out);
    if (i == 0) {
        pt_wait_atleast(&c->started, 3, 5.0);
        return -7;
    }
    atomic_fetch_add(&c->started, 1);
    double t0 = pt_now();
    while (pt_now() - t0 < 5.0) {
        int st = parmap_should_stop();
        if (st != 0) {
            atomic_store(&c->saw[i], st);
            return st;
        }
        pt_sleep_us(500);
    }
    return rc;
}

Test(stream, halt_now_asks_running_items_to_stop)
{
    parmap_pool *pool = make_pool(4);
    struct now_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.started, 0);
    gen_init(&c.g, 4);
    gen_track(&c.g, 4);
    parmap_opts o = {0};
    o.halt.when = PARMAP_HALT_NOW;
    o.halt.on = PARMAP_HALT_ON_FAIL;
    o.halt.count = 1;
    o.prefetch = 4;
    parmap_stream *s = NULL;
    cr_assert_eq(parmap_stream_create(&s, pool, gen_produce, &c.g,
                                      sizeof(uint64_t), now_fn, &c,
                                      sizeof(uint64_t), &o),
                 0);
    double t0 = pt_now();
    struct got r = {0};
    consume(s, &c.g, &r, SIZE_MAX);
    double dt = pt_now() - t0;
    cr_assert_eq(r.rc, -7, "end code %d", r.rc);
    cr_assert_lt(dt, 2.0, "running items were not asked to stop (%.2f s)",
                 dt);
    cr_assert_eq(r.n, 4);
    for (size_t k = 0; k < r.n; k++) {
        size_t i = r.index[k];
        cr_assert_eq(i, k);
        if (i == 0) {
            cr_assert_eq(r.status[k], -7);
        } else {
            /* Running when the halt came: asked to stop, and said so. */
            cr_assert_eq(r.attempts[k], 1);
            cr_assert_eq(r.status[k], PARMAP_ECANCELED, "item %zu: %d", i,
                         r.status[k]);
            cr_assert_eq(atomic_load(&c.saw[i]), PARMAP_ECANCELED);
        }
    }
    got_free(&r);
    gen_free(&c.g);
    destroy_all(s, pool);
}

struct cancel_ctx {
    struct gen g;
    parmap_cancel *cancel;
    size_t at; /* the callback of this index triggers the token */
};

static int cancel_fn(void *ctx, size_t i, const void *in, void *out)
{
    struct cancel_ctx *c = ctx;
    if (i == c->at)
        parmap_cancel_trigger(c->cancel);
    return gen_fn(&c->g, i, in, out);
}

ParameterizedTestParameters(stream, cancel_token_stops_the_stream)
{
    static struct prod_case cases[] = {
        {1, 0}, {4, 0}, {4, PARMAP_UNORDERED}};
    return cr_make_param_array(struct prod_case, cases,
                               sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct prod_case *c, stream, cancel_token_stops_the_stream)
{
    parmap_pool *pool = make_pool(c->threads);
    struct cancel_ctx cc;
    memset(&cc, 0, sizeof cc);
    gen_init(&cc.g, SIZE_MAX); /* endless: only the cancel ends it */
    gen_track(&cc.g, 1000000);
    cc.g.sleep_us = 1000;
    cc.at = 30;
    cr_assert_eq(parmap_cancel_create(&cc.cancel), 0);
    parmap_opts o = {0};
    o.flags = c->flags;
    o.cancel = cc.cancel;
    o.prefetch = 5;
    parmap_stream *s = NULL;
    cr_assert_eq(parmap_stream_create(&s, pool, gen_produce, &cc.g,
                                      sizeof(uint64_t), cancel_fn, &cc,
                                      sizeof(uint64_t), &o),
                 0);
    struct got r = {0};
    consume(s, &cc.g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, PARMAP_ECANCELED, "end code %d", r.rc);
    size_t ran, skipped;
    assert_stopped_well(&r, &cc.g, PARMAP_ENOTRUN,
                        !(c->flags & PARMAP_UNORDERED), &ran, &skipped);
    cr_assert_geq(ran, 31);
    cr_assert_lt(r.n, 31 + 4 + 5 + 8 + 1);
    parmap_stream_item it;
    cr_assert_eq(parmap_stream_next(s, &it), PARMAP_ECANCELED);
    got_free(&r);
    gen_free(&cc.g);
    destroy_all(s, pool);
    parmap_cancel_destroy(cc.cancel);
}

/* A token triggered before the first next(): nothing runs at all. */
Test(stream, cancel_before_first_next_runs_nothing)
{
    parmap_pool *pool = make_pool(4);
    struct gen g;
    gen_init(&g, 100);
    parmap_cancel *cancel;
    cr_assert_eq(parmap_cancel_create(&cancel), 0);
    parmap_cancel_trigger(cancel);
    parmap_opts o = {0};
    o.cancel = cancel;
    parmap_stream *s = make_stream(pool, &g, &o);
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, PARMAP_ECANCELED);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(atomic_load(&g.prod_calls), 0);
    cr_assert_eq(atomic_load(&g.fn_calls), 0);
    destroy_all(s, pool);
    parmap_cancel_destroy(cancel);
}

struct limit_case {
    size_t threads;
    size_t limit;
    unsigned flags;
};

ParameterizedTestParameters(stream, timeout_reports_unstarted_items)
{
    static struct limit_case cases[] = {
        {1, 0, 0}, {4, 2, 0}, {4, 2, PARMAP_UNORDERED}};
    return cr_make_param_array(struct limit_case, cases,
                               sizeof cases / sizeof cases[0]);
}

/* With spare threads (limit 2 on a pool of 4) the prefetch is full when
 * the deadline passes, so some items were taken and never started; on a
 * pool of one the consumer produces each item just before running it, so
 * there may be none. */
ParameterizedTest(struct limit_case *c, stream,
                  timeout_reports_unstarted_items)
{
    parmap_pool *pool = make_pool(c->threads);
    struct gen g;
    gen_init(&g, SIZE_MAX);
    gen_track(&g, 1000000);
    g.sleep_us = 5000;
    parmap_opts o = {0};
    o.flags = c->flags;
    o.max_concurrency = c->limit;
    o.timeout = 0.15;
    o.prefetch = 6;
    parmap_stream *s = make_stream(pool, &g, &o);
    pt_sleep_us(200000); /* the clock starts at the first next() */
    double t0 = pt_now();
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    double dt = pt_now() - t0;
    cr_assert_eq(r.rc, PARMAP_ETIMEDOUT, "end code %d", r.rc);
    size_t ran, skipped;
    assert_stopped_well(&r, &g, PARMAP_ETIMEDOUT,
                        !(c->flags & PARMAP_UNORDERED), &ran, &skipped);
    cr_assert_gt(ran, 0, "nothing ran before the deadline");
    if (c->threads > 1)
        cr_assert(skipped >= 1 && skipped <= 6, "%zu items reported as "
                  "timed out, want 1 to 6 (the prefetch)", skipped);
    cr_assert_geq(dt, 0.14, "ended after %.3f s", dt);
    cr_assert_lt(dt, 1.0, "ended after %.3f s", dt);
    parmap_stream_item it;
    cr_assert_eq(parmap_stream_next(s, &it), PARMAP_ETIMEDOUT);
    got_free(&r);
    gen_free(&g);
    destroy_all(s, pool);
}

static int poll_until_stopped(void *ctx, size_t i, const void *in, void *out)
{
    struct gen *g = ctx;
    int rc = gen_fn(g, i, in, out);
    double t0 = pt_now();
    while (pt_now() - t0 < 5.0) {
        int st = parmap_should_stop();
        if (st != 0)
            return st;
        pt_sleep_us(1000);
    }
    return rc;
}

Test(stream, item_timeout_is_seen_by_running_callbacks)
{
    parmap_pool *pool = make_pool(2);
    struct gen g;
    gen_init(&g, 3);
    gen_track(&g, 3);
    parmap_opts o = {0};
    o.item_timeout = 0.05;
    parmap_stream *s = NULL;
    cr_assert_eq(parmap_stream_create(&s, pool, gen_produce, &g,
                                      sizeof(uint64_t), poll_until_stopped,
                                      &g, sizeof(uint64_t), &o),
                 0);
    double t0 = pt_now();
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    double dt = pt_now() - t0;
    cr_assert_eq(r.rc, 0, "the stream itself did not stop: %d", r.rc);
    cr_assert_eq(r.n, 3);
    for (size_t k = 0; k < 3; k++)
        cr_assert_eq(r.status[k], PARMAP_ETIMEDOUT);
    cr_assert_lt(dt, 2.0, "took %.2f s", dt);
    got_free(&r);
    gen_free(&g);
    destroy_all(s, pool);
}

/* ------------------------------------------------------------------------ */
/* Retries                                                                  */
/* ------------------------------------------------------------------------ */

struct retry_ctx {
    struct gen g;
    double t_end[16][4]; /* when attempt a of item i returned */
    double t_start[16][4];
};

/* Items fail with -EAGAIN on their first two attempts; item 5 fails with
 * -EIO every time; item 6 fails with -EAGAIN every time. */
static int retry_fn(void *ctx, size_t i, const void *in, void *out)
{
    struct retry_ctx *c = ctx;
    double t = pt_now();
    unsigned a = pt_calls_get(&c->g.calls, i) + 1;
    int rc = gen_fn(&c->g, i, in, out);
    if (a <= 4)
        c->t_start[i][a - 1] = t;
    if (i == 5)
        rc = -EIO;
    else if (i == 6 || a <= 2)
        rc = -EAGAIN;
    if (a <= 4)
        c->t_end[i][a - 1] = pt_now();
    return rc;
}

static int retry_eagain_only(void *ctx, size_t index, int err,
                             unsigned attempt)
{
    (void)ctx;
    (void)index;
    (void)attempt;
    return err == -EAGAIN;
}

ParameterizedTestParameters(stream, retries_back_off_exponentially)
{
    static struct prod_case cases[] = {
        {1, 0}, {4, 0}, {4, PARMAP_UNORDERED}};
    return cr_make_param_array(struct prod_case, cases,
                               sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct prod_case *c, stream, retries_back_off_exponentially)
{
    const size_t n = 10;
    parmap_pool *pool = make_pool(c->threads);
    struct retry_ctx rc_;
    memset(&rc_, 0, sizeof rc_);
    gen_init(&rc_.g, n);
    gen_track(&rc_.g, n);
    parmap_opts o = {0};
    o.flags = c->flags;
    o.retries = 3;
    o.retry_delay = 0.04;
    o.retry_delay_max = 0.06;
    o.retry_if = retry_eagain_only;
    parmap_stream *s = NULL;
    cr_assert_eq(parmap_stream_create(&s, pool, gen_produce, &rc_.g,
                                      sizeof(uint64_t), retry_fn, &rc_,
                                      sizeof(uint64_t), &o),
                 0);
    struct got r = {0};
    consume(s, &rc_.g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.n, n);
    for (size_t k = 0; k < n; k++) {
        size_t i = r.index[k];
        if (!(c->flags & PARMAP_UNORDERED))
            cr_assert_eq(i, k);
        unsigned calls = pt_calls_get(&rc_.g.calls, i);
        cr_assert_eq(r.attempts[k], calls, "item %zu", i);
        if (i == 5) {
            /* Not retried: retry_if refuses -EIO. */
            cr_assert_eq(r.status[k], -EIO);
            cr_assert_eq(calls, 1);
        } else if (i == 6) {
            /* Retried until the attempts ran out. */
            cr_assert_eq(r.status[k], -EAGAIN);
            cr_assert_eq(calls, 4);
        } else {
            cr_assert_eq(r.status[k], 0, "item %zu status %d", i,
                         r.status[k]);
            cr_assert_eq(calls, 3);
            cr_assert_eq(r.bad_out, 0);
        }
        if (i != 5) {
            /* Delays: 0.04 s, then 0.08 capped at 0.06, then 0.06. */
            double d1 = rc_.t_start[i][1] - rc_.t_end[i][0];
            double d2 = rc_.t_start[i][2] - rc_.t_end[i][1];
            cr_assert_geq(d1, 0.039, "item %zu: first delay %.4f", i, d1);
            cr_assert_geq(d2, 0.059, "item %zu: second delay %.4f", i, d2);
            cr_assert_lt(d2, 0.079 + 0.5, "item %zu: cap ignored (%.4f)", i,
                         d2);
        }
    }
    got_free(&r);
    gen_free(&rc_.g);
    destroy_all(s, pool);
}

/* A waiting retry holds no thread: with one callback at a time, the items
 * behind a failed item run while it waits for its retry. */
static int first_fails_once(struct gen *g, size_t i, unsigned attempt)
{
    (void)g;
    return i == 0 && attempt == 1 ? -EAGAIN : 0;
}

Test(stream, waiting_retry_holds_no_thread)
{
    const size_t n = 6;
    parmap_pool *pool = make_pool(2);
    struct gen g;
    gen_init(&g, n);
    gen_track(&g, n);
    g.code = first_fails_once;
    g.sleep_us = 2000;
    parmap_opts o = {0};
    o.flags = PARMAP_UNORDERED;
    o.max_concurrency = 1;
    o.retries = 1;
    o.retry_delay = 0.3;
    parmap_stream *s = make_stream(pool, &g, &o);
    struct got r = {0};
    double t0 = pt_now();
    consume(s, &g, &r, SIZE_MAX);
    double dt = pt_now() - t0;
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.n, n);
    for (size_t k = 0; k + 1 < n; k++)
        cr_assert_eq(r.index[k], k + 1, "position %zu holds %zu", k,
                     r.index[k]);
    cr_assert_eq(r.index[n - 1], 0);
    cr_assert_eq(r.status[n - 1], 0);
    cr_assert_eq(r.attempts[n - 1], 2);
    cr_assert_geq(dt, 0.29);
    cr_assert_leq(atomic_load(&g.run_gauge.peak), 1);
    got_free(&r);
    gen_free(&g);
    destroy_all(s, pool);
}

/* A stop while a retry waits: the item keeps its last failure. */
static int always_eagain(struct gen *g, size_t i, unsigned attempt)
{
    (void)g;
    (void)attempt;
    return i == 0 ? -EAGAIN : 0;
}

Test(stream, stop_while_retry_waits_keeps_last_failure)
{
    parmap_pool *pool = make_pool(2);
    struct gen g;
    gen_init(&g, 3);
    gen_track(&g, 3);
    g.code = always_eagain;
    parmap_opts o = {0};
    o.retries = 5;
    o.retry_delay = 10.0; /* the retry would wait 10 s */
    o.timeout = 0.2;      /* but the stream stops first */
    parmap_stream *s = make_stream(pool, &g, &o);
    double t0 = pt_now();
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    double dt = pt_now() - t0;
    cr_assert_eq(r.rc, PARMAP_ETIMEDOUT, "end code %d", r.rc);
    cr_assert_lt(dt, 2.0, "the waiting retry held the stream (%.2f s)", dt);
    cr_assert_eq(r.n, 3);
    cr_assert_eq(r.index[0], 0);
    cr_assert_eq(r.status[0], -EAGAIN);
    cr_assert_eq(r.attempts[0], 1);
    cr_assert_eq(r.status[1], 0);
    cr_assert_eq(r.status[2], 0);
    got_free(&r);
    gen_free(&g);
    destroy_all(s, pool);
}

/* ------------------------------------------------------------------------ */
/* Progress                                                                 */
/* ------------------------------------------------------------------------ */

ParameterizedTestParameters(stream, progress_reports_unknown_total)
{
    static struct prod_case cases[] = {
        {1, 0}, {4, 0}, {4, PARMAP_UNORDERED}};
    return cr_make_param_array(struct prod_case, cases,
                               sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct prod_case *c, stream, progress_reports_unknown_total)
{
    const size_t n = 3000;
    parmap_pool *pool = make_pool(c->threads);
    pt_progress p;
    pt_progress_init(&p, 0); /* total must be reported as 0: unknown */
    p.sleep_us = 50;
    struct gen g;
    gen_init(&g, n);
    g.code = fail_odd;
    g.progress = &p;
    g.rand_sleep_us = 50;
    parmap_opts o = {0};
    o.flags = c->flags;
    o.progress = pt_progress_fn;
    o.progress_ctx = &p;
    parmap_stream *s = make_stream(pool, &g, &o);
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, 0, "a collecting stream ends with 0, got %d", r.rc);
    cr_assert_eq(r.n, n);
    cr_assert_gt(atomic_load(&p.calls), 1);
    cr_assert_eq(atomic_load(&p.overlaps), 0);
    cr_assert_eq(atomic_load(&p.decreasing), 0, "done went backwards");
    cr_assert_eq(atomic_load(&p.bad_total), 0, "total was not 0");
    cr_assert_eq(atomic_load(&p.ahead), 0);
    cr_assert_eq(atomic_load(&p.bad_elapsed), 0);
    /* The final call, on the consumer's thread, has the final counts. */
    cr_assert(pthread_equal(p.last_thread, pthread_self()));
    cr_assert_eq(p.last_done, n);
    cr_assert_eq(p.last_failed, n / 2);
    got_free(&r);
    destroy_all(s, pool);
}

static int stop_after_50(void *ctx, const parmap_progress *p)
{
    atomic_size_t *calls = ctx;
    atomic_fetch_add(calls, 1);
    return p->done >= 50;
}

Test(stream, progress_callback_can_cancel)
{
    parmap_pool *pool = make_pool(3);
    struct gen g;
    gen_init(&g, SIZE_MAX);
    gen_track(&g, 1000000);
    g.sleep_us = 200;
    atomic_size_t calls;
    atomic_init(&calls, 0);
    parmap_opts o = {0};
    o.progress = stop_after_50;
    o.progress_ctx = &calls;
    parmap_stream *s = make_stream(pool, &g, &o);
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, PARMAP_ECANCELED, "end code %d", r.rc);
    size_t ran, skipped;
    assert_stopped_well(&r, &g, PARMAP_ENOTRUN, 1, &ran, &skipped);
    cr_assert_geq(ran, 50);
    /* Items running when it asked, and a few whose report was skipped
     * while another thread's was under way, may still finish. */
    cr_assert_lt(ran, 50 + 10);
    got_free(&r);
    gen_free(&g);
    destroy_all(s, pool);
}

/* ------------------------------------------------------------------------ */
/* Arguments, buffers, lifecycle                                            */
/* ------------------------------------------------------------------------ */

static parmap_stream *const SENTINEL = (parmap_stream *)(uintptr_t)0x5e771e;

Test(stream, bad_arguments_return_einval)
{
    parmap_pool *pool = make_pool(2);
    struct gen g;
    gen_init(&g, 10);
    parmap_stream *s = SENTINEL;

    cr_assert_eq(parmap_stream_create(NULL, pool, gen_produce, &g, 8, gen_fn,
                                      &g, 8, NULL),
                 PARMAP_EINVAL);
    cr_assert_eq(parmap_stream_create(&s, NULL, gen_produce, &g, 8, gen_fn,
                                      &g, 8, NULL),
                 PARMAP_EINVAL);
    cr_assert_eq(parmap_stream_create(&s, pool, NULL, &g, 8, gen_fn, &g, 8,
                                      NULL),
                 PARMAP_EINVAL);
    cr_assert_eq(parmap_stream_create(&s, pool, gen_produce, &g, 8, NULL, &g,
                                      8, NULL),
                 PARMAP_EINVAL);

    parmap_opts bad[7];
    memset(bad, 0, sizeof bad);
    bad[0].timeout = -1.0;
    bad[1].item_timeout = NAN;
    bad[2].retry_delay = -0.5;
    bad[3].halt.when = (enum parmap_halt_when)7;
    bad[4].halt.percent = 150.0;
    bad[5].progress_interval = -1.0;
    bad[6].halt.on = (enum parmap_halt_on)9;
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        cr_assert_eq(parmap_stream_create(&s, pool, gen_produce, &g, 8,
                                          gen_fn, &g, 8, &bad[k]),
                     PARMAP_EINVAL, "bad option %zu accepted", k);
    cr_assert_eq(s, SENTINEL, "the out-pointer was written on failure");
    cr_assert_eq(atomic_load(&g.prod_calls), 0);

    s = make_stream(pool, &g, NULL);
    parmap_stream_item it;
    parmap_stream_stats st;
    cr_assert_eq(parmap_stream_next(NULL, &it), PARMAP_EINVAL);
    cr_assert_eq(parmap_stream_next(s, NULL), PARMAP_EINVAL);
    cr_assert_eq(parmap_stream_inspect(NULL, &st), PARMAP_EINVAL);
    cr_assert_eq(parmap_stream_inspect(s, NULL), PARMAP_EINVAL);
    cr_assert_eq(parmap_stream_destroy(NULL), 0);
    cr_assert_eq(atomic_load(&g.prod_calls), 0);
    destroy_all(s, pool);
}

Test(stream, fault_injection_in_create_returns_enomem_and_frees)
{
    parmap_pool *pool = make_pool(3);
    struct gen g;
    gen_init(&g, 50);
    gen_track(&g, 50);
    long k;
    for (k = 0; k < 1000; k++) {
        parmap_stream *s = SENTINEL;
        parmap__fault_arm(k);
        int rc = parmap_stream_create(&s, pool, gen_produce, &g, 8, gen_fn,
                                      &g, 8, NULL);
        int fired = parmap__fault_fired();
        parmap__fault_arm(-1);
        if (!fired) {
            cr_assert_eq(rc, 0, "no fault, but create returned %d", rc);
            struct got r = {0};
            consume(s, &g, &r, SIZE_MAX);
            cr_assert_eq(r.rc, 0);
            assert_all_once(&r, 50, 1, "after faults");
            got_free(&r);
            cr_assert_eq(parmap_stream_destroy(s), 0);
            break;
        }
        cr_assert_eq(rc, PARMAP_ENOMEM, "fault %ld: create returned %d", k,
                     rc);
        cr_assert_eq(s, SENTINEL, "fault %ld: out-pointer written", k);
        cr_assert_eq(atomic_load(&g.prod_calls), 0);
    }
    cr_assert_geq(k, 3, "create should have at least 3 fault sites, saw %ld",
                  k);
    /* The pool counts no stream left behind. */
    gen_free(&g);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(stream, impossible_window_returns_enomem)
{
    parmap_pool *pool = make_pool(2);
    struct gen g;
    gen_init(&g, 10);
    parmap_stream *s = SENTINEL;
    parmap_opts o = {0};
    o.prefetch = SIZE_MAX / 2;
    cr_assert_eq(parmap_stream_create(&s, pool, gen_produce, &g, 8, gen_fn,
                                      &g, 8, &o),
                 PARMAP_ENOMEM);
    o.prefetch = 1;
    cr_assert_eq(parmap_stream_create(&s, pool, gen_produce, &g,
                                      SIZE_MAX / 4, gen_fn, &g, 8, &o),
                 PARMAP_ENOMEM);
    cr_assert_eq(s, SENTINEL);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(stream, no_callback_runs_before_first_next)
{
    parmap_pool *pool = make_pool(4);
    struct gen g;
    gen_init(&g, 20);
    parmap_stream *s = make_stream(pool, &g, NULL);
    pt_sleep_us(100000);
    cr_assert_eq(atomic_load(&g.prod_calls), 0, "the producer ran early");
    cr_assert_eq(atomic_load(&g.fn_calls), 0, "a callback ran early");
    parmap_stream_stats st;
    cr_assert_eq(parmap_stream_inspect(s, &st), 0);
    cr_assert_eq(st.produced + st.waiting + st.running + st.held +
                     st.delivered,
                 0);
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    assert_all_once(&r, 20, 1, "after a pause");
    got_free(&r);
    destroy_all(s, pool);
}

Test(stream, destroy_before_first_next_runs_nothing)
{
    parmap_pool *pool = make_pool(4);
    struct gen g;
    gen_init(&g, 20);
    parmap_stream *s = make_stream(pool, &g, NULL);
    cr_assert_eq(parmap_stream_destroy(s), 0);
    cr_assert_eq(atomic_load(&g.prod_calls), 0);
    cr_assert_eq(atomic_load(&g.fn_calls), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(stream, pool_destroy_refuses_while_a_stream_lives)
{
    parmap_pool *pool = make_pool(3);
    struct gen g;
    gen_init(&g, 5);
    parmap_stream *s = make_stream(pool, &g, NULL);
    cr_assert_eq(parmap_pool_destroy(pool), PARMAP_EBUSY);
    struct got r = {0};
    consume(s, &g, &r, SIZE_MAX);
    cr_assert_eq(r.n, 5);
    cr_assert_eq(parmap_pool_destroy(pool), PARMAP_EBUSY);
    got_free(&r);
    destroy_all(s, pool);
}

/* Sizes that are not multiples of anything: in and out buffers are
 * separate, aligned, and round-trip their bytes; size 0 gives NULL. */
struct bytes_ctx {
    size_t in_size, out_size;
    atomic_size_t bad;
};

static int bytes_produce(void *ctx, size_t i, void *in)
{
    struct bytes_ctx *c = ctx;
    if (i >= 300)
        return 0;
    if ((in == NULL) != (c->in_size == 0) ||
        (uintptr_t)in % _Alignof(max_align_t) != 0)
        atomic_fetch_add(&c->bad, 1);
    for (size_t b = 0; b < c->in_size; b++)
        ((unsigned char *)in)[b] = (unsigned char)(i * 7 + b);
    return 1;
}

static int bytes_fn(void *ctx, size_t i, const void *in, void *out)
{
    struct bytes_ctx *c = ctx;
    if ((in == NULL) != (c->in_size == 0) ||
        (out == NULL) != (c->out_size == 0) ||
        (uintptr_t)out % _Alignof(max_align_t) != 0)
        atomic_fetch_add(&c->bad, 1);
    for (size_t b = 0; b < c->in_size; b++)
        if (((const unsigned char *)in)[b] != (unsigned char)(i * 7 + b))
            atomic_fetch_add(&c->bad, 1);
    for (size_t b = 0; b < c->out_size; b++)
        ((unsigned char *)out)[b] = (unsigned char)(i * 13 + b);
    return 0;
}

Test(stream, odd_and_zero_sizes_round_trip)
{
    static const size_t sizes[][2] = {{3, 5}, {0, 0}, {0, 17}, {33, 0},
                                      {1, 1}, {100, 200}};
    parmap_pool *pool = make_pool(3);
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        struct bytes_ctx c;
        c.in_size = sizes[z][0];
        c.out_size = sizes[z][1];
        atomic_init(&c.bad, 0);
        parmap_stream *s = NULL;
        cr_assert_eq(parmap_stream_create(&s, pool, bytes_produce, &c,
                                          c.in_size, bytes_fn, &c,
                                          c.out_size, NULL),
                     0);
        parmap_stream_item it;
        size_t k = 0, bad = 0;
        int rc;
        while ((rc = parmap_stream_next(s, &it)) == 1) {
            bad += it.index != k;
            bad += (it.in == NULL) != (c.in_size == 0);
            bad += (it.out == NULL) != (c.out_size == 0);
            for (size_t b = 0; b < c.in_size; b++)
                bad += ((const unsigned char *)it.in)[b] !=
                       (unsigned char)(k * 7 + b);
            for (size_t b = 0; b < c.out_size; b++)
                bad += ((unsigned char *)it.out)[b] !=
                       (unsigned char)(k * 13 + b);
            k++;
        }
        cr_assert_eq(rc, 0);
        cr_assert_eq(k, 300);
        cr_assert_eq(bad, 0, "sizes %zu/%zu: %zu bad bytes", c.in_size,
                     c.out_size, bad);
        cr_assert_eq(atomic_load(&c.bad), 0, "sizes %zu/%zu: callbacks saw "
                     "bad buffers", c.in_size, c.out_size);
        cr_assert_eq(parmap_stream_destroy(s), 0);
    }
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* Destroy while callbacks run: it waits for them, and nothing runs
 * afterwards. */
Test(stream, destroy_mid_stream_waits_for_running_items)
{
    parmap_pool *pool = make_pool(4);
    struct gen g;
    gen_init(&g, SIZE_MAX);
    gen_track(&g, 1000000);
    g.sleep_us = 30000;
    parmap_opts o = {0};
    o.max_concurrency = 3;
    parmap_stream *s = make_stream(pool, &g, &o);
    struct got r = {0};
    consume(s, &g, &r, 7);
    cr_assert_eq(r.rc, 1);
    /* Items are running now (the stream keeps 3 going). */
    cr_assert(pt_wait_atleast(&g.run_gauge.cur, 1, 5.0));
    cr_assert_eq(parmap_stream_destroy(s), 0);
    cr_assert_eq(atomic_load(&g.run_gauge.cur), 0,
                 "a callback still runs after destroy returned");
    size_t calls = atomic_load(&g.fn_calls);
    size_t prods = atomic_load(&g.prod_calls);
    pt_sleep_us(100000);
    cr_assert_eq(atomic_load(&g.fn_calls), calls, "a callback ran after "
                 "destroy");
    cr_assert_eq(atomic_load(&g.prod_calls), prods);
    /* The pool is free again. */
    got_free(&r);
    gen_free(&g);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* destroy from inside the stream's own callbacks is refused. */
struct self_ctx {
    struct gen g;
    parmap_stream *s;
    atomic_int fn_rc, prod_rc;
    atomic_int fn_tried, prod_tried;
};

static int self_fn(void *ctx, size_t i, const void *in, void *out)
{
    struct self_ctx *c = ctx;
    if (i == 3) {
        atomic_store(&c->fn_rc, parmap_stream_destroy(c->s));
        atomic_store(&c->fn_tried, 1);
    }
    return gen_fn(&c->g, i, in, out);
}

static int self_produce(void *ctx, size_t i, void *in)
{
    struct self_ctx *c = ctx;
    if (i == 5) {
        atomic_store(&c->prod_rc, parmap_stream_destroy(c->s));
        atomic_store(&c->prod_tried, 1);
    }
    return gen_produce(&c->g, i, in);
}

ParameterizedTestParameters(stream, destroy_from_own_callback_is_ebusy)
{
    static size_t threads[] = {1, 2, 4};
    return cr_make_param_array(size_t, threads,
                               sizeof threads / sizeof threads[0]);
}

ParameterizedTest(size_t *threads, stream, destroy_from_own_callback_is_ebusy)
{
    parmap_pool *pool = make_pool(*threads);
    struct self_ctx c;
    memset(&c, 0, sizeof c);
    gen_init(&c.g, 20);
    gen_track(&c.g, 20);
    cr_assert_eq(parmap_stream_create(&c.s, pool, self_produce, &c,
                                      sizeof(uint64_t), self_fn, &c,
                                      sizeof(uint64_t), NULL),
                 0);
    struct got r = {0};
    consume(c.s, &c.g, &r, SIZE_MAX);
    cr_assert_eq(r.rc, 0);
    assert_all_once(&r, 20, 1, "self destroy");
    cr_assert_eq(atomic_load(&c.fn_tried), 1);
    cr_assert_eq(atomic_load(&c.prod_tried), 1);
    cr_assert_eq(atomic_load(&c.fn_rc), PARMAP_EBUSY);
    cr_assert_eq(atomic_load(&c.prod_rc), PARMAP_EBUSY);
    got_free(&r);
    gen_free(&c.g);
    destroy_all(c.s, pool);
}

/* Two streams on one pool, consumed in turn by one thread, plus a nested
 * map inside the callbacks: no deadlock, every result right. */
struct nest_ctx {
    struct gen g;
    parmap_pool *pool;
    atomic_size_t bad;
};

static int nest_inner(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = pt_f(*(const uint64_t *)in + i);
    return 0;
}

static int nest_fn(void *ctx, size_t i, const void *in, void *out)
{
    struct nest_ctx *c = ctx;
    if (i % 5 == 0) {
        uint64_t a[16], b[16];
        for (size_t k = 0; k < 16; k++)
            a[k] = i + k;
        if (parmap_map(c->pool, 16, a, sizeof *a, b, sizeof *b, nest_inner,
                       NULL, NULL) != 0)
            atomic_fetch_add(&c->bad, 1);
        for (size_t k = 0; k < 16; k++)
            if (b[k] != pt_f(a[k] + k))
                atomic_fetch_add(&c->bad, 1);
    }
    return gen_fn(&c->g, i, in, out);
}

Test(stream, two_streams_and_nested_maps_share_a_pool)
{
    const size_t n = 500;
    parmap_pool *pool = make_pool(4);
    struct nest_ctx a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    gen_init(&a.g, n);
    gen_init(&b.g, n);
    a.pool = b.pool = pool;
    parmap_opts ou = {0};
    ou.flags = PARMAP_UNORDERED;
    parmap_stream *sa = NULL, *sb = NULL;
    cr_assert_eq(parmap_stream_create(&sa, pool, gen_produce, &a.g, 8,
                                      nest_fn, &a, 8, NULL),
                 0);
    cr_assert_eq(parmap_stream_create(&sb, pool, gen_produce, &b.g, 8,
                                      nest_fn, &b, 8, &ou),
                 0);
    struct got ra = {0}, rb = {0};
    while (ra.rc == 0 || rb.rc == 0) {
        if (ra.n < n || ra.rc == 0) {
            ra.rc = 0;
            consume(sa, &a.g, &ra, ra.n + 3);
            if (ra.rc == 1)
                ra.rc = 0;
            else if (ra.rc == 0)
                ra.rc = 2; /* ended */
        }
        if (rb.n < n || rb.rc == 0) {
            rb.rc = 0;
            consume(sb, &b.g, &rb, rb.n + 5);
            if (rb.rc == 1)
                rb.rc = 0;
            else if (rb.rc == 0)
                rb.rc = 2;
        }
    }
    cr_assert_eq(ra.rc, 2, "stream a ended with %d", ra.rc);
    cr_assert_eq(rb.rc, 2, "stream b ended with %d", rb.rc);
    assert_all_once(&ra, n, 1, "stream a");
    assert_all_once(&rb, n, 0, "stream b");
    cr_assert_eq(atomic_load(&a.bad) + atomic_load(&b.bad), 0);
    got_free(&ra);
    got_free(&rb);
    cr_assert_eq(parmap_stream_destroy(sa), 0);
    cr_assert_eq(parmap_stream_destroy(sb), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* The item returned by next() stays intact until the next call, even while
 * the stream keeps working in the background. */
Test(stream, delivered_item_stays_valid_until_next_call)
{
    parmap_pool *pool = make_pool(4);
    struct gen g;
    gen_init(&g, 200);
    parmap_opts o = {0};
    o.prefetch = 2;
    o.reorder = 2;
    o.max_concurrency = 3;
    parmap_stream *s = make_stream(pool, &g, &o);
    parmap_stream_item it;
    size_t k = 0, bad = 0;
    while (parmap_stream_next(s, &it) == 1) {
        uint64_t in0 = *(const uint64_t *)it.in;
        uint64_t out0 = *(const uint64_t *)it.out;
        pt_sleep_us(300); /* workers run ahead meanwhile */
        bad += *(const uint64_t *)it.in != in0 ||
               *(const uint64_t *)it.out != out0 || in0 != pt_mix(k) ||
               out0 != pt_f(pt_mix(k)) || it.index != k;
        k++;
    }
    cr_assert_eq(k, 200);
    cr_assert_eq(bad, 0, "%zu items changed under the consumer", bad);
    destroy_all(s, pool);
}
