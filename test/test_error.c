/*
 * Tests of lib/error.c and lib/version.c: the error table, the two
 * describing functions and the version string.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CPU_COUNT, sched_getaffinity, nanosleep, dprintf */
#endif
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

TestSuite(error, .timeout = 30.);
TestSuite(version, .timeout = 30.);

/* The table as the header defines it, so that every check below follows
 * additions to PARMAP_ERRNO_MAP automatically. */
struct code {
    const char *name;
    int value;
    const char *msg;
};

#define PT_ROW(name, value, msg) {#name, (value), (msg)},
static const struct code codes[] = {PARMAP_ERRNO_MAP(PT_ROW)};
#undef PT_ROW
#define NCODES (sizeof codes / sizeof codes[0])

Test(error, every_code_has_its_own_name_and_message)
{
    cr_assert_geq(NCODES, 10);
    for (size_t i = 0; i < NCODES; i++) {
        const char *name = parmap_err_name(codes[i].value);
        const char *msg = parmap_strerror(codes[i].value);
        cr_assert_not_null(name, "parmap_err_name(%d)", codes[i].value);
        cr_assert_not_null(msg, "parmap_strerror(%d)", codes[i].value);
        cr_assert_str_eq(name, codes[i].name, "parmap_err_name(%d)",
                         codes[i].value);
        cr_assert_str_eq(msg, codes[i].msg, "parmap_strerror(%s)",
                         codes[i].name);
        cr_assert_gt(strlen(msg), 0);
        cr_assert_str_neq(msg, "unknown error", "%s", codes[i].name);
    }
}

Test(error, messages_names_and_values_are_distinct)
{
    for (size_t i = 0; i < NCODES; i++)
        for (size_t j = i + 1; j < NCODES; j++) {
            cr_assert_neq(codes[i].value, codes[j].value, "%s and %s",
                          codes[i].name, codes[j].name);
            cr_assert_str_neq(parmap_strerror(codes[i].value),
                              parmap_strerror(codes[j].value), "%s and %s",
                              codes[i].name, codes[j].name);
            cr_assert_str_neq(parmap_err_name(codes[i].value),
                              parmap_err_name(codes[j].value), "%s and %s",
                              codes[i].name, codes[j].name);
        }
}

Test(error, codes_are_negative)
{
    for (size_t i = 0; i < NCODES; i++)
        cr_assert_lt(codes[i].value, 0, "%s = %d", codes[i].name,
                     codes[i].value);
}

/* 1 when v is one of the header's codes. */
static int is_code(int v)
{
    for (size_t i = 0; i < NCODES; i++)
        if (codes[i].value == v)
            return 1;
    return 0;
}

Test(error, errno_valued_codes_equal_negated_errno)
{
    cr_assert_eq(PARMAP_EINVAL, -EINVAL);
    cr_assert_eq(PARMAP_ENOMEM, -ENOMEM);
    cr_assert_eq(PARMAP_EAGAIN, -EAGAIN);
    cr_assert_eq(PARMAP_EOVERFLOW, -EOVERFLOW);
    cr_assert_eq(PARMAP_EBUSY, -EBUSY);
    cr_assert_eq(PARMAP_EDEADLK, -EDEADLK);
    cr_assert_eq(PARMAP_ECANCELED, -ECANCELED);
    cr_assert_eq(PARMAP_ETIMEDOUT, -ETIMEDOUT);
    /* Every code above the private base is a negated errno value: small
     * and negative. */
    for (size_t i = 0; i < NCODES; i++)
        if (codes[i].value > PARMAP__ERR_BASE)
            cr_assert(codes[i].value < 0 && codes[i].value > -4096,
                      "%s = %d is not a negated errno value", codes[i].name,
                      codes[i].value);
}

Test(error, library_codes_lie_below_the_private_base)
{
    cr_assert_lt(PARMAP_EFAILED, PARMAP__ERR_BASE);
    cr_assert_lt(PARMAP_ENOTRUN, PARMAP__ERR_BASE);
    cr_assert_neq(PARMAP_EFAILED, PARMAP_ENOTRUN);
    /* No code sits on the base itself, and the library's own codes are
     * the ones whose names are not errno names. */
    for (size_t i = 0; i < NCODES; i++)
        cr_assert_neq(codes[i].value, PARMAP__ERR_BASE, "%s", codes[i].name);
}

Test(error, zero_is_named_ok)
{
    cr_assert_str_eq(parmap_err_name(0), "OK");
    const char *msg = parmap_strerror(0);
    cr_assert_not_null(msg);
    cr_assert_gt(strlen(msg), 0);
    for (size_t i = 0; i < NCODES; i++)
        cr_assert_str_neq(msg, codes[i].msg, "strerror(0) is %s's", codes[i].name);
}

Test(error, unknown_codes_get_static_unknown_strings)
{
    const int unknown[] = {
        1, 5, 42, INT_MAX, -12345, INT_MIN, PARMAP__ERR_BASE,
        PARMAP__ERR_BASE - 1000, -29999, PARMAP__ERR_BASE - (int)NCODES - 5,
    };
    size_t checked = 0;
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        int v = unknown[i];
        if (is_code(v))
            continue;
        checked++;
        const char *name = parmap_err_name(v);
        const char *msg = parmap_strerror(v);
        cr_assert_not_null(name, "parmap_err_name(%d)", v);
        cr_assert_not_null(msg, "parmap_strerror(%d)", v);
        cr_assert_str_eq(name, "EUNKNOWN", "parmap_err_name(%d)", v);
        cr_assert_str_eq(msg, "unknown error", "parmap_strerror(%d)", v);
        /* Static: the same storage every time, not a buffer rewritten per
         * call. */
        cr_assert_eq(parmap_err_name(v), name);
        cr_assert_eq(parmap_strerror(v), msg);
    }
    cr_assert_geq(checked, 8);
}

Test(error, other_negated_errno_values_are_named_and_described_like_strerror)
{
    /* A callback's own -EIO is not a parmap code, but the header promises
     * its errno name and the C library's description. */
    static const struct {
        int err;
        const char *name;
    } others[] = {
        {EPERM, "EPERM"}, {ENOENT, "ENOENT"}, {EIO, "EIO"},
        {ERANGE, "ERANGE"}, {EACCES, "EACCES"}, {EPIPE, "EPIPE"},
        {ENOSPC, "ENOSPC"}, {ECONNREFUSED, "ECONNREFUSED"},
    };
    size_t checked = 0;
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        int v = -others[i].err;
        if (is_code(v))
            continue;
        checked++;
        const char *name = parmap_err_name(v);
        const char *msg = parmap_strerror(v);
        cr_assert_not_null(name);
        cr_assert_not_null(msg);
        cr_assert_str_eq(name, others[i].name, "parmap_err_name(%d)", v);
        /* This test never calls setlocale(), so strerror() speaks the C
         * locale, as the library's static descriptions do. */
        cr_assert_str_eq(msg, strerror(others[i].err), "parmap_strerror(%d)",
                         v);
        cr_assert_eq(parmap_err_name(v), name);
        cr_assert_eq(parmap_strerror(v), msg);
    }
    cr_assert_geq(checked, 6);
}

Test(error, strings_are_static_and_stable)
{
    for (size_t i = 0; i < NCODES; i++) {
        const char *a = parmap_strerror(codes[i].value);
        const char *b = parmap_err_name(codes[i].value);
        /* Interleave other calls: a static table keeps its pointers. */
        (void)parmap_strerror(12345);
        (void)parmap_err_name(-1);
        cr_assert_eq(parmap_strerror(codes[i].value), a);
        cr_assert_eq(parmap_err_name(codes[i].value), b);
    }
}

Test(version, matches_the_header)
{
    const char *v = parmap_version();
    cr_assert_not_null(v);
    cr_assert_str_eq(v, PARMAP_VERSION_STRING);
    char buf[64];
    snprintf(buf, sizeof buf, "%d.%d.%d", PARMAP_VERSION_MAJOR,
             PARMAP_VERSION_MINOR, PARMAP_VERSION_PATCH);
    cr_assert_str_eq(v, buf);
    cr_assert_eq(PARMAP_VERSION_HEX, (PARMAP_VERSION_MAJOR << 16) |
                                         (PARMAP_VERSION_MINOR << 8) |
                                         PARMAP_VERSION_PATCH);
    cr_assert_eq(parmap_version(), v);
}
