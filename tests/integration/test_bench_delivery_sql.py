"""The benchmark's ingest-sql bound runs the gateway's statements and leaves a delivery's rows.

``bench/delivery_sql.py`` builds a pgbench script from the driver statements; should a
statement gain a parameter or lose its meaning, the bound ``make bench`` prints would
silently measure something else. Here pgbench runs it against the test database.
"""
from __future__ import annotations

import glob
import os
import subprocess

import pytest
import sqlalchemy as sa

from bench.delivery_sql import script
from tests.conftest import DATABASE

pytestmark = pytest.mark.skipif(DATABASE != "postgresql", reason="pgbench speaks to PostgreSQL only")


def pgbench() -> str:
    # The newest major version, as bench/run.sh takes it (numerically: 9 before 15).
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.skip("pgbench not installed (Debian's postgresql package has it)")
    return found[-1]


def test_each_transaction_records_applies_and_links_one_delivery(database_url, tmp_path):
    path = tmp_path / "delivery.sql"
    path.write_text(script())
    run = subprocess.run([pgbench(), "-n", "-M", "prepared", "-c", "2", "-j", "1", "-t", "25", "-f", str(path),
                          os.environ["TEST_POSTGRES_URL"]], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "number of transactions actually processed: 50/50" in run.stdout
    engine = sa.create_engine(database_url)
    with engine.connect() as db:
        events = db.execute(sa.text("SELECT count(*), count(DISTINCT event_id) FROM events "
                                    "WHERE source = 'revenuecat' AND status = 'processed'")).one()
        # Every event is linked once, to a subscription that exists and is owned; every
        # owner of one has the entitlement the delivery grants.
        links = db.execute(sa.text(
            "SELECT count(*), count(DISTINCT e.id) FROM event_subscriptions l JOIN events e ON e.id = l.event_pk "
            "JOIN subscriptions s ON (s.source, s.key) = (l.source, l.key) "
            "WHERE s.user_sub = 'bench-' || substr(s.key, 10) AND s.status = 'active'")).one()
        owners = db.execute(sa.text("SELECT count(DISTINCT user_sub) FROM subscriptions")).scalar()
        granted = db.execute(sa.text(
            "SELECT count(*) FROM entitlements g JOIN subscriptions s ON s.user_sub = g.user_sub "
            "WHERE g.name = 'premium' AND g.status = 'active' AND g.subscription_key = s.key "
            "AND g.expires_at = s.expires_at")).scalar()
    engine.dispose()
    assert events == (50, 50)
    assert links == (50, 50)
    assert 1 <= owners <= 50 and granted == owners
