# shellcheck shell=bash
# Shell helpers shared by the bench scripts (sourced, not run).

# bench_config ROOT DB OUT: writes to OUT the example city
# (ROOT/examples/whistle.yaml) with absolute paths, the database at DB and
# durability full. Its departments lose their webhooks: every raise still
# composes its message and writes it to the outbox in the change's
# transaction, but the notifier records it as no_endpoint instead of sending
# it. Sending is bench/deliveries.sh's measure; here the example's receivers
# (port 9000) would not be running, and tens of thousands of refused
# connections retried in waves would be measured instead of the API.
# Returns 1 when a webhook is left.
bench_config() {
  local root=$1 db=$2 out=$3
  sed -e "s|^database:.*|database: $db|" \
      -e "s|^workflows:.*|workflows: $root/workflows|" \
      -e "s|: calendars/|: $root/examples/calendars/|" \
      -e "s|^durability:.*|durability: full|" \
      -e "/^    webhook:/d" -e "/^      url: http/d" -e "/^      secret: whsec_/d" \
      "$root/examples/whistle.yaml" >"$out"
  if grep -q 'whsec_\|webhook:' "$out"; then
    echo "bench: could not take the webhooks out of the example config" >&2
    return 1
  fi
}

# bench_stop PID: stops a daemon still running (SIGTERM) and waits for it.
# For EXIT traps: never fails.
bench_stop() {
  if [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; then
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}

# bench_serve BIN CONFIG LOG: starts `BIN serve -c CONFIG` on a free port
# of 127.0.0.1, its stderr to LOG, and waits until it listens (at most
# 10 s). Sets pid and url; returns 1, the log on stderr, if it did not start.
bench_serve() {
  "$1" serve -c "$2" --listen 127.0.0.1:0 2>"$3" &
  pid=$!
  url=""
  for _ in $(seq 100); do
    url=$(sed -n 's/^whistle: listening on //p' "$3")
    [[ -n $url ]] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: the daemon did not start:" >&2
  cat "$3" >&2
  return 1
}

# bench_ticks PID: CPU time (user + system, in clock ticks) used so far by
# process PID and by its main thread, the loop: "PROCESS LOOP".
bench_ticks() {
  echo "$(awk '{ print $14 + $15 }' "/proc/$1/stat") $(awk '{ print $14 + $15 }' "/proc/$1/task/$1/stat")"
}
