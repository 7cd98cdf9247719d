/*
 * The "nothing lost" invariant checker (header-only, no Criterion), used by
 * test/fuzz_api.c and test/stress_mixed.c.
 *
 * The contract it checks, for every call:
 *   - every index ends in exactly one state: done (status 0), failed (the
 *     code its callback's last attempt returned), or never started
 *     (PARMAP_ENOTRUN when the call was stopped, PARMAP_ETIMEDOUT when its
 *     deadline passed), and an index was started if and only if its
 *     callback was called;
 *   - its output slot is written exactly once, with its own result, when it
 *     is done, and left untouched otherwise (the bytes around the output
 *     array too);
 *   - the summary, the status array, the per-item records, the final
 *     progress call and the return value all tell the same story, and the
 *     return value is one the options allow (no stop without a cause, no
 *     halt rule that fired without stopping the call);
 *   - no more callbacks ran at once than the concurrency limit allows, and
 *     each got its own input and output pointers.
 *
 * How to use it for a map: inv_map_init() (which fills in the inputs); in
 * the callback call inv_attempt_begin() first, write the
 * output only on success with inv_write_out(), and call inv_attempt_end()
 * right before returning; after parmap_map() returns, describe the options
 * in an inv_expect and call inv_map_check(). Streams and groups have the
 * same pattern (inv_stream_*, inv_group_*). Nothing here asserts or aborts:
 * the checks count violations and keep the first message, and the caller
 * decides (the fuzzer aborts, the stress program reports and exits 1).
 *
 * Callbacks written for this checker must never return a library code
 * (PARMAP_ENOTRUN and friends): inv_fail_code() gives codes that cannot be
 * mistaken for one.
 */
#ifndef PARMAP_TEST_INVARIANT_H
#define PARMAP_TEST_INVARIANT_H

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parmap.h"

/* Every counter the checker keeps is a relaxed atomic: callbacks must not
 * synchronise with the caller through the checker's own bookkeeping, or
 * ThreadSanitizer (and helgrind, DRD) would take the checker's
 * synchronisation for the library's. The only happens-before edges from a
 * callback to the code that checks its results after the call returns are
 * the ones the library makes; a call that returns without them leaves a
 * data race on the output array that the race detectors report. */
#define INV_LD(p) atomic_load_explicit((p), memory_order_relaxed)
#define INV_ST(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define INV_ADD(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define INV_SUB(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
#define INV_XCHG(p, v) atomic_exchange_explicit((p), (v), memory_order_relaxed)
#define INV_CAS(p, expected, desired)                                          \
    atomic_compare_exchange_weak_explicit((p), (expected), (desired),          \
                                          memory_order_relaxed,                \
                                          memory_order_relaxed)

/* ------------------------------------------------------------------------ */
/* Violations                                                               */
/* ------------------------------------------------------------------------ */

typedef struct inv_report {
    atomic_size_t violations;
    pthread_mutex_t lock; /* guards first */
    char first[1024];     /* the first violation, with its context */
    char context[256];    /* set by the caller before a check */
} inv_report;

static inline void inv_report_init(inv_report *r)
{
    memset(r, 0, sizeof *r);
    atomic_init(&r->violations, 0);
    pthread_mutex_init(&r->lock, NULL);
}

static inline void inv_report_destroy(inv_report *r)
{
    pthread_mutex_destroy(&r->lock);
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static inline void inv_fail(inv_report *r, const char *fmt, ...)
{
    if (INV_ADD(&r->violations, 1) != 0)
        return;
    pthread_mutex_lock(&r->lock);
    int k = snprintf(r->first, sizeof r->first, "%s%s", r->context,
                     r->context[0] ? ": " : "");
    if (k < 0)
        k = 0;
    if ((size_t)k < sizeof r->first) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->first + k, sizeof r->first - (size_t)k, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&r->lock);
}

static inline size_t inv_violations(inv_report *r)
{
    return INV_LD(&r->violations);
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */
/* ------------------------------------------------------------------------ */

static inline uint64_t inv_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* What input i of the call tagged `tag` holds, and what its output must
 * become. Tags differ from call to call, so a slot written by another call
 * (or for another index) is caught. */
static inline uint64_t inv_in_value(uint64_t tag, size_t i)
{
    return inv_mix(tag ^ ((uint64_t)i * 0x2545f4914f6cdd1du));
}

static inline uint64_t inv_out_value(uint64_t tag, size_t i)
{
    return inv_mix(inv_in_value(tag, i) ^ 0x5851f42d4c957f2du);
}

/* Untouched output bytes and the guard zones around the output array. */
#define INV_SENTINEL 0xa5u
#define INV_GUARD 64u

/* A failure code of the tests: positive or negative, never 0, never a
 * parmap code or a negated errno value (those are all above -4096 or
 * around PARMAP__ERR_BASE). */
static inline int inv_fail_code(uint64_t h)
{
    int c = 5000 + (int)(h % 1000u);
    return (h >> 32) & 1u ? -c : c;
}

/* Busy work for about `ns` nanoseconds (no sleeping: the fuzzer must stay
 * fast and deterministic in cost). With `poll`, gives up early when
 * parmap_should_stop() says so, and returns that value; else 0. */
static inline int inv_spin_ns(uint64_t ns, int poll)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t end = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec +
                   ns;
    for (;;) {
        if (poll) {
            int s = parmap_should_stop();
            if (s != 0)
                return s;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec >= end)
            return 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Maps                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct inv_map {
    size_t n;
    uint64_t tag;
    size_t in_size, out_size; /* strides; 0 = no array */
    unsigned char *in;        /* n * in_size bytes, or NULL */
    unsigned char *out_block; /* guard + n * out_size + guard, or NULL */
    unsigned char *out;       /* out_block + INV_GUARD */
    atomic_uint *calls;       /* attempts made, per index */
    atomic_uint *writes;      /* output writes, per index */
    atomic_int *last_rc;      /* what the last attempt returned */
    atomic_size_t returned;   /* attempts that returned, any index */
    atomic_size_t failed_returned;
    atomic_size_t bad_args;   /* wrong pointers or index seen inside */
    atomic_size_t cur, peak;  /* callbacks inside at once */
    /* Progress rules, checked inside the progress callback. */
    atomic_int in_progress;
    atomic_size_t progress_calls;
    atomic_size_t progress_bad; /* overlap, decrease, ahead, failed > done */
    char progress_first[160];   /* what the first bad call saw */
    size_t last_done, last_failed, last_total;
    double last_elapsed;
    pthread_t last_thread;
    size_t cancel_at;          /* progress asks to stop at this done, 0 = no */
    atomic_int progress_stopped; /* the progress callback asked to stop */
} inv_map;

/* Sets up the arrays of a map of n items. in_size/out_size of 0 mean no
 * array; otherwise in_size >= 8 and out_size >= 8. Returns 0 or -1. */
static inline int inv_map_init(inv_map *m, size_t n, uint64_t tag,
                               size_t in_size, size_t out_size)
{
    size_t k = n ? n : 1;

    memset(m, 0, sizeof *m);
    m->n = n;
    m->tag = tag;
    m->in_size = in_size;
    m->out_size = out_size;
    m->calls = malloc(k * sizeof *m->calls);
    m->writes = malloc(k * sizeof *m->writes);
    m->last_rc = malloc(k * sizeof *m->last_rc);
    if (in_size != 0)
        m->in = malloc(k * in_size);
    if (out_size != 0)
        m->out_block = malloc(k * out_size + 2 * INV_GUARD);
    if (m->calls == NULL || m->writes == NULL || m->last_rc == NULL ||
        (in_size != 0 && m->in == NULL) ||
        (out_size != 0 && m->out_block == NULL)) {
        free((void *)m->calls);
        free((void *)m->writes);
        free((void *)m->last_rc);
        free(m->in);
        free(m->out_block);
        memset(m, 0, sizeof *m);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        atomic_init(&m->calls[i], 0);
        atomic_init(&m->writes[i], 0);
        atomic_init(&m->last_rc[i], 0);
        if (m->in != NULL) {
            uint64_t v = inv_in_value(tag, i);
            memset(m->in + i * in_size, (int)(i & 0xffu), in_size);
            memcpy(m->in + i * in_size, &v, sizeof v);
        }
    }
    if (m->out_block != NULL) {
        memset(m->out_block, INV_SENTINEL, k * out_size + 2 * INV_GUARD);
        m->out = m->out_block + INV_GUARD;
    }
    atomic_init(&m->returned, 0);
    atomic_init(&m->failed_returned, 0);
    atomic_init(&m->bad_args, 0);
    atomic_init(&m->cur, 0);
    atomic_init(&m->peak, 0);
    atomic_init(&m->in_progress, 0);
    atomic_init(&m->progress_calls, 0);
    atomic_init(&m->progress_bad, 0);
    atomic_init(&m->progress_stopped, 0);
    return 0;
}

static inline void inv_map_free(inv_map *m)
{
    free((void *)m->calls);
    free((void *)m->writes);
    free((void *)m->last_rc);
    free(m->in);
    free(m->out_block);
    memset(m, 0, sizeof *m);
}

/* The first thing a map callback does. Checks its arguments and counts
 * the attempt; returns the attempt's number (1 for the first). */
static inline unsigned inv_attempt_begin(inv_map *m, size_t i, const void *in,
                                         const void *out)
{
    size_t c = INV_ADD(&m->cur, 1) + 1;
    size_t p = INV_LD(&m->peak);
    while (c > p && !INV_CAS(&m->peak, &p, c)) {
    }
    if (i >= m->n) {
        INV_ADD(&m->bad_args, 1);
        return 1;
    }
    if (in != (m->in != NULL ? (const void *)(m->in + i * m->in_size) : NULL))
        INV_ADD(&m->bad_args, 1);
    else if (in != NULL) {
        uint64_t v;
        memcpy(&v, in, sizeof v);
        if (v != inv_in_value(m->tag, i))
            INV_ADD(&m->bad_args, 1);
    }
    if (out != (m->out != NULL ? (const void *)(m->out + i * m->out_size)
                               : NULL))
        INV_ADD(&m->bad_args, 1);
    return INV_ADD(&m->calls[i], 1) + 1;
}

/* Writes item i's result into its slot (only on success). */
static inline void inv_write_out(inv_map *m, size_t i, void *out)
{
    if (i >= m->n)
        return;
    INV_ADD(&m->writes[i], 1);
    if (out != NULL) {
        uint64_t v = inv_out_value(m->tag, i);
        memcpy(out, &v, sizeof v);
        memset((char *)out + sizeof v, 0, m->out_size - sizeof v);
    }
}

/* The last thing a map callback does, right before returning rc. */
static inline void inv_attempt_end(inv_map *m, size_t i, int rc)
{
    if (i < m->n)
        INV_ST(&m->last_rc[i], rc);
    if (rc != 0)
        INV_ADD(&m->failed_returned, 1);
    INV_ADD(&m->returned, 1);
    INV_SUB(&m->cur, 1);
}

/* A progress callback that checks the progress rules; ctx is the inv_map.
 * It asks to stop once `done` reaches m->cancel_at (when non-zero). */
static inline int inv_progress_fn(void *ctx, const parmap_progress *p)
{
    inv_map *m = ctx;
    int overlap = INV_XCHG(&m->in_progress, 1) != 0;
    /* Failures first: an attempt bumps failed_returned before returned. */
    size_t failed_returned = INV_LD(&m->failed_returned);
    size_t returned = INV_LD(&m->returned);
    size_t k = INV_ADD(&m->progress_calls, 1);
    const char *why = NULL;

    if (overlap)
        why = "two progress calls at once";
    else if (p->total != m->n)
        why = "total is not n";
    else if (p->failed > p->done)
        why = "failed > done";
    else if (p->done > returned || p->failed > failed_returned)
        why = "counts items whose callback has not returned";
    else if (p->done > m->n)
        why = "done > n";
    else if (!(p->elapsed >= 0.0))
        why = "elapsed negative or NaN";
    else if (k > 0 && (p->done < m->last_done || p->failed < m->last_failed ||
                       p->elapsed < m->last_elapsed))
        why = "a count or elapsed went backwards";
    if (why != NULL && INV_ADD(&m->progress_bad, 1) == 0)
        snprintf(m->progress_first, sizeof m->progress_first,
                 "%s (done %zu failed %zu total %zu; before: done %zu "
                 "failed %zu; returned %zu failed_returned %zu)",
                 why, p->done, p->failed, p->total, m->last_done,
                 m->last_failed, returned, failed_returned);
    m->last_done = p->done;
    m->last_failed = p->failed;
    m->last_total = p->total;
    m->last_elapsed = p->elapsed;
    m->last_thread = pthread_self();
    int stop = 0;
    if (m->cancel_at != 0 && p->done >= m->cancel_at && p->done < p->total) {
        INV_ST(&m->progress_stopped, 1);
        stop = 1;
    }
    if (!overlap)
        INV_ST(&m->in_progress, 0);
    return stop;
}

/* What the options of a call allow. */
typedef struct inv_expect {
    unsigned retries;     /* opts.retries */
    size_t limit;         /* the effective concurrency limit; 0 = unchecked */
    int has_status;       /* opts.status was set (to the array passed) */
    int has_summary;      /* opts.summary was set */
    int has_records;      /* opts.records was set */
    int has_progress;     /* opts.progress was inv_progress_fn with the map */
    int cancel;           /* a token was given (it may have been triggered) */
    int timeout;          /* opts.timeout > 0 */
    int fail_fast;        /* PARMAP_FAIL_FAST */
    parmap_halt halt;     /* opts.halt as given */
} inv_expect;

/* The halt rule in force, after fail-fast is folded in (as the header
 * describes). */
static inline parmap_halt inv_effective_halt(const inv_expect *e)
{
    parmap_halt h = e->halt;
    if (e->fail_fast) {
        if (h.when == PARMAP_HALT_NEVER || h.on != PARMAP_HALT_ON_FAIL) {
            h.when = PARMAP_HALT_SOON;
            h.on = PARMAP_HALT_ON_FAIL;
            h.percent = 0.0;
        }
        h.count = 1;
    }
    if (h.count == 0 && h.percent == 0.0)
        h.when = PARMAP_HALT_NEVER;
    return h;
}

static inline int inv_rule_reached(const parmap_halt *h, size_t count,
                                   size_t total)
{
    if (h->when == PARMAP_HALT_NEVER)
        return 0;
    if (h->count != 0 && count >= h->count)
        return 1;
    return h->percent > 0.0 && total != 0 &&
           (double)count * 100.0 >= h->percent * (double)total;
}

static inline int inv_is_library_code(int c)
{
    return c == PARMAP_ENOTRUN || c == PARMAP_EFAILED ||
           c == PARMAP_EHALTED || c == PARMAP_ECANCELED ||
           c == PARMAP_ETIMEDOUT || c == PARMAP_EFORKED;
}

/* Checks everything about a map that returned rc. status, summary and
 * records are what was passed in opts (or NULL). Returns the number of new
 * violations. */
static inline size_t inv_map_check(inv_report *r, inv_map *m, int rc,
                                   const int *status,
                                   const parmap_summary *sum,
                                   const parmap_record *rec,
                                   const inv_expect *e)
{
    size_t before = inv_violations(r);
    size_t ok = 0, failed = 0, notrun = 0, first_failed = SIZE_MAX;
    int first_error = 0, nr_code = 0, rc_is_item_failure = 0;
    parmap_halt h = inv_effective_halt(e);

    if (INV_LD(&m->bad_args) != 0)
        inv_fail(r, "%zu callbacks got a wrong index, input or output "
                 "pointer", (size_t)INV_LD(&m->bad_args));
    if (INV_LD(&m->cur) != 0)
        inv_fail(r, "%zu callbacks still running after the map returned",
                 (size_t)INV_LD(&m->cur));
    if (e->limit != 0 && INV_LD(&m->peak) > e->limit)
        inv_fail(r, "%zu callbacks ran at once, limit %zu",
                 (size_t)INV_LD(&m->peak), e->limit);

    for (size_t i = 0; i < m->n; i++) {
        unsigned calls = INV_LD(&m->calls[i]);
        unsigned writes = INV_LD(&m->writes[i]);
        int last = INV_LD(&m->last_rc[i]);
        int st = status != NULL ? status[i] : (calls == 0 ? 0 : last);
        int done = calls > 0 && last == 0;

        if (calls == 0) {
            notrun++;
            if (status != NULL) {
                if (st != PARMAP_ENOTRUN && st != PARMAP_ETIMEDOUT)
                    inv_fail(r, "item %zu never started but has status %d "
                             "(%s)", i, st, parmap_err_name(st));
                else if (nr_code == 0)
                    nr_code = st;
                else if (st != nr_code)
                    inv_fail(r, "items never started have two statuses: "
                             "%d and %d (item %zu)", nr_code, st, i);
            }
        } else {
            if (calls > 1 + e->retries)
                inv_fail(r, "item %zu called %u times with %u retries", i,
                         calls, e->retries);
            if (status != NULL && st != last)
                inv_fail(r, "item %zu: status %d but its last attempt "
                         "returned %d (after %u calls)", i, st, last, calls);
            if (last == 0) {
                ok++;
            } else {
                if (failed == 0) {
                    first_failed = i;
                    first_error = last;
                }
                failed++;
                if (last == rc)
                    rc_is_item_failure = 1;
            }
        }
        if (writes != (unsigned)done)
            inv_fail(r, "item %zu (%s) had its output written %u times", i,
                     done ? "done" : calls ? "failed" : "not run", writes);
        if (m->out != NULL) {
            const unsigned char *slot = m->out + i * m->out_size;
            if (done) {
                uint64_t v;
                memcpy(&v, slot, sizeof v);
                if (v != inv_out_value(m->tag, i))
                    inv_fail(r, "item %zu is done but its slot holds "
                             "another value", i);
            } else {
                for (size_t b = 0; b < m->out_size; b++)
                    if (slot[b] != INV_SENTINEL) {
                        inv_fail(r, "item %zu (%s, status %d) had its "
                                 "output slot changed", i,
                                 calls ? "failed" : "not run", st);
                        break;
                    }
            }
        }
        if (rec != NULL) {
            if (rec[i].attempts != calls)
                inv_fail(r, "item %zu: record says %u attempts, %u calls "
                         "were made", i, rec[i].attempts, calls);
            if (status != NULL && rec[i].status != st)
                inv_fail(r, "item %zu: record status %d, status %d", i,
                         rec[i].status, st);
            if (status == NULL && calls > 0 && rec[i].status != last)
                inv_fail(r, "item %zu: record status %d, last attempt "
                         "returned %d", i, rec[i].status, last);
            if (status == NULL && calls == 0 &&
                rec[i].status != PARMAP_ENOTRUN &&
                rec[i].status != PARMAP_ETIMEDOUT)
                inv_fail(r, "item %zu never started, record status %d", i,
                         rec[i].status);
            if (!(rec[i].seconds >= 0.0))
                inv_fail(r, "item %zu: record seconds %g", i, rec[i].seconds);
        }
    }
    if (m->out_block != NULL) {
        const unsigned char *tail = m->out + m->n * m->out_size;
        for (size_t b = 0; b < INV_GUARD; b++)
            if (m->out_block[b] != INV_SENTINEL || tail[b] != INV_SENTINEL) {
                inv_fail(r, "bytes around the output array were written");
                break;
            }
    }

    if (sum != NULL &&
        (sum->succeeded != ok || sum->failed != failed ||
         sum->not_run != notrun || sum->first_failed != first_failed ||
         sum->first_error != first_error))
        inv_fail(r, "summary {ok %zu, failed %zu, not run %zu, first %zu, "
                 "error %d} but the items say {%zu, %zu, %zu, %zu, %d}",
                 sum->succeeded, sum->failed, sum->not_run, sum->first_failed,
                 sum->first_error, ok, failed, notrun, first_failed,
                 first_error);

    /* The return value. */
    int stop_cause = e->cancel || e->timeout || h.when != PARMAP_HALT_NEVER ||
                     INV_LD(&m->progress_stopped);
    if (rc == 0) {
        if (failed != 0 || notrun != 0)
            inv_fail(r, "returned 0 with %zu failed and %zu not run", failed,
                     notrun);
    } else if (rc == PARMAP_EFAILED) {
        if (failed == 0 || notrun != 0)
            inv_fail(r, "returned EFAILED with %zu failed and %zu not run",
                     failed, notrun);
    } else if (rc == PARMAP_ECANCELED) {
        if (!e->cancel && !INV_LD(&m->progress_stopped))
            inv_fail(r, "returned ECANCELED with neither a token nor a "
                     "progress callback that asked to stop");
    } else if (rc == PARMAP_ETIMEDOUT) {
        if (!e->timeout)
            inv_fail(r, "returned ETIMEDOUT without a timeout");
    } else if (rc == PARMAP_EHALTED) {
        if (h.when == PARMAP_HALT_NEVER || h.on == PARMAP_HALT_ON_FAIL)
            inv_fail(r, "returned EHALTED without a halt rule on successes "
                     "or completions");
        else if (!inv_rule_reached(&h, h.on == PARMAP_HALT_ON_SUCCESS
                                           ? ok
                                           : ok + failed,
                                   m->n))
            inv_fail(r, "returned EHALTED but the rule was not reached "
                     "(ok %zu, failed %zu)", ok, failed);
    } else if (!inv_is_library_code(rc) && rc_is_item_failure) {
        if (h.when == PARMAP_HALT_NEVER || h.on != PARMAP_HALT_ON_FAIL)
            inv_fail(r, "returned an item's code %d without fail-fast or a "
                     "halt rule on failures", rc);
        else if (!inv_rule_reached(&h, failed, m->n))
            inv_fail(r, "returned item code %d but the halt rule was not "
                     "reached (%zu failed)", rc, failed);
    } else {
        inv_fail(r, "returned %d (%s), which is not a possible result", rc,
                 parmap_err_name(rc));
    }
    if (rc == 0 || rc == PARMAP_EFAILED) {
        /* Not stopped: a rule that was reached would have stopped it. */
        if (h.when != PARMAP_HALT_NEVER) {
            size_t count = h.on == PARMAP_HALT_ON_FAIL      ? failed
                           : h.on == PARMAP_HALT_ON_SUCCESS ? ok
                                                            : ok + failed;
            if (inv_rule_reached(&h, count, m->n))
                inv_fail(r, "the halt rule was reached (%zu) but the map "
                         "returned %d", count, rc);
        }
    } else if (!stop_cause) {
        inv_fail(r, "stopped with %d but nothing could stop it", rc);
    }
    if (notrun != 0 && nr_code != 0 &&
        (nr_code == PARMAP_ETIMEDOUT) != (rc == PARMAP_ETIMEDOUT))
        inv_fail(r, "returned %d but items never started are %s", rc,
                 parmap_err_name(nr_code));

    /* Progress. */
    if (e->has_progress) {
        size_t calls = INV_LD(&m->progress_calls);
        if (INV_LD(&m->progress_bad) != 0)
            inv_fail(r, "%zu progress calls broke a rule; first: %s",
                     (size_t)INV_LD(&m->progress_bad),
                     m->progress_first);
        if (m->n > 0 && calls == 0)
            inv_fail(r, "the progress callback was never called");
        if (m->n > 0 && calls > 0) {
            if (m->last_done != ok + failed || m->last_failed != failed)
                inv_fail(r, "final progress call: done %zu failed %zu, "
                         "items say %zu, %zu", m->last_done, m->last_failed,
                         ok + failed, failed);
            if (!pthread_equal(m->last_thread, pthread_self()))
                inv_fail(r, "final progress call not on the caller's "
                         "thread");
        }
    }
    return inv_violations(r) - before;
}

/* ------------------------------------------------------------------------ */
/* Streams                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct inv_stream {
    size_t n;       /* items the producer gives, or SIZE_MAX (endless) */
    size_t cap;     /* size of the per-index arrays */
    uint64_t tag;
    int ordered;
    int producer_error; /* the producer fails at index n with this (or 0) */
    atomic_size_t produced;
    atomic_uint *calls;
    atomic_int *last_rc;
    unsigned char *delivered; /* consumer-side only */
    size_t ndelivered, next_index;
    atomic_size_t bad_args;
    atomic_size_t cur, peak;
    atomic_int in_producer; /* the producer is never called twice at once */
    atomic_size_t producer_overlap;
} inv_stream;

static inline int inv_stream_init(inv_stream *s, size_t n, size_t cap,
                                  uint64_t tag, int ordered)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->cap = cap;
    s->tag = tag;
    s->ordered = ordered;
    s->calls = malloc((cap ? cap : 1) * sizeof *s->calls);
    s->last_rc = malloc((cap ? cap : 1) * sizeof *s->last_rc);
    s->delivered = calloc(cap ? cap : 1, 1);
    if (s->calls == NULL || s->last_rc == NULL || s->delivered == NULL) {
        free((void *)s->calls);
        free((void *)s->last_rc);
        free(s->delivered);
        return -1;
    }
    for (size_t i = 0; i < cap; i++) {
        atomic_init(&s->calls[i], 0);
        atomic_init(&s->last_rc[i], 0);
    }
    atomic_init(&s->produced, 0);
    atomic_init(&s->bad_args, 0);
    atomic_init(&s->cur, 0);
    atomic_init(&s->peak, 0);
    atomic_init(&s->in_producer, 0);
    atomic_init(&s->producer_overlap, 0);
    return 0;
}

static inline void inv_stream_free(inv_stream *s)
{
    free((void *)s->calls);
    free((void *)s->last_rc);
    free(s->delivered);
    memset(s, 0, sizeof *s);
}

/* The producer: items 0..n-1 (capped at cap), then the end, or the
 * producer error. in_size must be >= 8. */
static inline int inv_stream_produce(inv_stream *s, size_t i, void *in)
{
    int rc = 1;
    if (INV_XCHG(&s->in_producer, 1) != 0)
        INV_ADD(&s->producer_overlap, 1);
    if (i != INV_LD(&s->produced))
        INV_ADD(&s->bad_args, 1);
    if (i >= s->n || i >= s->cap) {
        rc = s->producer_error != 0 ? s->producer_error : 0;
    } else {
        uint64_t v = inv_in_value(s->tag, i);
        memcpy(in, &v, sizeof v);
        INV_ADD(&s->produced, 1);
    }
    INV_ST(&s->in_producer, 0);
    return rc;
}

static inline unsigned inv_stream_attempt_begin(inv_stream *s, size_t i,
                                                const void *in)
{
    size_t c = INV_ADD(&s->cur, 1) + 1;
    size_t p = INV_LD(&s->peak);
    while (c > p && !INV_CAS(&s->peak, &p, c)) {
    }
    if (i >= s->cap || i >= INV_LD(&s->produced)) {
        INV_ADD(&s->bad_args, 1);
        return 1;
    }
    uint64_t v;
    memcpy(&v, in, sizeof v);
    if (v != inv_in_value(s->tag, i))
        INV_ADD(&s->bad_args, 1);
    return INV_ADD(&s->calls[i], 1) + 1;
}

static inline void inv_stream_attempt_end(inv_stream *s, size_t i, void *out,
                                          int rc)
{
    if (i < s->cap) {
        if (rc == 0 && out != NULL) {
            uint64_t v = inv_out_value(s->tag, i);
            memcpy(out, &v, sizeof v);
        }
        INV_ST(&s->last_rc[i], rc);
    }
    INV_SUB(&s->cur, 1);
}

/* Checks one item returned by parmap_stream_next(). */
static inline void inv_stream_item(inv_report *r, inv_stream *s,
                                   const parmap_stream_item *it,
                                   unsigned retries)
{
    size_t i = it->index;
    if (i >= s->cap || i >= INV_LD(&s->produced)) {
        inv_fail(r, "delivered index %zu (status %d, %u attempts), but "
                 "only %zu were produced (n %zu, tracking %zu, %zu "
                 "delivered before)", i, it->status, it->attempts,
                 (size_t)INV_LD(&s->produced), s->n, s->cap,
                 s->ndelivered);
        return;
    }
    if (s->delivered[i]) {
        inv_fail(r, "index %zu delivered twice", i);
        return;
    }
    s->delivered[i] = 1;
    s->ndelivered++;
    if (s->ordered && i != s->next_index)
        inv_fail(r, "ordered stream delivered %zu, expected %zu", i,
                 s->next_index);
    s->next_index = i + 1;
    unsigned calls = INV_LD(&s->calls[i]);
    int last = INV_LD(&s->last_rc[i]);
    uint64_t v;
    memcpy(&v, it->in, sizeof v);
    if (v != inv_in_value(s->tag, i))
        inv_fail(r, "item %zu delivered with another item's input", i);
    if (it->attempts != calls)
        inv_fail(r, "item %zu: %u attempts reported, %u calls made", i,
                 it->attempts, calls);
    if (calls > 1 + retries)
        inv_fail(r, "item %zu called %u times with %u retries", i, calls,
                 retries);
    if (calls == 0) {
        if (it->status != PARMAP_ENOTRUN && it->status != PARMAP_ETIMEDOUT)
            inv_fail(r, "item %zu never ran but has status %d", i,
                     it->status);
    } else if (it->status != last) {
        inv_fail(r, "item %zu: status %d, its last attempt returned %d", i,
                 it->status, last);
    } else if (last == 0 && it->out != NULL) {
        memcpy(&v, it->out, sizeof v);
        if (v != inv_out_value(s->tag, i))
            inv_fail(r, "item %zu is done but its output is wrong", i);
    }
}

/* After the stream's final parmap_stream_next() returned rc (or after an
 * early destroy, with rc = 1 and `early` set): every produced item was
 * delivered exactly once (unless destroyed early), and the final code
 * agrees. */
static inline void inv_stream_end(inv_report *r, inv_stream *s, int rc,
                                  int early, int may_stop, size_t limit)
{
    size_t produced = INV_LD(&s->produced);
    if (INV_LD(&s->bad_args) != 0)
        inv_fail(r, "%zu stream callbacks got a wrong index or input",
                 (size_t)INV_LD(&s->bad_args));
    if (INV_LD(&s->producer_overlap) != 0)
        inv_fail(r, "the producer ran twice at once");
    if (INV_LD(&s->cur) != 0)
        inv_fail(r, "stream callbacks still running after destroy");
    if (limit != 0 && INV_LD(&s->peak) > limit)
        inv_fail(r, "%zu stream callbacks at once, limit %zu",
                 (size_t)INV_LD(&s->peak), limit);
    for (size_t i = produced; i < s->cap; i++)
        if (INV_LD(&s->calls[i]) != 0)
            inv_fail(r, "item %zu was never produced but ran", i);
    if (early)
        return;
    if (s->ndelivered != produced)
        inv_fail(r, "%zu items produced, %zu delivered", produced,
                 s->ndelivered);
    if (rc == 0) {
        if (produced != (s->n < s->cap ? s->n : s->cap))
            inv_fail(r, "stream ended with 0 after %zu of %zu items",
                     produced, s->n);
    } else if (rc == s->producer_error) {
        /* The producer's error ends it. */
    } else if (!may_stop) {
        inv_fail(r, "stream ended with %d (%s) but nothing could stop it",
                 rc, parmap_err_name(rc));
    }
}

/* ------------------------------------------------------------------------ */
/* Groups                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct inv_task {
    struct inv_group *g;
    size_t slot;           /* position in the tracker */
    int fail_attempts;     /* the first this many attempts fail */
    int code;              /* with this code */
    unsigned spin_ns;      /* busy work per attempt */
    parmap_cancel *trigger; /* triggered by the first attempt, if set */
    atomic_uint calls;
    atomic_int last_rc;
} inv_task;

typedef struct inv_group {
    inv_task *tasks;
    size_t cap, used;
    size_t *ids;           /* id of each submitted task, by slot */
    unsigned char *submitted;
    atomic_size_t cur, peak;
} inv_group;

static inline int inv_group_init(inv_group *g, size_t cap)
{
    memset(g, 0, sizeof *g);
    g->cap = cap;
    g->tasks = calloc(cap ? cap : 1, sizeof *g->tasks);
    g->ids = calloc(cap ? cap : 1, sizeof *g->ids);
    g->submitted = calloc(cap ? cap : 1, 1);
    if (g->tasks == NULL || g->ids == NULL || g->submitted == NULL) {
        free(g->tasks);
        free(g->ids);
        free(g->submitted);
        return -1;
    }
    for (size_t i = 0; i < cap; i++) {
        g->tasks[i].g = g;
        g->tasks[i].slot = i;
        atomic_init(&g->tasks[i].calls, 0);
        atomic_init(&g->tasks[i].last_rc, 0);
    }
    atomic_init(&g->cur, 0);
    atomic_init(&g->peak, 0);
    return 0;
}

static inline void inv_group_free(inv_group *g)
{
    free(g->tasks);
    free(g->ids);
    free(g->submitted);
    memset(g, 0, sizeof *g);
}

/* The task body: fails its first fail_attempts attempts. */
static inline int inv_task_fn(void *ctx)
{
    inv_task *t = ctx;
    inv_group *g = t->g;
    size_t c = INV_ADD(&g->cur, 1) + 1;
    size_t p = INV_LD(&g->peak);
    while (c > p && !INV_CAS(&g->peak, &p, c)) {
    }
    unsigned a = INV_ADD(&t->calls, 1) + 1;
    if (a == 1 && t->trigger != NULL)
        parmap_cancel_trigger(t->trigger);
    if (t->spin_ns != 0)
        inv_spin_ns(t->spin_ns, 0);
    int rc = (int)a <= t->fail_attempts ? t->code : 0;
    INV_ST(&t->last_rc, rc);
    INV_SUB(&g->cur, 1);
    return rc;
}

/* After every task finished (a WAIT_ALL returned 0, or before destroy):
 * each submitted task's outcome agrees with what it did. `may_stop`: the
 * group may have been stopped (tasks left unrun, retries cut short);
 * `exact`: no task was resubmitted and nothing could stop the group, so
 * each ran exactly as often as its failures and the retries say. */
static inline void inv_group_check(inv_report *r, inv_group *ig,
                                   parmap_group *g, unsigned retries,
                                   size_t limit, int may_stop, int exact)
{
    size_t done = 0, pending = 0, nsub = 0;
    if (parmap_group_counts(g, &done, &pending) != 0)
        inv_fail(r, "parmap_group_counts failed");
    if (INV_LD(&ig->cur) != 0)
        inv_fail(r, "tasks still running after the wait");
    if (limit != 0 && INV_LD(&ig->peak) > limit)
        inv_fail(r, "%zu tasks ran at once, limit %zu",
                 (size_t)INV_LD(&ig->peak), limit);
    for (size_t k = 0; k < ig->used; k++) {
        if (!ig->submitted[k])
            continue;
        nsub++;
        inv_task *t = &ig->tasks[k];
        int st = 0x7eadbeef;
        unsigned attempts = 0xdead;
        int rc = parmap_group_task(g, ig->ids[k], &st, &attempts);
        unsigned calls = INV_LD(&t->calls);
        if (rc != 0) {
            inv_fail(r, "task %zu: parmap_group_task = %d after every task "
                     "finished", ig->ids[k], rc);
            continue;
        }
        if (attempts != calls)
            inv_fail(r, "task %zu: %u attempts reported, %u calls",
                     ig->ids[k], attempts, calls);
        if (calls == 0) {
            if (st != PARMAP_ENOTRUN && st != PARMAP_ETIMEDOUT)
                inv_fail(r, "task %zu never ran but has status %d",
                         ig->ids[k], st);
            else if (!may_stop)
                inv_fail(r, "task %zu not run (%d) but nothing could stop "
                         "the group", ig->ids[k], st);
        } else if (st != INV_LD(&t->last_rc)) {
            inv_fail(r, "task %zu: status %d, its last attempt returned %d",
                     ig->ids[k], st, INV_LD(&t->last_rc));
        } else if (exact && calls != (t->fail_attempts < (int)retries + 1
                                          ? (unsigned)t->fail_attempts + 1
                                          : retries + 1)) {
            inv_fail(r, "task %zu ran %u times, fails %d times, %u retries",
                     ig->ids[k], calls, t->fail_attempts, retries);
        }
    }
    if (pending != 0 || done != nsub)
        inv_fail(r, "counts: %zu done, %zu pending, %zu tasks submitted",
                 done, pending, nsub);
}

#endif /* PARMAP_TEST_INVARIANT_H */
