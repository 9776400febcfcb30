#!/usr/bin/env bash
# Load benchmark on loopback: a bare Flask hello, the entitlement read and RevenueCat
# ingest, each served by gunicorn.conf.py's settings, measured with wrk in one run. On
# PostgreSQL two bounds run beside them (no target): bare Flask asking PostgreSQL once
# per request (read-bare), and a delivery's SQL alone, sent by pgbench (ingest-sql).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
ROUNDS=${BENCH_ROUNDS:-3}
export BENCH_RC_AUTH="Bearer bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export BENCH_API_KEY="bench-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
if url=$(BENCH=1 scripts/postgres.sh); then
  database_url="${url%/*}/gateway_bench"
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='gateway_bench'\"" | grep -q 1 \
    || su postgres -c "createdb -O gateway gateway_bench"
else
  database_url="sqlite:///$(mktemp -d)/bench.db"
fi
mkdir -p bench/results
out=bench/results/latest
: > "$out.txt"
hello_port=18080
gateway_port=18081
cached_port=18082
bare_port=18083
servers=()
start() {  # $1: wsgi app, $2: port; the environment's ENTITLEMENT_CACHE_SECONDS, if any
  PORT=$2 DATABASE_URL="$database_url" REVENUECAT_WEBHOOK_AUTH="$BENCH_RC_AUTH" GATEWAY_API_KEYS="$BENCH_API_KEY" \
    LOG_LEVEL=WARNING gunicorn "$1" -c gunicorn.conf.py --bind "127.0.0.1:$2" \
    >/dev/null 2>&1 &
  servers+=($!)
  for _ in $(seq 1 50); do curl -sf "127.0.0.1:$2/healthz" >/dev/null 2>&1 && break
    curl -sf "127.0.0.1:$2/hello" >/dev/null 2>&1 && break; sleep 0.2; done
}
stop() { kill "${servers[@]}" 2>/dev/null || true; wait "${servers[@]}" 2>/dev/null || true
  rm -f "${delivery_sql:-}"; }
trap stop EXIT
# CPU ticks (user + system) of a process: fields 14 and 15 of /proc/<pid>/stat, counted
# after the command name, which may hold spaces; 0 for one that is gone.
ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0; }
ticks_of() {  # "pid:ticks ..." of every process matched by pgrep's arguments
  local pid; for pid in $(pgrep "$@" || true); do echo -n "$pid:$(ticks "$pid") "; done; }
spent() {  # ticks since $1 (from ticks_of) of the processes matched now by pgrep's arguments;
  # one started since counts whole, as PostgreSQL's backend for a new pooled connection
  local before=" $1" now=0 pid was; shift
  for pid in $(pgrep "$@" || true); do
    was=$(grep -o " $pid:[0-9]*" <<< "$before" | cut -d: -f2)
    now=$((now + $(ticks "$pid") - ${was:-0}))
  done; echo "$now"; }
seconds() {  # wrk's duration (10s, 2m) in seconds, for pgbench
  case "$1" in *m) echo $(( ${1%m} * 60 ));; *s) echo "${1%s}";; *) echo "$1";; esac; }
measure_sql() {  # $1: name, $2: pgbench script; 8 clients, as many as the gateway's threads.
  # No CPU line: pgbench's backends have ended, and taken their ticks along, when it returns.
  echo "== $1" >> "$out.txt"
  "$pgbench" -n -M prepared -c 8 -j 2 -T "$(seconds "$DURATION")" -f "$2" "$database_url" >> "$out.txt" 2>&1 \
    || { tail -5 "$out.txt" >&2; echo "pgbench failed: $1" >&2; exit 1; }
}
measure() {  # $1: name, $2: port, $3: path or script, $4: the server's master pid
  echo "== $1" >> "$out.txt"
  local workers postgres
  workers=$(ticks_of -P "$4"); postgres=$(ticks_of -u postgres)
  if [[ "$3" == *.lua ]]; then
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$3" "http://127.0.0.1:$2" >> "$out.txt"
  else
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$2$3" >> "$out.txt"
  fi
  # What the requests cost in CPU, in the workers and in PostgreSQL: steadier than req/s
  # on a machine whose speed drifts, and it says where the time goes.
  echo "CPU ticks: workers $(spent "$workers" -P "$4") postgres $(spent "$postgres" -u postgres)" \
    "per $(getconf CLK_TCK)/s" >> "$out.txt"
}
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
