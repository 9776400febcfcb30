#!/usr/bin/env bash
# make bench-scale: the gateway on PostgreSQL holding a million users (SCALE_USERS), 1.2
# subscriptions and 10 deliveries each, loaded by COPY into its own database
# (SCALE_DATABASE, default gateway_scale; kept between runs, loaded again only when its
# size or mix differs or SCALE_RELOAD=1). Then, as bench/run.sh measures: the hello, the
# RevenueCat ingest, the entitlement read and read-bare, taking turns round after round
# over users drawn from the million; the heavy user's history API and admin page, one
# request at a time; EXPLAIN (ANALYZE, BUFFERS) of every hot statement; the database's
# size. With SCALE_FEED_PRUNE=1, last, the feed's retention on the loaded feed with a feed
# writer and GET /v1/events readers beside it (bench/scale_prune.py); it deletes rows, so
# the next run loads the database again. bench/scale.py report prints each target with its
# figure and exits 1 on a miss.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
database=${SCALE_DATABASE:-gateway_scale}
database_url=$(postgres_database "$database") || { echo "bench-scale needs PostgreSQL" >&2; exit 1; }
results=bench/results/scale
mkdir -p "$results"
out=$results/rounds
: > "$out.txt"
rm -f "$results/feed_prune.json"
hello_port=18090
gateway_port=18091
bare_port=18093
trap stop EXIT
if [ "${SCALE_RELOAD:-0}" = 1 ] || ! python bench/scale.py loaded --database-url "$database_url" --out "$results/load.json"; then
  python bench/scale.py load --database-url "$database_url" --out "$results/load.json"
fi
python bench/scale.py sample --database-url "$database_url" --out "$results"
export SCALE_USERS_FILE=$results/users.txt SCALE_RENEWALS_FILE=$results/renewals.txt
cleanup+=("$SCALE_USERS_FILE" "$SCALE_RENEWALS_FILE")
start bench.hello:app "$hello_port"
# The admin's password, for its user page (bench/scale_explain.py signs in with it).
ADMIN_PASSWORD=scale-bench-admin-password ADMIN_SECRET_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  ADMIN_COOKIE_SECURE=false ENTITLEMENT_CACHE_SECONDS=0 start wsgi:app "$gateway_port"
start bench.hello_read:app "$bare_port"
for round in $(seq 1 "$ROUNDS"); do
  measure "hello $round" "$hello_port" /hello "${servers[0]}"
  measure "ingest $round" "$gateway_port" bench/scale_ingest.lua "${servers[1]}"
  measure "read $round" "$gateway_port" bench/scale_read.lua "${servers[1]}"
  measure "read-bare $round" "$bare_port" bench/scale_read.lua "${servers[2]}"
done
python bench/scale.py latency --url "http://127.0.0.1:$gateway_port" --load "$results/load.json" \
  --out "$results/latency.json"
stop
python bench/scale.py explain --database-url "$database_url" --load "$results/load.json" --out "$results/explain.json"
python bench/scale.py size --database-url "$database_url" --out "$results/size.json"
if [ "${SCALE_FEED_PRUNE:-0}" = 1 ]; then
  python bench/scale.py feed-prune --database-url "$database_url" --out "$results/feed_prune.json"
fi
python bench/scale.py report "$results" | tee "$results/report.txt"
