/*
 * Stopping early, for maps, streams and groups alike: cancellation tokens,
 * halt rules, deadlines, and parmap_should_stop().
 *
 * A call stops once: the first thread to move `state` away from RUNNING
 * (by compare-and-swap) writes the call's result code, then publishes it. "Soon" stops only
 * keep new items from starting; "now" stops also make parmap_should_stop()
 * non-zero inside running callbacks. Triggered tokens and passed deadlines
 * are noticed by polling, so a token can be triggered from a signal
 * handler with one atomic store.
 *
 * No locks here.
 */
#include "internal.h"

#include <stdlib.h>

/* The item this thread runs, if any. Thread-local rather than global: two
 * pools (or two nested calls) never see each other's. */
static _Thread_local struct parmap__running *current;

int parmap_cancel_create(parmap_cancel **cancel)
{
    parmap_cancel *c;

    if (cancel == NULL)
        return -EINVAL;
    c = parmap__calloc(1, sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    atomic_init(&c->triggered, 0);
    *cancel = c;
    return 0;
}

void parmap_cancel_destroy(parmap_cancel *cancel)
{
    free(cancel);
}

void parmap_cancel_trigger(parmap_cancel *cancel)
{
    if (cancel != NULL)
        atomic_store(&cancel->triggered, 1);
}

int parmap_cancel_triggered(const parmap_cancel *cancel)
{
    return cancel != NULL &&
           atomic_load(&((parmap_cancel *)cancel)->triggered) != 0;
}

void parmap_cancel_reset(parmap_cancel *cancel)
{
    if (cancel != NULL)
        atomic_store(&cancel->triggered, 0);
}

static int bad_seconds(double s)
{
    return !(s >= 0.0); /* negative or NaN */
}

int parmap__stop_check_opts(const parmap_opts *o)
{
    if (bad_seconds(o->progress_interval) || bad_seconds(o->timeout) ||
        bad_seconds(o->item_timeout) || bad_seconds(o->retry_delay) ||
        bad_seconds(o->retry_delay_max))
        return -EINVAL;
    if ((unsigned)o->halt.when > PARMAP_HALT_NOW ||
        (unsigned)o->halt.on > PARMAP_HALT_ON_DONE)
        return -EINVAL;
    if (!(o->halt.percent >= 0.0 && o->halt.percent <= 100.0))
        return -EINVAL;
    return 0;
}

uint64_t parmap__backoff_ns(uint64_t first_ns, uint64_t max_ns,
                           unsigned attempts)
{
    uint64_t d = first_ns;

    for (unsigned a = 1; a < attempts && d < UINT64_MAX / 4; a++)
        d *= 2;
    if (max_ns != 0 && d > max_ns)
        d = max_ns;
    return d;
}

uint64_t parmap__seconds_to_ns(double seconds)
{
    /* Anything beyond a century is "never". */
    if (seconds > 3.15e9)
        return UINT64_MAX / 2;
    return (uint64_t)(seconds * 1e9 + 0.5);
}

void parmap__stop_init(struct parmap__stop *st, const parmap_opts *o,
                       size_t total, uint64_t start_ns)
{
    atomic_init(&st->state, PARMAP__RUNNING);
    st->code = 0;
    st->not_run = PARMAP_ENOTRUN;
    atomic_init(&st->ok, 0);
    atomic_init(&st->failed, 0);
    st->cancel = o->cancel;
    st->deadline_ns =
        o->timeout > 0.0 ? start_ns + parmap__seconds_to_ns(o->timeout) : 0;
    st->item_timeout_ns =
        o->item_timeout > 0.0 ? parmap__seconds_to_ns(o->item_timeout) : 0;
    st->halt = o->halt;
    if (o->flags & PARMAP_FAIL_FAST) {
        /* Fail-fast is the rule {SOON, ON_FAIL, 1}, unless a stricter rule
         * on failures was given. */
        if (st->halt.when == PARMAP_HALT_NEVER ||
            st->halt.on != PARMAP_HALT_ON_FAIL) {
            st->halt.when = PARMAP_HALT_SOON;
            st->halt.on = PARMAP_HALT_ON_FAIL;
            st->halt.percent = 0.0;
        }
        st->halt.count = 1;
    }
    if (st->halt.count == 0 && st->halt.percent == 0.0)
        st->halt.when = PARMAP_HALT_NEVER;
    st->total = total;
}

/* Stops the call; `not_run` is the status items that never start get. */
static int stop_with(struct parmap__stop *st, int now, int code, int not_run)
{
    int running = PARMAP__RUNNING;

    if (atomic_load_explicit(&st->state, memory_order_relaxed) !=
            PARMAP__RUNNING ||
        !atomic_compare_exchange_strong(&st->state, &running,
                                        PARMAP__STOPPING))
        return 0;
    /* Release: whoever sees SOON or NOW also sees the code. */
    st->code = code;
    st->not_run = not_run;
    atomic_store_explicit(&st->state,
                          now ? PARMAP__STOP_NOW : PARMAP__STOP_SOON,
                          memory_order_release);
    return 1;
}

int parmap__stop(struct parmap__stop *st, int now, int code)
{
    return stop_with(st, now, code, PARMAP_ENOTRUN);
}

int parmap__stop_poll(struct parmap__stop *st)
{
    if (atomic_load_explicit(&st->state, memory_order_relaxed) !=
        PARMAP__RUNNING)
        return 1;
    if (st->cancel != NULL &&
        atomic_load_explicit(&st->cancel->triggered, memory_order_relaxed)) {
        parmap__stop(st, 1, -ECANCELED);
        return 1;
    }
    if (st->deadline_ns != 0 && parmap__now_ns() >= st->deadline_ns) {
        stop_with(st, 1, -ETIMEDOUT, PARMAP_ETIMEDOUT);
        return 1;
    }
    return 0;
}

/* Whether `count` of `total` (or of `seen`, when the total is unknown)
 * reaches the rule's threshold. */
static int reached(const parmap_halt *h, size_t count, size_t total,
                   size_t seen)
{
    if (h->count != 0 && count >= h->count)
        return 1;
    if (h->percent > 0.0) {
        size_t base = total != 0 ? total : seen;
        return base != 0 && (double)count * 100.0 >= h->percent * (double)base;
    }
    return 0;
}

void parmap__stop_count(struct parmap__stop *st, int rc)
{
    const parmap_halt *h = &st->halt;
    size_t ok, failed, count;

    if (h->when == PARMAP_HALT_NEVER)
        return;
    if (rc == 0) {
        ok = atomic_fetch_add(&st->ok, 1) + 1;
        failed = atomic_load(&st->failed);
    } else {
        failed = atomic_fetch_add(&st->failed, 1) + 1;
        ok = atomic_load(&st->ok);
    }
    switch (h->on) {
    case PARMAP_HALT_ON_FAIL:
        if (rc == 0)
            return;
        count = failed;
        break;
    case PARMAP_HALT_ON_SUCCESS:
        if (rc != 0)
            return;
        count = ok;
        break;
    default:
        count = ok + failed;
        break;
    }
    if (reached(h, count, st->total, ok + failed))
        parmap__stop(st, h->when == PARMAP_HALT_NOW,
                     h->on == PARMAP_HALT_ON_FAIL ? rc : PARMAP_EHALTED);
}

/* Waits until the thread that stopped the call has published why: it does
 * so a few instructions after taking STOPPING. */
static void wait_published(const struct parmap__stop *st)
{
    while (atomic_load_explicit(&((struct parmap__stop *)st)->state,
                                memory_order_acquire) == PARMAP__STOPPING)
        parmap__cpu_relax();
}

int parmap__stop_not_run_status(const struct parmap__stop *st)
{
    wait_published(st);
    return st->not_run;
}

void parmap__running_enter(struct parmap__running *r, struct parmap__stop *st)
{
    r->stop = st;
    r->item_deadline_ns = 0;
    r->outer = current;
    current = r;
}

void parmap__running_leave(struct parmap__running *r)
{
    current = r->outer;
}

int parmap_should_stop(void)
{
    struct parmap__running *r = current;
    struct parmap__stop *st;

    if (r == NULL)
        return 0;
    st = r->stop;
    if (parmap__stop_poll(st) &&
        atomic_load_explicit(&st->state, memory_order_acquire) ==
            PARMAP__STOP_NOW)
        return parmap__stop_not_run_status(st) == PARMAP_ETIMEDOUT
                   ? PARMAP_ETIMEDOUT
                   : PARMAP_ECANCELED;
    if (r->item_deadline_ns != 0 && parmap__now_ns() >= r->item_deadline_ns)
        return PARMAP_ETIMEDOUT;
    return 0;
}
