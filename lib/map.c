/*
 * The ordered map: parmap_map() and the job that hands out its items.
 *
 * Items are claimed in chunks from one atomic counter; result i is written
 * only by the thread that ran item i, into slot i, so order holds by
 * construction and no reordering buffer is needed.
 *
 * In automatic mode each thread sizes its next chunk from the pace of its
 * last one: chunks grow while items are cheap, up to about CHUNK_TARGET_NS
 * of work, never exceed a share of what is left, so the map ends balanced
 * (guided scheduling, with the chunk also bounded in time), and are never
 * split below what a hand-off costs.
 *
 * Each item ends in exactly one state: succeeded, failed (with the code of
 * its last attempt), or never started (PARMAP_ENOTRUN, or PARMAP_ETIMEDOUT
 * when the call's deadline passed). A failed attempt that is retried after
 * a delay waits in a not-before queue, not on a thread.
 *
 * Lock order: only pool->lock (for the lowest failing index and the retry
 * queue), never held while user code runs.
 */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>

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
/* A cancellation token can only be polled (triggering it must be
 * async-signal-safe), so a wait for a delayed retry looks at it this often. */
#define RETRY_POLL_NS 20000000u

/* A failed attempt waiting for its retry. */
struct retry {
    uint64_t due_ns;
    size_t index;
    unsigned attempts;
    int rc; /* the last attempt's code, final if no retry happens */
};

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
    parmap_record *records;
    size_t fixed_chunk; /* 0 = automatic */
    size_t threads;     /* threads that may take part */
    int policy;         /* per-item rules: see uses_policy() */
    unsigned retries;
    uint64_t retry_delay_ns, retry_delay_max_ns;
    parmap_retry_fn retry_if;
    void *retry_ctx;

    /* The next unclaimed index; may run past n by the last claims. */
    PARMAP__ALIGNED atomic_size_t next;

    struct parmap__stop stop;

    /* Lowest failing index: read without the lock as a filter, changed
     * (together with first_error) under pool->lock. */
    PARMAP__ALIGNED atomic_size_t first_failed;
    int first_error;

    /* Retries waiting for their time: a min-heap on due_ns under
     * pool->lock; `queued` mirrors its length for lock-free peeks. */
    atomic_size_t queued;
    struct retry *heap;
    size_t heap_len, heap_cap;

    struct parmap__progress progress;
};

static int uses_policy(const parmap_opts *o, const struct parmap__stop *st)
{
    return st->halt.when != PARMAP_HALT_NEVER || o->cancel != NULL ||
           o->timeout > 0.0 || o->item_timeout > 0.0 || o->retries != 0 ||
           o->records != NULL;
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
}

static int stopped(struct map_job *j)
{
    return atomic_load_explicit(&j->stop.state, memory_order_relaxed) !=
           PARMAP__RUNNING;
}

/* Claims up to `want` items: [*begin, *end). Returns 0 when nothing is
 * left or the map was stopped. A compare-and-swap rather than fetch-add
 * keeps `next` from wrapping when n is close to SIZE_MAX. */
static int claim(struct map_job *j, size_t want, size_t *begin, size_t *end)
{
    size_t cur = atomic_load_explicit(&j->next, memory_order_relaxed);
    size_t take;

    do {
        if (cur >= j->n || stopped(j)) {
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

static void mark_not_run(struct map_job *j, size_t begin, size_t end)
{
    if (begin >= end || (j->status == NULL && j->records == NULL))
        return;
    int code = parmap__stop_not_run_status(&j->stop);
    for (size_t i = begin; i < end; i++) {
        if (j->status != NULL)
            j->status[i] = code;
        if (j->records != NULL) {
            j->records[i].status = code;
            j->records[i].attempts = 0;
            j->records[i].seconds = 0.0;
        }
    }
}

/* ---- The not-before queue of retries (under pool->lock) ---------------- */

static void heap_swap(struct retry *a, struct retry *b)
{
    struct retry t = *a;
    *a = *b;
    *b = t;
}

static int heap_push(struct map_job *j, const struct retry *r)
{
    if (j->heap_len == j->heap_cap) {
        size_t cap = j->heap_cap ? j->heap_cap * 2 : 16;
        struct retry *h = parmap__realloc(j->heap, cap * sizeof *h);
        if (h == NULL)
            return -ENOMEM;
        j->heap = h;
        j->heap_cap = cap;
    }
    size_t i = j->heap_len++;
    j->heap[i] = *r;
    while (i > 0 && j->heap[(i - 1) / 2].due_ns > j->heap[i].due_ns) {
        heap_swap(&j->heap[(i - 1) / 2], &j->heap[i]);
        i = (i - 1) / 2;
    }
    atomic_store_explicit(&j->queued, j->heap_len, memory_order_relaxed);
    return 0;
}

static struct retry heap_pop(struct map_job *j)
{
    struct retry top = j->heap[0];
    size_t i = 0;

    j->heap[0] = j->heap[--j->heap_len];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < j->heap_len && j->heap[l].due_ns < j->heap[m].due_ns)
            m = l;
        if (r < j->heap_len && j->heap[r].due_ns < j->heap[m].due_ns)
            m = r;
        if (m == i)
            break;
        heap_swap(&j->heap[i], &j->heap[m]);
        i = m;
    }
    atomic_store_explicit(&j->queued, j->heap_len, memory_order_relaxed);
    return top;
}

/* Takes a retry that is due (or any, when `any`), if there is one. */
static int take_retry(struct map_job *j, int any, struct retry *out)
{
    int found = 0;

    if (atomic_load_explicit(&j->queued, memory_order_relaxed) == 0)
        return 0;
    parmap__mutex_lock(&j->pool->lock);
    if (j->heap_len > 0 &&
        (any || j->heap[0].due_ns <= parmap__now_ns())) {
        *out = heap_pop(j);
        found = 1;
    }
    parmap__mutex_unlock(&j->pool->lock);
    return found;
}

/* ---- Running items ----------------------------------------------------- */

/* Counts of one thread's finished items, published per chunk (or once, at
 * the end, when nothing reads them sooner). */
struct tally {
    size_t ok, bad;
};

/* An item's final outcome. */
static void finish_item(struct map_job *j, size_t i, int rc, unsigned attempts,
                        struct tally *t)
{
    if (j->status != NULL)
        j->status[i] = rc;
    if (j->records != NULL) {
        j->records[i].status = rc;
        j->records[i].attempts = attempts;
    }
    if (rc != 0) {
        t->bad++;
        note_failure(j, i, rc);
    } else {
        t->ok++;
    }
    parmap__stop_count(&j->stop, rc);
}

/* Runs item i under the per-item rules, from attempt `attempts` + 1 on
 * (0 for a fresh item, more for a retry taken from the queue). */
static void run_with_policy(struct map_job *j, struct parmap__running *r,
                            size_t i, unsigned attempts, struct tally *t)
{
    const void *in = j->in != NULL ? j->in + i * j->in_size : NULL;
    void *out = j->out != NULL ? j->out + i * j->out_size : NULL;
    int timed = j->records != NULL || j->stop.item_timeout_ns != 0;
    int rc;

    if (attempts == 0 && j->records != NULL)
        j->records[i].seconds = 0.0;
    for (;;) {
        uint64_t t0 = timed ? parmap__now_ns() : 0;
        r->item_deadline_ns =
            j->stop.item_timeout_ns != 0 ? t0 + j->stop.item_timeout_ns : 0;
        rc = j->fn(j->ctx, i, in, out);
        attempts++;
        if (j->records != NULL)
            j->records[i].seconds += (double)(parmap__now_ns() - t0) * 1e-9;

        if (rc == 0 || attempts > j->retries ||
            parmap__stop_poll(&j->stop) ||
            (j->retry_if != NULL &&
             !j->retry_if(j->retry_ctx, i, rc, attempts)))
            break;
        uint64_t delay = parmap__backoff_ns(j->retry_delay_ns,
                                            j->retry_delay_max_ns, attempts);
        if (delay == 0)
            continue;
        struct retry later = {parmap__now_ns() + delay, i, attempts, rc};
        parmap__mutex_lock(&j->pool->lock);
        int queued = heap_push(j, &later) == 0;
        parmap__mutex_unlock(&j->pool->lock);
        if (queued)
            return;
        break; /* Out of memory for the queue: the failure stands. */
    }
    finish_item(j, i, rc, attempts, t);
}

static void publish(struct map_job *j, struct tally *t, uint64_t now_ns)
{
    if (parmap__progress_add(&j->progress, t->ok, t->bad, now_ns) != 0)
        parmap__stop(&j->stop, 1, -ECANCELED);
    t->ok = t->bad = 0;
}

/* Runs items [begin, end) without per-item rules, stopping early only if
 * `stoppable` and the map was stopped. Returns the index it reached.
 * Without per-item rules only a progress callback can stop the map; it
 * runs between chunks, and automatic chunks are short, so then only a
 * map with a fixed chunk size looks for a stop before every item: the
 * others see it when they claim their next chunk, and their loop stays
 * as tight as the plain one (about 3% less time on tiny items).
 * Inlined into map_work with constant arguments, so the common case (no
 * status array, nothing that can stop the map) compiles to a loop that
 * does little more than call the callback. Addresses are computed as
 * integers: with no array, the address and the stride are both 0, and the
 * callback gets NULL without pointer arithmetic on NULL. */
static inline __attribute__((always_inline)) size_t
run_items(struct map_job *j, size_t begin, size_t end, int stoppable,
          int *status, struct tally *t)
{
    parmap_fn fn = j->fn;
    void *ctx = j->ctx;
    size_t in_size = j->in_size, out_size = j->out_size;
    uintptr_t in = (uintptr_t)j->in + begin * in_size;
    uintptr_t out = (uintptr_t)j->out + begin * out_size;
    size_t i, bad = 0;

    for (i = begin; i < end; i++, in += in_size, out += out_size) {
        if (stoppable && stopped(j))
            break;
        int rc = fn(ctx, i, (const void *)in, (void *)out);
        if (status != NULL)
            status[i] = rc;
        if (rc != 0) {
            bad++;
            note_failure(j, i, rc);
        }
    }
    t->bad += bad;
    t->ok += (i - begin) - bad;
    return i;
}

static void map_work(struct parmap__job *base)
{
    struct map_job *j = (struct map_job *)base;
    int *status = j->status;
    int policy = j->policy;
    /* Without a progress callback nobody reads the counts before the map
     * ends, so they are published once per thread instead of per chunk. */
    int report = j->progress.fn != NULL;
    /* Only per-item rules (which have their own loop) and a progress
     * callback can stop a map; see run_items. */
    int stoppable = report && j->fixed_chunk != 0;
    size_t chunk = j->fixed_chunk != 0 ? j->fixed_chunk : 1;
    struct tally t = {0, 0};
    struct parmap__running running;
    struct retry retry;
    uint64_t t0 = parmap__now_ns();
    size_t begin, end, i;

    if (policy)
        parmap__running_enter(&running, &j->stop);
    for (;;) {
        if (policy && !stopped(j) && take_retry(j, 0, &retry)) {
            run_with_policy(j, &running, retry.index, retry.attempts, &t);
            if (report)
                publish(j, &t, parmap__now_ns());
            continue;
        }
        if (!claim(j, chunk, &begin, &end))
            break;

        if (policy) {
            for (i = begin; i < end && !parmap__stop_poll(&j->stop); i++)
                run_with_policy(j, &running, i, 0, &t);
        } else if (!stoppable && status == NULL) {
            i = run_items(j, begin, end, 0, NULL, &t);
        } else {
            i = run_items(j, begin, end, stoppable, status, &t);
        }
        mark_not_run(j, i, end);

        uint64_t t1 = parmap__now_ns();
        if (j->fixed_chunk == 0)
            chunk = next_chunk(j, chunk, end - begin, t1 - t0);
        if (report)
            publish(j, &t, t1);
        t0 = t1;
    }
    if (policy)
        parmap__running_leave(&running);
    if (!report)
        parmap__progress_add(&j->progress, t.ok, t.bad, 0);
}

/* After the main pass, with no helper left: runs the retries still
 * waiting, each when it is due, and lets workers help again. Once the map
 * has stopped, a waiting retry's last failure is final. */
static void drain_retries(struct map_job *j)
{
    struct retry r;

    while (atomic_load_explicit(&j->queued, memory_order_relaxed) != 0) {
        if (parmap__stop_poll(&j->stop)) {
            struct tally t = {0, 0};
            while (take_retry(j, 1, &r))
                finish_item(j, r.index, r.rc, r.attempts, &t);
            parmap__progress_add(&j->progress, t.ok, t.bad, parmap__now_ns());
            return;
        }
        parmap__mutex_lock(&j->pool->lock);
        uint64_t due = j->heap[0].due_ns;
        uint64_t now = parmap__now_ns();
        if (due > now) {
            uint64_t until = due - now > RETRY_POLL_NS ? now + RETRY_POLL_NS
                                                       : due;
            parmap__cond_timedwait_ns(&j->pool->done_cv, &j->pool->lock,
                                      until);
            parmap__mutex_unlock(&j->pool->lock);
            continue;
        }
        size_t ready = j->heap_len;
        parmap__mutex_unlock(&j->pool->lock);

        /* Some are due: run them as a job again, so idle workers help. */
        size_t want = ready < j->threads ? ready : j->threads;
        parmap__job_init(&j->base, map_work, j->threads, want - 1);
        parmap__job_start(j->pool, &j->base);
        map_work(&j->base);
        parmap__job_finish(j->pool, &j->base);
    }
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
    uint64_t start;
    int rc;

    if (opts == NULL)
        opts = &defaults;
    if (n == 0) {
        fill_summary(opts->summary, 0, 0, 0, SIZE_MAX, 0);
        return 0;
    }
    if (pool == NULL || fn == NULL)
        return -EINVAL;
    if (parmap__pool_forked(pool))
        return PARMAP_EFORKED;
    if ((rc = parmap__stop_check_opts(opts)) != 0 ||
        (rc = check_array(in, in_size, n)) != 0 ||
        (rc = check_array(out, out_size, n)) != 0)
        return rc;

    limit = pool->nthreads;
    if (opts->max_concurrency != 0 && opts->max_concurrency < limit)
        limit = opts->max_concurrency;
    if (limit > n)
        limit = n;
    start = parmap__now_ns();

    j.pool = pool;
    j.fn = fn;
    j.ctx = ctx;
    j.in = in;
    j.in_size = in_size;
    j.out = out;
    j.out_size = out_size;
    j.n = n;
    j.status = opts->status;
    j.records = opts->records;
    j.fixed_chunk = opts->chunk_size;
    j.threads = limit;
    j.retries = opts->retries;
    j.retry_delay_ns = parmap__seconds_to_ns(opts->retry_delay);
    j.retry_delay_max_ns = parmap__seconds_to_ns(opts->retry_delay_max);
    j.retry_if = opts->retry_if;
    j.retry_ctx = opts->retry_ctx;
    atomic_init(&j.next, 0);
    parmap__stop_init(&j.stop, opts, n, start);
    j.policy = uses_policy(opts, &j.stop);
    atomic_init(&j.first_failed, SIZE_MAX);
    j.first_error = 0;
    atomic_init(&j.queued, 0);
    j.heap = NULL;
    j.heap_len = j.heap_cap = 0;
    parmap__progress_init(&j.progress, opts->progress, opts->progress_ctx,
                          opts->progress_interval, n, start);
    parmap__job_init(&j.base, map_work, limit, limit - 1);

    /* The call holds the pool for its whole length, retries included,
     * not only while its job is queued: destroy must wait for all of it. */
    atomic_fetch_add_explicit(&pool->calls, 1, memory_order_relaxed);
    parmap__job_start(pool, &j.base);
    map_work(&j.base);
    parmap__job_finish(pool, &j.base);
    drain_retries(&j);
    free(j.heap);

    /* Alone now: every helper has left and published its counts. */
    claimed = atomic_load_explicit(&j.next, memory_order_relaxed);
    if (claimed < n)
        mark_not_run(&j, claimed, n);
    done = atomic_load_explicit(&j.progress.done, memory_order_relaxed);
    failed = atomic_load_explicit(&j.progress.failed, memory_order_relaxed);
    parmap__progress_final(&j.progress, parmap__now_ns());
    fill_summary(opts->summary, n, done, failed,
                 atomic_load_explicit(&j.first_failed, memory_order_relaxed),
                 j.first_error);

    rc = stopped(&j) ? j.stop.code : failed != 0 ? PARMAP_EFAILED : 0;
    /* The last access to the pool: destroy may free it from here on. */
    atomic_fetch_sub_explicit(&pool->calls, 1, memory_order_release);
    return rc;
}
