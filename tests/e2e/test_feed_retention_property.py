"""A property of the feed's retention (FEED_RETENTION_DAYS), driven through the real app:
whatever entitlement changes, clock advances, prunes, webhook rounds against a receiver
that fails at will, endpoints switched off and on, gaps skipped and readers paging with
their own cursors come in whatever order,

- a reader following ``next`` of ``GET /v1/events`` gets every event in order, or 410
  ``cursor_expired`` exactly when events after its cursor were deleted: never a gap;
- a webhook endpoint is sent, for each user in feed order, a prefix of the events fanned
  out to it: none deleted before it was delivered (a failed one is kept for the replay),
  none passed over; switched off while the feed was pruned past it, it sends nothing new
  until ``flask webhooks skip-gap``, which reports the gap the feed's 410 shows;
- the prune keeps the newest event, the young ones and what a webhook still owes.

The oracle is its own: an archivist reads the feed after every change, before any prune
may run, so it holds every event ever written, and what is kept is read from the table
with plain SQL. It shares no code with ``gateway/``. One rule prunes in the middle of a
reader's page (an engine listener runs a prune right after the page's first SELECT): on
PostgreSQL a read's statements each see the latest commit, so the order in which the
page reads the events and the highest position pruned matters there.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from devtools import revenuecat as rc
from gateway import create_app
from gateway.config import from_env
from gateway.jobs.expiry import ExpirySweep
from gateway.jobs.retention import Pruner
from gateway.outbound import endpoints as outbound_endpoints
from gateway.outbound.worker import Deliverer
from gateway.store.outbox import Outbox
from gateway.store.retention import Retention
from tests.conftest import DATABASE
from tests.e2e.conftest import API_KEY
from tests.support.webhook_receiver import Receiver, secret

KEY = {"Authorization": f"Bearer {API_KEY}"}
FEED_DAYS, EVENTS_DAYS = 7, 31
USERS = ("user-a", "user-b", "user-c")
NAMES = ("steady", "fickle")
EXAMPLES = int(os.environ.get("FEED_PROPERTY_EXAMPLES", "25"))
STEPS = int(os.environ.get("FEED_PROPERTY_STEPS", "50"))
#: FEED_PROPERTY_SHRINK=0: report the first failure as found (a quick check of a mutation).
PHASES = tuple(Phase) if os.environ.get("FEED_PROPERTY_SHRINK", "1") != "0" else (Phase.explicit, Phase.generate)


def fresh_database(template: str, folder, number: int) -> str:
    """An empty migrated database for one example (``tests/conftest.py``'s, per example)."""
    if DATABASE == "postgresql":
        engine = sa.create_engine(template)
        with engine.begin() as connection:
            names = ", ".join(row[0] for row in connection.execute(sa.text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename <> 'alembic_version'")))
            connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY"))
        engine.dispose()
        return template
    path = folder / f"example-{number}.db"
    shutil.copy(template.removeprefix("sqlite:///"), path)
    return f"sqlite:///{path}"


class Endpoint:
    """What the oracle knows of one webhook endpoint: whether it is on, the feed position it
    has been fanned out through, what was fanned out to it and what an operator skipped."""

    def __init__(self, name: str, receiver: Receiver) -> None:
        self.name, self.receiver = name, receiver
        self.enabled, self.position = True, 0
        self.owed: list[int] = []  # positions fanned out to it, in order
        self.skipped: set[int] = set()

    def delivered(self) -> list[int]:
        """Positions its receiver took, in the order first taken."""
        seen: list[int] = []
        for body in self.receiver.accepted():
            if int(body["position"]) not in seen:
                seen.append(int(body["position"]))
        return seen


class FeedRetention(RuleBasedStateMachine):
    context: dict = {}

    @initialize()
    def start(self):
        context = self.context
        context["number"] = context.get("number", 0) + 1
        url = fresh_database(context["template"], context["folder"], context["number"])
        self.receivers = context["receivers"]
        for receiver in self.receivers.values():
            with receiver.lock:
                receiver.attempts.clear()
            receiver.answer = lambda body: "ok"
        self.configured = [{"name": name, "url": r.url, "secrets": r.secrets} for name, r in self.receivers.items()]
        self.app = create_app(from_env({
            "DATABASE_URL": url, "GATEWAY_API_KEYS": API_KEY, "REVENUECAT_WEBHOOK_AUTH": rc.AUTH,
            "OUTBOUND_WEBHOOKS": json.dumps(self.configured), "OUTBOUND_ALLOW_PRIVATE_TARGETS": "true",
            "OUTBOUND_TIMEOUT_SECONDS": "1", "FEED_RETENTION_DAYS": str(FEED_DAYS),
            "EVENTS_RETENTION_DAYS": str(EVENTS_DAYS)}))
        self.app.config["TESTING"] = True
        self.client = self.app.test_client()
        self.store = self.app.extensions["gateway"].store
        self.engine = sa.create_engine(url)  # the oracle's own look at what is kept
        self.now = datetime.now(timezone.utc)
        self.stamp_ms = int(time.time() * 1000)
        self.generation = dict.fromkeys(USERS, 0)
        self.archive: list[dict] = []  # every event ever written, by position - 1
        self.readers: list[dict] = [{"cursor": None, "seen": []} for _ in range(3)]
        self.endpoints = {name: Endpoint(name, r) for name, r in self.receivers.items()}
        self.deliverer = self._deliverer()
        assert self.deliverer.run_once(self.now) == 0  # both start at the (empty) head

    def teardown(self):
        if not hasattr(self, "app"):
            return
        try:
            self._drain()
        finally:
            self.store.close()
            self.engine.dispose()

    # The oracle's view ----------------------------------------------------------------
    def kept(self) -> set[int]:
        with self.engine.connect() as connection:
            return set(connection.execute(sa.text("SELECT position FROM entitlement_events")).scalars())

    def pruned(self, kept: set[int] | None = None) -> int:
        """The highest position deleted (0: none)."""
        kept = self.kept() if kept is None else kept
        return max((p for p in range(1, len(self.archive) + 1) if p not in kept), default=0)

    def _read(self, **query):
        return self.client.get("/v1/events", query_string=query, headers=KEY)

    def _archive_new(self):
        """The archivist: reads on from the head it holds; it is never behind (the newest
        event is never deleted, and it reads after every change)."""
        while True:
            answer = self._read(after=len(self.archive), limit=1000)
            assert answer.status_code == 200, answer.get_data(as_text=True)
            found = answer.get_json()["events"]
            for event in found:
                assert int(event["position"]) == len(self.archive) + 1, (event, len(self.archive))
                assert event["id"] not in {e["id"] for e in self.archive}
                self.archive.append(event)
            if not answer.get_json()["has_more"]:
                return

    def _deliverer(self) -> Deliverer:
        on = [item for item in self.configured if self.endpoints[item["name"]].enabled]
        return Deliverer(Outbox.of(self.store), outbound_endpoints.parse(json.dumps(on), allow_private=True),
                         allow_private=True, timeout=1.0)

    # Entitlement changes ----------------------------------------------------------------
    def _send(self, kind: str, user: str, **fields):
        self.stamp_ms = max(self.stamp_ms + 1000, int(self.now.timestamp() * 1000))
        if kind == "INITIAL_PURCHASE":
            self.generation[user] += 1
        evt = rc.event(kind, user, at_ms=self.stamp_ms, transaction=f"t-{user}-{self.generation[user]}", **fields)
        answer = self.client.post("/webhooks/revenuecat", data=rc.body(evt), headers={"Authorization": rc.AUTH})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        self._archive_new()

    @rule(changes=st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(
        ["INITIAL_PURCHASE", "INITIAL_PURCHASE", "RENEWAL", "EXPIRATION", "refund"])), min_size=1, max_size=4))
    def change(self, changes):
        for user, kind in changes:
            if kind == "refund":
                self._send("CANCELLATION", user, cancel_reason="CUSTOMER_SUPPORT")
            else:
                self._send(kind, user)

    @rule()
    def expiry_sweep(self):
        """The worker's sweep reports what lapsed by the clock (and moves the mark the
        prune keeps what came after)."""
        ExpirySweep(self.store, clock=lambda: self.now).run_once()
        self._archive_new()

    # Time and retention -------------------------------------------------------------------
    @rule(hours=st.sampled_from([1, 30, 24 * 4, 24 * 8, 24 * 40]))
    def advance(self, hours):
        self.now += timedelta(hours=hours)

    @rule(batch=st.integers(1, 4), batches=st.sampled_from([1, 2, None]))
    def prune(self, batch, batches):
        self._prune(batch, batches)

    @rule(batch=st.integers(1, 4), user=st.sampled_from(USERS))
    def time_passes_and_the_retention_runs(self, batch, user):
        """What makes a prune delete, in one step (the rules one by one seldom line it up:
        in ten examples none deleted anything): the webhooks sent, the clock past
        FEED_RETENTION_DAYS, a change (so the old events are not the newest), a prune."""
        self.worker_turn()
        self.advance(24 * (FEED_DAYS + 1))
        self._send("RENEWAL", user)
        self._prune(batch, None)

    def _prune(self, batch, batches):
        before = self.kept()
        Pruner(Retention.of(self.store), EVENTS_DAYS, feed_days=FEED_DAYS, clock=lambda: self.now, batch=batch,
               max_batches=batches or 10_000).run_once()
        self._check_kept(before, self.kept())

    def _check_kept(self, before: set[int], after: set[int]):
        assert after <= before, "a pruned event came back"
        if after != before:
            event("a prune deleted events")
        if not self.archive:
            return
        head = len(self.archive)
        assert head in after, "the newest event was deleted"
        cutoff = self.now - timedelta(days=FEED_DAYS)
        young = [p for p in range(1, head + 1) if datetime.fromisoformat(
            self.archive[p - 1]["occurred_at"].replace("Z", "+00:00")) >= cutoff]
        must = set(range(young[0], head + 1)) if young else set()
        for endpoint in self.endpoints.values():
            if endpoint.enabled:
                must |= {p for p in before if p > endpoint.position}  # not fanned out yet
            delivered = set(endpoint.delivered())
            for p in endpoint.owed:
                if p not in delivered:  # still owed: it and the user's later events stay
                    user = self.archive[p - 1]["user_id"]
                    must |= {q for q in before if q >= p and self.archive[q - 1]["user_id"] == user}
        lost = sorted(must - after)
        assert not lost, f"the prune deleted events it promises to keep: {lost}"

    # Pull readers -------------------------------------------------------------------------
    @rule(reader=st.integers(0, 2), limit=st.integers(1, 5), from_newest=st.booleans())
    def read(self, reader, limit, from_newest):
        self._page(self.readers[reader], limit, from_newest)

    @precondition(lambda self: self.archive)
    @rule(reader=st.integers(0, 2), limit=st.integers(1, 5), batch=st.integers(1, 4), from_newest=st.booleans())
    def read_while_pruning(self, reader, limit, batch, from_newest):
        """A prune commits right after the page's first read of the feed (its events, or the
        highest position pruned), before the rest of its read."""
        armed = {"on": True, "before": None}

        def prune_now(connection, cursor, statement, parameters, context, executemany):
            if armed["on"] and statement.lstrip().upper().startswith("SELECT") \
                    and ("FROM entitlement_events" in statement or "FROM feed_retention" in statement):
                armed["on"] = False
                armed["before"] = self.kept()
                Pruner(Retention.of(self.store), 0, feed_days=FEED_DAYS, clock=lambda: self.now, batch=batch,
                       max_batches=10_000).run_once()

        sa.event.listen(self.store.engine, "after_cursor_execute", prune_now)
        try:
            self._page(self.readers[reader], limit, from_newest, racing=True)
        finally:
            sa.event.remove(self.store.engine, "after_cursor_execute", prune_now)
        if armed["before"] is not None:
            if self.kept() != armed["before"]:
                event("a prune committed in the middle of a page")
            self._check_kept(armed["before"], self.kept())

    @precondition(lambda self: self.archive)
    @rule(offset=st.sampled_from([-1, 0, 1]), limit=st.integers(1, 3))
    def read_at_the_edge_of_the_prune(self, offset, limit):
        """A reader whose cursor sits right at the edge of what the retention deleted: one
        below the highest position pruned must get 410 (the next event is gone), at it or
        above it the events, without a gap. Readers following ``next`` land there seldom."""
        cursor = self.pruned() + offset
        if 0 <= cursor <= len(self.archive):
            event(f"a reader at the prune's edge {offset:+d}")
            self._page({"cursor": cursor, "seen": []}, limit, from_newest=True)

    def _page(self, reader: dict, limit: int, from_newest: bool, racing: bool = False):
        """One page; ``racing``: a prune may commit during it, so it may answer as before
        the prune or as after it, but never with a gap."""
        head, cursor, pruned_before = len(self.archive), reader["cursor"], self.pruned()
        answer = self._read(limit=limit) if cursor is None else self._read(after=cursor, limit=limit)
        pruned = self.pruned()
        body = answer.get_json()
        if answer.status_code == 410:
            assert cursor is not None, "a read without a cursor answered 410"
            event("a reader got 410")
            assert cursor < pruned, f"410 at {cursor} though nothing after it was deleted (through {pruned})"
            # Racing, the page may answer as the feed was before the prune (SQLite reads one snapshot).
            oldest = {str(pruned_before), str(pruned)} if racing else {str(pruned)}
            assert body["error"] == "cursor_expired" and body["oldest"] in oldest and body["newest"] == str(head), \
                (body, oldest, head)
            assert cursor < int(body["oldest"]), body
            # The reader resyncs its users' entitlements, then reads on from newest (or from the oldest kept).
            reader["cursor"] = head if from_newest else None
            reader["seen"].append(("resynced", cursor, head))
            return
        assert answer.status_code == 200, answer.get_data(as_text=True)
        if cursor is None:
            starts = {pruned_before, pruned} if racing else {pruned}
            start = int(body["events"][0]["position"]) - 1 if body["events"] else int(body["next"])
            assert start in starts, f"a read without a cursor started after {start}, not after {starts}"
        else:
            start = cursor
            if not racing:
                assert cursor >= pruned, f"cursor {cursor} read on past events deleted through {pruned}: a gap"
        expected = self.archive[start:min(start + limit, head)]
        got = body["events"]
        assert [(e["position"], e["id"]) for e in got] == [(e["position"], e["id"]) for e in expected], \
            f"after {start} (limit {limit}) the feed gave {[e['position'] for e in got]}: a gap"
        assert got == expected
        assert body["next"] == (got[-1]["position"] if got else str(start))
        assert body["has_more"] == (len(got) == limit)
        reader["cursor"] = int(body["next"])
        reader["seen"].extend(int(e["position"]) for e in got)

    # Outgoing webhooks ---------------------------------------------------------------------
    @rule(name=st.sampled_from(NAMES))
    def switch(self, name):
        """A restart with the endpoint taken out of OUTBOUND_WEBHOOKS, or put back."""
        self.endpoints[name].enabled = not self.endpoints[name].enabled
        self.deliverer = self._deliverer()
        self.deliverer.sync()

    @rule(failing=st.sampled_from([(), ("fickle",), ("steady", "fickle")]))
    def worker_turn(self, failing=()):
        """One turn of the worker's sending; the receivers named answer 500."""
        for name, receiver in self.receivers.items():
            receiver.answer = (lambda body: 500) if name in failing else (lambda body: "ok")
        pruned = self.pruned()
        for endpoint in self.endpoints.values():
            if endpoint.enabled and endpoint.position >= pruned:  # behind the feed: fans out nothing
                endpoint.owed += [p for p in range(endpoint.position + 1, len(self.archive) + 1)]
                endpoint.position = len(self.archive)
        self.deliverer.run_once(self.now)

    @rule()
    def replay_failed(self):
        self._cli("webhooks", "replay", "--failed")

    @rule(name=st.sampled_from(NAMES))
    def skip_gap(self, name):
        """The operator resynced the receiver; the gap reported is the one the feed's 410 shows."""
        endpoint, pruned = self.endpoints[name], self.pruned()
        out = self._cli("webhooks", "skip-gap", name)
        if endpoint.position < pruned:
            event("an endpoint behind the feed skipped its gap")
            assert self._read(after=endpoint.position).status_code == 410
            assert f"skipped the events after {endpoint.position} through {pruned};" in out, out
            endpoint.skipped |= set(range(endpoint.position + 1, pruned + 1))
            endpoint.position = pruned
        else:
            assert "nothing skipped" in out, out

    def _cli(self, *args) -> str:
        result = self.app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, result.output
        return result.output

    @invariant()
    def webhooks_send_each_user_a_prefix_of_what_was_fanned_out(self):
        if not hasattr(self, "app"):
            return
        for endpoint in self.endpoints.values():
            taken = endpoint.receiver.accepted()
            for body in taken:
                assert body == self.archive[int(body["position"]) - 1], f"{endpoint.name} was sent {body}"
            by_user_owed, by_user_sent = defaultdict(list), defaultdict(list)
            for p in endpoint.owed:
                by_user_owed[self.archive[p - 1]["user_id"]].append(p)
            for p in endpoint.delivered():
                by_user_sent[self.archive[p - 1]["user_id"]].append(p)
            for user, sent in by_user_sent.items():
                assert sent == by_user_owed[user][:len(sent)], \
                    f"{endpoint.name} sent {user} {sent}, not a prefix of {by_user_owed[user]}: a gap or disorder"

    def _drain(self):
        """At the end: receivers answer, the operator replays and skips, the worker runs
        until nothing is due; then every enabled endpoint was sent every event it owes."""
        for receiver in self.receivers.values():
            receiver.answer = lambda body: "ok"
        self.replay_failed()
        for endpoint in self.endpoints.values():
            if endpoint.enabled:
                self.skip_gap(endpoint.name)
        for _ in range(20):
            self.now += timedelta(days=1)
            self.worker_turn()
            if self.deliverer.run_once(self.now) == 0:
                break
        self.webhooks_send_each_user_a_prefix_of_what_was_fanned_out()
        for endpoint in self.endpoints.values():
            if endpoint.enabled:
                assert sorted(endpoint.delivered()) == endpoint.owed, endpoint.name
                assert set(endpoint.owed) | endpoint.skipped >= set(range(1, len(self.archive) + 1)), endpoint.name
        self._prune_deletes_what_no_one_needs()

    def _prune_deletes_what_no_one_needs(self):
        """The other half of the retention: every check above holds for a prune that deletes
        nothing. With the sweep's mark now, everything sent and the clock past
        FEED_RETENTION_DAYS, a prune deletes each event before the first young one and the
        newest, but what a webhook still owes a user (and that user's later events)."""
        self.now += timedelta(days=FEED_DAYS + 1)
        ExpirySweep(self.store, clock=lambda: self.now).run_once()
        self._send("RENEWAL", USERS[0])
        for _ in range(20):
            self.worker_turn()
            if self.deliverer.run_once(self.now) == 0:
                break
        self._prune(4, None)
        cutoff, head = self.now - timedelta(days=FEED_DAYS), len(self.archive)
        # The change above may show nothing new (no event): then only the newest stays.
        young = next((p for p in range(1, head + 1) if datetime.fromisoformat(
            self.archive[p - 1]["occurred_at"].replace("Z", "+00:00")) >= cutoff), head)
        may_go = set(range(1, min(young, head)))
        for endpoint in self.endpoints.values():
            delivered = set(endpoint.delivered())
            for p in endpoint.owed:
                if p not in delivered:
                    user = self.archive[p - 1]["user_id"]
                    may_go -= {q for q in range(p, head + 1) if self.archive[q - 1]["user_id"] == user}
        left = sorted(may_go & self.kept())
        assert not left, f"the prune kept events no one needs, past FEED_RETENTION_DAYS: {left}"


@pytest.fixture
def receivers():
    made = {name: Receiver([secret()]).start() for name in NAMES}
    yield made
    for receiver in made.values():
        receiver.stop()


def test_no_reader_and_no_webhook_passes_over_a_pruned_event(_migrated_url, tmp_path, receivers):
    FeedRetention.context = {"template": _migrated_url, "folder": tmp_path, "receivers": receivers}
    run_state_machine_as_test(FeedRetention, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=True, phases=PHASES,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]))
