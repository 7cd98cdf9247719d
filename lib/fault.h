/*
 * Fault injection for tests.
 *
 * The test build (-DPARMAP_FAULT_INJECTION) counts every place where the
 * library allocates memory, creates a thread or initialises a mutex or a
 * condition variable, and can make the n-th of them fail, so tests can walk
 * every failure path in turn. In the installed library the hook compiles
 * to nothing.
 */
#ifndef PARMAP_FAULT_H
#define PARMAP_FAULT_H

#ifdef PARMAP_FAULT_INJECTION

/* Makes the countdown-th fault site reached from now on fail (0 = the next
 * one), once. A negative countdown disarms. */
void parmap__fault_arm(long countdown);

/* 1 once the armed fault has fired since the last parmap__fault_arm(). */
int parmap__fault_fired(void);

/* Called at each fault site; returns 1 when this site must fail. */
int parmap__fault_hit(void);

#define PARMAP__FAULT_HIT() parmap__fault_hit()

#else

#define PARMAP__FAULT_HIT() 0

#endif

#endif /* PARMAP_FAULT_H */
