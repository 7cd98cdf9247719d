/*
 * Spec-driven runs of maps, streams and groups, checked by invariant.h
 * (header-only, no Criterion). test/stress_mixed.c fills the specs from a
 * seeded generator and test/fuzz_api.c from the fuzzer's bytes; both run
 * them through the same callbacks and the same checks.
 *
 * A spec says what a call looks like (size, options, how its items fail,
 * spin, nest, cancel, try to destroy their pool); sc_run_map(),
 * sc_run_stream() and sc_run_group() make the call and check every
 * invariant, reporting violations into an inv_report.
 *
 * Callbacks never sleep: items spin for at most spin_ns_max nanoseconds,
 * so a deadline can pass while they run without making the fuzzer slow.
 */
#ifndef PARMAP_TEST_SCENARIO_H
#define PARMAP_TEST_SCENARIO_H

#include "invariant.h"

/* How a call's cancellation token is triggered. */
enum sc_cancel {
    SC_CANCEL_NONE = 0,
    SC_CANCEL_BEFORE,   /* triggered before the call: nothing may run */
    SC_CANCEL_AT_INDEX, /* by the callback of item cancel_index */
    SC_CANCEL_ASYNC     /* by another thread, through the arm hook */
};

/* Another thread that triggers a token at some moment (stress_mixed uses
 * a thread that sleeps a random time first). arm() is called before the
 * call starts, settle() after it returned; the token is destroyed only
 * after settle() returns. */
typedef struct sc_async {
    void (*arm)(void *ctx, parmap_cancel *token);
    void (*settle)(void *ctx);
    void *ctx;
} sc_async;

/* Set on threads the test created (or the fuzzer's main thread): those
 * are never pool workers, so destroy from their callbacks is EBUSY. */
static _Thread_local int sc_test_thread;

/* ------------------------------------------------------------------------ */
/* Maps                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct sc_map_spec {
    parmap_pool *pool;      /* the map runs here */
    parmap_pool *nest_pool; /* inner maps run here (may be pool), or NULL */
    size_t n;
    uint64_t tag;             /* seeds data, failures, spins */
    size_t in_size, out_size; /* 0 (no array) or >= 8 */
    unsigned fail_pm;         /* per-mille of items that fail... */
    unsigned max_fail_attempts; /* ...their first 1..max attempts (0: all) */
    unsigned nest_pm;         /* per-mille of items that run an inner map */
    unsigned destroy_pm;      /* per-mille of items that try to destroy
                                 their own pool (top level only) */
    unsigned spin_ns_max;     /* items spin up to this long */
    int poll_stop;            /* items give up when parmap_should_stop() */
    int depth;                /* 0 for a top-level call */
    /* Options. flags, max_concurrency, chunk_size, halt, timeout,
     * item_timeout, retries, retry_delay, retry_delay_max and
     * progress_interval are taken from here; the rest is set below. */
    parmap_opts opts;
    int use_status, use_summary, use_records, use_progress;
    size_t progress_cancel_at; /* progress asks to stop at this done */
    int retry_if;              /* only even codes are retried */
    enum sc_cancel cancel;
    size_t cancel_index;
    const sc_async *async;
} sc_map_spec;

typedef struct sc_map_stats {
    int rc;
    size_t ok, failed, not_run, nested, destroys;
} sc_map_stats;

static inline size_t sc_run_map(inv_report *r, const sc_map_spec *spec,
                                sc_map_stats *stats);

typedef struct sc_map_ctx {
    const sc_map_spec *spec;
    inv_map *m;
    inv_report *r;
    parmap_cancel *token;
    atomic_size_t nested, destroys;
} sc_map_ctx;

/* How many of item i's first attempts fail (0: none; UINT32_MAX: all). */
static inline unsigned sc_fail_attempts(uint64_t h, unsigned fail_pm,
                                        unsigned max_fail_attempts)
{
    if ((h >> 16) % 1000u >= fail_pm)
        return 0;
    if (max_fail_attempts == 0)
        return UINT32_MAX;
    return 1u + (unsigned)((h >> 24) % max_fail_attempts);
}

static inline int sc_retry_if(void *ctx, size_t index, int err,
                              unsigned attempt)
{
    (void)ctx;
    (void)index;
    (void)attempt;
    return (err & 1) == 0;
}

static inline int sc_map_fn(void *ctx, size_t i, const void *in, void *out)
{
    sc_map_ctx *c = ctx;
    const sc_map_spec *sp = c->spec;
    unsigned a = inv_attempt_begin(c->m, i, in, out);
    uint64_t h = inv_mix(sp->tag ^ ((uint64_t)i << 20) ^ 0xa11ce);
    int rc = 0;

    if (sp->cancel == SC_CANCEL_AT_INDEX && i == sp->cancel_index && a == 1)
        parmap_cancel_trigger(c->token);
    if (sp->spin_ns_max != 0 && (h & 3u) != 0) {
        int s = inv_spin_ns(h % sp->spin_ns_max, sp->poll_stop);
        if (s != 0)
            rc = inv_fail_code(h ^ 0x5709);
    }
    if (rc == 0 && sp->nest_pool != NULL && sp->depth < 2 &&
        (h >> 40) % 1000u < sp->nest_pm && a == 1) {
        /* An inner map, itself checked; its outcome does not change this
         * item's, so the outer checks stay exact. */
        sc_map_spec in_spec;
        memset(&in_spec, 0, sizeof in_spec);
        in_spec.pool = sp->nest_pool;
        in_spec.nest_pool = sp->nest_pool;
        in_spec.depth = sp->depth + 1;
        in_spec.n = (size_t)(h % 41u);
        in_spec.tag = inv_mix(h + 1);
        in_spec.in_size = (h >> 8) & 1u ? 8 : 0;
        in_spec.out_size = 8 + 8 * (size_t)((h >> 9) & 1u);
        in_spec.fail_pm = (h >> 10) & 1u ? 200 : 0;
        in_spec.nest_pm = 100;
        in_spec.opts.flags = (h >> 11) & 1u ? PARMAP_FAIL_FAST : 0;
        in_spec.opts.chunk_size = (size_t)((h >> 12) % 4u);
        in_spec.opts.max_concurrency = (size_t)((h >> 14) % 4u);
        in_spec.use_status = 1;
        in_spec.use_summary = (h >> 16) & 1u;
        in_spec.use_progress = (h >> 17) & 1u;
        sc_map_stats st;
        sc_run_map(c->r, &in_spec, &st);
        INV_ADD(&c->nested, 1 + st.nested);
    }
    if (sp->depth == 0 && sp->destroy_pm != 0 &&
        (h >> 50) % 1000u < sp->destroy_pm) {
        /* The pool is busy with this very call: a worker of it gets
         * EDEADLK, the thread that made the call EBUSY. */
        int d = parmap_pool_destroy(sp->pool);
        int want = sc_test_thread ? PARMAP_EBUSY : PARMAP_EDEADLK;
        if (d != want)
            inv_fail(c->r, "destroy from inside item %zu returned %d (%s), "
                     "want %s", i, d, parmap_err_name(d),
                     parmap_err_name(want));
        INV_ADD(&c->destroys, 1);
    }
    if (rc == 0 &&
        a <= sc_fail_attempts(h, sp->fail_pm, sp->max_fail_attempts))
        rc = inv_fail_code(inv_mix(h + a));
    if (rc == 0)
        inv_write_out(c->m, i, out);
    inv_attempt_end(c->m, i, rc);
    return rc;
}

static inline size_t sc_map_limit(const sc_map_spec *sp)
{
    size_t limit = parmap_pool_size(sp->pool);
    if (sp->opts.max_concurrency != 0 && sp->opts.max_concurrency < limit)
        limit = sp->opts.max_concurrency;
    return limit < sp->n ? limit : sp->n;
}

/* Runs and checks one map; returns the number of violations it added. */
static inline size_t sc_run_map(inv_report *r, const sc_map_spec *sp,
                                sc_map_stats *stats)
{
    size_t before = inv_violations(r);
    inv_map m;
    sc_map_ctx c;
    int *status = NULL;
    parmap_record *rec = NULL;
    parmap_summary sum;
    parmap_opts o = sp->opts;

    memset(stats, 0, sizeof *stats);
    if (inv_map_init(&m, sp->n, sp->tag, sp->in_size, sp->out_size) != 0) {
        inv_fail(r, "test out of memory (map of %zu)", sp->n);
        return 1;
    }
    memset(&c, 0, sizeof c);
    c.spec = sp;
    c.m = &m;
    c.r = r;
    atomic_init(&c.nested, 0);
    atomic_init(&c.destroys, 0);
    if (sp->use_status) {
        status = malloc((sp->n ? sp->n : 1) * sizeof *status);
        for (size_t i = 0; status != NULL && i < sp->n; i++)
            status[i] = 0x7eadbeef;
    }
    if (sp->use_records) {
        rec = malloc((sp->n ? sp->n : 1) * sizeof *rec);
        if (rec != NULL)
            memset(rec, 0x5a, (sp->n ? sp->n : 1) * sizeof *rec);
    }
    if ((sp->use_status && status == NULL) ||
        (sp->use_records && rec == NULL)) {
        free(status);
        free(rec);
        inv_map_free(&m);
        inv_fail(r, "test out of memory (map of %zu)", sp->n);
        return 1;
    }
    memset(&sum, 0xa5, sizeof sum);
    o.status = status;
    o.records = rec;
    o.summary = sp->use_summary ? &sum : NULL;
    o.progress = sp->use_progress ? inv_progress_fn : NULL;
    o.progress_ctx = sp->use_progress ? &m : NULL;
    m.cancel_at = sp->use_progress ? sp->progress_cancel_at : 0;
    o.retry_if = sp->retry_if ? sc_retry_if : NULL;
    o.retry_ctx = NULL;
    o.cancel = NULL;
    o.prefetch = 0;
    o.reorder = 0;
    if (sp->cancel != SC_CANCEL_NONE) {
        if (parmap_cancel_create(&c.token) != 0) {
            free(status);
            free(rec);
            inv_map_free(&m);
            inv_fail(r, "parmap_cancel_create failed");
            return 1;
        }
        o.cancel = c.token;
        if (sp->cancel == SC_CANCEL_BEFORE)
            parmap_cancel_trigger(c.token);
        else if (sp->cancel == SC_CANCEL_ASYNC && sp->async != NULL)
            sp->async->arm(sp->async->ctx, c.token);
    }

    int rc = parmap_map(sp->pool, sp->n, m.in, sp->in_size, m.out,
                        sp->out_size, sc_map_fn, &c, &o);

    if (sp->cancel == SC_CANCEL_ASYNC && sp->async != NULL)
        sp->async->settle(sp->async->ctx);

    inv_expect e;
    memset(&e, 0, sizeof e);
    e.retries = o.retries;
    e.limit = sc_map_limit(sp);
    e.has_status = status != NULL;
    e.has_summary = o.summary != NULL;
    e.has_records = rec != NULL;
    e.has_progress = sp->use_progress;
    e.cancel = sp->cancel != SC_CANCEL_NONE;
    e.timeout = o.timeout > 0.0;
    e.fail_fast = (o.flags & PARMAP_FAIL_FAST) != 0;
    e.halt = o.halt;
    inv_map_check(r, &m, rc, status, o.summary, rec, &e);

    if (sp->cancel == SC_CANCEL_BEFORE && sp->n > 0) {
        size_t ran = 0;
        for (size_t i = 0; i < sp->n; i++)
            ran += INV_LD(&m.calls[i]) != 0;
        if (rc != PARMAP_ECANCELED || ran != 0)
            inv_fail(r, "token triggered before the map: rc %d, %zu items "
                     "ran", rc, ran);
    }
    if (sp->use_summary && sp->n > 0) {
        stats->ok = sum.succeeded;
        stats->failed = sum.failed;
        stats->not_run = sum.not_run;
    } else {
        for (size_t i = 0; i < sp->n; i++) {
            unsigned calls = INV_LD(&m.calls[i]);
            int last = INV_LD(&m.last_rc[i]);
            if (calls == 0)
                stats->not_run++;
            else if (last == 0)
                stats->ok++;
            else
                stats->failed++;
        }
    }
    stats->rc = rc;
    stats->nested = INV_LD(&c.nested);
    stats->destroys = INV_LD(&c.destroys);
    parmap_cancel_destroy(c.token);
    free(status);
    free(rec);
    inv_map_free(&m);
    return inv_violations(r) - before;
}

/* ------------------------------------------------------------------------ */
/* Streams                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct sc_stream_spec {
    parmap_pool *pool;
    parmap_pool *nest_pool; /* inner maps run here, or NULL */
    size_t n;               /* items; SIZE_MAX = until stopped (capped) */
    size_t cap;             /* the most items the test tracks */
    uint64_t tag;
    int ordered;
    unsigned fail_pm, max_fail_attempts, nest_pm, spin_ns_max;
    int poll_stop;
    int producer_error;     /* the producer fails at the end, or 0 */
    parmap_opts opts;       /* flags (FAIL_FAST), max_concurrency,
                               prefetch, reorder, halt, timeout,
                               item_timeout, retries, retry_delay */
    enum sc_cancel cancel;
    size_t cancel_index;
    const sc_async *async;
    size_t destroy_after;   /* destroy after this many items (0: never) */
} sc_stream_spec;

typedef struct sc_stream_stats {
    int rc;
    size_t delivered, not_run, failed;
} sc_stream_stats;

typedef struct sc_stream_ctx {
    const sc_stream_spec *spec;
    inv_stream *s;
    inv_report *r;
    parmap_cancel *token;
} sc_stream_ctx;

static inline int sc_stream_produce(void *ctx, size_t i, void *in)
{
    sc_stream_ctx *c = ctx;
    return inv_stream_produce(c->s, i, in);
}

static inline int sc_stream_fn(void *ctx, size_t i, const void *in, void *out)
{
    sc_stream_ctx *c = ctx;
    const sc_stream_spec *sp = c->spec;
    unsigned a = inv_stream_attempt_begin(c->s, i, in);
    uint64_t h = inv_mix(sp->tag ^ ((uint64_t)i << 20) ^ 0x57e4);
    int rc = 0;

    if (sp->cancel == SC_CANCEL_AT_INDEX && i == sp->cancel_index && a == 1)
        parmap_cancel_trigger(c->token);
    if (sp->spin_ns_max != 0 && (h & 3u) != 0) {
        int s = inv_spin_ns(h % sp->spin_ns_max, sp->poll_stop);
        if (s != 0)
            rc = inv_fail_code(h ^ 0x5709);
    }
    if (rc == 0 && sp->nest_pool != NULL && (h >> 40) % 1000u < sp->nest_pm &&
        a == 1) {
        sc_map_spec in_spec;
        memset(&in_spec, 0, sizeof in_spec);
        in_spec.pool = sp->nest_pool;
        in_spec.depth = 1;
        in_spec.n = (size_t)(h % 33u);
        in_spec.tag = inv_mix(h + 3);
        in_spec.out_size = 8;
        in_spec.fail_pm = (h >> 10) & 1u ? 100 : 0;
        in_spec.opts.chunk_size = (size_t)((h >> 12) % 3u);
        in_spec.use_status = 1;
        sc_map_stats st;
        sc_run_map(c->r, &in_spec, &st);
    }
    if (rc == 0 &&
        a <= sc_fail_attempts(h, sp->fail_pm, sp->max_fail_attempts))
        rc = inv_fail_code(inv_mix(h + a));
    inv_stream_attempt_end(c->s, i, out, rc);
    return rc;
}

static inline size_t sc_run_stream(inv_report *r, const sc_stream_spec *sp,
                                   sc_stream_stats *stats)
{
    size_t before = inv_violations(r);
    inv_stream s;
    sc_stream_ctx c;
    parmap_stream *st = NULL;
    parmap_opts o = sp->opts;

    memset(stats, 0, sizeof *stats);
    if (inv_stream_init(&s, sp->n, sp->cap, sp->tag, sp->ordered) != 0) {
        inv_fail(r, "test out of memory (stream)");
        return 1;
    }
    s.producer_error = sp->producer_error;
    memset(&c, 0, sizeof c);
    c.spec = sp;
    c.s = &s;
    c.r = r;
    o.flags = (o.flags & PARMAP_FAIL_FAST) |
              (sp->ordered ? 0u : (unsigned)PARMAP_UNORDERED);
    o.status = NULL;
    o.summary = NULL;
    o.records = NULL;
    o.progress = NULL;
    o.retry_if = NULL;
    o.cancel = NULL;
    if (sp->cancel != SC_CANCEL_NONE) {
        if (parmap_cancel_create(&c.token) != 0) {
            inv_stream_free(&s);
            inv_fail(r, "parmap_cancel_create failed");
            return 1;
        }
        o.cancel = c.token;
        if (sp->cancel == SC_CANCEL_BEFORE)
            parmap_cancel_trigger(c.token);
    }
    int rc = parmap_stream_create(&st, sp->pool, sc_stream_produce, &c, 8,
                                  sc_stream_fn, &c, 8, &o);
    if (rc != 0) {
        inv_fail(r, "parmap_stream_create returned %d", rc);
        parmap_cancel_destroy(c.token);
        inv_stream_free(&s);
        return 1;
    }
    if (sp->cancel == SC_CANCEL_ASYNC && sp->async != NULL)
        sp->async->arm(sp->async->ctx, c.token);

    parmap_stream_item it;
    int early = 0;
    for (;;) {
        rc = parmap_stream_next(st, &it);
        if (rc != 1)
            break;
        inv_stream_item(r, &s, &it, o.retries);
        stats->delivered++;
        if (it.attempts == 0)
            stats->not_run++;
        else if (it.status != 0)
            stats->failed++;
        if (sp->destroy_after != 0 && stats->delivered >= sp->destroy_after) {
            early = 1;
            break;
        }
        if (stats->delivered > sp->cap + 1) {
            inv_fail(r, "stream delivered more items than were produced");
            break;
        }
    }
    if (!early) {
        /* Once ended, next() keeps returning the same final code. */
        int again = parmap_stream_next(st, &it);
        if (again != rc)
            inv_fail(r, "next() after the end returned %d, then %d", rc,
                     again);
    }
    int d = parmap_stream_destroy(st);
    if (d != 0)
        inv_fail(r, "parmap_stream_destroy returned %d", d);
    if (sp->cancel == SC_CANCEL_ASYNC && sp->async != NULL)
        sp->async->settle(sp->async->ctx);
    parmap_halt h = o.halt;
    int may_stop = sp->cancel != SC_CANCEL_NONE || o.timeout > 0.0 ||
                   (o.flags & PARMAP_FAIL_FAST) ||
                   (h.when != PARMAP_HALT_NEVER &&
                    (h.count != 0 || h.percent > 0.0));
    size_t limit = parmap_pool_size(sp->pool);
    if (o.max_concurrency != 0 && o.max_concurrency < limit)
        limit = o.max_concurrency;
    inv_stream_end(r, &s, rc, early, may_stop, limit);
    if (!early && !may_stop && stats->not_run != 0)
        inv_fail(r, "%zu stream items not run, but nothing could stop it",
                 stats->not_run);
    if (sp->cancel == SC_CANCEL_BEFORE && !early &&
        (rc != PARMAP_ECANCELED || INV_LD(&s.produced) != 0))
        inv_fail(r, "stream with a token triggered before: rc %d, %zu "
                 "produced", rc, (size_t)INV_LD(&s.produced));
    stats->rc = rc;
    parmap_cancel_destroy(c.token);
    inv_stream_free(&s);
    return inv_violations(r) - before;
}

/* ------------------------------------------------------------------------ */
/* Groups                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct sc_group_spec {
    parmap_pool *pool;
    size_t ntasks;
    uint64_t tag;
    unsigned fail_pm, max_fail_attempts, spin_ns_max;
    parmap_opts opts; /* max_concurrency, halt, timeout, item_timeout,
                         retries, retry_delay */
    int wait_any;     /* consume completions with WAIT_ANY first */
    int first_error;  /* then loop on WAIT_FIRST_ERROR */
    enum sc_cancel cancel;
    size_t cancel_index;
    const sc_async *async;
} sc_group_spec;

typedef struct sc_group_stats {
    size_t reported, failures_reported, refused;
} sc_group_stats;

static inline size_t sc_run_group(inv_report *r, const sc_group_spec *sp,
                                  sc_group_stats *stats)
{
    size_t before = inv_violations(r);
    inv_group ig;
    parmap_group *g = NULL;
    parmap_cancel *token = NULL;
    parmap_opts o = sp->opts;

    memset(stats, 0, sizeof *stats);
    if (inv_group_init(&ig, sp->ntasks) != 0) {
        inv_fail(r, "test out of memory (group)");
        return 1;
    }
    o.flags = 0;
    o.status = NULL;
    o.summary = NULL;
    o.records = NULL;
    o.progress = NULL;
    o.retry_if = NULL;
    o.cancel = NULL;
    if (sp->cancel != SC_CANCEL_NONE) {
        if (parmap_cancel_create(&token) != 0) {
            inv_group_free(&ig);
            inv_fail(r, "parmap_cancel_create failed");
            return 1;
        }
        o.cancel = token;
        if (sp->cancel == SC_CANCEL_BEFORE)
            parmap_cancel_trigger(token);
    }
    int rc = parmap_group_create(&g, sp->pool, &o);
    if (rc != 0) {
        inv_fail(r, "parmap_group_create returned %d", rc);
        parmap_cancel_destroy(token);
        inv_group_free(&ig);
        return 1;
    }
    if (sp->cancel == SC_CANCEL_ASYNC && sp->async != NULL)
        sp->async->arm(sp->async->ctx, token);
    parmap_halt h = o.halt;
    int may_stop = sp->cancel != SC_CANCEL_NONE || o.timeout > 0.0 ||
                   (h.when != PARMAP_HALT_NEVER &&
                    (h.count != 0 || h.percent > 0.0));

    for (size_t k = 0; k < sp->ntasks; k++) {
        inv_task *t = &ig.tasks[k];
        uint64_t hh = inv_mix(sp->tag ^ ((uint64_t)k << 20) ^ 0x6e0);
        unsigned fa = sc_fail_attempts(hh, sp->fail_pm, sp->max_fail_attempts);
        t->fail_attempts = fa > 1000u ? 1000 : (int)fa;
        t->code = inv_fail_code(hh >> 3);
        t->spin_ns = sp->spin_ns_max ? (unsigned)(hh % sp->spin_ns_max) : 0;
        t->trigger = sp->cancel == SC_CANCEL_AT_INDEX && k == sp->cancel_index
                         ? token
                         : NULL;
        size_t id = SIZE_MAX;
        ig.used = k + 1;
        rc = parmap_group_submit(g, inv_task_fn, t, &id);
        if (rc == 0) {
            ig.submitted[k] = 1;
            ig.ids[k] = id;
        } else if (rc == PARMAP_ECANCELED && may_stop) {
            stats->refused++;
        } else {
            inv_fail(r, "submit %zu returned %d", k, rc);
        }
    }
    size_t nsub = sp->ntasks - stats->refused;
    unsigned char *seen = calloc(nsub ? nsub : 1, 1);
    if (seen == NULL)
        inv_fail(r, "test out of memory (group)");
    if (sp->wait_any && seen != NULL) {
        size_t id;
        int st;
        for (;;) {
            id = SIZE_MAX;
            st = 0x7eadbeef;
            rc = parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &id, &st);
            if (rc == PARMAP_ENOENT)
                break;
            if (rc != 0) {
                inv_fail(r, "WAIT_ANY returned %d", rc);
                break;
            }
            if (id >= nsub || seen[id]) {
                inv_fail(r, "WAIT_ANY reported task %zu %s", id,
                         id >= nsub ? "that does not exist" : "twice");
                break;
            }
            seen[id] = 1;
            stats->reported++;
            int st2;
            if (parmap_group_task(g, id, &st2, NULL) != 0 || st2 != st)
                inv_fail(r, "WAIT_ANY said task %zu ended %d, "
                         "parmap_group_task disagrees", id, st);
        }
        if (stats->reported != nsub)
            inv_fail(r, "WAIT_ANY reported %zu of %zu tasks",
                     stats->reported, nsub);
    }
    if (sp->first_error && seen != NULL) {
        memset(seen, 0, nsub ? nsub : 1);
        for (;;) {
            size_t id = 0;
            int st = 0x7eadbeef;
            rc = parmap_group_wait(g, PARMAP_WAIT_FIRST_ERROR, -1.0, &id,
                                   &st);
            if (rc == 0) {
                if (id != SIZE_MAX)
                    inv_fail(r, "FIRST_ERROR returned 0 with id %zu", id);
                break;
            }
            if (id >= nsub || seen[id] || st != rc) {
                inv_fail(r, "FIRST_ERROR returned %d for task %zu (status "
                         "%d)", rc, id, st);
                break;
            }
            seen[id] = 1;
            stats->failures_reported++;
        }
    }
    rc = parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL);
    if (rc != 0)
        inv_fail(r, "WAIT_ALL returned %d", rc);
    inv_group_check(r, &ig, g, o.retries,
                    o.max_concurrency != 0 &&
                            o.max_concurrency < parmap_pool_size(sp->pool)
                        ? o.max_concurrency
                        : parmap_pool_size(sp->pool),
                    may_stop, !may_stop);
    if (sp->first_error && seen != NULL) {
        size_t failures = 0;
        for (size_t k = 0; k < sp->ntasks; k++) {
            int st = 0;
            if (ig.submitted[k] &&
                parmap_group_task(g, ig.ids[k], &st, NULL) == 0 && st != 0)
                failures++;
        }
        if (failures != stats->failures_reported)
            inv_fail(r, "FIRST_ERROR reported %zu failures, tasks say %zu",
                     stats->failures_reported, failures);
    }
    int d = parmap_group_destroy(g);
    if (d != 0)
        inv_fail(r, "parmap_group_destroy returned %d", d);
    if (sp->cancel == SC_CANCEL_ASYNC && sp->async != NULL)
        sp->async->settle(sp->async->ctx);
    free(seen);
    parmap_cancel_destroy(token);
    inv_group_free(&ig);
    return inv_violations(r) - before;
}

#endif /* PARMAP_TEST_SCENARIO_H */
