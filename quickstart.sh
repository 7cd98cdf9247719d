#!/usr/bin/env bash
# Builds parmap from a fresh checkout and runs its demo or its tests.
#
#   ./quickstart.sh demo   # install what is missing, build, run examples/demo
#   ./quickstart.sh test   # install what is missing, build, then run
#                          # make check, check-tsan, check-tsan-clang,
#                          # check-asan, check-valgrind, check-helgrind,
#                          # fuzz (60 s) and lint, and end with
#                          # "N passed, N failed"
#
# Missing tools are installed with apt-get (Debian/Ubuntu), through sudo when
# not run as root. Each step's full output is kept in quickstart-logs/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

usage() {
    echo "usage: $0 demo|test" >&2
    exit 2
}

[ $# -eq 1 ] || usage
mode=$1
case "$mode" in
demo | test) ;;
*) usage ;;
esac

logdir=quickstart-logs
mkdir -p "$logdir"

jobs=2
if command -v nproc >/dev/null 2>&1; then
    jobs=$(nproc)
fi

# --------------------------------------------------------------------------
# Dependencies
# --------------------------------------------------------------------------

packages=(build-essential autoconf automake libtool autoconf-archive pkgconf
    libcriterion-dev)
if [ "$mode" = test ]; then
    # valgrind: check-valgrind and check-helgrind; zlib, OpenSSL, mandoc,
    # cmake, tmux: the example, man-page, install and progress-bar tests;
    # clang and its runtime: check-tsan-clang and the fuzzer; cppcheck,
    # clang-tidy, clang-tools (scan-build): make lint.
    packages+=(valgrind zlib1g-dev libssl-dev mandoc cmake tmux clang
        libclang-rt-14-dev cppcheck clang-tidy clang-tools)
fi

missing_deps() {
    local tool
    for tool in cc make autoreconf aclocal automake libtoolize pkg-config; do
        command -v "$tool" >/dev/null 2>&1 || echo "$tool"
    done
    [ -f /usr/share/aclocal/ax_pthread.m4 ] || echo "ax_pthread.m4 (autoconf-archive)"
    [ -f /usr/include/criterion/criterion.h ] || echo "criterion headers"
    if [ "$mode" = test ]; then
        for tool in valgrind mandoc cmake tmux gzip sha256sum clang cppcheck \
            clang-tidy scan-build; do
            command -v "$tool" >/dev/null 2>&1 || echo "$tool"
        done
        [ -f /usr/include/zlib.h ] || echo "zlib headers"
        [ -f /usr/include/openssl/evp.h ] || echo "OpenSSL headers"
        ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a \
            >/dev/null 2>&1 || echo "libFuzzer (libclang-rt-dev)"
    fi
}

install_deps() {
    local missing
    missing=$(missing_deps | paste -sd ' ' -)
    [ -n "$missing" ] || return 0
    echo "==> installing packages (missing: $missing)"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "error: not root and sudo is not available; install as root: apt-get install ${packages[*]}" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: apt-get not found; install these with your package manager: ${packages[*]}" >&2
        exit 1
    fi
    local start=$SECONDS
    if ! { "${sudo[@]}" apt-get update &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
            --no-install-recommends "${packages[@]}"; } \
        </dev/null >"$logdir/apt.log" 2>&1; then
        echo "error: package installation failed; last lines of $logdir/apt.log:" >&2
        tail -n 20 "$logdir/apt.log" >&2
        exit 1
    fi
    echo "    installed in $((SECONDS - start)) s"
    missing=$(missing_deps | paste -sd ' ' -)
    if [ -n "$missing" ]; then
        echo "error: still missing after installation: $missing" >&2
        exit 1
    fi
}

# --------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------

# Runs a build step quietly, its output going to quickstart-logs/NAME.log;
# on failure shows the end of that log and stops.
build_step() {
    local name=$1
    shift
    local log="$logdir/$name.log" start=$SECONDS
    if "$@" >"$log" 2>&1; then
        echo "==> $name: ok ($((SECONDS - start)) s)"
    else
        echo "==> $name: FAILED ($((SECONDS - start)) s); last lines of $log:"
        tail -n 40 "$log" | sed 's/^/    /'
        return 1
    fi
}

build() {
    if [ ! -x configure ] || [ configure -ot configure.ac ] || [ configure -ot Makefile.am ]; then
        build_step autoreconf autoreconf -fi || return 1
    fi
    if [ ! -f Makefile ]; then
        build_step configure ./configure || return 1
    fi
    build_step make make -j"$jobs" || return 1
}

# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

total_passed=0
total_failed=0

# Runs one make target, its output going to quickstart-logs/TARGET.log, and
# prints one line with its result. KIND "criterion" counts the tests in
# every Criterion "Synthesis:" line of the output (a failing step that
# reports no failed test counts as one failure); KIND "step" counts the step
# itself as one test.
test_step() {
    local kind=$1 target=$2
    local log="$logdir/$target.log" start=$SECONDS rc=0
    make -j"$jobs" "$target" >"$log" 2>&1 </dev/null || rc=$?
    local secs=$((SECONDS - start))

    local passed=0 failed=0 binaries=0
    if [ "$kind" = criterion ]; then
        # Sum the Synthesis lines ("test_map: Synthesis: ..." as printed by
        # build-aux/criterion-wrap.sh and valgrind-check.sh). A Criterion
        # binary that the harness failed although no test in it failed (a
        # leak report, valgrind errors, a crash before its summary) counts
        # as one failure; a test that is not a Criterion binary (a shell
        # script) counts as one test.
        read -r passed failed binaries < <(awk '
            /Synthesis: Tested:/ && !/^\[/ {
                name = $1; sub(/:$/, "", name)
                p = $0; sub(/.*Passing: /, "", p); sub(/[^0-9].*/, "", p)
                f = $0; sub(/.*Failing: /, "", f); sub(/[^0-9].*/, "", f)
                pass[name] += p; fail[name] += f; seen[name] = 1
                next
            }
            /^(PASS|XFAIL|FAIL|ERROR|XPASS): [^ ]*test\/[^ ]/ {
                name = $2; sub(/^.*\//, "", name); sub(/[.:].*$/, "", name)
                ok = ($1 == "PASS:" || $1 == "XFAIL:")
                if (!(name in result) || !ok) result[name] = ok
            }
            END {
                P = 0; F = 0; B = 0
                for (n in seen) { P += pass[n]; F += fail[n]; B++ }
                for (n in result) {
                    if (!(n in seen)) { B++; if (result[n]) P++; else F++ }
                    else if (!result[n] && fail[n] == 0) F++
                }
                print P, F, B
            }' "$log")
        if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
            failed=1
        fi
    elif [ "$rc" -eq 0 ]; then
        passed=1
    else
        failed=1
    fi
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))

    local detail="$passed passed, $failed failed"
    [ "$kind" = criterion ] && detail="$binaries test programs, $detail"
    if [ "$rc" -eq 0 ]; then
        printf '==> make %-18s ok      (%s; %d s)\n' "$target:" "$detail" "$secs"
    else
        printf '==> make %-18s FAILED  (%s; %d s); see %s\n' "$target:" "$detail" "$secs" "$log"
        # The lines that say what failed, or else the end of the log.
        if grep -q -E '^(FAIL|ERROR|XPASS):|\[FAIL\]|no Criterion summary|Sanitizer|runtime error:|(^|[^_[:alnum:]])error:' "$log"; then
            grep -E '^(FAIL|ERROR|XPASS):|\[FAIL\]|no Criterion summary|SUMMARY: [A-Za-z]*Sanitizer|runtime error:|(^|[^_[:alnum:]])error:' "$log" |
                head -n 30 | sed 's/^/    /'
        else
            tail -n 30 "$log" | sed 's/^/    /'
        fi
    fi
}

# --------------------------------------------------------------------------

install_deps

case "$mode" in
demo)
    build
    echo "==> running ./examples/demo"
    exec ./examples/demo
    ;;
test)
    build_ok=yes
    build || build_ok=no
    # The test targets rebuild what they need, so they run (and count their
    # failures) even when the build above failed.
    test_step criterion check
    test_step step check-tsan
    test_step step check-tsan-clang
    test_step criterion check-asan
    test_step criterion check-valgrind
    test_step step check-helgrind
    test_step step fuzz
    test_step step lint
    [ "$build_ok" = yes ] || echo "==> note: the build failed, see $logdir/make.log"
    echo "$total_passed passed, $total_failed failed"
    [ "$total_failed" -eq 0 ] && [ "$build_ok" = yes ]
    ;;
esac
