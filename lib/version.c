/*
 * The library's own version, which can differ from the header a program was
 * compiled against when the shared library is upgraded underneath it.
 */
#include "parmap.h"

const char *parmap_version(void)
{
    return PARMAP_VERSION_STRING;
}
