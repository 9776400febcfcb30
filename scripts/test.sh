#!/usr/bin/env bash
# Runs every test on the embedded SQLite database, then the store and end-to-end tests
# again on PostgreSQL. Under CI=true PostgreSQL must be there; elsewhere its pass is
# skipped, with a message, when no server can be reached or started.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== tests on SQLite"
TEST_DATABASE=sqlite python -m pytest -q "$@"

if url=$(scripts/postgres.sh); then
  # Two tests put a real PgBouncer between the gateway and PostgreSQL (the cache's listener,
  # the store), as platforms do; under CI it must be there (Debian's package), elsewhere they
  # are skipped.
  if [ "${CI:-}" = "true" ] && [ "$(id -u)" = 0 ] && ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q pgbouncer >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q pgbouncer >/dev/null; }
  fi
  echo "== store, end-to-end and soak tests on PostgreSQL"
  TEST_DATABASE=postgresql TEST_POSTGRES_URL="$url" python -m pytest -q tests/integration tests/e2e tests/soak tests/cognito/test_sign_out_on_revoke.py "$@"
elif [ "${CI:-}" = "true" ]; then
  echo "PostgreSQL could not be started: CI needs it" >&2
  exit 1
else
  echo "== PostgreSQL pass skipped: no server reachable (set TEST_POSTGRES_URL, or run as root with PostgreSQL 15 installed)"
fi
