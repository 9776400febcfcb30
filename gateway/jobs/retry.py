"""Retry deferred events: the gateway's own redelivery, so nothing recorded is lost."""
from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from gateway.config import DEFAULT_EVENTS_STALE_AFTER_SECONDS
from gateway.ingest import Ingest
from gateway.providers import Provider
from gateway.store.port import StoreUnavailable

log = logging.getLogger("gateway.retry")

#: A received event not applied after this long was abandoned mid-request (a crash). The
#: jobs are given ``Settings.events_stale_after_seconds`` (``EVENTS_STALE_AFTER_SECONDS``).
#: A request still at work then (gunicorn never kills a thread) loses the event to the
#: worker and commits nothing of it (``Ingest.process``): set it above the usual request.
STALE_AFTER = timedelta(seconds=DEFAULT_EVENTS_STALE_AFTER_SECONDS)


#: How long a claimed event is reserved for the worker that claimed it.
LEASE = timedelta(minutes=5)


def retry_due(ingest: Ingest, providers: dict[str, Provider], limit: int = 100,
              stale_after: timedelta = STALE_AFTER) -> Counter:
    """Apply due events once each, up to ``limit`` (deferred ones whose time has come, and
    received ones older than ``stale_after``); returns the outcomes counted.

    Each is claimed when its turn comes and leased from then: a batch leased at once
    outlives its lease while a store API is slow (during an outage, when deferred events
    pile up), and another worker would apply the rest a second time."""
    outcomes: Counter = Counter()
    for _ in range(limit):
        now = ingest.clock()
        with ingest.store.transaction() as tx:
            due = tx.claim_due_events(now=now, stale_before=now - stale_after, lease_until=now + LEASE, limit=1)
        if not due:
            break
        outcomes.update(replay(ingest, providers, due, claimed=True))
    return outcomes


def replay(ingest: Ingest, providers: dict[str, Provider], events, claimed: bool = False) -> Counter:
    """Apply each stored event again; returns the outcomes counted. ``claimed``: the events
    are leased to this worker, which applies none of them once another has taken it over."""
    outcomes: Counter = Counter()
    for event in events:
        try:
            outcomes[ingest.process(providers[event.source], event, replaying=True, claimed=claimed)] += 1
        except Exception as exc:  # a malformed event is marked failed by process()
            log.warning("retry failed", extra={"fields": {"event_id": event.event_id, "error": str(exc)}})
            outcomes["failed"] += 1
    return outcomes


def work(ingest: Ingest, providers: dict[str, Provider], idle_seconds: float = 5.0, once: bool = False,
         stale_after: timedelta = STALE_AFTER) -> None:
    """Run until stopped: retry what is due, sleep when there is nothing."""
    from gateway.jobs.worker import run

    run({"retry": lambda: sum(retry_due(ingest, providers, stale_after=stale_after).values())},
        idle_seconds=idle_seconds, once=once)
