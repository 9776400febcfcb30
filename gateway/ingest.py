"""The one use case of a webhook: verify, record, apply, answer.

Transaction boundaries. A provider whose deliveries carry their whole truth
(``translates_offline``) is recorded, applied and marked processed in ONE transaction:
either all of it commits or none of it does. If that transaction fails, the delivery
takes the two-step path below, so a failure to apply still leaves it recorded.

Two steps, for the rest (and as the fallback): recording is a transaction of its own,
committed before anything else, so a delivery we answer 200 for is never lost.
Translating may call a store's API and so runs outside any transaction. Applying and
marking the event processed commit together; if applying fails, a separate transaction
marks the event ``deferred`` with its error for the retry worker.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from gateway import logs, metrics
from gateway.apply import Changes, apply_translation, reading_again
from gateway.clock import backoff, utcnow
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Translation
from gateway.domain.entitlement_events import Cause
from gateway.domain.events import Event
from gateway.errors import Malformed, Unavailable
from gateway.group_commit import GroupCommit, Slot
from gateway.providers import Delivery, Lookup, Provider
from gateway.storable import clean, storable
from gateway.store.port import Store, StoreRefused, StoreUnavailable

log = logging.getLogger("gateway.ingest")

PROCESSED, DUPLICATE, IGNORED, DEFERRED, FAILED = "processed", "duplicate", "ignored", "deferred", "failed"
#: A replayed delivery the retention deleted after the replay read it: nothing was applied.
GONE = "gone"
#: The retry worker took the delivery over (``Ingest.process``): it applies it, not this call.
TAKEN_OVER = "taken over"


class _Gone(Exception):
    """Raised inside a replay's transaction to roll it back: its event was pruned."""


class _TakenOver(Exception):
    """Raised inside a transaction to roll it back: another process holds the event's claim."""


class StoreLookup(Lookup):
    def __init__(self, store: Store) -> None:
        self.store = store

    def subscription(self, source, key):
        with self.store.transaction(readonly=True) as tx:
            return tx.get_subscription(source, key)

    def resolve(self, source, account):
        with self.store.transaction(readonly=True) as tx:
            return tx.resolve(source, account)


class Ingest:
    def __init__(self, store: Store, catalog: Catalog, clock: Callable[[], datetime] = utcnow,
                 max_attempts: int = 15, give_up_after: timedelta = timedelta(days=3)) -> None:
        self.store = store
        # An event is failed after max_attempts AND give_up_after since it arrived: a store
        # outage of a day or two (or credentials set late) is waited out, as the stores wait
        # for us; Google refunds a purchase not acknowledged within three days.
        self.max_attempts, self.give_up_after = max_attempts, give_up_after
        self.catalog = catalog
        self.clock = clock
        self.lookup = StoreLookup(store)
        self.group = GroupCommit(self._commit_together)

    def receive(self, provider: Provider, body: bytes, headers: Mapping[str, str]) -> str:
        started = time.perf_counter()
        delivery = storable(provider.verify(body, headers))
        outcome = None
        if getattr(provider, "translates_offline", False):
            outcome = self._record_and_apply(provider, delivery)
        if outcome is None:
            event = self._record(delivery)
            outcome = DUPLICATE if event is None else self.process(provider, event, claimed=True)
            # Recorded, and applied or to be applied by the retry worker that took it over.
            outcome = DEFERRED if outcome == TAKEN_OVER else outcome
        log.info("delivery", extra={"fields": {
            "source": delivery.source, "event_id": delivery.event_id, "type": delivery.event_type,
            "outcome": outcome, "ms": round((time.perf_counter() - started) * 1000, 1), "users": logs.take_users()}})
        metrics.observe_delivery(delivery.source, delivery.event_type, outcome, time.perf_counter() - started)
        return outcome

    def _record(self, delivery: Delivery) -> Event | None:
        try:
            with self.store.transaction() as tx:
                (event,) = tx.record_events([dict(
                    source=delivery.source, event_id=delivery.event_id,
                    event_type=delivery.event_type, received_at=self.clock(),
                    payload=delivery.payload, data=delivery.data,
                )])
                return event
        except StoreUnavailable as exc:
            log.warning("could not record delivery", extra={"fields": {
                "source": delivery.source, "event_id": delivery.event_id, "error": str(exc)}})
            raise Unavailable("the event could not be stored; retry later", code="store_unavailable") from exc

    def _record_and_apply(self, provider: Provider, delivery: Delivery) -> str | None:
        """The one-transaction path; ``None`` when it failed and nothing was committed.

        Deliveries arriving together in this process share the transaction (group
        commit, ``gateway/group_commit.py``): under load one commit serves many.
        """
        now = self.clock()
        try:
            # Translated first (it needs nothing from the store), so the event row is
            # written once with its outcome; a duplicate changes nothing.
            translation = delivery.translation or provider.translate(_unrecorded(delivery, now), self.lookup)
        except Exception:
            log.info("translating before recording failed; recording first", exc_info=True,
                     extra={"fields": {"source": delivery.source, "event_id": delivery.event_id}})
            return None
        outcome, users = self.group.submit(_Pending(delivery, translation, now))
        logs.note_users(users)
        return outcome

    def _commit_together(self, slots: list[Slot]) -> None:
        """Record and apply a batch of deliveries in one transaction; should it fail,
        each alone in its own, so one bad delivery cannot hold back the others."""
        if len(slots) > 1:
            try:
                answers = self._record_and_apply_all([slot.item for slot in slots])
            except Exception:
                log.info("applying deliveries together failed; applying each alone", exc_info=True,
                         extra={"fields": {"deliveries": len(slots)}})
            else:
                for slot, answer in zip(slots, answers):
                    slot.done(answer)
                return
        for slot in slots:
            pending = slot.item
            try:
                slot.done(self._record_and_apply_all([pending])[0])
            except Exception:  # rolled back whole: the two-step path records it, then defers
                log.info("one-transaction apply failed; recording first", exc_info=True, extra={"fields": {
                    "source": pending.delivery.source, "event_id": pending.delivery.event_id}})
                slot.done((None, ()))

    def _record_and_apply_all(self, batch: list[_Pending]) -> list[tuple[str, tuple[str, ...]]]:
        """(outcome, users) for each delivery, all committed in one transaction."""
        answers: list[tuple[str, tuple[str, ...]]] = []
        with self.store.transaction() as tx:
            # Which deliveries were recorded is read once the locks below were waited for:
            # they are taken whatever it says, so its answer comes with theirs.
            recorded = tx.record_events_later([dict(
                source=p.delivery.source, event_id=p.delivery.event_id, event_type=p.delivery.event_type,
                received_at=p.now, payload=p.delivery.payload, data=p.delivery.data,
                status=IGNORED if p.translation.is_empty else PROCESSED, processed_at=p.now,
                last_error=p.translation.ignored_reason) for p in batch])
            changes = Changes(tx, self.catalog, max(p.now for p in batch))
            if not any(p.translation.links or p.translation.transfers for p in batch):
                # Every account, then every subscription, of the batch locked in one
                # ordered call each (with links or transfers, each delivery locks in the
                # order it would alone).
                changes.lock(p.translation for p in batch)
            events, evidence = recorded(), []
            for pending, event in zip(batch, events):
                if event is None:
                    answers.append((DUPLICATE, ()))
                    continue
                users, touched = changes.apply(pending.translation, _cause(pending.delivery), event)
                evidence.append((event.id, sorted(touched)))
                answers.append((event.status, tuple(sorted(users))))
            changes.finish()
            tx.link_events(evidence)
        return answers

    def process(self, provider: Provider, event: Event, replaying: bool = False, claimed: bool = False) -> str:
        """Translate and apply a recorded event; also the retry worker's and a replay's entry
        point (``replaying``: an event read earlier, which the retention may have deleted
        since; a delivery just recorded is younger than any retention).

        ``claimed``: the caller holds the event's claim, its ``next_attempt_at`` as read:
        none for the request that recorded it, the lease the retry worker set. The worker
        takes over a delivery it finds abandoned (a request still at work after
        ``EVENTS_STALE_AFTER_SECONDS``: gunicorn never kills a thread) or an expired lease by
        leasing it anew; from then on the caller that lost the claim commits nothing, so
        a delivery is applied and marked by one process (``TAKEN_OVER``). A replay by hand
        holds no claim and applies the event whatever its state."""
        attempts = event.attempts + 1
        claim = _Claim(event.next_attempt_at) if claimed else None
        try:
            # Translated again while a store's state it read is older than one stored meanwhile.
            outcome, users = reading_again(lambda: self._apply_once(provider, event, attempts, replaying, claim))
        except _Gone:
            log.info("replayed delivery no longer in the log", extra={"fields": {"event_id": event.event_id}})
            return GONE
        except _TakenOver:
            log.info("delivery taken over by the retry worker", extra={"fields": {"event_id": event.event_id}})
            return TAKEN_OVER
        except Malformed as exc:
            self._mark(event, claim, FAILED, attempts, f"malformed: {exc.message}")
            raise
        except StoreRefused as exc:  # no retry can change what the database refuses: failed now
            self._mark(event, claim, FAILED, attempts, f"refused by the database: {exc}")
            raise Malformed(f"the database refused the delivery: {exc}", code="store_refused") from exc
        except Exception as exc:  # anything else is retried: the event log is our inbox
            return self._defer(event, claim, attempts, exc)
        log.debug("applied", extra={"fields": {"event_id": event.event_id, "users": sorted(users)}})
        return outcome

    def _defer(self, event: Event, claim: _Claim | None, attempts: int, exc: Exception) -> str:
        exhausted = attempts >= self.max_attempts and self.clock() - event.received_at >= self.give_up_after
        outcome = FAILED if exhausted else DEFERRED
        retry_at = self.clock() + backoff(attempts) if outcome == DEFERRED else None
        if not self._mark(event, claim, outcome, attempts, _error_text(exc), retry_at):
            return TAKEN_OVER
        log.warning("applying failed", extra={"fields": {
            "source": event.source, "event_id": event.event_id, "outcome": outcome,
            "attempts": attempts, "error": _error_text(exc)}})
        return outcome

    def _apply_once(self, provider: Provider, event: Event, attempts: int, replaying: bool,
                    claim: _Claim | None) -> tuple[str, set[str]]:
        translation = provider.translate(event, self.lookup)
        now = self.clock()
        with self.store.transaction() as tx:
            touched: set[tuple[str, str]] = set()
            users = logs.note_users(apply_translation(tx, translation, self.catalog, now, touched, _cause(event), event))
            outcome = IGNORED if translation.is_empty else PROCESSED
            marked = dict(status=outcome, attempts=attempts, processed_at=now,
                          last_error=translation.ignored_reason, next_attempt_at=None)
            # The event row after the users' locks, as a foreign key would.
            if claim is not None:
                if not tx.update_claimed_event(event.id, claim.held, **marked):
                    raise _Gone if replaying and tx.get_event(event.id) is None else _TakenOver
            else:
                if replaying and not tx.hold_event(event.id):
                    raise _Gone
                tx.update_event(event.id, **marked)
            tx.link_events([(event.id, sorted(touched))])  # the evidence the explain API shows
        return outcome, users

    def _mark(self, event: Event, claim: _Claim | None, status: str, attempts: int, error: str,
              next_at=None) -> bool:
        """Record the outcome of a failed attempt; False when the claim was lost meanwhile."""
        marked = dict(status=status, attempts=attempts, last_error=clean(error), next_attempt_at=next_at)
        try:
            with self.store.transaction() as tx:
                if claim is None:
                    tx.update_event(event.id, **marked)
                    return True
                return tx.update_claimed_event(event.id, claim.held, **marked)
        except (StoreUnavailable, StoreRefused):
            # The row stays "received"; the retry worker also picks up stale received events.
            log.error("could not mark event", extra={"fields": {"event_id": event.event_id, "status": status}})
            return True


@dataclasses.dataclass(frozen=True)
class _Claim:
    """The ``next_attempt_at`` an applier found (a live request: none) or set (a lease)."""

    held: datetime | None


@dataclasses.dataclass(frozen=True)
class _Pending:
    delivery: Delivery
    translation: Translation
    now: datetime


def _unrecorded(delivery: Delivery, now: datetime) -> Event:
    return Event(0, delivery.source, delivery.event_id, delivery.event_type, now, delivery.payload,
                 delivery.data, "received")


def _cause(delivery: Delivery | Event) -> Cause:
    return Cause("delivery", delivery.source, delivery.event_id)


def _error_text(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[:2000]
