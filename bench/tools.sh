#!/bin/sh
# bench/tools.sh: parmap's real-world examples against the real tools.
#
#   1. Compression of one file of semi-compressible data (128 MiB by
#      default, generated deterministically: words, CSV-like records and
#      some noise, compressing to about half): gzip -6, pigz -6 -p 2 and
#      examples/pgzip -l 6 with 1 and 2 threads.
#   2. Hashing: sha256sum against examples/psha256sum with 1 and 2 threads,
#      on 2,000 files of 64 KiB and on 20 files of 16 MiB.
# Each task ends with a control row: the single-threaded tool run as two
# processes at once on half the work each ("2 gzip procs", "2 sha256sum
# procs", through xargs -P 2). It shows how much parallel speedup the
# machine gives at that moment: on a shared, loaded machine it can be far
# below 2, and then the 2-thread rows cannot do better either.
#
# Every command runs RUNS times after a warm-up run (files are in the page
# cache: this measures CPU throughput, not the disk). The table gives the
# median wall time, the speedup over the single-threaded tool of the task
# (gzip, sha256sum: its median divided by this one) and the CPU time (user
# + system) per run. Outputs are checked too: every .gz must decompress to
# the input, and psha256sum's output must equal sha256sum's.
#
# TIMER picks how runs are timed:
#   hyperfine  (the default when it is installed) runs each command's runs
#              back to back; CPU time is hyperfine's mean.
#   loop       runs the commands of a task round-robin (run 1 of each, then
#              run 2 of each, ...) so that changes in load on a shared
#              machine fall on every command alike; wall time from
#              `date +%s.%N`, CPU time (median) from /usr/bin/time when
#              installed. The default when hyperfine is missing.
#
# Usage (from the build directory, after `make`):
#     sh bench/tools.sh [BUILDDIR]
# Environment: RUNS (default 5), SIZE_MIB (default 128), TIMER, WORK
# (scratch directory, default a new one under TMPDIR, removed at the end),
# INSTALL=no to never apt-get install pigz or hyperfine.
#
# pigz and hyperfine are installed with apt-get when missing and this runs
# as root; without pigz its row is left out.

set -u
builddir=$(cd "${1:-.}" && pwd) || exit 1
runs=${RUNS:-5}
size_mib=${SIZE_MIB:-128}
pgzip=$builddir/examples/pgzip
psha=$builddir/examples/psha256sum

for prog in "$pgzip" "$psha"; do
    if [ ! -x "$prog" ]; then
        echo "bench/tools.sh: $prog is not built (run make first; it needs zlib1g-dev and libssl-dev)" >&2
        exit 1
    fi
done
for tool in gzip sha256sum perl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench/tools.sh: $tool is required" >&2; exit 1; }
done

# Install the peers when missing (root with apt-get only).
missing=
command -v pigz >/dev/null 2>&1 || missing="$missing pigz"
command -v hyperfine >/dev/null 2>&1 || missing="$missing hyperfine"
if [ -n "$missing" ] && [ "${INSTALL:-yes}" != no ] && [ "$(id -u)" -eq 0 ] &&
    command -v apt-get >/dev/null 2>&1; then
    echo "installing$missing with apt-get" >&2
    # shellcheck disable=SC2086 # missing is a word list
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; }
fi
have_pigz=no
command -v pigz >/dev/null 2>&1 && have_pigz=yes
have_hyperfine=no
command -v hyperfine >/dev/null 2>&1 && have_hyperfine=yes

if [ -n "${WORK:-}" ]; then
    work=$WORK
    mkdir -p "$work" || exit 1
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/parmap-tools-bench.XXXXXX") || exit 1
    trap 'rm -rf "$work"' EXIT
fi
trap 'exit 130' INT TERM
results=$work/results.txt
: >"$results"

# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

# Semi-compressible text, the same bytes on every machine: Perl's rand() is
# drand48 on every platform since Perl 5.20, and the seed is fixed.
gen_data() {
    perl -e '
        srand(20261121);
        my @w = map { my $l = 2 + int(rand(9));
                      join "", map { chr(97 + int(rand(26))) } 1 .. $l } 1 .. 5000;
        my ($n, $buf) = (0, "");
        while ($n < $ARGV[0]) {
            my $r = rand();
            my $line;
            if ($r < 0.8) {        # prose from a Zipf-ish vocabulary
                $line = join(" ", map { $w[int(rand(rand() < 0.5 ? 200 : 5000))] }
                                  1 .. (4 + int(rand(12)))) . "\n";
            } elsif ($r < 0.95) {  # records
                $line = sprintf("%d,%.4f,%s,%08x\n", int(rand(1e6)), rand(1000),
                                $w[int(rand(5000))], int(rand(2**32)));
            } else {               # noise
                $line = join("", map { chr(33 + int(rand(94))) } 1 .. 60) . "\n";
            }
            $buf .= $line;
            $n += length $line;
            if (length $buf > 65536) { print $buf; $buf = ""; }
        }
        print $buf;
    ' "$1" | head -c "$1"
}

data=$work/data
bytes=$((size_mib * 1024 * 1024))
echo "generating $size_mib MiB of semi-compressible data in $work ..." >&2
gen_data "$bytes" >"$data"

# Files to hash: 2,000 x 64 KiB cut from the data, and 20 x 16 MiB cut
# from the data repeated (its content does not matter to SHA-256's speed).
mkdir "$work/small" "$work/large"
# repeat_data BYTES: the data, repeated as needed, cut to BYTES bytes.
repeat_data() {
    copies=$(($1 / bytes + 1))
    i=0
    while [ "$i" -lt "$copies" ]; do cat "$data"; i=$((i + 1)); done | head -c "$1"
}
(cd "$work/small" && repeat_data $((2000 * 65536)) | split -a 4 -d -b 65536 - f) || exit 1
(cd "$work/large" && repeat_data $((20 * 16777216)) | split -a 2 -d -b 16777216 - f) || exit 1
# The data cut in two halves, for the control row "2 gzip procs": two
# single-threaded gzip processes at once, on half the data each.
head -c $((bytes / 2)) "$data" >"$work/half1"
tail -c +$((bytes / 2 + 1)) "$data" >"$work/half2"
nsmall=$(ls "$work/small" | wc -l)
nlarge=$(ls "$work/large" | wc -l)

# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

timer=${TIMER:-}
if [ -z "$timer" ]; then
    if [ "$have_hyperfine" = yes ]; then timer=hyperfine; else timer=loop; fi
fi
case $timer in
hyperfine) [ "$have_hyperfine" = yes ] || { echo "bench/tools.sh: TIMER=hyperfine but hyperfine is not installed" >&2; exit 1; } ;;
loop) ;;
*) echo "bench/tools.sh: TIMER must be hyperfine or loop" >&2; exit 1 ;;
esac
gnu_time=
[ -x /usr/bin/time ] && /usr/bin/time -f '%e' true >/dev/null 2>&1 && gnu_time=/usr/bin/time

median() {
    sort -n | awk '{ v[NR] = $1 }
        END { if (NR == 0) print "nan"
              else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# run_once CMD FILE: run the shell command line CMD once; append its wall
# seconds and CPU seconds (user + system, or "nan") to FILE.
run_once() {
    if [ -n "$gnu_time" ]; then
        t0=$(date +%s.%N)
        "$gnu_time" -f '%U %S' -o "$work/cpu" sh -c "$1" >/dev/null 2>&1 || return 1
        t1=$(date +%s.%N)
        cpu=$(awk '{ print $1 + $2 }' "$work/cpu")
    else
        t0=$(date +%s.%N)
        sh -c "$1" >/dev/null 2>&1 || return 1
        t1=$(date +%s.%N)
        cpu=nan
    fi
    echo "$t1 $t0 $cpu" | awk '{ printf "%.6f %s\n", $1 - $2, $3 }' >>"$2"
}

# task GROUP NAME1 CMD1 NAME2 CMD2 ...: time the commands of one task and
# record "GROUP|NAME|median wall seconds|CPU seconds" for each.
task() {
    group=$1
    shift
    echo "  $group: $(($# / 2)) commands, $timer" >&2
    if [ "$timer" = hyperfine ]; then
        while [ $# -ge 2 ]; do
            hyperfine --style none --warmup 1 --runs "$runs" \
                --export-csv "$work/hf.csv" -n "$1" "$2" >/dev/null 2>&1 || {
                echo "bench/tools.sh: '$2' failed" >&2
                exit 1
            }
            # Columns: command,mean,stddev,median,user,system,min,max
            awk -F, -v g="$group" -v n="$1" \
                'NR == 2 { printf "%s|%s|%s|%.3f\n", g, n, $4, $5 + $6 }' \
                "$work/hf.csv" >>"$results"
            shift 2
        done
        return
    fi
    # Round-robin: one warm-up of each, then run r of every command.
    n=0
    for arg in "$@"; do
        n=$((n + 1))
        [ $((n % 2)) -eq 0 ] || continue
        sh -c "$arg" >/dev/null 2>&1 || { echo "bench/tools.sh: '$arg' failed" >&2; exit 1; }
        : >"$work/t.$n"
    done
    r=0
    while [ "$r" -lt "$runs" ]; do
        n=0
        for arg in "$@"; do
            n=$((n + 1))
            [ $((n % 2)) -eq 0 ] || continue
            run_once "$arg" "$work/t.$n" || { echo "bench/tools.sh: '$arg' failed" >&2; exit 1; }
        done
        r=$((r + 1))
    done
    n=0
    for arg in "$@"; do
        n=$((n + 1))
        if [ $((n % 2)) -eq 1 ]; then
            name=$arg
            continue
        fi
        wall=$(cut -d' ' -f1 "$work/t.$n" | median)
        cpu=$(cut -d' ' -f2 "$work/t.$n" | grep -v nan | median)
        echo "$group|$name|$wall|$cpu" >>"$results"
    done
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)
echo "timing: $runs runs per command after one warm-up, timer: $timer" >&2

# 1. Compression, all at level 6 (gzip's default).
set -- "gzip -6" "gzip -6 -c '$data' >'$work/gzip.gz'"
[ "$have_pigz" = yes ] &&
    set -- "$@" "pigz -6 -p 2" "pigz -6 -p 2 -c '$data' >'$work/pigz.gz'"
task "compress $size_mib MiB" "$@" \
    "pgzip -l 6 -p 1" "'$pgzip' -l 6 -p 1 -o '$work/pgzip1.gz' '$data'" \
    "pgzip -l 6 -p 2" "'$pgzip' -l 6 -p 2 -o '$work/pgzip2.gz' '$data'" \
    "2 gzip procs" "gzip -6 -c '$work/half1' >'$work/half1.gz' & gzip -6 -c '$work/half2' >'$work/half2.gz'; wait"

# 2. Hashing.
task "sha256 $nsmall x 64 KiB" \
    "sha256sum" "cd '$work/small' && sha256sum f* >'$work/small.sha'" \
    "psha256sum -p 1" "cd '$work/small' && '$psha' -p 1 f* >'$work/small1.psha'" \
    "psha256sum -p 2" "cd '$work/small' && '$psha' -p 2 f* >'$work/small2.psha'" \
    "2 sha256sum procs" "cd '$work/small' && ls | xargs -n $(((nsmall + 1) / 2)) -P 2 sha256sum >/dev/null"
task "sha256 $nlarge x 16 MiB" \
    "sha256sum" "cd '$work/large' && sha256sum f* >'$work/large.sha'" \
    "psha256sum -p 1" "cd '$work/large' && '$psha' -p 1 f* >'$work/large1.psha'" \
    "psha256sum -p 2" "cd '$work/large' && '$psha' -p 2 f* >'$work/large2.psha'" \
    "2 sha256sum procs" "cd '$work/large' && ls | xargs -n $(((nlarge + 1) / 2)) -P 2 sha256sum >/dev/null"
load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)

# ---------------------------------------------------------------------------
# Checks and table
# ---------------------------------------------------------------------------

ok=yes
for f in gzip pigz pgzip1 pgzip2; do
    [ -f "$work/$f.gz" ] || continue
    if ! gzip -dc "$work/$f.gz" | cmp -s - "$data"; then
        echo "CHECK FAILED: $f.gz does not decompress to the input" >&2
        ok=no
    fi
done
cmp -s "$work/pgzip1.gz" "$work/pgzip2.gz" ||
    { echo "CHECK FAILED: pgzip -p 1 and -p 2 outputs differ" >&2; ok=no; }
for f in small1 small2; do
    cmp -s "$work/$f.psha" "$work/small.sha" ||
        { echo "CHECK FAILED: psha256sum output ($f) differs from sha256sum's" >&2; ok=no; }
done
for f in large1 large2; do
    cmp -s "$work/$f.psha" "$work/large.sha" ||
        { echo "CHECK FAILED: psha256sum output ($f) differs from sha256sum's" >&2; ok=no; }
done

size_of() { [ -f "$1" ] && wc -c <"$1" | awk '{ printf "%.1f MiB", $1 / 1048576 }'; }

echo
echo "parmap examples vs real tools: $(nproc 2>/dev/null || echo '?') CPUs, load average $load_before at start, $load_after at end"
echo "timer: $timer; median of $runs runs (wall seconds); speedup = the task's single-threaded tool's median / this median;"
echo "CPU s = user + system seconds per run ($([ "$timer" = hyperfine ] && echo "hyperfine's mean" || echo median))"
echo
printf '%-24s %-18s %10s %9s %8s  %s\n' "task" "command" "median s" "speedup" "CPU s" "output"
printf '%-24s %-18s %10s %9s %8s  %s\n' "------------------------" "------------------" "----------" "---------" "--------" "--------"
awk -F'|' '
    { group[NR] = $1; name[NR] = $2; t[NR] = $3; cpu[NR] = $4
      if (!($1 in base)) base[$1] = $3 }
    END {
        for (i = 1; i <= NR; i++)
            printf "%-24s %-18s %10.3f %8.2fx %8s\n", group[i], name[i], t[i],
                   (t[i] > 0 ? base[group[i]] / t[i] : 0),
                   (cpu[i] == "nan" || cpu[i] == "" ? "-" : sprintf("%.3f", cpu[i]))
    }' "$results" >"$work/table"
while IFS= read -r line; do
    out=
    case $line in
    *"gzip -6 "*) out=$(size_of "$work/gzip.gz") ;;
    *"pigz -6 -p 2"*) out=$(size_of "$work/pigz.gz") ;;
    *"pgzip -l 6 -p 1"*) out=$(size_of "$work/pgzip1.gz") ;;
    *"pgzip -l 6 -p 2"*) out=$(size_of "$work/pgzip2.gz") ;;
    *"2 gzip procs"*) out=$(cat "$work/half1.gz" "$work/half2.gz" | wc -c |
        awk '{ printf "%.1f MiB (2 members)", $1 / 1048576 }') ;;
    esac
    echo "$line  $out"
done <"$work/table"
[ "$have_pigz" = yes ] || echo "(pigz is not installed: its row is missing)"
echo
echo "outputs checked: $ok"
[ "$ok" = yes ]
