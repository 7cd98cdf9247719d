/*
 * Shared pieces of the parmap benchmark drivers (bench.c and bench_tbb.cpp):
 * the workload definitions, their validators, timers and the memory and
 * idle-CPU probes. Header-only and valid C11 and C++17, so both drivers
 * measure exactly the same work.
 *
 * Every driver process runs one (workload, variant) pair and prints
 * `workload,variant,metric,value` lines on stdout; run.sh adds the round
 * number and summarize.c turns the samples into the table.
 */
#ifndef PARMAP_BENCH_COMMON_H
#define PARMAP_BENCH_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
#define BENCH_INLINE static inline
#else
#define BENCH_INLINE static inline
#endif

/* ------------------------------------------------------------------ */
/* Parameters                                                         */
/* ------------------------------------------------------------------ */

/* All knobs come from `key=value` arguments so run.sh can shrink them for
 * BENCH_QUICK without recompiling. Defaults are the sizes. */
typedef struct bench_params {
    size_t n;          /* W1/W6 items */
    size_t scaled_n;   /* W1 items for the per-item GLib/cthreadpool peers
                        * (timed on a prefix and scaled to n; 0 = n) */
    int threads;       /* threads per map (W1..W3), counting the caller */
    int inner;         /* timed repetitions inside one process (best kept) */
    long reps;         /* W2 maps per timing */
    size_t w3_items;   /* W3 items */
    double w3_iters;   /* W3 total spin iterations (calibrated by run.sh) */
    double w3_alpha;   /* W3 Pareto shape */
    size_t w4_items;   /* W4 items */
    int w4_threads;    /* W4 threads */
    int w4_max_us;     /* W4 longest sleep in microseconds */
    int idle_ms;       /* length of the idle-CPU probe */
} bench_params;

BENCH_INLINE void bench_params_default(bench_params *p)
{
    p->n = 10000000;
    p->scaled_n = 0; /* 0: the full n */
    p->threads = 2;
    p->inner = 5;
    p->reps = 100000;
    p->w3_items = 2000;
    p->w3_iters = 1.0e9;
    p->w3_alpha = 1.7;
    p->w4_items = 1000;
    p->w4_threads = 64;
    p->w4_max_us = 20000;
    p->idle_ms = 1000;
}

/* Parses argv[first..] as key=value pairs; unknown keys are an error so a
 * typo in run.sh cannot silently fall back to a default. */
BENCH_INLINE int bench_params_parse(bench_params *p, int argc, char **argv,
                                    int first)
{
    for (int i = first; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "bench: expected key=value, got '%s'\n", argv[i]);
            return -1;
        }
        size_t klen = (size_t)(eq - argv[i]);
        double v = strtod(eq + 1, NULL);
#define BENCH_KEY(name) (klen == strlen(name) && !strncmp(argv[i], name, klen))
        if (BENCH_KEY("n")) p->n = (size_t)v;
        else if (BENCH_KEY("scaled_n")) p->scaled_n = (size_t)v;
        else if (BENCH_KEY("threads")) p->threads = (int)v;
        else if (BENCH_KEY("inner")) p->inner = (int)v;
        else if (BENCH_KEY("reps")) p->reps = (long)v;
        else if (BENCH_KEY("w3_items")) p->w3_items = (size_t)v;
        else if (BENCH_KEY("w3_iters")) p->w3_iters = v;
        else if (BENCH_KEY("w3_alpha")) p->w3_alpha = v;
        else if (BENCH_KEY("w4_items")) p->w4_items = (size_t)v;
        else if (BENCH_KEY("w4_threads")) p->w4_threads = (int)v;
        else if (BENCH_KEY("w4_max_us")) p->w4_max_us = (int)v;
        else if (BENCH_KEY("idle_ms")) p->idle_ms = (int)v;
        else {
            fprintf(stderr, "bench: unknown parameter '%s'\n", argv[i]);
            return -1;
        }
#undef BENCH_KEY
    }
    if (p->inner < 1) p->inner = 1;
    if (p->scaled_n == 0 || p->scaled_n > p->n) p->scaled_n = p->n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Clocks, output, probes                                             */
/* ------------------------------------------------------------------ */

BENCH_INLINE double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

BENCH_INLINE void bench_sleep_us(long us)
{
    struct timespec ts;
    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000;
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

BENCH_INLINE void bench_emit(const char *w, const char *v, const char *metric,
                             double value)
{
    printf("%s,%s,%s,%.9g\n", w, v, metric, value);
    fflush(stdout);
}

/* A named field of /proc/self/status in KiB, or -1. */
BENCH_INLINE long bench_status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    size_t flen = strlen(field);
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, field, flen) && line[flen] == ':') {
            kib = strtol(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

/* CPU time (user + system, all threads) this process used, in ms. */
BENCH_INLINE double bench_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-3;
}

/* CPU clocks with nanosecond resolution. */
BENCH_INLINE double bench_clock_ms(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0) return 0;
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* CPU time of every live thread of the process, summed from each thread's
 * own CPU clock. Unlike getrusage() or CLOCK_PROCESS_CPUTIME_ID, which see
 * another thread's runtime only up to its last scheduler tick (so a busy
 * worker's last few ms land in the next interval), a thread clock includes
 * the running slice. The clock id is the one pthread_getcpuclockid() makes
 * from a thread id. Threads that already exited are not counted; every
 * pool measured here keeps its threads. */
BENCH_INLINE double bench_threads_cpu_ms(unsigned skip_tid)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    double sum = 0;
    if (!d) return bench_clock_ms(CLOCK_PROCESS_CPUTIME_ID);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        unsigned tid = (unsigned)strtoul(e->d_name, NULL, 10);
        if (tid == skip_tid) continue;
        clockid_t id = (clockid_t)((~tid << 3) | 6u); /* per-thread, sched */
        sum += bench_clock_ms(id);
    }
    closedir(d);
    return sum;
}

BENCH_INLINE double bench_proc_cpu_ms(void)
{
    return bench_threads_cpu_ms(0);
}

BENCH_INLINE double bench_thread_cpu_ms(void)
{
    return bench_clock_ms(CLOCK_THREAD_CPUTIME_ID);
}

/* The idle-burn probe: CPU the whole process spends while the caller just
 * sleeps right after a map returned. Spinning workers show up here. Both
 * the exact per-thread sum and the getrusage() figure are reported; the
 * latter may include up to one tick per thread of work done just before
 * the window opened. */
BENCH_INLINE void bench_idle_cpu_ms(int idle_ms, double *exact, double *rusage)
{
    /* The caller's own clock is read right around its sleep, so the cost
     * of walking /proc/self/task does not count as burn. */
    unsigned self = (unsigned)syscall(SYS_gettid);
    double w0 = bench_threads_cpu_ms(self), r0 = bench_cpu_ms();
    double s0 = bench_thread_cpu_ms();
    bench_sleep_us((long)idle_ms * 1000);
    double s1 = bench_thread_cpu_ms();
    *rusage = bench_cpu_ms() - r0;
    *exact = bench_threads_cpu_ms(self) - w0 + (s1 - s0);
}

BENCH_INLINE uint64_t bench_splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* A uniform double in [0, 1) from the seeded stream. */
BENCH_INLINE double bench_unit(uint64_t seed, uint64_t i)
{
    return (double)(bench_splitmix64(seed * 0x100000001B3ull + i) >> 11) *
           (1.0 / 9007199254740992.0);
}

/* ------------------------------------------------------------------ */
/* W1: tiny items                                                     */
/* ------------------------------------------------------------------ */

BENCH_INLINE double w1_f(double x, size_t i)
{
    return sqrt(x) * 1.0001 + (double)i;
}

BENCH_INLINE void w1_fill(double *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        in[i] = (double)(bench_splitmix64(i) % 1000003u) * 0.125;
}

/* Poisons the output with NaN so a variant that skips items fails the
 * check (and so the pages are touched before any timing). */
BENCH_INLINE void w1_poison(double *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NAN;
}

/* Items of [0, n) whose output is not exactly the serial result. */
BENCH_INLINE size_t w1_check(const double *in, const double *out, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!(out[i] == w1_f(in[i], i))) bad++;
    return bad;
}

/* ------------------------------------------------------------------ */
/* W2: 16 trivial items per map                                       */
/* ------------------------------------------------------------------ */

#define W2_ITEMS 16

/* Item i of map r writes 2*i + r; the caller sums every map's outputs.
 * The expected total is closed-form, so a lost or stale item shows. */
BENCH_INLINE uint64_t w2_expected(long reps)
{
    uint64_t r = (uint64_t)reps;
    return r * 2u * (W2_ITEMS * (W2_ITEMS - 1) / 2) +
           (uint64_t)W2_ITEMS * (r * (r - 1) / 2);
}

/* ------------------------------------------------------------------ */
/* W3: Pareto-distributed CPU work                                    */
/* ------------------------------------------------------------------ */

#define W3_A 6364136223846793005ull
#define W3_C 1442695040888963407ull

/* The spin work: k dependent LCG steps. The loop cannot be shortened by
 * the compiler, but its result has a closed form (w3_jump), so every
 * variant's outputs are checked exactly without redoing the work. */
BENCH_INLINE uint64_t w3_spin(uint64_t x, uint64_t k)
{
    for (uint64_t j = 0; j < k; j++)
        x = x * W3_A + W3_C;
    return x;
}

/* k LCG steps in O(log k): composes the affine map x -> a x + c. */
BENCH_INLINE uint64_t w3_jump(uint64_t x, uint64_t k)
{
    uint64_t a = W3_A, c = W3_C, acc_a = 1, acc_c = 0;
    while (k) {
        if (k & 1) {
            acc_a *= a;
            acc_c = acc_c * a + c;
        }
        c = (a + 1) * c;
        a *= a;
        k >>= 1;
    }
    return acc_a * x + acc_c;
}

/* Deterministic Pareto(alpha) weights in shuffled (drawn) order, scaled so
 * they add up to total_iters spin steps. */
BENCH_INLINE uint64_t *w3_make(size_t n, double alpha, double total_iters)
{
    double *w = (double *)malloc(n * sizeof *w);
    uint64_t *k = (uint64_t *)malloc(n * sizeof *k);
    double sum = 0;
    if (!w || !k) {
        fprintf(stderr, "bench: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) {
        double u = bench_unit(3, i);
        w[i] = pow(1.0 - u, -1.0 / alpha);
        sum += w[i];
    }
    for (size_t i = 0; i < n; i++) {
        double v = w[i] / sum * total_iters;
        k[i] = v < 1 ? 1 : (uint64_t)v;
    }
    free(w);
    return k;
}

BENCH_INLINE uint64_t w3_seed(size_t i)
{
    return bench_splitmix64(i + 77);
}

BENCH_INLINE size_t w3_check(const uint64_t *iters, const uint64_t *out,
                             size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (out[i] != w3_jump(w3_seed(i), iters[i])) bad++;
    return bad;
}

/* ------------------------------------------------------------------ */
/* W4: blocking items                                                 */
/* ------------------------------------------------------------------ */

BENCH_INLINE long *w4_make(size_t n, int max_us, double *ideal_s,
                           int threads)
{
    long *us = (long *)malloc(n * sizeof *us);
    double sum = 0, longest = 0;
    if (!us) {
        fprintf(stderr, "bench: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) {
        us[i] = (long)(bench_unit(4, i) * (double)(max_us + 1));
        sum += (double)us[i];
        if ((double)us[i] > longest) longest = (double)us[i];
    }
    *ideal_s = fmax(sum / threads, longest) * 1e-6;
    return us;
}

BENCH_INLINE uint32_t w4_token(size_t i)
{
    return (uint32_t)(i * 2654435761u) ^ 0x5a5a5a5au;
}

BENCH_INLINE size_t w4_check(const uint32_t *out, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (out[i] != w4_token(i)) bad++;
    return bad;
}

BENCH_INLINE void *bench_xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

#endif /* PARMAP_BENCH_COMMON_H */
