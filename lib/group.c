/*
 * Task groups: a set of tasks that grows while it runs, with waits for any
 * one task, for all of them or for the first failure (asyncio's wait,
 * as_completed and TaskGroup).
 *
 * A group publishes one job in a pool slot for its whole life, from create
 * to destroy. The group itself is the job's owner: the job's limit is the
 * concurrency limit plus one for that owner, which never runs work, so up
 * to `limit` workers can join. A worker that joins runs group_work(): it
 * takes a ready task, runs it, records the outcome, and goes on until no
 * task can start; then it closes the job and leaves. Whoever makes a task
 * startable (a submit, a resubmit, a retry falling due, a waiter that
 * leaves startable tasks behind) reopens the job and wakes workers for it.
 * Closing and reopening both happen under the group's lock, so a ready task
 * that may start always has an open job or a thread about to take it.
 *
 * Acting for the owner, any thread holding the group's lock may reopen
 * the job (and set job.want just before, which only job_start and
 * job_reopen read); the owner's right to close it is exercised at create.
 *
 * Threads in parmap_group_wait() and parmap_group_destroy() run tasks too:
 * at once when no other thread could (a pool of one thread, no free slot,
 * or every worker already inside this group's job), otherwise only when a
 * startable task has waited HANDOFF_NS without an idle worker taking it
 * (the pool is busy with other calls). That keeps a timed wait prompt
 * while workers are free, and still makes progress when they are not.
 * Since these threads are not in the job, the concurrency limit is kept
 * exactly by the `running` count under the lock, not by the slot.
 *
 * A retry that waits for its delay holds no thread. Whichever thread next
 * looks at the group once it is due starts it: a waiter sleeps until then,
 * and submit, resubmit, counts, task and every finishing task look too.
 *
 * Task records live in one growable array indexed by id. The ready queue,
 * the finished-but-unreported queue (WAIT_ANY) and the failed-but-
 * unreported queue (WAIT_FIRST_ERROR) are singly linked lists through the
 * records, and delayed retries sit in a min-heap of ids sized with the
 * array. So only submit allocates, where a failure can be reported, and
 * nothing that runs after a task can fail for lack of memory.
 *
 * Once the group stops (halt rule, cancel token, timeout, progress
 * callback), every task not started is finished at once with
 * PARMAP_ENOTRUN or PARMAP_ETIMEDOUT (a task waiting for a retry keeps its
 * last failure), and submit and resubmit refuse with PARMAP_ECANCELED.
 *
 * Lock order: group->lock, then pool->lock (taken inside
 * parmap__job_reopen()); never the reverse. Neither is held while user
 * code (tasks, retry_if, progress) runs.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* How long a waiter leaves a startable task to the pool's idle workers
 * before running it itself: many times what waking a sleeping worker takes
 * (even one just created), yet short next to any task worth a thread. */
#define HANDOFF_NS 5000000u
/* A cancellation token can only be polled (triggering it must be
 * async-signal-safe), so a waiter with one looks at it this often. */
#define CANCEL_POLL_NS 20000000u
/* Records allocated by the first submit. */
#define FIRST_CAP 16u

/* "No task": the end of a list. */
#define NIL SIZE_MAX

enum task_state {
    TASK_QUEUED,  /* in the ready list */
    TASK_DELAYED, /* in the retry heap */
    TASK_RUNNING, /* a thread runs it */
    TASK_DONE     /* finished; status is final */
};

struct task {
    parmap_task_fn fn;
    void *ctx;
    uint64_t due_ns;    /* TASK_DELAYED: not before this time */
    size_t next_ready;  /* links of the three lists */
    size_t next_done;
    size_t next_failed;
    int status;         /* TASK_DONE: the outcome */
    int last_rc;        /* TASK_DELAYED: the failure to be retried */
    unsigned attempts;  /* callbacks made, over every submission */
    unsigned tries;     /* callbacks made since the last (re)submission */
    unsigned char state;
    /* A task is in each report list at most once; a resubmitted task
     * keeps its old place there but is skipped until it finishes again. */
    unsigned char in_done_list, unreported;
    unsigned char in_failed_list, failure_unreported;
};

struct list {
    size_t head, tail;
};

struct parmap_group {
    struct parmap__job job; /* first: the queue sees only this */
    parmap_pool *pool;

    /* Read-only after create. */
    size_t limit; /* tasks running at once, exactly */
    unsigned retries;
    uint64_t retry_delay_ns, retry_delay_max_ns;
    parmap_retry_fn retry_if;
    void *retry_ctx;
    int delays; /* retries can be delayed, so the heap is kept */

    pthread_mutex_t lock;
    pthread_cond_t cv; /* waiters sleep here; monotonic clock */

    /* Guarded by lock. */
    struct task *tasks; /* indexed by id */
    size_t ntasks, cap;
    size_t *heap; /* delayed retries by due time; capacity heap_cap */
    size_t nheap, heap_cap;
    struct list ready, done, failed;
    size_t nready;
    size_t running; /* tasks inside their callback */
    size_t pending; /* queued, delayed or running */
    size_t ndone;   /* in TASK_DONE */
    size_t waiters; /* threads asleep on cv */
    size_t helpers; /* workers inside group_work() */
    int drained;    /* stopped, and every unstarted task finished */

    /* Lock-free; see stop.c and progress.c. */
    struct parmap__stop stop;
    struct parmap__progress progress;
};

/* The tasks this thread is running, innermost first, so that destroy and
 * wait can tell a call from inside one of the group's own tasks.
 * Thread-local: groups never see each other's. */
struct frame {
    const parmap_group *group;
    struct frame *outer;
};

static _Thread_local struct frame *current;

static int inside_own_task(const parmap_group *g)
{
    for (const struct frame *f = current; f != NULL; f = f->outer)
        if (f->group == g)
            return 1;
    return 0;
}

/* ---- Lists through the records (under lock) ----------------------------- */

static size_t *link_of(parmap_group *g, size_t id, size_t offset)
{
    return (size_t *)((char *)&g->tasks[id] + offset);
}

static void list_push(parmap_group *g, struct list *l, size_t offset,
                      size_t id)
{
    *link_of(g, id, offset) = NIL;
    if (l->tail == NIL)
        l->head = id;
    else
        *link_of(g, l->tail, offset) = id;
    l->tail = id;
}

static size_t list_pop(parmap_group *g, struct list *l, size_t offset)
{
    size_t id = l->head;

    if (id != NIL) {
        l->head = *link_of(g, id, offset);
        if (l->head == NIL)
            l->tail = NIL;
    }
    return id;
}

#define LINK_READY offsetof(struct task, next_ready)
#define LINK_DONE offsetof(struct task, next_done)
#define LINK_FAILED offsetof(struct task, next_failed)

/* ---- The not-before heap of delayed retries (under lock) ---------------- */

static int earlier(const parmap_group *g, size_t a, size_t b)
{
    uint64_t da = g->tasks[a].due_ns, db = g->tasks[b].due_ns;
    return da < db || (da == db && a < b);
}

/* Never fails: submit keeps heap_cap at least ntasks, and a task is in the
 * heap at most once. */
static void heap_push(parmap_group *g, size_t id)
{
    size_t i = g->nheap++;

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!earlier(g, id, g->heap[parent]))
            break;
        g->heap[i] = g->heap[parent];
        i = parent;
    }
    g->heap[i] = id;
}

static size_t heap_pop(parmap_group *g)
{
    size_t top = g->heap[0];
    size_t last = g->heap[--g->nheap];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= g->nheap)
            break;
        if (c + 1 < g->nheap && earlier(g, g->heap[c + 1], g->heap[c]))
            c++;
        if (!earlier(g, g->heap[c], last))
            break;
        g->heap[i] = g->heap[c];
        i = c;
    }
    if (g->nheap > 0)
        g->heap[i] = last;
    return top;
}

/* ---- State changes (under lock) ----------------------------------------- */

static void wake_waiters(parmap_group *g)
{
    if (g->waiters != 0)
        parmap__cond_broadcast(&g->cv);
}

static void make_ready(parmap_group *g, size_t id)
{
    g->tasks[id].state = TASK_QUEUED;
    list_push(g, &g->ready, LINK_READY, id);
    g->nready++;
}

/* Tasks that could start right now. */
static size_t startable(const parmap_group *g)
{
    size_t room = g->limit - g->running;

    if (g->drained)
        return 0;
    return g->nready < room ? g->nready : room;
}

/* Startable tasks appeared, and the calling thread will not take them all
 * itself: reopen the job, wake as many workers as could start one, and
 * wake waiters (with no workers, they are the ones to run it). Changing
 * job.want is safe: only job_start and job_reopen read it, and both are
 * called under this lock. */
static void kick(parmap_group *g)
{
    size_t n = startable(g);

    if (n == 0)
        return;
    if (g->job.slot != NULL) {
        g->job.want = n < g->pool->nworkers ? n : g->pool->nworkers;
        parmap__job_reopen(g->pool, &g->job);
    }
    wake_waiters(g);
}

/* Gives task `id` its final status and queues it for reporting. */
static void finish(parmap_group *g, size_t id, int status)
{
    struct task *t = &g->tasks[id];

    t->state = TASK_DONE;
    t->status = status;
    g->pending--;
    g->ndone++;
    t->unreported = 1;
    if (!t->in_done_list) {
        t->in_done_list = 1;
        list_push(g, &g->done, LINK_DONE, id);
    }
    if (status != 0) {
        t->failure_unreported = 1;
        if (!t->in_failed_list) {
            t->in_failed_list = 1;
            list_push(g, &g->failed, LINK_FAILED, id);
        }
    }
}

/* The group has stopped: finishes every task that has not started, in the
 * order they would have run. */
static void drain(parmap_group *g)
{
    int code = parmap__stop_not_run_status(&g->stop);
    size_t id, late = 0;

    g->drained = 1;
    /* A task on the ready list with attempts since its submission is a
     * retry that fell due: it did run, so its last failure stands, as for
     * one still waiting in the heap. */
    while ((id = list_pop(g, &g->ready, LINK_READY)) != NIL) {
        if (g->tasks[id].tries > 0) {
            finish(g, id, g->tasks[id].last_rc);
            late++;
        } else {
            finish(g, id, code);
        }
    }
    g->nready = 0;
    /* A task waiting for a retry did run: its last failure stands. */
    while (g->nheap > 0) {
        id = heap_pop(g);
        finish(g, id, g->tasks[id].last_rc);
        late++;
    }
    /* Count those in the progress totals without calling the callback
     * under the lock; the next report, or the final one, shows them. */
    if (late != 0) {
        atomic_fetch_add(&g->progress.done, late);
        atomic_fetch_add(&g->progress.failed, late);
    }
    wake_waiters(g);
}

/* Brings the group up to date: notices a stop (and drains), and moves
 * retries that have fallen due to the ready list. */
static void settle(parmap_group *g)
{
    if (!g->drained && parmap__stop_poll(&g->stop)) {
        drain(g);
        return;
    }
    if (g->nheap > 0) {
        uint64_t now = parmap__now_ns();
        size_t moved = 0;
        while (g->nheap > 0 && g->tasks[g->heap[0]].due_ns <= now) {
            make_ready(g, heap_pop(g));
            moved++;
        }
        if (moved != 0)
            kick(g);
    }
}

/* ---- Running tasks ------------------------------------------------------ */

/* Takes the next startable task, or returns NIL. */
static size_t take(parmap_group *g)
{
    size_t id;

    if (startable(g) == 0)
        return NIL;
    id = list_pop(g, &g->ready, LINK_READY);
    g->nready--;
    g->running++;
    g->tasks[id].state = TASK_RUNNING;
    return id;
}

/* Runs task `id` (just taken), with its immediate retries, and records the
 * outcome. Called and returns with the lock held; drops it while the task,
 * retry_if and the progress callback run. */
static void run_task(parmap_group *g, size_t id)
{
    struct task *t = &g->tasks[id];
    parmap_task_fn fn = t->fn;
    void *ctx = t->ctx;
    unsigned tries = t->tries, made = 0;
    struct frame f = {g, current};
    struct parmap__running r;
    uint64_t delay = 0;
    int rc;

    parmap__mutex_unlock(&g->lock);
    current = &f;
    parmap__running_enter(&r, &g->stop);
    for (;;) {
        r.item_deadline_ns = g->stop.item_timeout_ns != 0
                                 ? parmap__now_ns() + g->stop.item_timeout_ns
                                 : 0;
        rc = fn(ctx);
        tries++;
        made++;
        if (rc == 0 || tries > g->retries || parmap__stop_poll(&g->stop) ||
            (g->retry_if != NULL &&
             !g->retry_if(g->retry_ctx, id, rc, tries)))
            break;
        delay = parmap__backoff_ns(g->retry_delay_ns, g->retry_delay_max_ns,
                                   tries);
        if (delay != 0)
            break; /* Wait in the heap, not on this thread. */
    }
    parmap__running_leave(&r);
    current = f.outer;
    parmap__mutex_lock(&g->lock);

    t = &g->tasks[id]; /* The array may have moved meanwhile. */
    t->attempts += made;
    t->tries = tries;
    g->running--;
    if (delay != 0 && !parmap__stop_poll(&g->stop)) {
        t->state = TASK_DELAYED;
        t->last_rc = rc;
        t->due_ns = parmap__now_ns() + delay;
        heap_push(g, id);
        settle(g);
        wake_waiters(g); /* Their next wake-up may now be sooner. */
        return;
    }
    finish(g, id, rc);
    parmap__stop_count(&g->stop, rc);
    settle(g); /* Drains at once if that stopped the group. */
    wake_waiters(g);
    if (g->progress.fn == NULL) {
        /* Only counts: no user code, so under the lock is fine. */
        (void)parmap__progress_add(&g->progress, rc == 0, rc != 0, 0);
        return;
    }
    parmap__mutex_unlock(&g->lock);
    if (parmap__progress_add(&g->progress, rc == 0, rc != 0,
                             parmap__now_ns()) != 0)
        parmap__stop(&g->stop, 1, -ECANCELED);
    parmap__mutex_lock(&g->lock);
}

/* The job's work, run by each worker that joins. */
static void group_work(struct parmap__job *job)
{
    parmap_group *g = (parmap_group *)job;
    size_t id;

    parmap__mutex_lock(&g->lock);
    g->helpers++;
    for (;;) {
        settle(g);
        if ((id = take(g)) == NIL)
            break;
        run_task(g, id);
    }
    g->helpers--;
    /* Nothing can start: keep workers out until a kick reopens the job.
     * Under the lock, so no kick can slip in between the look and the
     * close. */
    parmap__job_close(&g->job);
    parmap__mutex_unlock(&g->lock);
}

/* ---- Waiting ------------------------------------------------------------ */

/* Pops the first task on a report list (done or failed) whose report is
 * still owed, clearing its on-list and owed flags; NIL if none. A task may
 * sit on a list after its report was taken (by a resubmit), hence the loop. */
static size_t pop_unreported(parmap_group *g, struct list *l, size_t link,
                             int failures)
{
    size_t i;

    while ((i = list_pop(g, l, link)) != NIL) {
        struct task *t = &g->tasks[i];
        unsigned char *on_list =
            failures ? &t->in_failed_list : &t->in_done_list;
        unsigned char *owed = failures ? &t->failure_unreported : &t->unreported;
        *on_list = 0;
        if (*owed) {
            *owed = 0;
            return i;
        }
    }
    return NIL;
}

/* Whether the condition of `mode` holds; if so, sets *rc and the outputs. */
static int condition_met(parmap_group *g, enum parmap_wait mode, size_t *id,
                         int *status, int *rc)
{
    size_t i;

    switch (mode) {
    case PARMAP_WAIT_ANY:
    case PARMAP_WAIT_FIRST_ERROR: {
        int failures = mode == PARMAP_WAIT_FIRST_ERROR;
        i = failures ? pop_unreported(g, &g->failed, LINK_FAILED, 1)
                     : pop_unreported(g, &g->done, LINK_DONE, 0);
        if (i != NIL) {
            if (id != NULL)
                *id = i;
            if (status != NULL)
                *status = g->tasks[i].status;
            *rc = failures ? g->tasks[i].status : 0;
            return 1;
        }
        if (g->pending != 0)
            return 0;
        if (!failures) {
            *rc = -ENOENT;
            return 1;
        }
        if (id != NULL)
            *id = NIL;
        if (status != NULL)
            *status = 0;
        *rc = 0;
        return 1;
    }
    default:
        if (g->pending != 0)
            return 0;
        *rc = 0;
        return 1;
    }
}

static uint64_t sooner(uint64_t a, uint64_t b)
{
    if (a == 0)
        return b;
    return b != 0 && b < a ? b : a;
}

/* The body of wait and destroy, under the lock. `deadline_ns` 0 = none. */
static int wait_locked(parmap_group *g, enum parmap_wait mode,
                       uint64_t deadline_ns, size_t *id, int *status)
{
    uint64_t handoff = 0; /* when the pool's chance at a task runs out */
    int rc;

    for (;;) {
        settle(g);
        if (condition_met(g, mode, id, status, &rc))
            return rc;
        uint64_t now = parmap__now_ns();
        if (deadline_ns != 0 && now >= deadline_ns)
            return -ETIMEDOUT;

        uint64_t wake = deadline_ns;
        if (startable(g) == 0) {
            handoff = 0;
        } else if (g->job.slot == NULL ||
                   g->helpers >= g->pool->nworkers ||
                   (handoff != 0 && now >= handoff)) {
            /* No worker can come, every worker already works for this
             * group, or the idle ones had their chance. */
            run_task(g, take(g));
            continue;
        } else {
            if (handoff == 0) {
                /* Room freed by a task a waiter ran reopens nothing by
                 * itself: make sure the workers get their chance. */
                handoff = now + HANDOFF_NS;
                kick(g);
            }
            wake = sooner(wake, handoff);
        }
        if (g->nheap > 0)
            wake = sooner(wake, g->tasks[g->heap[0]].due_ns);
        if (!g->drained) {
            wake = sooner(wake, g->stop.deadline_ns);
            if (g->stop.cancel != NULL)
                wake = sooner(wake, now + CANCEL_POLL_NS);
        }
        g->waiters++;
        if (wake != 0)
            parmap__cond_timedwait_ns(&g->cv, &g->lock, wake);
        else
            parmap__cond_wait(&g->cv, &g->lock);
        g->waiters--;
    }
}

/* ---- Public API --------------------------------------------------------- */

int parmap_group_create(parmap_group **out, parmap_pool *pool,
                        const parmap_opts *opts)
{
    static const parmap_opts defaults;
    parmap_group *g;
    uint64_t start;
    int rc;

    if (out == NULL || pool == NULL)
        return -EINVAL;
    if (parmap__pool_forked(pool))
        return PARMAP_EFORKED;
    if (opts == NULL)
        opts = &defaults;
    if ((rc = parmap__stop_check_opts(opts)) != 0)
        return rc;

    g = parmap__aligned_calloc(sizeof *g);
    if (g == NULL)
        return -ENOMEM;
    if ((rc = parmap__mutex_init(&g->lock)) != 0) {
        free(g);
        return rc;
    }
    if ((rc = parmap__cond_init_monotonic(&g->cv)) != 0) {
        parmap__mutex_destroy(&g->lock);
        free(g);
        return rc;
    }

    g->pool = pool;
    g->limit = pool->nthreads;
    if (opts->max_concurrency != 0 && opts->max_concurrency < g->limit)
        g->limit = opts->max_concurrency;
    g->retries = opts->retries;
    g->retry_delay_ns = parmap__seconds_to_ns(opts->retry_delay);
    g->retry_delay_max_ns = parmap__seconds_to_ns(opts->retry_delay_max);
    g->retry_if = opts->retry_if;
    g->retry_ctx = opts->retry_ctx;
    g->delays = g->retries != 0 && g->retry_delay_ns != 0;
    g->ready.head = g->ready.tail = NIL;
    g->done.head = g->done.tail = NIL;
    g->failed.head = g->failed.tail = NIL;

    start = parmap__now_ns();
    parmap__stop_init(&g->stop, opts, 0, start);
    parmap__progress_init(&g->progress, opts->progress, opts->progress_ctx,
                          opts->progress_interval, 0, start);

    /* Published now and kept until destroy; closed until there is work.
     * The group is the job's owner, so it may close the job itself. */
    parmap__job_init(&g->job, group_work, g->limit + 1, 1);
    parmap__job_start(pool, &g->job);
    parmap__mutex_lock(&g->lock);
    parmap__job_close(&g->job);
    parmap__mutex_unlock(&g->lock);

    *out = g;
    return 0;
}

/* Makes room for one more task record (and its heap entry). */
static int reserve(parmap_group *g)
{
    if (g->ntasks == g->cap) {
        size_t cap = g->cap != 0 ? g->cap * 2 : FIRST_CAP;
        struct task *p;
        if (g->cap > SIZE_MAX / 2 / sizeof *p)
            return -ENOMEM;
        p = parmap__realloc(g->tasks, cap * sizeof *p);
        if (p == NULL)
            return -ENOMEM;
        g->tasks = p;
        g->cap = cap;
    }
    if (g->delays && g->heap_cap < g->cap) {
        size_t *h = parmap__realloc(g->heap, g->cap * sizeof *h);
        if (h == NULL)
            return -ENOMEM;
        g->heap = h;
        g->heap_cap = g->cap;
    }
    return 0;
}

int parmap_group_submit(parmap_group *g, parmap_task_fn fn, void *ctx,
                        size_t *id)
{
    int rc;

    if (g == NULL || fn == NULL)
        return -EINVAL;
    parmap__mutex_lock(&g->lock);
    settle(g);
    if (g->drained) {
        rc = -ECANCELED;
    } else if ((rc = reserve(g)) == 0) {
        size_t i = g->ntasks++;
        struct task *t = &g->tasks[i];
        memset(t, 0, sizeof *t);
        t->fn = fn;
        t->ctx = ctx;
        g->pending++;
        make_ready(g, i);
        /* Before the task can start, so a task may read its own id. */
        if (id != NULL)
            *id = i;
        kick(g);
    }
    parmap__mutex_unlock(&g->lock);
    return rc;
}

int parmap_group_resubmit(parmap_group *g, size_t id)
{
    int rc = 0;

    if (g == NULL)
        return -EINVAL;
    parmap__mutex_lock(&g->lock);
    settle(g);
    if (id >= g->ntasks) {
        rc = -ENOENT;
    } else if (g->tasks[id].state != TASK_DONE) {
        rc = -EBUSY;
    } else if (g->drained) {
        rc = -ECANCELED;
    } else {
        struct task *t = &g->tasks[id];
        t->tries = 0;
        t->status = 0;
        t->unreported = 0;
        t->failure_unreported = 0;
        g->ndone--;
        g->pending++;
        make_ready(g, id);
        kick(g);
    }
    parmap__mutex_unlock(&g->lock);
    return rc;
}

int parmap_group_wait(parmap_group *g, enum parmap_wait mode, double timeout,
                      size_t *id, int *status)
{
    uint64_t deadline = 0;
    int rc;

    if (g == NULL || (unsigned)mode > PARMAP_WAIT_FIRST_ERROR ||
        timeout != timeout) /* NaN */
        return -EINVAL;
    /* The waiting task is itself pending, so "all" could never come. */
    if (mode == PARMAP_WAIT_ALL && inside_own_task(g))
        return -EDEADLK;
    if (timeout >= 0.0) {
        deadline = parmap__now_ns() + parmap__seconds_to_ns(timeout);
        if (deadline == 0)
            deadline = 1;
    }
    parmap__mutex_lock(&g->lock);
    rc = wait_locked(g, mode, deadline, id, status);
    kick(g); /* Tasks this thread declined are left to the workers. */
    parmap__mutex_unlock(&g->lock);
    return rc;
}

int parmap_group_task(parmap_group *g, size_t id, int *status,
                      unsigned *attempts)
{
    int rc = 0;

    if (g == NULL)
        return -EINVAL;
    parmap__mutex_lock(&g->lock);
    settle(g);
    if (id >= g->ntasks) {
        rc = -ENOENT;
    } else if (g->tasks[id].state != TASK_DONE) {
        rc = -EBUSY;
    } else {
        if (status != NULL)
            *status = g->tasks[id].status;
        if (attempts != NULL)
            *attempts = g->tasks[id].attempts;
    }
    parmap__mutex_unlock(&g->lock);
    return rc;
}

int parmap_group_counts(parmap_group *g, size_t *done, size_t *pending)
{
    if (g == NULL)
        return -EINVAL;
    parmap__mutex_lock(&g->lock);
    settle(g);
    if (done != NULL)
        *done = g->ndone;
    if (pending != NULL)
        *pending = g->pending;
    parmap__mutex_unlock(&g->lock);
    return 0;
}

int parmap_group_destroy(parmap_group *g)
{
    if (g == NULL)
        return 0;
    if (inside_own_task(g))
        return -EBUSY;
    parmap__mutex_lock(&g->lock);
    (void)wait_locked(g, PARMAP_WAIT_ALL, 0, NULL, NULL);
    parmap__mutex_unlock(&g->lock);

    /* Workers may still be inside the job, about to find nothing and
     * leave; finish waits for them. Then nobody else refers to g. */
    parmap__job_finish(g->pool, &g->job);
    parmap__progress_final(&g->progress, parmap__now_ns());
    parmap__cond_destroy(&g->cv);
    parmap__mutex_destroy(&g->lock);
    free(g->heap);
    free(g->tasks);
    free(g);
    return 0;
}
