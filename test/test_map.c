/*
 * Tests of lib/map.c: parmap_map() gives the results of the serial loop,
 * slot by slot, whatever the thread count, size, strides, chunking,
 * failures, nesting or concurrent callers; and it rejects bad arguments
 * before running anything.
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

TestSuite(map, .timeout = 30.);

/* ------------------------------------------------------------------------ */
/* The standard callback: out = pt_f(in), checking the slot pointers        */
/* ------------------------------------------------------------------------ */

struct std_ctx {
    const uint64_t *in;
    uint64_t *out;
    pt_calls calls;
    atomic_size_t bad_ptr; /* in/out pointers not at index * size */
};

static int f_std(void *ctx, size_t i, const void *in, void *out)
{
    struct std_ctx *c = ctx;
    atomic_fetch_add(&c->calls.count[i], 1);
    if (in != (const void *)(c->in + i) || out != (void *)(c->out + i))
        atomic_fetch_add(&c->bad_ptr, 1);
    *(uint64_t *)out = pt_f(*(const uint64_t *)in);
    return 0;
}

static parmap_pool *make_pool(size_t nthreads)
{
    parmap_pool *pool = NULL;
    int rc = parmap_pool_create(&pool, nthreads, NULL);
    cr_assert_eq(rc, 0, "parmap_pool_create(%zu) = %d", nthreads, rc);
    cr_assert_eq(parmap_pool_size(pool), nthreads);
    return pool;
}

/* Runs the standard map and checks every slot against the serial loop.
 * opts may be NULL. */
static void check_std_map(parmap_pool *pool, size_t n, parmap_opts *opts)
{
    uint64_t *in = malloc((n ? n : 1) * sizeof *in);
    uint64_t *out = malloc((n ? n : 1) * sizeof *out);
    uint64_t *serial = malloc((n ? n : 1) * sizeof *serial);
    cr_assert(in && out && serial);
    for (size_t i = 0; i < n; i++) {
        in[i] = pt_mix(i * 3 + 1);
        out[i] = PT_SENTINEL;
    }
    /* The serial loop the map replaces. */
    for (size_t i = 0; i < n; i++)
        serial[i] = pt_f(in[i]);

    struct std_ctx c = {.in = in, .out = out};
    atomic_init(&c.bad_ptr, 0);
    cr_assert_eq(pt_calls_init(&c.calls, n), 0);
    int rc = parmap_map(pool, n, in, sizeof *in, out, sizeof *out, f_std, &c,
                        opts);
    cr_assert_eq(rc, 0, "n=%zu: parmap_map = %d (%s)", n, rc,
                 parmap_err_name(rc));
    size_t bad = pt_calls_first_not(&c.calls, 1);
    cr_assert_eq(bad, n, "n=%zu: index %zu called %u times", n, bad,
                 bad < n ? pt_calls_get(&c.calls, bad) : 0);
    cr_assert_eq(atomic_load(&c.bad_ptr), 0, "callbacks got wrong slots");
    for (size_t i = 0; i < n; i++)
        if (out[i] != serial[i])
            cr_assert_fail("n=%zu: out[%zu] differs from the serial loop", n,
                           i);
    pt_calls_free(&c.calls);
    free(in);
    free(out);
    free(serial);
}

/* ------------------------------------------------------------------------ */
/* Thread counts x sizes                                                    */
/* ------------------------------------------------------------------------ */

#define BIG ((size_t)-1) /* stands for pt_big_n() */

struct shape {
    size_t threads;
    size_t n;
};

ParameterizedTestParameters(map, matches_serial_loop_for_threads_and_sizes)
{
    static struct shape shapes[] = {
        {1, 0},  {1, 1},  {1, 1223},  {1, BIG},  {2, 0},  {2, 1},  {2, 1223},
        {2, BIG}, {3, 0}, {3, 1},     {3, 1223}, {3, BIG}, {8, 0},  {8, 1},
        {8, 1223}, {8, BIG}, {64, 0}, {64, 1},  {64, 1223}, {64, BIG},
    };
    return cr_make_param_array(struct shape, shapes,
                               sizeof shapes / sizeof shapes[0]);
}

ParameterizedTest(struct shape *s, map,
                  matches_serial_loop_for_threads_and_sizes)
{
    size_t n = s->n == BIG ? pt_big_n() : s->n;
    parmap_pool *pool = make_pool(s->threads);
    check_std_map(pool, n, NULL);

    /* Same again with a status array and a summary. */
    int *status = malloc((n ? n : 1) * sizeof *status);
    cr_assert_not_null(status);
    for (size_t i = 0; i < n; i++)
        status[i] = 12345;
    parmap_summary sum;
    memset(&sum, 0x5a, sizeof sum);
    parmap_opts o = {.status = status, .summary = &sum};
    check_std_map(pool, n, &o);
    for (size_t i = 0; i < n; i++)
        if (status[i] != 0)
            cr_assert_fail("status[%zu] = %d", i, status[i]);
    cr_assert_eq(sum.succeeded, n);
    cr_assert_eq(sum.failed, 0);
    cr_assert_eq(sum.not_run, 0);
    cr_assert_eq(sum.first_failed, (size_t)-1);
    cr_assert_eq(sum.first_error, 0);
    free(status);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* n == 0                                                                   */
/* ------------------------------------------------------------------------ */

struct counter {
    atomic_size_t calls;
    atomic_size_t progress_calls;
};

static int f_count(void *ctx, size_t i, const void *in, void *out)
{
    struct counter *c = ctx;
    (void)i;
    (void)in;
    (void)out;
    atomic_fetch_add(&c->calls, 1);
    return 0;
}

static int progress_count(void *ctx, const parmap_progress *p)
{
    struct counter *c = ctx;
    (void)p;
    atomic_fetch_add(&c->progress_calls, 1);
    return 0;
}

Test(map, empty_map_returns_zero_and_calls_nothing)
{
    parmap_pool *pool = make_pool(3);
    struct counter c;
    atomic_init(&c.calls, 0);
    atomic_init(&c.progress_calls, 0);
    uint64_t in[1] = {1}, out[1] = {2};
    int status[1] = {777};
    parmap_summary sum;
    memset(&sum, 0x5a, sizeof sum);
    parmap_opts o = {.status = status, .summary = &sum,
                     .progress = progress_count, .progress_ctx = &c,
                     .flags = PARMAP_FAIL_FAST};

    cr_assert_eq(parmap_map(pool, 0, in, sizeof *in, out, sizeof *out, f_count,
                            &c, &o),
                 0);
    cr_assert_eq(parmap_map(pool, 0, NULL, 0, NULL, 0, f_count, &c, NULL), 0);
    cr_assert_eq(parmap_map(pool, 0, in, sizeof *in, NULL, 0, f_count, &c, &o),
                 0);
    cr_assert_eq(atomic_load(&c.calls), 0);
    cr_assert_eq(atomic_load(&c.progress_calls), 0);
    cr_assert_eq(out[0], 2, "an empty map wrote output");
    cr_assert_eq(status[0], 777, "an empty map wrote status");
    cr_assert_eq(sum.succeeded, 0);
    cr_assert_eq(sum.failed, 0);
    cr_assert_eq(sum.not_run, 0);
    cr_assert_eq(sum.first_failed, (size_t)-1);
    cr_assert_eq(sum.first_error, 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(map, empty_map_accepts_null_pool_and_null_fn)
{
    /* The header makes a NULL pool or fn an error only "with n > 0". */
    struct counter c;
    atomic_init(&c.calls, 0);
    cr_assert_eq(parmap_map(NULL, 0, NULL, 0, NULL, 0, f_count, &c, NULL), 0);
    parmap_pool *pool = make_pool(2);
    cr_assert_eq(parmap_map(pool, 0, NULL, 0, NULL, 0, NULL, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&c.calls), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* Strides and missing arrays                                               */
/* ------------------------------------------------------------------------ */

struct rec24 {
    uint64_t a, b, c;
};

struct stride_ctx {
    const struct rec24 *in;
    uint64_t *out;
    pt_calls calls;
    atomic_size_t bad_ptr;
};

static int f_rec24(void *ctx, size_t i, const void *in, void *out)
{
    struct stride_ctx *c = ctx;
    atomic_fetch_add(&c->calls.count[i], 1);
    if (in != (const void *)(c->in + i) || out != (void *)(c->out + i))
        atomic_fetch_add(&c->bad_ptr, 1);
    const struct rec24 *r = in;
    *(uint64_t *)out = (r->a ^ r->b) + r->c;
    return 0;
}

Test(map, different_in_and_out_strides_address_the_right_slots)
{
    _Static_assert(sizeof(struct rec24) == 24, "24-byte input records");
    size_t n = 1223;
    struct rec24 *in = malloc(n * sizeof *in);
    uint64_t *out = malloc(n * sizeof *out);
    cr_assert(in && out);
    for (size_t i = 0; i < n; i++) {
        in[i] = (struct rec24){pt_mix(i), pt_mix(i + n), i * 7};
        out[i] = PT_SENTINEL;
    }
    for (size_t t = 1; t <= 8; t *= 2) {
        parmap_pool *pool = make_pool(t);
        struct stride_ctx c = {.in = in, .out = out};
        atomic_init(&c.bad_ptr, 0);
        cr_assert_eq(pt_calls_init(&c.calls, n), 0);
        cr_assert_eq(parmap_map(pool, n, in, sizeof *in, out, sizeof *out,
                                f_rec24, &c, NULL),
                     0);
        cr_assert_eq(pt_calls_first_not(&c.calls, 1), n);
        cr_assert_eq(atomic_load(&c.bad_ptr), 0);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(out[i], (in[i].a ^ in[i].b) + in[i].c, "out[%zu]", i);
        pt_calls_free(&c.calls);
        cr_assert_eq(parmap_pool_destroy(pool), 0);
    }
    free(in);
    free(out);
}

/* Odd, unaligned strides: 3-byte inputs, 5-byte outputs. */
static int f_bytes(void *ctx, size_t i, const void *in, void *out)
{
    pt_calls *calls = ctx;
    atomic_fetch_add(&calls->count[i], 1);
    const unsigned char *s = in;
    unsigned char *d = out;
    for (int k = 0; k < 5; k++)
        d[k] = (unsigned char)(s[k % 3] + k);
    return 0;
}

Test(map, odd_byte_strides_write_only_their_own_slot)
{
    size_t n = 1223;
    unsigned char *in = malloc(n * 3);
    unsigned char *out = malloc(n * 5 + 16);
    cr_assert(in && out);
    for (size_t i = 0; i < n * 3; i++)
        in[i] = (unsigned char)pt_mix(i);
    memset(out, 0xee, n * 5 + 16);
    parmap_pool *pool = make_pool(3);
    pt_calls calls;
    cr_assert_eq(pt_calls_init(&calls, n), 0);
    cr_assert_eq(parmap_map(pool, n, in, 3, out, 5, f_bytes, &calls, NULL), 0);
    cr_assert_eq(pt_calls_first_not(&calls, 1), n);
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 5; k++)
            cr_assert_eq(out[i * 5 + k], (unsigned char)(in[i * 3 + k % 3] + k),
                         "item %zu byte %d", i, k);
    for (size_t k = n * 5; k < n * 5 + 16; k++)
        cr_assert_eq(out[k], 0xee, "wrote past the last slot");
    pt_calls_free(&calls);
    free(in);
    free(out);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

struct null_ctx {
    uint64_t *result; /* where callbacks without an output array write */
    pt_calls calls;
    atomic_size_t bad_ptr;
    const uint64_t *in;
    uint64_t *out;
};

static int f_maybe_null(void *ctx, size_t i, const void *in, void *out)
{
    struct null_ctx *c = ctx;
    atomic_fetch_add(&c->calls.count[i], 1);
    const void *want_in = c->in ? (const void *)(c->in + i) : NULL;
    void *want_out = c->out ? (void *)(c->out + i) : NULL;
    if (in != want_in || out != want_out)
        atomic_fetch_add(&c->bad_ptr, 1);
    uint64_t v = pt_f(in ? *(const uint64_t *)in : i);
    if (out)
        *(uint64_t *)out = v;
    else
        c->result[i] = v;
    return 0;
}

static void check_null_arrays(int with_in, int with_out)
{
    size_t n = 1223;
    uint64_t *in = malloc(n * sizeof *in);
    uint64_t *out = malloc(n * sizeof *out);
    uint64_t *result = calloc(n, sizeof *result);
    cr_assert(in && out && result);
    for (size_t i = 0; i < n; i++) {
        in[i] = pt_mix(i + 99);
        out[i] = PT_SENTINEL;
    }
    parmap_pool *pool = make_pool(4);
    struct null_ctx c = {.result = result,
                         .in = with_in ? in : NULL,
                         .out = with_out ? out : NULL};
    atomic_init(&c.bad_ptr, 0);
    cr_assert_eq(pt_calls_init(&c.calls, n), 0);
    int rc = parmap_map(pool, n, c.in, with_in ? sizeof *in : 0, c.out,
                        with_out ? sizeof *out : 0, f_maybe_null, &c, NULL);
    cr_assert_eq(rc, 0);
    cr_assert_eq(pt_calls_first_not(&c.calls, 1), n);
    cr_assert_eq(atomic_load(&c.bad_ptr), 0,
                 "callbacks did not get NULL for a missing array");
    for (size_t i = 0; i < n; i++) {
        uint64_t want = pt_f(with_in ? in[i] : i);
        cr_assert_eq(with_out ? out[i] : result[i], want, "item %zu", i);
    }
    pt_calls_free(&c.calls);
    free(in);
    free(out);
    free(result);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(map, null_input_with_zero_size_passes_null_to_callbacks)
{
    check_null_arrays(0, 1);
}

Test(map, null_output_with_zero_size_passes_null_to_callbacks)
{
    check_null_arrays(1, 0);
}

Test(map, no_arrays_at_all_runs_every_index)
{
    check_null_arrays(0, 0);
}

/* ------------------------------------------------------------------------ */
/* Order and placement                                                      */
/* ------------------------------------------------------------------------ */

struct ooo_ctx {
    size_t n;
    long step_us;
    atomic_size_t finished;
    size_t *finish_rank; /* per index: how many items finished before it */
    pt_calls calls;
};

static int f_ooo(void *ctx, size_t i, const void *in, void *out)
{
    struct ooo_ctx *c = ctx;
    atomic_fetch_add(&c->calls.count[i], 1);
    /* Later items sleep less, so they finish first. */
    pt_sleep_us((long)(c->n - i) * c->step_us);
    *(uint64_t *)out = pt_f(*(const uint64_t *)in);
    c->finish_rank[i] = atomic_fetch_add(&c->finished, 1);
    return 0;
}

Test(map, preserves_order_when_items_finish_out_of_order)
{
    size_t n = 24;
    uint64_t in[24], out[24];
    size_t rank[24];
    for (size_t i = 0; i < n; i++) {
        in[i] = pt_mix(i + 5);
        out[i] = PT_SENTINEL;
    }
    parmap_pool *pool = make_pool(8);
    struct ooo_ctx c = {.n = n, .step_us = 4000, .finish_rank = rank};
    atomic_init(&c.finished, 0);
    cr_assert_eq(pt_calls_init(&c.calls, n), 0);
    parmap_opts o = {.chunk_size = 1};
    cr_assert_eq(parmap_map(pool, n, in, sizeof *in, out, sizeof *out, f_ooo,
                            &c, &o),
                 0);
    cr_assert_eq(pt_calls_first_not(&c.calls, 1), n);
    /* The call returned only after every callback did. */
    cr_assert_eq(atomic_load(&c.finished), n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(out[i], pt_f(in[i]), "out[%zu]", i);
    /* The scenario really finished items out of order (otherwise the test
     * would prove nothing). */
    size_t inversions = 0;
    for (size_t i = 0; i + 1 < n; i++)
        inversions += rank[i] > rank[i + 1];
    cr_assert_gt(inversions, 0, "items finished in index order");
    pt_calls_free(&c.calls);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

struct order_ctx {
    pthread_t caller;
    atomic_size_t seq;
    size_t *order;           /* order[k] = index of the k-th call */
    atomic_size_t off_caller; /* calls not on the caller's thread */
};

static int f_order(void *ctx, size_t i, const void *in, void *out)
{
    struct order_ctx *c = ctx;
    (void)in;
    if (!pthread_equal(pthread_self(), c->caller))
        atomic_fetch_add(&c->off_caller, 1);
    size_t k = atomic_fetch_add(&c->seq, 1);
    c->order[k] = i;
    *(uint64_t *)out = pt_f(i);
    return 0;
}

Test(map, pool_of_one_runs_like_the_serial_loop_on_the_caller)
{
    static const size_t chunks[] = {0, 1, 7, 1000};
    parmap_pool *pool = make_pool(1);
    size_t n = 5000;
    uint64_t *out = malloc(n * sizeof *out);
    size_t *order = malloc(n * sizeof *order);
    cr_assert(out && order);
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
        struct order_ctx c = {.caller = pthread_self(), .order = order};
        atomic_init(&c.seq, 0);
        atomic_init(&c.off_caller, 0);
        parmap_opts o = {.chunk_size = chunks[k]};
        cr_assert_eq(parmap_map(pool, n, NULL, 0, out, sizeof *out, f_order,
                                &c, &o),
                     0);
        cr_assert_eq(atomic_load(&c.seq), n);
        cr_assert_eq(atomic_load(&c.off_caller), 0,
                     "a pool of 1 ran callbacks off the caller's thread");
        /* "exactly like the serial loop": index order. */
        for (size_t i = 0; i < n; i++) {
            cr_assert_eq(order[i], i, "chunk %zu: call %zu was index %zu",
                         chunks[k], i, order[i]);
            cr_assert_eq(out[i], pt_f(i));
        }
    }
    free(out);
    free(order);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

static int f_slow_order(void *ctx, size_t i, const void *in, void *out)
{
    pt_sleep_us(300);
    return f_order(ctx, i, in, out);
}

Test(map, caller_thread_takes_part_in_its_map)
{
    parmap_pool *pool = make_pool(2);
    size_t n = 200;
    uint64_t out[200];
    size_t order[200];
    struct order_ctx c = {.caller = pthread_self(), .order = order};
    atomic_init(&c.seq, 0);
    atomic_init(&c.off_caller, 0);
    parmap_opts o = {.chunk_size = 1};
    cr_assert_eq(parmap_map(pool, n, NULL, 0, out, sizeof *out, f_slow_order,
                            &c, &o),
                 0);
    size_t on_caller = n - atomic_load(&c.off_caller);
    cr_assert_gt(on_caller, 0, "the caller ran none of 200 slow items");
    cr_assert_lt(on_caller, n, "the worker ran none of 200 slow items");
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(out[i], pt_f(i));
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* Chunk sizes                                                              */
/* ------------------------------------------------------------------------ */

Test(map, explicit_chunk_sizes_run_every_index_once)
{
    static const size_t threads[] = {1, 3, 8};
    static const size_t sizes[] = {1, 2, 1223, 10007};
    for (size_t t = 0; t < 3; t++) {
        parmap_pool *pool = make_pool(threads[t]);
        for (size_t s = 0; s < 4; s++) {
            size_t n = sizes[s];
            const size_t chunks[] = {1, 7, 1000, n + 5, n, (size_t)-1};
            for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
                parmap_opts o = {.chunk_size = chunks[k]};
                check_std_map(pool, n, &o);
            }
        }
        cr_assert_eq(parmap_pool_destroy(pool), 0);
    }
}

/* ------------------------------------------------------------------------ */
/* Failures                                                                 */
/* ------------------------------------------------------------------------ */

struct fail_ctx {
    size_t n;
    pt_calls calls;
    long sleep_us;
    /* Failure pattern: item i fails when i % every == phase (every > 0),
     * or when i == only (only < n). */
    size_t every, phase, only;
};

/* The code item i returns: both signs, never 0 or PARMAP_ENOTRUN. */
static int fail_code(const struct fail_ctx *c, size_t i)
{
    int fails = (c->every && i % c->every == c->phase) || i == c->only;
    if (!fails)
        return 0;
    return i % 2 ? -(int)(1 + i % 1000) : (int)(1 + i % 1000);
}

static int f_fail(void *ctx, size_t i, const void *in, void *out)
{
    struct fail_ctx *c = ctx;
    atomic_fetch_add(&c->calls.count[i], 1);
    if (c->sleep_us)
        pt_sleep_us(c->sleep_us);
    *(uint64_t *)out = pt_f(*(const uint64_t *)in);
    return fail_code(c, i);
}

static void fill_in(uint64_t *in, uint64_t *out, int *status, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        in[i] = pt_mix(i ^ 0xabc);
        out[i] = PT_SENTINEL;
        status[i] = 0x7eadbeef;
    }
}

static void check_collect(size_t nthreads, size_t n, size_t every,
                          size_t phase, size_t only)
{
    parmap_pool *pool = make_pool(nthreads);
    uint64_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    int *status = malloc(n * sizeof *status);
    cr_assert(in && out && status);
    fill_in(in, out, status, n);
    struct fail_ctx c = {.n = n, .every = every, .phase = phase, .only = only};
    cr_assert_eq(pt_calls_init(&c.calls, n), 0);
    parmap_summary sum;
    memset(&sum, 0x5a, sizeof sum);
    parmap_opts o = {.status = status, .summary = &sum};
    int rc = parmap_map(pool, n, in, sizeof *in, out, sizeof *out, f_fail, &c,
                        &o);

    size_t failed = 0, first = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        int want = fail_code(&c, i);
        cr_assert_eq(pt_calls_get(&c.calls, i), 1, "item %zu", i);
        cr_assert_eq(status[i], want, "status[%zu]", i);
        cr_assert_eq(out[i], pt_f(in[i]), "out[%zu]", i);
        if (want) {
            if (first == (size_t)-1)
                first = i;
            failed++;
        }
    }
    cr_assert_gt(failed, 0, "the scenario has no failures");
    cr_assert_eq(rc, PARMAP_EFAILED, "rc = %d", rc);
    cr_assert_eq(sum.failed, failed);
    cr_assert_eq(sum.succeeded, n - failed);
    cr_assert_eq(sum.not_run, 0);
    cr_assert_eq(sum.first_failed, first);
    cr_assert_eq(sum.first_error, fail_code(&c, first));

    /* Without status and summary the return value says the same. */
    pt_calls_free(&c.calls);
    cr_assert_eq(pt_calls_init(&c.calls, n), 0);
    rc = parmap_map(pool, n, in, sizeof *in, out, sizeof *out, f_fail, &c,
                    NULL);
    cr_assert_eq(rc, PARMAP_EFAILED);
    cr_assert_eq(pt_calls_first_not(&c.calls, 1), n);

    /* Summary alone. */
    pt_calls_free(&c.calls);
    cr_assert_eq(pt_calls_init(&c.calls, n), 0);
    memset(&sum, 0x5a, sizeof sum);
    parmap_opts o2 = {.summary = &sum};
    rc = parmap_map(pool, n, in, sizeof *in, out, sizeof *out, f_fail, &c, &o2);
    cr_assert_eq(rc, PARMAP_EFAILED);
    cr_assert_eq(sum.failed, failed);
    cr_assert_eq(sum.succeeded, n - failed);
    cr_assert_eq(sum.first_failed, first);
    cr_assert_eq(sum.first_error, fail_code(&c, first));

    pt_calls_free(&c.calls);
    free(in);
    free(out);
    free(status);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(map, collect_mode_reports_every_failure_and_runs_every_item)
{
    static const size_t threads[] = {1, 2, 3, 8};
    for (size_t t = 0; t < 4; t++) {
        check_collect(threads[t], 1223, 97, 5, (size_t)-1);
        check_collect(threads[t], 1223, 0, 0, 1222);   /* last item only */
        check_collect(threads[t], 1223, 0, 0, 0);      /* first item only */
        check_collect(threads[t], 1223, 1, 0, (size_t)-1); /* all fail */
    }
}

static void check_fail_fast(size_t nthreads, size_t n, size_t fail_at,
                            long sleep_us, size_t chunk)
{
    parmap_pool *pool = make_pool(nthreads);
    uint64_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    int *status = malloc(n * sizeof *status);
    cr_assert(in && out && status);
    fill_in(in, out, status, n);
    struct fail_ctx c = {.n = n, .only = fail_at, .sleep_us = sleep_us};
    cr_assert_eq(pt_calls_init(&c.calls, n), 0);
    parmap_summary sum;
    memset(&sum, 0x5a, sizeof sum);
    parmap_opts o = {.flags = PARMAP_FAIL_FAST, .status = status,
                     .summary = &sum, .chunk_size = chunk};
    int rc = parmap_map(pool, n, in, sizeof *in, out, sizeof *out, f_fail, &c,
                        &o);
    int code = fail_code(&c, fail_at);
    cr_assert_neq(code, 0);
    cr_assert_eq(rc, code, "fail-fast returned %d, the failure was %d", rc,
                 code);

    /* Snapshot the call counts, wait, and look again: nothing may start
     * after the call returned. */
    unsigned *snap = malloc(n * sizeof *snap);
    cr_assert_not_null(snap);
    for (size_t i = 0; i < n; i++)
        snap[i] = pt_calls_get(&c.calls, i);
    pt_sleep_us(20000);

    size_t ok = 0, failed = 0, notrun = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned calls = pt_calls_get(&c.calls, i);
        cr_assert_eq(calls, snap[i], "item %zu was called after return", i);
        if (status[i] == PARMAP_ENOTRUN) {
            cr_assert_eq(calls, 0, "item %zu is ENOTRUN but ran", i);
            cr_assert_eq(out[i], PT_SENTINEL, "item %zu is ENOTRUN but its "
                                              "output was written", i);
            notrun++;
            continue;
        }
        cr_assert_eq(calls, 1, "item %zu (status %d)", i, status[i]);
        cr_assert_eq(status[i], fail_code(&c, i), "status[%zu]", i);
        cr_assert_eq(out[i], pt_f(in[i]), "out[%zu]", i);
        if (status[i])
            failed++;
        else
            ok++;
    }
    cr_assert_eq(status[fail_at], code, "the failing item did not run");
    cr_assert_eq(failed, 1);
    cr_assert_eq(sum.succeeded, ok);
    cr_assert_eq(sum.failed, failed);
    cr_assert_eq(sum.not_run, notrun);
    cr_assert_eq(ok + failed + notrun, n);
    cr_assert_eq(sum.first_failed, fail_at);
    cr_assert_eq(sum.first_error, code);
    if (nthreads == 1) {
        /* One thread is the serial loop: it stops right at the failure. */
        cr_assert_eq(ok, fail_at);
        cr_assert_eq(notrun, n - fail_at - 1);
    } else if (sleep_us > 0) {
        /* Slow items and an early failure: most items cannot have
         * started before the failure was seen. */
        cr_assert_gt(notrun, n / 2, "fail-fast stopped only %zu of %zu",
                     notrun, n);
    }
    free(snap);
    pt_calls_free(&c.calls);
    free(in);
    free(out);
    free(status);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(map, fail_fast_returns_the_code_and_never_starts_the_rest)
{
    check_fail_fast(1, 1223, 100, 0, 0);
    check_fail_fast(1, 1223, 100, 0, 1000);
    check_fail_fast(2, 400, 5, 500, 1);
    check_fail_fast(3, 400, 5, 500, 0);
    check_fail_fast(8, 400, 5, 500, 1);
    check_fail_fast(8, 1223, 1222, 0, 0);
    check_fail_fast(8, 1223, 0, 0, 7);
}

Test(map, fail_fast_without_failures_runs_everything)
{
    for (size_t t = 1; t <= 8; t *= 2) {
        parmap_pool *pool = make_pool(t);
        parmap_summary sum;
        parmap_opts o = {.flags = PARMAP_FAIL_FAST, .summary = &sum};
        check_std_map(pool, 1223, &o);
        cr_assert_eq(sum.succeeded, 1223);
        cr_assert_eq(sum.not_run, 0);
        cr_assert_eq(sum.failed, 0);
        cr_assert_eq(parmap_pool_destroy(pool), 0);
    }
}

Test(map, fail_fast_with_many_failures_returns_one_of_their_codes)
{
    size_t n = 2000;
    parmap_pool *pool = make_pool(8);
    uint64_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    int *status = malloc(n * sizeof *status);
    cr_assert(in && out && status);
    for (int round = 0; round < 20; round++) {
        fill_in(in, out, status, n);
        struct fail_ctx c = {.n = n, .every = 13, .phase = 4,
                             .only = (size_t)-1};
        cr_assert_eq(pt_calls_init(&c.calls, n), 0);
        parmap_summary sum;
        parmap_opts o = {.flags = PARMAP_FAIL_FAST, .status = status,
                         .summary = &sum, .chunk_size = round % 3 ? 0 : 1};
        int rc = parmap_map(pool, n, in, sizeof *in, out, sizeof *out, f_fail,
                            &c, &o);
        int rc_is_a_failure = 0;
        size_t ok = 0, failed = 0, notrun = 0, first = (size_t)-1;
        for (size_t i = 0; i < n; i++) {
            unsigned calls = pt_calls_get(&c.calls, i);
            if (status[i] == PARMAP_ENOTRUN) {
                cr_assert_eq(calls, 0, "item %zu", i);
                notrun++;
                continue;
            }
            cr_assert_eq(calls, 1, "item %zu", i);
            cr_assert_eq(status[i], fail_code(&c, i));
            if (status[i] == 0) {
                ok++;
                continue;
            }
            if (first == (size_t)-1)
                first = i;
            failed++;
            rc_is_a_failure |= rc == status[i];
        }
        cr_assert_gt(failed, 0);
        cr_assert(rc_is_a_failure, "rc %d is no failed item's code", rc);
        cr_assert_eq(sum.succeeded, ok);
        cr_assert_eq(sum.failed, failed);
        cr_assert_eq(sum.not_run, notrun);
        cr_assert_eq(sum.first_failed, first);
        cr_assert_eq(sum.first_error, status[first]);
        pt_calls_free(&c.calls);
    }
    free(in);
    free(out);
    free(status);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(map, fail_fast_stops_items_already_handed_to_another_thread)
{
    parmap_pool *pool = make_pool(2);
    size_t chunk = 400, n = 3 * chunk;
    pt_late l;
    pt_late_init(&l, chunk, 1000, 1, NULL);
    cr_assert_eq(pt_calls_init(&l.calls, n), 0);
    int *status = malloc(n * sizeof *status);
    cr_assert_not_null(status);
    parmap_summary sum;
    parmap_opts o = {.flags = PARMAP_FAIL_FAST, .chunk_size = chunk,
                     .status = status, .summary = &sum};
    int rc = parmap_map(pool, n, NULL, 0, NULL, 0, pt_late_fn, &l, &o);
    cr_assert_eq(atomic_load(&l.wait_timeouts), 0,
                 "the second thread never took a chunk");
    cr_assert_eq(rc, -EIO);
    cr_assert_eq(atomic_load(&l.late), 0,
                 "%zu items started more than %.2f s after the failure",
                 (size_t)atomic_load(&l.late), l.grace);
    size_t ran = 0, notrun = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned calls = pt_calls_get(&l.calls, i);
        if (status[i] == PARMAP_ENOTRUN) {
            cr_assert_eq(calls, 0, "item %zu", i);
            notrun++;
        } else {
            cr_assert_eq(calls, 1, "item %zu", i);
            cr_assert_eq(status[i], i == chunk - 1 ? -EIO : 0);
            ran++;
        }
    }
    cr_assert_eq(sum.not_run, notrun);
    cr_assert_eq(sum.succeeded + sum.failed, ran);
    cr_assert_eq(sum.failed, 1);
    cr_assert_eq(sum.first_failed, chunk - 1);
    /* The held slow chunk stopped early, and the third chunk never ran. */
    cr_assert_gt(notrun, chunk + chunk / 2, "only %zu items not run", notrun);
    pt_calls_free(&l.calls);
    free(status);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* Without arrays nothing limits n: a map of SIZE_MAX items must stop on
 * its first failure without its counters or claims wrapping around. */
struct huge_ctx {
    atomic_size_t calls;
    atomic_size_t max_index;
};

static int f_huge(void *ctx, size_t i, const void *in, void *out)
{
    struct huge_ctx *c = ctx;
    (void)in;
    (void)out;
    atomic_fetch_add(&c->calls, 1);
    size_t m = atomic_load(&c->max_index);
    while (i > m && !atomic_compare_exchange_weak(&c->max_index, &m, i)) {
    }
    pt_sleep_us(50);
    return -EIO;
}

Test(map, huge_item_count_without_arrays_stops_on_fail_fast)
{
    static const size_t threads[] = {1, 4};
    static const size_t chunks[] = {0, 1, 1000};
    for (size_t t = 0; t < 2; t++)
        for (size_t k = 0; k < 3; k++) {
            parmap_pool *pool = make_pool(threads[t]);
            struct huge_ctx c;
            atomic_init(&c.calls, 0);
            atomic_init(&c.max_index, 0);
            parmap_summary sum;
            parmap_opts o = {.flags = PARMAP_FAIL_FAST, .summary = &sum,
                             .chunk_size = chunks[k]};
            int rc = parmap_map(pool, SIZE_MAX, NULL, 0, NULL, 0, f_huge, &c,
                                &o);
            size_t calls = atomic_load(&c.calls);
            cr_assert_eq(rc, -EIO);
            cr_assert_geq(calls, 1);
            cr_assert_leq(calls, 64 * threads[t] + chunks[k],
                          "pool %zu chunk %zu: %zu items ran after a "
                          "failure", threads[t], chunks[k], calls);
            cr_assert_eq(sum.failed, calls);
            cr_assert_eq(sum.succeeded, 0);
            cr_assert_eq(sum.not_run, SIZE_MAX - calls);
            /* Another thread's failure may stop item 0 before it starts,
             * so the lowest failure is only known to be one that ran. */
            cr_assert_leq(sum.first_failed, atomic_load(&c.max_index));
            cr_assert_eq(sum.first_error, -EIO);
            cr_assert_lt(atomic_load(&c.max_index), SIZE_MAX / 2);
            cr_assert_eq(parmap_pool_destroy(pool), 0);
        }
}

/* ------------------------------------------------------------------------ */
/* Nesting and concurrent callers                                           */
/* ------------------------------------------------------------------------ */

struct nest_ctx {
    parmap_pool *pool;
    size_t inner_n;
    int depth;                 /* levels of maps still to open below */
    atomic_size_t inner_bad;   /* inner maps with wrong results */
    atomic_size_t inner_calls; /* callbacks of inner maps */
};

static uint64_t nest_value(size_t i, int depth, size_t inner_n);

static int f_inner_leaf(void *ctx, size_t i, const void *in, void *out)
{
    struct nest_ctx *c = ctx;
    (void)in;
    atomic_fetch_add(&c->inner_calls, 1);
    *(uint64_t *)out = pt_f(i);
    return 0;
}

struct nest_item {
    struct nest_ctx *top;
    int depth;
};

static int f_nest(void *ctx, size_t i, const void *in, void *out);

/* Item i at a level with `depth` levels below: the xor of its inner map's
 * outputs mixed with i, or pt_f(i) at the leaves. */
static uint64_t nest_value(size_t i, int depth, size_t inner_n)
{
    if (depth == 0)
        return pt_f(i);
    uint64_t x = 0;
    for (size_t j = 0; j < inner_n; j++)
        x ^= nest_value(j, depth - 1, inner_n);
    return pt_mix(x + i);
}

static int f_nest(void *ctx, size_t i, const void *in, void *out)
{
    struct nest_item *it = ctx;
    struct nest_ctx *c = it->top;
    (void)in;
    size_t m = c->inner_n;
    uint64_t *inner = malloc(m * sizeof *inner);
    if (inner == NULL)
        return -ENOMEM;
    struct nest_item below = {c, it->depth - 1};
    int rc;
    if (it->depth - 1 == 0)
        rc = parmap_map(c->pool, m, NULL, 0, inner, sizeof *inner,
                        f_inner_leaf, c, NULL);
    else
        rc = parmap_map(c->pool, m, NULL, 0, inner, sizeof *inner, f_nest,
                        &below, NULL);
    uint64_t x = 0;
    for (size_t j = 0; j < m; j++)
        x ^= inner[j];
    free(inner);
    if (rc != 0)
        atomic_fetch_add(&c->inner_bad, 1);
    *(uint64_t *)out = pt_mix(x + i);
    return rc;
}

static void check_nested(size_t nthreads, size_t outer_n, size_t inner_n,
                         int depth)
{
    parmap_pool *pool = make_pool(nthreads);
    struct nest_ctx c = {.pool = pool, .inner_n = inner_n};
    atomic_init(&c.inner_bad, 0);
    atomic_init(&c.inner_calls, 0);
    struct nest_item top = {&c, depth};
    uint64_t *out = malloc(outer_n * sizeof *out);
    int *status = malloc(outer_n * sizeof *status);
    cr_assert(out && status);
    parmap_opts o = {.status = status};
    int rc = parmap_map(pool, outer_n, NULL, 0, out, sizeof *out, f_nest, &top,
                        &o);
    cr_assert_eq(rc, 0, "nested map returned %d", rc);
    cr_assert_eq(atomic_load(&c.inner_bad), 0);
    size_t leaves = outer_n;
    for (int d = 0; d < depth; d++)
        leaves *= inner_n;
    cr_assert_eq(atomic_load(&c.inner_calls), leaves);
    for (size_t i = 0; i < outer_n; i++) {
        cr_assert_eq(status[i], 0);
        cr_assert_eq(out[i], nest_value(i, depth, inner_n), "out[%zu]", i);
    }
    free(out);
    free(status);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(map, nested_maps_on_the_same_pool_complete_correctly)
{
    static const size_t threads[] = {1, 2, 8};
    for (size_t t = 0; t < 3; t++) {
        check_nested(threads[t], 40, 200, 1);
        check_nested(threads[t], 12, 12, 2);
        check_nested(threads[t], 1, 1223, 1);
    }
}

struct caller_arg {
    parmap_pool *pool;
    size_t id;
    long failures;
};

static void *caller_thread(void *arg)
{
    struct caller_arg *a = arg;
    a->failures = 0;
    for (size_t r = 0; r < 30; r++) {
        size_t n = 500 + (a->id * 977 + r * 131) % 3000;
        uint64_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
        struct std_ctx c = {.in = in, .out = out};
        if (!in || !out || pt_calls_init(&c.calls, n) != 0) {
            a->failures++;
            free(in);
            free(out);
            continue;
        }
        atomic_init(&c.bad_ptr, 0);
        for (size_t i = 0; i < n; i++)
            in[i] = pt_mix(i + a->id * 1000003 + r);
        parmap_opts o = {.chunk_size = r % 4 == 0 ? 1 : 0};
        int rc = parmap_map(a->pool, n, in, sizeof *in, out, sizeof *out,
                            f_std, &c, &o);
        if (rc != 0 || pt_calls_first_not(&c.calls, 1) != n ||
            atomic_load(&c.bad_ptr) != 0)
            a->failures++;
        else
            for (size_t i = 0; i < n; i++)
                if (out[i] != pt_f(in[i])) {
                    a->failures++;
                    break;
                }
        pt_calls_free(&c.calls);
        free(in);
        free(out);
    }
    return NULL;
}

static void check_concurrent_callers(size_t nthreads)
{
    enum { NCALLERS = 4 };
    parmap_pool *pool = make_pool(nthreads);
    struct caller_arg a[NCALLERS];
    pthread_t tid[NCALLERS];
    for (size_t i = 0; i < NCALLERS; i++) {
        a[i] = (struct caller_arg){pool, i, -1};
        cr_assert_eq(pthread_create(&tid[i], NULL, caller_thread, &a[i]), 0);
    }
    for (size_t i = 0; i < NCALLERS; i++)
        pthread_join(tid[i], NULL);
    for (size_t i = 0; i < NCALLERS; i++)
        cr_assert_eq(a[i].failures, 0, "pool %zu, caller %zu: %ld bad maps",
                     nthreads, i, a[i].failures);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(map, four_threads_run_maps_on_one_pool_at_once)
{
    check_concurrent_callers(1);
    check_concurrent_callers(3);
    check_concurrent_callers(8);
}

/* ------------------------------------------------------------------------ */
/* Argument errors                                                          */
/* ------------------------------------------------------------------------ */

/* Calls parmap_map with the given arguments and a progress callback, and
 * checks the code and that no callback of any kind ran. */
static void check_arg_error(int want, parmap_pool *pool, size_t n,
                            const void *in, size_t in_size, void *out,
                            size_t out_size, int with_fn, double interval,
                            const char *what)
{
    struct counter c;
    atomic_init(&c.calls, 0);
    atomic_init(&c.progress_calls, 0);
    parmap_opts o = {.progress = progress_count, .progress_ctx = &c,
                     .progress_interval = interval};
    int rc = parmap_map(pool, n, in, in_size, out, out_size,
                        with_fn ? f_count : NULL, &c, &o);
    cr_assert_eq(rc, want, "%s: got %d (%s), want %s", what, rc,
                 parmap_err_name(rc), parmap_err_name(want));
    cr_assert_eq(atomic_load(&c.calls), 0, "%s: a callback ran", what);
    cr_assert_eq(atomic_load(&c.progress_calls), 0,
                 "%s: the progress callback ran", what);
}

Test(map, bad_arguments_are_rejected_before_any_callback)
{
    parmap_pool *pool = make_pool(3);
    uint64_t in[8] = {0}, out[8] = {0};
    size_t n = 8, s = sizeof in[0];

    check_arg_error(PARMAP_EINVAL, NULL, n, in, s, out, s, 1, 0, "NULL pool");
    check_arg_error(PARMAP_EINVAL, pool, n, in, s, out, s, 0, 0, "NULL fn");
    check_arg_error(PARMAP_EINVAL, pool, n, NULL, s, out, s, 1, 0,
                    "NULL in with in_size > 0");
    check_arg_error(PARMAP_EINVAL, pool, n, in, 0, out, s, 1, 0,
                    "in with in_size 0");
    check_arg_error(PARMAP_EINVAL, pool, n, in, s, NULL, s, 1, 0,
                    "NULL out with out_size > 0");
    check_arg_error(PARMAP_EINVAL, pool, n, in, s, out, 0, 1, 0,
                    "out with out_size 0");
    check_arg_error(PARMAP_EINVAL, pool, n, in, s, out, s, 1, -1.0,
                    "negative progress_interval");
    check_arg_error(PARMAP_EINVAL, pool, n, in, s, out, s, 1, -INFINITY,
                    "-inf progress_interval");
    check_arg_error(PARMAP_EINVAL, pool, n, in, s, out, s, 1, NAN,
                    "NaN progress_interval");
    check_arg_error(PARMAP_EINVAL, pool, n, in, s, out, s, 1, -1e-9,
                    "tiny negative progress_interval");

    size_t huge = SIZE_MAX / 2 + 1;
    check_arg_error(PARMAP_EOVERFLOW, pool, huge, in, 2, NULL, 0, 1, 0,
                    "n * in_size overflows");
    check_arg_error(PARMAP_EOVERFLOW, pool, huge, NULL, 0, out, 2, 1, 0,
                    "n * out_size overflows");
    check_arg_error(PARMAP_EOVERFLOW, pool, SIZE_MAX / 24 + 1, in, 24, out, 8,
                    1, 0, "n * 24 overflows");
    check_arg_error(PARMAP_EOVERFLOW, pool, SIZE_MAX, in, 8, out, 8, 1, 0,
                    "n = SIZE_MAX");

    /* The pool is unaffected by the rejected calls. */
    check_std_map(pool, 1223, NULL);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(map, zeroed_options_behave_like_null_options)
{
    parmap_pool *pool = make_pool(3);
    parmap_opts o;
    memset(&o, 0, sizeof o);
    check_std_map(pool, 1223, &o);
    check_std_map(pool, 1223, NULL);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

static int f_page(void *ctx, size_t i, const void *in, void *out)
{
    pt_calls *calls = ctx;
    uint64_t *w = out;
    (void)in;
    atomic_fetch_add(&calls->count[i], 1);
    for (size_t k = 0; k < 4096 / sizeof(uint64_t); k++)
        w[k] = i * (4096 / sizeof(uint64_t)) + k;
    return 0;
}

Test(map, large_output_elements_land_in_their_slots)
{
    enum { W = 4096 / sizeof(uint64_t) };
    size_t n = 300;
    uint64_t(*out)[W] = malloc(n * sizeof *out);
    cr_assert_not_null(out);
    parmap_pool *pool = make_pool(4);
    pt_calls calls;
    cr_assert_eq(pt_calls_init(&calls, n), 0);
    cr_assert_eq(parmap_map(pool, n, NULL, 0, out, sizeof *out, f_page, &calls,
                            NULL),
                 0);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < W; k++)
            cr_assert_eq(out[i][k], i * W + k, "item %zu word %zu", i, k);
    cr_assert_eq(pt_calls_first_not(&calls, 1), n);
    pt_calls_free(&calls);
    free(out);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}
