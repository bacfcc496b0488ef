#!/usr/bin/env bash
# Measures whistle's HTTP API with wrk against a real daemon: build/plain/whistle
# serve on a temporary copy of examples/whistle.yaml (database in a temporary
# folder, durability full, 127.0.0.1 on a free port). Needs `scripts/build
# plain` first (or WH_BUILD=another build folder); installs wrk if missing.
#
#   bench/http.sh [-d SECONDS] [-c CONNECTIONS] [-t THREADS] [-k]
#
#   -d  seconds each measured run sends requests (default 10)
#   -c  wrk connections (default 32)      -t  wrk threads (default 2)
#   -k  keep the temporary folder (config, database, daemon log)
#   -p  profile the daemon with `perf record --call-graph dwarf` during the raise, events max
#       and events half runs; the reports (perf report --children, by symbol)
#       go to $TMPDIR/whistle-http-perf-NAME.txt. Slows those runs down.
#
# Runs, in this order, on one daemon:
#   healthz      GET /healthz as fast as it goes: the HTTP ceiling
#   raise        POST /v1/tickets as xintan-street (street-whistle,
#                fire-safety); afterwards the 201s must equal the tickets
#   (prefill)    3 x SECONDS more raises, so the event runs have tickets
#   events max   POST /v1/tickets/T…/events {"event":"report"} as
#                fire-brigade, one ticket per request, as fast as it goes
#   events half  the same at half that rate (bench/http.lua paces the sends)
#   healthz half GET /healthz at that same rate: the latency reference
# then stops the daemon (SIGTERM), counts tickets and report events in the
# database against the 201s and 200s that wrk saw, and runs `whistle verify`.
# Each run also counts CPU time: the whole machine's (every core), the
# daemon's, its loop thread's and wrk's, per answered request; a table
# of them follows the figures, with the share the raise would reach if it
# kept the cores as busy as /healthz does.
# Last, bench/store.sh's plain SQLite loop writes the rows of 20,000 raises
# at the mean batch size the raise run committed (from /metrics): what
# SQLite alone does with commits that size, as a second reference.
#
# The figures in docs/PERFORMANCE.md ("HTTP") come from `bench/http.sh`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
build=${WH_BUILD:-$root/build/plain}
bin=$build/whistle
lua=$root/bench/http.lua
secs=10 conns=32 threads=2 keep=0 profile=0
while getopts "d:c:t:kp" opt; do
  case $opt in
    d) secs=$OPTARG ;;
    c) conns=$OPTARG ;;
    t) threads=$OPTARG ;;
    k) keep=1 ;;
    p) profile=1 ;;
    *) echo "usage: bench/http.sh [-d SECONDS] [-c CONNECTIONS] [-t THREADS] [-k] [-p]" >&2; exit 2 ;;
  esac
done
if [[ ! -x $bin ]]; then
  echo "bench/http.sh: $bin is missing: run scripts/build plain first" >&2
  exit 2
fi
if ! command -v wrk >/dev/null; then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  echo "bench/http.sh: installing wrk" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi
command -v sqlite3 >/dev/null || { echo "bench/http.sh: needs the sqlite3 command" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/whistle-http.XXXXXX")
pid=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  bench_stop "$pid"
  if [[ $keep -eq 1 ]]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# A private copy of the executable: other work may rebuild build/plain while
# this runs, and serve and verify must be the same version.
cp "$bin" "$tmp/whistle"
bin=$tmp/whistle

# The example city, webhooks taken out (bench/lib.sh says why).
bench_config "$root" "$tmp/whistle.db" "$tmp/whistle.yaml" || exit 1

bench_serve "$bin" "$tmp/whistle.yaml" "$tmp/daemon.log" || exit 1

# run NAME MODE RATE FIRST LAST TOKEN: one wrk run; its RESULT line goes to
# $tmp/NAME. wrk's -d is SECONDS + 3 so the last answers arrive (see http.lua).
run() {
  local name=$1 mode=$2 rate=$3 first=$4 last=$5 token=$6 active=${7:-$secs}
  local perfpid="" report="${TMPDIR:-/tmp}/whistle-http-perf-$name.txt"
  if [[ $profile -eq 1 && $name =~ ^(raise|events|events_half)$ ]]; then
    perf record -q --call-graph dwarf,16384 -F 499 -p "$pid" -o "$tmp/perf-$name.data" -- sleep "$active" 2>/dev/null &
    perfpid=$!
  fi
  local cpu0 cpu1
  times >"$tmp/times"
  cpu0=$(cpu_ticks)
  wrk -t"$threads" -c"$conns" -d"$((active + 3))s" --timeout 10s -s "$lua" "$url" \
    -- "$mode" "$active" "$rate" "$first" "$last" "$token" "$threads" >"$tmp/$name.out"
  times >"$tmp/times"
  cpu1=$(cpu_ticks)
  grep '^RESULT ' "$tmp/$name.out" >"$tmp/$name" ||
    { cat "$tmp/$name.out" >&2; exit 1; }
  # CPU per answered request, in microseconds, appended to the RESULT line.
  local answered
  answered=$(get "$name" answered)
  awk -v a="$cpu0" -v b="$cpu1" -v hz="$hz" -v n="$answered" '
    BEGIN {
      split(a, x, " "); split(b, y, " ")
      if (n <= 0) exit
      us = 1e6 / hz / n
      machine = (y[1] - x[1]) * us; daemon = (y[2] - x[2]) * us
      loop = (y[3] - x[3]) * us; wrk = (y[4] - x[4]) * us
      printf " cpu_machine=%.1f cpu_daemon=%.1f cpu_loop=%.1f cpu_wrk=%.1f cpu_other=%.1f",
        machine, daemon, loop, wrk, machine - daemon - wrk
    }' >>"$tmp/$name"
  if [[ -n $perfpid ]]; then
    wait "$perfpid" || true
    { perf report --stdio --children --sort symbol -g none --percent-limit 2 -i "$tmp/perf-$name.data" 2>/dev/null || true; } | head -150 >"$report" || true
    echo "$name: profile in $report" >&2
  fi
  echo "$name: $(cut -d' ' -f2- "$tmp/$name")" >&2
}
# cpu_ticks: CPU time used so far, in clock ticks, as "MACHINE DAEMON LOOP
# WRK": the whole machine (every core, from /proc/stat; idle, iowait and
# steal, the time other guests took, left out), the daemon's process, its
# loop thread (the main thread), and the children this shell has waited for
# (wrk): the output of bash's `times`, which the caller writes to
# $tmp/times first (in a command substitution it would count the
# subshell's children).
hz=$(getconf CLK_TCK)
cpu_ticks() {
  local machine daemon_loop wrk
  machine=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 }' /proc/stat)
  daemon_loop=$(bench_ticks "$pid")
  wrk=$(awk -v hz="$hz" 'NR == 2 {
      split($1, u, /[ms]/); split($2, s, /[ms]/)
      printf "%.0f", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * hz }' "$tmp/times")
  echo "$machine $daemon_loop $wrk"
}
# get NAME KEY: one value of a RESULT line (0 when absent).
get() {
  local v
  v=$(tr ' ' '\n' <"$tmp/$1" | sed -n "s/^$2=//p")
  echo "${v:-0}"
}
tickets() { sqlite3 "file:$tmp/whistle.db?mode=ro" 'SELECT count(*) FROM tickets'; }

street=demo-xintan-token fire=demo-fire-token
run healthz healthz 0 1 0 ""
run raise raise 0 1 0 "$street"
raised=$(tickets)
# The group commit's mean batch during the raise run, from /metrics.
batch=$(curl -s -H "Authorization: Bearer demo-supervisor-token" "$url/metrics" |
  awk '/^whistle_commit_batch_size_sum /{s=$2} /^whistle_commit_batch_size_count /{c=$2}
       END { if (c > 0) printf "%d", s / c + 0.5; else print 0 }')
run prefill raise 0 1 0 "$street" "$((3 * secs))"
total=$(tickets)
# The max run may use two thirds of the tickets, the half-rate run the rest.
split=$((total * 2 / 3))
run events report 0 1 "$split" "$fire"
half=$(awk -v r="$(get events rate)" 'BEGIN { printf "%d", r / 2 }')
run events_half report "$half" "$((split + 1))" "$total" "$fire"
run healthz_half healthz "$half" 1 0 ""

kill -TERM "$pid"
wait "$pid" || { echo "bench/http.sh: the daemon exited with $?" >&2; exit 1; }
pid=""
# What SQLite itself does at that batch size: bench/store.sh's plain loop
# writes a raise's rows (ticket, event, clock, deadlines, outbox …) with the
# same durability, `batch` per commit, no HTTP, no JSON, no engine.
plain=0
if [[ $batch -gt 0 ]]; then
  plain=$(WH_BUILD=$build "$root/bench/store.sh" -n 20000 -f 100 -b "$batch" -d "$tmp" 2>/dev/null |
    awk -F'\t' '/^RESULT\tstore: raise/ { split($4, a, " "); print a[1] }')
  plain=${plain:-0}
fi
reports=$(sqlite3 "file:$tmp/whistle.db?mode=ro" "SELECT count(*) FROM events WHERE event = 'report'")
verify=$("$bin" verify -c "$tmp/whistle.yaml" 2>&1) || true

# Every answered change must be in the database, and nothing else.
fail=0
check() {
  if [[ $2 -eq $3 ]]; then
    echo "check: $1: $2 = $3" >&2
  else
    echo "check FAILED: $1: $2 != $3" >&2
    fail=1
  fi
}
check "201s of the raise run = tickets after it" "$(get raise s201)" "$raised"
check "raise run: every answer a 201" "$(get raise answered)" "$(get raise s201)"
check "201s of raise + prefill = tickets" "$(($(get raise s201) + $(get prefill s201)))" "$total"
check "event runs: every answer a 200" \
  "$(($(get events answered) + $(get events_half answered)))" \
  "$(($(get events s200) + $(get events_half s200)))"
check "200s of the event runs = report events in the database" \
  "$(($(get events s200) + $(get events_half s200)))" "$reports"
echo "$verify" >&2
[[ $verify == *"every hash chain intact"* ]] || fail=1

ceiling=$(get healthz rate)
# busy NAME: the share of the machine's cores the run kept busy, from the
# first send to the last answer.
busy() {
  awk -v c="$(get "$1" cpu_machine)" -v r="$(get "$1" rate)" -v n="$(nproc)" 'BEGIN {
      if (c > 0 && r > 0) printf "%.0f %%", 100 * c * r / 1e6 / n; else print "-" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "-" }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.2f ms", a }'; }
xs() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }'; }
met() { if awk "BEGIN { exit !($1) }"; then echo "met"; else echo "**missed**"; fi; }
raise_rate=$(get raise rate) ev_rate=$(get events rate)
p99=$(get events_half p99)

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "wrk $(wrk -v 2>&1 | sed -n '1s/^wrk \([^ ]*\).*/\1/p'), $threads threads, $conns connections, ${secs} s per run; durability full"
echo "command: bench/http.sh $*"
echo
echo "| metric | whistle | reference (healthz) | ratio | target |"
echo "| --- | ---: | ---: | ---: | --- |"
printf '| POST /v1/tickets, requests/s (all 201) | %.0f | %.0f | %s | ≥ 30 %% of healthz: %s |\n' \
  "$raise_rate" "$ceiling" "$(ratio "$raise_rate" "$ceiling")" \
  "$(met "$raise_rate >= 0.3 * $ceiling")"
printf '| POST /v1/tickets beside a plain SQLite loop writing the same rows, %s per commit (the mean batch of the raise run) | %.0f | %.0f | %s | — |\n' \
  "$batch" "$raise_rate" "$plain" "$(ratio "$raise_rate" "$plain")"
printf '| POST /v1/tickets/{id}/events (report), max requests/s | %.0f | %.0f | %s | — |\n' \
  "$ev_rate" "$ceiling" "$(ratio "$ev_rate" "$ceiling")"
for p in p50 p90 p99; do
  target="—"
  [[ $p == p99 ]] && target="< 10 ms: $(met "$p99 < 10")"
  printf '| events at half max rate (%s/s), latency %s | %s | %s | %s | %s |\n' "$half" "$p" \
    "$(ms "$(get events_half $p)")" "$(ms "$(get healthz_half $p)")" \
    "$(xs "$(get events_half $p)" "$(get healthz_half $p)")" "$target"
done
echo
printf 'half-rate runs: events %.0f/s achieved (%s sends late), healthz %.0f/s achieved (%s late)\n' \
  "$(get events_half rate)" "$(get events_half late)" "$(get healthz_half rate)" "$(get healthz_half late)"
printf 'events max run: %s requests in %s s (tickets available: %s)\n' \
  "$(get events answered)" "$(get events secs)" "$split"
echo
echo "CPU per answered request, µs (machine = every core: the daemon, wrk and the rest, such as the kernel's network work):"
echo
echo "| run | machine | daemon | – its loop thread | wrk | rest |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for r in healthz raise events events_half; do
  printf '| %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n' "$r" "$(get $r cpu_machine)" "$(get $r cpu_daemon)" \
    "$(get $r cpu_loop)" "$(get $r cpu_wrk)" "$(get $r cpu_other)"
done
echo
# If the raise run used the machine's CPU as fully as the healthz run did,
# its rate would be the healthz rate times this.
printf 'healthz machine CPU / raise machine CPU: %s (the raise share of healthz if both runs kept the cores equally busy)\n' \
  "$(ratio "$(get healthz cpu_machine)" "$(get raise cpu_machine)")"
printf 'machine busy while sending: healthz %s, raise %s\n' \
  "$(busy healthz)" "$(busy raise)"
echo "$verify"

# One machine-readable line per headline figure, for bench/run's table:
# RESULT, metric, whistle, reference, ratio, target, met (tab-separated).
# Latency is lower-is-better, so its ratio is healthz/events.
yes_no() { if awk "BEGIN { exit !($1) }"; then echo met; else echo missed; fi; }
hz_p99=$(get healthz_half p99)
printf 'RESULT\thttp: POST /v1/tickets, requests/s (all 201, durability full, %s connections)\t%.0f /s\t%.0f /s (GET /healthz, same server)\t%s\t≥ 30 %% of healthz\t%s\n' \
  "$conns" "$raise_rate" "$ceiling" "$(ratio "$raise_rate" "$ceiling")" "$(yes_no "$raise_rate >= 0.3 * $ceiling")"
printf 'RESULT\thttp: CPU of the whole machine per request, µs: POST /v1/tickets against GET /healthz (lower is better)\t%.1f µs\t%.1f µs (GET /healthz)\t%s\t-\t-\n' \
  "$(get raise cpu_machine)" "$(get healthz cpu_machine)" "$(ratio "$(get healthz cpu_machine)" "$(get raise cpu_machine)")"
printf 'RESULT\thttp: POST /v1/tickets beside a plain SQLite loop at its mean batch (%s per commit)\t%.0f /s\t%.0f /s (bench/store.sh plain loop, -b %s)\t%s\t-\t-\n' \
  "$batch" "$raise_rate" "$plain" "$batch" "$(ratio "$raise_rate" "$plain")"
printf 'RESULT\thttp: POST /v1/tickets/{id}/events (report), max requests/s\t%.0f /s\t%.0f /s (GET /healthz, same server)\t%s\t-\t-\n' \
  "$ev_rate" "$ceiling" "$(ratio "$ev_rate" "$ceiling")"
printf 'RESULT\thttp: events p99 at half max rate (%s/s), ms (lower is better)\t%.2f ms\t%.2f ms (GET /healthz at that rate)\t%s\t< 10 ms\t%s\n' \
  "$half" "$p99" "$hz_p99" "$(awk -v a="$hz_p99" -v b="$p99" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')" \
  "$(yes_no "$p99 < 10")"
exit $fail
