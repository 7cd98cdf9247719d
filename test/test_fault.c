/*
 * Failure paths: every fault site (allocation, pthread_create, mutex and
 * condition variable init) is made to fail in turn through the test build's
 * fault injection (lib/fault.h), and a real RLIMIT_NPROC makes thread
 * creation fail. Each failing call must return PARMAP_ENOMEM or
 * PARMAP_EAGAIN, leave its out-pointer alone, join the threads it started
 * and free everything (the ASan and valgrind runs of this suite check the
 * "free" part); a pool must stay usable after a failed map.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CPU_COUNT, sched_getaffinity, nanosleep, dprintf */
#endif
#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "fault.h"

TestSuite(fault, .timeout = 60.);

/* Far more than the library has fault sites per call; reaching it means
 * the armed fault never stops firing. */
#define MAX_SITES 100000L

static parmap_pool *const SENTINEL = (parmap_pool *)(uintptr_t)0x5e771e;

static int f_item(void *ctx, size_t i, const void *in, void *out)
{
    pt_calls *calls = ctx;
    atomic_fetch_add(&calls->count[i], 1);
    *(uint64_t *)out = pt_f(*(const uint64_t *)in);
    return 0;
}

/* A map of n items whose results are checked; returns the number of wrong
 * slots, or -1 if the call failed. */
static long good_map(parmap_pool *pool, size_t n)
{
    uint64_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    pt_calls calls;
    if (!in || !out || pt_calls_init(&calls, n) != 0)
        return -2;
    for (size_t i = 0; i < n; i++)
        in[i] = pt_mix(i);
    int rc = parmap_map(pool, n, in, sizeof *in, out, sizeof *out, f_item,
                        &calls, NULL);
    long bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += out[i] != pt_f(in[i]) || pt_calls_get(&calls, i) != 1;
    pt_calls_free(&calls);
    free(in);
    free(out);
    return rc == 0 ? bad : -1;
}

static void walk_pool_create(size_t nthreads, const parmap_pool_opts *opts)
{
    size_t base = pt_thread_count();
    long k;
    size_t failures = 0;
    for (k = 0; k < MAX_SITES; k++) {
        parmap_pool *pool = SENTINEL;
        parmap__fault_arm(k);
        int rc = parmap_pool_create(&pool, nthreads, opts);
        int fired = parmap__fault_fired();
        parmap__fault_arm(-1);
        if (rc == 0) {
            cr_assert_not(fired, "pool %zu, site %ld failed but create "
                          "returned 0", nthreads, k);
            cr_assert_neq(pool, SENTINEL);
            cr_assert_eq(parmap_pool_size(pool), nthreads);
            cr_assert_eq(good_map(pool, 1223), 0);
            cr_assert_eq(parmap_pool_destroy(pool), 0);
            break;
        }
        failures++;
        cr_assert(fired, "pool %zu: create returned %d with no fault", nthreads,
                  rc);
        cr_assert(rc == PARMAP_ENOMEM || rc == PARMAP_EAGAIN,
                  "pool %zu, site %ld: create returned %d (%s)", nthreads, k,
                  rc, parmap_err_name(rc));
        cr_assert_eq(pool, SENTINEL, "pool %zu, site %ld: the out-pointer "
                     "was written on failure", nthreads, k);
        size_t now = pt_wait_thread_count(base, 2.0);
        cr_assert_eq(now, base, "pool %zu, site %ld: %zu threads left "
                     "behind by a failed create", nthreads, k, now - base);
    }
    cr_assert_lt(k, MAX_SITES);
    /* At least the pool's own allocation and its lock are fault sites. */
    cr_assert_geq(failures, 2, "only %zu fault sites in create(%zu)",
                  failures, nthreads);
    if (nthreads > 1)
        /* ...and every worker's pthread_create. */
        cr_assert_geq(failures, 2 + (nthreads - 1),
                      "only %zu fault sites in create(%zu)", failures,
                      nthreads);
}

Test(fault, pool_create_fails_cleanly_at_every_site_1_thread)
{
    walk_pool_create(1, NULL);
}

Test(fault, pool_create_fails_cleanly_at_every_site_2_threads)
{
    walk_pool_create(2, NULL);
}

Test(fault, pool_create_fails_cleanly_at_every_site_8_threads)
{
    walk_pool_create(8, NULL);
    parmap_pool_opts o = {.stack_size = 1u << 20};
    walk_pool_create(8, &o);
}

Test(fault, thread_creation_failure_is_eagain)
{
    /* Count the sites before the first pthread_create by failing later and
     * later ones: the first EAGAIN must appear, and from then on the only
     * codes are ENOMEM (before threads) or EAGAIN (threads). */
    size_t seen_eagain = 0;
    for (long k = 0; k < 64; k++) {
        parmap_pool *pool = SENTINEL;
        parmap__fault_arm(k);
        int rc = parmap_pool_create(&pool, 8, NULL);
        parmap__fault_arm(-1);
        if (rc == 0) {
            cr_assert_eq(parmap_pool_destroy(pool), 0);
            break;
        }
        seen_eagain += rc == PARMAP_EAGAIN;
    }
    /* A pool of 8 starts 7 workers: 7 sites that fail with EAGAIN. */
    cr_assert_eq(seen_eagain, 7, "%zu thread-creation failures gave EAGAIN",
                 seen_eagain);
}

/* A map callback that, for nested maps, runs an inner map on the same
 * pool and returns its code. */
struct fmap_ctx {
    parmap_pool *pool;
    int nested;
    pt_calls calls;
    atomic_size_t inner_bad;
};

static int f_inner(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx;
    (void)in;
    *(uint64_t *)out = pt_f(i);
    return 0;
}

static int f_fmap(void *ctx, size_t i, const void *in, void *out)
{
    struct fmap_ctx *c = ctx;
    atomic_fetch_add(&c->calls.count[i], 1);
    uint64_t v = pt_f(*(const uint64_t *)in);
    if (c->nested) {
        uint64_t inner[50];
        int rc = parmap_map(c->pool, 50, NULL, 0, inner, sizeof inner[0],
                            f_inner, NULL, NULL);
        if (rc != 0) {
            *(uint64_t *)out = v;
            return rc;
        }
        for (size_t j = 0; j < 50; j++)
            if (inner[j] != pt_f(j))
                atomic_fetch_add(&c->inner_bad, 1);
    }
    *(uint64_t *)out = v;
    return 0;
}

static int is_resource_error(int rc)
{
    return rc == PARMAP_ENOMEM || rc == PARMAP_EAGAIN;
}

static void walk_map(size_t nthreads, int nested, unsigned flags)
{
    parmap_pool *pool = NULL;
    cr_assert_eq(parmap_pool_create(&pool, nthreads, NULL), 0);
    size_t n = 200;
    uint64_t in[200], out[200];
    int status[200];
    for (size_t i = 0; i < n; i++)
        in[i] = pt_mix(i + 1);
    long k;
    for (k = 0; k < MAX_SITES; k++) {
        struct fmap_ctx c = {.pool = pool, .nested = nested};
        atomic_init(&c.inner_bad, 0);
        cr_assert_eq(pt_calls_init(&c.calls, n), 0);
        parmap_summary sum;
        pt_progress prog;
        pt_progress_init(&prog, n);
        parmap_opts o = {.flags = flags, .status = status, .summary = &sum,
                         .progress = pt_progress_fn, .progress_ctx = &prog};
        for (size_t i = 0; i < n; i++)
            status[i] = 0x7eadbeef;
        parmap__fault_arm(k);
        int rc = parmap_map(pool, n, in, sizeof in[0], out, sizeof out[0],
                            f_fmap, &c, &o);
        int fired = parmap__fault_fired();
        parmap__fault_arm(-1);

        for (size_t i = 0; i < n; i++)
            cr_assert_leq(pt_calls_get(&c.calls, i), 1, "site %ld: item %zu",
                          k, i);
        cr_assert_eq(atomic_load(&c.inner_bad), 0);
        if (rc == 0) {
            cr_assert_not(fired, "pool %zu, site %ld failed but the map "
                          "returned 0", nthreads, k);
            cr_assert_eq(pt_calls_first_not(&c.calls, 1), n);
            for (size_t i = 0; i < n; i++) {
                cr_assert_eq(status[i], 0);
                cr_assert_eq(out[i], pt_f(in[i]));
            }
            pt_calls_free(&c.calls);
            break;
        }
        cr_assert(fired, "pool %zu: map returned %d with no fault", nthreads,
                  rc);
        if (is_resource_error(rc)) {
            /* The outer map itself failed. */
        } else if (nested) {
            /* An inner map failed: its item reports the inner code, the
             * outer map reports the failure like any other. */
            cr_assert(rc == PARMAP_EFAILED ||
                          (flags & PARMAP_FAIL_FAST && is_resource_error(rc)),
                      "site %ld: nested map returned %d (%s)", k, rc,
                      parmap_err_name(rc));
            size_t failed = 0;
            for (size_t i = 0; i < n; i++)
                if (status[i] != 0 && status[i] != PARMAP_ENOTRUN) {
                    cr_assert(is_resource_error(status[i]),
                              "site %ld: status[%zu] = %d", k, i, status[i]);
                    failed++;
                }
            cr_assert_eq(failed, 1, "one fault failed %zu items", failed);
            cr_assert_eq(sum.failed, 1);
        } else {
            cr_assert_fail("site %ld: map returned %d (%s)", k, rc,
                           parmap_err_name(rc));
        }
        pt_calls_free(&c.calls);
        /* The pool is still usable. */
        cr_assert_eq(good_map(pool, 1223), 0, "pool %zu unusable after a "
                     "failed map (site %ld)", nthreads, k);
    }
    /* k == 0 is fine: a map may have no fault site at all (its state can
     * live on the caller's stack); then the loop checked that nothing
     * fired and the map succeeded. */
    cr_assert_lt(k, MAX_SITES);
    cr_assert_eq(parmap_pool_destroy(pool), 0);
}

Test(fault, map_fails_cleanly_at_every_site_and_pool_survives)
{
    static const size_t threads[] = {1, 2, 8};
    for (size_t t = 0; t < 3; t++) {
        walk_map(threads[t], 0, PARMAP_COLLECT);
        walk_map(threads[t], 0, PARMAP_FAIL_FAST);
    }
}

Test(fault, nested_map_fails_cleanly_at_every_site_and_pool_survives)
{
    static const size_t threads[] = {1, 2, 8};
    for (size_t t = 0; t < 3; t++) {
        walk_map(threads[t], 1, PARMAP_COLLECT);
        walk_map(threads[t], 1, PARMAP_FAIL_FAST);
    }
}

/* ------------------------------------------------------------------------ */
/* A real thread limit                                                      */
/* ------------------------------------------------------------------------ */

/* The child that runs under RLIMIT_NPROC is this same program, re-executed
 * with NPROC_ENV set: a constructor runs the scenario before Criterion's
 * main and exits. A fresh exec (rather than a bare fork) starts single-
 * threaded and without the runner's sockets and buffers, which valgrind
 * would otherwise report as lost in the child. */
#define NPROC_ENV "PARMAP_TEST_NPROC_CHILD_FD"

enum child_exit {
    CHILD_OK = 0,
    CHILD_SETRLIMIT = 10,
    CHILD_SETUID,
    CHILD_CREATED, /* create(64) succeeded despite the limit */
    CHILD_WRONG_CODE,
    CHILD_OUT_WRITTEN,
    CHILD_THREADS_LEFT,
    CHILD_SMALL_POOL, /* a pool of 1 (no workers) failed afterwards */
    CHILD_SMALL_MAP,
    CHILD_EXEC,
};

static const char *child_exit_name(int code)
{
    switch (code) {
    case CHILD_SETRLIMIT: return "setrlimit(RLIMIT_NPROC) failed";
    case CHILD_SETUID: return "setuid(65534) failed: cannot drop root, so "
                              "RLIMIT_NPROC would be ignored";
    case CHILD_CREATED: return "create(64) succeeded under RLIMIT_NPROC";
    case CHILD_WRONG_CODE: return "create(64) returned a code other than "
                                  "PARMAP_EAGAIN";
    case CHILD_OUT_WRITTEN: return "create wrote its out-pointer on failure";
    case CHILD_THREADS_LEFT: return "threads left running after the failure";
    case CHILD_SMALL_POOL: return "a pool of 1 could not be created after";
    case CHILD_SMALL_MAP: return "a map on a pool of 1 failed after";
    case CHILD_EXEC: return "could not re-execute the test program";
    default: return "unexpected exit code";
    }
}

static int child_main(int report)
{
    alarm(20); /* a hang in the child ends it with SIGALRM */
    struct rlimit rl = {4, 4};
    if (setrlimit(RLIMIT_NPROC, &rl) != 0) {
        dprintf(report, "setrlimit: errno %d", errno);
        return CHILD_SETRLIMIT;
    }
    /* Root ignores RLIMIT_NPROC; an unprivileged user does not. */
    if (setgid(65534) != 0 || setuid(65534) != 0) {
        dprintf(report, "setgid/setuid: errno %d", errno);
        return CHILD_SETUID;
    }
    size_t base = pt_thread_count();
    parmap_pool *pool = SENTINEL;
    int rc = parmap_pool_create(&pool, 64, NULL);
    dprintf(report, "create(64) = %d (%s); ", rc, parmap_err_name(rc));
    if (rc == 0) {
        parmap_pool_destroy(pool);
        return CHILD_CREATED;
    }
    if (rc != PARMAP_EAGAIN)
        return CHILD_WRONG_CODE;
    if (pool != SENTINEL)
        return CHILD_OUT_WRITTEN;
    size_t now = pt_wait_thread_count(base, 2.0);
    dprintf(report, "threads %zu -> %zu; ", base, now);
    if (now != base)
        return CHILD_THREADS_LEFT;
    rc = parmap_pool_create(&pool, 1, NULL);
    if (rc != 0) {
        dprintf(report, "create(1) = %d", rc);
        return CHILD_SMALL_POOL;
    }
    long bad = good_map(pool, 1000);
    parmap_pool_destroy(pool);
    dprintf(report, "map on a pool of 1: %ld bad", bad);
    return bad == 0 ? CHILD_OK : CHILD_SMALL_MAP;
}

__attribute__((constructor)) static void nproc_child_entry(void)
{
    const char *fd = getenv(NPROC_ENV);
    if (fd == NULL)
        return;
    int report = atoi(fd);
    int code = child_main(report);
    close(report);
    _exit(code);
}

extern char **environ;

Test(fault, thread_limit_makes_create_fail_with_eagain)
{
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert_gt(len, 0, "readlink(/proc/self/exe)");
    exe[len] = '\0';
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);

    /* Everything exec needs is built before fork: the child of a
     * multithreaded process may only call async-signal-safe functions. */
    size_t nenv = 0;
    while (environ[nenv] != NULL)
        nenv++;
    char **envp = calloc(nenv + 2, sizeof *envp);
    cr_assert_not_null(envp);
    char var[64];
    snprintf(var, sizeof var, NPROC_ENV "=%d", pfd[1]);
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], NPROC_ENV "=", sizeof NPROC_ENV) != 0)
            envp[k++] = environ[i];
    envp[k++] = var;
    envp[k] = NULL;
    char *argv[] = {exe, NULL};

    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork failed");
    if (pid == 0) {
        close(pfd[0]);
        execve(exe, argv, envp);
        _exit(CHILD_EXEC);
    }
    close(pfd[1]);
    free(envp);

    int wstatus = 0;
    pid_t got = 0;
    double end = pt_now() + 25.0;
    while ((got = waitpid(pid, &wstatus, WNOHANG)) == 0 && pt_now() < end)
        pt_sleep_us(5000);
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &wstatus, 0);
    }
    char msg[512] = "";
    size_t used = 0;
    ssize_t r;
    while (used < sizeof msg - 1 &&
           (r = read(pfd[0], msg + used, sizeof msg - 1 - used)) > 0)
        used += (size_t)r;
    msg[used] = '\0';
    close(pfd[0]);
    cr_assert_neq(got, 0, "the child hung (%s)", msg);
    cr_assert_eq(got, pid);
    cr_assert(WIFEXITED(wstatus), "the child died of signal %d (%s)",
              WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0, msg);
    cr_assert_eq(WEXITSTATUS(wstatus), CHILD_OK, "child: %s (%s)",
                 child_exit_name(WEXITSTATUS(wstatus)), msg);
}
