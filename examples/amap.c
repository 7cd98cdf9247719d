/*
 * amap.c: pattern 3 of PATTERNS.md, "amap: a map over a work queue", with
 * a parmap stream.
 *
 * The asyncio original: a fixed number of workers pull (index, argument)
 * pairs from a queue that may be bounded (max_queue_size), apply the
 * function, put (index, result) into a priority queue so results come back
 * in input order, call a progress callback after each item (a tqdm bar),
 * and raise the first exception without hanging the queue. Its scenario:
 * 100 items sleeping random fractions of a second on 10 workers, about
 * 51 s serially and 5.4 to 5.6 s with amap.
 *
 * Here the scenario is scaled down ten times so the program finishes in
 * about a second: each item sleeps a random fraction of 0.1 s (serially
 * about 5 s, with 10 workers about 0.5 s). The parts of amap map onto
 * parmap like this:
 *   - the work queue and its workers: a stream on a pool of 10 threads,
 *     max_concurrency = 10;
 *   - max_queue_size: opts.prefetch, the inputs taken ahead of the workers
 *     (the producer is only asked when there is room);
 *   - the priority queue that restores input order: the stream's own
 *     reorder buffer (the default: results come out in input order);
 *   - the progress callback: opts.progress, drawing a bar on stderr;
 *   - "raise the first exception": PARMAP_FAIL_FAST. Part 2 makes item 42
 *     fail: nothing new starts, the items already running finish, and
 *     parmap_stream_next() returns the failure after handing back every
 *     result it has, so nothing hangs.
 *
 * Build against an installed parmap:
 *     cc -std=c11 -O2 amap.c $(pkg-config --cflags --libs parmap)
 *
 * Exit status: 0 when both parts behave as described, 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <parmap.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ITEMS 100
#define WORKERS 10
#define MAX_QUEUE_SIZE 20 /* amap's bounded queue: opts.prefetch */
#define FAILING_ITEM 42   /* part 2 */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_seconds(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* splitmix64: the "random" sleep of item i, the same on every run. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* The argument of item i: a random fraction of 0.1 s. */
static double sleep_of(size_t i)
{
    return 0.1 * (double)(mix64(i) % 1000) / 1000.0;
}

/* ------------------------------------------------------------------------ */
/* The producer, the work and the progress bar                              */
/* ------------------------------------------------------------------------ */

/* The producer side of amap's queue: (index, argument) pairs, generated on
 * demand. The stream asks for item `index` only when it has room. */
struct job_list {
    size_t n;
    double serial_seconds; /* the sum of the sleeps: the serial loop's time */
};

static int next_argument(void *ctx, size_t index, void *in)
{
    struct job_list *jobs = ctx;
    if (index >= jobs->n)
        return 0; /* the end of the input */
    double s = sleep_of(index);
    jobs->serial_seconds += s; /* the producer never runs twice at once */
    memcpy(in, &s, sizeof s);
    return 1;
}

/* The function amap applies: sleeps its argument (a stand-in for I/O) and
 * returns its result through `out`: here, the milliseconds slept. */
struct work {
    size_t failing; /* this index fails with -EIO; ITEMS + 1 for none */
};

static int apply(void *ctx, size_t index, const void *in, void *out)
{
    const struct work *w = ctx;
    double s;
    memcpy(&s, in, sizeof s);
    sleep_seconds(s);
    if (index == w->failing)
        return -EIO; /* "raises an exception" */
    unsigned ms = (unsigned)(s * 1000.0 + 0.5);
    memcpy(out, &ms, sizeof ms);
    return 0;
}

/* A progress bar on stderr. parmap calls it serialised (never two at
 * once), so it may write without a lock. Streams do not know their length
 * (p->total is 0), but this program does. */
struct bar {
    size_t total;
    int tty;
};

static int draw_bar(void *ctx, const parmap_progress *p)
{
    const struct bar *b = ctx;
    enum { WIDTH = 40 };
    char cells[WIDTH + 1];
    size_t filled = b->total ? p->done * WIDTH / b->total : 0;
    for (size_t i = 0; i < WIDTH; i++)
        cells[i] = i < filled ? '#' : '.';
    cells[WIDTH] = '\0';
    fprintf(stderr, "%s[%s] %3zu/%zu %.2fs%s", b->tty ? "\r" : "", cells,
            p->done, b->total, p->elapsed, b->tty ? "" : "\n");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* One run                                                                  */
/* ------------------------------------------------------------------------ */

struct outcome {
    int rc;            /* what parmap_stream_next() ended with */
    size_t delivered;  /* results handed back */
    size_t succeeded;
    size_t not_started;
    size_t failed_index;
    int failed_code;
    int in_order;
    double seconds;
    double serial_seconds;
};

static int run(parmap_pool *pool, size_t failing, int print_results,
               int tty, struct outcome *res)
{
    struct job_list jobs = {ITEMS, 0.0};
    struct work w = {failing};
    struct bar bar = {ITEMS, tty};
    parmap_opts opts = {0};
    opts.max_concurrency = WORKERS;
    opts.prefetch = MAX_QUEUE_SIZE;
    opts.flags = PARMAP_FAIL_FAST;
    opts.progress = draw_bar;
    opts.progress_ctx = &bar;
    opts.progress_interval = tty ? 0.02 : 0.1;

    parmap_stream *stream = NULL;
    int rc = parmap_stream_create(&stream, pool, next_argument, &jobs,
                                  sizeof(double), apply, &w, sizeof(unsigned),
                                  &opts);
    if (rc != 0) {
        fprintf(stderr, "amap: parmap_stream_create: %s\n",
                parmap_strerror(rc));
        return -1;
    }

    memset(res, 0, sizeof *res);
    res->in_order = 1;
    res->failed_index = (size_t)-1;
    unsigned results[ITEMS];
    fflush(stdout);
    double t0 = now();
    parmap_stream_item item;
    while ((rc = parmap_stream_next(stream, &item)) == 1) {
        if (item.index != res->delivered)
            res->in_order = 0;
        res->delivered++;
        if (item.status == 0) {
            memcpy(&results[item.index], item.out, sizeof results[0]);
            res->succeeded++;
        } else if (item.status == PARMAP_ENOTRUN) {
            res->not_started++;
        } else {
            res->failed_index = item.index;
            res->failed_code = item.status;
        }
    }
    res->seconds = now() - t0;
    res->rc = rc;
    if (tty)
        fputc('\n', stderr);
    parmap_stream_destroy(stream);
    res->serial_seconds = jobs.serial_seconds;

    if (print_results && rc == 0) {
        printf("  results in input order (ms slept by each item):\n");
        for (size_t i = 0; i < ITEMS; i++)
            printf("%s%3u%s", i % 20 == 0 ? "   " : " ", results[i],
                   i % 20 == 19 ? "\n" : "");
    }
    return 0;
}

int main(void)
{
    int tty = isatty(STDERR_FILENO);
    int ok = 1;
    parmap_pool *pool = NULL;
    int rc = parmap_pool_create(&pool, WORKERS, NULL);
    if (rc != 0) {
        fprintf(stderr, "amap: parmap_pool_create: %s\n", parmap_strerror(rc));
        return 1;
    }

    printf("amap with a parmap stream: %d items, each sleeping a random "
           "fraction of 0.1 s\n(the pattern's seconds scaled down 10x), "
           "%d workers, at most %d inputs queued ahead,\nresults in input "
           "order.\n\n",
           ITEMS, WORKERS, MAX_QUEUE_SIZE);

    printf("Part 1: every item succeeds\n");
    struct outcome a;
    if (run(pool, ITEMS + 1, 1, tty, &a) != 0)
        return 1;
    printf("  sequential (sum of the sleeps): %.2f s\n", a.serial_seconds);
    printf("  measured with %d workers:        %.2f s (%.1fx)\n", WORKERS,
           a.seconds, a.serial_seconds / a.seconds);
    if (a.rc != 0 || a.succeeded != ITEMS || !a.in_order) {
        printf("  UNEXPECTED: end code %d, %zu of %d results, %s\n", a.rc,
               a.succeeded, ITEMS, a.in_order ? "in order" : "out of order");
        ok = 0;
    }

    printf("\nPart 2: item %d fails (-EIO); the first error stops the run\n",
           FAILING_ITEM);
    struct outcome b;
    if (run(pool, FAILING_ITEM, 0, tty, &b) != 0)
        return 1;
    printf("  parmap_stream_next() ended with %d (%s) after %.2f s\n", b.rc,
           b.rc < 0 ? strerror(-b.rc) : "not an error", b.seconds);
    printf("  %zu results handed back in order: %zu succeeded, item %zu "
           "failed, %zu taken but never started\n",
           b.delivered, b.succeeded, b.failed_index, b.not_started);
    printf("  %zu items were never even taken from the producer\n",
           ITEMS - b.delivered);
    if (b.rc != -EIO || b.failed_index != FAILING_ITEM ||
        b.failed_code != -EIO || !b.in_order ||
        b.succeeded + 1 + b.not_started != b.delivered ||
        b.delivered >= ITEMS) {
        printf("  UNEXPECTED outcome\n");
        ok = 0;
    }

    if (parmap_pool_destroy(pool) != 0)
        ok = 0;
    printf("\n%s\n", ok ? "amap: OK" : "amap: FAILED");
    return ok ? 0 : 1;
}
