/*
 * How many threads a pool gets by default: the CPUs this process may
 * actually use, which in a container is often fewer than the machine has.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* CPUs in the affinity mask. The mask is grown until it holds every CPU
 * the kernel knows, so machines with more than CPU_SETSIZE CPUs count
 * right. */
static size_t affinity_count(void)
{
    for (int ncpu = 1024; ncpu <= (1 << 20); ncpu *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpu);
        size_t size = CPU_ALLOC_SIZE(ncpu);
        if (set == NULL)
            break;
        if (sched_getaffinity(0, size, set) == 0) {
            int count = CPU_COUNT_S(size, set);
            CPU_FREE(set);
            return count > 0 ? (size_t)count : 1;
        }
        CPU_FREE(set);
        if (errno != EINVAL)
            break;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (size_t)online : 1;
}

/* CPUs a quota of `quota` microseconds per `period` allows, rounded up. */
static size_t quota_cpus(long long quota, long long period)
{
    if (quota <= 0 || period <= 0)
        return 0;
    return (size_t)((quota + period - 1) / period);
}

/* The cgroup v2 path of this process ("0::/path" in /proc/self/cgroup). */
static int cgroup2_path(char *buf, size_t size)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    char line[512];
    int found = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(buf, size, "%s", line + 3);
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

/* A cgroup v2 "cpu.max" file: "max 100000" or "<quota> <period>". */
static size_t cgroup2_limit(const char *dir)
{
    char file[PATH_MAX];
    char word[32];
    long long quota, period;
    size_t cpus = 0;
    FILE *f;

    int len = snprintf(file, sizeof file, "/sys/fs/cgroup%s/cpu.max", dir);
    if (len < 0 || (size_t)len >= sizeof file)
        return 0;
    f = fopen(file, "re");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%31s %lld", word, &period) == 2 && strcmp(word, "max"))
        if (sscanf(word, "%lld", &quota) == 1)
            cpus = quota_cpus(quota, period);
    fclose(f);
    return cpus;
}

static long long read_ll(const char *file)
{
    long long v = -1;
    FILE *f = fopen(file, "re");

    if (f == NULL)
        return -1;
    if (fscanf(f, "%lld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

/* The tightest CPU quota of this process's cgroup and its ancestors, or 0
 * when there is none. */
static size_t cgroup_limit(void)
{
    char path[PATH_MAX];
    size_t best = 0;

    if (cgroup2_path(path, sizeof path) && path[0] == '/') {
        /* Walk up to the root: a parent's quota also binds its children. */
        for (;;) {
            if (strcmp(path, "/") == 0)
                path[0] = '\0';
            size_t cpus = cgroup2_limit(path);
            if (cpus > 0 && (best == 0 || cpus < best))
                best = cpus;
            if (path[0] == '\0')
                break;
            *strrchr(path, '/') = '\0';
        }
        if (best > 0)
            return best;
    }
    /* cgroup v1, as mounted in the usual place. */
    return quota_cpus(read_ll("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                      read_ll("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
}

size_t parmap_cpu_count(void)
{
    size_t cpus = affinity_count();
    size_t quota = cgroup_limit();

    if (quota > 0 && quota < cpus)
        cpus = quota;
    return cpus > 0 ? cpus : 1;
}

/* PARMAP_NUM_THREADS, when it is a positive decimal integer, as users
 * know OMP_NUM_THREADS; otherwise the CPU count. */
size_t parmap__default_threads(void)
{
    const char *env = getenv("PARMAP_NUM_THREADS");

    if (env != NULL) {
        const char *p = env;
        while (isspace((unsigned char)*p))
            p++;
        if (isdigit((unsigned char)*p)) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(p, &end, 10);
            while (isspace((unsigned char)*end))
                end++;
            if (errno == 0 && *end == '\0' && v > 0 && v <= 65536)
                return (size_t)v;
        }
    }
    return parmap_cpu_count();
}
