/*
 * Mixed randomised stress as a plain program (no Criterion), checked by the
 * "nothing lost" invariants of test/invariant.h after every call. Runs
 * under ThreadSanitizer (gcc and clang), helgrind and DRD, and is what
 * test/soak.sh keeps running for minutes.
 *
 * Each round creates two shared pools of random sizes; four caller threads
 * then run, at once and at random:
 *   - maps of random sizes, limits, chunk sizes, failure patterns, with
 *     fail-fast, halt rules, progress callbacks that may stop the map,
 *     cancellation tokens (triggered before, by an item, or by another
 *     thread after a random delay), deadlines, per-item deadlines, retries
 *     (at once or after a delay, filtered or not), items that try to
 *     destroy their own pool, and nested maps on the same or the other
 *     pool;
 *   - streams (ordered or not, endless ones that something must stop,
 *     producer errors, early destroy) and task groups (WAIT_ANY,
 *     FIRST_ERROR, WAIT_ALL, halt, cancel, retries);
 *   - pool races: a map with delayed retries runs on a private pool in
 *     another thread while this thread destroys a second private pool,
 *     then keeps calling destroy on the busy one, which must answer
 *     PARMAP_EBUSY until the map no longer touches the pool.
 *
 * Usage: stress_mixed [-t SECONDS] [seed]
 *   seed      or PARMAP_TEST_SEED; the clock otherwise.
 *   -t N      run rounds until N seconds have passed (for soak.sh);
 *             otherwise a fixed number of rounds.
 *   PARMAP_TEST_QUICK=1 shrinks the rounds (helgrind, DRD);
 *   PARMAP_STRESS_ROUNDS, PARMAP_STRESS_OPS (per caller and round) and
 *   PARMAP_STRESS_MAX_N (largest map) set them one by one;
 *   PARMAP_STRESS_VERBOSE=1 prints every call and how long it took.
 * Prints a summary; exits 1 on any violated invariant, with the seed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "scenario.h"

#define CALLERS 4

static struct {
    atomic_size_t maps, items, not_run, failed, nested, destroys, cancelled,
        timed_out, halted, streams, stream_items, groups, tasks, races,
        ebusy, rounds;
} stats;

static inv_report global; /* the first violation of the whole run */
static uint64_t run_seed;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t rnd(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15u;
    return inv_mix(*s);
}

static uint64_t below(uint64_t *s, uint64_t bound)
{
    return bound == 0 ? 0 : rnd(s) % bound;
}

/* Copies a caller's violation into the global report, once. */
static void merge(inv_report *local)
{
    if (inv_violations(local) == 0)
        return;
    size_t v = inv_violations(local);
    pthread_mutex_lock(&local->lock);
    inv_fail(&global, "%s", local->first);
    pthread_mutex_unlock(&local->lock);
    atomic_fetch_add(&global.violations, v - 1);
    atomic_store(&local->violations, 0);
    local->first[0] = '\0';
}

/* ------------------------------------------------------------------------ */
/* A thread that triggers a token after a random delay                      */
/* ------------------------------------------------------------------------ */

typedef struct trigger {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    parmap_cancel *token; /* the request; NULL when idle */
    long delay_us;
    int quit;
    pthread_t tid;
    uint64_t rng;
} trigger;

static void *trigger_main(void *arg)
{
    trigger *t = arg;
    pthread_mutex_lock(&t->lock);
    for (;;) {
        while (t->token == NULL && !t->quit)
            pthread_cond_wait(&t->cv, &t->lock);
        if (t->token == NULL)
            break;
        parmap_cancel *tok = t->token;
        long d = t->delay_us;
        pthread_mutex_unlock(&t->lock);
        if (d > 0)
            sleep_us(d);
        else
            sched_yield();
        parmap_cancel_trigger(tok);
        pthread_mutex_lock(&t->lock);
        t->token = NULL;
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

static void trigger_arm(void *ctx, parmap_cancel *token)
{
    trigger *t = ctx;
    pthread_mutex_lock(&t->lock);
    t->token = token;
    t->delay_us = (long)below(&t->rng, 4) == 0 ? 0 : (long)below(&t->rng, 1500);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->lock);
}

/* Waits until the token was triggered, so it can be destroyed. */
static void trigger_settle(void *ctx)
{
    trigger *t = ctx;
    pthread_mutex_lock(&t->lock);
    while (t->token != NULL)
        pthread_cond_wait(&t->cv, &t->lock);
    pthread_mutex_unlock(&t->lock);
}

/* ------------------------------------------------------------------------ */
/* Callers                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct caller {
    size_t id;
    uint64_t rng;
    parmap_pool *a, *b;
    size_t ops, max_n;
    trigger trig;
    sc_async async;
    inv_report rep;
} caller;

static void random_halt(uint64_t *rng, parmap_halt *h)
{
    h->when = below(rng, 2) ? PARMAP_HALT_SOON : PARMAP_HALT_NOW;
    h->on = (enum parmap_halt_on)below(rng, 3);
    if (below(rng, 3) == 0)
        h->percent = (double)(1 + below(rng, 60));
    else
        h->count = 1 + (size_t)below(rng, 30);
}

static enum sc_cancel random_cancel(uint64_t *rng)
{
    switch (below(rng, 10)) {
    case 0: return SC_CANCEL_BEFORE;
    case 1: case 2: case 3: case 4: return SC_CANCEL_AT_INDEX;
    default: return SC_CANCEL_ASYNC;
    }
}

static void one_map(caller *c)
{
    uint64_t *rng = &c->rng;
    sc_map_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.pool = below(rng, 4) == 0 ? c->b : c->a;
    switch (below(rng, 4)) {
    case 0: sp.n = (size_t)below(rng, 17); break;
    case 1: sp.n = (size_t)below(rng, 257); break;
    default: sp.n = (size_t)below(rng, c->max_n + 1); break;
    }
    sp.tag = rnd(rng);
    static const size_t ins[] = {0, 8, 8, 24}, outs[] = {0, 8, 8, 16};
    sp.in_size = ins[below(rng, 4)];
    sp.out_size = outs[below(rng, 4)];
    static const unsigned rates[] = {0, 0, 0, 1, 20, 300, 1000};
    sp.fail_pm = rates[below(rng, 7)];
    sp.max_fail_attempts = (unsigned)below(rng, 4);
    if (below(rng, 5) == 0) {
        sp.nest_pool = below(rng, 2) ? c->a : c->b;
        sp.nest_pm = below(rng, 2) ? 20 : 200;
    }
    if (below(rng, 20) == 0)
        sp.destroy_pm = 5;
    static const unsigned spins[] = {0, 0, 0, 2000, 20000};
    sp.spin_ns_max = spins[below(rng, 5)];
    sp.poll_stop = below(rng, 2) == 0;

    parmap_opts *o = &sp.opts;
    o->flags = below(rng, 5) == 0 ? PARMAP_FAIL_FAST : 0;
    o->max_concurrency = (size_t)below(rng, parmap_pool_size(sp.pool) + 3);
    switch (below(rng, 5)) {
    case 0: o->chunk_size = 1; break;
    case 1: o->chunk_size = 1 + (size_t)below(rng, 64); break;
    case 2: o->chunk_size = sp.n + 5; break;
    default: o->chunk_size = 0; break;
    }
    if (below(rng, 7) == 0)
        random_halt(rng, &o->halt);
    if (below(rng, 10) == 0) {
        o->timeout = 1e-6 * (double)(50 + below(rng, 3000));
        if (sp.spin_ns_max == 0)
            sp.spin_ns_max = 20000;
    }
    if (below(rng, 10) == 0)
        o->item_timeout = 1e-6 * (double)(1 + below(rng, 50));
    if (below(rng, 4) == 0) {
        o->retries = 1 + (unsigned)below(rng, 3);
        if (below(rng, 2))
            o->retry_delay = 1e-6 * (double)(10 + below(rng, 500));
        if (below(rng, 3) == 0)
            o->retry_delay_max = 1e-6 * (double)(10 + below(rng, 200));
        sp.retry_if = below(rng, 5) == 0;
    }
    sp.use_status = below(rng, 5) != 0;
    sp.use_summary = below(rng, 5) != 0;
    sp.use_records = below(rng, 5) == 0;
    if (below(rng, 3) == 0) {
        sp.use_progress = 1;
        o->progress_interval = below(rng, 2) ? 0.0 : 0.0005;
        if (sp.n > 1 && below(rng, 5) == 0)
            sp.progress_cancel_at = 1 + (size_t)below(rng, sp.n - 1);
    }
    if (below(rng, 7) == 0) {
        sp.cancel = random_cancel(rng);
        sp.cancel_index = (size_t)below(rng, sp.n + 1);
        sp.async = &c->async;
    }

    sc_map_stats st;
    snprintf(c->rep.context, sizeof c->rep.context,
             "seed %" PRIu64 " caller %zu map n=%zu tag=%" PRIu64, run_seed,
             c->id, sp.n, sp.tag);
    sc_run_map(&c->rep, &sp, &st);
    atomic_fetch_add(&stats.maps, 1);
    atomic_fetch_add(&stats.items, st.ok + st.failed);
    atomic_fetch_add(&stats.failed, st.failed);
    atomic_fetch_add(&stats.not_run, st.not_run);
    atomic_fetch_add(&stats.nested, st.nested);
    atomic_fetch_add(&stats.destroys, st.destroys);
    if (st.rc == PARMAP_ECANCELED)
        atomic_fetch_add(&stats.cancelled, 1);
    else if (st.rc == PARMAP_ETIMEDOUT)
        atomic_fetch_add(&stats.timed_out, 1);
    else if (st.rc != 0 && st.rc != PARMAP_EFAILED)
        atomic_fetch_add(&stats.halted, 1);
}

static void one_stream(caller *c)
{
    uint64_t *rng = &c->rng;
    sc_stream_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.pool = below(rng, 4) == 0 ? c->b : c->a;
    sp.cap = 1 + (size_t)below(rng, c->max_n / 2 + 1);
    sp.n = (size_t)below(rng, sp.cap + 1);
    sp.tag = rnd(rng);
    sp.ordered = below(rng, 2) == 0;
    static const unsigned rates[] = {0, 0, 0, 5, 50, 300};
    sp.fail_pm = rates[below(rng, 6)];
    sp.max_fail_attempts = (unsigned)below(rng, 3);
    if (below(rng, 6) == 0) {
        sp.nest_pool = below(rng, 2) ? c->a : c->b;
        sp.nest_pm = 100;
    }
    sp.spin_ns_max = below(rng, 3) == 0 ? 10000 : 0;
    sp.poll_stop = below(rng, 2) == 0;
    if (below(rng, 8) == 0)
        sp.producer_error = -5000 - (int)below(rng, 1000);
    parmap_opts *o = &sp.opts;
    o->flags = below(rng, 6) == 0 ? PARMAP_FAIL_FAST : 0;
    o->max_concurrency = (size_t)below(rng, parmap_pool_size(sp.pool) + 3);
    o->prefetch = (size_t)below(rng, 7);
    o->reorder = (size_t)below(rng, 11);
    if (below(rng, 4) == 0) {
        o->retries = 1 + (unsigned)below(rng, 2);
        o->retry_delay = below(rng, 2) ? 0.0 : 0.0002;
    }
    if (below(rng, 7) == 0)
        random_halt(rng, &o->halt);
    if (below(rng, 12) == 0) {
        o->timeout = 1e-6 * (double)(100 + below(rng, 3000));
        sp.spin_ns_max = 20000;
    }
    if (below(rng, 6) == 0) {
        sp.cancel = random_cancel(rng);
        sp.cancel_index = (size_t)below(rng, sp.n + 1);
        sp.async = &c->async;
        /* Some streams never end by themselves: the token ends them (or
         * the tracking cap does, if the item that triggers is past it). */
        if (sp.cancel != SC_CANCEL_BEFORE && below(rng, 2) == 0)
            sp.n = SIZE_MAX;
    }
    if (below(rng, 10) == 0)
        sp.destroy_after = 1 + (size_t)below(rng, sp.cap);

    sc_stream_stats st;
    snprintf(c->rep.context, sizeof c->rep.context,
             "seed %" PRIu64 " caller %zu stream tag=%" PRIu64, run_seed,
             c->id, sp.tag);
    sc_run_stream(&c->rep, &sp, &st);
    atomic_fetch_add(&stats.streams, 1);
    atomic_fetch_add(&stats.stream_items, st.delivered);
    atomic_fetch_add(&stats.not_run, st.not_run);
}

static void one_group(caller *c)
{
    uint64_t *rng = &c->rng;
    sc_group_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.pool = below(rng, 4) == 0 ? c->b : c->a;
    sp.ntasks = (size_t)below(rng, 150);
    sp.tag = rnd(rng);
    static const unsigned rates[] = {0, 0, 10, 100, 500};
    sp.fail_pm = rates[below(rng, 5)];
    sp.max_fail_attempts = (unsigned)below(rng, 3);
    sp.spin_ns_max = below(rng, 3) == 0 ? 20000 : 0;
    parmap_opts *o = &sp.opts;
    o->max_concurrency = (size_t)below(rng, parmap_pool_size(sp.pool) + 2);
    if (below(rng, 3) == 0) {
        o->retries = 1 + (unsigned)below(rng, 2);
        o->retry_delay = below(rng, 2) ? 0.0 : 0.0001;
    }
    if (below(rng, 7) == 0)
        random_halt(rng, &o->halt);
    if (below(rng, 15) == 0) {
        o->timeout = 1e-6 * (double)(200 + below(rng, 3000));
        sp.spin_ns_max = 20000;
    }
    sp.wait_any = below(rng, 2) == 0;
    sp.first_error = below(rng, 3) == 0;
    if (below(rng, 7) == 0) {
        sp.cancel = random_cancel(rng);
        sp.cancel_index = (size_t)below(rng, sp.ntasks + 1);
        sp.async = &c->async;
    }
    sc_group_stats st;
    snprintf(c->rep.context, sizeof c->rep.context,
             "seed %" PRIu64 " caller %zu group tag=%" PRIu64, run_seed,
             c->id, sp.tag);
    sc_run_group(&c->rep, &sp, &st);
    atomic_fetch_add(&stats.groups, 1);
    atomic_fetch_add(&stats.tasks, sp.ntasks);
}

/* ---- Destroy racing with a map that is finishing on another pool ------- */

typedef struct race {
    parmap_pool *pool;
    inv_map m;
    inv_report *rep;
    parmap_opts o;
    int *status;
    atomic_int started;
    int rc;
} race;

static int race_fn(void *ctx, size_t i, const void *in, void *out)
{
    race *r = ctx;
    unsigned a = inv_attempt_begin(&r->m, i, in, out);
    atomic_store(&r->started, 1);
    /* Every third item fails its first attempt, so the map ends waiting
     * for delayed retries after its main pass. */
    int rc = (i % 3 == 0 && a == 1) ? inv_fail_code(i) : 0;
    if (rc == 0)
        inv_write_out(&r->m, i, out);
    inv_attempt_end(&r->m, i, rc);
    return rc;
}

static void *race_main(void *arg)
{
    race *r = arg;
    sc_test_thread = 1;
    r->rc = parmap_map(r->pool, r->m.n, r->m.in, r->m.in_size, r->m.out,
                       r->m.out_size, race_fn, r, &r->o);
    return NULL;
}

static void one_race(caller *c)
{
    uint64_t *rng = &c->rng;
    parmap_pool *p1 = NULL, *p2 = NULL;
    race r;
    memset(&r, 0, sizeof r);
    snprintf(c->rep.context, sizeof c->rep.context,
             "seed %" PRIu64 " caller %zu pool race", run_seed, c->id);
    if (parmap_pool_create(&p1, 1 + (size_t)below(rng, 3), NULL) != 0 ||
        parmap_pool_create(&p2, 1 + (size_t)below(rng, 3), NULL) != 0) {
        inv_fail(&c->rep, "pool create failed");
        parmap_pool_destroy(p1);
        return;
    }
    size_t n = 1 + (size_t)below(rng, 200);
    if (inv_map_init(&r.m, n, rnd(rng), 8, 8) != 0 ||
        (r.status = malloc(n * sizeof *r.status)) == NULL) {
        inv_fail(&c->rep, "test out of memory");
        inv_map_free(&r.m);
        parmap_pool_destroy(p1);
        parmap_pool_destroy(p2);
        return;
    }
    r.pool = p2;
    r.rep = &c->rep;
    atomic_init(&r.started, 0);
    r.o.status = r.status;
    r.o.retries = 1;
    r.o.retry_delay = below(rng, 2) ? 0.0 : 1e-6 * (double)(100 + below(rng, 2000));
    pthread_t t;
    if (pthread_create(&t, NULL, race_main, &r) != 0) {
        inv_fail(&c->rep, "pthread_create failed");
    } else {
        /* Destroying an idle pool while another pool finishes a map. */
        int rc = parmap_pool_destroy(p1);
        if (rc != 0)
            inv_fail(&c->rep, "destroy of an idle pool returned %d", rc);
        p1 = NULL;
        /* The map must have started before destroy may be tried on its
         * pool (a call must not start on a destroyed pool). */
        while (!atomic_load(&r.started))
            sched_yield();
        for (;;) {
            rc = parmap_pool_destroy(p2);
            if (rc == 0)
                break;
            if (rc != PARMAP_EBUSY) {
                inv_fail(&c->rep, "destroy of a busy pool returned %d", rc);
                break;
            }
            atomic_fetch_add(&stats.ebusy, 1);
            if (below(rng, 2))
                sched_yield();
        }
        if (rc == 0)
            p2 = NULL;
        pthread_join(t, NULL);
        inv_expect e;
        memset(&e, 0, sizeof e);
        e.retries = 1;
        e.has_status = 1;
        inv_map_check(&c->rep, &r.m, r.rc, r.status, NULL, NULL, &e);
    }
    parmap_pool_destroy(p1);
    parmap_pool_destroy(p2);
    free(r.status);
    inv_map_free(&r.m);
    atomic_fetch_add(&stats.races, 1);
}

static int verbose;

static void *caller_main(void *arg)
{
    caller *c = arg;
    sc_test_thread = 1;
    for (size_t k = 0; k < c->ops && inv_violations(&global) == 0; k++) {
        double t0 = verbose ? now_s() : 0.0;
        switch (below(&c->rng, 12)) {
        case 0: case 1: one_stream(c); break;
        case 2: case 3: one_group(c); break;
        case 4: one_race(c); break;
        default: one_map(c); break;
        }
        if (verbose)
            printf("caller %zu op %zu: %s, %.3f s\n", c->id, k,
                   c->rep.context, now_s() - t0);
        merge(&c->rep);
    }
    return NULL;
}

static int run_round(uint64_t seed, size_t ops, size_t max_n)
{
    static const size_t sizes_a[] = {1, 2, 3, 4, 8}, sizes_b[] = {1, 2, 3};
    uint64_t rng = seed;
    parmap_pool *a = NULL, *b = NULL;
    size_t na = sizes_a[below(&rng, 5)], nb = sizes_b[below(&rng, 3)];
    if (parmap_pool_create(&a, na, NULL) != 0 ||
        parmap_pool_create(&b, nb, NULL) != 0) {
        inv_fail(&global, "seed %" PRIu64 ": pool create failed", seed);
        parmap_pool_destroy(a);
        return -1;
    }
    caller cs[CALLERS];
    pthread_t tids[CALLERS] = {0};
    size_t started = 0;
    for (size_t i = 0; i < CALLERS; i++) {
        caller *c = &cs[i];
        memset(c, 0, sizeof *c);
        c->id = i;
        c->rng = inv_mix(inv_mix(seed) + (i + 1) * 0x632be59bd9b4e019u);
        c->a = a;
        c->b = b;
        c->ops = ops;
        c->max_n = max_n;
        inv_report_init(&c->rep);
        pthread_mutex_init(&c->trig.lock, NULL);
        pthread_cond_init(&c->trig.cv, NULL);
        c->trig.rng = inv_mix(c->rng + 7);
        c->async.arm = trigger_arm;
        c->async.settle = trigger_settle;
        c->async.ctx = &c->trig;
    }
    for (; started < CALLERS; started++) {
        if (pthread_create(&cs[started].trig.tid, NULL, trigger_main,
                           &cs[started].trig) != 0)
            break;
        if (pthread_create(&tids[started], NULL, caller_main,
                           &cs[started]) != 0) {
            pthread_mutex_lock(&cs[started].trig.lock);
            cs[started].trig.quit = 1;
            pthread_cond_broadcast(&cs[started].trig.cv);
            pthread_mutex_unlock(&cs[started].trig.lock);
            pthread_join(cs[started].trig.tid, NULL);
            break;
        }
    }
    if (started < CALLERS)
        inv_fail(&global, "could not start caller thread %zu", started);
    for (size_t i = 0; i < started; i++) {
        pthread_join(tids[i], NULL);
        trigger *t = &cs[i].trig;
        pthread_mutex_lock(&t->lock);
        t->quit = 1;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->lock);
        pthread_join(t->tid, NULL);
    }
    for (size_t i = 0; i < CALLERS; i++) {
        merge(&cs[i].rep);
        inv_report_destroy(&cs[i].rep);
        pthread_mutex_destroy(&cs[i].trig.lock);
        pthread_cond_destroy(&cs[i].trig.cv);
    }
    int rc = parmap_pool_destroy(a);
    if (rc != 0)
        inv_fail(&global, "seed %" PRIu64 ": destroy of pool A = %d", seed, rc);
    rc = parmap_pool_destroy(b);
    if (rc != 0)
        inv_fail(&global, "seed %" PRIu64 ": destroy of pool B = %d", seed, rc);
    atomic_fetch_add(&stats.rounds, 1);
    return 0;
}

static void print_stats(double elapsed)
{
    printf("%zu rounds, %zu maps (%zu items done, %zu failed, %zu not run, "
           "%zu nested maps, %zu cancelled, %zu timed out, %zu halted, "
           "%zu destroys from items), %zu streams (%zu items), %zu groups "
           "(%zu tasks), %zu pool races (%zu EBUSY), %.1f s\n",
           (size_t)atomic_load(&stats.rounds), (size_t)atomic_load(&stats.maps),
           (size_t)atomic_load(&stats.items), (size_t)atomic_load(&stats.failed),
           (size_t)atomic_load(&stats.not_run),
           (size_t)atomic_load(&stats.nested),
           (size_t)atomic_load(&stats.cancelled),
           (size_t)atomic_load(&stats.timed_out),
           (size_t)atomic_load(&stats.halted),
           (size_t)atomic_load(&stats.destroys),
           (size_t)atomic_load(&stats.streams),
           (size_t)atomic_load(&stats.stream_items),
           (size_t)atomic_load(&stats.groups), (size_t)atomic_load(&stats.tasks),
           (size_t)atomic_load(&stats.races), (size_t)atomic_load(&stats.ebusy),
           elapsed);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    double seconds = 0.0;
    int argi = 1;
    if (argi < argc && strcmp(argv[argi], "-t") == 0) {
        if (argi + 1 >= argc) {
            fprintf(stderr, "usage: stress_mixed [-t SECONDS] [seed]\n");
            return 2;
        }
        seconds = strtod(argv[argi + 1], NULL);
        argi += 2;
    }
    const char *env = getenv("PARMAP_TEST_SEED");
    if (argi < argc)
        run_seed = strtoull(argv[argi], NULL, 0);
    else if (env != NULL && *env != '\0')
        run_seed = strtoull(env, NULL, 0);
    else
        run_seed = inv_mix((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    const char *q = getenv("PARMAP_TEST_QUICK");
    int quick = q != NULL && *q != '\0' && strcmp(q, "0") != 0;
    size_t rounds = quick ? 2 : 8;
    size_t ops = quick ? 12 : 100;
    size_t max_n = quick ? 200 : 1500;
    /* Finer control for the slowest tools (DRD). */
    if ((env = getenv("PARMAP_STRESS_ROUNDS")) != NULL && *env != '\0')
        rounds = (size_t)strtoull(env, NULL, 0);
    if ((env = getenv("PARMAP_STRESS_OPS")) != NULL && *env != '\0')
        ops = (size_t)strtoull(env, NULL, 0);
    if ((env = getenv("PARMAP_STRESS_MAX_N")) != NULL && *env != '\0')
        max_n = (size_t)strtoull(env, NULL, 0);
    verbose = (env = getenv("PARMAP_STRESS_VERBOSE")) != NULL && *env != '\0';

    inv_report_init(&global);
    printf("parmap stress_mixed: seed %" PRIu64 "%s", run_seed,
           quick ? " (quick)" : "");
    if (seconds > 0)
        printf(", for %.0f s", seconds);
    printf("\n");
    fflush(stdout);

    double t0 = now_s(), last_print = t0;
    for (uint64_t r = 0;; r++) {
        run_round(inv_mix(run_seed + r), ops, max_n);
        if (inv_violations(&global) != 0)
            break;
        double t = now_s();
        if (seconds > 0) {
            if (t - t0 >= seconds)
                break;
            if (t - last_print >= 10.0) {
                print_stats(t - t0);
                last_print = t;
            }
        } else if (r + 1 >= rounds) {
            break;
        }
    }
    print_stats(now_s() - t0);
    size_t v = inv_violations(&global);
    if (v != 0) {
        printf("FAIL (seed %" PRIu64 ", rerun: stress_mixed %" PRIu64 "): %zu "
               "violation(s); first: %s\n", run_seed, run_seed, v,
               global.first);
        return 1;
    }
    printf("stress_mixed: every call kept every item\n");
    return 0;
}
