#!/bin/sh
# Static analysis of lib/ and a portability check of the public header;
# `make lint` runs it. Fails on any finding.
#
#   1. cppcheck  (suppressions, each explained: .cppcheck-suppressions)
#   2. clang-tidy (checks and why some are off: .clang-tidy)
#   3. scan-build (the clang static analyzer, default checkers plus
#      optin.portability.UnixAPI, security.FloatLoopCounter and valist)
#   4. include/parmap.h compiled on its own, using every declaration, as
#      C99, C11 and C17 (gcc and clang) and C++11 and C++17 (g++ and
#      clang++) with -Wall -Wextra -Wpedantic -Werror
#
# Steps 1-3 run on lib/ twice: as installed, and with
# -DPARMAP_FAULT_INJECTION (the build every test links).
#
# Usage: lint.sh [SRCDIR]   (default: the directory above this script)
# Environment: CPPCHECK, CLANG_TIDY, SCAN_BUILD, CLANG, CC, CXX.
# Debian 12: apt-get install cppcheck clang-tidy clang-tools clang

srcdir=${1:-$(dirname "$0")/..}
cd "$srcdir" || exit 2
CPPCHECK=${CPPCHECK:-cppcheck}
CLANG_TIDY=${CLANG_TIDY:-clang-tidy}
SCAN_BUILD=${SCAN_BUILD:-scan-build}
CLANG=${CLANG:-clang}
CC=${CC:-cc}
CXX=${CXX:-g++}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parmap-lint.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

failed=0
fail() {
    echo "FAIL: lint: $*"
    failed=1
}
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        fail "$1 not found (Debian: apt-get install $2)"
        return 1
    fi
}

sources=$(ls lib/*.c)
configs="-D_GNU_SOURCE|-D_GNU_SOURCE -DPARMAP_FAULT_INJECTION"

# 1. cppcheck ---------------------------------------------------------------
if need "$CPPCHECK" cppcheck; then
    old_ifs=$IFS
    IFS='|'
    for defs in $configs; do
        IFS=$old_ifs
        # shellcheck disable=SC2086 # defs is a list of options
        if "$CPPCHECK" -q --std=c11 --library=posix \
            --enable=warning,style,performance,portability \
            --suppressions-list=.cppcheck-suppressions --inline-suppr \
            --error-exitcode=1 $defs -Iinclude -Ilib lib/ >"$tmp/cppcheck" 2>&1; then
            echo "PASS: lint: cppcheck lib/ ($defs)"
        else
            cat "$tmp/cppcheck"
            fail "cppcheck lib/ ($defs)"
        fi
        IFS='|'
    done
    IFS=$old_ifs
fi

# 2. clang-tidy -------------------------------------------------------------
if need "$CLANG_TIDY" clang-tidy; then
    old_ifs=$IFS
    IFS='|'
    for defs in $configs; do
        IFS=$old_ifs
        # shellcheck disable=SC2086
        if "$CLANG_TIDY" --quiet --config-file=.clang-tidy $sources -- \
            -std=c11 -pthread $defs -Iinclude -Ilib >"$tmp/tidy" 2>&1 &&
            ! grep -q -E '(warning|error):' "$tmp/tidy"; then
            echo "PASS: lint: clang-tidy lib/ ($defs)"
        else
            grep -E -A4 '(warning|error):' "$tmp/tidy" | head -n 80
            fail "clang-tidy lib/ ($defs)"
        fi
        IFS='|'
    done
    IFS=$old_ifs
fi

# 3. scan-build -------------------------------------------------------------
if need "$SCAN_BUILD" clang-tools && need "$CLANG" clang; then
    old_ifs=$IFS
    IFS='|'
    for defs in $configs; do
        IFS=$old_ifs
        # scan-build points $CC at its analyzer wrapper; the loop compiles
        # every file through it. --status-bugs makes a report fail.
        # shellcheck disable=SC2086,SC2016
        if "$SCAN_BUILD" --status-bugs --use-cc="$CLANG" -o "$tmp/scan" \
            -enable-checker optin.portability.UnixAPI \
            -enable-checker security.FloatLoopCounter \
            -enable-checker valist \
            sh -c 'for f in "$@"; do
                       $CC -std=c11 -pthread '"$defs"' -Iinclude -Ilib \
                           -c "$f" -o /dev/null || exit 1
                   done' sh $sources >"$tmp/scan.log" 2>&1; then
            echo "PASS: lint: scan-build lib/ ($defs)"
        else
            grep -E 'warning:|error:|bugs? found|scan-view' "$tmp/scan.log" | head -n 40
            fail "scan-build lib/ ($defs)"
        fi
        IFS='|'
    done
    IFS=$old_ifs
fi

# 4. The public header ------------------------------------------------------
# A translation unit that uses every type, constant and function of the
# header, so that each declaration is compiled, not only parsed.
cat >"$tmp/header.inc" <<'EOF'
static int f_item(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx; (void)i; (void)in; (void)out;
    return 0;
}
static int f_progress(void *ctx, const parmap_progress *p)
{
    (void)ctx;
    return p->done > p->total;
}
static int f_retry(void *ctx, size_t i, int err, unsigned attempt)
{
    (void)ctx; (void)i;
    return err != 0 && attempt < 3;
}
static int f_produce(void *ctx, size_t i, void *in)
{
    (void)ctx; (void)in;
    return i < 10;
}
static int f_task(void *ctx)
{
    (void)ctx;
    return 0;
}
int header_check(void);
int header_check(void)
{
    parmap_pool *pool = 0;
    parmap_pool_opts po = PARMAP_ZERO_INIT;
    parmap_opts o = PARMAP_ZERO_INIT;
    parmap_summary sum;
    parmap_record rec[1];
    parmap_halt halt = PARMAP_ZERO_INIT;
    parmap_cancel *cancel = 0;
    parmap_stream *stream = 0;
    parmap_stream_item item;
    parmap_stream_stats stats;
    parmap_group *group = 0;
    parmap_fn fn = f_item;
    parmap_progress_fn pfn = f_progress;
    parmap_retry_fn rfn = f_retry;
    parmap_producer_fn prod = f_produce;
    parmap_task_fn task = f_task;
    parmap_errno e = PARMAP_EFAILED;
    enum parmap_flags fl = PARMAP_FAIL_FAST;
    enum parmap_halt_when hw = PARMAP_HALT_NOW;
    enum parmap_halt_on ho = PARMAP_HALT_ON_DONE;
    enum parmap_wait wm = PARMAP_WAIT_FIRST_ERROR;
    size_t id = 0, done = 0, pending = 0;
    unsigned attempts = 0;
    int st = 0, rc = 0;
    char buf[1];

    halt.when = hw;
    halt.on = ho;
    halt.count = 1;
    o.flags = (unsigned)fl | PARMAP_UNORDERED | PARMAP_COLLECT;
    o.halt = halt;
    o.summary = &sum;
    o.records = rec;
    o.progress = pfn;
    o.retry_if = rfn;
    po.stack_size = 0;
    rc |= parmap_pool_create(&pool, parmap_cpu_count(), &po);
    rc |= (int)parmap_pool_size(pool);
    rc |= parmap_cancel_create(&cancel);
    parmap_cancel_trigger(cancel);
    rc |= parmap_cancel_triggered(cancel);
    parmap_cancel_reset(cancel);
    o.cancel = cancel;
    rc |= parmap_should_stop();
    rc |= parmap_map(pool, 1, buf, 1, buf, 1, fn, 0, &o);
    rc |= parmap_stream_create(&stream, pool, prod, 0, 1, fn, 0, 1, &o);
    rc |= parmap_stream_next(stream, &item);
    rc |= parmap_stream_inspect(stream, &stats);
    rc |= parmap_stream_destroy(stream);
    rc |= parmap_group_create(&group, pool, &o);
    rc |= parmap_group_submit(group, task, 0, &id);
    rc |= parmap_group_resubmit(group, id);
    rc |= parmap_group_wait(group, wm, -1.0, &id, &st);
    rc |= parmap_group_task(group, id, &st, &attempts);
    rc |= parmap_group_counts(group, &done, &pending);
    rc |= parmap_group_destroy(group);
    parmap_cancel_destroy(cancel);
    rc |= parmap_pool_destroy(pool);
    rc |= parmap_strerror(e)[0] + parmap_err_name(rc)[0] +
          parmap_version()[0];
    return rc + PARMAP_VERSION_HEX + PARMAP_VERSION_MAJOR +
           PARMAP_VERSION_MINOR + PARMAP_VERSION_PATCH +
           (int)sizeof PARMAP_VERSION_STRING;
}
EOF
printf '#include "parmap.h"\n#define PARMAP_ZERO_INIT {0}\n#include "header.inc"\n' >"$tmp/header.c"
printf '#include "parmap.h"\n#define PARMAP_ZERO_INIT {}\n#include "header.inc"\n' >"$tmp/header.cc"
header_ok=1
for cc in "$CC" "$CLANG"; do
    command -v "$cc" >/dev/null 2>&1 || { fail "$cc not found"; header_ok=0; continue; }
    for std in c99 c11 c17; do
        if ! "$cc" -std=$std -Wall -Wextra -Wpedantic -Werror \
            -Wstrict-prototypes -Wmissing-prototypes -Iinclude -I"$tmp" \
            -c "$tmp/header.c" -o "$tmp/header.o"; then
            fail "include/parmap.h as $std with $cc"
            header_ok=0
        fi
    done
done
for cxx in "$CXX" clang++; do
    command -v "$cxx" >/dev/null 2>&1 || { fail "$cxx not found"; header_ok=0; continue; }
    for std in c++11 c++17; do
        if ! "$cxx" -std=$std -Wall -Wextra -Wpedantic -Werror \
            -Iinclude -I"$tmp" -c "$tmp/header.cc" -o "$tmp/header.o"; then
            fail "include/parmap.h as $std with $cxx"
            header_ok=0
        fi
    done
done
[ "$header_ok" -eq 1 ] && echo "PASS: lint: include/parmap.h as C99, C11, C17 ($CC, $CLANG) and C++11, C++17 ($CXX, clang++)"

if [ "$failed" -ne 0 ]; then
    echo "lint: FAILED"
    exit 1
fi
echo "lint: no findings"
exit 0
