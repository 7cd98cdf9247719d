#!/bin/sh
# Checks examples/psha256sum against GNU sha256sum: on the same arguments,
# standard output must be identical byte for byte (same digests, same
# lines, same order, same escaping of odd file names) and so must the exit
# status; an unreadable file must give a message on standard error at its
# place and exit status 1 while the other files are still hashed.
#
# Run by `make check` from the build directory; PSHA256SUM overrides the
# program. sha256sum (coreutils) is required: without it the test fails.
# When configure did not find libcrypto, psha256sum is not built and the
# test is SKIPPED (exit 77) with a message saying what to install.

psha=${PSHA256SUM:-./examples/psha256sum}

if [ "${PARMAP_HAVE_LIBCRYPTO:-yes}" = no ]; then
    echo "SKIP: examples/psha256sum was not built: configure found no libcrypto >= 3."
    echo "      Install it (Debian: apt-get install libssl-dev) and re-run ./configure."
    exit 77
fi

if ! command -v sha256sum >/dev/null 2>&1; then
    echo "FAIL: sha256sum is not installed; it is needed to check psha256sum" >&2
    exit 1
fi
if [ ! -x "$psha" ]; then
    echo "FAIL: $psha was not built" >&2
    exit 1
fi
case $psha in
/*) ;;
*) psha=$(pwd)/$psha ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_psha256sum.XXXXXX") || exit 99
failures=0
checks=0
trap 'chmod -R u+rwx "$tmp" 2>/dev/null; if [ "$failures" -eq 0 ]; then rm -rf "$tmp"; else echo "files kept in $tmp" >&2; fi' EXIT
trap 'exit 130' INT TERM

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# compare NAME ARGS...: run both programs in $tmp/files on ARGS; stdout and
# exit status must match, and stderr must match once the program names are
# set aside. One check: it fails once however many of these differ.
compare() {
    name=$1
    shift
    checks=$((checks + 1))
    (cd "$tmp/files" && sha256sum "$@") >"$tmp/want.out" 2>"$tmp/want.err"
    want_rc=$?
    (cd "$tmp/files" && "$psha" "$@") >"$tmp/got.out" 2>"$tmp/got.err"
    got_rc=$?
    sed 's/^sha256sum: //' "$tmp/want.err" >"$tmp/want.msg"
    sed 's/^psha256sum: //' "$tmp/got.err" >"$tmp/got.msg"
    why=
    cmp -s "$tmp/want.out" "$tmp/got.out" ||
        why="standard output differs from sha256sum's"
    [ "$want_rc" -eq "$got_rc" ] ||
        why="${why:+$why; }exit status $got_rc, sha256sum gives $want_rc"
    cmp -s "$tmp/want.msg" "$tmp/got.msg" ||
        why="${why:+$why; }standard error differs from sha256sum's"
    if [ -n "$why" ]; then
        fail "$name: $why"
        diff "$tmp/want.out" "$tmp/got.out" | head -n 10
        diff "$tmp/want.err" "$tmp/got.err" | head -n 10
    fi
}

mkdir "$tmp/files"
cd "$tmp/files" || exit 99
: >empty
printf 'abc' >abc
printf 'hello, world\n' >small
head -c 5242880 /dev/urandom >five-mib
head -c 1000003 /dev/urandom >'name with spaces'
head -c 65536 /dev/urandom >'  leading spaces'
printf 'x' >"it's"
printf 'y' >'back\slash'
printf 'z' >"$(printf 'new\nline')"
printf 'w' >"$(printf 'carriage\rreturn')"
mkdir many
i=0
while [ "$i" -lt 300 ]; do
    head -c $((i * 37)) /dev/urandom >"many/f$i"
    i=$((i + 1))
done
mkdir dir
printf 'secret' >unreadable
chmod 000 unreadable
cd - >/dev/null || exit 99

nl=$(printf 'new\nline')
cr=$(printf 'carriage\rreturn')

compare "one empty file" empty
compare "known files" empty abc small five-mib 'name with spaces'
compare "odd names" '  leading spaces' "it's" 'back\slash' "$nl" "$cr"
compare "the same file twice" small five-mib small
compare "binary mode" -b abc five-mib 'back\slash'
compare "300 files" $(cd "$tmp/files" && ls many/* | sort)

# The known digest of "abc" (FIPS 180-2), so that the test does not rest on
# sha256sum alone.
checks=$((checks + 1))
got=$(cd "$tmp/files" && "$psha" abc)
want='ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  abc'
[ "$got" = "$want" ] || fail "digest of abc: got '$got'"

# Errors: a missing file, a directory and (unless running as root, who can
# read anything) a file without read permission, among readable files.
compare "missing file" small no-such-file five-mib
compare "missing file with a space" 'no such file'
compare "directory" dir small
if [ "$(id -u)" -ne 0 ]; then
    compare "unreadable file" small unreadable abc
fi
compare "only errors" no-such-file dir

# Standard input: "-" and no argument at all.
checks=$((checks + 1))
want=$(sha256sum <"$tmp/files/five-mib")
got=$("$psha" <"$tmp/files/five-mib")
[ "$got" = "$want" ] || fail "no argument: got '$got', want '$want'"
checks=$((checks + 1))
want=$(cd "$tmp/files" && sha256sum small - - abc <five-mib)
got=$(cd "$tmp/files" && "$psha" small - - abc <five-mib)
[ "$got" = "$want" ] || fail "'-' twice among files"

# Thread counts from 1 to more threads than files give the same output.
for threads in 1 2 3 16; do
    checks=$((checks + 1))
    got=$(cd "$tmp/files" && "$psha" -p "$threads" empty abc five-mib small)
    want=$(cd "$tmp/files" && sha256sum empty abc five-mib small)
    [ "$got" = "$want" ] || fail "-p $threads: output differs"
done

echo "psha256sum: $checks checks, $failures failed"
# Under `make check`, fd 9 is make's terminal (see AM_TESTS_FD_REDIRECT):
# print the counts there in the Criterion summary format that the other
# tests use and quickstart.sh adds up.
if { true >&9; } 2>/dev/null; then
    echo "test_psha256sum.sh: Synthesis: Tested: $checks | Passing: $((checks - failures)) | Failing: $failures | Crashing: 0" >&9
fi
[ "$failures" -eq 0 ]
