/*
 * gather_wait.c: asyncio's gather, as_completed, wait and TaskGroup in C.
 *
 * Every task "sleeps" 1 to 4 seconds and fails when a seeded random value
 * exceeds 0.5, as in the asyncio examples this program follows. Time is
 * scaled down 100 times, so a task sleeps 10 to 40 ms and the whole
 * program runs in well under a second.
 *
 *   1. gather(return_exceptions=True): parmap_map() runs every task and
 *      keeps each outcome in opts.status, in input order.
 *   2. gather(return_exceptions=False): PARMAP_FAIL_FAST; the first
 *      failure is the map's result and tasks not yet started never start.
 *   3. as_completed(timeout=...): a task group and PARMAP_WAIT_ANY with
 *      the time left of an overall deadline; results come in the order
 *      tasks finish, then the deadline passes (PARMAP_ETIMEDOUT).
 *   4. wait(FIRST_COMPLETED / FIRST_EXCEPTION / ALL_COMPLETED), printing
 *      what is done and what is pending each time, and replacing a failed
 *      task with a new one between two waits.
 *   5. TaskGroup: the halt rule {PARMAP_HALT_NOW, PARMAP_HALT_ON_FAIL, 1}
 *      makes the first failure cancel the siblings: running ones see
 *      parmap_should_stop(), queued ones never start (PARMAP_ENOTRUN).
 *
 * Usage: gather_wait [seed]   (default 10). Against an installed parmap:
 *     cc -std=c11 -O2 gather_wait.c $(pkg-config --cflags --libs parmap)
 *
 * Exit status: 0 when every outcome matches what the seed predicts (the
 * failures are expected), 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <parmap.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One second of the original examples, in nanoseconds here. */
#define SECOND_NS 10000000L
#define NTASKS 10

/* The code of a task whose random value exceeded 0.5 (asyncio's examples
 * raise an exception there). */
#define E_UNLUCKY (-ERANGE)

static uint64_t seed = 10;
static int ok = 1;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* splitmix64's finaliser: the seeded "random" values of the tasks. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* What task `n` of section `s` does: how long it sleeps (1 to 4 "s") and
 * whether it fails. Each section draws its own values from the seed. */
static unsigned task_seconds(unsigned s, unsigned n)
{
    return 1 + (unsigned)(mix64(seed * 1000 + s * 100 + n) % 4);
}

static int task_fails(unsigned s, unsigned n)
{
    double r = (double)(mix64(~(seed * 1000 + s * 100 + n)) >> 11) * 0x1p-53;
    return r > 0.5;
}

static void expect(int cond, const char *what)
{
    if (!cond) {
        printf("  UNEXPECTED: %s\n", what);
        ok = 0;
    }
}

static const char *describe(int code)
{
    if (code == E_UNLUCKY)
        return "failed (random value > 0.5)";
    if (code == 0)
        return "ok";
    return parmap_strerror(code);
}

/* Sleeps `seconds` scaled seconds in 1 ms slices, returning early with
 * parmap_should_stop()'s code when the call asks its tasks to stop (the C
 * counterpart of an await point where a CancelledError can arrive). */
static int nap(unsigned seconds)
{
    long left = seconds * SECOND_NS;
    while (left > 0) {
        int stop = parmap_should_stop();
        if (stop != 0)
            return stop;
        long slice = left < 1000000L ? left : 1000000L;
        struct timespec ts = {0, slice};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        left -= slice;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* 1 and 2: gather, as parmap_map                                           */
/* ------------------------------------------------------------------------ */

/* The map form of a task: input is its number, output its result. */
static int map_task(void *ctx, size_t index, const void *in, void *out)
{
    unsigned section = *(const unsigned *)ctx;
    unsigned n = *(const unsigned *)in;
    (void)index;
    int rc = nap(task_seconds(section, n));
    if (rc != 0)
        return rc;
    if (task_fails(section, n))
        return E_UNLUCKY;
    *(unsigned *)out = n * n; /* the "result" */
    return 0;
}

static void gather(parmap_pool *pool, int return_exceptions)
{
    unsigned section = return_exceptions ? 1 : 2;
    unsigned in[NTASKS], out[NTASKS] = {0};
    int status[NTASKS];
    parmap_summary sum;
    parmap_opts o = {
        .status = status,
        .summary = &sum,
        .chunk_size = 1,
        /* Three at a time, so that a fail-fast stop leaves tasks unstarted. */
        .max_concurrency = 3,
        .flags = return_exceptions ? PARMAP_COLLECT : PARMAP_FAIL_FAST,
    };
    size_t want_failed = 0;

    for (unsigned i = 0; i < NTASKS; i++) {
        in[i] = i;
        want_failed += task_fails(section, i);
    }
    printf("\n%u. gather(return_exceptions=%s): parmap_map, %d tasks, 3 at "
           "a time%s\n",
           section, return_exceptions ? "True" : "False", NTASKS,
           return_exceptions ? "" : ", PARMAP_FAIL_FAST");
    double t0 = now();
    int rc = parmap_map(pool, NTASKS, in, sizeof in[0], out, sizeof out[0],
                        map_task, &section, &o);
    double dt = now() - t0;
    printf("   parmap_map returned %s after %.0f ms\n", parmap_err_name(rc),
           dt * 1e3);
    for (unsigned i = 0; i < NTASKS; i++) {
        printf("   task %u (%u s): ", i, task_seconds(section, i));
        if (status[i] == 0)
            printf("result %u\n", out[i]);
        else
            printf("%s\n", describe(status[i]));
        if (status[i] == 0)
            expect(!task_fails(section, i) && out[i] == i * i,
                   "a task succeeded that should have failed");
        else if (status[i] == E_UNLUCKY)
            expect(task_fails(section, i), "a task failed that should not");
        else
            expect(!return_exceptions && status[i] == PARMAP_ENOTRUN,
                   "an odd status");
    }
    if (return_exceptions) {
        /* Every task ran; the failures sit in the list. */
        expect(rc == (want_failed ? PARMAP_EFAILED : 0), "map's result");
        expect(sum.failed == want_failed && sum.not_run == 0, "summary");
        printf("   %zu ok, %zu failed: failures are values in the list\n",
               sum.succeeded, sum.failed);
    } else if (want_failed != 0) {
        /* The first failure reached the caller; nothing new started. */
        expect(rc == E_UNLUCKY, "the first failure is the map's result");
        printf("   the first failure is the result (%s); %zu ok, %zu failed, "
               "%zu never started\n",
               describe(rc), sum.succeeded, sum.failed, sum.not_run);
    } else {
        expect(rc == 0, "no failure, so the map succeeds");
    }
}

/* ------------------------------------------------------------------------ */
/* 3, 4 and 5: task groups                                                  */
/* ------------------------------------------------------------------------ */

struct task {
    unsigned section, n;
    unsigned result;
};

static int group_task(void *ctx)
{
    struct task *t = ctx;
    int rc = nap(task_seconds(t->section, t->n));
    if (rc != 0)
        return rc;
    if (task_fails(t->section, t->n))
        return E_UNLUCKY;
    t->result = t->n * t->n;
    return 0;
}

static size_t pending_of(parmap_group *g)
{
    size_t pending = 0;
    parmap_group_counts(g, NULL, &pending);
    return pending;
}

static void as_completed(parmap_pool *pool)
{
    struct task tasks[NTASKS];
    parmap_group *g = NULL;
    /* Two and a half "seconds": the 1 and 2 s tasks make it, not the 3 and
     * 4 s ones. */
    const double timeout = 2.5 * SECOND_NS / 1e9;

    printf("\n3. as_completed(timeout=2.5 s): a group and PARMAP_WAIT_ANY\n");
    if (parmap_group_create(&g, pool, NULL) != 0) {
        expect(0, "parmap_group_create");
        return;
    }
    for (unsigned i = 0; i < NTASKS; i++) {
        tasks[i] = (struct task){3, i, 0};
        parmap_group_submit(g, group_task, &tasks[i], NULL);
    }
    double t0 = now(), deadline = t0 + timeout;
    size_t reported = 0, pending_at_timeout = 0;
    unsigned char seen[NTASKS] = {0};
    for (;;) {
        double left = deadline - now();
        size_t id;
        int status;
        int rc = parmap_group_wait(g, PARMAP_WAIT_ANY, left > 0 ? left : 0,
                                   &id, &status);
        if (rc == PARMAP_ETIMEDOUT) {
            pending_at_timeout = pending_of(g);
            printf("   after %.0f ms: TimeoutError, %zu still pending\n",
                   (now() - t0) * 1e3, pending_at_timeout);
            expect(now() - t0 < timeout + 0.1, "the timeout was prompt");
            break;
        }
        if (rc != 0) /* PARMAP_ENOENT: every task reported */
            break;
        printf("   %5.0f ms  task %zu (%u s): %s\n", (now() - t0) * 1e3, id,
               task_seconds(3, tasks[id].n), describe(status));
        expect(id < NTASKS && !seen[id], "each task is reported once");
        if (id < NTASKS)
            seen[id] = 1;
        reported++;
    }
    /* Typically the 1 and 2 s tasks make it and the 3 and 4 s ones do
     * not; a loaded machine may shift that, so only the totals are
     * checked. */
    expect(reported + pending_at_timeout == NTASKS,
           "every task was reported or is still pending");
    /* asyncio leaves the others running; destroy waits for them. */
    parmap_group_destroy(g);
}

static void wait_modes(parmap_pool *pool)
{
    enum { N = 6 };
    struct task tasks[N + 4];
    parmap_group *g = NULL;
    unsigned next = N;
    size_t id;
    int status, rc;

    printf("\n4. wait(): FIRST_COMPLETED, FIRST_EXCEPTION, then "
           "ALL_COMPLETED, replacing failed tasks\n");
    if (parmap_group_create(&g, pool, NULL) != 0) {
        expect(0, "parmap_group_create");
        return;
    }
    for (unsigned i = 0; i < N; i++) {
        tasks[i] = (struct task){4, i, 0};
        parmap_group_submit(g, group_task, &tasks[i], NULL);
    }

    rc = parmap_group_wait(g, PARMAP_WAIT_ANY, -1.0, &id, &status);
    printf("   FIRST_COMPLETED: task %zu (%u s) %s; %zu pending\n", id,
           task_seconds(4, tasks[id].n), describe(status), pending_of(g));
    expect(rc == 0, "FIRST_COMPLETED");

    /* Each failure is reported once, so calling again waits for the next
     * one: this loop sees them all, and replaces each with a new task. */
    while ((rc = parmap_group_wait(g, PARMAP_WAIT_FIRST_ERROR, -1.0, &id,
                                   &status)) != 0) {
        expect(rc == E_UNLUCKY && task_fails(4, tasks[id].n),
               "FIRST_EXCEPTION returned a failure");
        printf("   FIRST_EXCEPTION: task %zu (%u s) %s; %zu pending\n", id,
               task_seconds(4, tasks[id].n), describe(rc), pending_of(g));
        if (next < N + 4) {
            /* A fresh task with new random values, under a new id. */
            size_t new_id;
            tasks[next] = (struct task){4, next, 0};
            parmap_group_submit(g, group_task, &tasks[next], &new_id);
            printf("   replaced task %zu with task %zu (%u s, will %s)\n", id,
                   new_id, task_seconds(4, next),
                   task_fails(4, next) ? "fail" : "succeed");
            next++;
        }
    }
    printf("   FIRST_EXCEPTION: no failure left to report; %zu pending\n",
           pending_of(g));

    rc = parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL);
    size_t done = 0;
    parmap_group_counts(g, &done, NULL);
    printf("   ALL_COMPLETED: %zu done, %zu pending\n", done, pending_of(g));
    expect(rc == 0 && done == next && pending_of(g) == 0, "ALL_COMPLETED");
    for (size_t i = 0; i < next; i++) {
        parmap_group_task(g, i, &status, NULL);
        expect((status != 0) == task_fails(4, tasks[i].n),
               "a task's outcome");
        expect(status != 0 || tasks[i].result == tasks[i].n * tasks[i].n,
               "a task's result");
    }
    parmap_group_destroy(g);
}

static void task_group(parmap_pool *pool)
{
    struct task tasks[NTASKS];
    parmap_group *g = NULL;
    /* A TaskGroup: the first failure cancels the siblings. Three run at a
     * time so that some are still queued when it happens. */
    parmap_opts o = {
        .halt = {PARMAP_HALT_NOW, PARMAP_HALT_ON_FAIL, 1, 0.0},
        .max_concurrency = 3,
    };

    printf("\n5. TaskGroup: the first failure cancels the siblings\n");
    if (parmap_group_create(&g, pool, &o) != 0) {
        expect(0, "parmap_group_create");
        return;
    }
    int any_fails = 0;
    for (unsigned i = 0; i < NTASKS; i++) {
        tasks[i] = (struct task){5, i, 0};
        parmap_group_submit(g, group_task, &tasks[i], NULL);
        any_fails |= task_fails(5, i);
    }
    size_t id = 0;
    int status = 0;
    int rc = parmap_group_wait(g, PARMAP_WAIT_FIRST_ERROR, -1.0, &id,
                               &status);
    if (rc != 0)
        printf("   task %zu failed first: %s\n", id, describe(rc));
    parmap_group_wait(g, PARMAP_WAIT_ALL, -1.0, NULL, NULL);

    size_t ok_n = 0, failed = 0, cancelled = 0, not_run = 0;
    for (unsigned i = 0; i < NTASKS; i++) {
        parmap_group_task(g, i, &status, NULL);
        printf("   task %u (%u s): %s\n", i, task_seconds(5, i),
               status == PARMAP_ECANCELED ? "cancelled while running"
               : status == PARMAP_ENOTRUN ? "cancelled before it started"
                                          : describe(status));
        ok_n += status == 0;
        failed += status == E_UNLUCKY;
        cancelled += status == PARMAP_ECANCELED;
        not_run += status == PARMAP_ENOTRUN;
    }
    struct task late = {5, 99, 0};
    int late_rc = parmap_group_submit(g, group_task, &late, NULL);
    printf("   %zu ok, %zu failed, %zu cancelled while running, %zu never "
           "started; a new submit returns %s\n",
           ok_n, failed, cancelled, not_run, parmap_err_name(late_rc));
    if (any_fails) {
        expect(rc == E_UNLUCKY, "the group's first failure");
        expect(failed >= 1 && late_rc == PARMAP_ECANCELED,
               "a failed group refuses new tasks");
        expect(ok_n + failed + cancelled + not_run == NTASKS, "statuses");
    } else {
        expect(rc == 0 && ok_n == NTASKS, "no failure, so all succeed");
    }
    parmap_group_destroy(g);
}

int main(int argc, char **argv)
{
    parmap_pool *pool = NULL;

    if (argc > 1)
        seed = strtoull(argv[1], NULL, 0);
    /* One thread per task plus the caller: every task can run at once and
     * the caller only waits, so the waits' timeouts stay prompt. (With
     * fewer threads the waiting caller would run tasks itself.) */
    int rc = parmap_pool_create(&pool, NTASKS + 1, NULL);
    if (rc != 0) {
        fprintf(stderr, "gather_wait: parmap_pool_create: %s\n",
                parmap_strerror(rc));
        return 1;
    }
    printf("parmap %s: asyncio's gather, as_completed, wait and TaskGroup\n"
           "Tasks sleep 1 to 4 s and fail when a random value > 0.5 "
           "(seed %llu).\nTime is scaled 1:100: one second here is 10 ms.\n",
           parmap_version(), (unsigned long long)seed);

    gather(pool, 1);
    gather(pool, 0);
    as_completed(pool);
    wait_modes(pool);
    task_group(pool);

    parmap_pool_destroy(pool);
    printf("\n%s\n", ok ? "gather_wait: every outcome as expected"
                        : "gather_wait: FAILED (see UNEXPECTED above)");
    return ok ? 0 : 1;
}
