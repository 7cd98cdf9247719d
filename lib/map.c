/*
 * The ordered map: parmap_map() and the job that hands out its items.
 *
 * Items are claimed in chunks from one atomic counter; result i is written
 * only by the thread that ran item i, into slot i, so order holds by
 * construction and no reordering buffer is needed.
 *
 * In automatic mode each thread sizes its next chunk from the pace of its
 * last one: chunks grow while items are cheap, up to about CHUNK_TARGET_NS
 * of work, and never exceed a share of what is left, so the map ends
 * balanced (guided scheduling, with the chunk also bounded in time).
 *
 * Lock order: only pool->lock (to record the lowest failing index), never
 * held while user code runs.
 */
#include "internal.h"

#include <stdint.h>

/* Work per chunk in automatic mode: long enough that claiming a chunk and
 * reading the clock cost well under 1%, short enough that progress and
 * cancellation stay prompt and the end of the map stays balanced. */
#define CHUNK_TARGET_NS 50000u
/* How fast a chunk may grow from one claim to the next. */
#define CHUNK_GROWTH 8u
/* Work that is not worth splitting further: below this, handing part of it
 * to another thread costs more than it saves (a contended claim alone is
 * about 100 ns). */
#define SPLIT_MIN_NS 2000u

/* Why a map stopped before running every item. */
enum stop_reason { STOP_NONE = 0, STOP_FAILED, STOP_CANCELLED };

struct map_job {
    struct parmap__job base; /* first: the queue sees only this */

    /* Read-only once the job is queued. */
    parmap_pool *pool;
    parmap_fn fn;
    void *ctx;
    const char *in;
    size_t in_size;
    char *out;
    size_t out_size;
    size_t n;
    int *status;
    size_t fixed_chunk; /* 0 = automatic */
    size_t threads;     /* threads that may take part */
    int fail_fast;

    /* The next unclaimed index; may run past n by the last claims. */
    PARMAP__ALIGNED atomic_size_t next;

    /* A stop_reason; set once, by the first thread to stop the map. */
    PARMAP__ALIGNED atomic_int stop;
    int halt_error; /* written once, by the thread that set STOP_FAILED */

    /* Lowest failing index: read without the lock as a filter, changed
     * (together with first_error) under pool->lock. */
    atomic_size_t first_failed;
    int first_error;

    struct parmap__progress progress;
};

static void request_stop(struct map_job *j, int reason, int err)
{
    int none = STOP_NONE;

    if (atomic_compare_exchange_strong(&j->stop, &none, reason) &&
        reason == STOP_FAILED)
        j->halt_error = err;
    parmap__job_close(&j->base);
}

static void note_failure(struct map_job *j, size_t i, int rc)
{
    if (i < atomic_load_explicit(&j->first_failed, memory_order_relaxed)) {
        parmap__mutex_lock(&j->pool->lock);
        if (i < atomic_load_explicit(&j->first_failed,
                                     memory_order_relaxed)) {
            atomic_store_explicit(&j->first_failed, i, memory_order_relaxed);
            j->first_error = rc;
        }
        parmap__mutex_unlock(&j->pool->lock);
    }
    if (j->fail_fast)
        request_stop(j, STOP_FAILED, rc);
}

/* Claims up to `want` items: [*begin, *end). Returns 0 when nothing is
 * left or the map was stopped. A compare-and-swap rather than fetch-add
 * keeps `next` from wrapping when n is close to SIZE_MAX. */
static int claim(struct map_job *j, size_t want, size_t *begin, size_t *end)
{
    size_t cur = atomic_load_explicit(&j->next, memory_order_relaxed);
    size_t take;

    do {
        if (cur >= j->n ||
            atomic_load_explicit(&j->stop, memory_order_relaxed)) {
            parmap__job_close(&j->base);
            return 0;
        }
        take = j->n - cur < want ? j->n - cur : want;
    } while (!atomic_compare_exchange_weak_explicit(
        &j->next, &cur, cur + take, memory_order_relaxed,
        memory_order_relaxed));
    *begin = cur;
    *end = cur + take;
    return 1;
}

/* The next chunk size from the pace of the last chunk: `items` took `ns`. */
static size_t next_chunk(const struct map_job *j, size_t chunk, size_t items,
                         uint64_t ns)
{
    uint64_t per_item = items > 0 ? ns / items : ns;
    size_t want, cap, next, left;

    if (per_item == 0)
        per_item = 1;
    want = (size_t)(CHUNK_TARGET_NS / per_item);
    if (want > chunk * CHUNK_GROWTH)
        want = chunk * CHUNK_GROWTH;
    next = atomic_load_explicit(&j->next, memory_order_relaxed);
    left = next < j->n ? j->n - next : 0;
    if (left <= SPLIT_MIN_NS / per_item)
        return left > 0 ? left : 1;
    /* Leave the others enough to even out the end of the map. */
    if (j->threads > 1) {
        cap = left / j->threads;
        if (want > cap)
            want = cap;
    }
    return want > 0 ? want : 1;
}

static void mark_not_run(int *status, size_t begin, size_t end)
{
    if (status != NULL)
        for (size_t i = begin; i < end; i++)
            status[i] = PARMAP_ENOTRUN;
}

static void map_work(struct parmap__job *base)
{
    struct map_job *j = (struct map_job *)base;
    /* Locals, so the item loop does not reload them after each opaque
     * callback. */
    parmap_fn fn = j->fn;
    void *ctx = j->ctx;
    const char *in = j->in;
    char *out = j->out;
    size_t in_size = j->in_size, out_size = j->out_size;
    int *status = j->status;
    size_t chunk = j->fixed_chunk != 0 ? j->fixed_chunk : 1;
    /* Without a progress callback nobody reads the counts before the map
     * ends, so they are published once per thread instead of per chunk. */
    int report = j->progress.fn != NULL;
    size_t all_ok = 0, all_bad = 0;
    uint64_t t0 = parmap__now_ns();
    size_t begin, end;

    while (claim(j, chunk, &begin, &end)) {
        size_t ok = 0, bad = 0, i;

        for (i = begin; i < end; i++) {
            if (atomic_load_explicit(&j->stop, memory_order_relaxed))
                break;
            int rc = fn(ctx, i, in != NULL ? in + i * in_size : NULL,
                        out != NULL ? out + i * out_size : NULL);
            if (status != NULL)
                status[i] = rc;
            if (rc != 0) {
                bad++;
                note_failure(j, i, rc);
            } else {
                ok++;
            }
        }
        mark_not_run(status, i, end);

        uint64_t t1 = parmap__now_ns();
        if (j->fixed_chunk == 0)
            chunk = next_chunk(j, chunk, end - begin, t1 - t0);
        if (report) {
            if (parmap__progress_add(&j->progress, ok, bad, t1) != 0)
                request_stop(j, STOP_CANCELLED, 0);
        } else {
            all_ok += ok;
            all_bad += bad;
        }
        t0 = t1;
    }
    if (!report)
        parmap__progress_add(&j->progress, all_ok, all_bad, 0);
}

/* An array argument must be NULL with size 0 or non-NULL with a size,
 * and n elements of it must fit in size_t. */
static int check_array(const void *a, size_t size, size_t n)
{
    if ((a == NULL) != (size == 0))
        return -EINVAL;
    if (size != 0 && n > SIZE_MAX / size)
        return -EOVERFLOW;
    return 0;
}

static void fill_summary(parmap_summary *s, size_t n, size_t done,
                         size_t failed, size_t first_failed, int first_error)
{
    if (s == NULL)
        return;
    s->succeeded = done - failed;
    s->failed = failed;
    s->not_run = n - done;
    s->first_failed = first_failed;
    s->first_error = first_error;
}

int parmap_map(parmap_pool *pool, size_t n, const void *in, size_t in_size,
               void *out, size_t out_size, parmap_fn fn, void *ctx,
               const parmap_opts *opts)
{
    static const parmap_opts defaults;
    struct map_job j;
    size_t limit, claimed, done, failed;
    int rc;

    if (opts == NULL)
        opts = &defaults;
    if (n == 0) {
        fill_summary(opts->summary, 0, 0, 0, SIZE_MAX, 0);
        return 0;
    }
    if (pool == NULL || fn == NULL)
        return -EINVAL;
    if (!(opts->progress_interval >= 0.0)) /* also rejects NaN */
        return -EINVAL;
    if ((rc = check_array(in, in_size, n)) != 0 ||
        (rc = check_array(out, out_size, n)) != 0)
        return rc;

    limit = pool->nthreads;
    if (opts->max_concurrency != 0 && opts->max_concurrency < limit)
        limit = opts->max_concurrency;
    if (limit > n)
        limit = n;

    j.pool = pool;
    j.fn = fn;
    j.ctx = ctx;
    j.in = in;
    j.in_size = in_size;
    j.out = out;
    j.out_size = out_size;
    j.n = n;
    j.status = opts->status;
    j.fixed_chunk = opts->chunk_size;
    j.threads = limit;
    j.fail_fast = (opts->flags & PARMAP_FAIL_FAST) != 0;
    atomic_init(&j.next, 0);
    atomic_init(&j.stop, STOP_NONE);
    j.halt_error = 0;
    atomic_init(&j.first_failed, SIZE_MAX);
    j.first_error = 0;
    parmap__progress_init(&j.progress, opts->progress, opts->progress_ctx,
                          opts->progress_interval, n, parmap__now_ns());
    parmap__job_init(&j.base, map_work, limit, limit - 1);

    parmap__job_start(pool, &j.base);
    map_work(&j.base);
    parmap__job_finish(pool, &j.base);

    /* Alone now: every helper has left and published its counts. */
    claimed = atomic_load_explicit(&j.next, memory_order_relaxed);
    if (claimed < n)
        mark_not_run(j.status, claimed, n);
    done = atomic_load_explicit(&j.progress.done, memory_order_relaxed);
    failed = atomic_load_explicit(&j.progress.failed, memory_order_relaxed);
    parmap__progress_final(&j.progress, parmap__now_ns());
    fill_summary(opts->summary, n, done, failed,
                 atomic_load_explicit(&j.first_failed, memory_order_relaxed),
                 j.first_error);

    switch (atomic_load_explicit(&j.stop, memory_order_relaxed)) {
    case STOP_CANCELLED:
        return -ECANCELED;
    case STOP_FAILED:
        return j.halt_error;
    default:
        return failed != 0 ? PARMAP_EFAILED : 0;
    }
}
