#!/usr/bin/env bash
# Builds bench/bench_deliveries.c against the optimised core library and runs
# it: webhook deliveries a second from the engine's outbox through the
# webhook notifier (signed, outcome committed) to a local receiver answering
# 204, beside a bare libcurl multi client sending the same number of POSTs to
# the same receiver in the same run; and the connections the receiver
# accepted per 1,000 deliveries.
# Needs `scripts/build plain` first (or set WH_BUILD to another build folder
# holding libwhcore.a).
#
#   bench/deliveries.sh [-n TICKETS] [-c CONNECTIONS] [-d DIR]
#
# The figures in docs/PERFORMANCE.md come from `bench/deliveries.sh`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${WH_BUILD:-$root/build/plain}
lib=$build/libwhcore.a
n=10000 conns=8 dir=${TMPDIR:-/tmp}
while getopts n:c:d: opt; do
  case $opt in
    n) n=$OPTARG ;;
    c) conns=$OPTARG ;;
    d) dir=$OPTARG ;;
    *) echo "usage: bench/deliveries.sh [-n TICKETS] [-c CONNECTIONS] [-d DIR]" >&2; exit 2 ;;
  esac
done
if [[ ! -f $lib ]]; then
  echo "bench/deliveries.sh: $lib is missing: run scripts/build plain first" >&2
  exit 2
fi
out=$build/bench_deliveries
pkgs="libuv yaml-0.1 sqlite3 jansson libmicrohttpd libcurl libcrypto"
# shellcheck disable=SC2046,SC2086
cc -std=c11 -O2 -g -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
  -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror \
  -DWH_SOURCE_DIR="\"$root\"" -I"$root" $(pkg-config --cflags $pkgs) \
  -o "$out" "$root/bench/bench_deliveries.c" "$lib" $(pkg-config --libs $pkgs) -lpthread -lm

work=$(mktemp -d "$dir/wh-bench-deliveries.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "sqlite $(pkg-config --modversion sqlite3), libcurl $(pkg-config --modversion libcurl), libmicrohttpd $(pkg-config --modversion libmicrohttpd)"
echo "command: bench/deliveries.sh $*"
echo
"$out" -n "$n" -c "$conns" -d "$work"
