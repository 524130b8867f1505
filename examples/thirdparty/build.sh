#!/usr/bin/env bash
# Build the third-party programs of `placer experiment --suite corpus` from Debian sources
# into examples/thirdparty/bin/ (called by `make -C examples thirdparty`, never by the
# default target or the tests: it downloads sources). Flags keep frame pointers and debug
# info, like the project's own examples, so the shim's stacks symbolize. Idempotent: a
# program whose binary exists is skipped; `build.sh NAME...` builds only those.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/src"          # sources and build trees (gitignored)
BIN="$HERE/bin"          # finished binaries (gitignored)
export CFLAGS="-O2 -g -fno-omit-frame-pointer"
export CXXFLAGS="$CFLAGS"
JOBS="$(nproc 2>/dev/null || echo 2)"
ALL=(sqlite3 xz zstd bzip2 gawk jq sort ninja lua redis-server)

die() { echo "thirdparty/build.sh: error: $*" >&2; exit 2; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is missing (needed to $2)"; }
log() { echo "thirdparty: $*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else need sudo "install packages"; sudo "$@"; fi; }

# Debian tarballs that are git snapshots have no configure script until autoreconf runs;
# install the autotools for it as the jemalloc headers are, or name them.
autogen() {
  [ -f "$1/configure" ] && return
  if ! command -v autoreconf >/dev/null 2>&1; then
    log "installing autoconf automake libtool (to generate $(basename "$1")'s configure)"
    as_root apt-get install -y -qq autoconf automake libtool >&2 ||
      die "'autoreconf' is missing (needed to generate $(basename "$1")'s configure; Debian: autoconf automake libtool)"
  fi
  (cd "$1" && autoreconf -fi >&2)
}

# apt-get source needs deb-src lines; add bookworm's once if none are configured.
ensure_deb_src() {
  if grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return
  fi
  log "adding deb-src lines for bookworm (/etc/apt/sources.list.d/placer-deb-src.sources)"
  as_root tee /etc/apt/sources.list.d/placer-deb-src.sources >/dev/null <<'SRCS'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRCS
  as_root apt-get update -qq
}

# fetch SRCPKG: unpack the Debian source package once; prints its directory.
fetch() {
  local pkg="$1" dir
  dir="$(find "$SRC" -maxdepth 1 -type d -name "$pkg-[0-9]*" | sort | head -n1)"
  if [ -z "$dir" ]; then
    ensure_deb_src
    (cd "$SRC" && apt-get source -qq "$pkg" >&2) || die "apt-get source $pkg failed"
    dir="$(find "$SRC" -maxdepth 1 -type d -name "$pkg-[0-9]*" | sort | head -n1)"
    [ -n "$dir" ] || die "apt-get source $pkg left no $pkg-VERSION folder in $SRC"
  fi
  echo "$dir"
}

# Generated headers of an automake tree first: `make TARGET` alone skips BUILT_SOURCES.
built_sources() {
  local bs; bs="$(printf 'print-bs:\n\t@echo $(BUILT_SOURCES)\n' | make -s -f Makefile -f - print-bs)"
  [ -z "$bs" ] || make -s -j"$JOBS" $bs >&2
}

install_bin() { install -m 755 "$1" "$BIN/$2.tmp" && mv -f "$BIN/$2.tmp" "$BIN/$2"; }

build_sqlite3() {
  local d; d="$(fetch sqlite3)"; need tclsh "generate the sqlite3 amalgamation"
  (cd "$d" && { [ -f sqlite3.c ] || { [ -f Makefile ] || ./configure -q --disable-tcl >&2; make -s sqlite3.c shell.c >&2; }; }
   gcc $CFLAGS -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION -o sqlite3 shell.c sqlite3.c -lm)
  install_bin "$d/sqlite3" sqlite3
}

build_xz() {
  local d; d="$(fetch xz-utils)"
  autogen "$d"
  (cd "$d" && { [ -f Makefile ] || ./configure -q --disable-shared --disable-nls --disable-doc \
      --disable-xzdec --disable-lzmadec --disable-lzmainfo --disable-scripts >&2; }
   make -s -j"$JOBS" -C src/liblzma >&2 && make -s -j"$JOBS" -C src/xz >&2)
  install_bin "$d/src/xz/xz" xz
}

build_zstd() {
  local d; d="$(fetch libzstd)"
  (cd "$d" && make -s -j"$JOBS" -C programs zstd-release MOREFLAGS="$CFLAGS" >&2 ||
              make -s -j"$JOBS" -C programs zstd MOREFLAGS="$CFLAGS" >&2)
  install_bin "$d/programs/zstd" zstd
}

build_bzip2() {
  local d; d="$(fetch bzip2)"
  (cd "$d" && make -s bzip2 CFLAGS="$CFLAGS -D_FILE_OFFSET_BITS=64" >&2)
  install_bin "$d/bzip2" bzip2
}

build_gawk() {
  local d; d="$(fetch gawk)"
  autogen "$d"
  (cd "$d" && { [ -f Makefile ] || ./configure -q --disable-nls --without-readline --without-mpfr >&2; }
   make -s -j"$JOBS" -C support >&2 && make -s -j"$JOBS" gawk >&2)
  install_bin "$d/gawk" gawk
}

build_jq() {
  local d; d="$(fetch jq)"
  autogen "$d"
  (cd "$d" && { [ -f Makefile ] || ./configure -q --disable-shared --disable-docs \
      --disable-maintainer-mode --without-oniguruma >&2; }
   built_sources && make -s -j"$JOBS" jq >&2)
  install_bin "$d/jq" jq
}

build_sort() {
  local d; d="$(fetch coreutils)"
  (cd "$d" && { [ -f Makefile ] || FORCE_UNSAFE_CONFIGURE=1 ./configure -q --disable-nls \
      --without-selinux --disable-acl --disable-xattr --without-gmp >&2; }
   built_sources
   make -s -j"$JOBS" src/sort >&2)
  install_bin "$d/src/sort" sort
}

build_ninja() {
  local d; d="$(fetch ninja-build)"; need g++ "build ninja (C++)"
  (cd "$d" && { [ -x ninja ] || CXX=g++ python3 configure.py --bootstrap >&2; })
  install_bin "$d/ninja" ninja
}

build_lua() {
  local d; d="$(fetch lua5.4)"
  # Debian's luaconf.h includes a header its packaging generates (the multiarch path)
  [ -f "$d/src/lua5.4-deb-multiarch.h" ] ||
    echo "#define DEB_HOST_MULTIARCH \"$(gcc -print-multiarch)\"" > "$d/src/lua5.4-deb-multiarch.h"
  (cd "$d/src" && gcc $CFLAGS -std=gnu99 -DLUA_COMPAT_5_3 -DLUA_USE_LINUX -o lua-placer \
      $(ls *.c | grep -v '^luac\.c$') -lm -ldl)
  install_bin "$d/src/lua-placer" lua
}

build_redis_server() {
  local d; d="$(fetch redis)"
  if [ ! -f /usr/include/jemalloc/jemalloc.h ]; then
    log "installing libjemalloc-dev (redis is built against the system jemalloc)"
    as_root apt-get install -y -qq libjemalloc-dev >&2 || die "cannot install libjemalloc-dev"
  fi
  (cd "$d" && make -s -j"$JOBS" -C src redis-server redis-benchmark redis-cli \
      MALLOC=jemalloc USE_SYSTEM_JEMALLOC=yes BUILD_TLS=no USE_SYSTEMD=no \
      OPTIMIZATION="-O2" CFLAGS="-g -fno-omit-frame-pointer" >&2)
  install_bin "$d/src/redis-server" redis-server
  install_bin "$d/src/redis-benchmark" redis-benchmark
  install_bin "$d/src/redis-cli" redis-cli
}

main() {
  need apt-get "fetch Debian sources"; need dpkg-source "unpack Debian sources"
  need gcc "compile"; need make "build"; need python3 "run ninja's configure"
  mkdir -p "$SRC" "$BIN"
  local names=("$@"); [ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
  local failed=()
  for n in "${names[@]}"; do
    if [ -x "$BIN/$n" ]; then log "$n: built"; continue; fi
    log "$n: building"
    local t0=$SECONDS
    if ( "build_${n//-/_}" ); then log "$n: done in $((SECONDS - t0)) s"; else failed+=("$n"); fi
  done
  if [ ${#failed[@]} -gt 0 ]; then die "failed to build: ${failed[*]}"; fi
  log "all built in $BIN"
}

main "$@"
