#!/usr/bin/env bash
# Install the system packages placer needs (Debian/Ubuntu names), or name them clearly.
# Required: a C compiler and make (the shim), the OpenMP runtime (LightGBM).
# Wanted: perf (access signals), valgrind (deep mode), numactl (checks on placement).
#
# Usage: system-deps.sh [--optional] [EXTRA_PACKAGE...]
#   --optional: the extras are wanted, not required (what the tests exercise when present:
#   other allocators, redis, chromium); without root, name them and carry on.
set -euo pipefail
optional=0
if [ "${1:-}" = "--optional" ]; then
  optional=1
  shift
fi

declare -A pkg_for=(
  [cc]=gcc [make]=make [perf]=linux-perf [valgrind]=valgrind
)
missing_pkgs=()
for tool in cc make perf valgrind; do
  command -v "$tool" >/dev/null 2>&1 || missing_pkgs+=("${pkg_for[$tool]}")
done
if ! ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1'; then
  missing_pkgs+=(libgomp1)
fi
for extra in "$@"; do
  case "$extra" in
    chromium) command -v chromium >/dev/null 2>&1 || missing_pkgs+=(chromium) ;;
    *) dpkg -s "$extra" >/dev/null 2>&1 || missing_pkgs+=("$extra") ;;
  esac
done

if [ ${#missing_pkgs[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "placer setup: installing system packages: ${missing_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
  exit 0
fi
echo "placer setup: missing system packages: ${missing_pkgs[*]}" >&2
echo "placer setup: install them as root, e.g.: sudo apt-get install ${missing_pkgs[*]}" >&2
if [ "$optional" -eq 1 ]; then
  echo "placer setup: carrying on; the tests that need them skip and say why" >&2
  exit 0
fi
exit 1
