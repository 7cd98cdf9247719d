/*
 * parmap: a parallel map on a fixed-size pool of pthreads.
 *
 * parmap turns the serial loop
 *
 *     for (size_t i = 0; i < n; i++)
 *         out[i] = f(in[i]);
 *
 * into one call that runs on a pool of threads, writes result i into slot i
 * whatever order items finish in, keeps each item's outcome, and reports
 * progress as it goes.
 *
 *     static int f_item(void *ctx, size_t i, const void *in, void *out)
 *     {
 *         *(double *)out = f(*(const double *)in);
 *         return 0;
 *     }
 *
 *     parmap_pool *pool;
 *     parmap_pool_create(&pool, 0, NULL);           // one thread per CPU
 *     int rc = parmap_map(pool, n, in, sizeof *in, out, sizeof *out,
 *                         f_item, NULL, NULL);
 *     parmap_pool_destroy(pool);
 *
 * Conventions
 * - Every function that can fail returns an int: 0 on success, a negative
 *   code on failure (a negated errno value where one fits, or one of the
 *   library's own PARMAP_E* codes). parmap_strerror() and parmap_err_name()
 *   describe any code.
 * - Option structs are zero-initialised for defaults (or passed as NULL);
 *   fields are only ever appended, so `parmap_opts o = {0};` keeps compiling.
 * - The library never prints, never exits and keeps no process-global
 *   mutable state: two pools never affect each other.
 * - Callbacks report failure by returning non-zero, by convention a negated
 *   errno value. Where a call hands such a value back (fail-fast, halt on
 *   failure), it can coincide with one of the library's own codes; the
 *   summary's and status array's counts tell an item's failure apart from
 *   an argument error, after which no callback has run.
 */
#ifndef PARMAP_H
#define PARMAP_H

#include <errno.h>
#include <stddef.h>
#include <stdio.h> /* FILE, for the progress bar */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PARMAP_API __attribute__((visibility("default")))
#else
#define PARMAP_API
#endif

/** @name Version of this header. parmap_version() gives the library's. */
/**@{*/
#define PARMAP_VERSION_MAJOR 0
#define PARMAP_VERSION_MINOR 1
#define PARMAP_VERSION_PATCH 0
#define PARMAP_VERSION_STRING "0.1.0"
/** The version as one comparable number: 0xMMmmpp. */
#define PARMAP_VERSION_HEX                                                     \
    ((PARMAP_VERSION_MAJOR << 16) | (PARMAP_VERSION_MINOR << 8) |              \
     PARMAP_VERSION_PATCH)
/**@}*/

/* The codes below are POSIX errno values: this header is for POSIX systems,
 * whose <errno.h> defines them all. */

/**
 * The one list of error codes. Each entry is (NAME, value, message); the
 * enum below, parmap_strerror() and parmap_err_name() are all generated
 * from it, so they cannot disagree.
 *
 * Codes below PARMAP__ERR_BASE are the library's own; the rest are negated
 * errno values.
 */
#define PARMAP__ERR_BASE (-30000)
#define PARMAP_ERRNO_MAP(XX)                                                   \
    XX(EINVAL, -EINVAL, "invalid argument")                                    \
    XX(ENOMEM, -ENOMEM, "out of memory")                                       \
    XX(EAGAIN, -EAGAIN, "resource temporarily unavailable")                    \
    XX(EOVERFLOW, -EOVERFLOW, "item count times element size overflows")       \
    XX(EBUSY, -EBUSY, "pool is busy: calls are still running on it")          \
    XX(EDEADLK, -EDEADLK, "would deadlock: called from the pool's own worker") \
    XX(ECANCELED, -ECANCELED, "operation cancelled")                           \
    XX(ETIMEDOUT, -ETIMEDOUT, "operation timed out")                           \
    XX(ENOENT, -ENOENT, "no such task")                                       \
    XX(EFAILED, PARMAP__ERR_BASE - 1, "one or more items failed")              \
    XX(ENOTRUN, PARMAP__ERR_BASE - 2, "item was not run")                      \
    XX(EHALTED, PARMAP__ERR_BASE - 3, "stopped by its halt rule")            \
    XX(EFORKED, PARMAP__ERR_BASE - 4, "pool was inherited across fork()")

/** Error codes returned by parmap functions (always negative). */
typedef enum parmap_errno {
#define PARMAP__ERR_ENUM(name, value, msg) PARMAP_##name = (value),
    PARMAP_ERRNO_MAP(PARMAP__ERR_ENUM)
#undef PARMAP__ERR_ENUM
    PARMAP__ERR_LAST_ = PARMAP__ERR_BASE - 5
} parmap_errno;

/**
 * Describes an error code in a sentence.
 *
 * @param err  any value: a parmap code, any negated errno value (described
 *             as strerror() would, e.g. -EIO), or anything else.
 * @return a static string; never NULL. Codes that are neither give
 *         "unknown error". Thread-safe.
 */
PARMAP_API const char *parmap_strerror(int err);

/**
 * Names an error code: "EINVAL", "EFAILED", "EIO" (any negated errno
 * value), "OK" for 0, and "EUNKNOWN" for anything else.
 *
 * @return a static string; never NULL. Thread-safe.
 */
PARMAP_API const char *parmap_err_name(int err);

/** The library's version string, e.g. "0.1.0". Thread-safe. */
PARMAP_API const char *parmap_version(void);

/* ------------------------------------------------------------------------ */
/* Pools                                                                    */
/* ------------------------------------------------------------------------ */

/** A fixed-size pool of threads. Opaque; create with parmap_pool_create(). */
typedef struct parmap_pool parmap_pool;

/** Pool options. Zero (or NULL) means defaults. Fields are only appended. */
typedef struct parmap_pool_opts {
    /** Stack size of each worker thread in bytes; 0 = the system default. */
    size_t stack_size;
} parmap_pool_opts;

/**
 * Counts the CPUs this process may run on: the affinity mask
 * (sched_getaffinity) capped by a cgroup CPU quota when one is set.
 *
 * @return at least 1. Thread-safe.
 */
PARMAP_API size_t parmap_cpu_count(void);

/**
 * Creates a pool that runs work on @p nthreads threads.
 *
 * The thread that calls parmap_map() takes part in its own map, so a pool of
 * N threads starts N - 1 workers: a pool of 1 runs every map on the caller,
 * exactly like the serial loop.
 *
 * @param pool      receives the new pool; untouched on failure.
 * @param nthreads  threads per map, counting the caller. 0 means the value of
 *                  the environment variable PARMAP_NUM_THREADS when it holds
 *                  a positive integer, otherwise parmap_cpu_count().
 * @param opts      pool options, or NULL for defaults.
 * @return 0, or
 *   - PARMAP_EINVAL: @p pool is NULL, or opts->stack_size is not accepted.
 *   - PARMAP_ENOMEM: out of memory.
 *   - PARMAP_EAGAIN: the system could not start another thread (for example
 *     RLIMIT_NPROC). Threads already started are joined and everything is
 *     freed before returning.
 *
 * Thread-safety: any thread may create pools; pools are independent.
 */
PARMAP_API int parmap_pool_create(parmap_pool **pool, size_t nthreads,
                                  const parmap_pool_opts *opts);

/**
 * Stops and joins the pool's workers and frees the pool.
 *
 * @param pool  a pool, or NULL (then nothing happens and 0 is returned).
 * @return 0, or
 *   - PARMAP_EBUSY: calls are still running on the pool (including a call
 *     from inside one of its callbacks); the pool is left intact.
 *   - PARMAP_EDEADLK: called from one of the pool's own worker threads,
 *     which cannot join itself; the pool is left intact.
 *
 * Thread-safety: may be called from any thread but its own workers. The
 * caller must ensure no new call starts on the pool once it is destroyed.
 *
 * fork(): a child process inherits a pool's memory but not its threads.
 * In the child, every call on an inherited pool returns PARMAP_EFORKED
 * without running anything, and parmap_pool_destroy() frees it without
 * joining threads that do not exist there; create a new pool in the child
 * if it needs one. The parent's pool is not affected.
 */
PARMAP_API int parmap_pool_destroy(parmap_pool *pool);

/**
 * The number of threads a map on @p pool uses, counting the caller.
 * @return the resolved thread count (at least 1), or 0 when @p pool is NULL.
 */
PARMAP_API size_t parmap_pool_size(const parmap_pool *pool);

/* ------------------------------------------------------------------------ */
/* Maps                                                                     */
/* ------------------------------------------------------------------------ */

/**
 * The per-item callback of a map.
 *
 * @param ctx    the context pointer passed to parmap_map().
 * @param index  the item's index, 0 <= index < n.
 * @param in     the item's input, `(char *)in + index * in_size`, or NULL
 *               when the map has no input array.
 * @param out    the item's own output slot, or NULL when the map has no
 *               output array. Only this callback writes it.
 * @return 0 on success, any other value to mark the item failed (a negative
 *         errno value is the convention). Callbacks should not return the
 *         library's own PARMAP_ENOTRUN, which is reserved for items that
 *         never ran.
 *
 * Runs on the caller's thread or on a pool worker; many at once (up to the
 * map's concurrency limit), each on a distinct index.
 */
typedef int (*parmap_fn)(void *ctx, size_t index, const void *in, void *out);

/** A snapshot of a map's progress, passed to a parmap_progress_fn. */
typedef struct parmap_progress {
    size_t done;    /**< items finished so far, failures included. */
    size_t failed;  /**< items among @c done whose callback failed. */
    size_t total;   /**< items in the map. */
    double elapsed; /**< seconds since the map started. */
} parmap_progress;

/**
 * A progress callback.
 *
 * @param ctx  the opts->progress_ctx pointer.
 * @param p    the counts; valid for the duration of the call only.
 * @return 0 to go on; any other value cancels the map: items not yet
 *         started are reported as PARMAP_ENOTRUN and parmap_map() returns
 *         PARMAP_ECANCELED. Results already finished are kept.
 *
 * Runs on one of the threads taking part in the map (the caller or a pool
 * worker), never two at once for one map. The last call runs on the
 * caller's thread after every item has finished and reports the final
 * counts (its return value is ignored: nothing is left to stop); `done`
 * never decreases from one call to the next.
 */
typedef int (*parmap_progress_fn)(void *ctx, const parmap_progress *p);

/** Flags for parmap_opts.flags. */
enum parmap_flags {
    /** Every item runs; failures are collected (asyncio's
     * gather(return_exceptions=True)). The default. */
    PARMAP_COLLECT = 0,
    /** The first failure stops every item not yet started (they are
     * reported as PARMAP_ENOTRUN, never started later) and the map returns
     * that failure's code (gather(return_exceptions=False)): the first to
     * fail in time, which need not be summary.first_failed, the lowest
     * failing index. The same as halt {SOON, ON_FAIL, 1}; combined with a
     * halt rule on failures, the count becomes 1 and the rule's `when`
     * stays; with a rule on anything else, fail-fast replaces it. */
    PARMAP_FAIL_FAST = 1u << 0,
    /** Streams only: deliver results in the order they finish (asyncio's
     * as_completed, imap_unordered) instead of input order. Maps ignore
     * it: their results always land in their own slots. */
    PARMAP_UNORDERED = 1u << 1
};

/* ------------------------------------------------------------------------ */
/* Stopping early: cancellation, halt rules, deadlines, retries             */
/* ------------------------------------------------------------------------ */

/**
 * A cancellation token. One token may be shared by any number of maps,
 * streams and groups; triggering it stops them all.
 */
typedef struct parmap_cancel parmap_cancel;

/**
 * Creates an untriggered token.
 * @return 0, PARMAP_EINVAL (@p cancel is NULL) or PARMAP_ENOMEM.
 */
PARMAP_API int parmap_cancel_create(parmap_cancel **cancel);

/** Frees a token no call uses any more. NULL is a no-op. */
PARMAP_API void parmap_cancel_destroy(parmap_cancel *cancel);

/**
 * Triggers the token: every call using it starts no new item (those are
 * reported as PARMAP_ENOTRUN), parmap_should_stop() returns
 * PARMAP_ECANCELED inside its running callbacks, and the call returns
 * PARMAP_ECANCELED once they have returned.
 *
 * Thread-safety: callable from any thread, from inside a callback, and
 * from a signal handler (it is one lock-free atomic store).
 */
PARMAP_API void parmap_cancel_trigger(parmap_cancel *cancel);

/** 1 if the token was triggered (and not reset), else 0. Thread-safe. */
PARMAP_API int parmap_cancel_triggered(const parmap_cancel *cancel);

/** Untriggers the token, for reuse once no call uses it. */
PARMAP_API void parmap_cancel_reset(parmap_cancel *cancel);

/**
 * Asks, from inside a callback, whether it should stop early.
 *
 * A long callback polls this and returns early (for example with the
 * value it got) when it is non-zero. It is cheap: an atomic load, plus a
 * clock read when the call has an item_timeout.
 *
 * @return 0 to go on; PARMAP_ECANCELED when the call was cancelled, its
 *         progress callback asked to stop, or a halt rule said "now";
 *         PARMAP_ETIMEDOUT when the call's timeout or this item's
 *         item_timeout has passed. Outside any callback: 0.
 *
 * Thread-safety: reports on the callback running on the calling thread.
 */
PARMAP_API int parmap_should_stop(void);

/** When a halt rule stops a call (GNU parallel's --halt, in-process). */
enum parmap_halt_when {
    PARMAP_HALT_NEVER = 0, /**< never: every item runs (the default) */
    PARMAP_HALT_SOON,      /**< start nothing new; running items finish */
    PARMAP_HALT_NOW        /**< start nothing new and ask running items to
                                stop (parmap_should_stop()) */
};

/** What a halt rule counts. */
enum parmap_halt_on {
    PARMAP_HALT_ON_FAIL = 0, /**< failed items */
    PARMAP_HALT_ON_SUCCESS,  /**< succeeded items */
    PARMAP_HALT_ON_DONE      /**< finished items, failed or not */
};

/**
 * A halt rule: stop the call when @c count items (if non-zero) or
 * @c percent per cent of all items (if non-zero; of items finished so far
 * when the total is unknown, as in streams) match @c on. Zero = never.
 *
 * A rule on failures makes the call return the code of the failure that
 * triggered it; a rule on successes or completions makes it return
 * PARMAP_EHALTED. PARMAP_FAIL_FAST is the rule {SOON, ON_FAIL, 1}.
 */
typedef struct parmap_halt {
    enum parmap_halt_when when;
    enum parmap_halt_on on;
    size_t count;
    double percent;
} parmap_halt;

/**
 * Decides whether a failed attempt is retried (see parmap_opts.retries).
 * @param ctx      parmap_opts.retry_ctx.
 * @param index    the item (or task id, in groups).
 * @param err      the attempt's non-zero return.
 * @param attempt  attempts made so far, 1 after the first.
 * @return non-zero to retry. Runs on the thread that ran the attempt.
 */
typedef int (*parmap_retry_fn)(void *ctx, size_t index, int err,
                               unsigned attempt);

/** What happened to one item, filled in when parmap_opts.records is set. */
typedef struct parmap_record {
    int status;        /**< as in parmap_opts.status */
    unsigned attempts; /**< callbacks made for it: 0 if never started */
    double seconds;    /**< run time of all its attempts together */
} parmap_record;

/** What a map did, filled in when opts->summary is set. */
typedef struct parmap_summary {
    size_t succeeded;    /**< items whose callback returned 0. */
    size_t failed;       /**< items whose last attempt returned non-zero. */
    size_t not_run;      /**< items never started (stopped or timed out). */
    size_t first_failed; /**< lowest failed index, or (size_t)-1 if none. */
    int first_error;     /**< the code of item first_failed, or 0. */
} parmap_summary;

/** Options of one map. Zero (or NULL) means defaults; fields only grow. */
typedef struct parmap_opts {
    /** parmap_flags, or-ed. */
    unsigned flags;
    /** At most this many callbacks of this call run at once, exactly
     * (like a semaphore around each item). 0, or a value above the pool's
     * size, means the pool's size. */
    size_t max_concurrency;
    /** Items handed to a thread at a time. 0 = automatic: chunks grow
     * while items are cheap and shrink when they are slow, so queue
     * overhead stays small and the end of the map stays balanced. */
    size_t chunk_size;
    /** If not NULL, an array of n ints that receives each item's outcome:
     * 0, the callback's non-zero return (its last attempt's), or, for an
     * item never started, PARMAP_ENOTRUN (stopped: fail-fast, halt, cancel)
     * or PARMAP_ETIMEDOUT (the call's timeout passed). */
    int *status;
    /** If not NULL, receives the counts of the map whenever callbacks may
     * have run (every return but an argument error). */
    parmap_summary *summary;
    /** Progress callback, or NULL. */
    parmap_progress_fn progress;
    /** Passed to @c progress. */
    void *progress_ctx;
    /** Minimum seconds between progress calls; 0 = after every chunk of
     * completions. The final call is always made. */
    double progress_interval;

    /** Halt rule; zero = never halt. */
    parmap_halt halt;
    /** Cancellation token, or NULL. */
    parmap_cancel *cancel;
    /** Overall deadline in seconds from the start of the call; 0 = none.
     * Items not started by then are reported as PARMAP_ETIMEDOUT and the
     * call returns PARMAP_ETIMEDOUT, with every finished result kept. */
    double timeout;
    /** Per-item deadline in seconds from the start of each attempt; 0 =
     * none. Callbacks see it through parmap_should_stop(); it is
     * cooperative: a callback that never asks runs to completion. */
    double item_timeout;
    /** Extra attempts for a failed item: up to 1 + retries in all. */
    unsigned retries;
    /** Seconds before the first retry of an item, doubling with each
     * further retry (exponential backoff). A waiting retry does not hold a
     * thread: it sits in a not-before queue. 0 = retry at once. Should
     * memory for that queue run out, the failed attempt stands as the
     * item's outcome. */
    double retry_delay;
    /** Upper bound of the backoff delay; 0 = no bound. */
    double retry_delay_max;
    /** Which failures are retried; NULL = all of them. */
    parmap_retry_fn retry_if;
    /** Passed to @c retry_if. */
    void *retry_ctx;
    /** If not NULL, an array of n records (maps only). */
    parmap_record *records;

    /** Streams: items taken from the producer ahead of the threads that run
     * them; 0 = the concurrency limit. */
    size_t prefetch;
    /** Streams in input order: finished results held while an earlier item
     * is still running; 0 = twice the concurrency limit. When it is full,
     * threads take no new item until the earliest one finishes. */
    size_t reorder;
} parmap_opts;

/**
 * Maps @p fn over @p n items in parallel: the parallel form of
 *
 *     for (size_t i = 0; i < n; i++)
 *         status[i] = fn(ctx, i, in + i * in_size, out + i * out_size);
 *
 * Result i lands in output slot i whatever order items finish in. The
 * calling thread takes part in the work; the call returns once every
 * started callback has returned, so nothing writes to the caller's memory
 * afterwards.
 *
 * A callback may itself call parmap_map() on the same pool (a nested map):
 * the inner caller works on its own items instead of blocking, so nesting
 * cannot deadlock.
 *
 * @param pool      the pool.
 * @param n         number of items; 0 returns 0 at once and calls nothing.
 * @param in        input array of n elements of @p in_size bytes, or NULL
 *                  (then @p in_size must be 0 and callbacks get NULL).
 * @param in_size   input element size (stride) in bytes.
 * @param out       output array of n elements of @p out_size bytes, or NULL
 *                  (then @p out_size must be 0 and callbacks get NULL).
 * @param out_size  output element size (stride) in bytes.
 * @param fn        the per-item callback.
 * @param ctx       passed to every callback.
 * @param opts      options, or NULL for defaults.
 * @return
 *   - 0: every item succeeded.
 *   - PARMAP_EFAILED: every item ran and at least one failed (default
 *     mode); see opts->status and opts->summary for which.
 *   - the code of the first item to fail (in time), with PARMAP_FAIL_FAST
 *     or a halt rule on failures.
 *   - PARMAP_ECANCELED: the progress callback asked to stop, or
 *     opts->cancel was triggered.
 *   - PARMAP_ETIMEDOUT: opts->timeout passed before every item ran.
 *   - PARMAP_EHALTED, or a failing item's code: opts->halt stopped the map.
 *   - PARMAP_EINVAL: @p pool or @p fn is NULL with n > 0; an array is NULL
 *     with a non-zero element size, or non-NULL with a zero element size;
 *     a time in opts is negative or not a number; opts->halt has an
 *     unknown mode or a percent above 100.
 *   - PARMAP_EOVERFLOW: n times an element size does not fit in size_t.
 *   - PARMAP_EFORKED: @p pool was inherited across fork().
 *   When an argument error is returned no callback has run.
 *
 * Thread-safety: any number of threads may run maps on one pool at once.
 */
PARMAP_API int parmap_map(parmap_pool *pool, size_t n, const void *in,
                          size_t in_size, void *out, size_t out_size,
                          parmap_fn fn, void *ctx, const parmap_opts *opts);

/* ------------------------------------------------------------------------ */
/* Progress bar: a ready-made progress callback                             */
/* ------------------------------------------------------------------------ */


/**
 * A text progress bar in the style of tqdm, drawn by the progress callback
 * of a map, a stream or a task group. Opaque; create with
 * parmap_bar_create(). The library only ever writes to a FILE the caller
 * gave to a bar.
 *
 * On a terminal it redraws one line in place (a carriage return and the
 * line padded with spaces; no escape sequence), sized to the terminal's
 * width:
 *
 *     fetch:  45%|████▌     | 4500/10000 [00:01<00:01, 4012.3 it/s, 3 failed]
 *
 * that is: the percentage, the bar, done/total, elapsed<remaining time
 * (mm:ss, or h:mm:ss), items per second (seconds per item below one), and
 * the number of failed items when there are any. The remaining time is
 * estimated from the average rate so far. When the output is not a
 * terminal (a log file, CI), it writes a plain line, ending in a newline,
 * at most once per interval. When the total is unknown (streams report
 * total 0) it shows the count, elapsed time and rate:
 *
 *     fetch: 4500 it [00:01, 4012.3 it/s]
 *
 * Either way it ends with a final line holding the final counts: drawn as
 * soon as done reaches a known total, otherwise by parmap_bar_destroy().
 *
 * Replaces a hand-written progress callback; the one line is
 * parmap_bar_attach():
 *
 *     parmap_bar *bar;
 *     parmap_bar_create(&bar, stderr, NULL);
 *     parmap_opts opts = {0};
 *     parmap_bar_attach(bar, &opts);
 *     rc = parmap_map(pool, n, in, sizeof *in, out, sizeof *out, f, NULL,
 *                     &opts);
 *     parmap_bar_destroy(bar);
 */
typedef struct parmap_bar parmap_bar;

/** Flags for parmap_bar_opts.flags. */
enum parmap_bar_flags {
    /** Draw the bar with '#' and spaces. The default, unless the program
     * has called setlocale() and the locale's codeset is UTF-8. */
    PARMAP_BAR_ASCII = 1u << 0,
    /** Draw the bar with Unicode block characters (U+2588 and the eighths
     * U+2589..U+258F), written as UTF-8: one column each. */
    PARMAP_BAR_UNICODE = 1u << 1,
    /** Redraw in place even if isatty() says the output is not a terminal
     * (a pseudo-terminal behind a pipe; tests). */
    PARMAP_BAR_FORCE_TTY = 1u << 2,
    /** Write plain lines even if the output is a terminal. */
    PARMAP_BAR_NO_TTY = 1u << 3
};

/** Bar options. Zero (or NULL) means defaults. Fields are only appended. */
typedef struct parmap_bar_opts {
    /** Written before the counts, followed by ": "; NULL or "" = none.
     * Copied (its first 200 bytes); control characters become '?'. */
    const char *label;
    /** parmap_bar_flags, or-ed. */
    unsigned flags;
    /** Minimum seconds between two drawn lines, on the call's own clock
     * (parmap_progress.elapsed); the first and the final line are always
     * drawn. 0 = 0.1 s on a terminal, 5 s otherwise. */
    double interval;
    /** Columns a line may take (on a terminal, one fewer, so the cursor
     * never wraps); lines never exceed it. 0 = the terminal's width
     * (TIOCGWINSZ on the output, read at each redraw), else the COLUMNS
     * environment variable at create time, else 80. Values above 1024 count
     * as 1024. */
    int width;
} parmap_bar_opts;

/**
 * Creates a progress bar that writes to @p out. Nothing is written before
 * the first parmap_bar_update().
 *
 * Whether @p out is a terminal is decided here, by isatty(fileno(out)),
 * unless opts->flags says otherwise; so is the glyph set.
 *
 * @param bar   receives the bar; untouched on failure.
 * @param out   where to draw, for example stderr. Not closed by the bar;
 *              it must stay open until parmap_bar_destroy().
 * @param opts  options, or NULL for defaults.
 * @return 0, or
 *   - PARMAP_EINVAL: @p bar or @p out is NULL; opts->flags has an unknown
 *     bit, or both ASCII and UNICODE, or both FORCE_TTY and NO_TTY;
 *     opts->interval is negative or not a number; opts->width is negative.
 *   - PARMAP_ENOMEM: out of memory.
 *
 * Thread-safety: any thread may create bars; bars are independent.
 */
PARMAP_API int parmap_bar_create(parmap_bar **bar, FILE *out,
                                 const parmap_bar_opts *opts);

/**
 * Draws @p p on the bar when a line is due: a parmap_progress_fn, to be
 * set as opts.progress with the bar as opts.progress_ctx (or through
 * parmap_bar_attach()).
 *
 * A line is due for the first update of a call, when @p p is final
 * (done reaches a known total: that line ends with a newline), and when
 * opts->interval has passed since the last line. The output is flushed
 * after each line. Later updates with the same final counts (parmap's own
 * last call repeats them) draw nothing, and neither does, in a log, an
 * update whose counts have not changed since the last line. Counts going
 * back (done or elapsed smaller than before, or another total) mean a new
 * call: the previous line is ended first, as parmap_bar_destroy() would.
 *
 * @param bar  a parmap_bar (void * so that no cast is needed as a
 *             progress_ctx); NULL draws nothing.
 * @param p    the counts; NULL draws nothing.
 * @return 0 always: a bar never cancels a call. Write errors are ignored
 *         (ferror(out) tells).
 *
 * Runs on the thread parmap runs the progress callback on. One bar serves
 * one call at a time: parmap never runs two progress callbacks of one call
 * at once, so the bar takes no lock, but two calls running at once must
 * not share a bar.
 */
PARMAP_API int parmap_bar_update(void *bar, const parmap_progress *p);

/**
 * Attaches @p bar to @p opts: sets opts->progress to parmap_bar_update,
 * opts->progress_ctx to @p bar, and opts->progress_interval to the bar's
 * interval. Other fields are left alone. Nothing happens if either is
 * NULL.
 */
PARMAP_API void parmap_bar_attach(parmap_bar *bar, parmap_opts *opts);

/**
 * Ends the bar and frees it. If the last counts it was given were not
 * drawn as a final line (a stream, whose total is unknown; a call that
 * stopped early; a line not yet due), it draws them now as the final line;
 * a bar that was never updated writes nothing. @p out is not closed.
 *
 * @param bar  a bar, or NULL (then nothing happens).
 *
 * Thread-safety: call it once the call using the bar has returned (for a
 * stream: after its last parmap_stream_next()), never during an update.
 */
PARMAP_API void parmap_bar_destroy(parmap_bar *bar);

/* ------------------------------------------------------------------------ */
/* Streams: lazy input, bounded memory, ordered or as completed             */
/* ------------------------------------------------------------------------ */

/** A stream: a map over a producer of unknown length. Opaque. */
typedef struct parmap_stream parmap_stream;

/**
 * Produces the stream's next input, like a generator.
 *
 * @param ctx    the producer context given to parmap_stream_create().
 * @param index  the index the item will have (0, 1, 2, ...).
 * @param in     where to write the item: in_size bytes (NULL if in_size
 *               is 0).
 * @return 1 when an item was written, 0 at the end of the input, or a
 *         negative code: the input failed; items already taken still run
 *         and are delivered, then parmap_stream_next() returns the code.
 *
 * Called on demand, only when the stream has room for another item, on
 * whichever thread needs one (the consumer or a worker), never two at once.
 */
typedef int (*parmap_producer_fn)(void *ctx, size_t index, void *in);

/** One result of a stream, filled in by parmap_stream_next(). */
typedef struct parmap_stream_item {
    size_t index;      /**< its position in the input */
    int status;        /**< as in parmap_opts.status */
    unsigned attempts; /**< callbacks made for it */
    const void *in;    /**< its input (valid until the next call) */
    void *out;         /**< its output (valid until the next call) */
} parmap_stream_item;

/** Counters of a stream, from parmap_stream_inspect(). */
typedef struct parmap_stream_stats {
    size_t produced;  /**< items taken from the producer */
    size_t waiting;   /**< taken, not started (bounded by prefetch) */
    size_t running;   /**< callbacks running (bounded by the limit) */
    size_t held;      /**< finished, not yet delivered (bounded by
                           reorder, in input order) */
    size_t delivered; /**< returned by parmap_stream_next() */
    /** The oldest item still running, which holds back ordered delivery,
     * and for how long it has run; (size_t)-1 and 0 when none runs. */
    size_t holdup_index;
    double holdup_seconds;
} parmap_stream_stats;

/**
 * Starts a stream: the parallel form of
 *
 *     for (size_t i = 0; producer(pctx, i, &in) == 1; i++) {
 *         status = fn(ctx, i, &in, &out);
 *         consume(i, status, &out);
 *     }
 *
 * Inputs are pulled from @p producer only as room frees up, so memory stays
 * bounded by (limit + prefetch + reorder) items however long the input is.
 * Results come out of parmap_stream_next() in input order, or in the order
 * they finish with PARMAP_UNORDERED.
 *
 * @param stream    receives the stream.
 * @param pool      the pool that runs it.
 * @param producer  the input generator; @p pctx is passed to it.
 * @param in_size   bytes of one input item (may be 0).
 * @param fn        the per-item callback, as for parmap_map().
 * @param ctx       passed to @p fn.
 * @param out_size  bytes of one output item (may be 0).
 * @param opts      options, or NULL: flags (PARMAP_UNORDERED,
 *                  PARMAP_FAIL_FAST), max_concurrency, prefetch, reorder,
 *                  progress (with total 0: unknown), halt, cancel, timeout,
 *                  item_timeout and retries apply; status, summary and
 *                  records do not (each item carries its own).
 * @return 0, or PARMAP_EINVAL (a NULL pointer argument or a bad option),
 *         PARMAP_ENOMEM. No callback runs before the first
 *         parmap_stream_next().
 *
 * Thread-safety: one thread consumes a stream at a time.
 */
PARMAP_API int parmap_stream_create(parmap_stream **stream, parmap_pool *pool,
                                    parmap_producer_fn producer, void *pctx,
                                    size_t in_size, parmap_fn fn, void *ctx,
                                    size_t out_size, const parmap_opts *opts);

/**
 * Waits for the next result; the calling thread runs items while it waits.
 *
 * @return 1 with @p item filled in (its in/out pointers stay valid until
 *         the next call); 0 at the end, once every item was delivered; or
 *         a negative code once every finished or never-started item was
 *         delivered after the stream stopped: the producer's error,
 *         PARMAP_ECANCELED, PARMAP_ETIMEDOUT, or the halt rule's code.
 *         PARMAP_EINVAL for NULL arguments.
 */
PARMAP_API int parmap_stream_next(parmap_stream *stream,
                                  parmap_stream_item *item);

/** Fills in @p stats. @return 0, or PARMAP_EINVAL for NULL arguments. */
PARMAP_API int parmap_stream_inspect(parmap_stream *stream,
                                     parmap_stream_stats *stats);

/**
 * Stops the stream (no new item starts), waits for running callbacks to
 * return, and frees it. NULL is a no-op.
 * @return 0, or PARMAP_EBUSY when called from one of its own callbacks.
 */
PARMAP_API int parmap_stream_destroy(parmap_stream *stream);

/* ------------------------------------------------------------------------ */
/* Task groups: dynamic work, waiting for any, all or the first error      */
/* ------------------------------------------------------------------------ */

/** A group of tasks that grows while it runs. Opaque. */
typedef struct parmap_group parmap_group;

/** A task: returns 0 or an error code; results go through @p ctx. */
typedef int (*parmap_task_fn)(void *ctx);

/** What parmap_group_wait() waits for (asyncio.wait's return_when). */
enum parmap_wait {
    PARMAP_WAIT_ANY = 0,     /**< FIRST_COMPLETED: one more finished task */
    PARMAP_WAIT_ALL,         /**< ALL_COMPLETED: no task left pending */
    PARMAP_WAIT_FIRST_ERROR  /**< FIRST_EXCEPTION: a failure, or all done */
};

/**
 * Creates a task group on @p pool.
 *
 * A live group counts as a call on its pool (parmap_pool_destroy() returns
 * PARMAP_EBUSY until the group is destroyed) and holds one of the pool's
 * 64 job slots; a group created when none is free runs its tasks only on
 * threads that wait on it.
 *
 * @param opts  max_concurrency (capped at the pool's size), halt (a
 *              TaskGroup cancels siblings when one fails:
 *              {PARMAP_HALT_NOW, PARMAP_HALT_ON_FAIL, 1}), cancel, timeout,
 *              item_timeout, retries and progress apply. retry_if's
 *              `attempt` counts from the last (re)submission.
 * @return 0, PARMAP_EINVAL, PARMAP_ENOMEM, PARMAP_EFORKED.
 */
PARMAP_API int parmap_group_create(parmap_group **group, parmap_pool *pool,
                                   const parmap_opts *opts);

/**
 * Adds a task; it starts as soon as a thread is free.
 * @param id  receives the task's id (ids count up from 0), or NULL; it is
 *            written before the task can start.
 * @return 0, PARMAP_EINVAL, PARMAP_ENOMEM, or PARMAP_ECANCELED when the
 *         group has stopped (halted, cancelled, timed out): the task is
 *         not added.
 * Thread-safety: any thread, including from inside a running task.
 */
PARMAP_API int parmap_group_submit(parmap_group *group, parmap_task_fn fn,
                                   void *ctx, size_t *id);

/**
 * Runs a finished task again (for example after it failed), under its id.
 * @return 0; PARMAP_ENOENT (no such task); PARMAP_EBUSY (not finished);
 *         PARMAP_ECANCELED (the group has stopped).
 */
PARMAP_API int parmap_group_resubmit(parmap_group *group, size_t id);

/**
 * Waits; the calling thread runs tasks while it waits.
 *
 * The waiting thread runs a task itself when no worker can (a pool of 1,
 * no free slot, every worker busy in this group) or when a startable task
 * has waited 5 ms for an idle worker; a timed wait can then return late by
 * the length of that task. A retry waiting for its delay starts when it is
 * due and a thread looks at the group: a waiter sleeps until then.
 *
 * @param mode     what to wait for.
 * @param timeout  seconds; a negative value waits without limit.
 * @param id, status  for PARMAP_WAIT_ANY: the finished task (each finished
 *                 task is reported once); for PARMAP_WAIT_FIRST_ERROR:
 *                 the failed task, if any. Either may be NULL.
 *                 FIRST_ERROR reports each failure once, like ANY, so a
 *                 loop that replaces failed tasks ends; tasks a stop left
 *                 unrun count as failures there.
 * @return 0 when the condition was met (for FIRST_ERROR: every task
 *         finished and no failure is left unreported, with *id set to
 *         (size_t)-1); the failed task's code for FIRST_ERROR;
 *         PARMAP_ENOENT for ANY when no task is pending or unreported;
 *         PARMAP_ETIMEDOUT when @p timeout passed first; PARMAP_EDEADLK
 *         for ALL from inside one of the group's own tasks (it could never
 *         be met); PARMAP_EINVAL.
 */
PARMAP_API int parmap_group_wait(parmap_group *group, enum parmap_wait mode,
                                 double timeout, size_t *id, int *status);

/**
 * Reads a task's outcome.
 * @return 0 with *status set (0, its error, PARMAP_ENOTRUN or
 *         PARMAP_ETIMEDOUT) and *attempts, counted over all its
 *         submissions (either may be NULL);
 *         PARMAP_EBUSY if it has not finished; PARMAP_ENOENT if no such
 *         task; PARMAP_EINVAL.
 */
PARMAP_API int parmap_group_task(parmap_group *group, size_t id, int *status,
                                 unsigned *attempts);

/**
 * Counts tasks: @p done finished, @p pending queued or running (either may
 * be NULL). @return 0 or PARMAP_EINVAL.
 */
PARMAP_API int parmap_group_counts(parmap_group *group, size_t *done,
                                   size_t *pending);

/**
 * Waits for every task (running queued ones on the calling thread too),
 * then frees the group. NULL is a no-op.
 * @return 0, or PARMAP_EBUSY when called from one of its own tasks.
 */
PARMAP_API int parmap_group_destroy(parmap_group *group);

#ifdef __cplusplus
}
#endif

#endif /* PARMAP_H */
