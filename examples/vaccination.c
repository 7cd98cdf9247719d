/*
 * vaccination.c: a dynamic task list that stays full (asyncio's
 * wait(FIRST_COMPLETED) loop that replaces each finished task).
 *
 * Three vaccination stations each empty a box of 100 doses, one dose at a
 * time, each dose taking 1 to 100 ms; a station that finishes a box starts
 * the next one, until 100 boxes are done. Each box is a task in a parmap
 * task group; the main thread waits for any box to finish
 * (PARMAP_WAIT_ANY), reports it with the time, and hands that station its
 * next box (parmap_group_submit). Now and then a vial breaks and the box
 * fails: that is reported and the same box is restarted from its first
 * dose under the same task id (parmap_group_resubmit).
 *
 * Time is scaled 1:100 so the program runs in a few seconds: a dose takes
 * 10 to 1000 us instead of 1 to 100 ms, so a box takes about 50 ms instead
 * of about 5 s, and 100 boxes about 2 s instead of about 3 minutes.
 *
 * Usage: vaccination [boxes]   (default 100). Against an installed parmap:
 *     cc -std=c11 -O2 vaccination.c $(pkg-config --cflags --libs parmap)
 *
 * Exit status: 0 when every box was emptied exactly once (failed attempts
 * restarted), 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <parmap.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATIONS 3
#define DOSES 100
/* A dose takes 1 to 100 ms in the original; here 1 ms is this many ns. */
#define MS_NS 10000L
/* A vial breaks once in this many doses (on average a box in 7 fails). */
#define BREAK_ONE_IN 650

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* One box of doses. Only its task touches it while it runs; the main
 * thread reads it after the group reports the task finished. */
struct box {
    unsigned number;   /* 1, 2, ... */
    unsigned station;  /* 1 to STATIONS */
    unsigned attempts; /* times the station started it */
    unsigned given;    /* doses given in the last attempt */
    unsigned broken_at; /* dose whose vial broke, or 0 */
    double ms;         /* unscaled duration of the last attempt */
};

static void sleep_ns(long ns)
{
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The task: give the box's doses one by one. */
static int empty_box(void *ctx)
{
    struct box *b = ctx;
    unsigned attempt = ++b->attempts;

    b->given = 0;
    b->broken_at = 0;
    b->ms = 0;
    for (unsigned d = 1; d <= DOSES; d++) {
        uint64_t h = mix64(((uint64_t)b->number << 32) ^ (attempt << 16) ^ d);
        unsigned ms = 1 + (unsigned)(h % 100);
        sleep_ns(ms * MS_NS);
        b->ms += ms;
        /* The first attempt at a box may break a vial; a restart never
         * does, so every box gets done. */
        if (attempt == 1 && (h >> 32) % BREAK_ONE_IN == 0) {
            b->broken_at = d;
            return -EIO;
        }
        b->given++;
    }
    return 0;
}

int main(int argc, char **argv)
{
    unsigned boxes = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 100;
    parmap_pool *pool = NULL;
    parmap_group *group = NULL;
    struct box *box;
    unsigned started = 0, done = 0, restarts = 0;
    unsigned per_station[STATIONS + 1] = {0};
    int ok = 1, rc;

    if (boxes == 0)
        boxes = 1;
    box = calloc(boxes, sizeof *box);
    /* Task ids index this; a box keeps its id when restarted. */
    size_t *box_of_id = calloc(boxes, sizeof *box_of_id);
    if (box == NULL || box_of_id == NULL) {
        fprintf(stderr, "vaccination: out of memory\n");
        return 1;
    }
    /* One thread per station plus the main thread, which only waits and
     * hands out boxes; the group runs at most one box per station. */
    if ((rc = parmap_pool_create(&pool, STATIONS + 1, NULL)) != 0 ||
        (rc = parmap_group_create(
             &group, pool, &(parmap_opts){.max_concurrency = STATIONS})) !=
            0) {
        fprintf(stderr, "vaccination: %s\n", parmap_strerror(rc));
        return 1;
    }

    printf("parmap %s: %d vaccination stations, %u boxes of %d doses, "
           "1-100 ms per dose\n",
           parmap_version(), STATIONS, boxes, DOSES);
    printf("Time is scaled 1:100: a dose takes 10-1000 us here, a box about "
           "50 ms;\nthe times on the left are real, the box durations "
           "unscaled.\n\n");

    double t0 = now();
    for (unsigned s = 1; s <= STATIONS && started < boxes; s++, started++) {
        size_t id;
        box[started] = (struct box){.number = started + 1, .station = s};
        parmap_group_submit(group, empty_box, &box[started], &id);
        box_of_id[id] = started;
    }
    while (done < boxes) {
        size_t id;
        int status;
        rc = parmap_group_wait(group, PARMAP_WAIT_ANY, -1.0, &id, &status);
        if (rc != 0) {
            printf("unexpected: parmap_group_wait returned %s\n",
                   parmap_err_name(rc));
            ok = 0;
            break;
        }
        struct box *b = &box[box_of_id[id]];
        double t = now() - t0;
        if (status != 0) {
            printf("%7.3f s  station %u: box %3u FAILED at dose %u (%s); "
                   "restarting it\n",
                   t, b->station, b->number, b->broken_at,
                   status == -EIO ? "a vial broke" : parmap_strerror(status));
            restarts++;
            if (parmap_group_resubmit(group, id) != 0) {
                printf("unexpected: resubmit failed\n");
                ok = 0;
                break;
            }
            continue;
        }
        done++;
        per_station[b->station]++;
        printf("%7.3f s  station %u: box %3u done, %u doses in %.1f s "
               "(unscaled)%s\n",
               t, b->station, b->number, b->given, b->ms / 1000.0,
               b->attempts > 1 ? ", after a restart" : "");
        if (b->given != DOSES)
            ok = 0;
        if (started < boxes) {
            /* The same station starts its next box. */
            size_t next;
            box[started] =
                (struct box){.number = started + 1, .station = b->station};
            if (parmap_group_submit(group, empty_box, &box[started], &next) !=
                0) {
                printf("unexpected: submit failed\n");
                ok = 0;
                break;
            }
            box_of_id[next] = started;
            started++;
        }
    }
    double wall = now() - t0;

    /* Every box done once, its failed attempts restarted. */
    size_t finished = 0, pending = 0;
    parmap_group_counts(group, &finished, &pending);
    unsigned attempts = 0;
    double serial_ms = 0;
    for (unsigned i = 0; i < boxes; i++) {
        attempts += box[i].attempts;
        serial_ms += box[i].ms;
        if (box[i].given != DOSES)
            ok = 0;
    }
    ok = ok && done == boxes && finished == boxes && pending == 0 &&
         attempts == boxes + restarts;

    printf("\n%u boxes done in %.2f s, %u failed attempts restarted; boxes "
           "per station:",
           done, wall, restarts);
    for (unsigned s = 1; s <= STATIONS; s++)
        printf(" %u", per_station[s]);
    printf("\nOne station alone would have needed about %.1f s (scaled).\n",
           serial_ms * MS_NS / 1e9);

    parmap_group_destroy(group);
    parmap_pool_destroy(pool);
    free(box);
    free(box_of_id);
    printf("%s\n", ok ? "vaccination: every box emptied exactly once"
                      : "vaccination: FAILED");
    return ok ? 0 : 1;
}
