#!/usr/bin/env bash
# Load benchmark on loopback: a bare Flask hello, RevenueCat ingest and the entitlement
# read (as deployed, and with the cache off), each served by gunicorn.conf.py's settings,
# measured with wrk in one run. On PostgreSQL two bounds run beside them: bare Flask
# asking PostgreSQL once per request (read-bare, the uncached read's target is a share of
# it), and a delivery's SQL alone, sent by pgbench (ingest-sql) and by psycopg waiting
# where a gateway must (ingest-psycopg: its client CPU, which with the hello's is the ingest
# target's bound). bench/report.py prints each target with its figure, and the ingest
# target with that bound, and exits 1 when one is missed.
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
uncached_port=18082
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
# The gateway as deployed: on PostgreSQL its entitlement cache is on by default (every
# worker hears each committed change, gateway/store/notify.py); on SQLite it is off.
start wsgi:app "$gateway_port"
# The same gateway with the cache off: every read asks the database.
ENTITLEMENT_CACHE_SECONDS=0 start wsgi:app "$uncached_port"
bounds=
if [[ "$database_url" == postgresql* ]]; then
  bounds=1
  start bench.hello_read:app "$bare_port"
  pgbench=$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -1)
  delivery_sql=$(mktemp --suffix=.sql)
  cleanup+=("$delivery_sql")
  python bench/delivery_sql.py > "$delivery_sql"
fi
measure_psycopg() {  # $1: name; client CPU per delivery, in this process: no server to count
  echo "== $1" >> "$out.txt"
  python bench/delivery_sql.py --psycopg "$database_url" --waits --deliveries 2000 --passes 1 >> "$out.txt"
}
for round in $(seq 1 "$ROUNDS"); do
  measure "hello $round" "$hello_port" /hello "${servers[0]}"
  measure "ingest $round" "$gateway_port" bench/ingest.lua "${servers[1]}"
  [ -z "$bounds" ] || measure_sql "ingest-sql $round" "$delivery_sql"
  [ -z "$bounds" ] || measure_psycopg "ingest-psycopg $round"
  measure "read $round" "$gateway_port" bench/read.lua "${servers[1]}"
  measure "read-uncached $round" "$uncached_port" bench/read.lua "${servers[2]}"
  [ -z "$bounds" ] || measure "read-bare $round" "$bare_port" bench/read.lua "${servers[3]}"
done
stop
status=0
python bench/report.py "$out.txt" "$database_url" || status=1
if [ -n "$bounds" ]; then  # the cache's promise: a change on one dyno, seen by every worker of another
  echo
  python bench/cache_visibility.py --database-url "$database_url" --changes "${BENCH_CHANGES:-1000}" \
    | tee "$out-visibility.txt" || status=1
fi
exit $status
