/*
 * Randomised stress of the whole library (Criterion form): thousands of
 * maps of random sizes, failure rates, concurrency limits, chunk sizes and
 * modes, some nested and some cancelled through progress, from four
 * threads at once on one shared pool. The engine lives in common.h and is
 * shared with test/stress.c, the plain program that runs the same
 * scenarios under ThreadSanitizer.
 *
 * PARMAP_TEST_SEED fixes the seed; PARMAP_TEST_QUICK=1 shrinks the run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CPU_COUNT, sched_getaffinity, nanosleep, dprintf */
#endif
#include <criterion/criterion.h>
#include <inttypes.h>

#include "common.h"

TestSuite(stress, .timeout = 60.);

static void check_stress(size_t pool_threads, size_t maps)
{
    pt_stress_cfg cfg = {
        .pool_threads = pool_threads,
        .callers = 4,
        .maps = pt_quick() ? maps / 8 : maps,
        .max_n = pt_quick() ? 1000 : 5000,
        .seed = pt_seed(),
    };
    pt_stress_result res;
    int rc = pt_stress_run(&cfg, &res);
    cr_log_info("pool %zu, seed %" PRIu64 ": %zu maps, %zu items, %zu nested, "
                "%zu failed, %zu not run, %zu fail-fast stops, %zu cancels",
                pool_threads, cfg.seed, (size_t)atomic_load(&res.maps),
                (size_t)atomic_load(&res.items),
                (size_t)atomic_load(&res.nested),
                (size_t)atomic_load(&res.failed),
                (size_t)atomic_load(&res.not_run),
                (size_t)atomic_load(&res.fail_fast),
                (size_t)atomic_load(&res.cancelled));
    cr_assert_eq(rc, 0, "seed %" PRIu64 " (rerun with PARMAP_TEST_SEED=%" PRIu64
                 "): %zu mismatches; first: %s", cfg.seed, cfg.seed,
                 (size_t)atomic_load(&res.mismatches), res.first);
    cr_assert_eq(atomic_load(&res.maps), cfg.maps, "seed %" PRIu64, cfg.seed);
    /* The scenario exercised what it is meant to. */
    cr_assert_gt(atomic_load(&res.nested), 0, "seed %" PRIu64, cfg.seed);
    cr_assert_gt(atomic_load(&res.failed), 0, "seed %" PRIu64, cfg.seed);
    cr_assert_gt(atomic_load(&res.not_run), 0, "seed %" PRIu64, cfg.seed);
}

Test(stress, random_maps_from_four_threads_on_pool_of_3)
{
    check_stress(3, 2000);
}

Test(stress, random_maps_from_four_threads_on_pool_of_8)
{
    check_stress(8, 2000);
}

Test(stress, random_maps_from_four_threads_on_pool_of_1)
{
    check_stress(1, 500);
}
