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
 *     parmap_pool *pool;
 *     parmap_pool_create(&pool, 0, NULL);           // one thread per CPU
 *     int rc = parmap_map(pool, n, in, sizeof *in, out, sizeof *out,
 *                         f, ctx, NULL);
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
 */
#ifndef PARMAP_H
#define PARMAP_H

#include <errno.h>
#include <stddef.h>

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

/* EOVERFLOW, ECANCELED and ETIMEDOUT are POSIX; give portable fallbacks so
 * the header still compiles where <errno.h> is only ISO C. */
#ifndef EOVERFLOW
#define EOVERFLOW 75
#endif
#ifndef ECANCELED
#define ECANCELED 125
#endif
#ifndef ETIMEDOUT
#define ETIMEDOUT 110
#endif
#ifndef EDEADLK
#define EDEADLK 35
#endif
#ifndef EBUSY
#define EBUSY 16
#endif
#ifndef EAGAIN
#define EAGAIN 11
#endif

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
    XX(EFAILED, PARMAP__ERR_BASE - 1, "one or more items failed")              \
    XX(ENOTRUN, PARMAP__ERR_BASE - 2, "item was not run")

/** Error codes returned by parmap functions (always negative). */
typedef enum parmap_errno {
#define PARMAP__ERR_ENUM(name, value, msg) PARMAP_##name = (value),
    PARMAP_ERRNO_MAP(PARMAP__ERR_ENUM)
#undef PARMAP__ERR_ENUM
    PARMAP__ERR_LAST_ = PARMAP__ERR_BASE - 3
} parmap_errno;

/**
 * Describes an error code in a sentence.
 *
 * @param err  any value: a parmap code, a negated errno value, or anything
 *             else (a callback's own code).
 * @return a static string; never NULL. Unknown codes give "unknown error".
 *         Thread-safe.
 */
PARMAP_API const char *parmap_strerror(int err);

/**
 * Names an error code: "EINVAL", "EFAILED", ... ("EUNKNOWN" for a code this
 * library does not define, "OK" for 0).
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
 * counts; `done` never decreases from one call to the next.
 */
typedef int (*parmap_progress_fn)(void *ctx, const parmap_progress *p);

/** Flags for parmap_opts.flags. */
enum parmap_flags {
    /** Every item runs; failures are collected (asyncio's
     * gather(return_exceptions=True)). The default. */
    PARMAP_COLLECT = 0,
    /** The first failure stops every item not yet started (they are
     * reported as PARMAP_ENOTRUN, never started later) and the map returns
     * that failure's code (gather(return_exceptions=False)). */
    PARMAP_FAIL_FAST = 1u << 0
};

/** What a map did, filled in when opts->summary is set. */
typedef struct parmap_summary {
    size_t succeeded;    /**< items whose callback returned 0. */
    size_t failed;       /**< items whose callback returned non-zero. */
    size_t not_run;      /**< items never started (fail-fast, cancel). */
    size_t first_failed; /**< lowest failed index, or (size_t)-1 if none. */
    int first_error;     /**< the code of item first_failed, or 0. */
} parmap_summary;

/** Options of one map. Zero (or NULL) means defaults; fields only grow. */
typedef struct parmap_opts {
    /** parmap_flags, or-ed. */
    unsigned flags;
    /** At most this many callbacks of this map run at once, exactly (like
     * a semaphore around each item). 0 = the pool's size. */
    size_t max_concurrency;
    /** Items handed to a thread at a time. 0 = automatic: chunks grow
     * while items are cheap and shrink when they are slow, so queue
     * overhead stays small and the end of the map stays balanced. */
    size_t chunk_size;
    /** If not NULL, an array of n ints that receives each item's outcome:
     * 0, the callback's non-zero return, or PARMAP_ENOTRUN. */
    int *status;
    /** If not NULL, receives the counts of the map (also on failure). */
    parmap_summary *summary;
    /** Progress callback, or NULL. */
    parmap_progress_fn progress;
    /** Passed to @c progress. */
    void *progress_ctx;
    /** Minimum seconds between progress calls; 0 = after every chunk of
     * completions. The final call is always made. */
    double progress_interval;
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
 *   - the first failing item's own code, with PARMAP_FAIL_FAST.
 *   - PARMAP_ECANCELED: the progress callback asked to stop.
 *   - PARMAP_EINVAL: @p pool or @p fn is NULL with n > 0; an array is NULL
 *     with a non-zero element size, or non-NULL with a zero element size;
 *     opts->progress_interval is negative or not a number.
 *   - PARMAP_EOVERFLOW: n times an element size does not fit in size_t.
 *   When an argument error is returned no callback has run.
 *
 * Thread-safety: any number of threads may run maps on one pool at once.
 */
PARMAP_API int parmap_map(parmap_pool *pool, size_t n, const void *in,
                          size_t in_size, void *out, size_t out_size,
                          parmap_fn fn, void *ctx, const parmap_opts *opts);

#ifdef __cplusplus
}
#endif

#endif /* PARMAP_H */
