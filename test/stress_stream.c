/*
 * Randomised stress of streams as a plain program, for ThreadSanitizer
 * (which cannot run Criterion binaries): several consumer threads each run
 * a series of random streams on one shared pool, with every option mixed
 * in (input order or not, limits, prefetch, reorder, failures, fail-fast,
 * halt rules, retries with and without delay, cancel tokens, timeouts,
 * progress, nested maps, early destroy), and check every delivered item
 * against what its callbacks recorded.
 *
 * Usage: stress_stream [seed]   (or PARMAP_TEST_SEED; PARMAP_TEST_QUICK=1
 * shrinks). Prints a summary; exits 1 on any wrong result.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nanosleep, clock_gettime */
#endif
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

struct cfg {
    size_t pool_threads;
    size_t consumers;
    size_t streams; /* per consumer */
    size_t max_n;
    uint64_t seed;
};

struct result {
    atomic_size_t streams, items, failed, not_run, stopped, early;
    atomic_size_t mismatches;
    pthread_mutex_t lock;
    char first[512];
};

static void report(struct result *res, const char *fmt, ...)
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

/* One stream's parameters and what its callbacks saw. */
struct sctx {
    parmap_pool *pool;
    uint64_t seed;
    size_t n;          /* SIZE_MAX: endless (something else stops it) */
    size_t track;      /* per-index arrays cover this many indices */
    unsigned fail_pm;  /* per-mille of attempts that fail */
    size_t cancel_at;  /* the callback of this index triggers the token */
    parmap_cancel *cancel;
    int nested;
    long sleep_us;     /* every item sleeps this long */
    size_t window;
    atomic_size_t consumed;
    atomic_size_t over_window;
    pt_gauge run, prod;
    atomic_uint *calls;
    atomic_size_t bad; /* problems seen inside callbacks */
    pt_progress *progress;
};

static int code_of(const struct sctx *c, size_t i, unsigned attempt)
{
    uint64_t h = pt_mix(c->seed ^ (i * 0x9e3779b97f4a7c15u) ^ attempt);
    if (h % 1000u >= c->fail_pm)
        return 0;
    return -(int)(1 + (h >> 20) % 1000u);
}

static int s_produce(void *ctx, size_t i, void *in)
{
    struct sctx *c = ctx;
    int rc = 1;
    pt_gauge_enter(&c->prod);
    if (i + 1 - atomic_load(&c->consumed) > c->window)
        atomic_fetch_add(&c->over_window, 1);
    if (i >= c->n || i >= c->track)
        rc = 0;
    else
        *(uint64_t *)in = pt_mix(c->seed + i);
    pt_gauge_leave(&c->prod);
    return rc;
}

static int s_inner(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = pt_f(*(const uint64_t *)in + i);
    return 0;
}

static int s_fn(void *ctx, size_t i, const void *in, void *out)
{
    struct sctx *c = ctx;
    pt_gauge_enter(&c->run);
    unsigned attempt = atomic_fetch_add(&c->calls[i], 1) + 1;
    if (*(const uint64_t *)in != pt_mix(c->seed + i))
        atomic_fetch_add(&c->bad, 1);
    if (c->cancel != NULL && i == c->cancel_at)
        parmap_cancel_trigger(c->cancel);
    if (c->nested && i % 11 == 4) {
        uint64_t a[8], b[8];
        for (size_t k = 0; k < 8; k++)
            a[k] = i * 8 + k;
        if (parmap_map(c->pool, 8, a, sizeof *a, b, sizeof *b, s_inner, NULL,
                       NULL) != 0)
            atomic_fetch_add(&c->bad, 1);
        for (size_t k = 0; k < 8; k++)
            if (b[k] != pt_f(a[k] + k))
                atomic_fetch_add(&c->bad, 1);
    }
    if (c->sleep_us > 0)
        pt_sleep_us(c->sleep_us);
    else if ((pt_mix(c->seed ^ i) & 31u) == 0)
        sched_yield();
    *(uint64_t *)out = pt_f(pt_mix(c->seed + i));
    int rc = code_of(c, i, attempt);
    if (c->progress != NULL)
        pt_progress_item_returns(c->progress, rc);
    pt_gauge_leave(&c->run);
    return rc;
}

struct consumer {
    const struct cfg *cfg;
    parmap_pool *pool;
    struct result *res;
    size_t id;
};

#define WHERE "seed=%" PRIu64 " consumer=%zu stream=%zu n=%zu ordered=%d " \
              "L=%zu P=%zu R=%zu fail_pm=%u ff=%d retries=%u cancel=%zu "  \
              "early=%zu: "
#define ARGS cfg->seed, cs->id, k, c.n == SIZE_MAX ? (size_t)0 : c.n,      \
             ordered, o.max_concurrency, o.prefetch, o.reorder, c.fail_pm, \
             fail_fast, o.retries, c.cancel ? c.cancel_at : (size_t)0, early

static void one_stream(struct consumer *cs, uint64_t *rng, size_t k)
{
    const struct cfg *cfg = cs->cfg;
    struct result *res = cs->res;
    struct sctx c;
    memset(&c, 0, sizeof c);
    c.pool = cs->pool;
    c.seed = pt_rand(rng);
    c.track = cfg->max_n + 1;
    static const unsigned rates[] = {0, 0, 0, 5, 50, 300};
    c.fail_pm = rates[pt_below(rng, sizeof rates / sizeof rates[0])];
    c.nested = pt_below(rng, 5) == 0;
    static const long sleeps[] = {0, 0, 0, 20, 100};
    c.sleep_us = sleeps[pt_below(rng, sizeof sleeps / sizeof sleeps[0])];
    if (c.sleep_us != 0)
        c.track = cfg->max_n / 4 + 1;
    c.n = (size_t)pt_below(rng, c.track);
    c.calls = calloc(c.track, sizeof *c.calls);
    if (c.calls == NULL) {
        report(res, "out of memory");
        return;
    }
    for (size_t i = 0; i < c.track; i++)
        atomic_init(&c.calls[i], 0);

    parmap_opts o = {0};
    int ordered = pt_below(rng, 2) == 0;
    int fail_fast = pt_below(rng, 5) == 0;
    o.flags = (ordered ? 0 : PARMAP_UNORDERED) |
              (fail_fast ? PARMAP_FAIL_FAST : 0);
    o.max_concurrency = (size_t)pt_below(rng, cfg->pool_threads + 3);
    o.prefetch = (size_t)pt_below(rng, 7);
    o.reorder = (size_t)pt_below(rng, 11);
    if (pt_below(rng, 3) == 0) {
        o.retries = 1 + (unsigned)pt_below(rng, 2);
        o.retry_delay = pt_below(rng, 2) ? 0.0 : 0.0005;
    }
    if (!fail_fast && pt_below(rng, 6) == 0) {
        o.halt.when = pt_below(rng, 2) ? PARMAP_HALT_SOON : PARMAP_HALT_NOW;
        o.halt.on = (enum parmap_halt_on)pt_below(rng, 3);
        o.halt.count = 1 + (size_t)pt_below(rng, 50);
    }
    if (pt_below(rng, 6) == 0) {
        if (parmap_cancel_create(&c.cancel) != 0) {
            report(res, "cancel_create failed");
            free((void *)c.calls);
            return;
        }
        c.cancel_at = (size_t)pt_below(rng, c.n + 1);
        o.cancel = c.cancel;
    }
    /* A few streams never end by themselves; something else stops them. */
    if (c.cancel != NULL && pt_below(rng, 2) == 0)
        c.n = SIZE_MAX;
    if (pt_below(rng, 20) == 0)
        o.timeout = 0.001 * (double)pt_below(rng, 20);
    size_t early = pt_below(rng, 8) == 0 ? (size_t)pt_below(rng, 200) + 1 : 0;
    if (c.n == SIZE_MAX && c.cancel_at >= c.track)
        c.cancel_at = c.track / 2;
    pt_progress prog;
    if (pt_below(rng, 3) == 0) {
        pt_progress_init(&prog, 0);
        o.progress = pt_progress_fn;
        o.progress_ctx = &prog;
        o.progress_interval = pt_below(rng, 2) ? 0.0 : 0.0002;
        c.progress = &prog;
    }
    size_t L = o.max_concurrency && o.max_concurrency < cfg->pool_threads
                   ? o.max_concurrency
                   : cfg->pool_threads;
    size_t P = o.prefetch ? o.prefetch : L, R = o.reorder ? o.reorder : 2 * L;
    c.window = L + P + R;

    parmap_stream *s = NULL;
    int rc = parmap_stream_create(&s, cs->pool, s_produce, &c,
                                  sizeof(uint64_t), s_fn, &c,
                                  sizeof(uint64_t), &o);
    if (rc != 0) {
        report(res, WHERE "create returned %d", ARGS, rc);
        free((void *)c.calls);
        parmap_cancel_destroy(c.cancel);
        return;
    }

    unsigned char *seen = calloc(c.track, 1);
    size_t got = 0, ok = 0, failed = 0, not_run = 0;
    int end = 1, failure_codes_seen = 0;
    parmap_stream_item it;
    while (seen != NULL && (early == 0 || got < early) &&
           (end = parmap_stream_next(s, &it)) == 1) {
        size_t i = it.index;
        if (i >= c.track) {
            report(res, WHERE "index %zu out of range", ARGS, i);
            break;
        }
        if (ordered && i != got)
            report(res, WHERE "position %zu holds %zu", ARGS, got, i);
        if (seen[i]++)
            report(res, WHERE "index %zu delivered twice", ARGS, i);
        unsigned calls = atomic_load(&c.calls[i]);
        if (*(const uint64_t *)it.in != pt_mix(c.seed + i))
            report(res, WHERE "item %zu input changed", ARGS, i);
        if (it.attempts == 0) {
            if ((it.status != PARMAP_ENOTRUN &&
                 it.status != PARMAP_ETIMEDOUT) ||
                calls != 0)
                report(res, WHERE "item %zu never ran but status %d, %u "
                       "calls", ARGS, i, it.status, calls);
            not_run++;
        } else {
            if (calls != it.attempts)
                report(res, WHERE "item %zu: %u attempts, %u calls", ARGS,
                       i, it.attempts, calls);
            if (it.attempts > 1 + o.retries)
                report(res, WHERE "item %zu: %u attempts", ARGS, i,
                       it.attempts);
            int want = code_of(&c, i, it.attempts);
            if (it.status != want)
                report(res, WHERE "item %zu status %d want %d", ARGS, i,
                       it.status, want);
            if (it.status == 0) {
                ok++;
                if (*(const uint64_t *)it.out != pt_f(pt_mix(c.seed + i)))
                    report(res, WHERE "item %zu wrong output", ARGS, i);
            } else {
                failed++;
                /* Not retried unless attempts ran out or it stopped. */
                if (it.attempts < 1 + o.retries && end == 1 &&
                    o.halt.when == PARMAP_HALT_NEVER && !fail_fast &&
                    c.cancel == NULL && o.timeout == 0.0 &&
                    o.progress == NULL)
                    report(res, WHERE "item %zu failed after %u of %u "
                           "attempts", ARGS, i, it.attempts,
                           1 + o.retries);
            }
            if (fail_fast && it.status != 0)
                failure_codes_seen = 1;
        }
        got++;
        atomic_fetch_add(&c.consumed, 1);
    }
    if (seen == NULL)
        report(res, "out of memory");

    if (early == 0 || got < early) {
        /* Ran to its end: check the code and that nothing is missing. */
        size_t produced = 0;
        for (size_t i = 0; i < c.track && seen != NULL; i++)
            produced += seen[i] != 0;
        if (produced != got)
            report(res, WHERE "%zu distinct indices in %zu deliveries",
                   ARGS, produced, got);
        parmap_stream_stats st;
        parmap_stream_inspect(s, &st);
        if (st.produced != got || st.delivered != got ||
            st.waiting + st.running + st.held != 0)
            report(res, WHERE "at the end: produced %zu delivered %zu "
                   "got %zu waiting %zu running %zu held %zu", ARGS,
                   st.produced, st.delivered, got, st.waiting, st.running,
                   st.held);
        int stopped = fail_fast || o.halt.when != PARMAP_HALT_NEVER ||
                      c.cancel != NULL || o.timeout > 0.0;
        if (!stopped && (end != 0 || got != c.n || not_run != 0))
            report(res, WHERE "ended with %d after %zu items (%zu not run)",
                   ARGS, end, got, not_run);
        if (end > 0)
            report(res, WHERE "loop ended with %d", ARGS, end);
        if (end == 0 && not_run != 0)
            report(res, WHERE "%zu items not run but the end code is 0",
                   ARGS, not_run);
        if (fail_fast && end != 0 && end != PARMAP_ECANCELED &&
            end != PARMAP_ETIMEDOUT && !failure_codes_seen)
            report(res, WHERE "fail-fast code %d but no failure delivered",
                   ARGS, end);
        if (end != 0)
            atomic_fetch_add(&res->stopped, 1);
        if (c.progress != NULL) {
            if (atomic_load(&prog.overlaps) ||
                atomic_load(&prog.decreasing) ||
                atomic_load(&prog.bad_total) || atomic_load(&prog.ahead) ||
                atomic_load(&prog.bad_elapsed))
                report(res, WHERE "progress rules broken", ARGS);
            if (atomic_load(&prog.calls) == 0 ||
                !pthread_equal(prog.last_thread, pthread_self()) ||
                prog.last_done != ok + failed || prog.last_failed != failed)
                report(res, WHERE "final progress call wrong: done %zu "
                       "failed %zu, want %zu %zu", ARGS, prog.last_done,
                       prog.last_failed, ok + failed, failed);
        }
    } else {
        atomic_fetch_add(&res->early, 1);
    }
    rc = parmap_stream_destroy(s);
    if (rc != 0)
        report(res, WHERE "destroy returned %d", ARGS, rc);
    if (atomic_load(&c.run.cur) != 0)
        report(res, WHERE "a callback runs after destroy", ARGS);
    if (atomic_load(&c.run.peak) > L)
        report(res, WHERE "%zu callbacks at once, limit %zu", ARGS,
               (size_t)atomic_load(&c.run.peak), L);
    if (atomic_load(&c.prod.peak) > 1)
        report(res, WHERE "producers overlapped", ARGS);
    if (atomic_load(&c.over_window) != 0)
        report(res, WHERE "producer asked beyond the window %zu times", ARGS,
               (size_t)atomic_load(&c.over_window));
    if (atomic_load(&c.bad) != 0)
        report(res, WHERE "%zu problems inside callbacks", ARGS,
               (size_t)atomic_load(&c.bad));
    atomic_fetch_add(&res->streams, 1);
    atomic_fetch_add(&res->items, got);
    atomic_fetch_add(&res->failed, failed);
    atomic_fetch_add(&res->not_run, not_run);
    free(seen);
    free((void *)c.calls);
    parmap_cancel_destroy(c.cancel);
}

static void *consumer_main(void *arg)
{
    struct consumer *cs = arg;
    uint64_t rng = pt_mix(cs->cfg->seed ^ pt_mix(cs->id + 1));
    for (size_t k = 0; k < cs->cfg->streams; k++)
        one_stream(cs, &rng, k);
    return NULL;
}

static int run(const struct cfg *cfg, struct result *res)
{
    memset(res, 0, sizeof *res);
    pthread_mutex_init(&res->lock, NULL);
    parmap_pool *pool = NULL;
    if (parmap_pool_create(&pool, cfg->pool_threads, NULL) != 0) {
        report(res, "pool_create failed");
        return -1;
    }
    struct consumer cs[8];
    pthread_t tids[8];
    size_t nc = cfg->consumers < 8 ? cfg->consumers : 8, started;
    for (started = 0; started < nc; started++) {
        cs[started] = (struct consumer){cfg, pool, res, started};
        if (pthread_create(&tids[started], NULL, consumer_main,
                           &cs[started]) != 0)
            break;
    }
    if (started < nc)
        report(res, "could not start consumer %zu", started);
    for (size_t i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    int rc = parmap_pool_destroy(pool);
    if (rc != 0)
        report(res, "pool_destroy returned %d", rc);
    pthread_mutex_destroy(&res->lock);
    return atomic_load(&res->mismatches) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : pt_seed();
    static const size_t pools[] = {1, 2, 3, 8};
    int quick = pt_quick();
    int failures = 0;
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows even if it hangs */
    printf("parmap stream stress: seed %" PRIu64 "%s\n", seed,
           quick ? " (quick)" : "");
    for (size_t p = 0; p < sizeof pools / sizeof pools[0]; p++) {
        struct cfg cfg = {
            .pool_threads = pools[p],
            .consumers = 3,
            .streams = quick ? 20 : 100,
            .max_n = quick ? 400 : 2000,
            .seed = seed + p,
        };
        struct result res;
        double t0 = pt_now();
        int rc = run(&cfg, &res);
        size_t done = atomic_load(&res.streams);
        if (done != cfg.consumers * cfg.streams)
            rc = -1;
        printf("pool %zu: %zu streams, %zu items, %zu failed, %zu not run, "
               "%zu stopped, %zu left early, %zu mismatches, %.2f s\n",
               cfg.pool_threads, done, (size_t)atomic_load(&res.items),
               (size_t)atomic_load(&res.failed),
               (size_t)atomic_load(&res.not_run),
               (size_t)atomic_load(&res.stopped),
               (size_t)atomic_load(&res.early),
               (size_t)atomic_load(&res.mismatches), pt_now() - t0);
        if (rc != 0) {
            printf("FAIL (rerun: stress_stream %" PRIu64 "): %s\n", seed,
                   res.first[0] ? res.first : "not every stream ran");
            failures++;
        }
    }
    printf("%s\n", failures ? "stress_stream: FAILED"
                            : "stress_stream: all streams correct");
    return failures ? 1 : 0;
}
