/*
 * Signals: parmap_cancel_trigger() is async-signal-safe, so a SIGINT
 * handler can stop a long map, stream or group, and the library's waits
 * stay correct when signals interrupt them.
 *
 *   - raise(SIGINT) from inside a callback, and pthread_kill(SIGINT) to the
 *     calling thread while it runs items, while it waits for its helpers,
 *     and while it waits for a delayed retry: the map returns promptly
 *     with PARMAP_ECANCELED, every finished result is kept and every item
 *     not started is PARMAP_ENOTRUN (the invariant checker of
 *     test/invariant.h checks every index);
 *   - the same for a thread waiting in parmap_group_wait() and in
 *     parmap_stream_next();
 *   - a SIGALRM storm (setitimer every 1 ms, handler installed without
 *     SA_RESTART, so every interruptible system call sees EINTR) during
 *     maps, groups and streams changes no result, and timed waits neither
 *     end early nor late.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/time.h>

#include "common.h"
#include "invariant.h"

TestSuite(signal, .timeout = 60.);

/* ------------------------------------------------------------------------ */
/* The SIGINT handler: one atomic store, and bookkeeping the test reads     */
/* ------------------------------------------------------------------------ */

static _Atomic(parmap_cancel *) g_token;
static atomic_int g_handled;          /* SIGINTs handled */
static atomic_int g_handled_on_caller; /* of those, on the calling thread */
static _Thread_local int t_is_caller;

static void on_sigint(int sig)
{
    (void)sig;
    /* Only async-signal-safe work: lock-free atomics and the trigger. */
    parmap_cancel_trigger(atomic_load(&g_token));
    if (t_is_caller)
        atomic_fetch_add(&g_handled_on_caller, 1);
    atomic_fetch_add(&g_handled, 1);
}

static void install_sigint(parmap_cancel *token)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: interrupted calls see EINTR */
    atomic_store(&g_token, token);
    atomic_store(&g_handled, 0);
    atomic_store(&g_handled_on_caller, 0);
    cr_assert_eq(sigaction(SIGINT, &sa, NULL), 0);
}

static parmap_pool *make_pool(size_t n)
{
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, n, NULL), 0);
    return pool;
}

/* ------------------------------------------------------------------------ */
/* Map items                                                                */
/* ------------------------------------------------------------------------ */

enum item_mode {
    SPIN,          /* every item spins spin_ns */
    WORKERS_BLOCK, /* items on workers run until stopped; caller's are
                      instant */
    FAIL_ONCE      /* every item fails its first attempt */
};

struct sig_map {
    inv_map m;
    enum item_mode mode;
    uint64_t spin_ns;
    size_t raise_at;            /* item that raises SIGINT, or SIZE_MAX */
    atomic_size_t finished;     /* attempts that returned */
    atomic_size_t caller_items; /* attempts made on the calling thread */
    atomic_size_t worker_items; /* attempts made on pool workers */
};

static int sig_item(void *ctx, size_t i, const void *in, void *out)
{
    struct sig_map *s = ctx;
    unsigned a = inv_attempt_begin(&s->m, i, in, out);
    int rc = 0;

    atomic_fetch_add(t_is_caller ? &s->caller_items : &s->worker_items, 1);
    if (i == s->raise_at && a == 1)
        raise(SIGINT); /* the handler runs here, on this thread */
    switch (s->mode) {
    case SPIN:
        inv_spin_ns(s->spin_ns, 0);
        break;
    case WORKERS_BLOCK:
        /* Long, but cooperative: it polls, as a long callback should. The
         * caller's first item waits until both workers hold one, so that
         * the caller cannot run the whole map alone. */
        if (!t_is_caller) {
            if (inv_spin_ns(20ull * 1000000000u, 1) != 0)
                rc = -7001;
        } else {
            pt_wait_atleast(&s->worker_items, 2, 10.0);
        }
        break;
    case FAIL_ONCE:
        rc = a == 1 ? -7002 : 0;
        break;
    }
    if (rc == 0)
        inv_write_out(&s->m, i, out);
    inv_attempt_end(&s->m, i, rc);
    atomic_fetch_add(&s->finished, 1);
    return rc;
}

/* Runs the map on the calling thread and checks every index. */
static int run_sig_map(parmap_pool *pool, struct sig_map *s, size_t n,
                       const parmap_opts *base, parmap_cancel *token,
                       int *status, double *seconds)
{
    parmap_summary sum;
    parmap_opts o = base != NULL ? *base : (parmap_opts){0};
    o.cancel = token;
    o.status = status;
    o.summary = &sum;
    t_is_caller = 1;
    double t0 = pt_now();
    int rc = parmap_map(pool, n, s->m.in, s->m.in_size, s->m.out,
                        s->m.out_size, sig_item, s, &o);
    *seconds = pt_now() - t0;
    t_is_caller = 0;

    inv_report r;
    inv_report_init(&r);
    inv_expect e;
    memset(&e, 0, sizeof e);
    e.retries = o.retries;
    e.has_status = 1;
    e.has_summary = 1;
    e.cancel = 1;
    inv_map_check(&r, &s->m, rc, status, &sum, NULL, &e);
    cr_assert_eq(inv_violations(&r), 0, "%s", r.first);
    inv_report_destroy(&r);
    return rc;
}

static void sig_map_init(struct sig_map *s, size_t n, enum item_mode mode)
{
    memset(s, 0, sizeof *s);
    cr_assert_eq(inv_map_init(&s->m, n, 0x5151u + n, 8, 8), 0);
    s->mode = mode;
    s->raise_at = SIZE_MAX;
    atomic_init(&s->finished, 0);
    atomic_init(&s->caller_items, 0);
    atomic_init(&s->worker_items, 0);
}

static size_t count_status(const int *status, size_t n, int code)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += status[i] == code;
    return k;
}

/* ------------------------------------------------------------------------ */
/* raise(SIGINT) from inside a callback                                     */
/* ------------------------------------------------------------------------ */

static void raise_from_callback(size_t threads)
{
    /* About 2 s of work on one thread; the signal comes after ~1%. */
    size_t n = pt_quick() ? 100000 : 400000;
    parmap_pool *pool = make_pool(threads);
    parmap_cancel *token;
    cr_assert_eq(parmap_cancel_create(&token), 0);
    install_sigint(token);
    struct sig_map s;
    sig_map_init(&s, n, SPIN);
    s.spin_ns = pt_quick() ? 20000 : 5000;
    s.raise_at = n / 100;
    int *status = malloc(n * sizeof *status);
    cr_assert_not_null(status);
    double secs;

    int rc = run_sig_map(pool, &s, n, NULL, token, status, &secs);

    cr_assert_eq(atomic_load(&g_handled), 1);
    cr_assert_eq(rc, PARMAP_ECANCELED, "rc %d (%s)", rc, parmap_err_name(rc));
    size_t ok = count_status(status, n, 0);
    size_t notrun = count_status(status, n, PARMAP_ENOTRUN);
    cr_assert_eq(ok + notrun, n, "every item is done or not run");
    cr_assert_geq(ok, 1, "the item that raised finished and was kept");
    cr_assert_eq(status[s.raise_at], 0);
    cr_assert_gt(notrun, n / 2, "only %zu of %zu items left unrun", notrun,
                 n);
    cr_assert_lt(secs, 1.0, "the map took %.3f s to stop", secs);
    free(status);
    inv_map_free(&s.m);
    parmap_cancel_destroy(token);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(signal, sigint_raised_in_callback_cancels_map_on_pool_of_1)
{
    raise_from_callback(1);
}

Test(signal, sigint_raised_in_callback_cancels_map_on_pool_of_2)
{
    raise_from_callback(2);
}

Test(signal, sigint_raised_in_callback_cancels_map_on_pool_of_8)
{
    raise_from_callback(8);
}

/* ------------------------------------------------------------------------ */
/* pthread_kill(SIGINT) to the calling thread                               */
/* ------------------------------------------------------------------------ */

struct killer {
    pthread_t target;
    atomic_size_t *watch; /* wait until *watch >= at... */
    size_t at;
    long settle_us;       /* ...then this long, so the target sleeps */
    atomic_int sent;
    atomic_int timed_out;
};

static void *killer_main(void *arg)
{
    struct killer *k = arg;
    if (!pt_wait_atleast(k->watch, k->at, 20.0))
        atomic_store(&k->timed_out, 1);
    pt_sleep_us(k->settle_us);
    pthread_kill(k->target, SIGINT);
    atomic_store(&k->sent, 1);
    return NULL;
}

static void start_killer(struct killer *k, pthread_t *tid,
                         atomic_size_t *watch, size_t at, long settle_us)
{
    memset(k, 0, sizeof *k);
    k->target = pthread_self();
    k->watch = watch;
    k->at = at;
    k->settle_us = settle_us;
    atomic_init(&k->sent, 0);
    atomic_init(&k->timed_out, 0);
    cr_assert_eq(pthread_create(tid, NULL, killer_main, k), 0);
}

static void finish_killer(struct killer *k, pthread_t tid)
{
    pthread_join(tid, NULL);
    cr_assert_not(atomic_load(&k->timed_out), "the scenario never reached "
                  "the point where the signal is sent");
    cr_assert(atomic_load(&k->sent));
    cr_assert_eq(atomic_load(&g_handled), 1);
    cr_assert_eq(atomic_load(&g_handled_on_caller), 1,
                 "SIGINT was not handled on the calling thread");
}

Test(signal, sigint_to_caller_running_items_cancels_map)
{
    size_t n = pt_quick() ? 100000 : 400000;
    parmap_pool *pool = make_pool(3);
    parmap_cancel *token;
    cr_assert_eq(parmap_cancel_create(&token), 0);
    install_sigint(token);
    struct sig_map s;
    sig_map_init(&s, n, SPIN);
    s.spin_ns = pt_quick() ? 20000 : 5000;
    int *status = malloc(n * sizeof *status);
    cr_assert_not_null(status);
    struct killer k;
    pthread_t tid;
    start_killer(&k, &tid, &s.finished, n / 50, 0);
    double secs;

    int rc = run_sig_map(pool, &s, n, NULL, token, status, &secs);

    finish_killer(&k, tid);
    cr_assert_eq(rc, PARMAP_ECANCELED, "rc %d (%s)", rc, parmap_err_name(rc));
    size_t ok = count_status(status, n, 0);
    size_t notrun = count_status(status, n, PARMAP_ENOTRUN);
    cr_assert_eq(ok + notrun, n);
    cr_assert_geq(ok, n / 50);
    cr_assert_gt(notrun, 0);
    cr_assert_lt(secs, 2.0, "the map took %.3f s to stop", secs);
    free(status);
    inv_map_free(&s.m);
    parmap_cancel_destroy(token);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(signal, sigint_to_caller_waiting_for_helpers_cancels_map)
{
    /* Items on the two workers run until stopped; the caller's own items
     * are instant, so it soon has nothing left to claim and sleeps until
     * its helpers leave. The signal reaches it there. */
    size_t n = 64;
    parmap_pool *pool = make_pool(3);
    parmap_cancel *token;
    cr_assert_eq(parmap_cancel_create(&token), 0);
    install_sigint(token);
    struct sig_map s;
    sig_map_init(&s, n, WORKERS_BLOCK);
    int status[64];
    parmap_opts o = {.chunk_size = 1};
    struct killer k;
    pthread_t tid;
    /* The caller has run every item but the two the workers hold. */
    start_killer(&k, &tid, &s.caller_items, n - 2, 50000);
    double secs;

    int rc = run_sig_map(pool, &s, n, &o, token, status, &secs);

    finish_killer(&k, tid);
    cr_assert_eq(rc, PARMAP_ECANCELED, "rc %d (%s)", rc, parmap_err_name(rc));
    cr_assert_eq(atomic_load(&s.worker_items), 2);
    cr_assert_eq(count_status(status, n, 0), n - 2,
                 "the caller's finished results are kept");
    cr_assert_eq(count_status(status, n, -7001), 2,
                 "the two stopped items report their own code");
    cr_assert_lt(secs, 5.0, "the map took %.3f s to stop", secs);
    inv_map_free(&s.m);
    parmap_cancel_destroy(token);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(signal, sigint_to_caller_waiting_for_a_delayed_retry_cancels_map)
{
    /* Every item fails once and is retried after 30 s; the caller waits
     * for the retries, holding no thread, and the signal ends the wait. */
    size_t n = 100;
    parmap_pool *pool = make_pool(2);
    parmap_cancel *token;
    cr_assert_eq(parmap_cancel_create(&token), 0);
    install_sigint(token);
    struct sig_map s;
    sig_map_init(&s, n, FAIL_ONCE);
    int status[100];
    parmap_opts o = {.retries = 1, .retry_delay = 30.0};
    struct killer k;
    pthread_t tid;
    start_killer(&k, &tid, &s.finished, n, 50000);
    double secs;

    int rc = run_sig_map(pool, &s, n, &o, token, status, &secs);

    finish_killer(&k, tid);
    cr_assert_eq(rc, PARMAP_ECANCELED, "rc %d (%s)", rc, parmap_err_name(rc));
    /* Each ran once and failed; the stop makes that failure final. */
    cr_assert_eq(count_status(status, n, -7002), n);
    cr_assert_lt(secs, 2.0, "the map took %.3f s to stop", secs);
    inv_map_free(&s.m);
    parmap_cancel_destroy(token);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* Waiting in a group or a stream                                           */
/* ------------------------------------------------------------------------ */

static atomic_size_t g_started;

static int blocking_task(void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&g_started, 1);
    return inv_spin_ns(20ull * 1000000000u, 1) != 0 ? -7003 : 0;
}

Test(signal, sigint_to_thread_in_group_wait_cancels_group)
{
    parmap_pool *pool = make_pool(3);
    parmap_cancel *token;
    cr_assert_eq(parmap_cancel_create(&token), 0);
    install_sigint(token);
    atomic_store(&g_started, 0);
    parmap_opts o = {.cancel = token, .max_concurrency = 2};
    parmap_group *g;
    cr_assert_eq(parmap_group_create(&g, pool, &o), 0);
    size_t ntasks = 10;
    for (size_t i = 0; i < ntasks; i++)
        cr_assert_eq(parmap_group_submit(g, blocking_task, NULL, NULL), 0);
    struct killer k;
    pthread_t tid;
    /* Two tasks run on the workers; the waiter can start none. */
    start_killer(&k, &tid, &g_started, 2, 50000);
    t_is_caller = 1;
    double t0 = pt_now();
    int rc = parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL);
    double secs = pt_now() - t0;
    t_is_caller = 0;
    finish_killer(&k, tid);
    cr_assert_eq(rc, 0);
    cr_assert_lt(secs, 5.0, "the wait took %.3f s", secs);
    size_t ran = 0, notrun = 0;
    for (size_t id = 0; id < ntasks; id++) {
        int st;
        unsigned att;
        cr_assert_eq(parmap_group_task(g, id, &st, &att), 0);
        if (att == 0) {
            cr_assert_eq(st, PARMAP_ENOTRUN, "task %zu: %d", id, st);
            notrun++;
        } else {
            cr_assert_eq(st, -7003, "task %zu: %d", id, st);
            ran++;
        }
    }
    cr_assert_eq(ran, atomic_load(&g_started));
    cr_assert_eq(ran + notrun, ntasks);
    cr_assert_gt(notrun, 0);
    cr_assert_eq(parmap_group_submit(g, blocking_task, NULL, NULL),
                 PARMAP_ECANCELED);
    cr_assert_eq(parmap_group_destroy(g), 0);
    parmap_cancel_destroy(token);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

struct sig_stream {
    atomic_size_t started;
};

static int endless_producer(void *ctx, size_t i, void *in)
{
    (void)ctx;
    *(uint64_t *)in = pt_mix(i);
    return 1;
}

static int blocking_stream_item(void *ctx, size_t i, const void *in,
                                void *out)
{
    struct sig_stream *s = ctx;
    atomic_fetch_add(&s->started, 1);
    if (*(const uint64_t *)in != pt_mix(i))
        return -7005;
    int rc = inv_spin_ns(20ull * 1000000000u, 1) != 0 ? -7004 : 0;
    *(uint64_t *)out = pt_f(i);
    return rc;
}

Test(signal, sigint_to_thread_in_stream_next_cancels_stream)
{
    /* The consumer runs no item itself (max_concurrency 2: both slots are
     * taken by workers), so it sleeps in parmap_stream_next(). */
    parmap_pool *pool = make_pool(3);
    parmap_cancel *token;
    cr_assert_eq(parmap_cancel_create(&token), 0);
    install_sigint(token);
    struct sig_stream ss;
    atomic_init(&ss.started, 0);
    parmap_opts o = {.cancel = token, .max_concurrency = 2};
    parmap_stream *st;
    cr_assert_eq(parmap_stream_create(&st, pool, endless_producer, NULL, 8,
                                      blocking_stream_item, &ss, 8, &o),
                 0);
    struct killer k;
    pthread_t tid;
    start_killer(&k, &tid, &ss.started, 2, 50000);
    t_is_caller = 1;
    double t0 = pt_now();
    parmap_stream_item it;
    int rc;
    size_t got = 0, stopped = 0, notrun = 0, next_index = 0;
    while ((rc = parmap_stream_next(st, &it)) == 1) {
        cr_assert_eq(it.index, next_index++, "input order");
        got++;
        if (it.attempts == 0) {
            cr_assert_eq(it.status, PARMAP_ENOTRUN);
            notrun++;
        } else {
            cr_assert_eq(it.status, -7004, "item %zu: %d", it.index,
                         it.status);
            stopped++;
        }
    }
    double secs = pt_now() - t0;
    t_is_caller = 0;
    finish_killer(&k, tid);
    cr_assert_eq(rc, PARMAP_ECANCELED, "rc %d", rc);
    cr_assert_eq(stopped, atomic_load(&ss.started));
    cr_assert_eq(stopped + notrun, got);
    cr_assert_lt(secs, 5.0, "the stream took %.3f s to stop", secs);
    cr_assert_eq(parmap_stream_destroy(st), 0);
    parmap_cancel_destroy(token);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

/* ------------------------------------------------------------------------ */
/* A SIGALRM storm changes nothing                                          */
/* ------------------------------------------------------------------------ */

static atomic_long g_alarms;

static void on_sigalrm(int sig)
{
    (void)sig;
    atomic_fetch_add(&g_alarms, 1);
}

static void storm_start(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigalrm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART */
    cr_assert_eq(sigaction(SIGALRM, &sa, NULL), 0);
    atomic_store(&g_alarms, 0);
    struct itimerval it = {{0, 1000}, {0, 1000}};
    cr_assert_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
}

static long storm_stop(void)
{
    struct itimerval it = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
    return atomic_load(&g_alarms);
}

/* Items that sleep (nanosleep returns early with EINTR in the storm and is
 * resumed), spin or yield, so that signals land everywhere: in callbacks,
 * in the library's condition variable waits and in idle workers. */
static int storm_item(void *ctx, size_t i, const void *in, void *out)
{
    inv_map *m = ctx;
    unsigned a = inv_attempt_begin(m, i, in, out);
    switch (i % 4) {
    case 0: pt_sleep_us(50); break;
    case 1: inv_spin_ns(20000, 0); break;
    case 2: sched_yield(); break;
    default: break;
    }
    int rc = (i % 17 == 5 && a == 1) ? -7010 : 0; /* retried, then ok */
    if (rc == 0)
        inv_write_out(m, i, out);
    inv_attempt_end(m, i, rc);
    return rc;
}

static int storm_task(void *ctx)
{
    atomic_uint *calls = ctx;
    unsigned a = atomic_fetch_add(calls, 1) + 1;
    pt_sleep_us(100);
    return a == 1 ? -7011 : 0; /* fails once, then the retry succeeds */
}

static int storm_stream_item(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx;
    pt_sleep_us(i % 3 == 0 ? 100 : 0);
    *(uint64_t *)out = pt_f(*(const uint64_t *)in);
    return 0;
}

struct counted_producer {
    size_t n;
};

static int counted_produce(void *ctx, size_t i, void *in)
{
    struct counted_producer *p = ctx;
    if (i >= p->n)
        return 0;
    *(uint64_t *)in = pt_mix(i);
    return 1;
}

Test(signal, sigalrm_storm_changes_no_result)
{
    double end = pt_now() + (pt_quick() ? 1.0 : 2.0);
    static const size_t threads[] = {1, 2, 4};
    parmap_pool *pools[3];
    for (size_t p = 0; p < 3; p++)
        pools[p] = make_pool(threads[p]);
    storm_start();
    size_t maps = 0, groups = 0, streams = 0, round = 0;
    inv_report r;
    inv_report_init(&r);

    while (pt_now() < end || round < 3) {
        parmap_pool *pool = pools[round % 3];

        /* A map with retries and a progress callback. */
        size_t n = 2000;
        inv_map m;
        cr_assert_eq(inv_map_init(&m, n, round * 7919u, 8, 8), 0);
        int *status = malloc(n * sizeof *status);
        cr_assert_not_null(status);
        parmap_summary sum;
        parmap_opts o = {.status = status, .summary = &sum, .retries = 1,
                         .progress = inv_progress_fn, .progress_ctx = &m};
        int rc = parmap_map(pool, n, m.in, 8, m.out, 8, storm_item, &m, &o);
        inv_expect e;
        memset(&e, 0, sizeof e);
        e.retries = 1;
        e.has_status = e.has_summary = e.has_progress = 1;
        snprintf(r.context, sizeof r.context, "map %zu", maps);
        inv_map_check(&r, &m, rc, status, &sum, NULL, &e);
        cr_assert_eq(inv_violations(&r), 0, "%s", r.first);
        cr_assert_eq(rc, 0, "rc %d", rc);
        cr_assert_eq(sum.succeeded, n);
        free(status);
        inv_map_free(&m);
        maps++;

        /* A group whose tasks fail once and are retried after a delay;
         * a timed wait that must not end early. */
        parmap_opts go = {.retries = 1, .retry_delay = 0.0005};
        parmap_group *g;
        cr_assert_eq(parmap_group_create(&g, pool, &go), 0);
        size_t nt = 40;
        atomic_uint calls[40];
        for (size_t i = 0; i < nt; i++) {
            atomic_init(&calls[i], 0);
            cr_assert_eq(parmap_group_submit(g, storm_task, &calls[i], NULL),
                         0);
        }
        double t0 = pt_now();
        rc = parmap_group_wait(g, PARMAP_WAIT_ALL, 30.0, NULL, NULL);
        cr_assert_eq(rc, 0, "WAIT_ALL under signals returned %d after "
                     "%.3f s", rc, pt_now() - t0);
        for (size_t i = 0; i < nt; i++) {
            int st;
            unsigned att;
            cr_assert_eq(parmap_group_task(g, i, &st, &att), 0);
            cr_assert_eq(st, 0, "task %zu: %d", i, st);
            cr_assert_eq(att, 2, "task %zu: %u attempts", i, att);
            cr_assert_eq(atomic_load(&calls[i]), 2);
        }
        cr_assert_eq(parmap_group_destroy(g), 0);
        groups++;

        /* A group with nothing pending answers ENOENT at once, and a
         * task that fails once is retried at once. */
        cr_assert_eq(parmap_group_create(&g, pool, &go), 0);
        atomic_uint once_calls;
        atomic_init(&once_calls, 0);
        rc = parmap_group_wait(g, PARMAP_WAIT_ANY, 0.02, NULL, NULL);
        cr_assert_eq(rc, PARMAP_ENOENT, "empty group: %d", rc);
        cr_assert_eq(parmap_group_submit(g, storm_task, &once_calls, NULL), 0);
        rc = parmap_group_wait(g, PARMAP_WAIT_ALL, 30.0, NULL, NULL);
        cr_assert_eq(rc, 0);
        cr_assert_eq(atomic_load(&once_calls), 2);
        cr_assert_eq(parmap_group_destroy(g), 0);

        /* An ordered stream. */
        struct counted_producer cp = {500};
        parmap_stream *st;
        cr_assert_eq(parmap_stream_create(&st, pool, counted_produce, &cp, 8,
                                          storm_stream_item, NULL, 8, NULL),
                     0);
        parmap_stream_item it;
        size_t k = 0;
        while ((rc = parmap_stream_next(st, &it)) == 1) {
            cr_assert_eq(it.index, k, "order");
            cr_assert_eq(it.status, 0);
            cr_assert_eq(*(const uint64_t *)it.out, pt_f(pt_mix(k)));
            k++;
        }
        cr_assert_eq(rc, 0);
        cr_assert_eq(k, cp.n);
        cr_assert_eq(parmap_stream_destroy(st), 0);
        streams++;
        round++;
    }
    long alarms = storm_stop();
    inv_report_destroy(&r);
    for (size_t p = 0; p < 3; p++)
        cr_assert_eq(parmap_pool_destroy(pools[p]), 0);
    cr_log_info("%zu maps, %zu groups, %zu streams under %ld SIGALRMs", maps,
                groups, streams, alarms);
    cr_assert_gt(alarms, 100, "only %ld SIGALRMs arrived", alarms);
}

Test(signal, timed_group_wait_is_not_cut_short_by_signals)
{
    /* A wait for a task that runs until stopped, with a 100 ms timeout,
     * returns ETIMEDOUT after at least 100 ms however many signals
     * interrupt it. Then the group's token stops the task. */
    parmap_pool *pool = make_pool(2);
    parmap_cancel *token;
    cr_assert_eq(parmap_cancel_create(&token), 0);
    parmap_opts o = {.cancel = token};
    parmap_group *g;
    cr_assert_eq(parmap_group_create(&g, pool, &o), 0);
    atomic_store(&g_started, 0);
    storm_start();
    cr_assert_eq(parmap_group_submit(g, blocking_task, NULL, NULL), 0);
    cr_assert(pt_wait_atleast(&g_started, 1, 10.0));
    double t0 = pt_now();
    int rc = parmap_group_wait(g, PARMAP_WAIT_ALL, 0.1, NULL, NULL);
    double secs = pt_now() - t0;
    long alarms = storm_stop();
    cr_assert_eq(rc, PARMAP_ETIMEDOUT, "rc %d", rc);
    cr_assert_geq(secs, 0.1 - 1e-3, "the wait ended after %.4f s", secs);
    cr_assert_lt(secs, 2.0, "the wait ended after %.4f s", secs);
    cr_assert_gt(alarms, 5, "only %ld SIGALRMs during the wait", alarms);
    parmap_cancel_trigger(token);
    cr_assert_eq(parmap_group_wait(g, PARMAP_WAIT_ALL, 10.0, NULL, NULL), 0);
    int st;
    cr_assert_eq(parmap_group_task(g, 0, &st, NULL), 0);
    cr_assert_eq(st, -7003);
    cr_assert_eq(parmap_group_destroy(g), 0);
    parmap_cancel_destroy(token);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}
