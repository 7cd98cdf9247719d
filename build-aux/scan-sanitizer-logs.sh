#!/bin/sh
# Fails when any of the given logs holds a sanitizer report.
#
# LeakSanitizer runs when a Criterion test process exits, after the test's
# result has already been sent to the runner, so a leak is printed to the
# log but the test may still pass. This scan turns every such report (and
# any AddressSanitizer or UBSan report, in case one slipped through) into a
# failure, naming the log.
#
# One exception: a leak whose allocation stack lies entirely inside
# libcriterion (no frame of the test or of parmap) is Criterion's runner
# leaking its own bookkeeping, which it does after some test failures; it
# is shown but not counted. A leak allocated by a test or by parmap always
# has a frame outside libcriterion.
#
# Usage: scan-sanitizer-logs.sh LOG...

status=0
found_log=no
for log in "$@"; do
    [ -f "$log" ] || continue
    found_log=yes
    # Prints "<real reports> <criterion-only leaks>".
    counts=$(awk '
        function end_block() {
            if (in_block) {
                if (outside) real_leaks++; else crit_leaks++
            }
            in_block = 0; outside = 0
        }
        /ERROR: AddressSanitizer|WARNING: AddressSanitizer|runtime error:|ERROR: UndefinedBehaviorSanitizer|LeakSanitizer has encountered a fatal error/ { other++ }
        /(Direct|Indirect) leak of/ { end_block(); in_block = 1; outside = 0; next }
        in_block && /^ *#[0-9]+ / {
            # Frame #0 is the allocator interceptor; any later frame outside
            # libcriterion makes the leak a real one.
            if ($1 != "#0" && $0 !~ /libcriterion\.so/) outside = 1
            next
        }
        in_block && /^ *$/ { end_block() }
        END { end_block(); print other + real_leaks, crit_leaks + 0 }
    ' "$log")
    real=${counts% *}
    crit=${counts#* }
    if [ "$crit" -ne 0 ]; then
        echo "note: $log: $crit leak(s) allocated entirely inside libcriterion (Criterion's runner, not parmap): not counted"
    fi
    if [ "$real" -ne 0 ]; then
        echo "FAIL: $log: $real sanitizer report(s):" >&2
        grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|WARNING: AddressSanitizer|runtime error:|(Direct|Indirect) leak of' "$log" |
            head -n 5 | sed 's/^/    /' >&2
        status=1
    fi
done
if [ "$found_log" = no ]; then
    echo "FAIL: no test logs to scan (did the tests run?)" >&2
    exit 1
fi
[ "$status" -eq 0 ] && echo "PASS: sanitizer log scan: no reports in $# log(s)"
exit $status
