#!/bin/sh
# Runs each Criterion test binary under valgrind's memcheck and fails when
# any process (the runner or a forked test) reports an error or a definite or
# indirect leak.
#
# Criterion's exit status ignores what valgrind finds in the test processes,
# so the per-process logs test/vg.<test>.<pid>.log are read instead. Prints
# each binary's "Synthesis:" line and one PASS/FAIL line per binary; the full
# test output is kept in test/<test>.vg.out.
#
# Environment: VALGRIND (the valgrind command), VALGRIND_FLAGS.
# Usage: valgrind-check.sh TEST_PROGRAM...

if [ -z "${VALGRIND:-}" ] || ! command -v "$VALGRIND" >/dev/null 2>&1; then
    echo "error: valgrind was not found by configure; install it (Debian: apt-get install valgrind) and re-run ./configure" >&2
    exit 1
fi
if [ $# -eq 0 ]; then
    echo "error: no test programs given (was Criterion found by configure?)" >&2
    exit 1
fi

watchdog=
if command -v timeout >/dev/null 2>&1; then
    watchdog="timeout --kill-after=10 ${VALGRIND_TIMEOUT:-1800}"
fi

status=0
for prog in "$@"; do
    name=${prog##*/}
    dir=${prog%/*}
    [ "$dir" != "$prog" ] || dir=.
    out="$dir/$name.vg.out"
    rm -f "$dir"/vg."$name".*.log "$out"

    start=$(date +%s)
    # A binary gets at most VALGRIND_TIMEOUT seconds (default 1800), so a
    # hang cannot eat the CI budget; Criterion's own per-test timeouts
    # normally fire long before.
    # shellcheck disable=SC2086 # VALGRIND_FLAGS is a list of options
    $watchdog "$VALGRIND" $VALGRIND_FLAGS --log-file="$dir/vg.$name.%p.log" "./$prog" >"$out" 2>&1
    rc=$?
    end=$(date +%s)

    esc=$(printf '\033')
    line=$(sed -n "s/${esc}\[[0-9;]*m//g; s/^.*\(Synthesis:.*\)$/\1/p" "$out" | tail -n 1)
    if [ -n "$line" ]; then
        echo "$name (valgrind): $line"
    else
        echo "$name (valgrind): no Criterion summary (exit status $rc): its tests did not run"
    fi

    problems=
    case $rc in
    0) ;;
    124 | 137) problems="killed after ${VALGRIND_TIMEOUT:-1800} s (a hang?)" ;;
    *) problems="exit status $rc" ;;
    esac
    [ -n "$line" ] || problems="${problems:+$problems, }no Criterion summary"
    bad_logs=
    for log in "$dir"/vg."$name".*.log; do
        [ -f "$log" ] || continue
        if grep -q -E 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]|indirectly lost: [1-9]' "$log"; then
            bad_logs="$bad_logs $log"
        fi
    done
    if [ -n "$bad_logs" ]; then
        problems="${problems:+$problems, }valgrind errors in$bad_logs"
    fi

    if [ -n "$problems" ]; then
        echo "FAIL: $prog under valgrind ($((end - start)) s): $problems"
        for log in $bad_logs; do
            grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|Invalid|uninitialised|Mismatched|by 0x|at 0x' "$log" | head -n 20 | sed 's/^/    /'
        done
        status=1
    else
        echo "PASS: $prog under valgrind ($((end - start)) s)"
    fi
done
exit $status
