#!/usr/bin/env bash
# Prints the URL of a PostgreSQL database for tests, starting the Debian cluster and
# creating the role and database if it can. Exits non-zero when none can be had.
set -uo pipefail
if [ -n "${TEST_POSTGRES_URL:-}" ]; then echo "$TEST_POSTGRES_URL"; exit 0; fi

url="postgresql://gateway:gateway@127.0.0.1:5432/gateway_test"
reachable() { python - "$url" <<'PY' >/dev/null 2>&1
import sys, psycopg
psycopg.connect(sys.argv[1].replace("postgresql://", "postgresql://", 1), connect_timeout=3).close()
PY
}
if reachable; then echo "$url"; exit 0; fi

[ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null || exit 1
version=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
[ -n "$version" ] || exit 1
pg_ctlcluster "$version" main start >/dev/null 2>&1 || pg_ctlcluster "$version" main status >/dev/null 2>&1 || exit 1
for _ in $(seq 1 30); do su postgres -c "pg_isready -q" && break; sleep 1; done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='gateway'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE gateway LOGIN PASSWORD 'gateway'\"" >/dev/null || exit 1
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='gateway_test'\"" | grep -q 1 \
  || su postgres -c "createdb -O gateway gateway_test" || exit 1
reachable && echo "$url"
