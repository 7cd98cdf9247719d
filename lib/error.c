/*
 * The error table: names and messages of every code, generated from the one
 * list in parmap.h so that codes, names and messages cannot drift apart.
 * Other negated errno values (a callback's -EIO, say) are described as the
 * C library describes them, through its static, thread-safe tables.
 */
#include "internal.h"

#include <string.h>

/* glibc 2.32 and later describe errno values without a buffer and without
 * the locale, which is what a static, thread-safe answer needs. */
#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
#define HAVE_STRERRORDESC_NP 1
#endif

const char *parmap_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define PARMAP__ERR_MSG(name, value, msg)                                      \
    case value:                                                                \
        return msg;
        PARMAP_ERRNO_MAP(PARMAP__ERR_MSG)
#undef PARMAP__ERR_MSG
    default:
        break;
    }
#ifdef HAVE_STRERRORDESC_NP
    if (err < 0 && err > PARMAP__ERR_BASE) {
        const char *desc = strerrordesc_np(-err);
        if (desc != NULL)
            return desc;
    }
#endif
    return "unknown error";
}

const char *parmap_err_name(int err)
{
    switch (err) {
    case 0:
        return "OK";
#define PARMAP__ERR_NAME(name, value, msg)                                     \
    case value:                                                                \
        return #name;
        PARMAP_ERRNO_MAP(PARMAP__ERR_NAME)
#undef PARMAP__ERR_NAME
    default:
        break;
    }
#ifdef HAVE_STRERRORDESC_NP
    if (err < 0 && err > PARMAP__ERR_BASE) {
        const char *name = strerrorname_np(-err);
        if (name != NULL)
            return name;
    }
#endif
    return "EUNKNOWN";
}
