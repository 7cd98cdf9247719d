/*
 * Failure paths that test/test_fault.c does not walk: allocation failures
 * while streams, groups and maps with delayed retries are running, not
 * only while they are created.
 *
 * Each walk arms the k-th fault site (k = 0, 1, 2, ...) and then runs the
 * same scenario, until a run where no fault fired. Whatever failed, every
 * call must still account for every item (test/invariant.h checks each
 * index), a failing call must return PARMAP_ENOMEM (or the item that met
 * the failure must report it), and the pools must stay usable. The ASan
 * and valgrind runs of this suite check that each failure path frees what
 * it allocated.
 *
 *   - a token: parmap_cancel_create() fails cleanly;
 *   - a map whose failed items wait for a delayed retry: when the retry
 *     queue cannot grow, the failure stands and is reported, never lost;
 *   - a group whose tasks submit children from inside (a submit that
 *     fails adds nothing and the parent reports ENOMEM) and are retried
 *     after a delay;
 *   - a stream whose items run nested maps with delayed retries and create
 *     task groups;
 *   - all of these at once, from three threads on one pool.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <stdint.h>

#include "common.h"
#include "fault.h"
#include "invariant.h"

TestSuite(fault_more, .timeout = 120.);

#define MAX_SITES 5000L

/* ------------------------------------------------------------------------ */
/* Tokens                                                                   */
/* ------------------------------------------------------------------------ */

Test(fault_more, cancel_create_fails_cleanly)
{
    parmap_cancel *const sentinel = (parmap_cancel *)(uintptr_t)0x5e771e;
    long k;
    for (k = 0; k < 10; k++) {
        parmap_cancel *c = sentinel;
        parmap__fault_arm(k);
        int rc = parmap_cancel_create(&c);
        int fired = parmap__fault_fired();
        parmap__fault_arm(-1);
        if (!fired) {
            cr_assert_eq(rc, 0);
            cr_assert_neq(c, sentinel);
            cr_assert_eq(parmap_cancel_triggered(c), 0);
            parmap_cancel_destroy(c);
            break;
        }
        cr_assert_eq(rc, PARMAP_ENOMEM, "site %ld: %d", k, rc);
        cr_assert_eq(c, sentinel, "site %ld: out-pointer written", k);
    }
    cr_assert_eq(k, 1, "a token has exactly one fault site, saw %ld", k);
}

/* ------------------------------------------------------------------------ */
/* Maps whose retries wait in the not-before queue                          */
/* ------------------------------------------------------------------------ */

/* Every fifth item fails its first two attempts; with two retries after a
 * delay it then succeeds, unless its retry could not be queued. */
static int retry_item(void *ctx, size_t i, const void *in, void *out)
{
    inv_map *m = ctx;
    unsigned a = inv_attempt_begin(m, i, in, out);
    int rc = (i % 5 == 0 && a <= 2) ? -7100 - (int)a : 0;
    if (rc == 0)
        inv_write_out(m, i, out);
    inv_attempt_end(m, i, rc);
    return rc;
}

/* Runs the map and checks it; returns the number of items that failed. */
static size_t run_retry_map(parmap_pool *pool, size_t n, const char *where)
{
    inv_map m;
    cr_assert_eq(inv_map_init(&m, n, 0x7e7 + n, 8, 8), 0);
    int *status = malloc(n * sizeof *status);
    parmap_record *rec = malloc(n * sizeof *rec);
    cr_assert(status != NULL && rec != NULL);
    parmap_summary sum;
    parmap_opts o = {.status = status, .summary = &sum, .records = rec,
                     .retries = 2, .retry_delay = 1e-5,
                     .progress = inv_progress_fn, .progress_ctx = &m};
    int rc = parmap_map(pool, n, m.in, 8, m.out, 8, retry_item, &m, &o);

    inv_report r;
    inv_report_init(&r);
    snprintf(r.context, sizeof r.context, "%s", where);
    inv_expect e;
    memset(&e, 0, sizeof e);
    e.retries = 2;
    e.has_status = e.has_summary = e.has_records = e.has_progress = 1;
    inv_map_check(&r, &m, rc, status, &sum, rec, &e);
    cr_assert_eq(inv_violations(&r), 0, "%s", r.first);
    inv_report_destroy(&r);
    /* A retry that could not be queued leaves its item failed with the
     * code of its last attempt: the map reports it, it is not lost. */
    for (size_t i = 0; i < n; i++)
        if (status[i] != 0)
            cr_assert(i % 5 == 0 && (status[i] == -7101 ||
                                     status[i] == -7102),
                      "%s: item %zu status %d", where, i, status[i]);
    cr_assert(rc == 0 || rc == PARMAP_EFAILED, "%s: rc %d", where, rc);
    size_t failed = sum.failed;
    free(status);
    free(rec);
    inv_map_free(&m);
    return failed;
}

static void walk_retry_map(size_t threads, size_t n)
{
    parmap_pool *pool;
    cr_assert_eq(parmap_pool_create(&pool, threads, NULL), 0);
    long k;
    size_t failures = 0;
    for (k = 0; k < MAX_SITES; k++) {
        char where[64];
        snprintf(where, sizeof where, "pool %zu, site %ld", threads, k);
        parmap__fault_arm(k);
        size_t failed = run_retry_map(pool, n, where);
        int fired = parmap__fault_fired();
        parmap__fault_arm(-1);
        if (!fired) {
            cr_assert_eq(failed, 0, "%s: no fault, %zu failed", where,
                         failed);
            break;
        }
        failures += failed != 0;
    }
    cr_assert_lt(k, MAX_SITES);
    /* The retry queue starts empty and grows: at least its first
     * allocation is a site that makes an item's failure final. */
    cr_assert_geq(k, 1, "pool %zu: no fault site in a map with delayed "
                  "retries", threads);
    cr_assert_geq(failures, 1, "pool %zu: a failed retry queue made no item "
                  "fail", threads);
    cr_log_info("map with delayed retries, pool %zu: %ld fault sites, %zu "
                "made an item's failure final", threads, k, failures);
    /* Still usable. */
    cr_assert_eq(run_retry_map(pool, 1223, "after the walk"), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(fault_more, delayed_retry_queue_failure_keeps_the_failure_on_1_thread)
{
    walk_retry_map(1, 100);
}

Test(fault_more, delayed_retry_queue_failure_keeps_the_failure_on_3_threads)
{
    walk_retry_map(3, 300);
}

/* ------------------------------------------------------------------------ */
/* Groups whose tasks submit children and are retried after a delay         */
/* ------------------------------------------------------------------------ */

struct gtask {
    struct gworld *w;
    size_t depth;
    int fails;            /* the first this many attempts fail */
    atomic_uint calls;
    atomic_int last_rc;
    atomic_int child_rc;  /* what submitting the child returned */
    atomic_int submitted; /* the child was added */
    size_t child;         /* index of its child in w->tasks */
};

struct gworld {
    parmap_group *g;
    struct gtask tasks[256];
    atomic_size_t used;
};

static int gtask_fn(void *ctx);

static int gtask_fn(void *ctx)
{
    struct gtask *t = ctx;
    unsigned a = atomic_fetch_add(&t->calls, 1) + 1;
    int rc = 0;
    if (a == 1 && t->depth < 2) {
        size_t c = atomic_fetch_add(&t->w->used, 1);
        if (c < 256) {
            struct gtask *ch = &t->w->tasks[c];
            ch->w = t->w;
            ch->depth = t->depth + 1;
            ch->fails = (int)(c % 3 == 0);
            t->child = c;
            int s = parmap_group_submit(t->w->g, gtask_fn, ch, NULL);
            atomic_store(&t->child_rc, s);
            if (s == 0)
                atomic_store(&t->submitted, 1);
            else
                rc = s; /* The parent reports what went wrong. */
        }
    }
    if (rc == 0 && (int)a <= t->fails)
        rc = -7200;
    atomic_store(&t->last_rc, rc);
    return rc;
}

/* Creates a group, submits `roots` tasks that each submit a child (and
 * that child a grandchild), waits for all, and checks every task that was
 * added. Returns 1 if some call met an allocation failure. */
static int run_group_world(parmap_pool *pool, size_t roots, const char *where)
{
    static struct gworld w; /* big: not on the stack */
    memset(&w, 0, sizeof w);
    atomic_init(&w.used, roots);
    parmap_opts o = {.retries = 1, .retry_delay = 1e-5};
    int rc = parmap_group_create(&w.g, pool, &o);
    if (rc != 0) {
        cr_assert_eq(rc, PARMAP_ENOMEM, "%s: group_create %d", where, rc);
        return 1;
    }
    int met = 0;
    size_t added = 0;
    unsigned char in_group[256] = {0};
    for (size_t i = 0; i < roots; i++) {
        struct gtask *t = &w.tasks[i];
        t->w = &w;
        t->fails = (int)(i % 2);
        rc = parmap_group_submit(w.g, gtask_fn, t, NULL);
        if (rc == 0) {
            in_group[i] = 1;
            added++;
        } else {
            cr_assert_eq(rc, PARMAP_ENOMEM, "%s: submit %d", where, rc);
            met = 1;
        }
    }
    cr_assert_eq(parmap_group_wait(w.g, PARMAP_WAIT_ALL, -1.0, NULL, NULL),
                 0);
    /* Children were added by their parents. */
    size_t used = atomic_load(&w.used);
    for (size_t i = 0; i < roots + 256 && i < used && i < 256; i++) {
        struct gtask *t = &w.tasks[i];
        if (!in_group[i])
            continue;
        if (atomic_load(&t->submitted)) {
            in_group[t->child] = 1;
            added++;
        }
    }
    size_t done = 0, pending = 0;
    cr_assert_eq(parmap_group_counts(w.g, &done, &pending), 0);
    cr_assert_eq(pending, 0, "%s", where);
    cr_assert_eq(done, added, "%s: %zu done, %zu tasks were added", where,
                 done, added);
    /* Every added task ran (nothing stops this group), as often as its
     * failures and the retry allow, and reports its last attempt. */
    for (size_t id = 0; id < done; id++) {
        int st;
        unsigned att;
        cr_assert_eq(parmap_group_task(w.g, id, &st, &att), 0);
        cr_assert(att >= 1 && att <= 2, "%s: task %zu ran %u times", where,
                  id, att);
    }
    for (size_t i = 0; i < 256; i++) {
        if (!in_group[i])
            continue;
        struct gtask *t = &w.tasks[i];
        unsigned calls = atomic_load(&t->calls);
        cr_assert(calls >= 1, "%s: task %zu never ran", where, i);
        int child_rc = atomic_load(&t->child_rc);
        if (child_rc != 0) {
            cr_assert_eq(child_rc, PARMAP_ENOMEM, "%s: child submit %d",
                         where, child_rc);
            met = 1;
        }
        int last = atomic_load(&t->last_rc);
        cr_assert(last == 0 || last == -7200 || last == PARMAP_ENOMEM,
                  "%s: task %zu last rc %d", where, i, last);
    }
    cr_assert_eq(parmap_group_destroy(w.g), 0);
    return met;
}

static void walk_group_world(size_t threads)
{
    parmap_pool *pool;
    cr_assert_eq(parmap_pool_create(&pool, threads, NULL), 0);
    long k;
    size_t met = 0;
    for (k = 0; k < MAX_SITES; k++) {
        char where[64];
        snprintf(where, sizeof where, "pool %zu, site %ld", threads, k);
        parmap__fault_arm(k);
        met += run_group_world(pool, 40, where);
        int fired = parmap__fault_fired();
        parmap__fault_arm(-1);
        if (!fired)
            break;
    }
    cr_assert_lt(k, MAX_SITES);
    /* create (3 sites) and the record array's growth at 16, 32, 64. */
    cr_assert_geq(k, 5, "pool %zu: only %ld fault sites", threads, k);
    cr_assert_geq(met, 1);
    cr_log_info("group, pool %zu: %ld fault sites", threads, k);
    cr_assert_eq(run_group_world(pool, 40, "after the walk"), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(fault_more, group_submits_from_tasks_fail_cleanly_on_1_thread)
{
    walk_group_world(1);
}

Test(fault_more, group_submits_from_tasks_fail_cleanly_on_4_threads)
{
    walk_group_world(4);
}

/* ------------------------------------------------------------------------ */
/* Streams whose items allocate                                             */
/* ------------------------------------------------------------------------ */

struct sworld {
    parmap_pool *pool;
    size_t n;
    atomic_uint calls[200];
    atomic_int last[200];
    atomic_size_t inner_bad;
};

static int sw_produce(void *ctx, size_t i, void *in)
{
    struct sworld *w = ctx;
    if (i >= w->n)
        return 0;
    *(uint64_t *)in = pt_mix(i);
    return 1;
}

static int sw_inner(void *ctx, size_t i, const void *in, void *out)
{
    atomic_uint *tries = ctx;
    (void)in;
    /* Item 0 fails once, so the map needs its retry queue. */
    unsigned a = i == 0 ? atomic_fetch_add(tries, 1) + 1 : 1;
    if (i == 0 && a == 1)
        return -7300;
    *(uint64_t *)out = pt_f(i);
    return 0;
}

static int sw_trivial_task(void *ctx)
{
    (void)ctx;
    return 0;
}

/* Each item runs a small map with a delayed retry and a small group; an
 * allocation failure in either becomes the item's status. */
static int sw_item(void *ctx, size_t i, const void *in, void *out)
{
    struct sworld *w = ctx;
    unsigned a = atomic_fetch_add(&w->calls[i], 1) + 1;
    (void)a;
    int rc = 0;
    if (*(const uint64_t *)in != pt_mix(i))
        atomic_fetch_add(&w->inner_bad, 1);
    uint64_t res[8];
    atomic_uint tries;
    atomic_init(&tries, 0);
    parmap_opts o = {.retries = 1, .retry_delay = 1e-6};
    int m = parmap_map(w->pool, 8, NULL, 0, res, sizeof res[0], sw_inner,
                       &tries, &o);
    if (m == PARMAP_EFAILED)
        rc = -7301; /* its retry could not be queued */
    else if (m != 0)
        atomic_fetch_add(&w->inner_bad, 1);
    if (i % 4 == 0) {
        parmap_group *g;
        int c = parmap_group_create(&g, w->pool, NULL);
        if (c == 0) {
            int s = parmap_group_submit(g, sw_trivial_task, NULL, NULL);
            if (s != 0 && rc == 0)
                rc = s;
            parmap_group_destroy(g);
        } else if (rc == 0) {
            rc = c;
        }
    }
    *(uint64_t *)out = pt_f(i);
    atomic_store(&w->last[i], rc);
    return rc;
}

static int run_stream_world(parmap_pool *pool, size_t n, int ordered,
                            const char *where)
{
    static struct sworld w;
    memset(&w, 0, sizeof w);
    w.pool = pool;
    w.n = n;
    for (size_t i = 0; i < 200; i++) {
        atomic_init(&w.calls[i], 0);
        atomic_init(&w.last[i], 0);
    }
    atomic_init(&w.inner_bad, 0);
    parmap_opts o = {.flags = ordered ? 0u : (unsigned)PARMAP_UNORDERED};
    parmap_stream *s;
    int rc = parmap_stream_create(&s, pool, sw_produce, &w, 8, sw_item, &w, 8,
                                  &o);
    if (rc != 0) {
        cr_assert_eq(rc, PARMAP_ENOMEM, "%s: stream_create %d", where, rc);
        return 1;
    }
    unsigned char seen[200] = {0};
    size_t got = 0, next = 0;
    int met = 0;
    parmap_stream_item it;
    while ((rc = parmap_stream_next(s, &it)) == 1) {
        cr_assert_lt(it.index, n, "%s", where);
        cr_assert_not(seen[it.index], "%s: item %zu twice", where, it.index);
        seen[it.index] = 1;
        if (ordered)
            cr_assert_eq(it.index, next, "%s: order", where);
        next = it.index + 1;
        got++;
        cr_assert_eq(it.attempts, 1, "%s: item %zu", where, it.index);
        cr_assert_eq(atomic_load(&w.calls[it.index]), 1);
        cr_assert_eq(it.status, atomic_load(&w.last[it.index]),
                     "%s: item %zu status %d, it returned %d", where,
                     it.index, it.status, atomic_load(&w.last[it.index]));
        if (it.status != 0) {
            cr_assert(it.status == -7301 || it.status == PARMAP_ENOMEM,
                      "%s: item %zu status %d", where, it.index, it.status);
            met = 1;
        }
        cr_assert_eq(*(const uint64_t *)it.out, pt_f(it.index));
    }
    cr_assert_eq(rc, 0, "%s: stream ended with %d", where, rc);
    cr_assert_eq(got, n, "%s: %zu of %zu items delivered", where, got, n);
    cr_assert_eq(atomic_load(&w.inner_bad), 0, "%s", where);
    cr_assert_eq(parmap_stream_destroy(s), 0);
    return met;
}

static void walk_stream_world(size_t threads, int ordered)
{
    parmap_pool *pool;
    cr_assert_eq(parmap_pool_create(&pool, threads, NULL), 0);
    long k;
    size_t met = 0;
    for (k = 0; k < MAX_SITES; k++) {
        char where[64];
        snprintf(where, sizeof where, "pool %zu, site %ld", threads, k);
        parmap__fault_arm(k);
        met += run_stream_world(pool, 60, ordered, where);
        int fired = parmap__fault_fired();
        parmap__fault_arm(-1);
        if (!fired)
            break;
    }
    cr_assert_lt(k, MAX_SITES);
    cr_assert_geq(k, 3, "pool %zu: only %ld fault sites", threads, k);
    cr_assert_geq(met, 1);
    cr_log_info("stream, pool %zu: %ld fault sites", threads, k);
    cr_assert_eq(run_stream_world(pool, 60, ordered, "after the walk"), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(fault_more, stream_items_that_allocate_fail_cleanly_ordered)
{
    walk_stream_world(3, 1);
}

Test(fault_more, stream_items_that_allocate_fail_cleanly_unordered)
{
    walk_stream_world(2, 0);
}

/* ------------------------------------------------------------------------ */
/* Everything at once                                                       */
/* ------------------------------------------------------------------------ */

struct side {
    parmap_pool *pool;
    int which;
    int met;
    char where[64];
};

static void *side_main(void *arg)
{
    struct side *s = arg;
    /* Only the checks that do not assert from this thread: results are
     * compared after the join. */
    if (s->which == 0) {
        inv_map m;
        if (inv_map_init(&m, 300, 77, 8, 8) != 0)
            return NULL;
        int status[300];
        parmap_summary sum;
        parmap_opts o = {.status = status, .summary = &sum, .retries = 2,
                         .retry_delay = 1e-5};
        int rc = parmap_map(s->pool, 300, m.in, 8, m.out, 8, retry_item, &m,
                            &o);
        inv_report r;
        inv_report_init(&r);
        inv_expect e;
        memset(&e, 0, sizeof e);
        e.retries = 2;
        e.has_status = e.has_summary = 1;
        inv_map_check(&r, &m, rc, status, &sum, NULL, &e);
        s->met = inv_violations(&r) != 0 ? -1 : rc != 0;
        snprintf(s->where, sizeof s->where, "%.60s", r.first);
        inv_report_destroy(&r);
        inv_map_free(&m);
    }
    return NULL;
}

Test(fault_more, concurrent_map_group_and_stream_fail_cleanly)
{
    parmap_pool *pool;
    cr_assert_eq(parmap_pool_create(&pool, 4, NULL), 0);
    long k;
    for (k = 0; k < MAX_SITES; k++) {
        char where[64];
        snprintf(where, sizeof where, "site %ld", k);
        struct side side = {.pool = pool, .which = 0};
        pthread_t tid;
        parmap__fault_arm(k);
        cr_assert_eq(pthread_create(&tid, NULL, side_main, &side), 0);
        run_group_world(pool, 20, where);
        run_stream_world(pool, 30, (int)(k & 1), where);
        pthread_join(tid, NULL);
        int fired = parmap__fault_fired();
        parmap__fault_arm(-1);
        cr_assert_neq(side.met, -1, "%s: side map: %s", where, side.where);
        if (!fired)
            break;
    }
    cr_assert_lt(k, MAX_SITES);
    cr_assert_geq(k, 5);
    cr_log_info("map, group and stream at once: %ld fault sites", k);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}
