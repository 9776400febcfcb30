"""``make bench-scale``'s loader (``bench/scale_load.py``) at its smallest size, on PostgreSQL.

The loader writes copies of the rows the gateway writes; should the schema or the gateway's
reading of a row change, the scale bench would measure a database the gateway no longer
reads as it should. Here the real app answers the loaded users as their rows say, takes a
delivery on top of them, and pages the feed from the loaded clock. (The loader itself fails
unless the schema it leaves is the one the migrations build.)
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from bench.scale import sizes_from_env
from bench.scale_load import load
from devtools import revenuecat as rc
from gateway import create_app
from gateway.config import from_env
from tests.conftest import DATABASE

pytestmark = pytest.mark.skipif(DATABASE != "postgresql", reason="the scale bench loads PostgreSQL by COPY")

USERS, KEY = 1000, "scale-test-key"


@pytest.fixture(scope="module")
def loaded(_migrated_url):
    """Loaded once for the module (the tests read it; the last one adds a delivery)."""
    figures = load(_migrated_url, sizes_from_env(USERS), log=lambda line: None)
    engine = sa.create_engine(_migrated_url)
    yield figures, engine
    engine.dispose()


@pytest.fixture
def make_app(_migrated_url):
    """The gateway on the loaded database (the shared ``make_app`` empties it first)."""
    apps = []

    def build(**env):
        app = create_app(from_env({"DATABASE_URL": _migrated_url, **env}))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["gateway"].store.close()


def _get(client, path):
    answer = client.get(path, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def test_the_gateway_reads_the_loaded_users_as_loaded(loaded, make_app):
    figures, engine = loaded
    assert (figures["users"], figures["subscriptions"], figures["events"]) == (USERS, 1200, 10_000)
    with engine.connect() as db:
        rows = db.execute(sa.text("SELECT user_sub, status, expires_at, source FROM entitlements")).all()
    now = datetime.now(timezone.utc)
    premium = [r for r in rows if r.status in ("active", "grace_period") and r.expires_at > now]
    lapsed = [r for r in rows if r.expires_at < now]
    assert len(rows) == USERS and premium and lapsed
    client = make_app(GATEWAY_API_KEYS=KEY).test_client()
    for row in premium[:20]:
        answer = _get(client, f"/v1/users/{row.user_sub}/entitlements")
        assert answer["is_premium"] is True, answer
        assert answer["entitlements"]["premium"]["source"] == row.source
    for row in lapsed[:20]:
        assert _get(client, f"/v1/users/{row.user_sub}/entitlements")["is_premium"] is False


def test_the_heavy_users_history_holds_its_thousand_deliveries(loaded, make_app):
    figures, _ = loaded
    client = make_app(GATEWAY_API_KEYS=KEY).test_client()
    path = f"/v1/users/{figures['heavy_user']}/history?limit=500"
    first = _get(client, path)
    second = _get(client, f"{path}&before={first['next_before']}")
    deliveries = first["deliveries"] + second["deliveries"]
    assert len(first["subscriptions"]) == 4 and first["is_premium"] is True
    assert len(deliveries) == 1000 and second["next_before"] is None
    assert all(d["status"] == "processed" and len(d["subscriptions"]) == 1 for d in deliveries)
    ids = [d["id"] for d in deliveries]
    assert ids == sorted(ids, reverse=True)


def test_a_delivery_applies_on_top_of_the_load_and_the_feed_goes_on_from_its_clock(loaded, make_app):
    figures, engine = loaded
    with engine.connect() as db:
        user, key = db.execute(sa.text(
            "SELECT user_sub, key FROM subscriptions WHERE source = 'revenuecat' AND status = 'active' "
            "AND user_sub IS NOT NULL LIMIT 1")).one()
        head = db.execute(sa.text("SELECT position FROM feed_clock")).scalar_one()
    assert head == figures["entitlement_events"]
    app = make_app(GATEWAY_API_KEYS=KEY, REVENUECAT_WEBHOOK_AUTH=rc.AUTH)
    client = app.test_client()
    later = int(datetime.now(timezone.utc).timestamp() * 1000) + 90 * 86_400_000
    event = rc.event("RENEWAL", user, transaction=key, expiration_at_ms=later)
    answer = client.post("/webhooks/revenuecat", data=rc.body(event),
                         headers={"Authorization": rc.AUTH, "Content-Type": "application/json"})
    assert answer.get_json() == {"status": "processed"}
    expires = _get(client, f"/v1/users/{user}/entitlements")["entitlements"]["premium"]["expires_at"]
    assert datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp() * 1000 == pytest.approx(later, abs=1)
    feed = _get(client, f"/v1/events?after={head - 2}&limit=10")
    assert [e["user_id"] for e in feed["events"]][-1] == user and len(feed["events"]) == 3
    assert json.loads(feed["next"]) == head + 1


def test_the_feed_prune_bench_prunes_the_loaded_feed_beside_a_writer_and_readers(loaded, _migrated_url):
    """``SCALE_FEED_PRUNE=1 make bench-scale``'s last step, at this size: it deletes rows,
    so it runs after the tests that read the load."""
    from bench.scale_prune import run, summary
    from tests.support.webhook_receiver import free_port

    figures, engine = loaded
    found = run(_migrated_url, port=free_port())
    assert found["failures"] == {}, found["failures"]
    assert found["feed_rows_before"] >= figures["entitlement_events"]  # and the delivery added above
    assert 0 < found["deleted"] < found["feed_rows_before"]
    assert found["append"]["during"]["transaction"]["count"] + found["append"]["before"]["transaction"]["count"] > 0
    assert found["read_tail"]["before"]["count"] > 0 and found["read_oldest"]["before"]["count"] > 0
    with engine.connect() as db:
        pruned = db.execute(sa.text("SELECT pruned_through FROM feed_retention")).scalar_one()
    assert pruned >= found["deleted"] and len(summary(found)) == 4
