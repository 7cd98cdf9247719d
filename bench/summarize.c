/*
 * summarize.c: turns the raw samples of run.sh into the results table.
 *
 *   summarize RAW.csv RESULTS.csv PLOTDIR THREADS
 *
 * RAW.csv lines are `round,workload,variant,metric,value` (one header line).
 * Ratios are formed per round first (each variant against the serial loop or
 * pthreadpool measured in the same round, so a noisy round moves both sides)
 * and only then summarised as median [min-max] over the rounds.
 *
 * Writes RESULTS.csv (workload,variant,metric,median,min,max,rounds,status),
 * prints the table and a "parmap against the best peer" digest, and writes
 * PLOTDIR/W?.dat for run.sh's gnuplot chart.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sample {
    int round;
    char w[8];
    char v[40];
    char m[40];
    double val;
} sample;

static sample *smp;
static size_t nsmp, capsmp;
static int threads = 2;

static void add(int round, const char *w, const char *v, const char *m,
                double val)
{
    if (nsmp == capsmp) {
        capsmp = capsmp ? 2 * capsmp : 1024;
        smp = realloc(smp, capsmp * sizeof *smp);
        if (!smp) {
            perror("summarize");
            exit(1);
        }
    }
    sample *s = &smp[nsmp++];
    s->round = round;
    snprintf(s->w, sizeof s->w, "%s", w);
    snprintf(s->v, sizeof s->v, "%s", v);
    snprintf(s->m, sizeof s->m, "%s", m);
    s->val = val;
}

static const sample *find(int round, const char *w, const char *v,
                          const char *m)
{
    for (size_t i = 0; i < nsmp; i++)
        if (smp[i].round == round && !strcmp(smp[i].w, w) &&
            !strcmp(smp[i].v, v) && !strcmp(smp[i].m, m))
            return &smp[i];
    return NULL;
}

/* Canonical order of variants in tables and charts. */
static const char *order[] = {
    "serial", "serial_fnptr", "omp", "omp_static", "omp_guided", "omp_dynamic1",
    "pthreadpool_1d", "pthreadpool_tile4096", "pthreadpool_yield",
    "tbb_auto", "glib_item", "cthreadpool_item", "parmap",
    "parmap_chunk4096"};
#define NORDER (sizeof order / sizeof order[0])

static size_t rank(const char *v)
{
    for (size_t i = 0; i < NORDER; i++)
        if (!strcmp(order[i], v)) return i;
    return NORDER;
}

/* ------------------------------------------------------------------ */

typedef struct stat {
    char w[8], v[40], m[40];
    double med, min, max;
    int n;
} stat;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int stat_of(const char *w, const char *v, const char *m, stat *st)
{
    double vals[4096];
    int n = 0;
    for (size_t i = 0; i < nsmp && n < 4096; i++)
        if (!strcmp(smp[i].w, w) && !strcmp(smp[i].v, v) &&
            !strcmp(smp[i].m, m))
            vals[n++] = smp[i].val;
    if (!n) return 0;
    qsort(vals, (size_t)n, sizeof vals[0], cmp_double);
    snprintf(st->w, sizeof st->w, "%s", w);
    snprintf(st->v, sizeof st->v, "%s", v);
    snprintf(st->m, sizeof st->m, "%s", m);
    st->n = n;
    st->min = vals[0];
    st->max = vals[n - 1];
    st->med = n % 2 ? vals[n / 2] : 0.5 * (vals[n / 2 - 1] + vals[n / 2]);
    return 1;
}

/* "ok", "INVALID" (an output check failed) or "FAILED" (crash, timeout,
 * error exit). W5 numbers come from the W1 processes. */
static const char *status_of(const char *w, const char *v)
{
    const char *src = !strcmp(w, "W5") ? "W1" : w;
    int failed = 0, invalid = 0, any = 0;
    for (size_t i = 0; i < nsmp; i++) {
        if (strcmp(smp[i].w, src) || strcmp(smp[i].v, v)) continue;
        if (!strcmp(smp[i].m, "failed")) failed = 1;
        if (!strcmp(smp[i].m, "valid")) {
            any = 1;
            if (smp[i].val != 1) invalid = 1;
        }
    }
    if (failed) return "FAILED";
    if (invalid) return "INVALID";
    return any ? "ok" : "UNCHECKED";
}

/* Variants of a workload in canonical order. */
static size_t variants_of(const char *w, const char **out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < nsmp; i++) {
        if (strcmp(smp[i].w, w)) continue;
        int seen = 0;
        for (size_t j = 0; j < k; j++)
            if (!strcmp(out[j], smp[i].v)) seen = 1;
        if (!seen && k < cap) out[k++] = smp[i].v;
    }
    for (size_t a = 1; a < k; a++) /* insertion sort by rank */
        for (size_t b = a; b > 0 && rank(out[b]) < rank(out[b - 1]); b--) {
            const char *t = out[b];
            out[b] = out[b - 1];
            out[b - 1] = t;
        }
    return k;
}

/* ------------------------------------------------------------------ */

static void fmt_num(char *buf, size_t len, double x)
{
    double a = fabs(x);
    if (a >= 100) snprintf(buf, len, "%.0f", x);
    else if (a >= 10) snprintf(buf, len, "%.1f", x);
    else if (a >= 1) snprintf(buf, len, "%.2f", x);
    else if (a >= 0.01 || a == 0) snprintf(buf, len, "%.3f", x);
    else snprintf(buf, len, "%.2g", x);
}

static void fmt_cell(char *buf, size_t len, const stat *st, double scale)
{
    char a[32], b[32], c[32];
    fmt_num(a, sizeof a, st->med * scale);
    if (st->n < 2) {
        snprintf(buf, len, "%s", a);
        return;
    }
    fmt_num(b, sizeof b, st->min * scale);
    fmt_num(c, sizeof c, st->max * scale);
    snprintf(buf, len, "%s [%s-%s]", a, b, c);
}

typedef struct col {
    const char *metric;
    const char *title;
    double scale;
} col;

typedef struct wspec {
    const char *w;
    const char *title;
    col cols[5];
    /* The headline metric for the digest and the chart. */
    const char *main_metric;
    int higher_better;
    const char *plot_label;
} wspec;

static const wspec specs[] = {
    {"W1", "W1  tiny items out[i] = sqrt(in[i])*1.0001 + i, 2 threads",
     {{"time_s", "time ms", 1e3}, {"speedup", "speedup vs serial", 1},
      {"cpu_s", "CPU ms (all threads)", 1e3},
      {"cpu_vs_serial", "CPU / serial CPU", 1}},
     "speedup", 1, "W1 speedup vs serial (higher is better)"},
    {"W1H", "W1H W1 while another process keeps one CPU busy (serial too)",
     {{"time_s", "time ms", 1e3}, {"speedup", "speedup vs serial", 1},
      {"cpu_s", "CPU ms (all threads)", 1e3},
      {"cpu_vs_serial", "CPU / serial CPU", 1}},
     "speedup", 1, "W1H speedup vs serial, one CPU busy (higher is better)"},
    {"W2", "W2  fork-join: 16 trivial items per map, 2 threads",
     {{"us_per_map", "us per map", 1},
      {"vs_pthreadpool", "x pthreadpool", 1},
      {"cpu_us_per_map", "CPU us per map", 1},
      {"idle_cpu_ms", "idle CPU ms/1s", 1},
      {"idle_cpu_rusage_ms", "(getrusage)", 1}},
     "us_per_map", 0, "W2 microseconds per map (lower is better)"},
    {"W3", "W3  2000 Pareto(1.7) CPU items, 2 threads",
     {{"time_s", "makespan s", 1}, {"efficiency", "efficiency", 1},
      {"cpu_vs_serial", "CPU / serial CPU", 1}},
     "efficiency", 1, "W3 efficiency (higher is better)"},
    {"W4", "W4  items sleeping 0-20 ms, 64 threads",
     {{"makespan_s", "makespan ms", 1e3},
      {"over_ideal", "makespan / ideal", 1},
      {"idle_cpu_ms", "idle CPU ms/1s", 1},
      {"idle_cpu_rusage_ms", "(getrusage)", 1}},
     "over_ideal", 0, "W4 makespan / ideal (lower is better)"},
    {"W5", "W5  memory added during W1 (VmHWM delta after the arrays)",
     {{"mib_added", "MiB added", 1}},
     "mib_added", 0, "W5 MiB added (lower is better)"},
    {"W6", "W6  progress callback cost on W1, parmap: time (CPU) with / without, paired",
     {{"progress_cost", "0.1 s: time ratio", 1},
      {"progress_cost_cpu", "0.1 s: CPU ratio", 1},
      {"progress0_cost", "0 s: time ratio", 1},
      {"progress0_cost_cpu", "0 s: CPU ratio", 1}},
     "progress_cost", 0, "W6 time with / without progress (lower is better)"},
};
#define NSPECS (sizeof specs / sizeof specs[0])

static void derive(void)
{
    size_t n0 = nsmp;
    for (size_t i = 0; i < n0; i++) {
        sample s = smp[i];
        const sample *b;
        if (!strcmp(s.m, "time_s") &&
            (!strcmp(s.w, "W1") || !strcmp(s.w, "W1H")) &&
            (b = find(s.round, s.w, "serial", "time_s")) && s.val > 0)
            add(s.round, s.w, s.v, "speedup", b->val / s.val);
        if (!strcmp(s.m, "time_s") && !strcmp(s.w, "W3") &&
            (b = find(s.round, "W3", "serial", "time_s")) && s.val > 0)
            add(s.round, s.w, s.v, "efficiency", b->val / threads / s.val);
        if (!strcmp(s.m, "cpu_s") && (!strcmp(s.w, "W1") || !strcmp(s.w, "W1H") ||
                                      !strcmp(s.w, "W3")) &&
            (b = find(s.round, s.w, "serial", "cpu_s")) && b->val > 0)
            add(s.round, s.w, s.v, "cpu_vs_serial", s.val / b->val);
        if (!strcmp(s.m, "us_per_map") &&
            (b = find(s.round, "W2", "pthreadpool_1d", "us_per_map")) &&
            b->val > 0)
            add(s.round, s.w, s.v, "vs_pthreadpool", s.val / b->val);
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s RAW.csv RESULTS.csv PLOTDIR [THREADS]\n",
                argv[0]);
        return 2;
    }
    if (argc > 4) threads = atoi(argv[4]);
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char w[8], v[40], m[40];
        int round;
        double val;
        if (sscanf(line, "%d,%7[^,],%39[^,],%39[^,],%lf", &round, w, v, m,
                   &val) == 5)
            add(round, w, v, m, val);
    }
    fclose(f);
    derive();

    FILE *out = fopen(argv[2], "w");
    if (!out) {
        perror(argv[2]);
        return 1;
    }
    fprintf(out, "workload,variant,metric,median,min,max,rounds,status\n");

    const char *vars[64];
    for (size_t s = 0; s < NSPECS; s++) {
        const wspec *sp = &specs[s];
        size_t nv = variants_of(sp->w, vars, 64);
        if (!nv) continue;
        /* Every metric of the workload goes to the CSV. */
        for (size_t k = 0; k < nv; k++) {
            const char *ms[32];
            size_t nm = 0;
            for (size_t i = 0; i < nsmp; i++) {
                if (strcmp(smp[i].w, sp->w) || strcmp(smp[i].v, vars[k]))
                    continue;
                int seen = 0;
                for (size_t j = 0; j < nm; j++)
                    if (!strcmp(ms[j], smp[i].m)) seen = 1;
                if (!seen && nm < 32) ms[nm++] = smp[i].m;
            }
            for (size_t j = 0; j < nm; j++) {
                stat st;
                if (!stat_of(sp->w, vars[k], ms[j], &st)) continue;
                fprintf(out, "%s,%s,%s,%.6g,%.6g,%.6g,%d,%s\n", sp->w,
                        vars[k], ms[j], st.med, st.min, st.max, st.n,
                        status_of(sp->w, vars[k]));
            }
        }

        /* The table. */
        printf("\n%s\n  %-22s", sp->title, "variant");
        for (int c = 0; c < 5 && sp->cols[c].metric; c++)
            printf("  %-22s", sp->cols[c].title);
        printf("\n");
        for (size_t k = 0; k < nv; k++) {
            const char *status = status_of(sp->w, vars[k]);
            printf("  %-22s", vars[k]);
            for (int c = 0; c < 5 && sp->cols[c].metric; c++) {
                stat st;
                char cell[128] = "-";
                if (strcmp(status, "ok")) snprintf(cell, sizeof cell, "%s", status);
                else if (stat_of(sp->w, vars[k], sp->cols[c].metric, &st))
                    fmt_cell(cell, sizeof cell, &st, sp->cols[c].scale);
                printf("  %-22s", cell);
            }
            stat sc;
            if (stat_of(sp->w, vars[k], "scaled_from_items", &sc))
                printf("  (timed on %.0f items, scaled)", sc.med);
            printf("\n");
        }

        /* The chart's data: the headline metric of every valid variant. */
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.dat", argv[3], sp->w);
        FILE *pd = fopen(path, "w");
        if (pd) {
            fprintf(pd, "# %s\n", sp->plot_label);
            if (!strcmp(sp->w, "W6")) /* the reference bar: no callback */
                fprintf(pd, "\"parmap (no progress)\" 1 1 1 2\n");
            for (size_t k = 0; k < nv; k++) {
                stat st;
                if (strcmp(status_of(sp->w, vars[k]), "ok") ||
                    !stat_of(sp->w, vars[k], sp->main_metric, &st))
                    continue;
                fprintf(pd, "\"%s%s\" %.6g %.6g %.6g %d\n", vars[k],
                        strcmp(sp->w, "W6") ? "" : " + progress", st.med,
                        st.min, st.max,
                        strncmp(vars[k], "parmap", 6) ? 1 : 2);
            }
            fclose(pd);
        }
    }
    fclose(out);

    /* The digest: where parmap stands against the best valid peer, on the
     * headline metrics and on CPU cost (which neighbours disturb less). */
    static const struct {
        const char *w, *metric;
        int higher_better;
    } digest[] = {
        {"W1", "speedup", 1},     {"W1", "cpu_vs_serial", 0},
        {"W1H", "speedup", 1},
        {"W2", "us_per_map", 0},  {"W2", "cpu_us_per_map", 0},
        {"W3", "efficiency", 1},  {"W3", "cpu_vs_serial", 0},
        {"W4", "over_ideal", 0},  {"W5", "mib_added", 0},
        {"W6", "progress_cost", 0},
    };
    printf("\nparmap against the best peer (medians of per-round values)\n");
    for (size_t s = 0; s < sizeof digest / sizeof digest[0]; s++) {
        const char *w = digest[s].w, *metric = digest[s].metric;
        int hb = digest[s].higher_better;
        size_t nv = variants_of(w, vars, 64);
        stat pm = {0}, best = {0}, st;
        int have_pm = 0, have_best = 0;
        for (size_t k = 0; k < nv; k++) {
            if (strcmp(status_of(w, vars[k]), "ok") ||
                !stat_of(w, vars[k], metric, &st))
                continue;
            if (!strcmp(vars[k], "parmap")) {
                pm = st;
                have_pm = 1;
            } else if (strncmp(vars[k], "serial", 6) &&
                       strncmp(vars[k], "parmap", 6)) {
                int better = !have_best ||
                             (hb ? st.med > best.med : st.med < best.med);
                if (better) {
                    best = st;
                    have_best = 1;
                }
            }
        }
        if (!strcmp(w, "W6") && have_pm) {
            printf("  %-3s progress callback cost %+.1f%% [%+.1f%% to %+.1f%%] "
                   "(target < 2%%)",
                   w, (pm.med - 1) * 100, (pm.min - 1) * 100,
                   (pm.max - 1) * 100);
            if (stat_of("W6", "parmap", "progress_cost_cpu", &st))
                printf("; CPU %+.1f%%", (st.med - 1) * 100);
            if (stat_of("W6", "parmap", "progress0_cost", &st))
                printf("; interval 0: %+.1f%%", (st.med - 1) * 100);
            if (stat_of("W6", "parmap", "progress0_cost_cpu", &st))
                printf(", CPU %+.1f%%", (st.med - 1) * 100);
            printf("\n");
            continue;
        }
        if (!have_pm || !have_best) {
            if (nv) printf("  %-3s %-15s parmap: no valid result\n", w, metric);
            continue;
        }
        char a[32], b[32], d[32];
        fmt_num(a, sizeof a, pm.med);
        fmt_num(b, sizeof b, best.med);
        if (!strcmp(w, "W5")) {
            fmt_num(d, sizeof d, pm.med - best.med);
            printf("  %-3s %-15s parmap %s MiB, best peer %s %s MiB "
                   "(parmap %s MiB more)\n",
                   w, metric, a, best.v, b, d);
            continue;
        }
        /* > 1 means parmap does better than every peer. */
        double rel = hb ? pm.med / best.med : best.med / pm.med;
        printf("  %-3s %-15s parmap %s, best peer %s %s: parmap %s by %.0f%%\n",
               w, metric, a, best.v, b, rel >= 1 ? "ahead" : "behind",
               rel >= 1 ? (rel - 1) * 100 : (1 - rel) * 100);
    }
    const char *idle_w[] = {"W2", "W4"};
    for (int i = 0; i < 2; i++) {
        stat st, ru;
        if (stat_of(idle_w[i], "parmap", "idle_cpu_ms", &st)) {
            printf("  %-3s idle CPU after a map: %.2f ms in 1 s (max %.2f; "
                   "target < 5 ms)",
                   idle_w[i], st.med, st.max);
            if (stat_of(idle_w[i], "parmap", "idle_cpu_rusage_ms", &ru))
                printf("; getrusage says %.2f (max %.2f)", ru.med, ru.max);
            printf("\n");
        }
    }
    return 0;
}
