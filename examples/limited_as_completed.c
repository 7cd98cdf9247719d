/*
 * limited_as_completed.c: pattern 5 of PATTERNS.md with a parmap stream.
 *
 * The asyncio original, limited_as_completed(), takes a lazy iterable of
 * tasks (a generator) rather than a list, keeps at most `limit` of them
 * running, pulls the next input each time one finishes, and yields results
 * as they complete, so memory stays bounded however long the input is (its
 * author wanted a million HTTP requests). In parmap that is a stream with
 * PARMAP_UNORDERED and max_concurrency = limit: the producer is the
 * generator, called only when there is room.
 *
 * Part 1 is the pattern's scenario, scaled down ten times so it takes
 * about 0.15 s instead of 1.5 s: 100 tasks, task i (1..100) sleeps
 * 0.1/i s (the original sleeps 1/i s), at most 10 at once. The quick ones
 * come out first, although the generator yields the slow ones first.
 *
 * Part 2 feeds 1,000,000 generated inputs through the same limit of 10
 * and prints the peak resident set size (getrusage) before and after: it
 * does not grow with the input, because the stream holds at most
 * limit + prefetch + reorder items at any time.
 *
 * Build against an installed parmap:
 *     cc -std=c11 -O2 limited_as_completed.c \
 *         $(pkg-config --cflags --libs parmap)
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
#include <sys/resource.h>
#include <time.h>

#define LIMIT 10

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

/* Peak resident set size of this process so far, in KiB (Linux). */
static long peak_rss_kb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return ru.ru_maxrss;
}

/* ------------------------------------------------------------------------ */
/* Part 1: 100 tasks, task i sleeps 0.1/i s                                 */
/* ------------------------------------------------------------------------ */

#define TASKS 100

/* The generator: yields the task numbers 1..100, slowest first. */
static int task_numbers(void *ctx, size_t index, void *in)
{
    (void)ctx;
    if (index >= TASKS)
        return 0;
    unsigned task = (unsigned)index + 1;
    memcpy(in, &task, sizeof task);
    return 1;
}

static int sleepy_task(void *ctx, size_t index, const void *in, void *out)
{
    (void)ctx;
    (void)index;
    unsigned task;
    memcpy(&task, in, sizeof task);
    double s = 0.1 / task;
    sleep_seconds(s);
    memcpy(out, &s, sizeof s);
    return 0;
}

static int part1(parmap_pool *pool)
{
    parmap_opts opts = {0};
    opts.flags = PARMAP_UNORDERED;
    opts.max_concurrency = LIMIT;

    parmap_stream *stream = NULL;
    int rc = parmap_stream_create(&stream, pool, task_numbers, NULL,
                                  sizeof(unsigned), sleepy_task, NULL,
                                  sizeof(double), &opts);
    if (rc != 0) {
        fprintf(stderr, "limited_as_completed: %s\n", parmap_strerror(rc));
        return 0;
    }
    printf("Part 1: %d tasks, task i sleeps 0.1/i s (the pattern's 1/i s "
           "scaled down 10x),\n        at most %d at once, results as they "
           "complete\n",
           TASKS, LIMIT);
    printf("  completion order (task numbers):\n");

    unsigned order[TASKS];
    size_t got = 0;
    double sum = 0.0, t0 = now();
    parmap_stream_item item;
    while ((rc = parmap_stream_next(stream, &item)) == 1) {
        unsigned task;
        double s;
        memcpy(&task, item.in, sizeof task);
        memcpy(&s, item.out, sizeof s);
        if (got < TASKS)
            order[got] = task;
        printf("%s%3u%s", got % 20 == 0 ? "   " : " ", task,
               got % 20 == 19 ? "\n" : "");
        sum += s;
        got++;
    }
    double elapsed = now() - t0;
    parmap_stream_destroy(stream);

    /* The generator yields task 1 (0.1 s) first and task 100 (1 ms)
     * last, and the first ten start together: among them the quick ones
     * must come out first. Tasks 1 to 5 sleep 100, 50, 33, 25 and 20 ms,
     * far enough apart for the order to be certain. */
    size_t pos[TASKS + 1];
    for (size_t t = 0; t <= TASKS; t++)
        pos[t] = (size_t)-1;
    for (size_t k = 0; k < got && k < TASKS; k++)
        if (order[k] <= TASKS)
            pos[order[k]] = k;
    int quick_first = 1;
    for (unsigned t = 1; t < 5; t++)
        if (pos[t] == (size_t)-1 || pos[t] <= pos[t + 1])
            quick_first = 0;
    printf("  %zu results in %.3f s (serially %.3f s); task 1, the slowest "
           "and the first\n  yielded, came out at position %zu; task 5 at %zu; "
           "task 10 at %zu\n",
           got, elapsed, sum, pos[1] + 1, pos[5] + 1, pos[10] + 1);
    return rc == 0 && got == TASKS && quick_first;
}

/* ------------------------------------------------------------------------ */
/* Part 2: a million generated inputs, memory stays flat                    */
/* ------------------------------------------------------------------------ */

#define MILLION 1000000u

/* A generator of a million "requests": each input is a 64-byte request
 * built on demand, never stored anywhere but the stream's window. */
struct request {
    uint64_t id;
    char path[56];
};

static int requests(void *ctx, size_t index, void *in)
{
    (void)ctx;
    if (index >= MILLION)
        return 0;
    struct request *r = in;
    r->id = index;
    snprintf(r->path, sizeof r->path, "/items/%zu", index);
    return 1;
}

/* The "response": a checksum of the request, standing in for a reply. */
static int handle(void *ctx, size_t index, const void *in, void *out)
{
    (void)ctx;
    (void)index;
    const struct request *r = in;
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (const char *p = r->path; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211u;
    h ^= r->id;
    memcpy(out, &h, sizeof h);
    return 0;
}

static int part2(parmap_pool *pool)
{
    parmap_opts opts = {0};
    opts.flags = PARMAP_UNORDERED;
    opts.max_concurrency = LIMIT;

    parmap_stream *stream = NULL;
    int rc = parmap_stream_create(&stream, pool, requests, NULL,
                                  sizeof(struct request), handle, NULL,
                                  sizeof(uint64_t), &opts);
    if (rc != 0) {
        fprintf(stderr, "limited_as_completed: %s\n", parmap_strerror(rc));
        return 0;
    }
    printf("\nPart 2: %u generated requests, at most %d at once\n", MILLION,
           LIMIT);
    long rss_before = peak_rss_kb();
    long rss_at_10k = 0;
    size_t got = 0;
    uint64_t index_sum = 0;
    double t0 = now();
    parmap_stream_item item;
    while ((rc = parmap_stream_next(stream, &item)) == 1) {
        index_sum += item.index;
        if (++got == 10000)
            rss_at_10k = peak_rss_kb();
    }
    double elapsed = now() - t0;
    long rss_after = peak_rss_kb();
    parmap_stream_destroy(stream);

    printf("  %zu results in %.2f s (%.0f ns each)\n", got, elapsed,
           elapsed * 1e9 / (double)(got ? got : 1));
    printf("  peak RSS: %ld KiB before, %ld KiB after 10,000 results, "
           "%ld KiB after all %zu\n",
           rss_before, rss_at_10k, rss_after, got);
    /* Holding the inputs alone would take 64 MB. A run under a sanitizer
     * grows a little (its own bookkeeping), so allow a fraction of that. */
    long all_inputs_kb = (long)(MILLION * sizeof(struct request) / 1024);
    int flat = rss_after - rss_at_10k < all_inputs_kb / 4;
    printf("  grew %ld KiB over the last 990,000 results; holding every "
           "input would take %ld KiB:\n  memory %s\n",
           rss_after - rss_at_10k, all_inputs_kb,
           flat ? "stays flat however long the input is"
                : "GREW with the input");
    return rc == 0 && got == MILLION &&
           index_sum == (uint64_t)MILLION * (MILLION - 1) / 2 && flat;
}

int main(void)
{
    parmap_pool *pool = NULL;
    int rc = parmap_pool_create(&pool, LIMIT, NULL);
    if (rc != 0) {
        fprintf(stderr, "limited_as_completed: %s\n", parmap_strerror(rc));
        return 1;
    }
    printf("limited_as_completed with a parmap stream (PARMAP_UNORDERED, "
           "max_concurrency %d, pool of %d threads)\n\n",
           LIMIT, LIMIT);
    int ok = part1(pool);
    ok &= part2(pool);
    if (parmap_pool_destroy(pool) != 0)
        ok = 0;
    printf("\n%s\n", ok ? "limited_as_completed: OK"
                        : "limited_as_completed: FAILED");
    return ok ? 0 : 1;
}
