#!/bin/sh
# The progress bar as a person sees it. Runs the built examples/bar
#   1. inside a detached tmux session of 100x10 in the C locale (ASCII bar),
#   2. the same in C.UTF-8 (Unicode blocks),
#   3. with its output redirected to a file, as in a log or CI,
# and checks what the pane shows (tmux capture-pane, scrollback included)
# and what the file holds.
#
# On the terminal each bar must be exactly one line, redrawn in place: the
# map's at 100% with every item counted, the stream's with its final count,
# each as wide as the pane allows (99 columns: the bar leaves the last
# column free), and nothing else: no stacked partial lines, no leftover
# escape or control characters. In the file there must be plain lines only
# (no carriage return, no escape byte), at most 80 columns, with counts that
# never go back and one final line per bar.
#
# Builds nothing: `make check` has built examples/bar. Needs tmux; as root
# it installs it with apt-get when missing, otherwise it fails saying so.
# It never skips. Exit status 0 (pass) or 1 (fail).

LC_ALL=C
export LC_ALL
unset COLUMNS LINES

prog=./examples/bar
deadline=120 # seconds per run; the example itself takes about 3 s
status=0

fail() {
    echo "FAIL: bar_tmux: $*" >&2
    status=1
}

die() {
    echo "FAIL: bar_tmux: $*" >&2
    exit 1
}

[ -x "$prog" ] || die "$prog not found in $(pwd): build it first (make)"

if ! command -v tmux >/dev/null 2>&1; then
    sudo=
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    if command -v apt-get >/dev/null 2>&1; then
        echo "bar_tmux: tmux not found; installing it with apt-get"
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y \
            --no-install-recommends tmux </dev/null >/dev/null 2>&1 ||
            { $sudo apt-get update </dev/null >/dev/null 2>&1 &&
              $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y \
                  --no-install-recommends tmux </dev/null >/dev/null 2>&1; }
    fi
    command -v tmux >/dev/null 2>&1 ||
        die "tmux is required and could not be installed;" \
            "install it (Debian: apt-get install tmux)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parmap-bar.XXXXXX") || die "mktemp failed"
sock=$tmp/tmux.sock
cleanup() {
    tmux -S "$sock" kill-server >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

esc=$(printf '\033')
cr=$(printf '\r')

# Prints the number of characters of each line of file $1 that is longer
# than $2 characters (in the UTF-8 locale, so a block glyph counts as one).
too_long() {
    while IFS= read -r line; do
        n=$(printf '%s' "$line" | LC_ALL=C.UTF-8 wc -m)
        [ "$n" -le "$2" ] || echo "$n: $line"
    done <"$1"
}

# Characters of a line, in the UTF-8 locale.
chars() {
    printf '%s' "$1" | LC_ALL=C.UTF-8 wc -m | tr -d ' '
}

# Runs the example in a fresh tmux server with locale $1, waits for it and
# writes the pane, scrollback included, to $2.
run_in_tmux() {
    locale=$1 pane=$2
    rm -f "$tmp/done"
    # The pane's shell writes the exit status to a marker file, then stays,
    # so the pane can be captured after the program has finished.
    cmd="cd '$(pwd)' && LC_ALL=$locale $prog; echo \$? >'$tmp/done.tmp'"
    cmd="$cmd; mv '$tmp/done.tmp' '$tmp/done'; exec sleep 600"
    tmux -S "$sock" -f /dev/null new-session -d -x 100 -y 10 -s bar "$cmd" ||
        die "tmux new-session failed"
    # While the map runs, the pane must show its bar part-way, on one line.
    rm -f "$pane.mid"
    waited=0
    while [ ! -f "$tmp/done" ]; do
        if [ ! -f "$pane.mid" ]; then
            tmux -S "$sock" capture-pane -p -S - -t bar >"$tmp/snap" 2>/dev/null
            if grep -q -E '^map: +[0-9]{1,2}%\|' "$tmp/snap"; then
                mv "$tmp/snap" "$pane.mid"
            fi
        fi
        if [ "$waited" -ge $((deadline * 10)) ]; then
            tmux -S "$sock" capture-pane -p -S - -t bar >"$pane" 2>/dev/null
            tmux -S "$sock" kill-server >/dev/null 2>&1
            echo "pane so far:" >&2
            sed 's/^/    | /' "$pane" >&2
            die "examples/bar did not finish within $deadline s in tmux ($locale)"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    # The final lines are written before the program exits, and tmux has
    # read them once the marker exists; a short pause lets it render.
    sleep 0.3
    tmux -S "$sock" capture-pane -p -S - -t bar >"$pane" ||
        die "tmux capture-pane failed"
    tmux -S "$sock" kill-server >/dev/null 2>&1
    if [ -f "$pane.mid" ]; then
        mid=$(grep '^map: ' "$pane.mid")
        echo "--- part-way ($locale) ---"
        printf '%s\n' "$mid"
        n=$(printf '%s\n' "$mid" | grep -c .)
        [ "$n" -eq 1 ] || fail "part-way, the pane shows $n map lines, not 1 ($locale)"
        n=$(chars "$(printf '%s\n' "$mid" | head -n 1)")
        [ "$n" -eq 99 ] ||
            fail "part-way, the map line is $n characters wide, not 99 ($locale)"
    else
        fail "the pane never showed the map's bar part-way ($locale)"
    fi
    rc=$(cat "$tmp/done")
    [ "$rc" = 0 ] || fail "examples/bar exited with status $rc in tmux ($locale)"
    # Drop the empty rows below the output.
    sed -i -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$pane"
    echo "--- tmux pane ($locale, 100x10) ---"
    cat "$pane"
    echo "---"
}

# Checks a captured pane: $1 the file, $2 the glyph of a full cell, $3 the
# locale (for messages).
check_pane() {
    pane=$1 full=$2 locale=$3

    if grep -q "$esc" "$pane" || grep -q "$cr" "$pane" ||
        grep -q -E '\[[0-9;]*[A-HJKm]|\^\[' "$pane"; then
        fail "the pane shows escape or control characters ($locale)"
    fi
    n=$(grep -c '^map: ' "$pane")
    [ "$n" -eq 1 ] || fail "the pane shows $n map bar lines, not exactly 1 ($locale)"
    n=$(grep -c '^stream: ' "$pane")
    [ "$n" -eq 1 ] || fail "the pane shows $n stream bar lines, not exactly 1 ($locale)"
    n=$(grep -c '%|' "$pane")
    [ "$n" -eq 1 ] ||
        fail "the pane shows $n lines with a percentage bar, not 1 ($locale)"

    map=$(grep '^map: ' "$pane" | head -n 1)
    case $map in
    "map: 100%|"*"| 400/400 [00:0"*"<00:00, "*" it/s, 8 failed]") ;;
    *) fail "the map line is not the final state: '$map' ($locale)" ;;
    esac
    # The bar is full: 100% of it made of full cells.
    cells=$(printf '%s\n' "$map" | sed 's/^map: 100%|\(.*\)| 400\/400.*/\1/')
    other=$(printf '%s' "$cells" | sed "s/$full//g")
    [ -n "$cells" ] && [ -z "$other" ] ||
        fail "the map bar is not all '$full': '$cells' ($locale)"
    # Sized to the pane: 100 columns less the one left free.
    n=$(chars "$map")
    [ "$n" -eq 99 ] || fail "the map line is $n characters wide, not 99 ($locale)"

    stream=$(grep '^stream: ' "$pane" | head -n 1)
    case $stream in
    "stream: 600 it [00:0"*", "*" it/s]") ;;
    *) fail "the stream line is not the final state: '$stream' ($locale)" ;;
    esac

    grep -q '^bar: all results check out$' "$pane" ||
        fail "the example's closing line is missing ($locale)"
    long=$(too_long "$pane" 100)
    [ -z "$long" ] || fail "lines wider than the pane ($locale): $long"
}

# 1 and 2: on a terminal.
run_in_tmux C "$tmp/pane-ascii"
check_pane "$tmp/pane-ascii" '#' C
if grep -q '█' "$tmp/pane-ascii"; then
    fail "Unicode blocks in the C locale"
fi

if locale -a 2>/dev/null | grep -q -i -E '^c\.utf-?8$'; then
    run_in_tmux C.UTF-8 "$tmp/pane-utf8"
    check_pane "$tmp/pane-utf8" '█' C.UTF-8
else
    fail "the C.UTF-8 locale is missing, so the Unicode bar cannot be checked"
fi

# 3. Into a file, as in a log: a line at most every 0.5 s, then the final one.
log=$tmp/log
$prog --interval 0.5 >"$log" 2>&1
rc=$?
echo "--- output redirected to a file (--interval 0.5) ---"
cat "$log"
echo "---"
[ "$rc" -eq 0 ] || fail "examples/bar exited with status $rc writing to a file"
if grep -q "$esc" "$log" || grep -q "$cr" "$log"; then
    fail "the file holds a carriage return or an escape byte"
fi
n=$(grep -c '^map: ' "$log")
[ "$n" -ge 2 ] ||
    fail "the file holds $n map lines; a 2 s map at 0.5 s should give several"
n=$(grep -c '^map: 100%|' "$log")
[ "$n" -eq 1 ] || fail "the file holds $n final map lines, not 1"
last=$(grep '^map: ' "$log" | tail -n 1)
case $last in
"map: 100%|"*"| 400/400 ["*", 8 failed]") ;;
*) fail "the last map line is not the final state: '$last'" ;;
esac
# Counts never go back.
grep '^map: ' "$log" | sed 's/.*| \([0-9]*\)\/400 .*/\1/' >"$tmp/counts"
sort -n -c "$tmp/counts" 2>/dev/null || fail "map counts go back in the file"
n=$(grep -c '^stream: ' "$log")
[ "$n" -ge 1 ] || fail "the file holds no stream line"
last=$(grep '^stream: ' "$log" | tail -n 1)
case $last in
"stream: 600 it ["*" it/s]") ;;
*) fail "the last stream line is not the final state: '$last'" ;;
esac
long=$(too_long "$log" 80)
[ -z "$long" ] || fail "lines wider than 80 columns in the file: $long"
n=$(grep -c '^map: .*|$' "$log")
[ "$n" -eq 0 ] || fail "a map line in the file ends in the middle"

[ "$status" -eq 0 ] && echo "bar_tmux: ok"
exit "$status"
