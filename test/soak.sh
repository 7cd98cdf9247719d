#!/bin/sh
# Soak test: runs the mixed stress program for a long time and fails if the
# process grows: resident memory, open file descriptors or threads.
#
# Every SOAK_INTERVAL seconds it samples, from /proc/PID, VmRSS and Threads
# (status) and the number of entries in fd/. At the end it compares, for
# each of the three, the largest value of the first third of the samples
# with the largest value of the last third: the last may exceed the first
# by at most a small tolerance (RSS: SOAK_RSS_TOLERANCE per cent, default
# 10, and at least 1024 kB; fds: 0; threads: SOAK_THREAD_TOLERANCE per cent,
# default 25, and at least 4, since pools of random sizes come and go).
# A leak of one allocation, descriptor or thread per round grows far past
# that in minutes. It also fails when the program reports a broken
# invariant or exits non-zero.
#
# Usage: soak.sh [SECONDS]   (or SOAK_SECONDS; default 600)
# Environment:
#   SOAK_PROGRAM   the program (default test/stress_mixed-plain); it is run
#                  as PROGRAM -t SECONDS [SOAK_SEED]
#   SOAK_INTERVAL  seconds between samples (default 3)
#   SOAK_LOG       where the samples go (default soak.log), as
#                  "seconds rss_kb fds threads" lines; the program's own
#                  output goes next to it (soak-program.log)
# `make soak` builds the program and runs this; it is not part of CI.

seconds=${1:-${SOAK_SECONDS:-600}}
program=${SOAK_PROGRAM:-test/stress_mixed-plain}
interval=${SOAK_INTERVAL:-3}
log=${SOAK_LOG:-soak.log}
rss_tol=${SOAK_RSS_TOLERANCE:-10}
thr_tol=${SOAK_THREAD_TOLERANCE:-25}

if [ ! -x "$program" ]; then
    echo "soak: $program is not an executable (build it with make soak)" >&2
    exit 2
fi
case $log in
*.log) out=${log%.log}-program.log ;;
*) out=$log-program.log ;;
esac
echo "soak: running $program for $seconds s, sampling every $interval s into $log"

# shellcheck disable=SC2086 # SOAK_SEED may be empty
"$program" -t "$seconds" ${SOAK_SEED:-} >"$out" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; exit 130' INT TERM

: >"$log"
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
    status=/proc/$pid/status
    rss=$(awk '/^VmRSS:/ {print $2}' "$status" 2>/dev/null)
    threads=$(awk '/^Threads:/ {print $2}' "$status" 2>/dev/null)
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    # A sample taken while the process exits is incomplete: skip it.
    if [ -n "$rss" ] && [ -n "$threads" ] && [ "$fds" -gt 0 ]; then
        echo "$(($(date +%s) - start)) $rss $fds $threads" >>"$log"
    fi
    sleep "$interval"
done
wait "$pid"
rc=$?
tail -n 3 "$out"

samples=$(wc -l <"$log")
if [ "$samples" -lt 6 ]; then
    echo "FAIL: soak: only $samples samples; run it longer" >&2
    exit 1
fi

# Prints "first_rss last_rss first_fds last_fds first_thr last_thr".
maxima=$(awk -v n="$samples" '
    { t = int(n / 3) }
    NR <= t { if ($2 > r1) r1 = $2; if ($3 > f1) f1 = $3; if ($4 > h1) h1 = $4 }
    NR > n - t { if ($2 > r3) r3 = $2; if ($3 > f3) f3 = $3; if ($4 > h3) h3 = $4 }
    END { print r1 + 0, r3 + 0, f1 + 0, f3 + 0, h1 + 0, h3 + 0 }' "$log")
# shellcheck disable=SC2086
set -- $maxima
rss1=$1 rss3=$2 fd1=$3 fd3=$4 thr1=$5 thr3=$6

rss_allow=$((rss1 * rss_tol / 100))
[ "$rss_allow" -lt 1024 ] && rss_allow=1024
thr_allow=$((thr1 * thr_tol / 100))
[ "$thr_allow" -lt 4 ] && thr_allow=4

echo "soak: $samples samples over $seconds s; max of the first third -> max of the last third:"
echo "soak:   RSS     $rss1 kB -> $rss3 kB (allowed +$rss_allow kB)"
echo "soak:   fds     $fd1 -> $fd3 (allowed +0)"
echo "soak:   threads $thr1 -> $thr3 (allowed +$thr_allow)"

failed=0
if [ "$rc" -ne 0 ]; then
    echo "FAIL: soak: $program exited with status $rc; see $out" >&2
    failed=1
fi
if [ "$rss3" -gt $((rss1 + rss_allow)) ]; then
    echo "FAIL: soak: resident memory grew from $rss1 kB to $rss3 kB" >&2
    failed=1
fi
if [ "$fd3" -gt "$fd1" ]; then
    echo "FAIL: soak: open file descriptors grew from $fd1 to $fd3" >&2
    failed=1
fi
if [ "$thr3" -gt $((thr1 + thr_allow)) ]; then
    echo "FAIL: soak: threads grew from $thr1 to $thr3" >&2
    failed=1
fi
[ "$failed" -eq 0 ] && echo "PASS: soak: no growth in $seconds s"
exit $failed
