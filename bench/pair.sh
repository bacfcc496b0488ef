#!/usr/bin/env bash
# Compares two whistle executables on POST /v1/tickets in paired runs: on a
# virtual machine whose speed drifts by a third within minutes, a single run
# of each says little, so the two alternate, each on a fresh daemon and
# database, and the means of many pairs are compared.
#
#   bench/pair.sh [-n PAIRS] [-d SECONDS] [-c CONNECTIONS] A B
#
#   A, B  whistle executables (say, build/plain/whistle of two commits)
#   -n    pairs (default 8)    -d  seconds of each wrk run (default 4)
#   -c    wrk connections (default 32; wrk runs 2 threads)
#
# Each run, for A then B: a daemon on a copy of examples/whistle.yaml as
# bench/http.sh makes it (durability full, no webhooks), GET /healthz for
# SECONDS, then POST /v1/tickets for SECONDS. Per run it prints the two
# rates and the raise's share of /healthz, its p50, the CPU the daemon's
# loop thread and the whole process used per raise, the bytes the process
# wrote per raise, the mean fdatasync and the mean batch (from /metrics);
# then the means over the pairs, and in how many pairs B raised faster.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
lua=$root/bench/http.lua
pairs=8 secs=4 conns=32
while getopts "n:d:c:" o; do
  case $o in
    n) pairs=$OPTARG ;;
    d) secs=$OPTARG ;;
    c) conns=$OPTARG ;;
    *) echo "usage: bench/pair.sh [-n PAIRS] [-d SECONDS] [-c CONNECTIONS] A B" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [[ $# -ne 2 || ! -x $1 || ! -x $2 ]]; then
  echo "usage: bench/pair.sh [-n PAIRS] [-d SECONDS] [-c CONNECTIONS] A B (two executables)" >&2
  exit 2
fi
command -v wrk >/dev/null || { echo "bench/pair.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }
hz=$(getconf CLK_TCK)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/whistle-pair.XXXXXX")
pid=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  bench_stop "$pid"
  rm -rf "$tmp"
}
trap cleanup EXIT
cp "$1" "$tmp/A"
cp "$2" "$tmp/B"

wchar() { awk '/^wchar/ {print $2}' "/proc/$pid/io"; }
metric() {
  curl -s -H "Authorization: Bearer demo-supervisor-token" "$url/metrics" |
    awk -v k="$1" '$1 == k {print $2}'
}
field() { tr ' ' '\n' <"$tmp/wrk.out" | sed -n "s/^$1=//p"; }

# run NAME: one daemon, healthz then raise; appends a line to $tmp/runs.
run() {
  local name=$1 dir=$tmp/run
  rm -rf "$dir" && mkdir "$dir"
  bench_config "$root" "$dir/whistle.db" "$dir/whistle.yaml" || exit 1
  bench_serve "$tmp/$name" "$dir/whistle.yaml" "$dir/daemon.log" || exit 1

  wrk -t2 -c"$conns" -d"$((secs + 2))s" --timeout 10s -s "$lua" "$url" -- healthz "$secs" 0 1 0 "" 2 \
    >"$tmp/wrk.out"
  local health; health=$(field rate)
  local sc0 ss0 bc0 bs0 l0 p0 w0
  sc0=$(metric whistle_log_sync_duration_seconds_count); ss0=$(metric whistle_log_sync_duration_seconds_sum)
  bc0=$(metric whistle_commit_batch_size_count); bs0=$(metric whistle_commit_batch_size_sum)
  read -r p0 l0 < <(bench_ticks "$pid"); w0=$(wchar)
  wrk -t2 -c"$conns" -d"$((secs + 2))s" --timeout 10s -s "$lua" "$url" -- raise "$secs" 0 1 0 \
    demo-xintan-token 2 >"$tmp/wrk.out"
  local l1 p1 w1 sc1 ss1 bc1 bs1
  read -r p1 l1 < <(bench_ticks "$pid"); w1=$(wchar)
  sc1=$(metric whistle_log_sync_duration_seconds_count); ss1=$(metric whistle_log_sync_duration_seconds_sum)
  bc1=$(metric whistle_commit_batch_size_count); bs1=$(metric whistle_commit_batch_size_sum)
  local n rate p50
  n=$(field answered); rate=$(field rate); p50=$(field p50)
  kill -TERM "$pid"
  wait "$pid" || { echo "bench/pair.sh: $name exited with $?" >&2; exit 1; }
  pid=""
  awk -v name="$name" -v h="$health" -v r="$rate" -v n="$n" -v p50="$p50" -v hz="$hz" \
      -v l=$((l1 - l0)) -v p=$((p1 - p0)) -v w=$((w1 - w0)) \
      -v sc="$sc0 $sc1" -v ss="$ss0 $ss1" -v bc="$bc0 $bc1" -v bs="$bs0 $bs1" 'BEGIN {
        split(sc, c, " "); split(ss, s, " "); split(bc, d, " "); split(bs, e, " ")
        syncs = c[2] - c[1]; batches = d[2] - d[1]
        printf "%s healthz=%.0f raise=%.0f share=%.2f p50=%s loop_us=%.1f proc_us=%.1f wbytes=%.0f sync_ms=%.3f batch=%.1f\n",
          name, h, r, 100 * r / h, p50, l * 1e6 / hz / n, p * 1e6 / hz / n, w / n,
          (syncs > 0 ? 1000 * (s[2] - s[1]) / syncs : 0), (batches > 0 ? (e[2] - e[1]) / batches : 0)
      }' | tee -a "$tmp/runs"
}

echo "bench/pair.sh: A=$1 B=$2, $pairs pairs, ${secs} s runs, $conns connections" >&2
for _ in $(seq "$pairs"); do
  run A
  run B
done
awk '{
    for (i = 2; i <= NF; i++) { split($i, kv, "="); sum[$1, kv[1]] += kv[2]; keys[i] = kv[1] }
    nf = NF
    n[$1]++
    split($3, r, "=")
    if ($1 == "A") a = r[2]; else if (r[2] > a) faster++
  } END {
    for (k = 0; k < 2; k++) {
      who = k ? "B" : "A"; line = who " mean:"
      for (i = 2; i <= nf; i++) {
        v = sum[who, keys[i]] / n[who]
        line = line sprintf(v < 100 ? " %s=%.3f" : " %s=%.0f", keys[i], v)
      }
      print line
    }
    printf "B raised faster than A in %d of %d pairs\n", faster, n["B"]
  }' "$tmp/runs"
