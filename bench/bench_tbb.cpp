// bench_tbb.cpp: the oneTBB peer of the parmap benchmark suite.
//
// Same command line, workloads (common.h) and output as bench.c:
//   bench_tbb W1|W2|W3 tbb_auto [key=value ...]
// Every workload uses tbb::parallel_for over a blocked_range with the
// default auto_partitioner, limited to `threads` threads (caller included)
// by tbb::global_control.
#include "common.h"

#include <cstring>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>

using range = tbb::blocked_range<size_t>;

static int bench_w1(const char *v, const bench_params *p)
{
    size_t n = p->n;
    double *in = static_cast<double *>(bench_xmalloc(n * sizeof *in));
    double *out = static_cast<double *>(bench_xmalloc(n * sizeof *out));
    w1_fill(in, n);
    w1_poison(out, n);
    long hwm0 = bench_status_kib("VmHWM");
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism,
                           static_cast<size_t>(p->threads));

    size_t bad = 0;
    double best = 1e30, best_cpu = 1e30;
    for (int rep = -1; rep < p->inner; rep++) {
        size_t m = rep < 0 && n > 1000000 ? 1000000 : n;
        w1_poison(out, m);
        double c0 = bench_proc_cpu_ms(), t0 = bench_now();
        tbb::parallel_for(
            range(0, m),
            [=](const range &r) {
                for (size_t i = r.begin(); i != r.end(); ++i)
                    out[i] = w1_f(in[i], i);
            },
            tbb::auto_partitioner());
        double dt = bench_now() - t0, tc = bench_thread_cpu_ms();
        bad += w1_check(in, out, m);
        double dc = bench_proc_cpu_ms() - c0 - (bench_thread_cpu_ms() - tc);
        if (rep >= 0 && dt < best) best = dt;
        if (rep >= 0 && dc < best_cpu) best_cpu = dc;
    }
    long hwm1 = bench_status_kib("VmHWM");
    bench_emit("W1", v, "time_s", best);
    bench_emit("W1", v, "cpu_s", best_cpu * 1e-3);
    bench_emit("W5", v, "mib_added", static_cast<double>(hwm1 - hwm0) / 1024.0);
    bench_emit("W1", v, "valid", bad == 0);
    if (bad) std::fprintf(stderr, "W1 %s: %zu wrong outputs\n", v, bad);
    free(in);
    free(out);
    return bad != 0;
}

static int bench_w2(const char *v, const bench_params *p)
{
    uint64_t out[W2_ITEMS];
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism,
                           static_cast<size_t>(p->threads));
    auto map = [&](uint64_t r) {
        tbb::parallel_for(
            range(0, W2_ITEMS),
            [&out, r](const range &rg) {
                for (size_t i = rg.begin(); i != rg.end(); ++i)
                    out[i] = 2 * static_cast<uint64_t>(i) + r;
            },
            tbb::auto_partitioner());
    };
    for (long r = 0; r < 1000; r++)
        map(static_cast<uint64_t>(r));
    double best = 1e30, best_cpu = 1e30;
    size_t bad = 0;
    for (int rep = 0; rep < p->inner; rep++) {
        uint64_t acc = 0;
        double c0 = bench_proc_cpu_ms(), t0 = bench_now();
        for (long r = 0; r < p->reps; r++) {
            map(static_cast<uint64_t>(r));
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
    bench_emit("W2", v, "us_per_map", best / static_cast<double>(p->reps) * 1e6);
    bench_emit("W2", v, "cpu_us_per_map",
               best_cpu / static_cast<double>(p->reps) * 1e3);
    bench_emit("W2", v, "idle_cpu_ms", idle);
    bench_emit("W2", v, "idle_cpu_rusage_ms", idle_ru);
    bench_emit("W2", v, "valid", bad == 0);
    return bad != 0;
}

static int bench_w3(const char *v, const bench_params *p)
{
    size_t n = p->w3_items;
    uint64_t *iters = w3_make(n, p->w3_alpha, p->w3_iters);
    uint64_t *out = static_cast<uint64_t *>(bench_xmalloc(n * sizeof *out));
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism,
                           static_cast<size_t>(p->threads));
    auto run = [&](const uint64_t *k) {
        tbb::parallel_for(
            range(0, n),
            [=](const range &r) {
                for (size_t i = r.begin(); i != r.end(); ++i)
                    out[i] = w3_spin(w3_seed(i), k[i]);
            },
            tbb::auto_partitioner());
    };
    uint64_t *warm = static_cast<uint64_t *>(bench_xmalloc(n * sizeof *warm));
    for (size_t i = 0; i < n; i++)
        warm[i] = 100;
    run(warm);
    double best = 1e30, best_cpu = 1e30;
    size_t bad = 0;
    for (int rep = 0; rep < p->inner; rep++) {
        std::memset(out, 0, n * sizeof *out);
        double c0 = bench_proc_cpu_ms(), t0 = bench_now();
        run(iters);
        double dt = bench_now() - t0, tc = bench_thread_cpu_ms();
        bad += w3_check(iters, out, n);
        double dc = bench_proc_cpu_ms() - c0 - (bench_thread_cpu_ms() - tc);
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
    }
    bench_emit("W3", v, "time_s", best);
    bench_emit("W3", v, "cpu_s", best_cpu * 1e-3);
    bench_emit("W3", v, "valid", bad == 0);
    free(iters);
    free(out);
    free(warm);
    return bad != 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s W1|W2|W3 tbb_auto [key=value...]\n",
                     argv[0]);
        return 2;
    }
    bench_params p;
    bench_params_default(&p);
    if (bench_params_parse(&p, argc, argv, 3)) return 2;
    const char *w = argv[1], *v = argv[2];
    if (std::strcmp(v, "tbb_auto") != 0) {
        std::fprintf(stderr, "bench_tbb: unknown variant '%s'\n", v);
        return 2;
    }
    if (!std::strcmp(w, "W1")) return bench_w1(v, &p);
    if (!std::strcmp(w, "W2")) return bench_w2(v, &p);
    if (!std::strcmp(w, "W3")) return bench_w3(v, &p);
    std::fprintf(stderr, "bench_tbb: unknown workload '%s'\n", w);
    return 2;
}
