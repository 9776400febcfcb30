"""An in-memory store for unit tests: the same port as the SQL stores, whole-store transactions."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import threading
from datetime import datetime, timezone
from typing import Any, Iterator

from gateway.domain.changes import Transfer
from gateway.domain.deletion import PENDING, DeletedSubscription
from gateway.domain.entitlement_events import FeedEvent
from gateway.domain.entitlements import Grant
from gateway.domain.events import WAITING, Event
from gateway.domain.model import GRANTING, Status, Subscription, link_claim
from gateway.domain.unresolved import RENEWING, REVOKED_UNTIL_THE_END, UNRESOLVED

from gateway.store.port import Store, StoreUnavailable, Transaction


@dataclasses.dataclass
class _State:
    events: dict[int, Event] = dataclasses.field(default_factory=dict)
    subscriptions: dict[tuple[str, str], Subscription] = dataclasses.field(default_factory=dict)
    identities: dict[tuple[str, str], tuple[str, datetime | None]] = dataclasses.field(default_factory=dict)
    transfers: dict[tuple[str, str, datetime], Transfer] = dataclasses.field(default_factory=dict)
    entitlements: dict[str, list[Grant]] = dataclasses.field(default_factory=dict)
    event_links: set[tuple[int, str, str]] = dataclasses.field(default_factory=set)
    feed: list[FeedEvent] = dataclasses.field(default_factory=list)
    expiries_through: datetime = datetime(1970, 1, 1, tzinfo=timezone.utc)
    deleted: dict[str, dict] = dataclasses.field(default_factory=dict)
    deleted_at: dict[str, datetime] = dataclasses.field(default_factory=dict)
    deleted_accounts: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    cursors: dict[str, int] = dataclasses.field(default_factory=dict)
    deleted_subscriptions: dict[tuple[str, str], DeletedSubscription] = dataclasses.field(default_factory=dict)
    reconcile_cursors: dict[str, str] = dataclasses.field(default_factory=dict)
    checkout_sessions: dict[str, tuple[str, str, datetime]] = dataclasses.field(default_factory=dict)


class MemoryStore(Store):
    def __init__(self) -> None:
        self.state = _State()
        self.refuse_writes = False
        self._lock = threading.RLock()
        self._ids = itertools.count(1)

    @contextlib.contextmanager
    def transaction(self, readonly: bool = False) -> Iterator[Transaction]:
        if self.refuse_writes:
            raise StoreUnavailable("the in-memory store refuses writes")
        with self._lock:
            draft = copy.deepcopy(self.state)
            yield _MemoryTransaction(draft, self._ids)
            self.state = draft


class _MemoryTransaction(Transaction):
    def __init__(self, state: _State, ids) -> None:
        self.state = state
        self.ids = ids

    def record_events(self, events: list[dict[str, Any]]) -> list[Event | None]:
        return [self._record(**fields) for fields in events]

    def _record(self, *, source, event_id, event_type, received_at, payload, data,
                status="received", processed_at=None, last_error=None) -> Event | None:
        if any((e.source, e.event_id) == (source, event_id) for e in self.state.events.values()):
            return None
        event = Event(next(self.ids), source, event_id, event_type, received_at, payload, data, status,
                      attempts=0 if status == "received" else 1, last_error=last_error,
                      processed_at=processed_at)
        self.state.events[event.id] = event
        return event

    def get_event(self, event_pk: int) -> Event | None:
        return self.state.events.get(event_pk)

    def update_event(self, event_pk: int, **fields: Any) -> None:
        self.state.events[event_pk] = dataclasses.replace(self.state.events[event_pk], **fields)

    def update_claimed_event(self, event_pk: int, claim, **fields: Any) -> bool:
        event = self.state.events.get(event_pk)
        if event is None or event.status not in WAITING or event.next_attempt_at != claim:
            return False
        self.update_event(event_pk, **fields)
        return True

    def hold_event(self, event_pk: int) -> bool:
        return event_pk in self.state.events

    def claim_due_events(self, *, now, stale_before, lease_until, limit) -> list[Event]:
        due = sorted((e for e in self.state.events.values() if _due(e, now, stale_before)),
                     key=lambda e: e.id)[:limit]
        for event in due:
            self.update_event(event.id, next_attempt_at=lease_until)
        return [self.state.events[event.id] for event in due]

    def link_events(self, links: list[tuple[int, list[tuple[str, str]]]]) -> None:
        self.state.event_links.update((event_pk, source, key) for event_pk, keys in links for source, key in keys)

    def event_links(self, event_pks: list[int]) -> dict[int, list[tuple[str, str]]]:
        links: dict[int, list[tuple[str, str]]] = {pk: [] for pk in event_pks}
        for pk, source, key in sorted(self.state.event_links):
            if pk in links:
                links[pk].append((source, key))
        return links

    def events_touching(self, keys, *, before_pk=None, limit=100) -> list[Event]:
        wanted = set(keys)
        pks = {pk for pk, source, key in self.state.event_links if (source, key) in wanted
               and (before_pk is None or pk < before_pk)}
        return [self.state.events[pk] for pk in sorted(pks, reverse=True)[:limit]]

    def search_events(self, *, source=None, status=None, event_type=None, event_id=None, since=None, until=None,
                      before_pk=None, limit=50) -> list[Event]:
        wanted = {"source": source, "status": status, "event_type": event_type, "event_id": event_id}
        chosen = [e for e in self.state.events.values()
                  if all(v is None or getattr(e, k) == v for k, v in wanted.items())
                  and (since is None or e.received_at >= since) and (until is None or e.received_at < until)
                  and (before_pk is None or e.id < before_pk)]
        return sorted(chosen, key=lambda e: e.id, reverse=True)[:limit]

    def count_events(self, statuses) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for e in self.state.events.values():
            if e.status in statuses:
                counts[(e.source, e.status)] = counts.get((e.source, e.status), 0) + 1
        return counts

    def get_subscription(self, source: str, key: str) -> Subscription | None:
        return self.state.subscriptions.get((source, key))

    def save_subscriptions(self, subscriptions: list[Subscription], now: datetime) -> None:
        for subscription in subscriptions:
            snapshot = subscription.snapshot
            self.state.subscriptions[(snapshot.source, snapshot.key)] = dataclasses.replace(subscription, updated_at=now)

    def subscriptions_of_users(self, user_subs: list[str]) -> dict[str, list[Subscription]]:
        return {user_sub: [s for s in self.state.subscriptions.values() if s.owner == user_sub]
                for user_sub in user_subs}

    def lock_held_by(self, source, accounts, owners) -> list[Subscription]:
        held = [s for (src, _), s in self.state.subscriptions.items()
                if src == source and (s.snapshot.account in accounts or s.owner in owners)]
        return sorted(held, key=lambda s: s.snapshot.key)

    def subscriptions_to_reconcile(self, source, expires_from, expires_to, limit=10_000,
                                   after=None, unresolved_from=None) -> list[Subscription]:
        def wanted(s: Subscription) -> bool:
            expires = s.snapshot.expires_at
            unresolved, since = s.snapshot.status in UNRESOLVED, unresolved_from or expires_from
            renewing = s.snapshot.status == RENEWING and s.snapshot.will_renew
            return ((s.owner is None and (expires is None or expires >= expires_from))
                    or (unresolved and (expires is None or expires >= since))
                    or (renewing and expires is not None and since <= expires < expires_from)
                    or (expires is not None and expires_from <= expires <= expires_to)
                    or (source in REVOKED_UNTIL_THE_END and s.latest.status is Status.REVOKED
                        and expires is not None and expires > expires_to))
        chosen = [s for (src, key), s in sorted(self.state.subscriptions.items())
                  if src == source and (after is None or key > after) and wanted(s)]
        return chosen[:limit]

    def reconcile_cursor(self, source):
        return self.state.reconcile_cursors.get(source)

    def move_reconcile_cursor(self, source, last_key, now) -> None:
        self.state.reconcile_cursors[source] = last_key

    def resolve(self, source: str, account: str) -> str | None:
        user_sub, _ = self.state.identities.get((source, account), (None, None))
        return user_sub

    def link(self, source: str, account: str, user_sub: str, as_of, now: datetime) -> str | None:
        held = self.state.identities.get((source, account))
        if user_sub in self.state.deleted:
            return held[0] if held else None
        if held is None or link_claim(as_of, user_sub) > link_claim(held[1], held[0]):
            self.state.identities[(source, account)] = (user_sub, as_of)
            return user_sub
        return held[0]

    def record_transfer(self, transfer: Transfer, now: datetime) -> None:
        for account in transfer.from_accounts:
            key = (transfer.source, account, transfer.as_of)
            held = self.state.transfers
            if key not in held or link_claim(transfer.as_of, transfer.to_user) > link_claim(transfer.as_of,
                                                                                           held[key].to_user):
                self.state.transfers[key] = dataclasses.replace(transfer, from_accounts=(account,))

    def transfers_from(self, source: str, accounts: list[str]) -> list[Transfer]:
        return [transfer for (src, account, _), transfer in sorted(self.state.transfers.items(), key=str)
                if src == source and account in accounts]

    def lock_users(self, user_subs: list[str]) -> None:
        pass  # the whole store is locked for the transaction

    def replace_entitlements_of(self, grants: dict[str, list[Grant]], now: datetime) -> None:
        for user_sub, granted in grants.items():
            self.state.entitlements[user_sub] = list(granted)

    def entitlements_of(self, user_sub: str) -> list[Grant]:
        return list(self.state.entitlements.get(user_sub, []))

    def read_entitlements(self, user_subs):
        return ({user_sub: self.entitlements_of(user_sub) for user_sub in user_subs},
                set(user_subs) & set(self.state.deleted))

    def take_feed_positions(self, count: int):
        return len(self.state.feed), self.state.expiries_through

    def append_feed(self, events, expiries_through=None) -> None:
        self.state.feed.extend(events)
        if expiries_through is not None:
            self.state.expiries_through = expiries_through

    def read_feed(self, after: int, limit: int, user_sub=None):
        chosen = [e for e in self.state.feed if e.position > after and user_sub in (None, e.user_id)]
        return chosen[:limit]

    def said_inactive(self, pairs):
        last = {(e.user_id, e.entitlement): e for e in self.state.feed if e.entitlement is not None}
        return {pair for pair in pairs if pair in last and not (last[pair].after or {}).get("active")}

    def lapsed_grants(self, after, through, limit):
        found = sorted((g.expires_at, user_sub) for user_sub, granted in self.state.entitlements.items()
                       for g in granted
                       if g.status in GRANTING and g.expires_at is not None and after < g.expires_at <= through)
        return [(user_sub, end) for end, user_sub in found][:limit]

    def feed_pruned_through(self) -> int:
        return 0

    def feed_head(self):
        return len(self.state.feed), self.state.expiries_through

    def mark_deleted(self, user_sub, report, now):
        if user_sub in self.state.deleted:
            return self.state.deleted[user_sub]
        self.state.deleted[user_sub], self.state.deleted_at[user_sub] = report, now
        return None

    def deletion_report(self, user_sub):
        return self.state.deleted.get(user_sub)

    def deleted_at(self, user_sub):
        return self.state.deleted_at.get(user_sub)

    def identities_of(self, user_sub):
        return sorted(key for key, (owner, _) in self.state.identities.items() if owner == user_sub)

    def unlink_user(self, user_sub) -> None:
        for key in self.identities_of(user_sub):
            del self.state.identities[key]

    def keep_accounts(self, user_sub, accounts) -> None:
        for account in accounts:
            self.state.deleted_accounts.setdefault(account, user_sub)

    def deleted_among(self, user_subs):
        return {user_sub for user_sub in user_subs if user_sub in self.state.deleted}

    def deleted_accounts(self, accounts):
        return {a: self.state.deleted_accounts[a] for a in accounts
                if a in self.state.deleted_accounts and a not in self.state.identities}

    def note_deleted_subscriptions(self, rows) -> None:
        for row in rows:
            self.state.deleted_subscriptions.setdefault((row.source, row.key), row)

    def note_bought_again(self, rows) -> None:
        for row in rows:
            if self.state.deleted_subscriptions[(row.source, row.key)].outcome != PENDING:
                self.state.deleted_subscriptions[(row.source, row.key)] = row

    def deleted_subscription_keys(self, user_subs):
        return {key for key, row in self.state.deleted_subscriptions.items() if row.user_sub in user_subs}

    def deleted_subscriptions_of(self, user_sub):
        return [row for _, row in sorted(self.state.deleted_subscriptions.items()) if row.user_sub == user_sub]

    def claim_late_purchases(self, now, lease_until, limit):
        due = sorted((row for row in self._unleased(now) if row.next_attempt_at <= now),
                     key=lambda row: (row.next_attempt_at, row.source, row.key))[:limit]
        return self._lease(due, lease_until)

    def claim_late_purchases_of(self, user_sub, now, lease_until):
        return self._lease(sorted((row for row in self._unleased(now) if row.user_sub == user_sub),
                                  key=lambda row: (row.source, row.key)), lease_until)

    def _unleased(self, now):
        return [row for row in self.state.deleted_subscriptions.values()
                if row.outcome == PENDING and (row.leased_until is None or row.leased_until <= now)]

    def _lease(self, rows, lease_until):
        leased = [dataclasses.replace(row, leased_until=lease_until) for row in rows]
        self.state.deleted_subscriptions.update(((row.source, row.key), row) for row in leased)
        return leased

    def settle_late_purchase(self, row, outcome, attempts, next_attempt_at, last_error) -> bool:
        held = self.state.deleted_subscriptions.get((row.source, row.key))
        if held is None or held.outcome != PENDING or held.leased_until != row.leased_until:
            return False
        self.state.deleted_subscriptions[(row.source, row.key)] = dataclasses.replace(
            held, outcome=outcome, attempts=attempts, next_attempt_at=next_attempt_at, last_error=last_error,
            leased_until=None)
        return True

    def note_checkout_session(self, user_sub, session_id, customer, now, forget_before) -> None:
        self.state.checkout_sessions = {session: held for session, held in self.state.checkout_sessions.items()
                                        if held[0] != user_sub or held[2] >= forget_before}
        self.state.checkout_sessions.setdefault(session_id, (user_sub, customer, now))

    def checkout_sessions_of(self, user_sub, since):
        return {session: customer for session, (user, customer, at) in self.state.checkout_sessions.items()
                if user == user_sub and at >= since}

    def forget_checkout_sessions(self, user_sub) -> None:
        self.state.checkout_sessions = {session: held for session, held in self.state.checkout_sessions.items()
                                        if held[0] != user_sub}

    def events_naming(self, text, after_pk, limit):
        return [e for pk, e in sorted(self.state.events.items()) if pk > after_pk and text in e.payload][:limit]

    def rewrite_event(self, event_pk, payload, data) -> None:
        self.update_event(event_pk, payload=payload, data=data)

    def feed_cursor(self, name):
        return self.state.cursors.get(name)

    def move_feed_cursor(self, name, position, now) -> None:
        self.state.cursors[name] = position


def _due(event: Event, now: datetime, stale_before: datetime) -> bool:
    if event.status == "deferred":
        return event.next_attempt_at is None or event.next_attempt_at <= now
    if event.status == "received":
        leased = event.next_attempt_at is not None and event.next_attempt_at > now
        return event.received_at < stale_before and not leased
    return False
