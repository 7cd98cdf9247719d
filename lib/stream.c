/*
 * Streams: a map over a producer of unknown length, in bounded memory,
 * delivering results in input order or in the order they finish.
 *
 * Memory. One allocation holds the stream and a window of W = limit +
 * prefetch + reorder entries; each entry has room for one input, one
 * output and the item's outcome. An item occupies an entry from the moment
 * the producer is asked for it until the consumer is done with it (the
 * parmap_stream_next() call after the one that returned it), so at most W
 * items are ever in memory, however many flow through.
 *
 * An entry's life: FREE -> (producer) WAITING -> RUNNING -> DONE ->
 * DELIVERED -> FREE. A failed attempt that will be retried goes from
 * RUNNING back to WAITING with a not-before time, on the `delayed` list,
 * where it holds no thread. In input order, item k lives in entry k % W,
 * so the next item to deliver is always found in place; with
 * PARMAP_UNORDERED, entries come from a free list and finished ones queue
 * in a FIFO, in the order they finished.
 *
 * Bounds, all decided under the stream's lock:
 * - the producer is asked for an item only when fewer than `prefetch`
 *   items wait to start and the window has a free entry, and by one
 *   thread at a time;
 * - at most `limit` callbacks run at once (`running`), counting the
 *   consumer's, since the consumer runs items too while it waits;
 * - in input order, item k may start only while k < delivered + reorder,
 *   so at most `reorder` items are running or finished-but-undelivered:
 *   behind one slow item, threads stop taking new items once that many
 *   results are held, until the slow one finishes and delivery moves on.
 *
 * Threads. The stream is one job of the pool's queue (see queue.c) for its
 * whole life, published at create and retired at destroy. Workers that
 * join it run stream_work(): take a waiting item or produce one, and so
 * on, until nothing can be done; then they close the job, under the
 * stream's lock, and leave. Whoever makes new work possible (a produced
 * item, a delivery that frees room) reopens it, also under the lock, so a
 * close can never hide work that appeared before it. Nothing runs before
 * the first parmap_stream_next(): workers that join earlier find
 * `started` clear and leave. A pool of one thread has no workers; then the
 * consumer does everything inside parmap_stream_next().
 *
 * The job's limit is limit + 1: the consumer is not always inside the job,
 * so the queue lets `limit` workers in, and the exact bound on callbacks
 * is kept by the `running` count instead.
 *
 * Stopping (halt rules, cancel tokens, the timeout, the progress callback,
 * destroy) goes through struct parmap__stop, polled before each item
 * starts. Once stopped, items that were taken but never started are
 * delivered as PARMAP_ENOTRUN (or PARMAP_ETIMEDOUT), running ones finish,
 * and every later parmap_stream_next() returns the stop's code. Whichever
 * ends the input first, a stop or a producer error, gives the final code.
 * The timeout and the progress clock count from the first next().
 *
 * Nothing keeps time but the consumer: a retry that falls due while the
 * consumer is away from parmap_stream_next() and the workers have left
 * starts when either comes back (the consumer's wait is timed for it).
 * A cancel token is only polled, so a consumer asleep while one is set
 * looks at it every CANCEL_POLL_NS.
 *
 * Lock order: stream->lock, then pool->lock (parmap__job_reopen() takes it
 * to wake workers); never the reverse. Neither is held while user code
 * runs: producer, callbacks, retry_if and progress all run unlocked.
 */
#include "internal.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* No entry: the end of a list, or no current item. */
#define NONE SIZE_MAX

/* A cancellation token can only be polled (triggering it must be
 * async-signal-safe), so a consumer asleep while a token is set looks at
 * it this often; map.c's retry wait uses the same period. */
#define CANCEL_POLL_NS 20000000u

enum entry_state { FREE = 0, WAITING, RUNNING, DONE, DELIVERED };

/* One item in the window. Its fields are under the stream's lock; its
 * input and output buffers are not: they belong to the producer while it
 * fills the entry, then to the thread running the item, then to the
 * consumer once delivered, and each hand-over goes through the lock. */
struct entry {
    size_t index;
    size_t next;         /* link in the one list the entry is on */
    uint64_t start_ns;   /* when its first attempt started */
    uint64_t not_before; /* a waiting retry's due time */
    pthread_t runner;    /* the thread running it, while RUNNING */
    int status;          /* its outcome, or its last attempt's code */
    unsigned attempts;
    unsigned char state; /* an entry_state */
};

/* A FIFO of entries linked through entry.next. */
struct list {
    size_t head, tail;
};

struct parmap_stream {
    struct parmap__job job; /* first: stream_work() gets the stream back */

    /* Read-only after create. */
    parmap_pool *pool;
    parmap_producer_fn producer;
    void *pctx;
    parmap_fn fn;
    void *ctx;
    size_t in_stride, out_stride; /* sizes rounded up for alignment */
    char *in_buf, *out_buf;       /* window * stride bytes each, or NULL */
    struct entry *entries;        /* window entries */
    size_t limit, prefetch, reorder, window;
    int ordered;
    unsigned retries;
    uint64_t retry_delay_ns, retry_delay_max_ns;
    parmap_retry_fn retry_if;
    void *retry_ctx;
    uint64_t timeout_ns; /* 0 = none; counted from the first next() */
    parmap_progress_fn progress_fn;
    void *progress_ctx;
    double progress_interval;

    pthread_mutex_t lock;
    pthread_cond_t cond; /* the consumer waits here for a change */

    /* Everything below is under `lock`. */
    size_t produced;  /* items taken from the producer */
    size_t waiting;   /* on `ready` */
    size_t delayed_n; /* on `delayed` */
    size_t running;   /* callbacks running (or deciding on a retry) */
    size_t held;      /* DONE, not yet delivered */
    size_t delivered; /* returned by next() */
    size_t released;  /* delivered and given back: delivered - (current
                         != NONE); items in memory = produced - released */
    size_t current;   /* the entry last returned by next(), or NONE */
    struct list ready;   /* fresh items, in input order */
    struct list delayed; /* retries, by not_before */
    struct list done;    /* unordered: finished items, as they finished */
    size_t free_head;    /* unordered: a stack of FREE entries */
    pthread_t producer_thread;
    int producing;        /* the producer runs (never two at once) */
    int eof;              /* no more input: end, producer error or stop */
    int started;          /* the first next() has been called */
    int stopped;          /* the stop was noticed and acted on */
    int closing;          /* destroy has begun: nothing new starts */
    int job_open;         /* the job is open to workers */
    int consumer_waiting; /* the consumer sleeps on `cond` */
    int in_next;          /* the consumer is inside next() */
    int finished;         /* next() has returned its final code */
    int result;           /* the final code, set by the first cause */

    /* Lock-free, shared with stop.c and progress.c. */
    struct parmap__stop stop;
    struct parmap__progress progress;
};

/* ------------------------------------------------------------------------ */
/* Lists and entries (under the lock)                                       */
/* ------------------------------------------------------------------------ */

static void list_init(struct list *l)
{
    l->head = l->tail = NONE;
}

static void list_push(struct parmap_stream *s, struct list *l, size_t e)
{
    s->entries[e].next = NONE;
    if (l->tail == NONE)
        l->head = e;
    else
        s->entries[l->tail].next = e;
    l->tail = e;
}

static size_t list_pop(struct parmap_stream *s, struct list *l)
{
    size_t e = l->head;

    if (e != NONE) {
        l->head = s->entries[e].next;
        if (l->head == NONE)
            l->tail = NONE;
    }
    return e;
}

/* Inserts a retry by due time, after those due at the same time. The list
 * is short: it never holds more than the window's entries. */
static void delayed_insert(struct parmap_stream *s, size_t e)
{
    uint64_t due = s->entries[e].not_before;
    size_t prev = NONE, cur = s->delayed.head;

    while (cur != NONE && s->entries[cur].not_before <= due) {
        prev = cur;
        cur = s->entries[cur].next;
    }
    s->entries[e].next = cur;
    if (prev == NONE)
        s->delayed.head = e;
    else
        s->entries[prev].next = e;
    if (cur == NONE)
        s->delayed.tail = e;
}

static void *in_of(const struct parmap_stream *s, size_t e)
{
    return s->in_buf != NULL ? s->in_buf + e * s->in_stride : NULL;
}

static void *out_of(const struct parmap_stream *s, size_t e)
{
    return s->out_buf != NULL ? s->out_buf + e * s->out_stride : NULL;
}

/* An entry has finished for good (or will never start): it joins the
 * results to deliver. */
static void mark_done(struct parmap_stream *s, size_t e, int status)
{
    s->entries[e].status = status;
    s->entries[e].state = DONE;
    s->held++;
    if (!s->ordered)
        list_push(s, &s->done, e);
}

static void wake_consumer(struct parmap_stream *s)
{
    if (s->consumer_waiting)
        parmap__cond_signal(&s->cond);
}

/* The code of a stopped stream. The thread that stopped it publishes the
 * code a few instructions after taking STOPPING, so wait for that. */
static int stop_code(struct parmap__stop *st)
{
    while (atomic_load_explicit(&st->state, memory_order_acquire) ==
           PARMAP__STOPPING)
        parmap__cpu_relax();
    return st->code;
}

/* Acts on a stop, once: no more input, and every item taken but not
 * started becomes a result. A retry still waiting keeps its last failure:
 * that attempt ran, so the failure is its outcome. */
static void act_on_stop(struct parmap_stream *s)
{
    int not_run = parmap__stop_not_run_status(&s->stop);
    size_t e, failed = 0;

    s->stopped = 1;
    s->eof = 1;
    if (s->result == 0)
        s->result = stop_code(&s->stop);
    while ((e = list_pop(s, &s->ready)) != NONE) {
        s->waiting--;
        mark_done(s, e, not_run);
    }
    while ((e = list_pop(s, &s->delayed)) != NONE) {
        s->delayed_n--;
        mark_done(s, e, s->entries[e].status);
        failed++;
    }
    if (failed != 0) {
        /* Counted without a callback (the lock is held); the final
         * progress call reports them. */
        atomic_fetch_add_explicit(&s->progress.done, failed,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&s->progress.failed, failed,
                                  memory_order_relaxed);
    }
    wake_consumer(s);
}

/* Notices a stop (a halt rule, a token, the deadline, destroy). */
static int check_stop(struct parmap_stream *s)
{
    if (!s->stopped && parmap__stop_poll(&s->stop))
        act_on_stop(s);
    return s->stopped;
}

/* ------------------------------------------------------------------------ */
/* Deciding what a thread does next (under the lock)                        */
/* ------------------------------------------------------------------------ */

/* STOPPED: this call acted on a stop, which may have made results
 * deliverable, so the consumer must look again before it sleeps. */
enum action { NOTHING = 0, START, PRODUCE, STOPPED };

/* Whether the producer may be asked for another item. */
static int can_produce(const struct parmap_stream *s)
{
    return !s->producing && !s->eof && s->waiting < s->prefetch &&
           s->produced - s->released < s->window;
}

/* The waiting item a thread may start now, or NONE; `now` is read from
 * the clock only when a retry waits. Due retries go first: they are older
 * than any fresh item. */
static size_t startable(const struct parmap_stream *s, uint64_t *now)
{
    size_t e;

    if (s->running >= s->limit)
        return NONE;
    if ((e = s->delayed.head) != NONE) {
        if (*now == 0)
            *now = parmap__now_ns();
        if (s->entries[e].not_before <= *now)
            return e;
    }
    /* A retried item needs no such check: it started once, when its
     * index was inside the reorder window, and the window only moves on. */
    if ((e = s->ready.head) != NONE &&
        (!s->ordered || s->entries[e].index < s->delivered + s->reorder))
        return e;
    return NONE;
}

static enum action pick_work(struct parmap_stream *s, size_t *entry)
{
    uint64_t now = 0;
    size_t e;

    if (!s->started || s->closing || s->stopped)
        return NOTHING;
    if (check_stop(s))
        return STOPPED;
    if ((e = startable(s, &now)) != NONE) {
        if (e == s->delayed.head) {
            list_pop(s, &s->delayed);
            s->delayed_n--;
        } else {
            list_pop(s, &s->ready);
            s->waiting--;
        }
        *entry = e;
        return START;
    }
    return can_produce(s) ? PRODUCE : NOTHING;
}

/* Opens the job to workers again if it is closed and there is work they
 * could do. */
static void maybe_reopen(struct parmap_stream *s)
{
    uint64_t now = 0;

    if (s->job_open || s->job.slot == NULL || !s->started || s->closing ||
        s->stopped)
        return;
    if (startable(s, &now) == NONE && !can_produce(s))
        return;
    s->job_open = 1;
    parmap__job_reopen(s->pool, &s->job);
}

/* ------------------------------------------------------------------------ */
/* Running items and the producer (called locked; unlock around user code)  */
/* ------------------------------------------------------------------------ */

/* Runs entry e, taken by pick_work(), until it succeeds, fails for good
 * or waits for a retry. */
static void run_entry(struct parmap_stream *s, size_t e)
{
    struct entry *en = &s->entries[e];
    struct parmap__running r;
    uint64_t t0 = parmap__now_ns();
    size_t index = en->index;
    unsigned attempts = en->attempts;
    int rc;

    en->state = RUNNING;
    en->runner = pthread_self();
    if (attempts == 0)
        en->start_ns = t0;
    s->running++;
    parmap__mutex_unlock(&s->lock);

    parmap__running_enter(&r, &s->stop);
    for (;;) {
        r.item_deadline_ns = s->stop.item_timeout_ns != 0
                                 ? t0 + s->stop.item_timeout_ns
                                 : 0;
        rc = s->fn(s->ctx, index, in_of(s, e), out_of(s, e));
        attempts++;
        if (rc == 0 || attempts > s->retries ||
            parmap__stop_poll(&s->stop) ||
            (s->retry_if != NULL &&
             !s->retry_if(s->retry_ctx, index, rc, attempts)))
            break;
        uint64_t delay = parmap__backoff_ns(s->retry_delay_ns,
                                            s->retry_delay_max_ns, attempts);
        t0 = parmap__now_ns();
        if (delay == 0)
            continue;
        /* Wait in the not-before queue, holding no thread; unless the
         * stream stopped since the poll above: nothing would start the
         * retry then, so this failure is final. */
        parmap__mutex_lock(&s->lock);
        if (s->stopped) {
            parmap__mutex_unlock(&s->lock);
            break;
        }
        parmap__running_leave(&r);
        en->attempts = attempts;
        en->status = rc;
        en->not_before = t0 + delay;
        en->state = WAITING;
        delayed_insert(s, e);
        s->delayed_n++;
        s->running--;
        wake_consumer(s);
        return;
    }
    parmap__running_leave(&r);

    /* Count the outcome before publishing it, so a halt rule takes effect
     * before anyone can start another item, and so the progress counts
     * include every item the consumer has seen. */
    parmap__stop_count(&s->stop, rc);
    if (s->progress_fn != NULL &&
        parmap__progress_add(&s->progress, rc == 0, rc != 0,
                             parmap__now_ns()) != 0)
        parmap__stop(&s->stop, 1, -ECANCELED);

    parmap__mutex_lock(&s->lock);
    en->attempts = attempts;
    s->running--;
    mark_done(s, e, rc);
    wake_consumer(s);
    maybe_reopen(s);
}

/* Asks the producer for item `produced`. */
static void produce(struct parmap_stream *s)
{
    struct parmap__running r;
    size_t k = s->produced;
    size_t e = s->ordered ? k % s->window : s->free_head;
    int rc;

    if (!s->ordered)
        s->free_head = s->entries[e].next;
    s->producing = 1;
    s->producer_thread = pthread_self();
    parmap__mutex_unlock(&s->lock);

    parmap__running_enter(&r, &s->stop);
    rc = s->producer(s->pctx, k, in_of(s, e));
    parmap__running_leave(&r);

    parmap__mutex_lock(&s->lock);
    s->producing = 0;
    if (rc > 0) {
        struct entry *en = &s->entries[e];
        en->index = k;
        en->attempts = 0;
        en->status = 0;
        en->start_ns = 0;
        s->produced++;
        if (s->stopped) {
            mark_done(s, e, parmap__stop_not_run_status(&s->stop));
        } else {
            en->state = WAITING;
            list_push(s, &s->ready, e);
            s->waiting++;
        }
    } else {
        if (!s->ordered) {
            s->entries[e].next = s->free_head;
            s->free_head = e;
        }
        s->eof = 1;
        if (rc < 0 && s->result == 0)
            s->result = rc;
    }
    wake_consumer(s);
    maybe_reopen(s);
}

/* The pool worker's side: works until nothing can be done, then closes the
 * job and leaves. Closing under the lock pairs with maybe_reopen(). */
static void stream_work(struct parmap__job *job)
{
    struct parmap_stream *s = (struct parmap_stream *)job;
    size_t e;

    parmap__mutex_lock(&s->lock);
    for (;;) {
        enum action a = pick_work(s, &e);
        if (a == START)
            run_entry(s, e);
        else if (a == PRODUCE)
            produce(s);
        else
            break;
    }
    s->job_open = 0;
    parmap__job_close(&s->job);
    parmap__mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------------ */
/* Public API                                                               */
/* ------------------------------------------------------------------------ */

/* a + b and a * b without wrapping; 0 on overflow. */
static int add_ok(size_t a, size_t b, size_t *r)
{
    if (a > SIZE_MAX - b)
        return 0;
    *r = a + b;
    return 1;
}

static int mul_ok(size_t a, size_t b, size_t *r)
{
    if (b != 0 && a > SIZE_MAX / b)
        return 0;
    *r = a * b;
    return 1;
}

/* Rounds a buffer size up so that each entry's buffer is aligned for any
 * type; 0 stays 0 (no buffer). */
static int stride_of(size_t size, size_t *stride)
{
    size_t a = alignof(max_align_t);

    if (size == 0) {
        *stride = 0;
        return 1;
    }
    if (!add_ok(size, a - 1, stride))
        return 0;
    *stride &= ~(a - 1);
    return 1;
}

int parmap_stream_create(parmap_stream **stream, parmap_pool *pool,
                         parmap_producer_fn producer, void *pctx,
                         size_t in_size, parmap_fn fn, void *ctx,
                         size_t out_size, const parmap_opts *opts)
{
    static const parmap_opts defaults;
    struct parmap_stream *s;
    size_t limit, prefetch, reorder, window, in_stride, out_stride;
    size_t head, entries_size, in_bytes, out_bytes, total;
    int rc;

    if (opts == NULL)
        opts = &defaults;
    if (stream == NULL || pool == NULL || producer == NULL || fn == NULL)
        return -EINVAL;
    if (parmap__pool_forked(pool))
        return PARMAP_EFORKED;
    if ((rc = parmap__stop_check_opts(opts)) != 0)
        return rc;

    limit = pool->nthreads;
    if (opts->max_concurrency != 0 && opts->max_concurrency < limit)
        limit = opts->max_concurrency;
    prefetch = opts->prefetch != 0 ? opts->prefetch : limit;
    reorder = opts->reorder != 0 ? opts->reorder : 2 * limit;

    /* The layout of the one allocation: the stream, the entries, then the
     * input and output buffers. Sizes that cannot be allocated are
     * ENOMEM, whether they overflow or not. */
    head = (sizeof *s + PARMAP__CACHELINE - 1) / PARMAP__CACHELINE *
           PARMAP__CACHELINE;
    if (!add_ok(limit, prefetch, &window) ||
        !add_ok(window, reorder, &window) ||
        !stride_of(in_size, &in_stride) || !stride_of(out_size, &out_stride) ||
        !mul_ok(window, sizeof(struct entry), &entries_size) ||
        !stride_of(entries_size, &entries_size) ||
        !mul_ok(window, in_stride, &in_bytes) ||
        !mul_ok(window, out_stride, &out_bytes) ||
        !add_ok(head, entries_size, &total) ||
        !add_ok(total, in_bytes, &total) ||
        !add_ok(total, out_bytes, &total) ||
        total > SIZE_MAX - PARMAP__CACHELINE)
        return -ENOMEM;
    s = parmap__aligned_calloc(total);
    if (s == NULL)
        return -ENOMEM;

    s->pool = pool;
    s->producer = producer;
    s->pctx = pctx;
    s->fn = fn;
    s->ctx = ctx;
    s->in_stride = in_stride;
    s->out_stride = out_stride;
    s->entries = (struct entry *)((char *)s + head);
    s->in_buf = in_size != 0 ? (char *)s + head + entries_size : NULL;
    s->out_buf =
        out_size != 0 ? (char *)s + head + entries_size + in_bytes : NULL;
    s->limit = limit;
    s->prefetch = prefetch;
    s->reorder = reorder;
    s->window = window;
    s->ordered = (opts->flags & PARMAP_UNORDERED) == 0;
    s->retries = opts->retries;
    s->retry_delay_ns = parmap__seconds_to_ns(opts->retry_delay);
    s->retry_delay_max_ns = parmap__seconds_to_ns(opts->retry_delay_max);
    s->retry_if = opts->retry_if;
    s->retry_ctx = opts->retry_ctx;
    s->timeout_ns =
        opts->timeout > 0.0 ? parmap__seconds_to_ns(opts->timeout) : 0;
    s->progress_fn = opts->progress;
    s->progress_ctx = opts->progress_ctx;
    s->progress_interval = opts->progress_interval;

    s->current = NONE;
    list_init(&s->ready);
    list_init(&s->delayed);
    list_init(&s->done);
    s->free_head = NONE;
    for (size_t e = window; e-- > 0;) {
        s->entries[e].state = FREE;
        s->entries[e].next = s->free_head;
        s->free_head = e;
    }
    /* The deadline and the progress clock are set again at the first
     * next(), when the stream really starts. */
    parmap__stop_init(&s->stop, opts, 0, parmap__now_ns());
    parmap__progress_init(&s->progress, s->progress_fn, s->progress_ctx,
                          s->progress_interval, 0, parmap__now_ns());

    if ((rc = parmap__mutex_init(&s->lock)) != 0) {
        free(s);
        return rc;
    }
    if ((rc = parmap__cond_init_monotonic(&s->cond)) != 0) {
        parmap__mutex_destroy(&s->lock);
        free(s);
        return rc;
    }

    /* Publish the job now, so the pool counts the stream as a call until
     * destroy (parmap_pool_destroy() then refuses with EBUSY), but keep it
     * closed until the first next(): no callback may run before that. */
    parmap__job_init(&s->job, stream_work, limit + 1, limit);
    parmap__job_start(pool, &s->job);
    parmap__mutex_lock(&s->lock);
    s->job_open = 0;
    parmap__job_close(&s->job);
    parmap__mutex_unlock(&s->lock);

    *stream = s;
    return 0;
}

/* The first next(): the stream's clock starts, and workers may join. */
static void start(struct parmap_stream *s)
{
    uint64_t now = parmap__now_ns();

    /* No other thread reads these before `started` is seen under the
     * lock. */
    s->stop.deadline_ns = s->timeout_ns != 0 ? now + s->timeout_ns : 0;
    parmap__progress_init(&s->progress, s->progress_fn, s->progress_ctx,
                          s->progress_interval, 0, now);
    s->started = 1;
}

/* Gives the current item's entry back to the window. */
static void release_current(struct parmap_stream *s)
{
    size_t e = s->current;

    s->entries[e].state = FREE;
    if (!s->ordered) {
        s->entries[e].next = s->free_head;
        s->free_head = e;
    }
    s->current = NONE;
    s->released++;
}

/* The next result to deliver, or NONE. */
static size_t deliverable(struct parmap_stream *s)
{
    if (!s->ordered)
        return list_pop(s, &s->done);
    if (s->delivered < s->produced) {
        size_t e = s->delivered % s->window;
        if (s->entries[e].state == DONE)
            return e;
    }
    return NONE;
}

static void deliver(struct parmap_stream *s, size_t e,
                    parmap_stream_item *item)
{
    struct entry *en = &s->entries[e];

    en->state = DELIVERED;
    s->held--;
    s->delivered++;
    s->current = e;
    item->index = en->index;
    item->status = en->status;
    item->attempts = en->attempts;
    item->in = in_of(s, e);
    item->out = out_of(s, e);
}

/* Sleeps until a worker signals a change, a retry falls due, the deadline
 * passes, or (with a cancel token) the token's polling period ends. The
 * caller re-checks everything after it returns: this is the body of the
 * predicate loop in parmap_stream_next(). */
static void wait_for_change(struct parmap_stream *s)
{
    uint64_t until = 0, now = parmap__now_ns();

    /* The first retry's due time, unless every callback slot is taken:
     * then a running item's end (which signals) comes first. The time
     * may have passed since pick_work() looked; the wait then returns at
     * once and the caller starts the retry. */
    if (s->delayed.head != NONE && s->running < s->limit && !s->stopped)
        until = s->entries[s->delayed.head].not_before;
    if (!s->stopped && s->stop.deadline_ns != 0 &&
        (until == 0 || s->stop.deadline_ns < until))
        until = s->stop.deadline_ns;
    if (!s->stopped && s->stop.cancel != NULL &&
        (until == 0 || now + CANCEL_POLL_NS < until))
        until = now + CANCEL_POLL_NS;
    s->consumer_waiting = 1;
    if (until != 0)
        parmap__cond_timedwait_ns(&s->cond, &s->lock, until);
    else
        parmap__cond_wait(&s->cond, &s->lock);
    s->consumer_waiting = 0;
}

int parmap_stream_next(parmap_stream *s, parmap_stream_item *item)
{
    int rc, final_call = 0;
    size_t e;

    if (s == NULL || item == NULL)
        return -EINVAL;
    if (parmap__pool_forked(s->pool))
        return PARMAP_EFORKED;

    parmap__mutex_lock(&s->lock);
    s->in_next = 1;
    if (s->current != NONE)
        release_current(s);
    if (!s->started)
        start(s);
    for (;;) {
        if (s->finished) {
            rc = s->result;
            break;
        }
        check_stop(s);
        if ((e = deliverable(s)) != NONE) {
            deliver(s, e, item);
            maybe_reopen(s);
            rc = 1;
            break;
        }
        if (s->eof && !s->producing && s->delivered == s->produced) {
            s->finished = 1;
            final_call = 1;
            rc = s->result;
            break;
        }
        maybe_reopen(s);
        enum action a = pick_work(s, &e);
        if (a == START)
            run_entry(s, e);
        else if (a == PRODUCE)
            produce(s);
        else if (a == NOTHING)
            wait_for_change(s);
    }
    if (final_call) {
        /* Every item has been delivered, so no thread is counting one:
         * the final call sees the final counts, on the consumer's thread. */
        parmap__mutex_unlock(&s->lock);
        parmap__progress_final(&s->progress, parmap__now_ns());
        parmap__mutex_lock(&s->lock);
    }
    s->in_next = 0;
    parmap__mutex_unlock(&s->lock);
    return rc;
}

int parmap_stream_inspect(parmap_stream *s, parmap_stream_stats *stats)
{
    uint64_t oldest = 0;

    if (s == NULL || stats == NULL)
        return -EINVAL;
    if (parmap__pool_forked(s->pool))
        return PARMAP_EFORKED;

    parmap__mutex_lock(&s->lock);
    stats->produced = s->produced;
    stats->waiting = s->waiting + s->delayed_n;
    stats->running = s->running;
    stats->held = s->held;
    stats->delivered = s->delivered;
    stats->holdup_index = (size_t)-1;
    for (size_t e = 0; e < s->window; e++) {
        const struct entry *en = &s->entries[e];
        if (en->state == RUNNING && en->index < stats->holdup_index) {
            stats->holdup_index = en->index;
            oldest = en->start_ns;
        }
    }
    parmap__mutex_unlock(&s->lock);

    stats->holdup_seconds = 0.0;
    if (stats->holdup_index != (size_t)-1) {
        uint64_t now = parmap__now_ns();
        stats->holdup_seconds =
            now > oldest ? (double)(now - oldest) * 1e-9 : 0.0;
    }
    return 0;
}

/* Whether the calling thread is inside one of the stream's callbacks. */
static int in_own_callback(const struct parmap_stream *s)
{
    pthread_t self = pthread_self();

    if (s->in_next)
        return 1; /* the consumer's thread, from inside next() */
    if (s->producing && pthread_equal(s->producer_thread, self))
        return 1;
    for (size_t e = 0; e < s->window; e++)
        if (s->entries[e].state == RUNNING &&
            pthread_equal(s->entries[e].runner, self))
            return 1;
    return 0;
}

int parmap_stream_destroy(parmap_stream *s)
{
    if (s == NULL)
        return 0;
    if (parmap__pool_forked(s->pool)) {
        /* The workers, and whatever state the lock was in, stayed behind
         * in the parent: only the memory is ours to free. */
        free(s);
        return 0;
    }

    parmap__mutex_lock(&s->lock);
    if (in_own_callback(s)) {
        parmap__mutex_unlock(&s->lock);
        return -EBUSY;
    }
    /* Nothing new starts; running callbacks are asked to stop early,
     * since nobody will read their results. */
    s->closing = 1;
    parmap__stop(&s->stop, 1, -ECANCELED);
    parmap__mutex_unlock(&s->lock);

    /* Waits for every worker inside the job, hence for every running
     * callback: the consumer runs none outside next(). */
    parmap__job_finish(s->pool, &s->job);

    parmap__cond_destroy(&s->cond);
    parmap__mutex_destroy(&s->lock);
    free(s);
    return 0;
}
