/*
 * Tests of lib/pool.c and lib/cpu.c: creating, sizing and destroying pools,
 * and the rules of parmap_pool_destroy() while calls are running.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CPU_COUNT, sched_getaffinity, nanosleep, dprintf */
#endif
#include <criterion/criterion.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

TestSuite(pool, .timeout = 30.);
TestSuite(cpu, .timeout = 30.);

/* A callback that checks its slot and writes pt_f(in). */
static int f_item(void *ctx, size_t i, const void *in, void *out)
{
    pt_calls *calls = ctx;
    atomic_fetch_add(&calls->count[i], 1);
    *(uint64_t *)out = pt_f(*(const uint64_t *)in);
    return 0;
}

/* Runs a map of n items on pool and returns the number of wrong results
 * (wrong output or an index not called exactly once); -1 if the map itself
 * failed. */
static long run_check_map(parmap_pool *pool, size_t n)
{
    uint64_t *in = malloc(n * sizeof *in);
    uint64_t *out = malloc(n * sizeof *out);
    pt_calls calls;
    if (in == NULL || out == NULL || pt_calls_init(&calls, n) != 0)
        return -2;
    for (size_t i = 0; i < n; i++) {
        in[i] = pt_mix(i + 17);
        out[i] = 0;
    }
    int rc = parmap_map(pool, n, in, sizeof *in, out, sizeof *out, f_item,
                        &calls, NULL);
    long bad = 0;
    for (size_t i = 0; i < n; i++)
        if (out[i] != pt_f(in[i]) || pt_calls_get(&calls, i) != 1)
            bad++;
    pt_calls_free(&calls);
    free(in);
    free(out);
    return rc == 0 ? bad : -1;
}

/* Items that wait until `want` callbacks are inside at once, recording
 * which threads ran them. */
struct gather {
    size_t want;
    atomic_size_t inside;
    atomic_size_t timeouts;
    pthread_t *thread; /* per index */
};

static int f_gather(void *ctx, size_t i, const void *in, void *out)
{
    struct gather *g = ctx;
    (void)in;
    (void)out;
    g->thread[i] = pthread_self();
    atomic_fetch_add(&g->inside, 1);
    if (!pt_wait_atleast(&g->inside, g->want, 10.0))
        atomic_fetch_add(&g->timeouts, 1);
    return 0;
}

/* Counts distinct threads in t[0..n). */
static size_t distinct_threads(const pthread_t *t, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < i && !pthread_equal(t[i], t[j]))
            j++;
        d += j == i;
    }
    return d;
}

static void check_pool_of(size_t nthreads)
{
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, nthreads, NULL), 0, "create(%zu)",
                 nthreads);
    cr_assert_not_null(pool);
    cr_assert_eq(parmap_pool_size(pool), nthreads);

    /* nthreads items that each wait for all the others: only possible if
     * the map really runs on nthreads distinct threads, the caller among
     * them. */
    struct gather g = {.want = nthreads};
    atomic_init(&g.inside, 0);
    atomic_init(&g.timeouts, 0);
    g.thread = calloc(nthreads, sizeof *g.thread);
    cr_assert_not_null(g.thread);
    parmap_opts o = {.chunk_size = 1};
    cr_assert_eq(parmap_map(pool, nthreads, NULL, 0, NULL, 0, f_gather, &g, &o),
                 0);
    cr_assert_eq(atomic_load(&g.timeouts), 0,
                 "%zu items never saw %zu callbacks running at once",
                 (size_t)atomic_load(&g.timeouts), nthreads);
    cr_assert_eq(distinct_threads(g.thread, nthreads), nthreads);
    size_t on_caller = 0;
    for (size_t i = 0; i < nthreads; i++)
        on_caller += pthread_equal(g.thread[i], pthread_self()) != 0;
    cr_assert_eq(on_caller, 1, "the caller ran %zu of the items", on_caller);
    free(g.thread);

    cr_assert_eq(run_check_map(pool, 1223), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(pool, create_runs_maps_on_exactly_1_thread) { check_pool_of(1); }
Test(pool, create_runs_maps_on_exactly_2_threads) { check_pool_of(2); }
Test(pool, create_runs_maps_on_exactly_3_threads) { check_pool_of(3); }
Test(pool, create_runs_maps_on_exactly_8_threads) { check_pool_of(8); }
Test(pool, create_runs_maps_on_exactly_64_threads) { check_pool_of(64); }

Test(pool, zero_threads_means_cpu_count_without_env)
{
    unsetenv("PARMAP_NUM_THREADS");
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, 0, NULL), 0);
    cr_assert_eq(parmap_pool_size(pool), parmap_cpu_count());
    cr_assert_eq(run_check_map(pool, 1223), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(pool, zero_threads_uses_positive_env_override)
{
    static const char *vals[] = {"3", "1", "5"};
    static const size_t want[] = {3, 1, 5};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(setenv("PARMAP_NUM_THREADS", vals[i], 1), 0);
        parmap_pool *pool = NULL;
        cr_assert_eq(parmap_pool_create(&pool, 0, NULL), 0);
        cr_assert_eq(parmap_pool_size(pool), want[i], "PARMAP_NUM_THREADS=%s",
                     vals[i]);
        cr_assert_eq(run_check_map(pool, 100), 0);
        cr_assert_eq(parmap_pool_destroy(pool), 0);
    }
}

Test(pool, zero_threads_ignores_invalid_env_override)
{
    static const char *vals[] = {"0", "-2", "abc", "", " ", "-0"};
    size_t cpus = parmap_cpu_count();
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        cr_assert_eq(setenv("PARMAP_NUM_THREADS", vals[i], 1), 0);
        parmap_pool *pool = NULL;
        cr_assert_eq(parmap_pool_create(&pool, 0, NULL), 0,
                     "PARMAP_NUM_THREADS='%s'", vals[i]);
        cr_assert_eq(parmap_pool_size(pool), cpus, "PARMAP_NUM_THREADS='%s'",
                     vals[i]);
        cr_assert_eq(parmap_pool_destroy(pool), 0);
    }
}

Test(pool, explicit_thread_count_ignores_env_override)
{
    cr_assert_eq(setenv("PARMAP_NUM_THREADS", "5", 1), 0);
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, 2, NULL), 0);
    cr_assert_eq(parmap_pool_size(pool), 2);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(pool, size_of_null_pool_is_zero)
{
    cr_assert_eq(parmap_pool_size(NULL), 0);
}

Test(pool, destroy_null_returns_zero)
{
    cr_assert_eq(parmap_pool_destroy(NULL), 0);
}

Test(pool, create_with_null_out_pointer_is_einval)
{
    cr_assert_eq(parmap_pool_create(NULL, 2, NULL), PARMAP_EINVAL);
    cr_assert_eq(parmap_pool_create(NULL, 0, NULL), PARMAP_EINVAL);
}

Test(pool, create_with_unusable_stack_size_is_einval_and_leaves_out_alone)
{
    parmap_pool *sentinel = (parmap_pool *)(uintptr_t)0x1234;
    parmap_pool *pool = sentinel;
    parmap_pool_opts o = {.stack_size = 1};
    cr_assert_eq(parmap_pool_create(&pool, 2, &o), PARMAP_EINVAL);
    cr_assert_eq(pool, sentinel);
}

Test(pool, create_with_explicit_stack_size_works)
{
    parmap_pool *pool = NULL;
    parmap_pool_opts o = {.stack_size = 1u << 20};
    cr_assert_eq(parmap_pool_create(&pool, 3, &o), 0);
    cr_assert_eq(parmap_pool_size(pool), 3);
    cr_assert_eq(run_check_map(pool, 5000), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(pool, zeroed_options_equal_null_options)
{
    parmap_pool *pool = NULL;
    parmap_pool_opts o = {0};
    cr_assert_eq(parmap_pool_create(&pool, 4, &o), 0);
    cr_assert_eq(parmap_pool_size(pool), 4);
    cr_assert_eq(run_check_map(pool, 1223), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(cpu, count_is_within_affinity_mask)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    size_t n = parmap_cpu_count();
    cr_assert_geq(n, 1);
    cr_assert_leq(n, (size_t)CPU_COUNT(&set));
}

Test(cpu, count_follows_a_narrowed_affinity_mask)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    int first = -1;
    for (int c = 0; c < CPU_SETSIZE && first < 0; c++)
        if (CPU_ISSET(c, &set))
            first = c;
    cr_assert_geq(first, 0);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0);
    cr_assert_eq(parmap_cpu_count(), 1);
    cr_assert_eq(sched_setaffinity(0, sizeof set, &set), 0);
}

/* ------------------------------------------------------------------------ */
/* Destroy while calls are running                                          */
/* ------------------------------------------------------------------------ */

struct blocker {
    atomic_size_t started;
    atomic_int release;
    atomic_size_t timeouts;
};

static int f_block(void *ctx, size_t i, const void *in, void *out)
{
    struct blocker *b = ctx;
    (void)in;
    atomic_fetch_add(&b->started, 1);
    if (!pt_wait_flag(&b->release, 10.0))
        atomic_fetch_add(&b->timeouts, 1);
    *(uint64_t *)out = pt_f(i);
    return 0;
}

struct map_thread {
    parmap_pool *pool;
    struct blocker *b;
    size_t n;
    uint64_t *out;
    int rc;
};

static void *run_blocking_map(void *arg)
{
    struct map_thread *t = arg;
    t->rc = parmap_map(t->pool, t->n, NULL, 0, t->out, sizeof *t->out,
                       f_block, t->b, NULL);
    return NULL;
}

static void check_destroy_busy_from_other_thread(size_t nthreads)
{
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, nthreads, NULL), 0);
    struct blocker b;
    atomic_init(&b.started, 0);
    atomic_init(&b.release, 0);
    atomic_init(&b.timeouts, 0);
    uint64_t out[6] = {0};
    struct map_thread t = {pool, &b, 6, out, 1};
    pthread_t tid;
    cr_assert_eq(pthread_create(&tid, NULL, run_blocking_map, &t), 0);
    int started = pt_wait_atleast(&b.started, 1, 10.0);
    int rc = parmap_pool_destroy(pool);
    atomic_store(&b.release, 1);
    pthread_join(tid, NULL);
    cr_assert(started, "the map never started a callback");
    cr_assert_eq(rc, PARMAP_EBUSY, "destroy during a map returned %d", rc);
    cr_assert_eq(t.rc, 0);
    cr_assert_eq(atomic_load(&b.timeouts), 0);
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(out[i], pt_f(i));
    /* The pool is intact: it still runs maps and can then be destroyed. */
    cr_assert_eq(parmap_pool_size(pool), nthreads);
    cr_assert_eq(run_check_map(pool, 1223), 0);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(pool, destroy_during_map_on_other_thread_is_ebusy_and_pool_survives)
{
    check_destroy_busy_from_other_thread(1);
    check_destroy_busy_from_other_thread(2);
    check_destroy_busy_from_other_thread(4);
}

/* Calls parmap_pool_destroy() from inside callbacks and records the result
 * by the kind of thread it ran on. */
struct inside {
    parmap_pool *pool;
    pthread_t caller;
    atomic_int worker_tried;
    atomic_int caller_tried;
    atomic_int worker_rc;
    atomic_int caller_rc;
    atomic_size_t timeouts;
};

static int f_destroy_inside(void *ctx, size_t i, const void *in, void *out)
{
    struct inside *s = ctx;
    (void)i;
    (void)in;
    (void)out;
    if (pthread_equal(pthread_self(), s->caller)) {
        if (atomic_exchange(&s->caller_tried, 1) == 0) {
            atomic_store(&s->caller_rc, parmap_pool_destroy(s->pool));
            /* Hold the caller here so that a worker gets items too. */
            if (parmap_pool_size(s->pool) > 1 &&
                !pt_wait_flag(&s->worker_tried, 10.0))
                atomic_fetch_add(&s->timeouts, 1);
        }
    } else if (atomic_load(&s->worker_tried) == 0) {
        int rc = parmap_pool_destroy(s->pool);
        atomic_store(&s->worker_rc, rc);
        atomic_store(&s->worker_tried, 1);
    }
    pt_sleep_us(100);
    return 0;
}

static void check_destroy_inside(size_t nthreads)
{
    struct inside s;
    cr_assert_eq(parmap_pool_create(&s.pool, nthreads, NULL), 0);
    s.caller = pthread_self();
    atomic_init(&s.worker_tried, 0);
    atomic_init(&s.caller_tried, 0);
    atomic_init(&s.worker_rc, 1);
    atomic_init(&s.caller_rc, 1);
    atomic_init(&s.timeouts, 0);
    parmap_opts o = {.chunk_size = 1};
    int *status = calloc(64, sizeof *status);
    o.status = status;
    cr_assert_eq(parmap_map(s.pool, 64, NULL, 0, NULL, 0, f_destroy_inside, &s,
                            &o),
                 0);
    cr_assert_eq(atomic_load(&s.caller_tried), 1, "no item ran on the caller");
    cr_assert_eq(atomic_load(&s.caller_rc), PARMAP_EBUSY,
                 "destroy from a callback on the caller returned %d",
                 atomic_load(&s.caller_rc));
    if (nthreads > 1) {
        cr_assert_eq(atomic_load(&s.timeouts), 0);
        cr_assert_eq(atomic_load(&s.worker_tried), 1,
                     "no item ran on a worker");
        cr_assert_eq(atomic_load(&s.worker_rc), PARMAP_EDEADLK,
                     "destroy from a worker returned %d",
                     atomic_load(&s.worker_rc));
    }
    for (size_t i = 0; i < 64; i++)
        cr_assert_eq(status[i], 0);
    free(status);
    cr_assert_eq(run_check_map(s.pool, 1223), 0);
    cr_assert_eq(parmap_pool_destroy(s.pool), 0);
}

Test(pool, destroy_from_callback_on_caller_is_ebusy_pool_of_1)
{
    check_destroy_inside(1);
}

Test(pool, destroy_from_callback_on_worker_is_edeadlk)
{
    check_destroy_inside(2);
    check_destroy_inside(8);
}

/* ------------------------------------------------------------------------ */
/* Independence                                                             */
/* ------------------------------------------------------------------------ */

struct pool_user {
    parmap_pool *pool;
    long bad;
};

static void *use_pool(void *arg)
{
    struct pool_user *u = arg;
    u->bad = 0;
    for (int r = 0; r < 20; r++) {
        long b = run_check_map(u->pool, 777 + (size_t)r * 13);
        u->bad += b != 0;
    }
    return NULL;
}

Test(pool, many_pools_run_maps_at_once_independently)
{
    enum { NPOOLS = 8 };
    struct pool_user u[NPOOLS];
    pthread_t tid[NPOOLS];
    for (size_t i = 0; i < NPOOLS; i++) {
        cr_assert_eq(parmap_pool_create(&u[i].pool, 1 + i % 4, NULL), 0);
        cr_assert_eq(parmap_pool_size(u[i].pool), 1 + i % 4);
    }
    for (size_t i = 0; i < NPOOLS; i++)
        cr_assert_eq(pthread_create(&tid[i], NULL, use_pool, &u[i]), 0);
    for (size_t i = 0; i < NPOOLS; i++)
        pthread_join(tid[i], NULL);
    for (size_t i = 0; i < NPOOLS; i++) {
        cr_assert_eq(u[i].bad, 0, "pool %zu had %ld bad maps", i, u[i].bad);
        cr_assert_eq(parmap_pool_destroy(u[i].pool), 0);
    }
}

Test(pool, destroying_an_idle_pool_ignores_a_busy_one)
{
    parmap_pool *busy = NULL, *idle = NULL;
    cr_assert_eq(parmap_pool_create(&busy, 2, NULL), 0);
    cr_assert_eq(parmap_pool_create(&idle, 2, NULL), 0);
    struct blocker b;
    atomic_init(&b.started, 0);
    atomic_init(&b.release, 0);
    atomic_init(&b.timeouts, 0);
    uint64_t out[4] = {0};
    struct map_thread t = {busy, &b, 4, out, 1};
    pthread_t tid;
    cr_assert_eq(pthread_create(&tid, NULL, run_blocking_map, &t), 0);
    int started = pt_wait_atleast(&b.started, 1, 10.0);
    long idle_bad = run_check_map(idle, 1223);
    int rc = parmap_pool_destroy(idle);
    atomic_store(&b.release, 1);
    pthread_join(tid, NULL);
    cr_assert(started);
    cr_assert_eq(idle_bad, 0);
    cr_assert_eq(rc, 0, "destroying an idle pool returned %d while another "
                        "pool was busy", rc);
    cr_assert_eq(t.rc, 0);
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(out[i], pt_f(i));
    cr_assert_eq(parmap_pool_destroy(busy), 0);
}

Test(pool, starts_n_minus_1_workers_and_destroy_joins_them)
{
    static const size_t sizes[] = {1, 2, 8, 64};
    size_t base = pt_thread_count();
    cr_assert_geq(base, 1, "cannot read /proc/self/status");
    for (size_t s = 0; s < 4; s++) {
        parmap_pool *pool = NULL;
        cr_assert_eq(parmap_pool_create(&pool, sizes[s], NULL), 0);
        size_t during = pt_wait_thread_count(base + sizes[s] - 1, 2.0);
        cr_assert_eq(during, base + sizes[s] - 1,
                     "a pool of %zu runs %zu extra threads", sizes[s],
                     during - base);
        cr_assert_eq(run_check_map(pool, 1223), 0);
        cr_assert_eq(parmap_pool_destroy(pool), 0);
        size_t after = pt_wait_thread_count(base, 2.0);
        cr_assert_eq(after, base, "%zu threads left after destroying a pool "
                     "of %zu", after - base, sizes[s]);
    }
}

Test(pool, create_destroy_repeatedly_without_maps)
{
    for (int r = 0; r < 200; r++) {
        parmap_pool *pool = NULL;
        size_t n = 1 + (size_t)r % 5;
        cr_assert_eq(parmap_pool_create(&pool, n, NULL), 0);
        cr_assert_eq(parmap_pool_size(pool), n);
        cr_assert_eq(parmap_pool_destroy(pool), 0);
    }
}

/* A worker of one pool may destroy another pool: only a pool's own
 * workers get PARMAP_EDEADLK. */
struct cross {
    parmap_pool *victim;
    pthread_t caller;
    atomic_int tried;
    atomic_int rc;
};

static int f_destroy_other(void *ctx, size_t i, const void *in, void *out)
{
    struct cross *c = ctx;
    (void)i;
    (void)in;
    (void)out;
    if (!pthread_equal(pthread_self(), c->caller) &&
        atomic_exchange(&c->tried, 1) == 0)
        atomic_store(&c->rc, parmap_pool_destroy(c->victim));
    pt_sleep_us(200);
    return 0;
}

Test(pool, worker_of_one_pool_can_destroy_another_pool)
{
    parmap_pool *runner = NULL;
    struct cross c;
    cr_assert_eq(parmap_pool_create(&runner, 2, NULL), 0);
    cr_assert_eq(parmap_pool_create(&c.victim, 3, NULL), 0);
    c.caller = pthread_self();
    atomic_init(&c.tried, 0);
    atomic_init(&c.rc, 1);
    parmap_opts o = {.chunk_size = 1};
    cr_assert_eq(parmap_map(runner, 200, NULL, 0, NULL, 0, f_destroy_other, &c,
                            &o),
                 0);
    cr_assert_eq(atomic_load(&c.tried), 1, "no item ran on the worker");
    cr_assert_eq(atomic_load(&c.rc), 0,
                 "destroying an idle pool from another pool's worker "
                 "returned %d", atomic_load(&c.rc));
    cr_assert_eq(run_check_map(runner, 1223), 0);
    cr_assert_eq(parmap_pool_destroy(runner), 0);
}

/* fork(): the child inherits the pool's memory but not its threads. */
static int forked_child(parmap_pool *pool, size_t nthreads)
{
    pt_calls calls;
    if (pt_calls_init(&calls, 100) != 0)
        return 10;
    uint64_t in[100] = {0}, out[100] = {0};
    parmap_summary sum;
    parmap_opts o = {.summary = &sum};
    int rc = parmap_map(pool, 100, in, sizeof in[0], out, sizeof out[0], f_item,
                        &calls, &o);
    if (rc != PARMAP_EFORKED)
        return 11;
    if (pt_calls_total(&calls) != 0)
        return 12;
    if (parmap_pool_size(pool) != nthreads)
        return 13;
    if (parmap_pool_destroy(pool) != 0)
        return 14;
    pt_calls_free(&calls);
    parmap_pool *fresh = NULL;
    if (parmap_pool_create(&fresh, 2, NULL) != 0)
        return 15;
    long bad = run_check_map(fresh, 1223);
    if (parmap_pool_destroy(fresh) != 0)
        return 16;
    return bad == 0 ? 0 : 17;
}

Test(pool, inherited_pool_in_forked_child_returns_eforked)
{
    static const size_t sizes[] = {1, 4};
    for (size_t s = 0; s < 2; s++) {
        parmap_pool *pool = NULL;
        cr_assert_eq(parmap_pool_create(&pool, sizes[s], NULL), 0);
        cr_assert_eq(run_check_map(pool, 1223), 0);
        fflush(NULL);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            alarm(20);
            _exit(forked_child(pool, sizes[s]));
        }
        int wstatus = 0;
        pid_t got = 0;
        double end = pt_now() + 25.0;
        while ((got = waitpid(pid, &wstatus, WNOHANG)) == 0 && pt_now() < end)
            pt_sleep_us(5000);
        if (got == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &wstatus, 0);
        }
        cr_assert_neq(got, 0, "the child hung");
        cr_assert(WIFEXITED(wstatus), "the child died of signal %d",
                  WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0);
        /* 11: map did not return EFORKED; 12: a callback ran; 13: size;
         * 14: destroy failed; 15-17: a fresh pool did not work. */
        cr_assert_eq(WEXITSTATUS(wstatus), 0, "pool %zu: child exit %d",
                     sizes[s], WEXITSTATUS(wstatus));
        /* The parent's pool is unaffected. */
        cr_assert_eq(run_check_map(pool, 1223), 0);
        cr_assert_eq(parmap_pool_destroy(pool), 0);
    }
}
