#!/bin/sh
# ABI hygiene: the shared library exports exactly the symbols listed in
# test/parmap.sym (sorted, one per line), all of them parmap_*, and exactly
# the functions the header declares with PARMAP_API. An accidental export,
# a removed function or a declaration without a definition fails here.
#
# `make check` runs it from the build directory, with $srcdir set by the
# test harness (VPATH builds such as `make distcheck` included). By hand,
# from the top of a built tree: sh test/abi.sh
#
# After a deliberate change to the API, regenerate the list with
# `make update-abi` (PARMAP_ABI_UPDATE=1), commit it, and update
# PARMAP_LT_* in configure.ac by libtool's rules.
#
# A build without a shared library (configure --disable-shared, as
# `make check-asan` does) is checked through the static archive: the global
# symbols of default visibility are the ones a shared build exports.

LC_ALL=C
export LC_ALL

srcdir=${srcdir:-$(dirname "$0")/..}
list=$srcdir/test/parmap.sym
header=$srcdir/include/parmap.h
la=libparmap.la

fail() {
    echo "FAIL: abi: $*" >&2
    exit 1
}

[ -f "$la" ] || fail "$la not found in $(pwd): build the library first (make)"
[ -f "$header" ] || fail "$header not found (is srcdir=$srcdir right?)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parmap-abi.XXXXXX") || fail "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# libtool records the shared library's name in the .la file (dlname) and
# leaves it empty when none was built.
dlname=$(sed -n "s/^dlname='\(.*\)'\$/\1/p" "$la")
static=$(sed -n "s/^old_library='\(.*\)'\$/\1/p" "$la")
if [ -n "$dlname" ]; then
    lib=.libs/$dlname
    [ -f "$lib" ] || fail "$lib, named by $la, does not exist"
    command -v nm >/dev/null 2>&1 || fail "nm not found (install binutils)"
    # "ADDRESS TYPE NAME"; a versioned name carries @VERSION.
    nm -D --defined-only "$lib" >"$tmp/nm" || fail "nm -D $lib failed"
    awk 'NF >= 3 { sub(/@.*/, "", $3); print $3 }' "$tmp/nm" |
        sort -u >"$tmp/exported"
elif [ -n "$static" ]; then
    lib=.libs/$static
    [ -f "$lib" ] || fail "$lib, named by $la, does not exist"
    command -v readelf >/dev/null 2>&1 || fail "readelf not found (install binutils)"
    # "Num: Value Size Type Bind Vis Ndx Name" for every member.
    readelf -sW "$lib" >"$tmp/readelf" || fail "readelf -s $lib failed"
    awk '$1 ~ /^[0-9]+:$/ && NF >= 8 && ($5 == "GLOBAL" || $5 == "WEAK") &&
         $6 == "DEFAULT" && $7 != "UND" { print $8 }' "$tmp/readelf" |
        sort -u >"$tmp/exported"
else
    fail "$la names neither a shared nor a static library"
fi
[ -s "$tmp/exported" ] || fail "no exported symbols found in $lib"

if [ "${PARMAP_ABI_UPDATE:-0}" = 1 ]; then
    cp "$tmp/exported" "$list" || fail "cannot write $list"
    echo "abi: wrote $(wc -l <"$list") symbols of $lib to $list"
    exit 0
fi

status=0
echo "abi: checking $lib ($(wc -l <"$tmp/exported") exported symbols)"

# 1. Only the public prefix: internal names are parmap__*, everything else
#    (a helper without `static`, a dependency's symbol) must stay hidden.
if grep -v '^parmap_[a-z]' "$tmp/exported" >"$tmp/foreign"; then
    echo "FAIL: abi: exported symbols outside the parmap_ prefix:" >&2
    sed 's/^/    /' "$tmp/foreign" >&2
    status=1
fi

# 2. The committed list.
if [ ! -f "$list" ]; then
    echo "FAIL: abi: $list is missing; create it with make update-abi" >&2
    status=1
elif ! diff -u "$list" "$tmp/exported" >"$tmp/diff"; then
    echo "FAIL: abi: exported symbols differ from test/parmap.sym" >&2
    echo "  (- only in the list: removed or not built; + only in $lib: new" >&2
    echo "  or accidental. If deliberate: make update-abi, commit the list," >&2
    echo "  and update PARMAP_LT_* in configure.ac.)" >&2
    sed 's/^/    /' "$tmp/diff" >&2
    status=1
fi

# 3. The header: every PARMAP_API function is exported, and nothing else.
sed -n 's/^PARMAP_API[^(]*[^a-z0-9_]\(parmap_[a-z0-9_]*\)(.*/\1/p' \
    "$header" | sort -u >"$tmp/declared"
[ -s "$tmp/declared" ] || fail "no PARMAP_API declarations found in $header"
if ! diff -u "$tmp/declared" "$tmp/exported" >"$tmp/hdiff"; then
    echo "FAIL: abi: the header's PARMAP_API functions and the exports differ" >&2
    echo "  (- declared in include/parmap.h but not exported; + exported but" >&2
    echo "  not declared)" >&2
    sed 's/^/    /' "$tmp/hdiff" >&2
    status=1
fi

[ "$status" -eq 0 ] && echo "abi: ok: exports match test/parmap.sym and include/parmap.h"
exit "$status"
