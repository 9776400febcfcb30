# Shared by bench/run.sh (make bench) and bench/scale.sh (make bench-scale), which source
# it: wrk's settings, the servers started as the Procfile starts them, and one measured
# case with the CPU its requests cost in the workers and in PostgreSQL.
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
ROUNDS=${BENCH_ROUNDS:-3}
export BENCH_RC_AUTH="Bearer bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export BENCH_API_KEY="bench-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
servers=()
cleanup=()  # files stop() removes

postgres_database() {  # $1: a database name; prints its URL, creating it if missing; fails without PostgreSQL
  local url
  url=$(BENCH=1 scripts/postgres.sh) || return 1
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='$1'\"" | grep -q 1 \
    || su postgres -c "createdb -O gateway $1" || return 1
  echo "${url%/*}/$1"
}
start() {  # $1: wsgi app, $2: port; the environment's ENTITLEMENT_CACHE_SECONDS, if any
  PORT=$2 DATABASE_URL="$database_url" REVENUECAT_WEBHOOK_AUTH="$BENCH_RC_AUTH" GATEWAY_API_KEYS="$BENCH_API_KEY" \
    LOG_LEVEL=WARNING gunicorn "$1" -c gunicorn.conf.py --bind "127.0.0.1:$2" \
    >/dev/null 2>&1 &
  servers+=($!)
  for _ in $(seq 1 50); do curl -sf "127.0.0.1:$2/healthz" >/dev/null 2>&1 && break
    curl -sf "127.0.0.1:$2/hello" >/dev/null 2>&1 && break; sleep 0.2; done
}
stop() { kill "${servers[@]}" 2>/dev/null || true; wait "${servers[@]}" 2>/dev/null || true
  rm -f ${cleanup[@]+"${cleanup[@]}"}; }
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
