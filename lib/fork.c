/*
 * fork() policy. A child process inherits a pool's memory but none of its
 * worker threads, and possibly a lock some vanished thread held, so the
 * pool cannot work there. Rather than rebuild pools behind the user's back,
 * every call on an inherited pool fails with PARMAP_EFORKED, and destroy
 * just frees it.
 *
 * Detecting that costs one atomic load per call: a counter the child side
 * of pthread_atfork() bumps, compared with the value the pool saw at
 * creation. The counter is the one piece of process-wide state the library
 * keeps; it changes only in a freshly forked child and never lets one pool
 * affect another.
 */
#include "internal.h"

static atomic_uint generation;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void in_child(void)
{
    atomic_fetch_add_explicit(&generation, 1, memory_order_relaxed);
}

static void install(void)
{
    /* If registration fails (out of memory), forks go unnoticed: the
     * library then behaves as it did before this policy existed. */
    (void)pthread_atfork(NULL, NULL, in_child);
}

unsigned parmap__fork_generation(void)
{
    pthread_once(&once, install);
    return atomic_load_explicit(&generation, memory_order_relaxed);
}
