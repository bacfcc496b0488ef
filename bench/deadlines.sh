#!/usr/bin/env bash
# Builds bench/bench_deadlines.c against the optimised core library and runs
# it: the deadline scheduler beside bare libuv timers, in the same run.
#   - arming N pending deadlines (wh_heap_push) vs starting N uv_timer_t;
#   - RAM per pending deadline (entry size, RSS delta) vs uv_timer_t;
#   - re-arming N deadline rows at wh_engine_open vs a bare SELECT loop;
#   - lateness of the daemon's deadlines (`whistle serve`, workflow load-2s
#     from tests/integration/data/deadlines) while idle and while wrk keeps
#     the API busy, beside a bare uv loop's 2 s timers started at the same rate.
# Needs `scripts/build plain` first (or set WH_BUILD to another build folder
# holding libwhcore.a and whistle), and wrk (apt-get install -y wrk).
#
#   bench/deadlines.sh [-n DEADLINES] [-s SECONDS] [-r RATE] [-c CONNECTIONS] [-d DIR]
#
# The figures in docs/PERFORMANCE.md come from `bench/deadlines.sh`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${WH_BUILD:-$root/build/plain}
lib=$build/libwhcore.a
whistle=$build/whistle
n=1000000 seconds=10 rate=50 conns=16 dir=${TMPDIR:-/tmp}
while getopts n:s:r:c:d: opt; do
  case $opt in
    n) n=$OPTARG ;;
    s) seconds=$OPTARG ;;
    r) rate=$OPTARG ;;
    c) conns=$OPTARG ;;
    d) dir=$OPTARG ;;
    *) echo "usage: bench/deadlines.sh [-n N] [-s SECONDS] [-r RATE] [-c CONNS] [-d DIR]" >&2; exit 2 ;;
  esac
done
for f in "$lib" "$whistle"; do
  if [[ ! -f $f ]]; then
    echo "bench/deadlines.sh: $f is missing: run scripts/build plain first" >&2
    exit 2
  fi
done
if ! command -v wrk >/dev/null; then
  echo "bench/deadlines.sh: wrk is missing: apt-get install -y wrk" >&2
  exit 2
fi
out=$build/bench_deadlines
pkgs="libuv yaml-0.1 sqlite3 jansson libmicrohttpd libcurl libcrypto"
# shellcheck disable=SC2046,SC2086
cc -std=c11 -O2 -g -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
  -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror \
  -DWH_SOURCE_DIR="\"$root\"" -I"$root" $(pkg-config --cflags $pkgs) \
  -o "$out" "$root/bench/bench_deadlines.c" "$lib" $(pkg-config --libs $pkgs) -lpthread -lm

work=$(mktemp -d "$dir/wh-bench-deadlines.XXXXXX")
daemon=
cleanup() {
  if [[ -n $daemon ]]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A daemon on a free port with a fresh database; sets $daemon and $port.
start_daemon() {
  rm -rf "$work/var" "$work/log"
  cat >"$work/whistle.yaml" <<YAML
listen: 127.0.0.1:8080
database: $work/var/whistle.db
workflows: $root/tests/integration/data/deadlines
timezone: Asia/Shanghai
calendars:
  workdays: $root/examples/calendars/cn.yaml
durability: full
orgs:
  - { id: xintan-street, name: 新滩, kind: street, token: tok-xintan }
  - { id: fire-brigade, name: 消防, kind: department, parent: beita-district, token: tok-fire }
  - { id: housing-bureau, name: 住建, kind: department, parent: beita-district, token: tok-housing }
  - { id: beita-district, name: 北塔区, kind: district, token: tok-district }
  - { id: city-supervision, name: 督查室, kind: supervisor, token: tok-super }
YAML
  "$whistle" serve -c "$work/whistle.yaml" --listen 127.0.0.1:0 2>"$work/log" &
  daemon=$!
  for _ in $(seq 500); do
    port=$(sed -n 's|^whistle: listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/log")
    [[ -n $port ]] && return 0
    sleep 0.02
  done
  cat "$work/log" >&2
  exit 1
}

stop_daemon() {
  kill "$daemon"
  wait "$daemon" || true
  daemon=
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "sqlite $(pkg-config --modversion sqlite3), libuv $(pkg-config --modversion libuv), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "command: bench/deadlines.sh $*"
echo
echo "| measure | whistle | bare libuv (same run) | target |"
echo "| --- | --- | --- | --- |"
"$out" arm -n "$n"
"$out" rearm -n "$n" -d "$work"

# Idle: one ticket every 1.37 s, so that each arms the timer at another
# fraction of a second and nothing else wakes the loop.
start_daemon
"$out" late -p "$port" -D "$work/var/whistle.db" -s 15 -r 0.73 -l "idle daemon"
stop_daemon

# Under load: wrk keeps $conns connections raising tickets (workflow quiet,
# no deadline) while $rate tickets a second get a 2 s deadline.
start_daemon
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"workflow":"quiet","category":"load","title":"t"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer tok-xintan"
LUA
wrk -t1 -c"$conns" -d"$((${seconds%.*} + 4))s" -s "$work/post.lua" "http://127.0.0.1:$port/v1/tickets" >"$work/wrk.txt" &
wrkpid=$!
sleep 1
"$out" late -p "$port" -D "$work/var/whistle.db" -s "$seconds" -r "$rate" -l "wrk $conns connections raising"
wait "$wrkpid"
# Second resolution, as the API shows it: the breached row's `at` minus its data.due_at.
sqlite3 "$work/var/whistle.db" 2>/dev/null \
  "SELECT 'breached at - due_at (s, API resolution): ' || group_concat(d || ' s × ' || c, ', ') FROM (SELECT at - unixepoch(json_extract(data,'\$.due_at')) AS d, count(*) AS c FROM events WHERE event='breached' GROUP BY d)" \
  || echo "(sqlite3 shell missing: second-resolution column skipped)"
stop_daemon
echo
echo "wrk during the load phase:"
sed -n '/Requests\/sec\|requests in\|Non-2xx\|Latency/p' "$work/wrk.txt"
