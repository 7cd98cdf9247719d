#!/bin/sh
# Checks the manual pages in man/:
#   1. `mandoc -T lint -W warning` on every page, warnings counted as errors
#      (link pages are linted through the page they include);
#   2. groff, when installed, formats every page without a warning (-ww);
#   3. every public function of include/parmap.h has a page (its own or a
#      .so link) and is named in the NAME section of the page it leads to,
#      and every link page points at a page that exists;
#   4. every complete program in an EXAMPLES section compiles without a
#      warning against the library just built, and runs successfully.
#
# mandoc is required: when it is missing and this runs as root on a system
# with apt-get, the test installs it (Debian package mandoc); otherwise it
# fails rather than skips.
#
# Run by `make check` from the build directory, which passes CC, CFLAGS,
# LIBTOOL and PARMAP_LA (the built libparmap.la) in the environment; srcdir
# is set by automake's test harness.

srcdir=${srcdir:-.}
man_dir=$srcdir/man
header=$srcdir/include/parmap.h
failures=0
checks=0

# Each check calls fail at most once.
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# MANDOC: the path configure found, if any; otherwise mandoc from PATH.
mandoc=${MANDOC:-mandoc}
command -v "$mandoc" >/dev/null 2>&1 || mandoc=mandoc
if ! command -v "$mandoc" >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "mandoc is missing: installing it with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends mandoc >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                  --no-install-recommends mandoc >/dev/null 2>&1; }
    fi
    if ! command -v "$mandoc" >/dev/null 2>&1; then
        echo "FAIL: mandoc is not installed, so the manual pages cannot be" >&2
        echo "      linted (Debian: apt-get install mandoc)" >&2
        exit 1
    fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_man.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# Link pages say `.so man3/<page>.3`, relative to the top of a manual
# tree, so the pages are linted from a copy laid out as one.
mkdir "$tmp/man3"
cp "$man_dir"/*.3 "$tmp/man3/" || exit 99
pages=$(cd "$tmp/man3" && ls ./*.3 | sed 's|^\./||')
[ -n "$pages" ] || { echo "FAIL: no pages in $man_dir"; exit 1; }

# 1. and 2. Lint and format every page. A link page is the one line
# `.so man3/<page>.3`, which mandoc follows, so the page it includes is
# linted again through it; mandoc also warns that .so links are "fragile,
# better use ln(1)". That one warning is expected for the link pages the
# project chose (man-db and mandoc both follow them), so it alone is set
# aside for them, and only when the link is the page's sole line.
for page in $pages; do
    checks=$((checks + 1))
    why=
    (cd "$tmp" && "$mandoc" -T lint -W warning "man3/$page") >"$tmp/lint" 2>&1
    rc=$?
    if [ "$(grep -c . "$tmp/man3/$page")" -eq 1 ] &&
        grep -q '^\.so man3/[a-z_]*\.3$' "$tmp/man3/$page"; then
        grep -v 'WARNING: \.so is fragile, better use ln(1)' "$tmp/lint" >"$tmp/lint2"
        mv "$tmp/lint2" "$tmp/lint"
        [ "$rc" -le 2 ] && [ ! -s "$tmp/lint" ] && rc=0
    fi
    if [ "$rc" -ne 0 ] || [ -s "$tmp/lint" ]; then
        why="mandoc -T lint -W warning (exit status $rc)"
    else
        : >"$tmp/lint"
    fi
    if command -v groff >/dev/null 2>&1; then
        (cd "$tmp" && groff -mdoc -Tutf8 -ww -z "man3/$page") >>"$tmp/lint" 2>&1
        [ ! -s "$tmp/lint" ] || [ -n "$why" ] || why="groff -mdoc -ww"
    fi
    if [ -n "$why" ]; then
        fail "man/$page: $why:"
        sed 's/^/    /' "$tmp/lint"
    fi
done
command -v groff >/dev/null 2>&1 || echo "note: groff is not installed; pages were linted with mandoc only"

# 3. Every public function has a page naming it.
functions=$(sed -n 's/^PARMAP_API [^(]*[ *]\(parmap_[a-z_]*\)(.*/\1/p' "$header")
checks=$((checks + 1))
[ -n "$functions" ] || fail "found no PARMAP_API function in $header"
for fn in $functions; do
    checks=$((checks + 1))
    page=$tmp/man3/$fn.3
    if [ ! -f "$page" ]; then
        fail "$fn has no page man/$fn.3"
        continue
    fi
    target=$(sed -n 's|^\.so man3/\(.*\)$|\1|p' "$page")
    if [ -n "$target" ]; then
        if [ ! -f "$tmp/man3/$target" ]; then
            fail "man/$fn.3 links to man3/$target, which does not exist"
            continue
        fi
        page=$tmp/man3/$target
    fi
    if ! grep -q "^\.Nm $fn\( ,\)\{0,1\}\$" "$page"; then
        fail "$fn is not in the NAME section of ${page##*/}"
    fi
done

# Every page in man/ is installed: listed in dist_man3_MANS of
# build-aux/extras.am, and every page listed there exists.
checks=$((checks + 1))
am=$srcdir/build-aux/extras.am
if [ -f "$am" ]; then
    sed -n 's|^[[:space:]]*man/\([a-z_]*\.3\).*|\1|p' "$am" | sort >"$tmp/listed"
    echo "$pages" | tr ' ' '\n' | sed '/^$/d' | sort >"$tmp/present"
    if ! cmp -s "$tmp/listed" "$tmp/present"; then
        fail "man/ and dist_man3_MANS in build-aux/extras.am differ (< listed only, > in man/ only):"
        diff "$tmp/listed" "$tmp/present" | grep '^[<>]' | sed 's/^/    /'
    fi
else
    fail "$am is missing"
fi

# 4. Complete example programs compile and run.
examples=0
checks=$((checks + 1))
if [ -z "$CC" ] || [ -z "$LIBTOOL" ] || [ -z "$PARMAP_LA" ]; then
    fail "CC, LIBTOOL and PARMAP_LA are not set: run this through make check"
else
    for page in $pages; do
        # Each literal display in EXAMPLES that holds a main() is a program;
        # undo the roff escapes a C program needs (\e, \&, \-).
        awk -v out="$tmp/ex" '
            /^\.Sh / { in_ex = ($2 == "EXAMPLES"); next }
            in_ex && /^\.Bd -literal/ { in_bd = 1; buf = ""; next }
            in_bd && /^\.Ed/ {
                in_bd = 0
                if (buf ~ /int main\(/) { n++; printf "%s", buf > (out "-" n ".c") }
                next
            }
            in_bd { buf = buf $0 "\n" }
        ' "$tmp/man3/$page"
        for src in "$tmp"/ex-*.c; do
            [ -f "$src" ] || continue
            examples=$((examples + 1))
            checks=$((checks + 1))
            sed 's/\\e/\\/g; s/\\&//g; s/\\-/-/g' "$src" >"$tmp/prog.c"
            rm -f "$src"
            # shellcheck disable=SC2086 # CFLAGS and friends are word lists.
            if ! $CC $CFLAGS -std=c11 -Wall -Wextra -Werror \
                    -I"$srcdir/include" -c -o "$tmp/prog.o" "$tmp/prog.c" \
                    >"$tmp/cc" 2>&1 ||
                ! $LIBTOOL --quiet --mode=link $CC $CFLAGS $LDFLAGS \
                    -o "$tmp/prog" "$tmp/prog.o" "$PARMAP_LA" -lm \
                    >>"$tmp/cc" 2>&1; then
                fail "the example program in man/$page does not build:"
                sed 's/^/    /' "$tmp/cc"
            elif ! "$tmp/prog" >"$tmp/run" 2>&1; then
                fail "the example program in man/$page exits non-zero:"
                sed 's/^/    /' "$tmp/run"
            fi
        done
    done
    [ "$examples" -gt 0 ] || fail "no complete example program found in man/"
fi

count=$(echo "$pages" | wc -w)
echo "man: $count pages, $(echo "$functions" | wc -w) functions, $examples example programs: $checks checks, $failures failed"
# Under `make check`, fd 9 is make's terminal (see AM_TESTS_FD_REDIRECT):
# print the counts there in the Criterion summary format that the other
# tests use and quickstart.sh adds up.
if { true >&9; } 2>/dev/null; then
    echo "test_man.sh: Synthesis: Tested: $checks | Passing: $((checks - failures)) | Failing: $failures | Crashing: 0" >&9
fi
[ "$failures" -eq 0 ]
