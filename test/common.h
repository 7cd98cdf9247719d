/*
 * Shared helpers of the parmap test programs (header-only).
 *
 * Everything here is free of Criterion so that test/stress.c, which runs
 * under ThreadSanitizer where Criterion cannot, uses the same code as the
 * Criterion suites. Helpers never assert: they record what they see into
 * atomics or per-index arrays, and the test asserts on the caller's thread
 * after parmap_map() has returned.
 *
 * Environment knobs:
 *   PARMAP_TEST_QUICK=1  shrinks the 1,000,000-item maps and the stress
 *                        scenarios (for valgrind and sanitizer runs); no
 *                        test is skipped.
 *   PARMAP_TEST_SEED=N   fixes the seed of the randomised stress tests.
 */
#ifndef PARMAP_TEST_COMMON_H
#define PARMAP_TEST_COMMON_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parmap.h"

/* ------------------------------------------------------------------------ */
/* Environment, time and randomness                                         */
/* ------------------------------------------------------------------------ */

/* 1 when PARMAP_TEST_QUICK asks for smaller workloads. */
static inline int pt_quick(void)
{
    const char *s = getenv("PARMAP_TEST_QUICK");
    return s != NULL && *s != '\0' && strcmp(s, "0") != 0;
}

/* The "large" map size of the parameterised tests. */
static inline size_t pt_big_n(void)
{
    return pt_quick() ? 100000 : 1000000;
}

/* Monotonic seconds. */
static inline double pt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Monotonic nanoseconds (never 0 in practice, so 0 can mean "unset"). */
static inline uint64_t pt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void pt_sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* splitmix64's finaliser: a cheap, well-mixed function of one word. The
 * tests use it both as "the work" of a callback and to derive data. */
static inline uint64_t pt_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* A seeded generator (splitmix64); each thread keeps its own state. */
static inline uint64_t pt_rand(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15u;
    return pt_mix(*state);
}

/* Uniform in [0, bound); bound 0 gives 0. */
static inline uint64_t pt_below(uint64_t *state, uint64_t bound)
{
    return bound == 0 ? 0 : pt_rand(state) % bound;
}

/* The seed of a randomised test: PARMAP_TEST_SEED when set, else the
 * clock, so that repeated runs explore different schedules and data. */
static inline uint64_t pt_seed(void)
{
    const char *s = getenv("PARMAP_TEST_SEED");
    if (s != NULL && *s != '\0')
        return strtoull(s, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return pt_mix((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

/* Polls until *v >= target or timeout seconds pass; 1 when reached. Tests
 * use it to wait for a state the library must reach, so that a library bug
 * turns into a failed assertion instead of a hang. */
static inline int pt_wait_atleast(atomic_size_t *v, size_t target,
                                  double timeout)
{
    double end = pt_now() + timeout;
    while (atomic_load(v) < target) {
        if (pt_now() > end)
            return 0;
        pt_sleep_us(200);
    }
    return 1;
}

static inline int pt_wait_flag(atomic_int *v, double timeout)
{
    double end = pt_now() + timeout;
    while (!atomic_load(v)) {
        if (pt_now() > end)
            return 0;
        pt_sleep_us(200);
    }
    return 1;
}

/* Threads of this process, from /proc/self/status; 0 if unreadable. */
static inline size_t pt_thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t n = 0;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "Threads:", 8) == 0) {
            n = (size_t)strtoul(line + 8, NULL, 10);
            break;
        }
    fclose(f);
    return n;
}

/* Waits up to timeout seconds for the thread count to become `want`
 * (threads that were joined can take a moment to leave /proc); returns the
 * last count seen. */
static inline size_t pt_wait_thread_count(size_t want, double timeout)
{
    double end = pt_now() + timeout;
    size_t n = pt_thread_count();
    while (n != want && pt_now() < end) {
        pt_sleep_us(1000);
        n = pt_thread_count();
    }
    return n;
}

/* ------------------------------------------------------------------------ */
/* Recording what callbacks do                                              */
/* ------------------------------------------------------------------------ */

/* Current and peak number of callbacks inside a region. */
typedef struct pt_gauge {
    atomic_size_t cur;
    atomic_size_t peak;
} pt_gauge;

static inline size_t pt_gauge_enter(pt_gauge *g)
{
    size_t c = atomic_fetch_add(&g->cur, 1) + 1;
    size_t p = atomic_load(&g->peak);
    while (c > p && !atomic_compare_exchange_weak(&g->peak, &p, c)) {
    }
    return c;
}

static inline void pt_gauge_leave(pt_gauge *g)
{
    atomic_fetch_sub(&g->cur, 1);
}

/* The "work" of the standard test callback: out = pt_f(in). */
static inline uint64_t pt_f(uint64_t x)
{
    return pt_mix(x ^ 0x5851f42d4c957f2du);
}

/* Per-index call counters. */
typedef struct pt_calls {
    size_t n;
    atomic_uint *count;
} pt_calls;

static inline int pt_calls_init(pt_calls *c, size_t n)
{
    c->n = n;
    c->count = calloc(n ? n : 1, sizeof *c->count);
    if (c->count == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        atomic_init(&c->count[i], 0);
    return 0;
}

static inline void pt_calls_free(pt_calls *c)
{
    free(c->count);
    c->count = NULL;
}

static inline unsigned pt_calls_get(const pt_calls *c, size_t i)
{
    return atomic_load(&c->count[i]);
}

/* The first index not called exactly `times` times, or n when all were. */
static inline size_t pt_calls_first_not(const pt_calls *c, unsigned times)
{
    for (size_t i = 0; i < c->n; i++)
        if (atomic_load(&c->count[i]) != times)
            return i;
    return c->n;
}

/* Sum of all counters. */
static inline size_t pt_calls_total(const pt_calls *c)
{
    size_t t = 0;
    for (size_t i = 0; i < c->n; i++)
        t += atomic_load(&c->count[i]);
    return t;
}

/* ------------------------------------------------------------------------ */
/* Progress recorder                                                        */
/* ------------------------------------------------------------------------ */

/* Checks every rule a progress callback may rely on and counts the
 * violations; the test asserts that each count is zero. `returned` and
 * `failed_returned` must be bumped by the item callback just before it
 * returns, so that done <= returned holds whenever the library publishes
 * completions only after the callbacks have returned. */
typedef struct pt_progress {
    atomic_int in_call;          /* detects two progress calls at once */
    atomic_size_t calls;
    atomic_size_t overlaps;      /* calls that overlapped another */
    atomic_size_t decreasing;    /* done, failed or elapsed went down */
    atomic_size_t bad_total;     /* total != n */
    atomic_size_t ahead;         /* done > callbacks returned, or
                                    failed > failures returned, or
                                    failed > done */
    atomic_size_t failed_over_done; /* the last case alone, to tell them
                                       apart in messages */
    atomic_size_t bad_elapsed;   /* elapsed negative or NaN */
    atomic_size_t returned;      /* bumped by item callbacks */
    atomic_size_t failed_returned;
    size_t n;
    /* Fields of the last call; written only inside progress calls, which
     * never overlap (the test checks that separately). */
    size_t last_done;
    size_t last_failed;
    double last_elapsed;
    pthread_t last_thread;
    /* Cancellation: when cancel_at > 0, return non-zero from the first
     * call that sees cancel_at <= done < total, and from every later call.
     * Never from a call that reports every item done: that one is the
     * final call, and the header does not say what stopping a finished
     * map means. */
    size_t cancel_at;
    atomic_int cancelled;
    atomic_uint_least64_t cancel_ns; /* when it first asked to stop */
    long sleep_us;               /* widen the overlap window */
} pt_progress;

static inline void pt_progress_init(pt_progress *p, size_t n)
{
    memset(p, 0, sizeof *p);
    atomic_init(&p->in_call, 0);
    atomic_init(&p->calls, 0);
    atomic_init(&p->overlaps, 0);
    atomic_init(&p->decreasing, 0);
    atomic_init(&p->bad_total, 0);
    atomic_init(&p->ahead, 0);
    atomic_init(&p->failed_over_done, 0);
    atomic_init(&p->bad_elapsed, 0);
    atomic_init(&p->returned, 0);
    atomic_init(&p->failed_returned, 0);
    atomic_init(&p->cancelled, 0);
    atomic_init(&p->cancel_ns, 0);
    p->n = n;
    p->last_elapsed = 0.0;
}

/* Item callbacks call this right before returning `rc`. */
static inline void pt_progress_item_returns(pt_progress *p, int rc)
{
    if (rc != 0)
        atomic_fetch_add(&p->failed_returned, 1);
    atomic_fetch_add(&p->returned, 1);
}

static inline int pt_progress_fn(void *ctx, const parmap_progress *pr)
{
    pt_progress *p = ctx;
    if (atomic_exchange(&p->in_call, 1) != 0)
        atomic_fetch_add(&p->overlaps, 1);
    /* Read the failure count first: an item bumps failed_returned before
     * returned, so this order can never see a failure before its item. */
    size_t failed_returned = atomic_load(&p->failed_returned);
    size_t returned = atomic_load(&p->returned);
    size_t ncalls = atomic_fetch_add(&p->calls, 1);

    if (pr->total != p->n)
        atomic_fetch_add(&p->bad_total, 1);
    if (pr->done > returned || pr->failed > failed_returned ||
        pr->failed > pr->done)
        atomic_fetch_add(&p->ahead, 1);
    if (pr->failed > pr->done)
        atomic_fetch_add(&p->failed_over_done, 1);
    if (!(pr->elapsed >= 0.0))
        atomic_fetch_add(&p->bad_elapsed, 1);
    if (ncalls > 0 &&
        (pr->done < p->last_done || pr->failed < p->last_failed ||
         pr->elapsed < p->last_elapsed))
        atomic_fetch_add(&p->decreasing, 1);
    p->last_done = pr->done;
    p->last_failed = pr->failed;
    p->last_elapsed = pr->elapsed;
    p->last_thread = pthread_self();

    int rc = 0;
    if (p->cancel_at > 0 &&
        (atomic_load(&p->cancelled) ||
         (pr->done >= p->cancel_at && pr->done < pr->total))) {
        if (!atomic_load(&p->cancelled))
            atomic_store(&p->cancel_ns, pt_now_ns());
        atomic_store(&p->cancelled, 1);
        rc = 1;
    }
    if (p->sleep_us > 0)
        pt_sleep_us(p->sleep_us);
    atomic_store(&p->in_call, 0);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* A stop must reach items already handed to another thread                 */
/* ------------------------------------------------------------------------ */

/* With a fixed chunk size C and a pool of 2, one thread takes the fast
 * chunk [0, C) and the other a slow one (C items of slow_us each). Item 0
 * waits until a slow item has started, so both chunks are claimed before
 * the map is stopped: either item C - 1 fails (fail_fast) or the progress
 * callback, called once the fast chunk is done, cancels. Every item that
 * starts more than `grace` seconds after that is counted as late: a stop
 * must reach the items of a chunk another thread already holds, not only
 * the unclaimed ones. */
typedef struct pt_late {
    size_t chunk;
    long slow_us;
    int fail;                   /* item chunk - 1 returns -EIO */
    double grace;
    pt_progress *progress;      /* or NULL */
    pt_calls calls;
    atomic_int slow_started;
    atomic_uint_least64_t fail_ns; /* when item chunk - 1 failed */
    atomic_size_t late;
    atomic_size_t wait_timeouts;
} pt_late;

static inline void pt_late_init(pt_late *l, size_t chunk, long slow_us,
                                int fail, pt_progress *progress)
{
    memset(l, 0, sizeof *l);
    l->chunk = chunk;
    l->slow_us = slow_us;
    l->fail = fail;
    l->grace = 0.15;
    l->progress = progress;
    atomic_init(&l->slow_started, 0);
    atomic_init(&l->fail_ns, 0);
    atomic_init(&l->late, 0);
    atomic_init(&l->wait_timeouts, 0);
}

static inline int pt_late_fn(void *ctx, size_t i, const void *in, void *out)
{
    pt_late *l = ctx;
    (void)in;
    uint64_t now = pt_now_ns();
    uint64_t stop = atomic_load(&l->fail_ns);
    if (l->progress != NULL && stop == 0)
        stop = atomic_load(&l->progress->cancel_ns);
    if (stop != 0 && now > stop + (uint64_t)(l->grace * 1e9))
        atomic_fetch_add(&l->late, 1);
    atomic_fetch_add(&l->calls.count[i], 1);
    if (i == 0 && !pt_wait_flag(&l->slow_started, 10.0))
        atomic_fetch_add(&l->wait_timeouts, 1);
    if (i >= l->chunk) {
        atomic_store(&l->slow_started, 1);
        pt_sleep_us(l->slow_us);
    }
    if (out != NULL)
        *(uint64_t *)out = pt_f(i);
    int rc = 0;
    if (l->fail && i == l->chunk - 1) {
        rc = -EIO;
        atomic_store(&l->fail_ns, pt_now_ns());
    }
    if (l->progress != NULL)
        pt_progress_item_returns(l->progress, rc);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Stress engine (test/test_stress.c and test/stress.c)                     */
/* ------------------------------------------------------------------------ */

typedef struct pt_stress_cfg {
    size_t pool_threads; /* threads of the one shared pool */
    size_t callers;      /* threads running maps on it at once */
    size_t maps;         /* maps in total, over all callers */
    size_t max_n;        /* items per map are drawn from 0..max_n */
    uint64_t seed;
} pt_stress_cfg;

typedef struct pt_stress_result {
    atomic_size_t maps;
    atomic_size_t items;        /* callbacks run, outer and inner */
    atomic_size_t nested;       /* inner maps run from callbacks */
    atomic_size_t failed;       /* items that failed */
    atomic_size_t not_run;      /* items reported PARMAP_ENOTRUN */
    atomic_size_t fail_fast;    /* fail-fast maps that stopped early */
    atomic_size_t cancelled;    /* maps cancelled by progress */
    atomic_size_t mismatches;   /* every wrong thing seen */
    pthread_mutex_t lock;       /* protects first */
    char first[768];            /* description of the first mismatch */
} pt_stress_result;

/* One map's parameters and recordings. */
typedef struct pt_smap {
    parmap_pool *pool;
    uint64_t mseed;        /* data and failure pattern derive from this */
    unsigned fail_pm;      /* per-mille of items that fail */
    int nested;            /* items with index % 7 == 3 run an inner map */
    const uint64_t *in;
    pt_calls calls;
    pt_progress *progress; /* or NULL */
    atomic_size_t bad;     /* problems seen inside callbacks */
    pt_stress_result *res;
} pt_smap;

/* The code item i of a map fails with, or 0. Never 0 when failing, never
 * PARMAP_ENOTRUN; both signs occur. */
static inline int pt_stress_code(uint64_t mseed, unsigned fail_pm, size_t i)
{
    uint64_t h = pt_mix(mseed * 31u + i + 1u);
    if (h % 1000u >= fail_pm)
        return 0;
    int c = (int)((h >> 20) % 5000u) + 1;
    return (h >> 40) & 1u ? -c : c;
}

static inline uint64_t pt_stress_in(uint64_t mseed, size_t i)
{
    return pt_mix(mseed ^ ((uint64_t)i * 0x2545f4914f6cdd1du));
}

typedef struct pt_sinner {
    uint64_t base;
    atomic_uint *calls;
} pt_sinner;

static inline int pt_stress_inner_fn(void *ctx, size_t i, const void *in,
                                     void *out)
{
    pt_sinner *c = ctx;
    (void)in;
    atomic_fetch_add(&c->calls[i], 1);
    *(uint64_t *)out = pt_f(c->base + i);
    return 0;
}

/* Runs an inner map of m items on the same pool; returns the xor of its
 * outputs, or counts a problem in sm->bad. */
static inline uint64_t pt_stress_inner(pt_smap *sm, size_t i)
{
    size_t m = (size_t)(pt_mix(sm->mseed + i * 7u) % 65u);
    uint64_t *out = malloc((m ? m : 1) * sizeof *out);
    atomic_uint *calls = malloc((m ? m : 1) * sizeof *calls);
    if (out == NULL || calls == NULL) {
        free(out);
        free((void *)calls);
        atomic_fetch_add(&sm->bad, 1);
        return 0;
    }
    for (size_t j = 0; j < m; j++)
        atomic_init(&calls[j], 0);
    pt_sinner c = {sm->mseed ^ ((uint64_t)i << 32), calls};
    parmap_opts o = {0};
    o.chunk_size = (size_t)(pt_mix(sm->mseed ^ i) % 4u); /* 0..3 */
    int rc = parmap_map(sm->pool, m, NULL, 0, out, sizeof *out,
                        pt_stress_inner_fn, &c, &o);
    uint64_t x = 0;
    if (rc != 0)
        atomic_fetch_add(&sm->bad, 1);
    for (size_t j = 0; j < m; j++) {
        if (atomic_load(&calls[j]) != 1 || out[j] != pt_f(c.base + j))
            atomic_fetch_add(&sm->bad, 1);
        x ^= out[j];
    }
    atomic_fetch_add(&sm->res->items, m);
    atomic_fetch_add(&sm->res->nested, 1);
    free(out);
    free((void *)calls);
    return x;
}

/* The expected output of item i of a stress map. */
static inline uint64_t pt_stress_expect(const pt_smap *sm, size_t i)
{
    uint64_t v = pt_f(pt_stress_in(sm->mseed, i));
    if (sm->nested && i % 7u == 3u) {
        size_t m = (size_t)(pt_mix(sm->mseed + i * 7u) % 65u);
        uint64_t base = sm->mseed ^ ((uint64_t)i << 32);
        for (size_t j = 0; j < m; j++)
            v ^= pt_f(base + j);
    }
    return v;
}

static inline int pt_stress_fn(void *ctx, size_t i, const void *in, void *out)
{
    pt_smap *sm = ctx;
    atomic_fetch_add(&sm->calls.count[i], 1);
    if (in != (const void *)(sm->in + i))
        atomic_fetch_add(&sm->bad, 1);
    uint64_t v = pt_f(*(const uint64_t *)in);
    if (sm->nested && i % 7u == 3u)
        v ^= pt_stress_inner(sm, i);
    if ((pt_mix(sm->mseed + i) & 63u) == 0)
        sched_yield();
    *(uint64_t *)out = v;
    int rc = pt_stress_code(sm->mseed, sm->fail_pm, i);
    if (sm->progress != NULL)
        pt_progress_item_returns(sm->progress, rc);
    return rc;
}

#define PT_SENTINEL UINT64_C(0xdeadbeefcafef00d)

static inline void pt_stress_report(pt_stress_result *res, const char *fmt,
                                    ...)
{
    atomic_fetch_add(&res->mismatches, 1);
    pthread_mutex_lock(&res->lock);
    if (res->first[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(res->first, sizeof res->first, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&res->lock);
}

typedef struct pt_scaller {
    const pt_stress_cfg *cfg;
    parmap_pool *pool;
    pt_stress_result *res;
    size_t id;
    size_t maps;
} pt_scaller;

/* Runs one randomised map and checks everything about its outcome. */
static inline void pt_stress_one(pt_scaller *c, uint64_t *rng, size_t mapno)
{
    const pt_stress_cfg *cfg = c->cfg;
    pt_stress_result *res = c->res;
    size_t n;
    switch (pt_below(rng, 4)) {
    case 0: n = (size_t)pt_below(rng, 17); break;
    case 1: n = (size_t)pt_below(rng, 257); break;
    default: n = (size_t)pt_below(rng, cfg->max_n + 1); break;
    }
    static const unsigned rates[] = {0, 0, 0, 1, 20, 300, 1000};
    pt_smap sm;
    memset(&sm, 0, sizeof sm);
    sm.pool = c->pool;
    sm.mseed = pt_rand(rng);
    sm.fail_pm = rates[pt_below(rng, sizeof rates / sizeof rates[0])];
    sm.nested = pt_below(rng, 6) == 0;
    sm.res = res;
    atomic_init(&sm.bad, 0);

    parmap_opts o = {0};
    int fail_fast = pt_below(rng, 4) == 0;
    o.flags = fail_fast ? PARMAP_FAIL_FAST : PARMAP_COLLECT;
    o.max_concurrency = (size_t)pt_below(rng, cfg->pool_threads + 3);
    switch (pt_below(rng, 5)) {
    case 0: o.chunk_size = 1; break;
    case 1: o.chunk_size = 1 + (size_t)pt_below(rng, 64); break;
    case 2: o.chunk_size = n + 5; break;
    default: o.chunk_size = 0; break;
    }
    parmap_summary sum;
    memset(&sum, 0xa5, sizeof sum);
    o.summary = &sum;

    pt_progress prog;
    int with_progress = pt_below(rng, 3) == 0;
    int may_cancel = 0;
    if (with_progress) {
        pt_progress_init(&prog, n);
        /* Cancel only collect-mode maps without failures, where the
         * header fixes the return value to PARMAP_ECANCELED. */
        if (!fail_fast && sm.fail_pm == 0 && n > 1 && pt_below(rng, 3) == 0) {
            prog.cancel_at = 1 + (size_t)pt_below(rng, n - 1);
            may_cancel = 1;
        }
        o.progress = pt_progress_fn;
        o.progress_ctx = &prog;
        o.progress_interval = pt_below(rng, 2) ? 0.0 : 0.0005;
        sm.progress = &prog;
    }

    uint64_t *in = malloc((n ? n : 1) * sizeof *in);
    uint64_t *out = malloc((n ? n : 1) * sizeof *out);
    int *status = malloc((n ? n : 1) * sizeof *status);
    if (in == NULL || out == NULL || status == NULL ||
        pt_calls_init(&sm.calls, n) != 0) {
        pt_stress_report(res, "test out of memory");
        free(in);
        free(out);
        free(status);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        in[i] = pt_stress_in(sm.mseed, i);
        out[i] = PT_SENTINEL;
        status[i] = 0x7eadbeef;
    }
    sm.in = in;
    o.status = status;

    int rc = parmap_map(c->pool, n, in, sizeof *in, out, sizeof *out,
                        pt_stress_fn, &sm, &o);

#define PT_WHERE "seed=%" PRIu64 " caller=%zu map=%zu n=%zu fail_pm=%u " \
                 "fail_fast=%d maxc=%zu chunk=%zu nested=%d progress=%d " \
                 "cancel_at=%zu: "
#define PT_ARGS cfg->seed, c->id, mapno, n, sm.fail_pm, fail_fast,         \
                o.max_concurrency, o.chunk_size, sm.nested, with_progress,  \
                (size_t)(may_cancel ? prog.cancel_at : 0)

    size_t ok = 0, failed = 0, notrun = 0, first_failed = (size_t)-1;
    int first_error = 0, rc_seen = 0, any_expected_failure = 0;
    for (size_t i = 0; i < n; i++) {
        int want = pt_stress_code(sm.mseed, sm.fail_pm, i);
        unsigned calls = pt_calls_get(&sm.calls, i);
        if (want != 0)
            any_expected_failure = 1;
        if (status[i] == PARMAP_ENOTRUN) {
            notrun++;
            if (calls != 0)
                pt_stress_report(res, PT_WHERE "item %zu is ENOTRUN but "
                                 "was called %u times", PT_ARGS, i, calls);
            if (out[i] != PT_SENTINEL)
                pt_stress_report(res, PT_WHERE "item %zu is ENOTRUN but "
                                 "its output was written", PT_ARGS, i);
            continue;
        }
        if (calls != 1) {
            pt_stress_report(res, PT_WHERE "item %zu called %u times "
                             "(status %d)", PT_ARGS, i, calls, status[i]);
            continue;
        }
        if (status[i] != want) {
            pt_stress_report(res, PT_WHERE "item %zu status %d, want %d",
                             PT_ARGS, i, status[i], want);
            continue;
        }
        if (out[i] != pt_stress_expect(&sm, i))
            pt_stress_report(res, PT_WHERE "item %zu wrong output",
                             PT_ARGS, i);
        if (want == 0) {
            ok++;
        } else {
            if (failed == 0) {
                first_failed = i;
                first_error = want;
            }
            failed++;
            if (rc == want)
                rc_seen = 1;
        }
    }
    if (atomic_load(&sm.bad) != 0)
        pt_stress_report(res, PT_WHERE "%zu problems inside callbacks "
                         "(bad in pointer or inner map)", PT_ARGS,
                         (size_t)atomic_load(&sm.bad));
    if (sum.succeeded != ok || sum.failed != failed ||
        sum.not_run != notrun || sum.first_failed != first_failed ||
        sum.first_error != first_error)
        pt_stress_report(res, PT_WHERE "summary {%zu,%zu,%zu,%zu,%d} but "
                         "status says {%zu,%zu,%zu,%zu,%d}", PT_ARGS,
                         sum.succeeded, sum.failed, sum.not_run,
                         sum.first_failed, sum.first_error, ok, failed,
                         notrun, first_failed, first_error);

    int cancelled = with_progress && may_cancel && atomic_load(&prog.cancelled);
    if (cancelled) {
        atomic_fetch_add(&res->cancelled, 1);
        if (rc != PARMAP_ECANCELED)
            pt_stress_report(res, PT_WHERE "progress cancelled but rc=%d",
                             PT_ARGS, rc);
    } else if (fail_fast) {
        if (!any_expected_failure) {
            if (rc != 0 || notrun != 0)
                pt_stress_report(res, PT_WHERE "fail-fast without failures: "
                                 "rc=%d not_run=%zu", PT_ARGS, rc, notrun);
        } else if (failed == 0 || !rc_seen) {
            pt_stress_report(res, PT_WHERE "fail-fast rc=%d is not the code "
                             "of a failed item (%zu failed)", PT_ARGS, rc,
                             failed);
        }
        if (notrun != 0)
            atomic_fetch_add(&res->fail_fast, 1);
    } else {
        int want_rc = failed ? PARMAP_EFAILED : 0;
        if (rc != want_rc || notrun != 0)
            pt_stress_report(res, PT_WHERE "collect rc=%d want %d, "
                             "not_run=%zu", PT_ARGS, rc, want_rc, notrun);
    }
    if (with_progress) {
        size_t calls = atomic_load(&prog.calls);
        if (atomic_load(&prog.overlaps) || atomic_load(&prog.decreasing) ||
            atomic_load(&prog.bad_total) || atomic_load(&prog.ahead) ||
            atomic_load(&prog.failed_over_done) ||
            atomic_load(&prog.bad_elapsed))
            pt_stress_report(res, PT_WHERE "progress rules broken: overlaps=%zu"
                             " decreasing=%zu bad_total=%zu ahead=%zu "
                             "failed_over_done=%zu bad_elapsed=%zu", PT_ARGS,
                             (size_t)atomic_load(&prog.overlaps),
                             (size_t)atomic_load(&prog.decreasing),
                             (size_t)atomic_load(&prog.bad_total),
                             (size_t)atomic_load(&prog.ahead),
                             (size_t)atomic_load(&prog.failed_over_done),
                             (size_t)atomic_load(&prog.bad_elapsed));
        if (n > 0 && calls == 0)
            pt_stress_report(res, PT_WHERE "progress never called", PT_ARGS);
        if (n > 0 && calls > 0) {
            if (!pthread_equal(prog.last_thread, pthread_self()))
                pt_stress_report(res, PT_WHERE "last progress call not on the"
                                 " caller's thread", PT_ARGS);
            if (prog.last_done != ok + failed || prog.last_failed != failed)
                pt_stress_report(res, PT_WHERE "last progress call done=%zu "
                                 "failed=%zu, want %zu, %zu", PT_ARGS,
                                 prog.last_done, prog.last_failed,
                                 ok + failed, failed);
        }
    }
#undef PT_WHERE
#undef PT_ARGS

    atomic_fetch_add(&res->maps, 1);
    atomic_fetch_add(&res->items, ok + failed);
    atomic_fetch_add(&res->failed, failed);
    atomic_fetch_add(&res->not_run, notrun);
    pt_calls_free(&sm.calls);
    free(in);
    free(out);
    free(status);
}

static inline void *pt_stress_caller(void *arg)
{
    pt_scaller *c = arg;
    uint64_t rng = pt_mix(c->cfg->seed ^ pt_mix(c->id + 1));
    for (size_t m = 0; m < c->maps; m++)
        pt_stress_one(c, &rng, m);
    return NULL;
}

/* Runs the scenario; 0 when every check passed. res->first describes the
 * first mismatch; the caller prints it with the seed. */
static inline int pt_stress_run(const pt_stress_cfg *cfg,
                                pt_stress_result *res)
{
    memset(res, 0, sizeof *res);
    pthread_mutex_init(&res->lock, NULL);
    parmap_pool *pool = NULL;
    int rc = parmap_pool_create(&pool, cfg->pool_threads, NULL);
    if (rc != 0) {
        pt_stress_report(res, "seed=%" PRIu64 ": parmap_pool_create(%zu) "
                         "returned %d", cfg->seed, cfg->pool_threads, rc);
        pthread_mutex_destroy(&res->lock);
        return -1;
    }
    if (parmap_pool_size(pool) != cfg->pool_threads)
        pt_stress_report(res, "pool size %zu, want %zu",
                         parmap_pool_size(pool), cfg->pool_threads);
    pt_scaller callers[64];
    pthread_t tids[64];
    size_t nc = cfg->callers < 64 ? cfg->callers : 64;
    for (size_t i = 0; i < nc; i++) {
        callers[i].cfg = cfg;
        callers[i].pool = pool;
        callers[i].res = res;
        callers[i].id = i;
        callers[i].maps = cfg->maps / nc + (i < cfg->maps % nc);
    }
    size_t started = 0;
    for (; started < nc; started++)
        if (pthread_create(&tids[started], NULL, pt_stress_caller,
                           &callers[started]) != 0)
            break;
    if (started < nc)
        pt_stress_report(res, "could not start caller thread %zu", started);
    for (size_t i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    rc = parmap_pool_destroy(pool);
    if (rc != 0)
        pt_stress_report(res, "parmap_pool_destroy returned %d", rc);
    /* Each run initialises the lock afresh; DRD flags a re-initialised
     * mutex that was never destroyed. */
    pthread_mutex_destroy(&res->lock);
    return atomic_load(&res->mismatches) == 0 ? 0 : -1;
}

#endif /* PARMAP_TEST_COMMON_H */
