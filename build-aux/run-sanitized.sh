#!/bin/sh
# Runs one sanitizer-instrumented program, keeps its output in LOG and shows
# it, and fails when the program exits non-zero, runs longer than
# SANITIZER_TIMEOUT seconds (default 300: a deadlock must not eat the CI
# budget), or any sanitizer report appears in the output (a report that did
# not change the exit status, such as one from a forked child, still fails
# the run).
#
# Usage: run-sanitized.sh LABEL LOG PROGRAM [ARGS...]

label=$1
log=$2
shift 2
limit=${SANITIZER_TIMEOUT:-300}

start=$(date +%s)
if command -v timeout >/dev/null 2>&1; then
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
else
    "$@" >"$log" 2>&1
fi
rc=$?
end=$(date +%s)
cat "$log"

reports=$(grep -c -E 'WARNING: ThreadSanitizer|ERROR: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:' "$log")
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "FAIL: $label: $1 still running after $limit s (a deadlock?), killed; see $log" >&2
    exit 1
fi
if [ "$rc" -ne 0 ] || [ "$reports" -ne 0 ]; then
    echo "FAIL: $label: $1 exited with status $rc, $reports sanitizer report(s); see $log" >&2
    exit 1
fi
echo "PASS: $label: $1 ($((end - start)) s, no reports)"
exit 0
