#!/bin/sh
# Log compiler for the Criterion tests: runs one test binary and copies its
# "Synthesis:" line to fd 9.
#
# Under automake's parallel harness everything a test prints goes to its
# test/<name>.log, so `make check` would show only PASS/FAIL. Makefile.am
# sets AM_TESTS_FD_REDIRECT = 9>&1, which makes fd 9 the terminal of the
# make process; the summary line written there is what a reader sees.
# The test's full output still goes to the log, and the exit status is the
# test's own.
#
# Usage: criterion-wrap.sh PROGRAM [ARGS...]

prog=$1
name=${prog##*/}
out=$(mktemp "${TMPDIR:-/tmp}/parmap-test.XXXXXX") || exit 99
trap 'rm -f "$out"' EXIT
trap 'exit 130' INT TERM

"$@" >"$out" 2>&1
rc=$?
cat "$out"

# Write to fd 9 only when it is open (it is not when this script is run by
# hand), and drop colour codes in case the output was coloured.
if { true >&9; } 2>/dev/null; then
    esc=$(printf '\033')
    line=$(sed -n "s/${esc}\[[0-9;]*m//g; s/^.*\(Synthesis:.*\)$/\1/p" "$out" | tail -n 1)
    if [ -n "$line" ]; then
        echo "$name: $line" >&9
    else
        echo "$name: no Criterion summary (exit status $rc): its tests did not run" >&9
    fi
fi

# Criterion exits 0 without running anything when it is given an option it
# does not know, so a missing summary is a failure whatever the status.
if ! grep -q 'Synthesis:' "$out"; then
    echo "$name: FAIL: no Criterion 'Synthesis:' line in the output" >&2
    [ "$rc" -ne 0 ] || rc=1
fi
exit $rc
