"""What the gateway writes for each kind of delivery, captured from the gateway itself.

``capture(database_url)`` sends a few stories of deliveries of every source, signed as
each store signs them (``devtools``: the demo's fakes of the Stripe and Play APIs, an
Apple-shaped chain, Google's push signer), through the real app on that (migrated, empty)
PostgreSQL database, and keeps every row each delivery left, as ``COPY`` text: the event
log (payload and parsed ``data``), the evidence links, the feed, and the subscription,
entitlement and identity rows as the delivery left them. Then an expiry sweep, and a
delivery deferred by a store API that is down. ``bench/scale_load.py`` copies these rows,
with identifiers and times of its own, into the scale database: the rows it loads are the
rows the gateway writes today, whatever the code has become since this file was written.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import secrets
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from devtools import revenuecat as rc
from devtools import scenarios
from devtools import stripe_objects as so
from devtools.apple_store import AppStore, now
from devtools.fakes import InProcessSender
from devtools.google_pubsub import envelope, subscription
from devtools.stripe_signing import signed

#: Per source, the stories captured: each a list of kinds sent in turn for one user of its
#: own. ``purchase`` opens a subscription, ``renew`` (and Stripe's ``cycle``) moves it to
#: the next period, ``change`` keeps access without renewal (a cancellation at period end,
#: a grace period, a hold), ``end`` expires it, ``refund`` revokes it.
STORIES = {
    "stripe": (("purchase", "renew", "cycle", "change", "end"), ("purchase", "refund")),
    "apple": (("purchase", "renew", "change", "end"), ("purchase", "refund")),
    "google": (("purchase", "renew", "change", "end"),),
    "revenuecat": (("purchase", "renew", "change", "end"), ("purchase", "refund")),
}
TABLES = ("events", "event_subscriptions", "entitlement_events", "subscriptions", "entitlements", "identities")
_LOGS = ("events", "event_subscriptions", "entitlement_events")  # appended to: only the new rows are a delivery's


@dataclasses.dataclass
class Capture:
    """The rows one delivery left: per table, each row as {column: COPY text} (``\\N``
    for NULL). ``names`` maps each of the story's identifiers (the user, the
    subscription key, the Stripe customer, ...) to what it stands for, so that the loader
    can put its own in their place."""

    source: str
    kind: str
    names: dict[str, str]
    rows: dict[str, list[dict[str, str]]]


# Stripe (basil): the state is put in the fake first, as the store's changes before it notifies.
def _stripe_event(sender: InProcessSender, user: str, kind: str, days: int, **fields) -> None:
    start = int(time.time()) - 60
    customer, sub, invoice, payment = scenarios._stripe_objects(user, **fields)
    sub["items"]["data"][0].update(current_period_start=start, current_period_end=start + days * scenarios.DAY)
    sender.stripe_state(customer, sub, invoice, payment)
    event = so.event(kind, invoice if kind == "invoice.paid" else sub)
    event["id"] = "evt_demo" + secrets.token_hex(12)
    sender.post("stripe", *signed(event, sender.credentials.stripe_webhook_secret))


def _stripe(sender: InProcessSender, kind: str, user: str) -> None:
    if kind == "purchase":
        return scenarios.stripe(sender, "subscribe", user)
    if kind == "refund":
        return scenarios.stripe(sender, "refund", user)
    if kind == "renew":  # the invoice of the next period, paid: the gateway re-fetches the subscription
        return _stripe_event(sender, user, "invoice.paid", 60)
    if kind == "cycle":  # the subscription's own event of that period: nothing new to apply
        return _stripe_event(sender, user, "customer.subscription.updated", 60)
    if kind == "change":  # cancelled in the portal: access until the period ends
        return _stripe_event(sender, user, "customer.subscription.updated", 61, cancel_at_period_end=True,
                             canceled_at=int(time.time()))
    return _stripe_event(sender, user, "customer.subscription.deleted", 61, status="canceled",
                         ended_at=int(time.time()), cancel_at_period_end=True)


def _apple(sender: InProcessSender, kind: str, user: str) -> None:
    if kind in ("purchase", "renew", "refund"):
        return scenarios.apple(sender, {"purchase": "subscribe"}.get(kind, kind), user)
    if kind == "change":
        return scenarios.apple(sender, "grace", user)
    store = AppStore(sender.credentials.apple_chain())
    original = str(2_000_000_000 + int(scenarios._ids(user), 16) % 10**9)
    lapsed = store.transaction(original, token=user, expires=now() - timedelta(minutes=1))
    note = store.notification("EXPIRED", "VOLUNTARY", transaction=lapsed,
                              renewal=store.renewal(original, auto_renew=False))
    sender.post("apple", store.body(note), {"Content-Type": "application/json"})


def _google(sender: InProcessSender, kind: str, user: str) -> None:
    if kind != "renew":
        return scenarios.google(sender, {"change": "hold", "end": "expire"}.get(kind, kind), user)
    token = f"demo-purchase-token-{scenarios._ids(user)}"
    sender.play_state(token, state="SUBSCRIPTION_STATE_ACTIVE", user=user, days=60, acknowledged=True)
    sender.post("google", envelope(subscription(token, 2), str(secrets.randbelow(10**15))), sender.push_headers())


def _revenuecat(sender: InProcessSender, kind: str, user: str) -> None:
    transaction, at = f"rc_demo{scenarios._ids(user)}", int(time.time() * 1000)
    later = at + 2 * rc.MONTH_MS
    event = {
        "purchase": lambda: rc.event("INITIAL_PURCHASE", user, transaction=transaction, at_ms=at - 4000),
        "renew": lambda: rc.event("RENEWAL", user, transaction=transaction, at_ms=at - 3000, expiration_at_ms=later),
        "change": lambda: rc.event("CANCELLATION", user, transaction=transaction, at_ms=at - 2000,
                                   cancel_reason="UNSUBSCRIBE", expiration_at_ms=later),
        "end": lambda: rc.event("EXPIRATION", user, transaction=transaction, at_ms=at - 1000,
                                expiration_reason="UNSUBSCRIBE", expiration_at_ms=at - 1500),
        "refund": lambda: rc.event("CANCELLATION", user, transaction=transaction, at_ms=at - 1000,
                                   cancel_reason="CUSTOMER_SUPPORT"),
    }[kind]()
    sender.post("revenuecat", rc.body(event), {"Authorization": sender.credentials.revenuecat_auth,
                                               "Content-Type": "application/json"})


SENDERS = {"stripe": _stripe, "apple": _apple, "google": _google, "revenuecat": _revenuecat}


def _names(source: str, user: str) -> dict[str, str]:
    """The identifiers the devtools scenarios derive from ``user``, by what they stand for;
    ``h`` is the hash every Stripe id of the user is built on (invoices, charges, items)."""
    h = scenarios._ids(user)
    found = {"user": user, "key": {"stripe": f"sub_demo{h}", "google": f"demo-purchase-token-{h}",
                                   "apple": str(2_000_000_000 + int(h, 16) % 10**9),
                                   "revenuecat": f"rc_demo{h}"}[source]}
    if source == "stripe":
        found.update(customer=f"cus_demo{h}", h=h)
    if source == "revenuecat":  # devtools.revenuecat's anonymous alias
        found["alias"] = "$RCAnonymousID:8069238d6049ce87cc529853916d624c"
    return found


def _copy_rows(connection: psycopg.Connection, table: str) -> list[dict[str, str]]:
    """Rows as COPY text, column by column."""
    columns = [d.name for d in connection.execute(f"SELECT * FROM {table} LIMIT 0").description]
    order = {"events": "id", "entitlement_events": "position", "event_subscriptions": "event_pk"}.get(table, "1")
    lines = []
    with connection.cursor().copy(f"COPY (SELECT * FROM {table} ORDER BY {order}) TO STDOUT") as copy:
        for block in copy:
            lines.append(bytes(block).decode())
    text = "".join(lines)
    return [dict(zip(columns, line.split("\t"))) for line in text.split("\n") if line]


class _Tables:
    """What each delivery added to the logs, and the user's rows after it."""

    def __init__(self, url: str) -> None:
        self.connection = psycopg.connect(url, autocommit=True)
        self.seen = {table: 0 for table in _LOGS}

    def after(self, names: dict[str, str]) -> dict[str, list[dict[str, str]]]:
        rows = {}
        for table in _LOGS:
            found = _copy_rows(self.connection, table)
            rows[table], self.seen[table] = found[self.seen[table]:], len(found)
        rows["subscriptions"] = [r for r in _copy_rows(self.connection, "subscriptions") if r["key"] == names["key"]]
        for table in ("entitlements", "identities"):
            rows[table] = [r for r in _copy_rows(self.connection, table) if r["user_sub"] == names["user"]]
        return rows


def capture(database_url: str) -> list[Capture]:
    """Every story of ``STORIES``, each for a user of its own (a UUID, as Cognito's subs
    are), then an expiry sweep a year ahead (the entitlements still granted lapse: the
    sweep's own feed rows, kind ``sweep``), then a Google delivery while Play's API is
    down (kind ``deferred``). Leaves those rows in the database: the caller empties it."""
    from devtools.credentials import load_or_mint
    from devtools.fakes import DemoFakes
    from gateway import create_app
    from gateway.config import from_env
    from gateway.jobs.expiry import ExpirySweep

    captured: list[Capture] = []
    with tempfile.TemporaryDirectory(prefix="scale-shapes-") as folder, \
            DemoFakes(load_or_mint(Path(folder) / "credentials")) as fakes:
        app = create_app(from_env({**fakes.gateway_env(database_url), "LOG_LEVEL": "ERROR"}))
        logging.getLogger("gateway").setLevel(logging.CRITICAL)  # the deferred delivery warns, as it should
        sender, tables = InProcessSender(fakes, app.test_client()), _Tables(database_url)
        try:
            for source, stories in STORIES.items():
                for number, story in enumerate(stories):
                    digest = hashlib.sha256(f"{source}-{number}".encode()).digest()[:16]
                    names = _names(source, str(uuid.UUID(bytes=digest, version=4)))
                    for kind in story:
                        SENDERS[source](sender, kind, names["user"])
                        captured.append(Capture(source, kind, names, tables.after(names)))
            # A subscription left granting, for the sweep to report when it lapses.
            _revenuecat(sender, "purchase", str(uuid.UUID(bytes=hashlib.sha256(b"sweep").digest()[:16], version=4)))
            tables.after({"key": "", "user": ""})
            later = datetime.now(timezone.utc) + timedelta(days=400)
            ExpirySweep(app.extensions["gateway"].store, clock=lambda: later).run_once()
            captured.append(Capture("", "sweep", {}, tables.after({"key": "", "user": ""})))
            names = _names("google", str(uuid.UUID(bytes=hashlib.sha256(b"deferred").digest()[:16], version=4)))
            fakes.play.subscribe(names["key"], user=names["user"])
            fakes.play.down = True
            sender.post("google", envelope(subscription(names["key"], 4), str(secrets.randbelow(10**15))),
                        sender.push_headers(), wanted="deferred")
            captured.append(Capture("google", "deferred", names, tables.after(names)))
        finally:
            tables.connection.close()
            app.extensions["gateway"].store.close()
    return captured


if __name__ == "__main__":
    import sys

    for found in capture(sys.argv[1]):
        print(f"== {found.source} {found.kind} {found.names}")
        for table, rows in found.rows.items():
            for row in rows:
                print(f"  {table}: " + json.dumps({k: v[:200] for k, v in row.items()}))
