/*
 * demo.c: the parmap Quick start demo.
 *
 * Part 1 (CPU-bound): stretch 10,000 keys by hashing each one several
 * thousand times (about 20-45 us per key), once with a serial for loop and
 * once with parmap_map() on a pool of one thread per CPU. The two result
 * arrays must be identical; the program prints both times and the speedup.
 *
 * Part 2 (blocking I/O): "fetch" 100 records, each of which blocks for
 * 10 to 50 ms (nanosleep stands in for a network or disk round trip), on a
 * pool of 10 threads. One record in every ten fails with -EIO. The map
 * collects failures instead of stopping (asyncio's
 * gather(return_exceptions=True)); the program lists them by index and
 * compares the sum of the waits with the wall time.
 *
 * Both maps draw a progress bar on stderr through the progress callback.
 *
 * In the source tree, `./quickstart.sh demo` builds and runs it. Against an
 * installed parmap:
 *     cc -std=c11 -O2 demo.c $(pkg-config --cflags --libs parmap)
 *
 * Exit status: 0 when every result checks out (the failures of part 2 are
 * expected), 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <parmap.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Helpers shared by both parts                                             */
/* ------------------------------------------------------------------------ */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* splitmix64's finaliser: a cheap, well-mixed 64-bit hash. Both parts use it
 * as a deterministic PRNG keyed by the item, so every run (and the serial
 * and parallel versions of a run) sees the same "random" values. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* A progress bar drawn from parmap's progress callback. parmap calls it on
 * whichever thread taking part in the map gets there first, but never two
 * at once for one map, so it may write to stderr without a lock. */
typedef struct progress_bar {
    const char *label;
    int tty; /* 1: redraw one line with \r; 0: one plain line per update. */
} progress_bar;

static int draw_progress(void *ctx, const parmap_progress *p)
{
    const progress_bar *bar = ctx;
    enum { WIDTH = 30 };
    char cells[WIDTH + 1];
    size_t filled = p->total ? p->done * WIDTH / p->total : WIDTH;
    unsigned percent = p->total ? (unsigned)(p->done * 100 / p->total) : 100;

    for (size_t i = 0; i < WIDTH; i++)
        cells[i] = i < filled ? '#' : '.';
    cells[WIDTH] = '\0';

    fprintf(stderr, "%s%-4s [%s] %3u%% %zu/%zu  %zu failed  %.1fs%s",
            bar->tty ? "\r" : "", bar->label, cells, percent, p->done, p->total,
            p->failed, p->elapsed, bar->tty ? "" : "\n");
    return 0; /* Returning non-zero would cancel the map. */
}

/* Ends the bar's line once the map has returned (the callback cannot know
 * which call is its last). */
static void finish_progress(const progress_bar *bar)
{
    if (bar->tty)
        fputc('\n', stderr);
}

/* Describes an item's code. parmap_strerror() knows the library's own codes;
 * for a code of the callback's own (here -EIO) it says "unknown error", so
 * fall back to the C library's message for negated errno values. Only the
 * main thread calls this, so strerror()'s static buffer is not a problem. */
static const char *describe(int code)
{
    if (code < 0 && strcmp(parmap_err_name(code), "EUNKNOWN") == 0)
        return strerror(-code);
    return parmap_strerror(code);
}

/* ------------------------------------------------------------------------ */
/* Part 1: a CPU-bound map                                                  */
/* ------------------------------------------------------------------------ */

#define CPU_ITEMS 10000

/* Key stretching: hash the key 6,000 to 14,000 times (the count depends on
 * the key, so items cost unequal amounts, as real work does). */
static uint64_t stretch_key(uint64_t key)
{
    unsigned rounds = 6000 + (unsigned)(mix64(key) % 8001);
    uint64_t h = key;
    for (unsigned r = 0; r < rounds; r++)
        h = mix64(h ^ r);
    return h;
}

/* The parmap_fn wrapper around stretch_key: read input slot, write output
 * slot, return 0 for success. */
static int stretch_item(void *ctx, size_t index, const void *in, void *out)
{
    (void)ctx;
    (void)index;
    *(uint64_t *)out = stretch_key(*(const uint64_t *)in);
    return 0;
}

static int run_cpu_part(int tty)
{
    int ok = 0;
    uint64_t *keys = malloc(CPU_ITEMS * sizeof *keys);
    uint64_t *serial = malloc(CPU_ITEMS * sizeof *serial);
    uint64_t *parallel = malloc(CPU_ITEMS * sizeof *parallel);
    parmap_pool *pool = NULL;

    if (!keys || !serial || !parallel) {
        fprintf(stderr, "demo: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < CPU_ITEMS; i++)
        keys[i] = mix64(i);

    /* 0 threads: PARMAP_NUM_THREADS if set, else the CPUs we may use. */
    int rc = parmap_pool_create(&pool, 0, NULL);
    if (rc != 0) {
        fprintf(stderr, "demo: parmap_pool_create: %s\n", parmap_strerror(rc));
        goto out;
    }
    size_t nthreads = parmap_pool_size(pool);
    printf("Part 1: CPU-bound, %d keys, pool of %zu thread%s "
           "(parmap_cpu_count() = %zu)\n",
           CPU_ITEMS, nthreads, nthreads == 1 ? "" : "s", parmap_cpu_count());

    /* The serial loop that parmap_map() replaces. */
    double t0 = now();
    for (size_t i = 0; i < CPU_ITEMS; i++)
        serial[i] = stretch_key(keys[i]);
    double t_serial = now() - t0;

    progress_bar bar = {.label = "cpu", .tty = tty};
    parmap_opts opts = {
        .progress = draw_progress,
        .progress_ctx = &bar,
        .progress_interval = 0.1,
    };
    fflush(stdout); /* keep stdout's lines ahead of the bar on stderr */
    t0 = now();
    rc = parmap_map(pool, CPU_ITEMS, keys, sizeof *keys, parallel,
                    sizeof *parallel, stretch_item, NULL, &opts);
    double t_parallel = now() - t0;
    finish_progress(&bar);

    if (rc != 0) {
        fprintf(stderr, "demo: parmap_map: %s\n", parmap_strerror(rc));
        goto out;
    }
    if (memcmp(serial, parallel, CPU_ITEMS * sizeof *serial) != 0) {
        for (size_t i = 0; i < CPU_ITEMS; i++)
            if (serial[i] != parallel[i]) {
                fprintf(stderr,
                        "demo: result %zu differs: serial %016" PRIx64
                        ", parmap %016" PRIx64 "\n",
                        i, serial[i], parallel[i]);
                break;
            }
        goto out;
    }

    printf("  serial loop: %.3f s (%.1f us per key)\n", t_serial,
           t_serial / CPU_ITEMS * 1e6);
    printf("  parmap_map:  %.3f s\n", t_parallel);
    printf("  results identical: yes; speedup %.2fx on %zu thread%s\n",
           t_serial / t_parallel, nthreads, nthreads == 1 ? "" : "s");
    ok = 1;

out:
    parmap_pool_destroy(pool);
    free(keys);
    free(serial);
    free(parallel);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Part 2: a blocking-I/O map that collects failures                        */
/* ------------------------------------------------------------------------ */

#define IO_ITEMS 100
#define IO_THREADS 10

typedef struct record {
    uint32_t checksum;
    unsigned latency_ms;
} record;

/* The simulated service: each record takes 10 to 50 ms to arrive, and in
 * each block of ten consecutive record ids exactly one fails. */
static unsigned latency_ms(uint32_t id)
{
    return 10 + (unsigned)(mix64(0x5eed0000u + id) % 41);
}

static int fails(uint32_t id)
{
    return id % 10 == mix64(0xfa11u + id / 10) % 10;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The blocking call: a real program would read a socket or a file here. */
static int fetch_record(void *ctx, size_t index, const void *in, void *out)
{
    (void)ctx;
    (void)index;
    uint32_t id = *(const uint32_t *)in;
    record *r = out;
    unsigned ms = latency_ms(id);

    sleep_ms(ms);
    if (fails(id))
        return -EIO; /* The item's outcome goes to opts.status[index]. */
    r->checksum = (uint32_t)mix64(id);
    r->latency_ms = ms;
    return 0;
}

static int run_io_part(int tty)
{
    uint32_t ids[IO_ITEMS];
    record records[IO_ITEMS];
    /* Zeroed so that the checks below read defined values even if the map
     * were to fail before writing them. */
    int status[IO_ITEMS] = {0};
    parmap_summary summary = {0};
    parmap_pool *pool = NULL;
    double t_serial = 0;
    size_t want_failed = 0, want_first = (size_t)-1;

    for (size_t i = 0; i < IO_ITEMS; i++) {
        ids[i] = 1000 + (uint32_t)i;
        t_serial += latency_ms(ids[i]) / 1000.0;
        if (fails(ids[i])) {
            want_failed++;
            if (want_first == (size_t)-1)
                want_first = i;
        }
    }
    memset(records, 0, sizeof records);

    int rc = parmap_pool_create(&pool, IO_THREADS, NULL);
    if (rc != 0) {
        fprintf(stderr, "demo: parmap_pool_create: %s\n", parmap_strerror(rc));
        return 0;
    }
    printf("\nPart 2: blocking I/O, %d records of 10-50 ms each, "
           "pool of %zu threads\n",
           IO_ITEMS, parmap_pool_size(pool));

    progress_bar bar = {.label = "io", .tty = tty};
    parmap_opts opts = {
        .flags = PARMAP_COLLECT, /* the default: run every item */
        .status = status,
        .summary = &summary,
        .progress = draw_progress,
        .progress_ctx = &bar,
        .progress_interval = 0.1,
    };
    fflush(stdout);
    double t0 = now();
    rc = parmap_map(pool, IO_ITEMS, ids, sizeof *ids, records, sizeof *records,
                    fetch_record, NULL, &opts);
    double t_wall = now() - t0;
    finish_progress(&bar);
    parmap_pool_destroy(pool);

    /* Every item ran; some failed, so the map reports PARMAP_EFAILED and
     * the per-item codes sit in status[]. */
    printf("  parmap_map returned %s (%s)\n", parmap_err_name(rc),
           parmap_strerror(rc));
    printf("  %zu succeeded, %zu failed, %zu not run\n", summary.succeeded,
           summary.failed, summary.not_run);
    for (size_t i = 0; i < IO_ITEMS; i++)
        if (status[i] != 0)
            printf("    item %2zu (record %" PRIu32 ") failed: %s\n", i, ids[i],
                   describe(status[i]));

    int ok = rc == (want_failed ? PARMAP_EFAILED : 0) &&
             summary.failed == want_failed &&
             summary.succeeded == IO_ITEMS - want_failed &&
             summary.not_run == 0 && summary.first_failed == want_first &&
             summary.first_error == (want_failed ? -EIO : 0);
    for (size_t i = 0; i < IO_ITEMS; i++) {
        int want = fails(ids[i]) ? -EIO : 0;
        if (status[i] != want ||
            (want == 0 && (records[i].checksum != (uint32_t)mix64(ids[i]) ||
                           records[i].latency_ms != latency_ms(ids[i])))) {
            fprintf(stderr, "demo: record %zu: unexpected outcome %d\n", i,
                    status[i]);
            ok = 0;
        }
    }
    if (!ok) {
        fprintf(stderr, "demo: part 2 results do not match the expected "
                        "outcomes\n");
        return 0;
    }

    printf("  serial equivalent (sum of waits): %.3f s\n", t_serial);
    printf("  wall time:                        %.3f s\n", t_wall);
    printf("  results as expected: yes; speedup %.1fx on %d threads\n",
           t_serial / t_wall, IO_THREADS);
    return 1;
}

int main(void)
{
    int tty = isatty(STDERR_FILENO);

    printf("parmap %s demo\n\n", parmap_version());

    int ok = run_cpu_part(tty);
    if (ok)
        ok = run_io_part(tty);

    printf("\n%s\n", ok ? "demo: all results check out"
                        : "demo: FAILED (see messages above)");
    return ok ? 0 : 1;
}
