"""Soak: mixed deliveries from the four stores (state changes, refunds, disputes, voids,
refunds reversed), 10% duplicates, shuffled, several concurrent senders, through the gateway
started from the Procfile. Afterwards the entitlement API equals the independent oracle
(``oracle.py``, built from the stores' semantics, not from the gateway's code) for every
user, and every delivery is in the event log once.

``SOAK_DELIVERIES`` sets the size (default 2,000 on PostgreSQL, 600 on SQLite; ``make soak``
runs 10,000).
"""
from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from devtools import revenuecat as rc
from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore
from devtools.google_play import FakePlay
from devtools.google_pubsub import PushSigner
from devtools.stripe_signing import new_secret
from tests.fakes.stripe_billing import StripeBilling
from tests.soak import oracle, wire
from tests.soak.plan import SOURCES, plan
from tests.soak.receiver import outbound_env, replay_check, wait_for_endpoint
from tests.support.procfile import serve, work
from tests.support.webhook_receiver import Receiver, secret

# PostgreSQL is the pass that counts; SQLite (one writer at a time) runs a smaller one.
DEFAULT = "2000" if os.environ.get("TEST_DATABASE") == "postgresql" else "600"
DELIVERIES = int(os.environ.get("SOAK_DELIVERIES", DEFAULT))
SENDERS, DUPLICATES, API_KEY = 8, 0.10, "soak-key"


@pytest.fixture
def receiver():
    found = Receiver([secret()]).start()
    yield found
    found.stop()


@pytest.fixture
def stores(tmp_path):
    chain = mint_chain(valid_from=datetime.now(timezone.utc) - timedelta(days=30))  # signedDates lie in the past
    with StripeBilling() as stripe_fake, FakePlay() as play, PushSigner() as signer:
        yield {"stripe": stripe_fake, "play": play, "signer": signer, "apple": AppStore(chain),
               "root": chain.write_root(tmp_path), "secret": new_secret()}


def gateway_env(database_url: str, s: dict) -> dict:
    return {"DATABASE_URL": database_url, "GATEWAY_API_KEYS": API_KEY, "LOG_LEVEL": "WARNING",
            "REVENUECAT_WEBHOOK_AUTH": rc.AUTH, "STRIPE_WEBHOOK_SECRETS": s["secret"],
            "STRIPE_API_KEY": s["stripe"].api_key, "STRIPE_API_BASE": s["stripe"].url,
            **s["apple"].env(s["root"]), **s["signer"].env(), **s["play"].env(), "GUNICORN_THREADS": "4"}


class Sender:
    """One store's sender: keep-alive, and resend on a connection error or a non-200, as stores do."""

    def __init__(self, port: int) -> None:
        self.port, self.connection, self.resent = port, None, 0

    def send(self, delivery: wire.Delivery) -> str:
        answer = None
        for _ in range(30):
            try:
                self.connection = self.connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.connection.request("POST", f"/webhooks/{delivery.source}", body=delivery.body,
                                        headers=delivery.headers())
                response = self.connection.getresponse()
                answer = json.loads(response.read() or b"null")
                if response.status == 200:
                    return answer["status"]
                if response.status != 503:  # a store resends 4xx too, but one here is a bug
                    raise AssertionError(f"{delivery.source} {delivery.event_id}: {response.status} {answer}")
            except (OSError, http.client.HTTPException):
                self.connection = None
            self.resent += 1
            time.sleep(0.2)
        raise AssertionError(f"{delivery.source} {delivery.event_id} was never accepted: {answer}")


def send_all(port: int, batch: list, outcomes: list, resent: list) -> None:
    sender = Sender(port)
    outcomes.extend(sender.send(delivery) for delivery in batch)
    resent.append(sender.resent)


def test_soak_every_delivery_once_and_entitlements_equal_the_oracle(database_url, stores, make_app, receiver,
                                                                    tmp_path):
    facts = plan(DELIVERIES)
    found = oracle.outcomes(facts)
    wire.arrange_store_apis(facts, stores["stripe"], stores["play"])
    push = stores["signer"].headers()  # one push token (valid an hour) for every Google push
    unique = wire.deliveries(facts, stripe_secret=stores["secret"], store=stores["apple"], push_headers=lambda: push)
    rng = random.Random(11)
    sent = unique + rng.sample(unique, int(len(unique) * DUPLICATES))
    rng.shuffle(sent)
    outcomes, resent = [], []
    started = time.monotonic()
    env = {**gateway_env(database_url, stores), **outbound_env(receiver)}
    with serve(env) as (url, _), work(env, tmp_path / "worker.log") as worker:
        app = make_app(**{k: v for k, v in env.items() if k != "DATABASE_URL"})
        wait_for_endpoint(app, worker)  # an endpoint gets the events from its first worker start on
        port = urlsplit(url).port
        threads = [threading.Thread(target=send_all, args=(port, sent[i::SENDERS], outcomes, resent))
                   for i in range(SENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        deferred = retry_deferred(app)
        webhooks = replay_check(app, receiver, worker, API_KEY)
    lost, twice = log_check(app, unique)
    expected = oracle.expected(facts, datetime.now(timezone.utc), found)
    mismatches = compare(app, expected)
    differing = compare_subscriptions(app, facts, found)
    counts = {k: outcomes.count(k) for k in sorted(set(outcomes))}
    cases = oracle.coverage(found)
    print(f"\nsoak on {app.extensions['gateway'].store.engine.dialect.name}: deliveries {len(sent)} "
          f"(unique {len(unique)}, duplicates {len(sent) - len(unique)}), senders {SENDERS}, "
          f"{elapsed:.1f} s ({len(sent) / elapsed:.0f}/s), answers {counts}, resent {sum(resent)}, "
          f"deferred then retried {deferred}, users {len(expected)} "
          f"(premium {sum(bool(row and row.active) for row in expected.values())}), "
          f"mismatches {len(mismatches)} (subscriptions {len(differing)}), lost {lost}, recorded twice {twice}\n"
          f"webhooks: {webhooks}\n"
          f"cases: {dict(sorted(cases.items()))}")
    assert len(outcomes) == len(sent)
    assert lost == 0 and twice == 0
    assert not mismatches, report(facts, found, mismatches)
    assert not differing, report_subscriptions(facts, found, differing)
    if DELIVERIES >= 600:  # the mix must have exercised what it is meant to prove
        wanted = [f"{source}: revoked by a revocation held" for source in SOURCES] + \
                 [f"{source}: granted again by a later period" for source in ("apple", "revenuecat")] + \
                 [f"{source}: every revocation given back" for source in ("stripe", "apple", "revenuecat")]
        assert not [case for case in wanted if not cases[case]], cases


def retry_deferred(app) -> int:
    """Deliveries a store API failed under load are deferred: run the retry worker for them."""
    store, total = app.extensions["gateway"].store, 0
    for _ in range(5):
        far, past = datetime.now(timezone.utc) + timedelta(days=1), datetime.now(timezone.utc) - timedelta(seconds=1)
        with store.transaction() as tx:  # the backoff has passed, as far as the worker can tell
            due = tx.claim_due_events(now=far, stale_before=past, lease_until=past, limit=100_000)
        if not due:
            return total
        total += len(due)
        result = app.test_cli_runner().invoke(args=["events", "retry", "--limit", "100000"])
        assert result.exit_code == 0, result.output
    return total


def log_check(app, unique: list) -> tuple[int, int]:
    with app.extensions["gateway"].store.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT source, event_id, status FROM events")).all()
    logged = [(r.source, r.event_id) for r in rows]
    assert {r.status for r in rows} <= {"processed", "ignored"}, {r.status for r in rows}
    wanted = {(d.source, d.event_id) for d in unique}
    return len(wanted - set(logged)), len(logged) - len(set(logged)) + len(set(logged) - wanted)


def compare(app, expected: dict) -> list:
    """Every user of the plan: the API's answer against the oracle's (None: no premium row)."""
    client, mismatches = app.test_client(), []
    for user, row in expected.items():
        answer = client.get(f"/v1/users/{user}/entitlements", headers={"Authorization": f"Bearer {API_KEY}"}).get_json()
        premium = answer["entitlements"].get("premium")
        got = None if premium is None else oracle.Row(premium["active"], premium["status"],
                                                      _time(premium["expires_at"]), premium["source"])
        others = sorted(set(answer["entitlements"]) - {"premium"})
        if got != row or answer["is_premium"] != bool(row and row.active) or others:
            mismatches.append((user, row, got, answer["is_premium"], others))
    return mismatches


def compare_subscriptions(app, facts, found: dict) -> list:
    """Each subscription behind the rows, as the history API shows it, against the oracle's
    (status, expires_at): a subscription the row does not show is checked too."""
    client, mismatches = app.test_client(), []
    for user in facts.users:
        answer = client.get(f"/v1/users/{user}/history?limit=1", headers={"Authorization": f"Bearer {API_KEY}"})
        got = {(s["source"], s["key"]): (s["status"], _time(s["expires_at"]))
               for s in answer.get_json()["subscriptions"]}
        wanted = {key: outcome.effective()[:2] for key, outcome in found.items()
                  if outcome.sub.user == user and outcome.effective() is not None}
        for key in sorted(set(got) | set(wanted)):
            if got.get(key) != wanted.get(key):
                mismatches.append((user, key, wanted.get(key), got.get(key)))
    return mismatches


def report_subscriptions(facts, found, mismatches: list) -> str:
    lines = [f"{len(mismatches)} subscriptions differ from the oracle (history API); the first ones:"]
    for user, key, wanted, got in mismatches[:5]:
        lines += [f"{key[0]} {key[1]} of user {user}", f"  oracle: {wanted}", f"  API:    {got}",
                  oracle.explain(facts, user, found)]
    return "\n".join(lines)


def report(facts, found, mismatches: list) -> str:
    lines = [f"{len(mismatches)} of {len(facts.users)} users differ from the oracle; the first ones:"]
    for user, row, got, is_premium, others in mismatches[:5]:
        lines += [f"user {user}", f"  oracle: {row}", f"  API:    {got}, is_premium {is_premium}"
                  + (f", other entitlements {others}" if others else ""), oracle.explain(facts, user, found)]
    return "\n".join(lines)


def _time(value: str | None):
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
