"""Parked outgoing webhook deliveries reach an operator who does not open /admin/webhooks: a
gauge read from the database at every scrape (``gateway_webhook_deliveries_parked``), and a
warning from the worker naming the endpoint, the count and the command, once, not every turn."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from gateway.domain.entitlement_events import REVOKED
from gateway.domain.webhooks import Endpoint
from gateway.outbound.worker import Deliverer
from gateway.store.outbox import Outbox
from tests.e2e.test_feed_gaps import BACKEND, a_delivery_that_cannot_be_sent, append
from tests.e2e.test_feed_retention import NOW
from tests.e2e.test_metrics import METRICS_TOKEN, samples, scrape
from tests.e2e.test_retention import run

CRM = Endpoint("crm", "https://crm.example.com/hook", ("whsec_y",))
PARKED = "webhook deliveries parked; their users' later deliveries wait until an operator acts"
DROP = "resync their users at the receiver, then: flask webhooks drop backend 1"
REPLAY = "fix the receiver, then: flask webhooks replay --endpoint backend"


@pytest.fixture
def app(make_app):
    return make_app(METRICS_TOKEN=METRICS_TOKEN)


@pytest.fixture
def store(app):
    return app.extensions["gateway"].store


def fail_for_good(store, outbox: Outbox, *users: str) -> None:
    """A change for each of ``users``; every delivery due fails past its three days."""
    for user in users:
        append(store, user, type_=REVOKED)
    outbox.fan_out(NOW)
    claimed = outbox.claim(NOW, NOW + timedelta(hours=1), 100)
    assert outbox.settle([(c, "HTTP 500", None) for c in claimed], NOW) == ["failed"] * len(claimed)


def parked_deliveries(store) -> Outbox:
    """backend: event 1's delivery to user-1 parked with its event gone (3 waits behind it),
    the deliveries to user-2 and user-3 parked after their retries; crm added at the head."""
    outbox = a_delivery_that_cannot_be_sent(store)
    fail_for_good(store, outbox, "user-2", "user-3")
    outbox.save(CRM, NOW)
    return outbox


def gauge(app) -> dict[tuple[str, str], float]:
    return {(dict(k)["name"], dict(k)["reason"]): v
            for k, v in samples(scrape(app.test_client()), "gateway_webhook_deliveries_parked").items()}


def test_the_gauge_counts_each_endpoint_s_parked_deliveries_until_dropped_and_replayed(app, store):
    """Every endpoint and reason is shown, zero included, so an alert's series never vanishes;
    the count is read at scrape time, so it falls as soon as an operator's command acts."""
    assert gauge(app) == {}  # no endpoint yet
    parked_deliveries(store)
    assert gauge(app) == {("backend", "event_gone"): 1, ("backend", "retries_exhausted"): 2,
                          ("crm", "event_gone"): 0, ("crm", "retries_exhausted"): 0}

    run(app, "webhooks", "drop", "backend", "1")
    assert gauge(app) == {("backend", "event_gone"): 0, ("backend", "retries_exhausted"): 2,
                          ("crm", "event_gone"): 0, ("crm", "retries_exhausted"): 0}
    assert "replayed 2 deliveries" in run(app, "webhooks", "replay", "--endpoint", "backend")
    assert set(gauge(app).values()) == {0}


def told(caplog) -> list[dict]:
    return [r.fields for r in caplog.records if r.getMessage() == PARKED and r.levelno == logging.WARNING]


def test_the_worker_warns_of_parked_deliveries_once_then_only_as_they_grow(store, caplog):
    """Not every turn: once when an endpoint gets parked deliveries; as they grow (a receiver
    down for days parks one user after another), at most once an hour; after they were all
    dropped or replayed, at once again. ``max_attempts=0``: a worker that only meets them."""
    outbox = a_delivery_that_cannot_be_sent(store)
    worker = Deliverer(outbox, [BACKEND], max_attempts=0)
    with caplog.at_level(logging.WARNING, "gateway.outbound"):
        for minutes in (0, 1, 2):
            worker.run_once(NOW + timedelta(minutes=minutes))
        assert told(caplog) == [{"endpoint": "backend", "parked": 1, "event_gone": 1, "action": DROP}]

        fail_for_good(store, outbox, "user-2")
        worker.run_once(NOW + timedelta(minutes=30))  # grown, but told half an hour ago
        assert len(told(caplog)) == 1
        for hours in (2, 5):  # grown since, then not
            worker.run_once(NOW + timedelta(hours=hours))
        assert told(caplog)[1:] == [{"endpoint": "backend", "parked": 2, "event_gone": 1,
                                     "action": f"{DROP}; {REPLAY}"}]

        assert outbox.drop("backend", (1,)) == {1: "user-1"} and outbox.replay(NOW, "backend") == 1
        worker.run_once(NOW + timedelta(hours=8))
        assert len(told(caplog)) == 2
        fail_for_good(store, outbox)  # user-1's 3, free now, and user-2's replayed 4
        worker.run_once(NOW + timedelta(hours=8, minutes=1))
    assert told(caplog)[2:] == [{"endpoint": "backend", "parked": 2, "event_gone": 0, "action": REPLAY}]
