/*
 * main.c: the program `make installcheck` builds against the INSTALLED
 * parmap, with pkg-config (shared and static) and with CMake's
 * find_package(parmap), then runs. It squares 10,007 numbers with
 * parmap_map() on a pool of 3 threads and checks every result, the summary
 * and that the library it runs with is the version of the header it was
 * compiled with.
 *
 * Usage: installcheck [label]    (the label is printed with the result)
 * Exit status: 0 when every check passes, 1 otherwise.
 */
#include <parmap.h>

#include <stdio.h>
#include <string.h>

enum { N = 10007 };

static int square(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx;
    (void)i;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

int main(int argc, char **argv)
{
    static long in[N], out[N];
    const char *label = argc > 1 ? argv[1] : "installcheck";
    parmap_summary sum;
    parmap_opts opts = {.summary = &sum};
    parmap_pool *pool;
    int rc;

    for (size_t i = 0; i < N; i++)
        in[i] = (long)i - N / 2;

    if (strcmp(parmap_version(), PARMAP_VERSION_STRING) != 0) {
        fprintf(stderr, "%s: header is %s but the library is %s\n", label,
                PARMAP_VERSION_STRING, parmap_version());
        return 1;
    }
    rc = parmap_pool_create(&pool, 3, NULL);
    if (rc != 0) {
        fprintf(stderr, "%s: parmap_pool_create: %s\n", label,
                parmap_strerror(rc));
        return 1;
    }
    rc = parmap_map(pool, N, in, sizeof in[0], out, sizeof out[0], square, NULL,
                    &opts);
    size_t threads = parmap_pool_size(pool);
    int destroy_rc = parmap_pool_destroy(pool);
    if (rc != 0 || destroy_rc != 0) {
        fprintf(stderr, "%s: parmap_map: %s, parmap_pool_destroy: %s\n", label,
                parmap_strerror(rc), parmap_strerror(destroy_rc));
        return 1;
    }
    if (sum.succeeded != N || sum.failed != 0 || sum.not_run != 0) {
        fprintf(stderr, "%s: wrong summary: %zu succeeded, %zu failed\n", label,
                sum.succeeded, sum.failed);
        return 1;
    }
    for (size_t i = 0; i < N; i++) {
        if (out[i] != in[i] * in[i]) {
            fprintf(stderr, "%s: item %zu: got %ld, want %ld\n", label, i,
                    out[i], in[i] * in[i]);
            return 1;
        }
    }
    printf("%s: ok: parmap %s, %d items squared on %zu threads\n", label,
           parmap_version(), N, threads);
    return 0;
}
