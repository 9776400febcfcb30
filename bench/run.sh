#!/usr/bin/env bash
# Load benchmark on loopback: a bare Flask hello, the entitlement read and RevenueCat
# ingest, each served by gunicorn.conf.py's settings, measured with wrk in one run. On
# PostgreSQL two bounds run beside them (no target): bare Flask asking PostgreSQL once
# per request (read-bare), and a delivery's SQL alone, sent by pgbench (ingest-sql).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
if ! database_url=$(postgres_database gateway_bench); then
  database_url="sqlite:///$(mktemp -d)/bench.db"
fi
mkdir -p bench/results
out=bench/results/latest
: > "$out.txt"
hello_port=18080
gateway_port=18081
cached_port=18082
bare_port=18083
trap stop EXIT
DATABASE_URL="$database_url" flask --app wsgi migrate >/dev/null
if [[ "$database_url" == postgresql* ]]; then  # every run starts from empty tables
  su postgres -c "psql -q -d gateway_bench -c 'TRUNCATE events, event_subscriptions, subscriptions, entitlements, identities'"
fi
# Both servers run side by side (an idle one costs nothing) and the cases take turns,
# round after round: this machine's speed drifts by the minute, so each case is compared
# with the hello measured moments before it, and the report takes the median round.
start bench.hello:app "$hello_port"
ENTITLEMENT_CACHE_SECONDS=0 start wsgi:app "$gateway_port"
# The same gateway with the opt-in entitlement cache (gateway/store/cache.py) on.
ENTITLEMENT_CACHE_SECONDS=5 start wsgi:app "$cached_port"
bounds=
if [[ "$database_url" == postgresql* ]]; then
  bounds=1
  start bench.hello_read:app "$bare_port"
  pgbench=$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -1)
  delivery_sql=$(mktemp --suffix=.sql)
  cleanup+=("$delivery_sql")
  python bench/delivery_sql.py > "$delivery_sql"
fi
for round in $(seq 1 "$ROUNDS"); do
  measure "hello $round" "$hello_port" /hello "${servers[0]}"
  measure "ingest $round" "$gateway_port" bench/ingest.lua "${servers[1]}"
  [ -z "$bounds" ] || measure_sql "ingest-sql $round" "$delivery_sql"
  measure "read $round" "$gateway_port" bench/read.lua "${servers[1]}"
  [ -z "$bounds" ] || measure "read-bare $round" "$bare_port" bench/read.lua "${servers[3]}"
  measure "read-cached $round" "$cached_port" bench/read.lua "${servers[2]}"
done
stop
python bench/report.py "$out.txt" "$database_url"
