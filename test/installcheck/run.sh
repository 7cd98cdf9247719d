#!/bin/sh
# The body of `make installcheck`: checks what `make install` put under
# $DESTDIR$prefix, then builds test/installcheck/main.c against the
# INSTALLED parmap three ways and runs each program:
#   1. cc ... $(pkg-config --cflags --libs parmap)            (shared)
#   2. cc -static ... $(pkg-config --static --cflags --libs parmap)
#   3. a CMake project: find_package(parmap) and parmap::parmap
#      (plus parmap::parmap_static when the static library is installed).
# Each dynamically linked program must load libparmap from the installed
# library directory, not from the build tree or another installed copy.
#
# Makefile variables arrive in the environment: DESTDIR prefix libdir
# includedir mandir srcdir CC CFLAGS PKG_CONFIG CMAKE VERSION.
# cmake and pkg-config are required: without them this fails, it does not
# skip. Work happens in a temporary directory, removed on success and kept
# (its path printed) on failure.

set -u
: "${DESTDIR:=}"
srcdir=${srcdir:-.}
CFLAGS=${CFLAGS:-}

root_libdir=$DESTDIR$libdir
root_includedir=$DESTDIR$includedir
root_prefix=$DESTDIR$prefix

status=0
fail() {
    echo "installcheck: FAIL: $*" >&2
    status=1
}

if [ -z "${PKG_CONFIG:-}" ] || ! command -v "$PKG_CONFIG" >/dev/null 2>&1; then
    echo "installcheck: FAIL: pkg-config is needed (Debian: apt-get install pkgconf)" >&2
    exit 1
fi
if [ -z "${CMAKE:-}" ]; then
    CMAKE=$(command -v cmake 2>/dev/null)
fi
if [ -z "$CMAKE" ] || ! command -v "$CMAKE" >/dev/null 2>&1; then
    echo "installcheck: FAIL: cmake is needed to check the installed CMake package" >&2
    echo "installcheck:       (Debian: apt-get install cmake, then re-run ./configure)" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parmap-installcheck.XXXXXX") || exit 1
trap 'if [ "$status" -eq 0 ]; then rm -rf "$tmp"; else echo "installcheck: work files kept in $tmp" >&2; fi' EXIT
trap 'status=1; exit 130' INT TERM

# --- What make install must have installed --------------------------------
for f in "$root_includedir/parmap.h" \
         "$root_libdir/pkgconfig/parmap.pc" \
         "$root_libdir/cmake/parmap/parmap-config.cmake" \
         "$root_libdir/cmake/parmap/parmap-config-version.cmake" \
         "$DESTDIR$mandir/man3/parmap.3" \
         "$DESTDIR$mandir/man3/parmap_map.3" \
         "$DESTDIR$mandir/man3/parmap_pool_destroy.3"; do
    [ -f "$f" ] || fail "$f was not installed"
done
have_shared=no
have_static=no
ls "$root_libdir"/libparmap.so* >/dev/null 2>&1 && have_shared=yes
[ -f "$root_libdir/libparmap.a" ] && have_static=yes
[ "$have_shared" = yes ] || [ "$have_static" = yes ] ||
    fail "no libparmap.so or libparmap.a in $root_libdir"
echo "installcheck: installed under $root_prefix: shared library $have_shared, static library $have_static"
[ "$status" -eq 0 ] || exit 1

# A link page must render as the page it points to.
if command -v mandoc >/dev/null 2>&1; then
    if ! (cd "$DESTDIR$mandir" && mandoc -T ascii man3/parmap_pool_destroy.3) 2>/dev/null |
        grep -q 'parmap_pool_destroy'; then
        fail "man3/parmap_pool_destroy.3 does not render the parmap_pool_create page"
    fi
fi

# uses_installed_lib PROGRAM: with ldd, check that libparmap.so resolves
# into the installed library directory (LD_LIBRARY_PATH as set by caller).
uses_installed_lib() {
    command -v ldd >/dev/null 2>&1 || return 0
    resolved=$(ldd "$1" 2>/dev/null | sed -n 's/^[[:space:]]*libparmap\.so[^ ]* => \([^ ]*\).*/\1/p')
    case $resolved in
    "$root_libdir"/*) return 0 ;;
    "") echo "ldd finds no libparmap in $1" ;;
    *) echo "$1 loads $resolved, not the copy in $root_libdir" ;;
    esac
    return 1
}

# --- 1. pkg-config, shared ---------------------------------------------------
# PKG_CONFIG_SYSROOT_DIR puts DESTDIR in front of the -I and -L paths of a
# staged installation, whose parmap.pc names the final prefix.
PKG_CONFIG_PATH=$root_libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH
if [ -n "$DESTDIR" ]; then
    PKG_CONFIG_SYSROOT_DIR=$DESTDIR
    export PKG_CONFIG_SYSROOT_DIR
fi

pc_version=$("$PKG_CONFIG" --modversion parmap 2>&1)
[ "$pc_version" = "$VERSION" ] ||
    fail "pkg-config --modversion parmap gives '$pc_version', expected $VERSION"

if [ "$have_shared" = yes ]; then
    flags=$("$PKG_CONFIG" --cflags --libs parmap) || fail "pkg-config --cflags --libs parmap failed"
    echo "installcheck: pkg-config: $CC -std=c11 main.c $flags"
    # shellcheck disable=SC2086 # flags is a word list
    if $CC $CFLAGS -std=c11 -o "$tmp/installcheck_pc" "$srcdir/test/installcheck/main.c" $flags; then
        if ! LD_LIBRARY_PATH=$root_libdir "$tmp/installcheck_pc" "pkg-config (shared)"; then
            fail "the program built with pkg-config failed"
        elif ! msg=$(LD_LIBRARY_PATH=$root_libdir && export LD_LIBRARY_PATH &&
            uses_installed_lib "$tmp/installcheck_pc"); then
            fail "$msg"
        fi
    else
        fail "building with pkg-config --cflags --libs parmap failed"
    fi
else
    echo "installcheck: no shared library installed (--disable-shared): pkg-config shared build not possible"
fi

# --- 2. pkg-config --static -----------------------------------------------
if [ "$have_static" = yes ]; then
    flags=$("$PKG_CONFIG" --static --cflags --libs parmap) || fail "pkg-config --static failed"
    echo "installcheck: pkg-config --static: $CC -std=c11 -static main.c $flags"
    # shellcheck disable=SC2086 # flags is a word list
    if $CC $CFLAGS -std=c11 -static -o "$tmp/installcheck_pc_static" \
        "$srcdir/test/installcheck/main.c" $flags; then
        if ! "$tmp/installcheck_pc_static" "pkg-config --static"; then
            fail "the program built with pkg-config --static failed"
        elif command -v ldd >/dev/null 2>&1 &&
            ldd "$tmp/installcheck_pc_static" 2>/dev/null | grep -q libparmap; then
            fail "the -static program still loads a shared libparmap"
        fi
    else
        fail "building with -static and pkg-config --static --cflags --libs parmap failed"
    fi
else
    echo "installcheck: no static library installed (--disable-static): static build not possible"
fi

# --- 3. CMake find_package ------------------------------------------------
# First the version rules of parmap-config-version.cmake, by feeding it the
# variables find_package() would set: same major version, and while the
# major version is 0 the same minor version, not older; ranges.
cat >"$tmp/version-check.cmake" <<'EOF_CMAKE'
# Runs the installed version file for one request; prints the verdict.
set(PACKAGE_FIND_VERSION "${REQ}")
if(REQ MATCHES "^([0-9]+)\\.([0-9]+)")
    set(PACKAGE_FIND_VERSION_MAJOR "${CMAKE_MATCH_1}")
    set(PACKAGE_FIND_VERSION_MINOR "${CMAKE_MATCH_2}")
endif()
if(DEFINED RANGE_MAX)
    set(PACKAGE_FIND_VERSION_RANGE "${REQ}...<${RANGE_MAX}")
    set(PACKAGE_FIND_VERSION_MIN "${REQ}")
    set(PACKAGE_FIND_VERSION_MAX "${RANGE_MAX}")
    set(PACKAGE_FIND_VERSION_RANGE_MAX "EXCLUDE")
endif()
include("${FILE}")
if(PACKAGE_VERSION_COMPATIBLE AND NOT PACKAGE_VERSION_UNSUITABLE)
    message("compatible")
else()
    message("incompatible")
endif()
EOF_CMAKE
major=${VERSION%%.*}
rest=${VERSION#*.}
minor=${rest%%.*}
vfile=$root_libdir/cmake/parmap/parmap-config-version.cmake
# check_version REQUEST EXPECTED [RANGE_MAX]
check_version() {
    if [ -n "${3:-}" ]; then
        got=$("$CMAKE" -DREQ="$1" -DRANGE_MAX="$3" -DFILE="$vfile" -P "$tmp/version-check.cmake" 2>&1)
    else
        got=$("$CMAKE" -DREQ="$1" -DFILE="$vfile" -P "$tmp/version-check.cmake" 2>&1)
    fi
    [ "$got" = "$2" ] ||
        fail "find_package(parmap $1${3:+...<$3}) against $VERSION: $got, expected $2"
}
check_version "$VERSION" compatible
check_version "$major.$minor" compatible
check_version "$major.$((minor + 1))" incompatible
check_version "$((major + 1)).0" incompatible
if [ "$major" -eq 0 ]; then
    [ "$minor" -gt 0 ] && check_version "0.$((minor - 1))" incompatible
else
    check_version "$major.0" compatible
fi
check_version "$major.$minor" compatible "$((major + 2)).0"
check_version "$((major + 1)).0" incompatible "$((major + 2)).0"

echo "installcheck: cmake: find_package(parmap) with CMAKE_PREFIX_PATH=$root_prefix"
if "$CMAKE" -S "$srcdir/test/installcheck" -B "$tmp/cmake" \
        -DCMAKE_PREFIX_PATH="$root_prefix" \
        -DPARMAP_EXPECTED_DIR="$root_libdir/cmake/parmap" \
        -DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="$CFLAGS" \
        -DCMAKE_BUILD_TYPE=Release >"$tmp/cmake.log" 2>&1 &&
    "$CMAKE" --build "$tmp/cmake" >>"$tmp/cmake.log" 2>&1; then
    grep 'parmap .* found in' "$tmp/cmake.log" | sed 's/^-- /installcheck: cmake: /'
    # CMake gives the programs an RPATH to the imported library, so no
    # LD_LIBRARY_PATH is needed: the check is that they find it themselves.
    if ! "$tmp/cmake/installcheck_cmake" "cmake parmap::parmap"; then
        fail "the program built with CMake failed"
    elif [ "$have_shared" = yes ] && ! msg=$(uses_installed_lib "$tmp/cmake/installcheck_cmake"); then
        fail "$msg"
    fi
    if [ "$have_static" = yes ]; then
        if [ ! -x "$tmp/cmake/installcheck_cmake_static" ]; then
            fail "the CMake package has no parmap::parmap_static target"
        elif ! "$tmp/cmake/installcheck_cmake_static" "cmake parmap::parmap_static"; then
            fail "the program built with parmap::parmap_static failed"
        fi
    fi
else
    fail "the CMake project did not configure or build:"
    sed 's/^/    /' "$tmp/cmake.log" >&2
fi

if [ "$status" -eq 0 ]; then
    echo "installcheck: all checks passed"
fi
exit "$status"
