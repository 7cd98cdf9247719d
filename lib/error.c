/*
 * The error table: names and messages of every code, generated from the one
 * list in parmap.h so that codes, names and messages cannot drift apart.
 */
#include "parmap.h"

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
        return "unknown error";
    }
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
        return "EUNKNOWN";
    }
}
