#!/usr/bin/env bash
# Builds bench/bench_store.c against the optimised core library and runs it:
# whistle's raise and event throughput beside a plain SQLite loop writing the
# same rows, with durability full. Needs `scripts/build plain` first (or set
# WH_BUILD to another build folder holding libwhcore.a).
#
#   bench/store.sh [-n TICKETS] [-b BATCH] [-f FIRE_TICKETS] [-d DIR] [-k]
#
# The figures in docs/PERFORMANCE.md come from `bench/store.sh -n 50000`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${WH_BUILD:-$root/build/plain}
lib=$build/libwhcore.a
if [[ ! -f $lib ]]; then
  echo "bench/store.sh: $lib is missing: run scripts/build plain first" >&2
  exit 2
fi
out=$build/bench_store
pkgs="libuv yaml-0.1 sqlite3 jansson libmicrohttpd libcurl libcrypto"
# shellcheck disable=SC2046,SC2086
cc -std=c11 -O2 -g -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
  -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror \
  -DWH_SOURCE_DIR="\"$root\"" -I"$root" $(pkg-config --cflags $pkgs) \
  -o "$out" "$root/bench/bench_store.c" "$lib" $(pkg-config --libs $pkgs) -lm
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "sqlite $(pkg-config --modversion sqlite3), libuv $(pkg-config --modversion libuv)"
echo "command: bench/store.sh $*"
"$out" "$@"
