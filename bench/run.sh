#!/bin/sh
# run.sh: builds and runs parmap's benchmark suite against its peers.
#
#   sh bench/run.sh                 # full run, 5 rounds, a few minutes
#   BENCH_ROUNDS=3 sh bench/run.sh  # fewer rounds
#   BENCH_QUICK=1 sh bench/run.sh   # smoke run: small sizes, 1 round
#
# Environment:
#   BENCH_ROUNDS   rounds (default 5; 1 with BENCH_QUICK)
#   BENCH_QUICK    1 = small sizes and one round, to check that all runs
#   BENCH_OUT      where results go (default: this directory)
#   BENCH_TIMEOUT  seconds before one measurement process is killed (300)
#   BENCH_QUIET_WAIT  seconds to wait before each round for the machine to
#                  look idle (a 2-thread probe seeing >= 85% of 2 CPUs; 30)
#   BENCH_QUIET_BUDGET  seconds the whole run may also spend waiting for
#                  the same before single measurements (up to 5 s each; 150)
#   PARMAP_LIB     link this archive (e.g. .libs/libparmap.a) instead of
#                  compiling lib/*.c here with the peers' flags
#   BENCH_NO_INSTALL=1  never apt-get install missing peers
#
# Each (workload, variant) runs in its own process, so one library's idle
# threads or runtime cannot slow another's; within each round the variants
# run in a rotated order so the machine's noise hits all of them alike.
# Writes results.csv (medians, min, max over rounds), results_raw.csv
# (every sample) and, when gnuplot is installed, results.png.
# Word splitting of $W1ARGS and friends, and of pkg-config output, is
# intended throughout.
# shellcheck disable=SC2086,SC2046
set -eu

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
SRC_DIR=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR=${BENCH_OUT:-$BENCH_DIR}
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then ROUNDS=${BENCH_ROUNDS:-1}; else ROUNDS=${BENCH_ROUNDS:-5}; fi
TIMEOUT=${BENCH_TIMEOUT:-300}
QUIET_WAIT=${BENCH_QUIET_WAIT:-30}
THREADS=2

say() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- peers
# gnuplot only draws the chart, so it is installed when possible but not
# required.
PEERS="libpthreadpool-dev libtbb-dev libglib2.0-dev cthreadpool-dev"
missing=""
for p in $PEERS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
for tool in gcc:gcc g++:g++ pkg-config:pkgconf; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing="$missing ${tool#*:}"
done
optional=""
dpkg -s gnuplot-nox >/dev/null 2>&1 || command -v gnuplot >/dev/null 2>&1 || optional="gnuplot-nox"
can_install=0
[ "${BENCH_NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ] && can_install=1
if [ -n "$missing$optional" ] && [ "$can_install" = 1 ]; then
    say "bench: installing missing packages:$missing $optional"
    apt-get update >/dev/null
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing $optional >/dev/null ||
        [ -z "$missing" ] # a failed optional install is not fatal
elif [ -n "$missing" ]; then
    say "bench: missing packages:$missing (install them, or run as root)"
    exit 1
fi

# ---------------------------------------------------------------- build
BUILD=$(mktemp -d "${TMPDIR:-/tmp}/parmap-bench.XXXXXX")
# An interrupted W1H measurement must not leave its CPU hog spinning.
hog_pid=
trap '[ -z "$hog_pid" ] || kill "$hog_pid" 2>/dev/null; rm -rf "$BUILD"' EXIT
trap 'exit 130' INT TERM
CFLAGS_COMMON="-O2 -D_GNU_SOURCE -pthread"
CC=${CC:-gcc}
CXX=${CXX:-g++}

parmap_objs=""
have_parmap=1
if [ -n "${PARMAP_LIB:-}" ]; then
    parmap_objs=$PARMAP_LIB
    lib_how="archive $PARMAP_LIB"
elif [ -f "$SRC_DIR/lib/map.c" ] && [ -f "$SRC_DIR/lib/pool.c" ]; then
    # The library's own sources with the peers' flags: always current, and
    # independent of whether configure was run or where its build dir is.
    for c in "$SRC_DIR"/lib/*.c; do
        o="$BUILD/lib_$(basename "$c" .c).o"
        $CC $CFLAGS_COMMON -std=c11 -I"$SRC_DIR/include" -I"$SRC_DIR/lib" -c "$c" -o "$o"
        parmap_objs="$parmap_objs $o"
    done
    lib_how="lib/*.c compiled with $CC -O2 -std=c11 -D_GNU_SOURCE"
else
    have_parmap=0
    lib_how="NOT BUILT (lib/ sources missing): parmap variants skipped"
fi
nopm=""
[ "$have_parmap" = 1 ] || nopm="-DBENCH_NO_PARMAP"

$CC $CFLAGS_COMMON -std=gnu11 -w -I/usr/include/cthreadpool \
    -c /usr/share/cthreadpool/thpool.c -o "$BUILD/thpool.o"
# shellcheck disable=SC2086
$CC $CFLAGS_COMMON -std=c11 -Wall -Wextra -fopenmp $nopm -I"$SRC_DIR/include" \
    "$BENCH_DIR/bench.c" "$BUILD/thpool.o" $parmap_objs \
    $(pkg-config --cflags --libs glib-2.0) -lpthreadpool -lm -o "$BUILD/bench_c"
# shellcheck disable=SC2046
$CXX -O2 -std=c++17 -pthread -Wall -Wextra "$BENCH_DIR/bench_tbb.cpp" \
    $(pkg-config --cflags --libs tbb) -o "$BUILD/bench_tbb"
$CC -O2 -std=c11 -Wall -Wextra "$BENCH_DIR/summarize.c" -lm -o "$BUILD/summarize"

# ---------------------------------------------------------------- facts
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
echo "parmap benchmark suite"
echo "  date         $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "  host         $(uname -srm), nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
echo "  load avg     $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  gcc          $($CC --version | head -1)"
echo "  g++          $($CXX --version | head -1)"
echo "  parmap       $(sed -n 's/^#define PARMAP_VERSION_STRING "\(.*\)"/\1/p' "$SRC_DIR/include/parmap.h"), $lib_how"
echo "  peers        pthreadpool $(pkgver libpthreadpool-dev), oneTBB $(pkgver libtbb-dev), GLib $(pkgver libglib2.0-dev),"
echo "               C-Thread-Pool $(pkgver cthreadpool-dev), OpenMP (libgomp of gcc)"
echo "  rounds       $ROUNDS$( [ "$QUICK" = 1 ] && echo ' (BENCH_QUICK: small sizes)')"

# ---------------------------------------------------------------- plan
if [ "$QUICK" = 1 ]; then
    W1ARGS="n=1000000 inner=2"
    W2ARGS="reps=10000 inner=1 idle_ms=200"
    W2SLOW="reps=2000 inner=1 idle_ms=200"
    W3SECONDS=0.3
    W4ARGS="w4_items=200 inner=1 idle_ms=200"
    W6ARGS="n=1000000 inner=2"
else
    W1ARGS="inner=5"
    W2ARGS="reps=100000 inner=1"
    W2SLOW="reps=10000 inner=1"
    W3SECONDS=2.5
    W4ARGS="inner=3"
    W6ARGS="inner=5"
fi
# The one-task-per-item queues take about 0.2 us (GLib) and 0.25 us
# (C-Thread-Pool) per item here, so they run W1 at full size, once.
W1SLOW="$W1ARGS inner=1"
if [ "$QUICK" = 1 ]; then
    echo "  sizes        W1/W5/W6 1,000,000 items; W2 10,000 maps (GLib 2,000); W3 2,000 items; W4 200 items"
else
    echo "  sizes        W1/W5/W6 10,000,000 items (all peers at full size); W2 100,000 maps (GLib 10,000);"
    echo "               W3 2,000 items; W4 1,000 items of 0-20 ms on 64 threads; idle probe 1 s"
fi
W3ITERS=$("$BUILD/bench_c" calibrate "$W3SECONDS")
W3ARGS="w3_iters=$W3ITERS inner=1"
echo "  W3 work      $W3ITERS spin steps in total (calibrated to ${W3SECONDS} s serial)"
# shellcheck disable=SC2086
FLOORS=$("$BUILD/bench_c" floors threads=$THREADS $W3ARGS $W4ARGS)
echo "  in-order floors  the best a scheduler that starts items in index order on the first free"
echo "               thread can reach on this data with zero overhead: W3 efficiency ${FLOORS% *},"
echo "               W4 makespan / ideal ${FLOORS#* } (see bench/README.md)"

# One line per measurement process: workload binary variant args.
PLAN="$BUILD/plan"
: >"$PLAN"
plan() { echo "$*" >>"$PLAN"; }
pm() { [ "$have_parmap" = 1 ] && plan "$@"; return 0; }
for v in serial serial_fnptr omp_static omp_guided omp_dynamic1 pthreadpool_1d pthreadpool_tile4096; do
    plan W1 bench_c $v $W1ARGS
done
plan W1 bench_tbb tbb_auto $W1ARGS
plan W1 bench_c glib_item $W1SLOW
plan W1 bench_c cthreadpool_item $W1SLOW
pm W1 bench_c parmap $W1ARGS
pm W1 bench_c parmap_chunk4096 $W1ARGS
# W1H: W1 again while another process (bench_c hog) keeps the last CPU busy.
for v in serial omp_static omp_guided pthreadpool_tile4096; do
    plan W1H bench_c $v $W1ARGS
done
plan W1H bench_tbb tbb_auto $W1ARGS
pm W1H bench_c parmap $W1ARGS
pm W6 bench_c parmap $W6ARGS
for v in serial omp pthreadpool_1d; do plan W2 bench_c $v $W2ARGS; done
plan W2 bench_tbb tbb_auto $W2ARGS
plan W2 bench_c glib_item $W2SLOW
pm W2 bench_c parmap $W2ARGS
for v in serial omp_dynamic1 omp_static pthreadpool_1d; do plan W3 bench_c $v $W3ARGS; done
plan W3 bench_tbb tbb_auto $W3ARGS
pm W3 bench_c parmap $W3ARGS
for v in omp_dynamic1 pthreadpool_1d pthreadpool_yield glib_item; do plan W4 bench_c $v $W4ARGS; done
pm W4 bench_c parmap $W4ARGS

# ---------------------------------------------------------------- run
# The machine is shared: before each measurement, wait up to 5 s for a
# 2-thread spin probe (60 ms) to see >= 85% of the CPUs, while a budget of
# BENCH_QUIET_BUDGET seconds for the whole run lasts (0 disables).
QUIET_BUDGET=${BENCH_QUIET_BUDGET:-150}
quiet_spent=0
quiet_wait() {
    w=0
    while [ "$w" -lt 5 ] && [ "$quiet_spent" -lt "$QUIET_BUDGET" ]; do
        par=$("$BUILD/bench_c" probe "$THREADS" | cut -d, -f4)
        awk -v p="$par" -v t="$THREADS" 'BEGIN { exit !(p >= 0.85 * t) }' && return 0
        sleep 1
        w=$((w + 1))
        quiet_spent=$((quiet_spent + 1))
    done
    return 0
}
RAW="$BUILD/raw.csv"
echo "round,workload,variant,metric,value" >"$RAW"
LOG="$BUILD/stderr.log"
: >"$LOG"
t_start=$(date +%s)
r=1
while [ "$r" -le "$ROUNDS" ]; do
    # On a shared machine, give neighbours' bursts a chance to pass: wait
    # (up to BENCH_QUIET_WAIT s) until the probe sees nearly all CPUs.
    waited=0
    while [ "$waited" -lt "$QUIET_WAIT" ]; do
        par=$("$BUILD/bench_c" probe "$THREADS" | cut -d, -f4)
        awk -v p="$par" -v t="$THREADS" 'BEGIN { exit !(p >= 0.85 * t) }' && break
        sleep 3
        waited=$((waited + 3))
    done
    [ "$waited" -gt 0 ] && printf 'round %s: waited %s s for a quieter machine\n' "$r" "$waited" >&2
    "$BUILD/bench_c" probe "$THREADS" | sed "s/^/$r,/" >>"$RAW"
    for w in W1 W1H W6 W2 W3 W4; do
        grep "^$w " "$PLAN" >"$BUILD/plan_w" || continue
        count=$(wc -l <"$BUILD/plan_w")
        # Rotate the order by the round number.
        shift_by=$(( (r - 1) % count ))
        { tail -n +$((shift_by + 1)) "$BUILD/plan_w"; head -n "$shift_by" "$BUILD/plan_w"; } >"$BUILD/plan_r"
        printf 'round %s/%s %s:' "$r" "$ROUNDS" "$w" >&2
        while read -r wl bin v args; do
            printf ' %s' "$v" >&2
            quiet_wait
            rc=0
            run_wl=$wl
            if [ "$wl" = W1H ]; then
                # The same W1 process, with a hog pinned to the last CPU
                # from a little before it starts until it ends; its rows
                # are filed under W1H (and its W5 reading dropped).
                run_wl=W1
                "$BUILD/bench_c" hog $(($(nproc) - 1)) </dev/null >/dev/null 2>>"$LOG" &
                hog_pid=$!
                sleep 0.2
            fi
            # shellcheck disable=SC2086
            timeout "$TIMEOUT" "$BUILD/$bin" "$run_wl" "$v" threads=$THREADS $args \
                >"$BUILD/one.out" 2>>"$LOG" </dev/null || rc=$?
            if [ -n "$hog_pid" ]; then
                kill "$hog_pid" 2>/dev/null || true
                wait "$hog_pid" 2>/dev/null || true
                hog_pid=
                sed -i -e 's/^W1,/W1H,/' -e '/^W5,/d' "$BUILD/one.out"
            fi
            sed "s/^/$r,/" "$BUILD/one.out" >>"$RAW"
            if [ "$rc" != 0 ]; then
                echo "$r,$wl,$v,failed,$rc" >>"$RAW"
                printf '(FAILED rc=%s)' "$rc" >&2
            fi
        done <"$BUILD/plan_r"
        echo >&2
    done
    "$BUILD/bench_c" probe "$THREADS" | sed "s/^/$r,/" >>"$RAW"
    r=$((r + 1))
done
t_end=$(date +%s)

# ---------------------------------------------------------------- report
mkdir -p "$OUT_DIR"
cp "$RAW" "$OUT_DIR/results_raw.csv"
mkdir -p "$BUILD/plot"
"$BUILD/summarize" "$RAW" "$OUT_DIR/results.csv" "$BUILD/plot" "$THREADS"
echo
echo "Cells are median [min-max] over $ROUNDS round(s); each round's sample is the best of"
echo "the process's timed repetitions, and ratios are formed within a round before the median."
echo "Waited $quiet_spent s in total before single measurements for a quieter machine."
printf 'CPUs available to a %s-thread spin probe, before and after each round:' "$THREADS"
awk -F, '$2 == "ENV" { printf " %.2f", $5 }' "$RAW"
echo "  (load avg now $(cut -d' ' -f1-3 /proc/loadavg))"
echo "Ran in $((t_end - t_start)) s. Results: $OUT_DIR/results.csv, samples: $OUT_DIR/results_raw.csv"
if [ -s "$LOG" ]; then
    echo "stderr of the measurement processes:"
    sed 's/^/  /' "$LOG" | head -40
fi

if command -v gnuplot >/dev/null 2>&1; then
    gp="$BUILD/plot/chart.gp"
    {
        echo "set terminal pngcairo size 1800,900 font 'DejaVu Sans,9' noenhanced"
        echo "set output '$OUT_DIR/results.png'"
        echo "set multiplot layout 2,4 title 'parmap (orange) vs peers, $(nproc) CPUs, median of $ROUNDS round(s); bars show min-max'"
        echo "set style fill solid 0.8 border -1"
        echo "set boxwidth 0.7"
        echo "set xtics rotate by 35 right nomirror"
        echo "set grid ytics"
        echo "set key off"
        echo "set yrange [0:*]"
        echo "set linetype 1 lc rgb '#5b7db1'"
        echo "set linetype 2 lc rgb '#e8850c'"
        for w in W1 W1H W2 W3 W4 W5 W6; do
            f="$BUILD/plot/$w.dat"
            if [ -s "$f" ] && [ "$(grep -vc '^#' "$f")" -gt 0 ]; then
                title=$(head -1 "$f" | sed 's/^# //')
                if [ "$w" = W2 ]; then echo "set logscale y"; echo "set yrange [*:*]"; else echo "unset logscale y"; echo "set yrange [0:*]"; fi
                echo "set title '$title'"
                echo "plot '$f' using 0:2:5:xtic(1) with boxes lc variable, '' using 0:2:3:4 with yerrorbars lc rgb 'black' pt 0"
            fi
        done
        echo "unset multiplot"
    } >"$gp"
    if gnuplot "$gp" 2>>"$BUILD/gnuplot.log"; then
        echo "Chart: $OUT_DIR/results.png"
    else
        echo "gnuplot failed:"; sed 's/^/  /' "$BUILD/gnuplot.log" | head -20
    fi
fi

# W7: a stream over 10,000,000 generated items keeps its memory flat
# (parmap only: no peer has streams). It checks every result and fails on
# growth of the peak RSS beyond 1 MiB.
if [ "$have_parmap" = 1 ]; then
    echo
    # shellcheck disable=SC2086
    $CC $CFLAGS_COMMON -std=c11 -Wall -Wextra -I"$SRC_DIR/include" \
        "$BENCH_DIR/stream_rss.c" $parmap_objs -pthread -o "$BUILD/stream_rss"
    if [ "${BENCH_QUICK:-0}" = 1 ]; then w7_items=1000000; else w7_items=10000000; fi
    if ! "$BUILD/stream_rss" "$w7_items"; then
        echo "bench: W7 stream memory check failed" >&2
        exit 1
    fi
fi

# A wrong or crashed parmap run fails the suite; a broken peer is only
# flagged in the table (it is not what this project ships).
if grep -q '^[^,]*,parmap[^,]*,.*,\(INVALID\|FAILED\|UNCHECKED\)$' "$OUT_DIR/results.csv"; then
    echo "bench: a parmap variant produced wrong results or failed" >&2
    exit 1
fi
