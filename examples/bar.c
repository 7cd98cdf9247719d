/*
 * bar.c: parmap's ready-made progress bar.
 *
 * Part 1 maps 400 simulated requests of 20 ms each (one in fifty fails) on
 * a pool of 4 threads, about two seconds, with a bar attached in one line:
 *
 *     map: 100%|██████████████████| 400/400 [00:02<00:00, 197.2 it/s, 8 failed]
 *
 * Part 2 runs a stream over 600 items of 5 ms whose producer alone knows
 * when the input ends. Its bar cannot know the total, so it shows the
 * count, the elapsed time and the rate:
 *
 *     stream: 600 it [00:00, 788.4 it/s]
 *
 * On a terminal each bar redraws one line; redirected to a file (a log,
 * CI), it writes plain lines instead, by default one every 5 seconds plus
 * the final one. The bar is Unicode in a UTF-8 locale (this program calls
 * setlocale), ASCII otherwise.
 *
 *   examples/bar                  # bars on stderr
 *   examples/bar --interval 0.5   # a line at most every half second
 *   examples/bar 2> bar.log       # plain lines, no control characters
 *
 * Against an installed parmap:
 *     cc -std=c11 -O2 bar.c $(pkg-config --cflags --libs parmap)
 *
 * Exit status: 0 when every result checks out (the failures of part 1 are
 * expected), 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <parmap.h>

#include <errno.h>
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAP_ITEMS 400
#define MAP_ITEM_MS 20
#define STREAM_ITEMS 600
#define STREAM_ITEM_MS 5
#define THREADS 4

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A request that takes MAP_ITEM_MS; every fiftieth one fails. */
static int request(void *ctx, size_t index, const void *in, void *out)
{
    (void)ctx;
    (void)in;
    sleep_ms(MAP_ITEM_MS);
    if (index % 50 == 49)
        return -EIO;
    *(uint64_t *)out = (uint64_t)index * index;
    return 0;
}

static int run_map(parmap_pool *pool, double interval)
{
    static uint64_t out[MAP_ITEMS];
    static int status[MAP_ITEMS];
    parmap_bar *bar;
    parmap_bar_opts bar_opts = {.label = "map", .interval = interval};
    parmap_opts opts = {.status = status};
    int rc, ok = 1;

    rc = parmap_bar_create(&bar, stderr, &bar_opts);
    if (rc != 0) {
        fprintf(stderr, "bar: parmap_bar_create: %s\n", parmap_strerror(rc));
        return 0;
    }
    parmap_bar_attach(bar, &opts); /* the one line */
    rc = parmap_map(pool, MAP_ITEMS, NULL, 0, out, sizeof *out, request, NULL,
                    &opts);
    parmap_bar_destroy(bar);

    /* Every item ran; the failures make the map return PARMAP_EFAILED. */
    if (rc != PARMAP_EFAILED) {
        fprintf(stderr, "bar: parmap_map returned %s, not EFAILED\n",
                parmap_err_name(rc));
        ok = 0;
    }
    for (size_t i = 0; i < MAP_ITEMS; i++) {
        int want = i % 50 == 49 ? -EIO : 0;
        if (status[i] != want || (want == 0 && out[i] != (uint64_t)i * i)) {
            fprintf(stderr, "bar: item %zu: unexpected outcome %d\n", i,
                    status[i]);
            ok = 0;
        }
    }
    return ok;
}

/* The producer: only it knows where the input ends. */
static int produce(void *ctx, size_t index, void *in)
{
    (void)ctx;
    if (index == STREAM_ITEMS)
        return 0;
    *(uint64_t *)in = index * 3;
    return 1;
}

static int work(void *ctx, size_t index, const void *in, void *out)
{
    (void)ctx;
    (void)index;
    sleep_ms(STREAM_ITEM_MS);
    *(uint64_t *)out = *(const uint64_t *)in + 1;
    return 0;
}

static int run_stream(parmap_pool *pool, double interval)
{
    parmap_bar *bar;
    parmap_bar_opts bar_opts = {.label = "stream", .interval = interval};
    parmap_opts opts = {0};
    parmap_stream *stream;
    parmap_stream_item item;
    size_t next = 0;
    int rc, ok = 1;

    rc = parmap_bar_create(&bar, stderr, &bar_opts);
    if (rc != 0) {
        fprintf(stderr, "bar: parmap_bar_create: %s\n", parmap_strerror(rc));
        return 0;
    }
    parmap_bar_attach(bar, &opts);
    rc = parmap_stream_create(&stream, pool, produce, NULL, sizeof(uint64_t),
                              work, NULL, sizeof(uint64_t), &opts);
    if (rc != 0) {
        fprintf(stderr, "bar: parmap_stream_create: %s\n",
                parmap_strerror(rc));
        parmap_bar_destroy(bar);
        return 0;
    }
    /* Results come in input order. */
    while ((rc = parmap_stream_next(stream, &item)) == 1) {
        if (item.index != next++ || item.status != 0 ||
            *(const uint64_t *)item.out != item.index * 3 + 1)
            ok = 0;
    }
    parmap_stream_destroy(stream);
    parmap_bar_destroy(bar); /* the total was unknown: this ends the line */
    if (rc != 0 || next != STREAM_ITEMS) {
        fprintf(stderr, "bar: stream ended with %s after %zu items\n",
                parmap_err_name(rc), next);
        ok = 0;
    }
    return ok;
}

int main(int argc, char **argv)
{
    double interval = 0; /* the bar's default */
    parmap_pool *pool;
    int rc, ok;

    if (argc == 3 && strcmp(argv[1], "--interval") == 0) {
        interval = strtod(argv[2], NULL);
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [--interval SECONDS]\n", argv[0]);
        return 2;
    }
    /* The bar uses Unicode blocks only in a UTF-8 locale the program chose. */
    setlocale(LC_ALL, "");

    rc = parmap_pool_create(&pool, THREADS, NULL);
    if (rc != 0) {
        fprintf(stderr, "bar: parmap_pool_create: %s\n", parmap_strerror(rc));
        return 1;
    }
    printf("parmap %s: %d requests of %d ms, then a stream of unknown "
           "length\n",
           parmap_version(), MAP_ITEMS, MAP_ITEM_MS);
    fflush(stdout); /* keep this line ahead of the bars on stderr */
    ok = run_map(pool, interval) && run_stream(pool, interval);
    parmap_pool_destroy(pool);
    printf("%s\n", ok ? "bar: all results check out"
                      : "bar: FAILED (see messages above)");
    return ok ? 0 : 1;
}
