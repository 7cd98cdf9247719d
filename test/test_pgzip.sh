#!/bin/sh
# Checks examples/pgzip against the real gzip: for random and compressible
# inputs of sizes around every boundary the program has (empty, one byte,
# one block, one batch and one byte more, many blocks, a few MiB), with
# several thread counts, block sizes and levels, `gzip -t` must accept the
# output and `gzip -dc` must give back the input byte for byte. The output
# must not depend on the thread count.
#
# Run by `make check` from the build directory; PGZIP overrides the program.
# gzip is required: without it the test fails rather than skips. When
# configure did not find zlib, pgzip is not built and the test is SKIPPED
# (exit 77) with a message saying what to install.

pgzip=${PGZIP:-./examples/pgzip}

if [ "${PARMAP_HAVE_ZLIB:-yes}" = no ]; then
    echo "SKIP: examples/pgzip was not built: configure found no zlib."
    echo "      Install it (Debian: apt-get install zlib1g-dev) and re-run ./configure."
    exit 77
fi

if ! command -v gzip >/dev/null 2>&1; then
    echo "FAIL: gzip is not installed; it is needed to check pgzip's output" >&2
    echo "      (Debian: apt-get install gzip)" >&2
    exit 1
fi
if [ ! -x "$pgzip" ]; then
    echo "FAIL: $pgzip was not built" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_pgzip.XXXXXX") || exit 99
failures=0
checks=0
# Keep the inputs of a failed run for reproduction; clean up otherwise.
trap 'if [ "$failures" -eq 0 ]; then rm -rf "$tmp"; else echo "inputs kept in $tmp" >&2; fi' EXIT
trap 'exit 130' INT TERM

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# Inputs. A batch is 16 blocks per thread, so with -b 32k the sizes 524288
# (one thread), 1048576 (two) and 1572864 (three) end exactly on a batch,
# which exercises the look-ahead that finds the final block; 131072 is one
# default block, 524289 one byte past a batch.
: >"$tmp/empty"
printf 'x' >"$tmp/one"
for size in 32768 131072 131073 524288 524289 1048576 1572864 3145733; do
    head -c "$size" /dev/urandom >"$tmp/random-$size"
done
# Compressible: numbered lines of text, cut to exact sizes.
seq 1 400000 | sed 's/$/ the quick brown fox jumps over the lazy dog/' \
    >"$tmp/text-all"
for size in 32768 131072 1048576 1048593 4194304; do
    head -c "$size" "$tmp/text-all" >"$tmp/text-$size"
done
rm -f "$tmp/text-all"

# check NAME INPUT PGZIP-ARGS...: compress INPUT, then test and round-trip.
check() {
    name=$1 input=$2
    shift 2
    checks=$((checks + 1))
    if ! "$pgzip" "$@" -o "$tmp/out.gz" "$input" 2>"$tmp/err"; then
        fail "$name: pgzip $* exited non-zero: $(cat "$tmp/err")"
        return 1
    fi
    if ! gzip -t "$tmp/out.gz" 2>"$tmp/err"; then
        fail "$name: gzip -t rejects the output of pgzip $*: $(cat "$tmp/err")"
        return 1
    fi
    if ! gzip -dc "$tmp/out.gz" | cmp -s - "$input"; then
        fail "$name: gzip -dc does not give back the input (pgzip $*)"
        return 1
    fi
    return 0
}

for input in "$tmp"/empty "$tmp"/one "$tmp"/random-* "$tmp"/text-*; do
    base=${input##*/}
    for threads in 1 2 3; do
        check "$base -p $threads" "$input" -p "$threads" || continue
        # The same input with another thread count gives the same bytes.
        if [ "$threads" -eq 1 ]; then
            cp "$tmp/out.gz" "$tmp/ref.gz"
        else
            checks=$((checks + 1))
            cmp -s "$tmp/out.gz" "$tmp/ref.gz" ||
                fail "$base: output with -p $threads differs from -p 1"
        fi
        check "$base -p $threads -b 32k" "$input" -p "$threads" -b 32k
    done
done

# Levels, independent blocks and a large block size, on a few inputs.
for input in "$tmp"/empty "$tmp"/random-131073 "$tmp"/text-1048593; do
    base=${input##*/}
    for level in 0 1 9; do
        check "$base -l $level" "$input" -p 2 -b 64k -l "$level"
    done
    check "$base -i" "$input" -p 2 -b 32k -i
    check "$base -b 1M" "$input" -p 2 -b 1M
done

# Standard input to standard output.
checks=$((checks + 1))
if ! "$pgzip" -p 2 -b 32k <"$tmp/text-1048593" >"$tmp/stdout.gz" ||
    ! gzip -dc "$tmp/stdout.gz" | cmp -s - "$tmp/text-1048593"; then
    fail "stdin to stdout round trip"
fi

# A ratio check: pgzip at the default level must be within 2% of gzip -6
# on compressible text (pigz's technique costs only a few bytes a block).
checks=$((checks + 1))
"$pgzip" -p 2 -o "$tmp/p.gz" "$tmp/text-4194304"
gzip -6 -c "$tmp/text-4194304" >"$tmp/g.gz"
psize=$(wc -c <"$tmp/p.gz")
gsize=$(wc -c <"$tmp/g.gz")
if [ "$psize" -gt $((gsize + gsize / 50)) ]; then
    fail "ratio: pgzip gives $psize bytes, gzip -6 $gsize"
fi
echo "text-4194304: pgzip $psize bytes, gzip -6 $gsize bytes"

# Errors: a missing input file and a bad option exit non-zero.
checks=$((checks + 1))
if "$pgzip" -o "$tmp/x.gz" "$tmp/no-such-file" 2>/dev/null; then
    fail "a missing input file did not make pgzip fail"
fi
checks=$((checks + 1))
if "$pgzip" -l 12 -o "$tmp/x.gz" "$tmp/one" 2>/dev/null; then
    fail "-l 12 was accepted"
fi

echo "pgzip: $checks checks, $failures failed"
# Under `make check`, fd 9 is make's terminal (see AM_TESTS_FD_REDIRECT):
# print the counts there in the Criterion summary format that the other
# tests use and quickstart.sh adds up.
if { true >&9; } 2>/dev/null; then
    echo "test_pgzip.sh: Synthesis: Tested: $checks | Passing: $((checks - failures)) | Failing: $failures | Crashing: 0" >&9
fi
[ "$failures" -eq 0 ]
