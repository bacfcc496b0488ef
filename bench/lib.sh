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
