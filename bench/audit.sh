#!/usr/bin/env bash
# Builds bench/bench_audit.c against the optimised core library and runs it:
# the audit scorecards over N tickets (a seed raised through the engine, then
# copied in SQL) beside a plain SQL count over the same tables. Needs
# `scripts/build plain` first (or WH_BUILD set to a build folder holding
# libwhcore.a).
#
#   bench/audit.sh [-n TICKETS] [-k SEED] [-r RUNS] [-d DIR] [-x]
#
# The figures in docs/PERFORMANCE.md come from `bench/audit.sh` (1,000,000
# tickets, about 10,000,000 events; about 3 GB of disk in /tmp).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${WH_BUILD:-$root/build/plain}
lib=$build/libwhcore.a
if [[ ! -f $lib ]]; then
  echo "bench/audit.sh: $lib is missing: run scripts/build plain first" >&2
  exit 2
fi
out=$build/bench_audit
pkgs="libuv yaml-0.1 sqlite3 jansson libmicrohttpd libcurl libcrypto"
# shellcheck disable=SC2046,SC2086
cc -std=c11 -O2 -g -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
  -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror \
  -DWH_SOURCE_DIR="\"$root\"" -I"$root" $(pkg-config --cflags $pkgs) \
  -o "$out" "$root/bench/bench_audit.c" "$lib" $(pkg-config --libs $pkgs) -lm
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "sqlite $(pkg-config --modversion sqlite3), libuv $(pkg-config --modversion libuv)"
echo "command: bench/audit.sh $*"
"$out" "$@"
