/*
 * Randomised stress of the whole library as a plain program, for
 * ThreadSanitizer (which cannot run Criterion binaries). Same engine and
 * scenarios as test/test_stress.c (see common.h): thousands of random maps,
 * nested maps, fail-fast and cancelled maps, from four threads at once on
 * one shared pool of 3 and then of 8 threads.
 *
 * Usage: stress [seed]   (or PARMAP_TEST_SEED; PARMAP_TEST_QUICK=1 shrinks)
 * Prints a summary; exits 1 on any wrong result.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CPU_COUNT, sched_getaffinity, nanosleep, dprintf */
#endif
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : pt_seed();
    static const size_t pools[] = {3, 8, 1};
    static const size_t maps[] = {2000, 2000, 400};
    int quick = pt_quick();
    int failures = 0;
    printf("parmap stress: seed %" PRIu64 "%s\n", seed, quick ? " (quick)" : "");
    for (size_t p = 0; p < sizeof pools / sizeof pools[0]; p++) {
        pt_stress_cfg cfg = {
            .pool_threads = pools[p],
            .callers = 4,
            .maps = quick ? maps[p] / 8 : maps[p],
            .max_n = quick ? 1000 : 5000,
            .seed = seed + p,
        };
        pt_stress_result res;
        double t0 = pt_now();
        int rc = pt_stress_run(&cfg, &res);
        size_t done = atomic_load(&res.maps);
        if (done != cfg.maps)
            rc = -1;
        printf("pool %zu: %zu maps, %zu items, %zu nested, %zu failed, "
               "%zu not run, %zu fail-fast stops, %zu cancels, %zu "
               "mismatches, %.2f s\n",
               cfg.pool_threads, done, (size_t)atomic_load(&res.items),
               (size_t)atomic_load(&res.nested),
               (size_t)atomic_load(&res.failed),
               (size_t)atomic_load(&res.not_run),
               (size_t)atomic_load(&res.fail_fast),
               (size_t)atomic_load(&res.cancelled),
               (size_t)atomic_load(&res.mismatches), pt_now() - t0);
        if (rc != 0) {
            printf("FAIL (seed %" PRIu64 ", rerun: stress %" PRIu64 "): %s\n",
                   cfg.seed, seed, res.first[0] ? res.first
                                                : "not every map ran");
            failures++;
        }
    }
    printf("%s\n", failures ? "stress: FAILED" : "stress: all maps correct");
    return failures ? 1 : 0;
}
