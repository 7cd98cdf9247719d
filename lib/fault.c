/*
 * Fault injection counter of the test build (see fault.h).
 *
 * This is the one piece of process-global state in the code base, and it
 * exists only when PARMAP_FAULT_INJECTION is defined: a test arms it from
 * its main thread before the call under test.
 */
#include "fault.h"

#ifdef PARMAP_FAULT_INJECTION

#include <stdatomic.h>

static atomic_long countdown = -1;
static atomic_int fired;

void parmap__fault_arm(long n)
{
    atomic_store(&fired, 0);
    atomic_store(&countdown, n < 0 ? -1 : n);
}

int parmap__fault_fired(void)
{
    return atomic_load(&fired);
}

int parmap__fault_hit(void)
{
    long cur = atomic_load(&countdown);

    /* Decrement only while armed; the site that takes it from 0 to -1
     * is the one that fails. */
    while (cur >= 0) {
        if (atomic_compare_exchange_weak(&countdown, &cur, cur - 1)) {
            if (cur == 0) {
                atomic_store(&fired, 1);
                return 1;
            }
            return 0;
        }
    }
    return 0;
}

#else

/* ISO C forbids an empty translation unit. */
typedef int parmap__fault_unused;

#endif
