/*
 * libFuzzer harness: the input bytes are a program of API calls.
 *
 * Each input creates up to three pools of 1 to 8 threads, then runs a
 * sequence of operations decoded from its bytes: maps with random sizes,
 * element sizes, concurrency limits, chunk sizes, failure patterns,
 * retries (filtered or not, at once or after a short delay), fail-fast and
 * halt rules, progress callbacks that stop the map, cancellation tokens
 * (triggered before the call, by an item, or by another thread), deadlines
 * and per-item deadlines, nested maps on the same or another pool, items
 * that try to destroy their own pool; streams and task groups with the
 * same knobs; two maps at once on one pool; destroy racing with a map that
 * is finishing; and calls with invalid arguments. Every call is checked by
 * test/invariant.h (through test/scenario.h); any violation prints what
 * was wrong and aborts, which libFuzzer reports as a crash. Pools are
 * destroyed at the end of each input, so LeakSanitizer sees every leak.
 *
 * Work per input stays small: no callback sleeps (items spin a few
 * microseconds at most), maps have at most 400 items, an input runs at
 * most 24 operations, and every delay is a fraction of a millisecond.
 *
 * Build and run: `make fuzz` (FUZZ_SECONDS=60 by default). By hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *       -pthread -Iinclude -Ilib -Itest test/fuzz_api.c lib/*.c -o fuzz_api
 *   ./fuzz_api -max_total_time=600 CORPUS_DIR
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scenario.h"

#define MAX_OPS 24
#define NPOOLS 3

/* ------------------------------------------------------------------------ */
/* Reading the input                                                        */
/* ------------------------------------------------------------------------ */

typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

static unsigned rd8(reader *r)
{
    if (r->left == 0)
        return 0;
    r->left--;
    return *r->p++;
}

static unsigned rd16(reader *r)
{
    unsigned lo = rd8(r);
    return lo | (rd8(r) << 8);
}

static uint64_t rd64(reader *r)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v = (v << 8) | rd8(r);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Failing                                                                  */
/* ------------------------------------------------------------------------ */

static void check_report(inv_report *rep, const char *what)
{
    if (inv_violations(rep) == 0)
        return;
    fprintf(stderr, "fuzz_api: invariant violated in %s: %s\n", what,
            rep->first);
    abort();
}

#define REQUIRE(cond, ...)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_api: %s:%d: ", __FILE__, __LINE__);          \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* ------------------------------------------------------------------------ */
/* A thread that triggers a token without sleeping                          */
/* ------------------------------------------------------------------------ */

typedef struct async_trigger {
    pthread_t tid;
    int running;
    unsigned yields;
    parmap_cancel *token;
} async_trigger;

static void *async_main(void *arg)
{
    async_trigger *t = arg;
    for (unsigned k = 0; k < t->yields; k++)
        sched_yield();
    parmap_cancel_trigger(t->token);
    return NULL;
}

static void async_arm(void *ctx, parmap_cancel *token)
{
    async_trigger *t = ctx;
    t->token = token;
    t->running = pthread_create(&t->tid, NULL, async_main, t) == 0;
    if (!t->running)
        parmap_cancel_trigger(token);
}

static void async_settle(void *ctx)
{
    async_trigger *t = ctx;
    if (t->running)
        pthread_join(t->tid, NULL);
    t->running = 0;
}

/* ------------------------------------------------------------------------ */
/* Decoding specs                                                           */
/* ------------------------------------------------------------------------ */

typedef struct state {
    parmap_pool *pools[NPOOLS];
    size_t creates;
    async_trigger trig;
    sc_async async;
} state;

static parmap_pool *pool_at(state *st, unsigned slot)
{
    slot %= NPOOLS;
    if (st->pools[slot] == NULL) {
        int rc = parmap_pool_create(&st->pools[slot], 2, NULL);
        REQUIRE(rc == 0, "parmap_pool_create(2) = %d", rc);
        st->creates++;
    }
    return st->pools[slot];
}

static void decode_halt(reader *r, parmap_halt *h)
{
    unsigned b = rd8(r);
    h->when = b & 1 ? PARMAP_HALT_NOW : PARMAP_HALT_SOON;
    h->on = (enum parmap_halt_on)((b >> 1) % 3);
    if (b & 8)
        h->percent = (double)(rd8(r) % 101);
    else
        h->count = rd8(r) % 40;
}

static void decode_map(reader *r, state *st, sc_map_spec *sp)
{
    static const size_t ins[] = {0, 8, 24, 8}, outs[] = {0, 8, 16, 8};
    static const unsigned rates[] = {0, 0, 1, 50, 200, 500, 1000, 0};
    unsigned b;

    memset(sp, 0, sizeof *sp);
    b = rd8(r);
    sp->pool = pool_at(st, b);
    if (b & 0x80)
        sp->nest_pool = pool_at(st, b >> 2);
    sp->n = rd16(r) % 401;
    sp->tag = rd64(r);
    b = rd8(r);
    sp->in_size = ins[b & 3];
    sp->out_size = outs[(b >> 2) & 3];
    sp->fail_pm = rates[(b >> 4) & 7];
    sp->poll_stop = b >> 7;
    b = rd8(r);
    sp->max_fail_attempts = b & 3;
    sp->nest_pm = (b >> 2) & 1 ? 150 : 0;
    sp->destroy_pm = (b >> 3) & 1 ? 20 : 0;
    sp->spin_ns_max = (b >> 4) & 1 ? 4000 : 0;
    sp->use_status = !((b >> 5) & 1);
    sp->use_summary = !((b >> 6) & 1);
    sp->use_records = b >> 7;

    parmap_opts *o = &sp->opts;
    b = rd8(r);
    o->flags = b & 1 ? PARMAP_FAIL_FAST : 0;
    o->max_concurrency = (b >> 1) % 10;
    switch ((b >> 5) & 3) {
    case 0: o->chunk_size = 0; break;
    case 1: o->chunk_size = 1; break;
    case 2: o->chunk_size = 1 + rd8(r) % 64; break;
    default: o->chunk_size = sp->n + 3; break;
    }
    if (b >> 7)
        decode_halt(r, &o->halt);
    b = rd8(r);
    if (b & 1) {
        o->timeout = 1e-6 * (double)(1 + rd16(r) % 2000);
        sp->spin_ns_max = 4000;
    }
    if (b & 2)
        o->item_timeout = 1e-6 * (double)(1 + rd8(r) % 100);
    o->retries = (b >> 2) & 3;
    if (o->retries != 0 && (b & 16)) {
        o->retry_delay = 1e-6 * (double)(1 + rd8(r) % 100);
        if (b & 32)
            o->retry_delay_max = 1e-6 * (double)(1 + rd8(r) % 50);
    }
    sp->retry_if = (b >> 6) & 1;
    if (b >> 7) {
        sp->use_progress = 1;
        unsigned c = rd8(r);
        o->progress_interval = c & 1 ? 1e-4 : 0.0;
        if (sp->n > 1 && (c & 2))
            sp->progress_cancel_at = 1 + (c >> 2) % (sp->n - 1);
    }
    b = rd8(r);
    switch (b % 6) {
    case 1: sp->cancel = SC_CANCEL_BEFORE; break;
    case 2: sp->cancel = SC_CANCEL_AT_INDEX; break;
    case 3: sp->cancel = SC_CANCEL_ASYNC; break;
    default: sp->cancel = SC_CANCEL_NONE; break;
    }
    sp->cancel_index = rd16(r) % (sp->n + 1);
    st->trig.yields = b >> 3;
    sp->async = &st->async;
}

/* ------------------------------------------------------------------------ */
/* Operations                                                               */
/* ------------------------------------------------------------------------ */

static void op_create(reader *r, state *st)
{
    unsigned b = rd8(r);
    unsigned slot = b % NPOOLS;
    if (st->creates >= 6)
        return; /* Creating threads is the slowest thing here. */
    if (st->pools[slot] != NULL) {
        int rc = parmap_pool_destroy(st->pools[slot]);
        REQUIRE(rc == 0, "destroy of an idle pool = %d", rc);
        st->pools[slot] = NULL;
    }
    size_t nthreads = 1 + (b >> 2) % 8;
    parmap_pool_opts po = {0};
    static const size_t stacks[] = {0, 0, 1, 65536, 1u << 20};
    po.stack_size = stacks[(b >> 5) % 5];
    parmap_pool *pool = (parmap_pool *)(uintptr_t)0x5e7;
    int rc = parmap_pool_create(&pool, nthreads, &po);
    if (po.stack_size == 1) {
        /* Below PTHREAD_STACK_MIN: refused (a pool of 1 starts no thread,
         * so it may also accept it), and nothing written on refusal. */
        REQUIRE((rc == PARMAP_EINVAL &&
                 pool == (parmap_pool *)(uintptr_t)0x5e7) ||
                    (rc == 0 && nthreads == 1),
                "create(%zu) with a 1-byte stack = %d", nthreads, rc);
        if (rc != 0)
            return;
    }
    REQUIRE(rc == 0, "parmap_pool_create(%zu) = %d", nthreads, rc);
    REQUIRE(parmap_pool_size(pool) == nthreads, "pool size %zu, want %zu",
            parmap_pool_size(pool), nthreads);
    st->pools[slot] = pool;
    st->creates++;
}

static void op_destroy(reader *r, state *st)
{
    unsigned slot = rd8(r) % NPOOLS;
    int rc = parmap_pool_destroy(st->pools[slot]);
    REQUIRE(rc == 0, "destroy of an idle pool = %d", rc);
    st->pools[slot] = NULL;
}

static void op_map(reader *r, state *st)
{
    sc_map_spec sp;
    sc_map_stats stats;
    inv_report rep;
    decode_map(r, st, &sp);
    inv_report_init(&rep);
    sc_run_map(&rep, &sp, &stats);
    check_report(&rep, "map");
    inv_report_destroy(&rep);
}

static void op_stream(reader *r, state *st)
{
    sc_stream_spec sp;
    sc_stream_stats stats;
    inv_report rep;
    unsigned b;

    memset(&sp, 0, sizeof sp);
    b = rd8(r);
    sp.pool = pool_at(st, b);
    if (b & 0x80)
        sp.nest_pool = pool_at(st, b >> 2);
    sp.cap = 1 + rd8(r) % 200;
    sp.n = rd8(r) % (sp.cap + 1);
    sp.tag = rd64(r);
    b = rd8(r);
    sp.ordered = b & 1;
    static const unsigned rates[] = {0, 0, 20, 300};
    sp.fail_pm = rates[(b >> 1) & 3];
    sp.max_fail_attempts = (b >> 3) & 3;
    sp.nest_pm = (b >> 5) & 1 ? 100 : 0;
    sp.spin_ns_max = (b >> 6) & 1 ? 4000 : 0;
    sp.poll_stop = b >> 7;
    b = rd8(r);
    if (b & 1)
        sp.producer_error = -5000 - (int)(b >> 1);
    parmap_opts *o = &sp.opts;
    b = rd8(r);
    o->flags = b & 1 ? PARMAP_FAIL_FAST : 0;
    o->max_concurrency = (b >> 1) % 10;
    o->prefetch = rd8(r) % 8;
    o->reorder = rd8(r) % 12;
    b = rd8(r);
    o->retries = b & 3;
    if (o->retries != 0 && (b & 4))
        o->retry_delay = 1e-6 * (double)(1 + rd8(r) % 100);
    if (b & 8)
        decode_halt(r, &o->halt);
    if (b & 16) {
        o->timeout = 1e-6 * (double)(1 + rd16(r) % 2000);
        sp.spin_ns_max = 4000;
    }
    switch ((b >> 5) % 4) {
    case 1: sp.cancel = SC_CANCEL_BEFORE; break;
    case 2: sp.cancel = SC_CANCEL_AT_INDEX; break;
    case 3: sp.cancel = SC_CANCEL_ASYNC; break;
    default: break;
    }
    sp.cancel_index = rd8(r) % (sp.n + 1);
    if (sp.cancel == SC_CANCEL_ASYNC || sp.cancel == SC_CANCEL_AT_INDEX)
        if (rd8(r) & 1)
            sp.n = SIZE_MAX; /* Endless: the token (or the cap) ends it. */
    st->trig.yields = rd8(r) % 32;
    sp.async = &st->async;
    b = rd8(r);
    if (b & 1)
        sp.destroy_after = 1 + (b >> 1) % sp.cap;

    inv_report_init(&rep);
    sc_run_stream(&rep, &sp, &stats);
    check_report(&rep, "stream");
    inv_report_destroy(&rep);
}

static void op_group(reader *r, state *st)
{
    sc_group_spec sp;
    sc_group_stats stats;
    inv_report rep;
    unsigned b;

    memset(&sp, 0, sizeof sp);
    sp.pool = pool_at(st, rd8(r));
    sp.ntasks = rd8(r) % 61;
    sp.tag = rd64(r);
    b = rd8(r);
    static const unsigned rates[] = {0, 0, 50, 400};
    sp.fail_pm = rates[b & 3];
    sp.max_fail_attempts = (b >> 2) & 3;
    sp.spin_ns_max = (b >> 4) & 1 ? 4000 : 0;
    sp.wait_any = (b >> 5) & 1;
    sp.first_error = (b >> 6) & 1;
    parmap_opts *o = &sp.opts;
    b = rd8(r);
    o->max_concurrency = b % 10;
    o->retries = (b >> 4) & 3;
    if (o->retries != 0 && (b & 0x40))
        o->retry_delay = 1e-6 * (double)(1 + rd8(r) % 100);
    b = rd8(r);
    if (b & 1)
        decode_halt(r, &o->halt);
    if (b & 2) {
        o->timeout = 1e-6 * (double)(1 + rd16(r) % 2000);
        sp.spin_ns_max = 4000;
    }
    switch ((b >> 2) % 4) {
    case 1: sp.cancel = SC_CANCEL_BEFORE; break;
    case 2: sp.cancel = SC_CANCEL_AT_INDEX; break;
    case 3: sp.cancel = SC_CANCEL_ASYNC; break;
    default: break;
    }
    sp.cancel_index = rd8(r) % (sp.ntasks + 1);
    st->trig.yields = b >> 4;
    sp.async = &st->async;

    inv_report_init(&rep);
    sc_run_group(&rep, &sp, &stats);
    check_report(&rep, "group");
    inv_report_destroy(&rep);
}

/* Two maps at once on one pool, one of them from a second thread. */
typedef struct side_map {
    sc_map_spec sp;
    inv_report rep;
    async_trigger trig;
    sc_async async;
} side_map;

static void *side_main(void *arg)
{
    side_map *s = arg;
    sc_map_stats stats;
    sc_test_thread = 1;
    sc_run_map(&s->rep, &s->sp, &stats);
    return NULL;
}

static void op_concurrent(reader *r, state *st)
{
    side_map side;
    pthread_t tid;
    memset(&side, 0, sizeof side);
    decode_map(r, st, &side.sp);
    /* The side map has its own trigger thread, not the main one's. */
    side.async.arm = async_arm;
    side.async.settle = async_settle;
    side.async.ctx = &side.trig;
    side.trig.yields = st->trig.yields;
    side.sp.async = &side.async;
    /* Items of the side map must not destroy the pool: the thread that
     * ran them could be taken for a worker of it or not. */
    side.sp.destroy_pm = 0;
    inv_report_init(&side.rep);
    int started = pthread_create(&tid, NULL, side_main, &side) == 0;
    op_map(r, st);
    if (started)
        pthread_join(tid, NULL);
    check_report(&side.rep, "concurrent map");
    inv_report_destroy(&side.rep);
}

/* Destroy keeps answering EBUSY while a map on the pool is finishing
 * (possibly waiting for delayed retries), then succeeds. */
typedef struct racer {
    parmap_pool *pool;
    inv_map m;
    int *status;
    parmap_opts o;
    atomic_int started;
    int rc;
} racer;

static int racer_fn(void *ctx, size_t i, const void *in, void *out)
{
    racer *rc = ctx;
    unsigned a = inv_attempt_begin(&rc->m, i, in, out);
    atomic_store(&rc->started, 1);
    int code = (i % 3 == 0 && a == 1) ? inv_fail_code(i) : 0;
    if (code == 0)
        inv_write_out(&rc->m, i, out);
    inv_attempt_end(&rc->m, i, code);
    return code;
}

static void *racer_main(void *arg)
{
    racer *rc = arg;
    sc_test_thread = 1;
    rc->rc = parmap_map(rc->pool, rc->m.n, rc->m.in, 8, rc->m.out, 8,
                        racer_fn, rc, &rc->o);
    return NULL;
}

static void op_destroy_race(reader *r, state *st)
{
    unsigned b = rd8(r);
    unsigned slot = b % NPOOLS;
    racer rc;
    memset(&rc, 0, sizeof rc);
    rc.pool = pool_at(st, slot);
    size_t n = 1 + rd8(r) % 100;
    REQUIRE(inv_map_init(&rc.m, n, rd64(r), 8, 8) == 0, "out of memory");
    rc.status = malloc(n * sizeof *rc.status);
    REQUIRE(rc.status != NULL, "out of memory");
    rc.o.status = rc.status;
    rc.o.retries = 1;
    rc.o.retry_delay = (b >> 2) & 1 ? 1e-6 * (double)(1 + rd8(r) % 200) : 0.0;
    atomic_init(&rc.started, 0);
    pthread_t tid;
    REQUIRE(pthread_create(&tid, NULL, racer_main, &rc) == 0, "thread");
    while (!atomic_load(&rc.started))
        sched_yield();
    int d;
    while ((d = parmap_pool_destroy(rc.pool)) == PARMAP_EBUSY)
        sched_yield();
    REQUIRE(d == 0, "destroy of a busy pool returned %d", d);
    st->pools[slot] = NULL;
    pthread_join(tid, NULL);
    inv_report rep;
    inv_report_init(&rep);
    inv_expect e;
    memset(&e, 0, sizeof e);
    e.retries = 1;
    e.has_status = 1;
    inv_map_check(&rep, &rc.m, rc.rc, rc.status, NULL, NULL, &e);
    check_report(&rep, "map racing with destroy");
    inv_report_destroy(&rep);
    free(rc.status);
    inv_map_free(&rc.m);
}

/* Arguments the library must refuse before running anything. A callback
 * that runs anyway is counted rather than aborting on whichever thread ran
 * it, so that the check below fails on the fuzzing thread and libFuzzer
 * writes the input out. */
static atomic_int refused_ran;

static int never_called(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx;
    (void)i;
    (void)in;
    (void)out;
    atomic_fetch_add(&refused_ran, 1);
    return PARMAP_EINVAL;
}

static int never_produce(void *ctx, size_t i, void *in)
{
    (void)ctx;
    (void)i;
    (void)in;
    atomic_fetch_add(&refused_ran, 1);
    return PARMAP_EINVAL;
}

static void op_invalid(reader *r, state *st)
{
    parmap_pool *pool = pool_at(st, rd8(r));
    unsigned b = rd8(r);
    size_t n = 1 + rd8(r);
    uint64_t buf[4];
    parmap_opts o = {0};
    int want = PARMAP_EINVAL, rc;
    const void *in = NULL;
    size_t in_size = 0;
    parmap_summary sum;
    memset(&sum, 0x5a, sizeof sum);

    switch (b % 12) {
    case 0: pool = NULL; break;
    case 1: in_size = 8; break;                   /* NULL array, size 8 */
    case 2: in = buf; break;                      /* array with size 0 */
    case 3: o.timeout = -1e-3; break;
    case 4: o.timeout = NAN; break;
    case 5: o.item_timeout = -INFINITY; break;
    case 6: o.retry_delay = -1.0; break;
    case 7: o.progress_interval = NAN; break;
    case 8: o.halt.percent = 100.5; o.halt.count = 1; break;
    case 9: o.halt.when = (enum parmap_halt_when)(3 + rd8(r) % 100); break;
    case 10: o.halt.on = (enum parmap_halt_on)(3 + rd8(r) % 100); break;
    default:
        in = buf;
        /* Above SIZE_MAX / 2, so that any n > 1 overflows (SIZE_MAX / 2
         * itself times 2 still fits). */
        in_size = SIZE_MAX / 2 + 1 + (size_t)rd8(r);
        want = n > 1 ? PARMAP_EOVERFLOW : want;
        if (n == 1)
            in_size = 8; /* fits: make it the NULL-output error instead */
        break;
    }
    o.summary = &sum;
    if ((b % 12) == 11 && n == 1) {
        rc = parmap_map(pool, n, in, in_size, NULL, 8, never_called, NULL, &o);
    } else {
        rc = parmap_map(pool, n, in, in_size, NULL, 0, never_called, NULL, &o);
    }
    REQUIRE(rc == want, "invalid map case %u returned %d, want %d", b % 12,
            rc, want);
    REQUIRE(atomic_load(&refused_ran) == 0,
            "a callback ran for refused map case %u", b % 12);

    /* Zero items: 0 at once whatever the rest says, summary all zero. */
    rc = parmap_map(NULL, 0, NULL, 0, NULL, 0, NULL, NULL, &o);
    REQUIRE(rc == 0, "a map of 0 items returned %d", rc);

    /* The other entry points. */
    parmap_stream *s = (parmap_stream *)(uintptr_t)0x5e7;
    REQUIRE(parmap_stream_create(&s, pool, NULL, NULL, 8, never_called, NULL,
                                 8, NULL) == PARMAP_EINVAL &&
                s == (parmap_stream *)(uintptr_t)0x5e7,
            "stream without producer");
    parmap_opts bad = {.timeout = -1.0};
    REQUIRE(parmap_stream_create(&s, pool, never_produce, NULL, 8,
                                 never_called, NULL, 8, &bad) ==
                PARMAP_EINVAL,
            "stream with a negative timeout");
    parmap_group *g = (parmap_group *)(uintptr_t)0x5e7;
    REQUIRE(parmap_group_create(&g, NULL, NULL) == PARMAP_EINVAL &&
                g == (parmap_group *)(uintptr_t)0x5e7,
            "group without pool");
    REQUIRE(parmap_group_create(&g, pool, &bad) == PARMAP_EINVAL,
            "group with a negative timeout");
    REQUIRE(parmap_group_submit(NULL, NULL, NULL, NULL) == PARMAP_EINVAL,
            "submit to NULL");
    REQUIRE(parmap_group_wait(NULL, PARMAP_WAIT_ALL, 0, NULL, NULL) ==
                PARMAP_EINVAL,
            "wait on NULL");
    REQUIRE(parmap_stream_next(NULL, NULL) == PARMAP_EINVAL, "next(NULL)");
    REQUIRE(parmap_stream_destroy(NULL) == 0, "stream_destroy(NULL)");
    REQUIRE(parmap_group_destroy(NULL) == 0, "group_destroy(NULL)");
    REQUIRE(parmap_pool_destroy(NULL) == 0, "pool_destroy(NULL)");
    REQUIRE(parmap_pool_create(NULL, 1, NULL) == PARMAP_EINVAL,
            "create(NULL)");
    REQUIRE(parmap_cancel_create(NULL) == PARMAP_EINVAL, "cancel_create(NULL)");
    parmap_cancel_trigger(NULL);
    REQUIRE(parmap_cancel_triggered(NULL) == 0, "triggered(NULL)");
    REQUIRE(parmap_should_stop() == 0, "should_stop outside a callback");

    REQUIRE(atomic_load(&refused_ran) == 0,
            "a callback or producer ran for a refused call");

    /* Any int has a name and a message. */
    int code = (int)(int32_t)(uint32_t)rd64(r);
    REQUIRE(parmap_strerror(code) != NULL && parmap_err_name(code) != NULL,
            "no text for %d", code);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    state st;
    memset(&st, 0, sizeof st);
    st.async.arm = async_arm;
    st.async.settle = async_settle;
    st.async.ctx = &st.trig;
    sc_test_thread = 1;

    for (int k = 0; k < MAX_OPS && r.left > 0; k++) {
        switch (rd8(&r) % 12) {
        case 0: op_create(&r, &st); break;
        case 1: op_destroy(&r, &st); break;
        case 2: case 3: case 4: case 5: op_map(&r, &st); break;
        case 6: op_stream(&r, &st); break;
        case 7: op_group(&r, &st); break;
        case 8: op_concurrent(&r, &st); break;
        case 9: op_destroy_race(&r, &st); break;
        default: op_invalid(&r, &st); break;
        }
    }
    for (int s = 0; s < NPOOLS; s++) {
        int rc = parmap_pool_destroy(st.pools[s]);
        REQUIRE(rc == 0, "final destroy of pool %d = %d", s, rc);
    }
    return 0;
}
