/*
 * The semaphore-bounded pool (asyncio pattern 1): run a function over a
 * list of argument sets with at most `pool_size` running at once, and get
 * back, for every task in input order, either its result or its error,
 * without one failure stopping the others.
 *
 * Scenario: 10 tasks, each waits a random 1 to 5 "seconds", and a task that
 * drew 5 fails instead; pool size 5. Time is scaled down 1:20 (a "second"
 * is 50 ms) so the example runs in well under a second. A serial loop takes
 * the sum of the waits; the pool about a fifth of it.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <parmap.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NTASKS 10
#define POOL_SIZE 5
#define SECOND_NS 50000000L /* one scenario second, scaled down */

struct task {
    int wait; /* the argument set: seconds to wait, 1 to 5 */
};

struct result {
    int waited; /* the result: seconds waited */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The task: waits, then returns its result, or fails if it drew 5. */
static int run_task(void *ctx, size_t i, const void *in, void *out)
{
    const struct task *t = in;
    struct result *r = out;
    struct timespec ts = {0, 0};
    (void)ctx;
    (void)i;

    if (t->wait == 5)
        return -ETIMEDOUT; /* "took too long": the task's exception */
    ts.tv_sec = (time_t)(t->wait * SECOND_NS / 1000000000L);
    ts.tv_nsec = (long)(t->wait * SECOND_NS % 1000000000L);
    nanosleep(&ts, NULL);
    r->waited = t->wait;
    return 0;
}

int main(int argc, char **argv)
{
    unsigned seed = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 5;
    struct task tasks[NTASKS];
    struct result results[NTASKS] = {{0}};
    int status[NTASKS];
    parmap_summary sum;
    parmap_pool *pool;
    int serial = 0, rc;

    srand(seed);
    for (int i = 0; i < NTASKS; i++) {
        tasks[i].wait = 1 + rand() % 5;
        serial += tasks[i].wait == 5 ? 0 : tasks[i].wait;
    }

    /* Blocking tasks want threads, not CPUs: a pool of POOL_SIZE threads.
     * max_concurrency below is the semaphore itself, exact whatever the
     * pool's size, so the same call works on a bigger shared pool. */
    if ((rc = parmap_pool_create(&pool, POOL_SIZE, NULL)) != 0) {
        fprintf(stderr, "pool: %s\n", parmap_strerror(rc));
        return 1;
    }

    parmap_opts opts = {0};
    opts.max_concurrency = POOL_SIZE;
    opts.status = status; /* gather(return_exceptions=True) */
    opts.summary = &sum;

    printf("semaphore pool: %d tasks, at most %d at once (1 s = 50 ms)\n",
           NTASKS, POOL_SIZE);
    double t0 = now();
    rc = parmap_map(pool, NTASKS, tasks, sizeof tasks[0], results,
                    sizeof results[0], run_task, NULL, &opts);
    double took = now() - t0;
    parmap_pool_destroy(pool);

    for (int i = 0; i < NTASKS; i++) {
        if (status[i] == 0)
            printf("  task %d (wait %d s): result %d\n", i, tasks[i].wait,
                   results[i].waited);
        else
            printf("  task %d (wait %d s): error %s\n", i, tasks[i].wait,
                   parmap_err_name(status[i]));
    }
    printf("%zu succeeded, %zu failed; returned %s\n", sum.succeeded,
           sum.failed, parmap_err_name(rc));
    printf("serial would take %d s (%.2f s scaled); the pool took %.2f s\n",
           serial, serial * SECOND_NS * 1e-9, took);

    /* Every task is accounted for, in order, with the right outcome. */
    for (int i = 0; i < NTASKS; i++) {
        int want = tasks[i].wait == 5 ? -ETIMEDOUT : 0;
        if (status[i] != want ||
            (want == 0 && results[i].waited != tasks[i].wait)) {
            fprintf(stderr, "task %d: wrong outcome\n", i);
            return 1;
        }
    }
    if (sum.succeeded + sum.failed != NTASKS ||
        rc != (sum.failed ? PARMAP_EFAILED : 0))
        return 1;
    return 0;
}
