/*
 * Makes C11 atomics visible to helgrind and DRD (gcc only).
 *
 * `make check-helgrind` and `make check-drd` compile the stress programs
 * and the library sources with `-include test/vg_atomics.h`. Neither tool
 * models C11 atomics: an atomic store compiles to a plain mov, so every
 * lock-free hand-off in the library (a job published in a pool slot, a
 * helper leaving it, the stop state, progress counters) and every result a
 * helper writes into the caller's arrays before such a hand-off would be
 * reported as a data race. Instead of suppressing those reports, which
 * would hide real races in the same functions, this header redefines the
 * <stdatomic.h> operations so that each one also tells the tool what it
 * synchronises: a store or read-modify-write "happens before" later
 * operations on the same object, and a load or read-modify-write "happens
 * after" earlier ones (ANNOTATE_HAPPENS_BEFORE / ANNOTATE_HAPPENS_AFTER),
 * unless its memory order is relaxed: a relaxed operation synchronises
 * nothing in C11, so it makes no edge here either. The atomic object
 * itself is taken out of race checking before each operation (helgrind:
 * VALGRIND_HG_DISABLE_CHECKING; DRD: ANNOTATE_BENIGN_RACE_SIZED), since
 * atomic accesses never race with each other; both tools put freed and
 * reallocated memory back under checking, so this covers the atomic
 * object only while it lives.
 *
 * That treats every non-relaxed atomic as sequentially consistent, so a
 * race that only a too-weak (but not relaxed) order allows, such as a
 * release store read by a relaxed load, is not seen here. Those are
 * ThreadSanitizer's job (`make check-tsan`, `make check-tsan-clang`),
 * which models every memory order. What helgrind and DRD add is lock
 * discipline (the pool, group and stream locks, lock order, condition
 * variables used with the right mutex) and races on plain memory, found
 * by different algorithms than TSan's.
 *
 * Define PARMAP_VG_DRD for DRD; helgrind otherwise. The annotations are
 * no-ops outside valgrind. Compile with -D_GNU_SOURCE: this header is
 * included first, before any source file can set feature macros.
 */
#ifndef PARMAP_TEST_VG_ATOMICS_H
#define PARMAP_TEST_VG_ATOMICS_H

#include <stdatomic.h>

#ifdef PARMAP_VG_DRD
#include <valgrind/drd.h>
#define PVG_UNTRACK(p) ANNOTATE_BENIGN_RACE_SIZED((p), sizeof *(p), "atomic")
#else
#include <valgrind/helgrind.h>
#define PVG_UNTRACK(p) VALGRIND_HG_DISABLE_CHECKING((p), sizeof *(p))
#endif

/* The happens-before edges go through a cell chosen by the atomic's
 * address, not through the address itself: the tools keep a
 * synchronisation object for every address annotated, and DRD would later
 * mistake a condition variable or mutex placed at the same (reused stack)
 * address for that object. The cells are one weak array shared by every
 * translation unit; two atomics that share a cell only add an edge. */
#define PVG_CELLS 8192u
__attribute__((weak)) char pvg_cells[PVG_CELLS];
#define PVG_CELL(p)                                                            \
    ((const void *)&pvg_cells[((unsigned long)(p) >> 3) % PVG_CELLS])

/* MO is a constant, so the test folds away. */
#define PVG_SYNCS(MO) ((MO) != __ATOMIC_RELAXED)
#define PVG_BEFORE(p, MO)                                                      \
    do {                                                                       \
        PVG_UNTRACK(p);                                                        \
        if (PVG_SYNCS(MO))                                                     \
            ANNOTATE_HAPPENS_BEFORE(PVG_CELL(p));                              \
    } while (0)
#define PVG_AFTER(p, MO)                                                       \
    do {                                                                       \
        if (PVG_SYNCS(MO))                                                     \
            ANNOTATE_HAPPENS_AFTER(PVG_CELL(p));                               \
    } while (0)

#undef atomic_store_explicit
#undef atomic_store
#undef atomic_load_explicit
#undef atomic_load
#undef atomic_exchange_explicit
#undef atomic_exchange
#undef atomic_compare_exchange_strong_explicit
#undef atomic_compare_exchange_strong
#undef atomic_compare_exchange_weak_explicit
#undef atomic_compare_exchange_weak
#undef atomic_fetch_add
#undef atomic_fetch_add_explicit
#undef atomic_fetch_sub
#undef atomic_fetch_sub_explicit
#undef atomic_fetch_or
#undef atomic_fetch_or_explicit
#undef atomic_fetch_xor
#undef atomic_fetch_xor_explicit
#undef atomic_fetch_and
#undef atomic_fetch_and_explicit

#define atomic_store_explicit(PTR, VAL, MO)                                    \
    __extension__({                                                            \
        __auto_type pvg_p = (PTR);                                             \
        __typeof__((void)0, *pvg_p) pvg_v = (VAL);                             \
        PVG_BEFORE(pvg_p, MO);                                                 \
        __atomic_store(pvg_p, &pvg_v, (MO));                                   \
    })
#define atomic_store(PTR, VAL)                                                 \
    atomic_store_explicit(PTR, VAL, __ATOMIC_SEQ_CST)

#define atomic_load_explicit(PTR, MO)                                          \
    __extension__({                                                            \
        __auto_type pvg_p = (PTR);                                             \
        __typeof__((void)0, *pvg_p) pvg_v;                                     \
        PVG_UNTRACK(pvg_p);                                                    \
        __atomic_load(pvg_p, &pvg_v, (MO));                                    \
        PVG_AFTER(pvg_p, MO);                                                  \
        pvg_v;                                                                 \
    })
#define atomic_load(PTR) atomic_load_explicit(PTR, __ATOMIC_SEQ_CST)

#define atomic_exchange_explicit(PTR, VAL, MO)                                 \
    __extension__({                                                            \
        __auto_type pvg_p = (PTR);                                             \
        __typeof__((void)0, *pvg_p) pvg_v = (VAL);                             \
        __typeof__((void)0, *pvg_p) pvg_old;                                   \
        PVG_BEFORE(pvg_p, MO);                                                 \
        __atomic_exchange(pvg_p, &pvg_v, &pvg_old, (MO));                      \
        PVG_AFTER(pvg_p, MO);                                                  \
        pvg_old;                                                               \
    })
#define atomic_exchange(PTR, VAL)                                              \
    atomic_exchange_explicit(PTR, VAL, __ATOMIC_SEQ_CST)

#define PVG_CAS(PTR, VAL, DES, WEAK, SUC, FAIL)                                \
    __extension__({                                                            \
        __auto_type pvg_p = (PTR);                                             \
        __typeof__((void)0, *pvg_p) pvg_d = (DES);                             \
        PVG_BEFORE(pvg_p, SUC);                                                \
        _Bool pvg_ok = __atomic_compare_exchange(pvg_p, (VAL), &pvg_d, WEAK,   \
                                                 (SUC), (FAIL));               \
        PVG_AFTER(pvg_p, SUC);                                                 \
        pvg_ok;                                                                \
    })
#define atomic_compare_exchange_strong_explicit(PTR, VAL, DES, SUC, FAIL)      \
    PVG_CAS(PTR, VAL, DES, 0, SUC, FAIL)
#define atomic_compare_exchange_strong(PTR, VAL, DES)                          \
    PVG_CAS(PTR, VAL, DES, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)
#define atomic_compare_exchange_weak_explicit(PTR, VAL, DES, SUC, FAIL)        \
    PVG_CAS(PTR, VAL, DES, 1, SUC, FAIL)
#define atomic_compare_exchange_weak(PTR, VAL, DES)                            \
    PVG_CAS(PTR, VAL, DES, 1, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

#define PVG_RMW(OP, PTR, VAL, MO)                                              \
    __extension__({                                                            \
        __auto_type pvg_p = (PTR);                                             \
        PVG_BEFORE(pvg_p, MO);                                                 \
        __auto_type pvg_old = OP(pvg_p, (VAL), (MO));                          \
        PVG_AFTER(pvg_p, MO);                                                  \
        pvg_old;                                                               \
    })
#define atomic_fetch_add_explicit(PTR, VAL, MO)                                \
    PVG_RMW(__atomic_fetch_add, PTR, VAL, MO)
#define atomic_fetch_add(PTR, VAL)                                             \
    PVG_RMW(__atomic_fetch_add, PTR, VAL, __ATOMIC_SEQ_CST)
#define atomic_fetch_sub_explicit(PTR, VAL, MO)                                \
    PVG_RMW(__atomic_fetch_sub, PTR, VAL, MO)
#define atomic_fetch_sub(PTR, VAL)                                             \
    PVG_RMW(__atomic_fetch_sub, PTR, VAL, __ATOMIC_SEQ_CST)
#define atomic_fetch_or_explicit(PTR, VAL, MO)                                 \
    PVG_RMW(__atomic_fetch_or, PTR, VAL, MO)
#define atomic_fetch_or(PTR, VAL)                                              \
    PVG_RMW(__atomic_fetch_or, PTR, VAL, __ATOMIC_SEQ_CST)
#define atomic_fetch_xor_explicit(PTR, VAL, MO)                                \
    PVG_RMW(__atomic_fetch_xor, PTR, VAL, MO)
#define atomic_fetch_xor(PTR, VAL)                                             \
    PVG_RMW(__atomic_fetch_xor, PTR, VAL, __ATOMIC_SEQ_CST)
#define atomic_fetch_and_explicit(PTR, VAL, MO)                                \
    PVG_RMW(__atomic_fetch_and, PTR, VAL, MO)
#define atomic_fetch_and(PTR, VAL)                                             \
    PVG_RMW(__atomic_fetch_and, PTR, VAL, __ATOMIC_SEQ_CST)

#endif /* PARMAP_TEST_VG_ATOMICS_H */
