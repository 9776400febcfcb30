"""The event log does not grow forever: finished deliveries, with their evidence,
delivered outgoing webhooks and the RevenueCat transfers register are deleted once older
than ``EVENTS_RETENTION_DAYS`` (90 by default, at least 31, 0 keeps everything), and the
Checkout Sessions handed to users once Stripe has expired them (24 hours, whatever the
setting: they are kept only for an account deletion to expire them). The worker does it (``Pruner``, at most once an hour), and so does ``flask events prune``;
the SQL is ``gateway/store/retention.py``.

Why deleting an old event cannot let a late redelivery of it change anything. The event
log's unique (source, event id) answers a redelivery ``duplicate``, but it is the first
guard, not the only one. What a delivery did lives on in the rows it changed:

- a subscription keeps its newest snapshot with the store's time of it (``as_of``), and
  ``merge_snapshot`` replaces it only with a strictly newer one (``supersedes``). A pruned
  delivery sent again carries the store time it carried then, no newer than what the row
  holds (that snapshot or a later one), so the state stays as it is;
- who holds a subscription and its store account are registers stamped with the store's
  time too (``owner_as_of``, ``account_as_of``, ``Link.as_of`` from Stripe's ``created``):
  an old claim loses to the one held;
- refunds and their reversals are grow-only sets on the row (``Revocations``): seeing a
  refund again adds nothing, and a reversal given since stays given;
- where a body is not the truth (Google always, Stripe when not strictly newer), the
  gateway fetches the subscription from the store's API, which is what reconcile does;
- a deleted user's tombstone keeps anything from granting them again.

So such a delivery is recorded anew and answered ``processed``, and changes no
subscription, entitlement or feed event. One exception: links that carry no store time
(a RevenueCat event's aliases) are ordered by when the gateway records them, so a hand
replay of a RevenueCat event older than the retention could move an alias that another
user claimed since. RevenueCat itself retries for 2.5 hours, far inside the least
retention; the least retention (31 days) is the longest any store sends an event again on
its own (Google Pub/Sub's message retention), so inside it a redelivery is always a
``duplicate`` and the log stays a complete record of what each store sent.

The transfers register (``tables.transfers``) is what a transfer leaves for the purchases
it did not find: each delivery that gives a purchase to an account replays the transfers
recorded from it, so a purchase stamped before a transfer and delivered after it still
goes to the transfer's new owner. An owner named after a transfer is not moved by it
(``claim_ownership``), and what a transfer moved lives on in the rows (the owner stamped
with the transfer's time). So a transfer is needed only while a delivery stamped before
it may still be applied for the first time: one RevenueCat is still sending (it retries
for 2 h 35 min), or one recorded and not applied yet (deferred, or failed and waiting for
an operator's replay, whatever its age). A transfer goes once stamped before the cutoff
and, while a delivery of its source is not applied yet, stamped more than ``UNAPPLIED``
before that delivery was received (``kept_for_unapplied``). RevenueCat's reconcile reads
its subscriber as of the read, newer than any transfer recorded, so it needs none. A
hand resend of a RevenueCat event older than the retention (its dashboard's Retry) is
not covered, as for aliases above.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from gateway.clock import utcnow
from gateway.config import MIN_EVENTS_RETENTION_DAYS
from gateway.domain.deletion import SESSION_LIFETIME
from gateway.store.retention import Batch, Retention

log = logging.getLogger("gateway.retention")

#: Rows per transaction: locks held some 40 to 150 ms on PostgreSQL (bench/prune.py measures it).
BATCH = 1000
#: Batches of each table one worker turn may take, so retries and webhooks get their turns.
BATCHES_PER_TURN = 10
#: After a turn that cleared everything due, the next one is due this much later.
INTERVAL = timedelta(hours=1)
#: How long before its arrival a delivery may be stamped, by a store sending it on its own:
#: the least retention, the longest any store does (RevenueCat: 2 h 35 min of retries).
UNAPPLIED = timedelta(days=MIN_EVENTS_RETENTION_DAYS)


@dataclasses.dataclass
class Report:
    """What a prune deleted, in how many transactions, and the longest of them."""

    events: int = 0
    evidence: int = 0
    deliveries: int = 0
    transfers: int = 0
    feed: int = 0
    checkout_sessions: int = 0
    transactions: int = 0
    longest_seconds: float = 0.0
    more: bool = False  # stopped after its last batch allowed with a full batch: more is due

    def add(self, batch: Batch, seconds: float) -> None:
        self.transactions += 1
        self.longest_seconds = max(self.longest_seconds, seconds)
        self.evidence += batch.evidence


def prune(retention: Retention, cutoff: datetime | None, batch: int = BATCH, max_batches: int | None = None,
          feed_cutoff: datetime | None = None, cursors: tuple[str, ...] = (),
          sessions_before: datetime | None = None) -> Report:
    """Delete what was finished before ``cutoff``, the feed's events that occurred before
    ``feed_cutoff`` and the Checkout Sessions handed out before ``sessions_before`` (None:
    keep them), ``batch`` rows per transaction, at most ``max_batches`` transactions per
    table (None: until done). The feed's consumers named in ``cursors`` hold what they have
    not read."""
    report = Report()
    if sessions_before is not None:
        report.checkout_sessions = _drain(lambda after: retention.checkout_sessions_batch(sessions_before, batch),
                                          batch, max_batches, report, retention.pause)
    if cutoff is not None:
        kept = kept_for_unapplied(retention)
        below = retention.newest_event()
        report.events = _drain(lambda after: retention.events_batch(cutoff, after, below, batch),
                               batch, max_batches, report, retention.pause)
        report.deliveries = _drain(lambda after: retention.deliveries_batch(cutoff, after, batch),
                                   batch, max_batches, report, retention.pause)
        report.transfers = _drain(lambda after: retention.transfers_batch(cutoff, kept, after, batch),
                                  batch, max_batches, report, retention.pause)
    if feed_cutoff is not None:
        through = retention.feed_bound(feed_cutoff, cursors)
        report.feed = _drain(lambda after: retention.feed_batch(through, after, batch),
                             batch, max_batches, report, retention.pause)
    return report


def feed_consumers(settings) -> tuple[str, ...]:
    """The gateway's own readers of the feed whose cursors hold its pruning: the Cognito
    sign-out while it is on (switched off, its cursor holds nothing)."""
    from gateway.jobs import sign_out

    return (sign_out.CURSOR,) if sign_out.enabled(settings) else ()


def kept_for_unapplied(retention: Retention) -> dict[str, datetime]:
    """Per source with deliveries not applied yet, the stamp from which its transfers are
    kept whatever the cutoff: ``UNAPPLIED`` before the oldest of them was received."""
    return {source: received_at - UNAPPLIED for source, received_at in retention.unapplied_since().items()}


def _drain(step: Callable[[datetime | None], Batch], batch: int, max_batches: int | None, report: Report,
           pause: float) -> int:
    """Run ``step`` until a batch comes back short, resting ``pause`` seconds between
    batches; returns the rows deleted."""
    deleted, after, taken = 0, None, 0
    while max_batches is None or taken < max_batches:
        if taken and pause:
            time.sleep(pause)
        started = time.perf_counter()
        done = step(after)
        report.add(done, time.perf_counter() - started)
        deleted, after, taken = deleted + done.deleted, done.last, taken + 1
        if done.deleted < batch:
            return deleted
    report.more = True
    return deleted


def cutoff(days: int, now: datetime) -> datetime | None:
    """``days`` before ``now``; None for 0 (kept forever)."""
    return now - timedelta(days=days) if days else None


class Pruner:
    """The worker's chore: a prune at most once per ``interval``, and again on the next
    turn while the last one stopped with more to do (a backlog, e.g. the first run on an
    old log, is cleared ``BATCHES_PER_TURN`` batches per turn between the other chores)."""

    def __init__(self, retention: Retention, days: int, *, feed_days: int = 0, cursors: tuple[str, ...] = (),
                 clock: Callable[[], datetime] = utcnow, monotonic: Callable[[], float] = time.monotonic,
                 batch: int = BATCH, max_batches: int = BATCHES_PER_TURN, interval: timedelta = INTERVAL) -> None:
        self.retention, self.days, self.clock, self.monotonic = retention, days, clock, monotonic
        self.feed_days, self.cursors = feed_days, cursors
        self.batch, self.max_batches, self.interval = batch, max_batches, interval.total_seconds()
        self.due_at: float | None = None  # None: at the first turn

    def run_once(self) -> int:
        """Prune when due; returns the rows deleted."""
        now = self.monotonic()
        if self.due_at is not None and now < self.due_at:
            return 0
        self.due_at = now + self.interval  # a run that fails waits the interval too
        today = self.clock()
        report = prune(self.retention, cutoff(self.days, today), self.batch, self.max_batches,
                       cutoff(self.feed_days, today), self.cursors, today - SESSION_LIFETIME)
        if report.more:
            self.due_at = now
        deleted = report.events + report.deliveries + report.transfers + report.feed + report.checkout_sessions
        if deleted:
            log.info("pruned", extra={"fields": dataclasses.asdict(report)})
        return deleted
