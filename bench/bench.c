/*
 * bench.c: the C driver of the parmap benchmark suite.
 *
 * One process measures one (workload, variant) pair, so a library's idle
 * threads, allocator state or OpenMP runtime never leak into another
 * library's numbers; run.sh interleaves the processes round by round.
 *
 *   bench_c W1|W2|W3|W4|W6 VARIANT [key=value ...]
 *   bench_c calibrate seconds      (prints W3 spin steps for that time)
 *   bench_c probe threads          (CPUs this process can get right now)
 *
 * Variants: serial, serial_fnptr, omp_static, omp_guided, omp_dynamic1, omp,
 * pthreadpool_1d, pthreadpool_tile4096, pthreadpool_yield, glib_item,
 * cthreadpool_item, parmap, parmap_chunk4096 (not every workload has all).
 * oneTBB lives in bench_tbb.cpp with the same workloads (common.h).
 *
 * Output: `workload,variant,metric,value` lines; `valid,1` only when every
 * output of every timed run matched the expected value exactly.
 */
#include "common.h"

#include <glib.h>
#include <omp.h>
#include <pthread.h>
#include <pthreadpool.h>
#include <sched.h>
#include <stdatomic.h>

#include "cthreadpool/thpool.h"
#include "parmap.h"

#ifdef BENCH_NO_PARMAP
/* The library's sources are not there yet: the peers still build and run,
 * and any parmap variant fails loudly instead of measuring something else. */
int parmap_pool_create(parmap_pool **pool, size_t nthreads,
                       const parmap_pool_opts *opts)
{
    (void)pool, (void)nthreads, (void)opts;
    fprintf(stderr, "bench: built without parmap (BENCH_NO_PARMAP)\n");
    exit(4);
}
int parmap_map(parmap_pool *pool, size_t n, const void *in, size_t in_size,
               void *out, size_t out_size, parmap_fn fn, void *ctx,
               const parmap_opts *opts)
{
    (void)pool, (void)n, (void)in, (void)in_size, (void)out, (void)out_size;
    (void)fn, (void)ctx, (void)opts;
    exit(4);
}
int parmap_pool_destroy(parmap_pool *pool)
{
    (void)pool;
    return 0;
}
const char *parmap_strerror(int err)
{
    (void)err;
    return "built without parmap";
}
#endif

/* ------------------------------------------------------------------ */
/* The job all adapters run: one workload's arrays                    */
/* ------------------------------------------------------------------ */

typedef struct job {
    /* W1 */
    const double *in;
    double *out;
    /* W2 */
    uint64_t *out2;
    uint64_t r;
    /* W3 */
    const uint64_t *iters;
    uint64_t *out3;
    /* W4 */
    const long *us;
    uint32_t *out4;
} job;

/* Per-item bodies with pthreadpool's task signature, so pthreadpool calls
 * them with no adapter; the queue-based peers call them from theirs. */
typedef void (*item_fn)(void *ctx, size_t i);

static void w1_item(void *ctx, size_t i)
{
    job *j = (job *)ctx;
    j->out[i] = w1_f(j->in[i], i);
}

static void w1_tile(void *ctx, size_t start, size_t count)
{
    job *j = (job *)ctx;
    for (size_t i = start; i < start + count; i++)
        j->out[i] = w1_f(j->in[i], i);
}

static void w2_item(void *ctx, size_t i)
{
    job *j = (job *)ctx;
    j->out2[i] = 2 * (uint64_t)i + j->r;
}

static void w3_item(void *ctx, size_t i)
{
    job *j = (job *)ctx;
    j->out3[i] = w3_spin(w3_seed(i), j->iters[i]);
}

static void w4_item(void *ctx, size_t i)
{
    job *j = (job *)ctx;
    bench_sleep_us(j->us[i]);
    j->out4[i] = w4_token(i);
}

/* parmap's own callback form: it hands each item its input and output
 * slot, which is how a user would write these loops with parmap. */
static int pm_w1(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx;
    *(double *)out = w1_f(*(const double *)in, i);
    return 0;
}

static int pm_w2(void *ctx, size_t i, const void *in, void *out)
{
    (void)in;
    *(uint64_t *)out = 2 * (uint64_t)i + ((job *)ctx)->r;
    return 0;
}

static int pm_w3(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = w3_spin(w3_seed(i), *(const uint64_t *)in);
    return 0;
}

static int pm_w4(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx;
    bench_sleep_us(*(const long *)in);
    *(uint32_t *)out = w4_token(i);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Backends: create once, then run maps                               */
/* ------------------------------------------------------------------ */

typedef enum kind {
    K_SERIAL,
    K_SERIAL_FN,
    K_OMP_STATIC,
    K_OMP_GUIDED,
    K_OMP_DYNAMIC1,
    K_PTP_1D,
    K_PTP_TILE,
    K_PTP_YIELD,
    K_GLIB,
    K_CTHP,
    K_PARMAP,
    K_PARMAP_CHUNK
} kind;

static const struct {
    const char *name;
    kind k;
} kinds[] = {
    {"serial", K_SERIAL},
    {"serial_fnptr", K_SERIAL_FN}, /* W1: the loop calling parmap's callback */
    {"omp", K_OMP_STATIC}, /* W2: a plain `parallel for` (static) */
    {"omp_static", K_OMP_STATIC},
    {"omp_guided", K_OMP_GUIDED},
    {"omp_dynamic1", K_OMP_DYNAMIC1},
    {"pthreadpool_1d", K_PTP_1D},
    {"pthreadpool_tile4096", K_PTP_TILE},
    {"pthreadpool_yield", K_PTP_YIELD},
    {"glib_item", K_GLIB},
    {"cthreadpool_item", K_CTHP},
    {"parmap", K_PARMAP},
    {"parmap_chunk4096", K_PARMAP_CHUNK},
};

/* GLib and C-Thread-Pool take one task per item and know nothing of
 * "all items done", so completion is an atomic countdown whose last
 * decrement wakes the caller: the cheapest correct wait for these APIs. */
typedef struct countdown {
    atomic_size_t left;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done; /* protected by mu */
    item_fn fn;
    void *ctx;
} countdown;

static countdown cd = {.mu = PTHREAD_MUTEX_INITIALIZER,
                       .cv = PTHREAD_COND_INITIALIZER};

static void cd_arm(item_fn fn, void *ctx, size_t n)
{
    cd.fn = fn;
    cd.ctx = ctx;
    cd.done = 0;
    atomic_store(&cd.left, n);
}

static void cd_finish_one(void)
{
    if (atomic_fetch_sub(&cd.left, 1) == 1) {
        pthread_mutex_lock(&cd.mu);
        cd.done = 1;
        pthread_cond_signal(&cd.cv);
        pthread_mutex_unlock(&cd.mu);
    }
}

static void cd_wait(void)
{
    pthread_mutex_lock(&cd.mu);
    while (!cd.done)
        pthread_cond_wait(&cd.cv, &cd.mu);
    pthread_mutex_unlock(&cd.mu);
}

static void glib_task(gpointer data, gpointer user_data)
{
    (void)user_data;
    cd.fn(cd.ctx, GPOINTER_TO_SIZE(data) - 1);
    cd_finish_one();
}

static void cthp_task(void *arg)
{
    cd.fn(cd.ctx, (size_t)(uintptr_t)arg);
}

typedef struct backend {
    kind k;
    int threads;
    pthreadpool_t ptp;
    GThreadPool *glib;
    threadpool cthp;
    parmap_pool *pm;
    parmap_opts pm_opts;
} backend;

static void backend_init(backend *b, kind k, int threads)
{
    memset(b, 0, sizeof *b);
    b->k = k;
    b->threads = threads;
    switch (k) {
    case K_PTP_1D:
    case K_PTP_TILE:
    case K_PTP_YIELD:
        /* pthreadpool's count includes the calling thread, like parmap. */
        b->ptp = pthreadpool_create((size_t)threads);
        if (!b->ptp) {
            fprintf(stderr, "pthreadpool_create failed\n");
            exit(2);
        }
        break;
    case K_GLIB: {
        GError *err = NULL;
        /* Exclusive: the pool starts and keeps its own threads, so thread
         * start-up stays out of the timings. The caller only pushes. */
        b->glib = g_thread_pool_new(glib_task, NULL, threads, TRUE, &err);
        if (!b->glib) {
            fprintf(stderr, "g_thread_pool_new: %s\n",
                    err ? err->message : "?");
            exit(2);
        }
        break;
    }
    case K_CTHP:
        b->cthp = thpool_init(threads);
        if (!b->cthp) {
            fprintf(stderr, "thpool_init failed\n");
            exit(2);
        }
        break;
    case K_PARMAP:
    case K_PARMAP_CHUNK: {
        int rc = parmap_pool_create(&b->pm, (size_t)threads, NULL);
        if (rc) {
            fprintf(stderr, "parmap_pool_create: %s\n", parmap_strerror(rc));
            exit(2);
        }
        if (k == K_PARMAP_CHUNK) b->pm_opts.chunk_size = 4096;
        break;
    }
    default:
        break;
    }
}

/* Runs item fn over [0, n) on a queue-based or pthreadpool backend. */
static void backend_for(backend *b, item_fn fn, void *ctx, size_t n)
{
    switch (b->k) {
    case K_PTP_1D:
        pthreadpool_parallelize_1d(b->ptp, fn, ctx, n, 0);
        break;
    case K_PTP_YIELD:
        pthreadpool_parallelize_1d(b->ptp, fn, ctx, n,
                                   PTHREADPOOL_FLAG_YIELD_WORKERS);
        break;
    case K_GLIB:
        if (n == 0) return;
        cd_arm(fn, ctx, n);
        for (size_t i = 0; i < n; i++)
            g_thread_pool_push(b->glib, GSIZE_TO_POINTER(i + 1), NULL);
        cd_wait();
        break;
    case K_CTHP:
        if (n == 0) return;
        cd_arm(fn, ctx, n);
        for (size_t i = 0; i < n; i++)
            thpool_add_work(b->cthp, cthp_task, (void *)(uintptr_t)i);
        thpool_wait(b->cthp);
        break;
    case K_SERIAL:
        for (size_t i = 0; i < n; i++)
            fn(ctx, i);
        break;
    default:
        fprintf(stderr, "bench: backend_for: unsupported kind\n");
        exit(2);
    }
}

static void pm_run(backend *b, size_t n, const void *in, size_t isz,
                   void *out, size_t osz, parmap_fn fn, void *ctx,
                   const parmap_opts *opts)
{
    int rc = parmap_map(b->pm, n, in, isz, out, osz, fn, ctx,
                        opts ? opts : &b->pm_opts);
    if (rc) {
        fprintf(stderr, "parmap_map: %s\n", parmap_strerror(rc));
        exit(3);
    }
}

static void backend_destroy(backend *b)
{
    if (b->ptp) pthreadpool_destroy(b->ptp);
    if (b->glib) g_thread_pool_free(b->glib, FALSE, TRUE);
    /* C-Thread-Pool's destroy polls with sleep(1); exit() reclaims it. */
    if (b->pm) {
        int rc = parmap_pool_destroy(b->pm);
        if (rc) fprintf(stderr, "parmap_pool_destroy: %s\n", parmap_strerror(rc));
    }
}

/* ------------------------------------------------------------------ */
/* W1: 10M tiny items (also the W5 memory numbers)                    */
/* ------------------------------------------------------------------ */

static void w1_run(backend *b, job *j, size_t n)
{
    const double *in = j->in;
    double *out = j->out;
    int t = b->threads;
    switch (b->k) {
    case K_SERIAL:
        for (size_t i = 0; i < n; i++)
            out[i] = w1_f(in[i], i);
        break;
    case K_SERIAL_FN: {
        /* The floor of any per-item callback API: the same callback parmap
         * gets, called through a pointer the compiler cannot see through. */
        parmap_fn volatile f = pm_w1;
        for (size_t i = 0; i < n; i++)
            f(NULL, i, &in[i], &out[i]);
        break;
    }
    case K_OMP_STATIC:
#pragma omp parallel for schedule(static) num_threads(t)
        for (size_t i = 0; i < n; i++)
            out[i] = w1_f(in[i], i);
        break;
    case K_OMP_GUIDED:
#pragma omp parallel for schedule(guided) num_threads(t)
        for (size_t i = 0; i < n; i++)
            out[i] = w1_f(in[i], i);
        break;
    case K_OMP_DYNAMIC1:
#pragma omp parallel for schedule(dynamic, 1) num_threads(t)
        for (size_t i = 0; i < n; i++)
            out[i] = w1_f(in[i], i);
        break;
    case K_PTP_TILE:
        pthreadpool_parallelize_1d_tile_1d(b->ptp, w1_tile, j, n, 4096, 0);
        break;
    case K_PARMAP:
    case K_PARMAP_CHUNK:
        pm_run(b, n, in, sizeof *in, out, sizeof *out, pm_w1, NULL, NULL);
        break;
    default:
        backend_for(b, w1_item, j, n);
        break;
    }
}

static int bench_w1(const char *v, kind k, const bench_params *p)
{
    size_t n = p->n;
    /* One task per item through a locked queue costs about a microsecond;
     * with scaled_n < n these peers run a prefix and are scaled up. */
    size_t run_n = (k == K_GLIB || k == K_CTHP) ? p->scaled_n : n;
    double *in = bench_xmalloc(n * sizeof *in);
    double *out = bench_xmalloc(n * sizeof *out);
    w1_fill(in, n);
    w1_poison(out, n);
    long hwm0 = bench_status_kib("VmHWM");

    backend b;
    backend_init(&b, k, p->threads);
    job j = {.in = in, .out = out};

    size_t bad = 0;
    double best = 1e30, best_cpu = 1e30;
    for (int rep = -1; rep < p->inner; rep++) {
        /* rep -1 warms up (threads started, code paged in) on a prefix. */
        size_t m = rep < 0 && run_n > 1000000 ? 1000000 : run_n;
        w1_poison(out, m);
        double c0 = bench_proc_cpu_ms(), t0 = bench_now();
        w1_run(&b, &j, m);
        double dt = bench_now() - t0, tc = bench_thread_cpu_ms();
        bad += w1_check(in, out, m);
        double dc = bench_proc_cpu_ms() - c0 - (bench_thread_cpu_ms() - tc);
        if (rep >= 0 && dt < best) best = dt;
        if (rep >= 0 && dc < best_cpu) best_cpu = dc;
    }
    long hwm1 = bench_status_kib("VmHWM");
    backend_destroy(&b);

    bench_emit("W1", v, "time_s", best * ((double)n / (double)run_n));
    /* CPU time of all threads: the work plus every overhead, spinning
     * included; far less sensitive to neighbours than wall time. */
    bench_emit("W1", v, "cpu_s", best_cpu * 1e-3 * ((double)n / (double)run_n));
    if (run_n != n) bench_emit("W1", v, "scaled_from_items", (double)run_n);
    bench_emit("W5", v, "mib_added", (double)(hwm1 - hwm0) / 1024.0);
    bench_emit("W1", v, "valid", bad == 0);
    if (bad) fprintf(stderr, "W1 %s: %zu wrong outputs\n", v, bad);
    free(in);
    free(out);
    return bad != 0;
}

/* ------------------------------------------------------------------ */
/* W6: progress-callback cost, interleaved in one process             */
/* ------------------------------------------------------------------ */

typedef struct prog_state {
    size_t calls;
    size_t last_done;
    size_t total;
} prog_state;

static int on_progress(void *ctx, const parmap_progress *pr)
{
    prog_state *s = (prog_state *)ctx;
    s->calls++;
    s->last_done = pr->done;
    s->total = pr->total;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n), which it sorts. */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int bench_w6(const char *v, const bench_params *p)
{
    size_t n = p->n;
    double *in = bench_xmalloc(n * sizeof *in);
    double *out = bench_xmalloc(n * sizeof *out);
    w1_fill(in, n);
    w1_poison(out, n);
    backend b;
    backend_init(&b, K_PARMAP, p->threads);

    /* Three forms: no callback, the 0.1 s throttle (on a map this
     * short that is mostly the final call), and interval 0 (a call after
     * every chunk of completions), which shows the progress path's own
     * cost. */
    prog_state st = {0};
    parmap_opts forms[3];
    memset(forms, 0, sizeof forms);
    for (int f = 1; f < 3; f++) {
        forms[f].progress = on_progress;
        forms[f].progress_ctx = &st;
    }
    forms[1].progress_interval = 0.1;
    forms[2].progress_interval = 0;

    /* The forms take turns in a rotating order, and each turn of three is
     * compared within itself (wall and CPU time), so the machine's drift and
     * neighbours' bursts mostly cancel; the medians of those ratios are
     * reported. 4 * inner turns: the differences sought are small. */
    enum { MAXT = 256 };
    double wall[3][MAXT], cpu[3][MAXT], rw[2][MAXT], rc[2][MAXT];
    double best[3] = {1e30, 1e30, 1e30};
    size_t bad = 0, calls[3] = {0, 0, 0};
    int turns = 4 * p->inner;
    if (turns > MAXT) turns = MAXT;
    for (int rep = -1; rep < turns; rep++) {
        for (int k = 0; k < 3; k++) {
            int f = (k + rep + 3) % 3;
            memset(&st, 0, sizeof st);
            w1_poison(out, n);
            double c0 = bench_proc_cpu_ms(), t0 = bench_now();
            pm_run(&b, n, in, sizeof *in, out, sizeof *out, pm_w1, NULL,
                   &forms[f]);
            double dt = bench_now() - t0, tc = bench_thread_cpu_ms();
            bad += w1_check(in, out, n);
            double dc = bench_proc_cpu_ms() - c0 - (bench_thread_cpu_ms() - tc);
            if (f > 0) {
                /* The final call must report every item done. */
                if (st.calls == 0 || st.last_done != n || st.total != n) bad++;
                calls[f] += st.calls;
            }
            if (rep < 0) continue;
            wall[f][rep] = dt;
            cpu[f][rep] = dc;
            if (dt < best[f]) best[f] = dt;
        }
        if (rep < 0) continue;
        for (int f = 1; f < 3; f++) {
            rw[f - 1][rep] = wall[f][rep] / wall[0][rep];
            rc[f - 1][rep] = cpu[f][rep] / cpu[0][rep];
        }
    }
    backend_destroy(&b);
    bench_emit("W6", v, "time_plain_s", best[0]);
    bench_emit("W6", v, "time_progress_s", best[1]);
    bench_emit("W6", v, "progress_cost", median(rw[0], turns));
    bench_emit("W6", v, "progress_cost_cpu", median(rc[0], turns));
    bench_emit("W6", v, "progress_calls_per_map",
               (double)calls[1] / (double)(turns + 1));
    bench_emit("W6", v, "progress0_cost", median(rw[1], turns));
    bench_emit("W6", v, "progress0_cost_cpu", median(rc[1], turns));
    bench_emit("W6", v, "progress0_calls_per_map",
               (double)calls[2] / (double)(turns + 1));
    bench_emit("W6", v, "valid", bad == 0);
    free(in);
    free(out);
    return bad != 0;
}

/* ------------------------------------------------------------------ */
/* W2: fork-join latency (16 trivial items per map)                   */
/* ------------------------------------------------------------------ */

static void w2_map(backend *b, job *j)
{
    uint64_t *out = j->out2;
    uint64_t r = j->r;
    int t = b->threads;
    switch (b->k) {
    case K_SERIAL:
        for (size_t i = 0; i < W2_ITEMS; i++)
            out[i] = 2 * (uint64_t)i + r;
        __asm__ __volatile__("" ::: "memory");
        break;
    case K_OMP_STATIC:
#pragma omp parallel for num_threads(t)
        for (size_t i = 0; i < W2_ITEMS; i++)
            out[i] = 2 * (uint64_t)i + r;
        break;
    case K_PARMAP:
    case K_PARMAP_CHUNK:
        pm_run(b, W2_ITEMS, NULL, 0, out, sizeof *out, pm_w2, j, NULL);
        break;
    default:
        backend_for(b, w2_item, j, W2_ITEMS);
        break;
    }
}

static int bench_w2(const char *v, kind k, const bench_params *p)
{
    uint64_t out[W2_ITEMS];
    job j = {.out2 = out};
    backend b;
    backend_init(&b, k, p->threads);

    for (long r = 0; r < 1000; r++) { /* warm-up */
        j.r = (uint64_t)r;
        w2_map(&b, &j);
    }
    double best = 1e30, best_cpu = 1e30;
    size_t bad = 0;
    for (int rep = 0; rep < p->inner; rep++) {
        uint64_t acc = 0;
        double c0 = bench_proc_cpu_ms(), t0 = bench_now();
        for (long r = 0; r < p->reps; r++) {
            j.r = (uint64_t)r;
            w2_map(&b, &j);
            for (size_t i = 0; i < W2_ITEMS; i++)
                acc += out[i];
        }
        double dt = bench_now() - t0, dc = bench_proc_cpu_ms() - c0;
        if (acc != w2_expected(p->reps)) bad++;
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
    }
    double idle, idle_ru;
    bench_idle_cpu_ms(p->idle_ms, &idle, &idle_ru);
    backend_destroy(&b);
    bench_emit("W2", v, "us_per_map", best / (double)p->reps * 1e6);
    bench_emit("W2", v, "cpu_us_per_map", best_cpu / (double)p->reps * 1e3);
    bench_emit("W2", v, "idle_cpu_ms", idle);
    bench_emit("W2", v, "idle_cpu_rusage_ms", idle_ru);
    bench_emit("W2", v, "valid", bad == 0);
    if (bad) fprintf(stderr, "W2 %s: wrong checksum\n", v);
    return bad != 0;
}

/* ------------------------------------------------------------------ */
/* W3: Pareto-distributed CPU work                                    */
/* ------------------------------------------------------------------ */

static void w3_run(backend *b, job *j, size_t n)
{
    const uint64_t *iters = j->iters;
    uint64_t *out = j->out3;
    int t = b->threads;
    switch (b->k) {
    case K_SERIAL:
        for (size_t i = 0; i < n; i++)
            out[i] = w3_spin(w3_seed(i), iters[i]);
        break;
    case K_OMP_STATIC:
#pragma omp parallel for schedule(static) num_threads(t)
        for (size_t i = 0; i < n; i++)
            out[i] = w3_spin(w3_seed(i), iters[i]);
        break;
    case K_OMP_DYNAMIC1:
#pragma omp parallel for schedule(dynamic, 1) num_threads(t)
        for (size_t i = 0; i < n; i++)
            out[i] = w3_spin(w3_seed(i), iters[i]);
        break;
    case K_OMP_GUIDED:
#pragma omp parallel for schedule(guided) num_threads(t)
        for (size_t i = 0; i < n; i++)
            out[i] = w3_spin(w3_seed(i), iters[i]);
        break;
    case K_PARMAP:
    case K_PARMAP_CHUNK:
        pm_run(b, n, iters, sizeof *iters, out, sizeof *out, pm_w3, NULL,
               NULL);
        break;
    default:
        backend_for(b, w3_item, j, n);
        break;
    }
}

static int bench_w3(const char *v, kind k, const bench_params *p)
{
    size_t n = p->w3_items;
    uint64_t *iters = w3_make(n, p->w3_alpha, p->w3_iters);
    uint64_t *out = bench_xmalloc(n * sizeof *out);
    uint64_t *warm = bench_xmalloc(n * sizeof *warm);
    for (size_t i = 0; i < n; i++)
        warm[i] = 100;
    backend b;
    backend_init(&b, k, p->threads);

    /* Warm-up on tiny items wakes the threads without a real run. */
    job j = {.iters = warm, .out3 = out};
    w3_run(&b, &j, n);
    j.iters = iters;

    double best = 1e30, best_cpu = 1e30;
    size_t bad = 0;
    for (int rep = 0; rep < p->inner; rep++) {
        memset(out, 0, n * sizeof *out);
        double c0 = bench_proc_cpu_ms(), t0 = bench_now();
        w3_run(&b, &j, n);
        double dt = bench_now() - t0, tc = bench_thread_cpu_ms();
        bad += w3_check(iters, out, n);
        double dc = bench_proc_cpu_ms() - c0 - (bench_thread_cpu_ms() - tc);
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
    }
    backend_destroy(&b);
    bench_emit("W3", v, "time_s", best);
    bench_emit("W3", v, "cpu_s", best_cpu * 1e-3);
    bench_emit("W3", v, "valid", bad == 0);
    if (bad) fprintf(stderr, "W3 %s: %zu wrong outputs\n", v, bad);
    free(iters);
    free(out);
    free(warm);
    return bad != 0;
}

/* ------------------------------------------------------------------ */
/* W4: blocking items on 64 threads, then the idle-burn probe         */
/* ------------------------------------------------------------------ */

static void w4_run(backend *b, job *j, size_t n)
{
    const long *us = j->us;
    uint32_t *out = j->out4;
    int t = b->threads;
    switch (b->k) {
    case K_OMP_DYNAMIC1:
#pragma omp parallel for schedule(dynamic, 1) num_threads(t)
        for (size_t i = 0; i < n; i++) {
            bench_sleep_us(us[i]);
            out[i] = w4_token(i);
        }
        break;
    case K_PARMAP:
    case K_PARMAP_CHUNK:
        pm_run(b, n, us, sizeof *us, out, sizeof *out, pm_w4, NULL, NULL);
        break;
    default:
        backend_for(b, w4_item, j, n);
        break;
    }
}

static int bench_w4(const char *v, kind k, const bench_params *p)
{
    size_t n = p->w4_items;
    double ideal;
    long *us = w4_make(n, p->w4_max_us, &ideal, p->w4_threads);
    long *zero = bench_xmalloc(n * sizeof *zero);
    memset(zero, 0, n * sizeof *zero);
    uint32_t *out = bench_xmalloc(n * sizeof *out);
    backend b;
    backend_init(&b, k, p->w4_threads);

    job j = {.us = zero, .out4 = out};
    w4_run(&b, &j, n); /* warm-up: zero-length sleeps start every thread */
    j.us = us;

    double best = 1e30;
    size_t bad = 0;
    for (int rep = 0; rep < p->inner; rep++) {
        memset(out, 0, n * sizeof *out);
        double t0 = bench_now();
        w4_run(&b, &j, n);
        double dt = bench_now() - t0;
        bad += w4_check(out, n);
        if (dt < best) best = dt;
    }
    double idle, idle_ru;
    bench_idle_cpu_ms(p->idle_ms, &idle, &idle_ru);
    backend_destroy(&b);
    bench_emit("W4", v, "makespan_s", best);
    bench_emit("W4", v, "over_ideal", best / ideal);
    bench_emit("W4", v, "idle_cpu_ms", idle);
    bench_emit("W4", v, "idle_cpu_rusage_ms", idle_ru);
    bench_emit("W4", v, "valid", bad == 0);
    if (bad) fprintf(stderr, "W4 %s: %zu wrong outputs\n", v, bad);
    free(us);
    free(zero);
    free(out);
    return bad != 0;
}

/* ------------------------------------------------------------------ */

static int calibrate(double seconds)
{
    /* Spin steps per second on one thread, best of a few short tries. */
    double best = 0;
    volatile uint64_t sink;
    /* The thread's own CPU clock: time the thread spent preempted by
     * neighbours does not count, so a busy machine does not shrink W3. */
    for (int t = 0; t < 5; t++) {
        uint64_t k = 20000000;
        double t0 = bench_thread_cpu_ms();
        sink = w3_spin(t + 1, k);
        double dt = (bench_thread_cpu_ms() - t0) * 1e-3;
        if (k / dt > best) best = k / dt;
    }
    (void)sink;
    printf("%.0f\n", best * seconds);
    return 0;
}

/* How many CPUs this process can get right now: the same spin work on
 * one thread and then on `threads` threads at once. About 2.0 on an idle
 * 2-CPU machine, nearer 1.0 when neighbours hold a core. run.sh calls it
 * around every round so noisy rounds can be recognised. */
static void *probe_spin(void *arg)
{
    uint64_t *x = (uint64_t *)arg;
    *x = w3_spin(*x, 30000000);
    return NULL;
}

static int probe(int threads)
{
    uint64_t x[64];
    pthread_t th[64];
    if (threads < 1 || threads > 64) threads = 2;
    x[0] = 1;
    double t0 = bench_now();
    probe_spin(&x[0]);
    double one = bench_now() - t0;
    t0 = bench_now();
    for (int i = 0; i < threads; i++) {
        x[i] = (uint64_t)i + 1;
        if (pthread_create(&th[i], NULL, probe_spin, &x[i])) return 2;
    }
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double all = bench_now() - t0;
    bench_emit("ENV", "probe", "parallelism", threads * one / all);
    return 0;
}

/* The best any scheduler can do on W3's and W4's data that starts the
 * items in index order, each on the first thread that is free, with no
 * overhead (list scheduling; what a shared counter or schedule(dynamic,1)
 * does). A scheduler that cannot know item lengths beforehand does no
 * better on average, but on one fixed data set a different order can be
 * luckier or unluckier. Prints "W3 efficiency" and "W4 makespan / ideal". */
static double list_schedule(const double *len, size_t n, int threads)
{
    double t[64] = {0}, m = 0;
    if (threads < 1 || threads > 64) threads = 2;
    for (size_t i = 0; i < n; i++) {
        int b = 0;
        for (int k = 1; k < threads; k++)
            if (t[k] < t[b]) b = k;
        t[b] += len[i];
    }
    for (int k = 0; k < threads; k++)
        if (t[k] > m) m = t[k];
    return m;
}

static int floors(int argc, char **argv)
{
    bench_params p;
    bench_params_default(&p);
    if (bench_params_parse(&p, argc, argv, 2)) return 2;
    size_t n3 = p.w3_items, n4 = p.w4_items;
    uint64_t *k = w3_make(n3, p.w3_alpha, p.w3_iters);
    double *len = (double *)bench_xmalloc((n3 > n4 ? n3 : n4) * sizeof *len);
    double sum = 0;
    for (size_t i = 0; i < n3; i++) sum += len[i] = (double)k[i];
    printf("%.4f ", sum / p.threads / list_schedule(len, n3, p.threads));
    double ideal;
    long *us = w4_make(n4, p.w4_max_us, &ideal, p.w4_threads);
    for (size_t i = 0; i < n4; i++) len[i] = (double)us[i];
    printf("%.4f\n", list_schedule(len, n4, p.w4_threads) * 1e-6 / ideal);
    free(k);
    free(us);
    free(len);
    return 0;
}

/* "hog CPU": another process keeping one CPU busy (W1H). Pins itself to
 * CPU and spins until killed. */
static int hog(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        perror("bench: hog: sched_setaffinity");
        return 1;
    }
    volatile uint64_t x = 1;
    for (;;)
        x = x * 6364136223846793005u + 1442695040888963407u;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "hog")) return hog(atoi(argv[2]));
    if (argc >= 2 && !strcmp(argv[1], "floors")) return floors(argc, argv);
    if (argc >= 3 && !strcmp(argv[1], "calibrate"))
        return calibrate(strtod(argv[2], NULL));
    if (argc >= 3 && !strcmp(argv[1], "probe")) return probe(atoi(argv[2]));
    if (argc < 3) {
        fprintf(stderr, "usage: %s W1|W2|W3|W4|W6 VARIANT [key=value...]\n"
                        "       %s calibrate SECONDS\n"
                        "       %s probe THREADS\n"
                        "       %s hog CPU\n",
                argv[0], argv[0], argv[0], argv[0]);
        return 2;
    }
    bench_params p;
    bench_params_default(&p);
    if (bench_params_parse(&p, argc, argv, 3)) return 2;

    const char *w = argv[1], *v = argv[2];
    int found = 0;
    kind k = K_SERIAL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(kinds[i].name, v)) {
            k = kinds[i].k;
            found = 1;
        }
    if (!found) {
        fprintf(stderr, "bench: unknown variant '%s'\n", v);
        return 2;
    }
    if (!strcmp(w, "W1")) return bench_w1(v, k, &p);
    if (!strcmp(w, "W2")) return bench_w2(v, k, &p);
    if (!strcmp(w, "W3")) return bench_w3(v, k, &p);
    if (!strcmp(w, "W4")) return bench_w4(v, k, &p);
    if (!strcmp(w, "W6")) return bench_w6(v, &p);
    fprintf(stderr, "bench: unknown workload '%s'\n", w);
    return 2;
}
