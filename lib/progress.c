/*
 * Progress state: counts of finished items and the user's progress
 * callback, called at most once per interval and never twice at once.
 *
 * Threads publish their counts once per chunk, not once per item, so a
 * map over millions of tiny items does not bounce a shared cache line
 * around on every item. Whichever thread finds the interval elapsed takes
 * the `busy` flag and reports; a thread that finds it taken skips, since
 * the report under way will be followed by another soon enough. Counts are
 * read after the flag is taken, so `done` never goes backwards.
 */
#include "internal.h"

void parmap__progress_init(struct parmap__progress *p, parmap_progress_fn fn,
                           void *ctx, double interval, size_t total,
                           uint64_t start_ns)
{
    atomic_init(&p->done, 0);
    atomic_init(&p->failed, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->last_ns, start_ns);
    p->fn = fn;
    p->ctx = ctx;
    /* Intervals beyond a day are as good as "only the final call". */
    p->interval_ns =
        interval > 86400.0 ? UINT64_C(86400000000000)
                           : (uint64_t)(interval * 1e9 + 0.5);
    p->start_ns = start_ns;
    p->total = total;
}

static int report(struct parmap__progress *p, uint64_t now_ns)
{
    parmap_progress snap;

    /* Failures are added after completions (with release) and read
     * before them (with acquire), so a snapshot never shows more failed
     * items than done ones. */
    snap.failed = atomic_load_explicit(&p->failed, memory_order_acquire);
    snap.done = atomic_load_explicit(&p->done, memory_order_relaxed);
    snap.total = p->total;
    snap.elapsed = (double)(now_ns - p->start_ns) * 1e-9;
    return p->fn(p->ctx, &snap);
}

int parmap__progress_add(struct parmap__progress *p, size_t ok, size_t bad,
                         uint64_t now_ns)
{
    int rc = 0;

    if (ok + bad != 0)
        atomic_fetch_add_explicit(&p->done, ok + bad, memory_order_relaxed);
    if (bad != 0)
        atomic_fetch_add_explicit(&p->failed, bad, memory_order_release);
    if (p->fn == NULL)
        return 0;

    uint64_t last = atomic_load_explicit(&p->last_ns, memory_order_relaxed);
    if (now_ns - last < p->interval_ns && p->interval_ns != 0)
        return 0;
    if (atomic_exchange_explicit(&p->busy, 1, memory_order_acquire) != 0)
        return 0;
    /* Re-check under the flag: another thread may just have reported.
     * The clock is read again so `elapsed` never goes backwards either. */
    now_ns = parmap__now_ns();
    last = atomic_load_explicit(&p->last_ns, memory_order_relaxed);
    if (p->interval_ns == 0 || now_ns - last >= p->interval_ns) {
        atomic_store_explicit(&p->last_ns, now_ns, memory_order_relaxed);
        rc = report(p, now_ns);
    }
    atomic_store_explicit(&p->busy, 0, memory_order_release);
    return rc;
}

void parmap__progress_final(struct parmap__progress *p, uint64_t now_ns)
{
    /* Every helper has left, so nobody else holds `busy`. A request to
     * stop has nothing left to stop here; its return value is ignored. */
    if (p->fn != NULL) {
        uint64_t last = atomic_load_explicit(&p->last_ns, memory_order_relaxed);
        if (now_ns < last)
            now_ns = last;
        (void)report(p, now_ns);
    }
}
