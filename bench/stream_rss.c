/*
 * W7: memory of a stream over 10,000,000 generated items.
 *
 * A stream pulls inputs from a generator only as room frees up, so its
 * memory is bounded by (limit + prefetch + reorder) items however long the
 * input. This program runs 10,000,000 items through a stream in input
 * order and as completed, with small bounds, and reports the peak RSS
 * (VmHWM) before and after, next to what holding every item would cost.
 * It exits non-zero if a result is wrong or out of order, or if the peak
 * grew by more than 1 MiB.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <parmap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long vm_hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct gen {
    size_t n;
};

/* The generator: item i is the number i, produced on demand. */
static int produce(void *ctx, size_t index, void *in)
{
    const struct gen *g = ctx;
    if (index >= g->n)
        return 0;
    *(unsigned long long *)in = index;
    return 1;
}

static int square(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx;
    (void)i;
    unsigned long long v = *(const unsigned long long *)in;
    *(unsigned long long *)out = v * v;
    return 0;
}

static int run(parmap_pool *pool, size_t n, unsigned flags, const char *name)
{
    struct gen g = {n};
    parmap_opts o = {0};
    parmap_stream *s;
    parmap_stream_item it;
    size_t count = 0, bad = 0;
    int rc;

    o.flags = flags;
    o.max_concurrency = 2;
    o.prefetch = 64;
    o.reorder = 256;
    long before = vm_hwm_kib();
    double t0 = now();
    if ((rc = parmap_stream_create(&s, pool, produce, &g, sizeof(unsigned long long),
                                   square, NULL, sizeof(unsigned long long), &o)) != 0) {
        fprintf(stderr, "stream: %s\n", parmap_strerror(rc));
        return 1;
    }
    while ((rc = parmap_stream_next(s, &it)) > 0) {
        unsigned long long v = *(const unsigned long long *)it.in;
        if (it.status != 0 || *(const unsigned long long *)it.out != v * v ||
            (!(flags & PARMAP_UNORDERED) && it.index != count))
            bad++;
        count++;
    }
    parmap_stream_destroy(s);
    double dt = now() - t0;
    long after = vm_hwm_kib();
    printf("W7  stream %-12s %zu items  %.2f s (%.0f ns/item)  peak RSS %ld KiB "
           "-> %ld KiB (grew %ld KiB; holding every item: %zu MiB)\n",
           name, count, dt, dt * 1e9 / (double)count, before, after,
           after - before, n * 2 * sizeof(unsigned long long) >> 20);
    if (rc != 0 || count != n || bad != 0) {
        fprintf(stderr, "W7: rc %d, %zu of %zu items, %zu wrong\n", rc, count,
                n, bad);
        return 1;
    }
    return after - before > 1024;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
    parmap_pool *pool;
    int bad = 0;

    if (parmap_pool_create(&pool, 2, NULL) != 0)
        return 1;
    bad |= run(pool, n, 0, "ordered");
    bad |= run(pool, n, PARMAP_UNORDERED, "as-completed");
    parmap_pool_destroy(pool);
    return bad;
}
