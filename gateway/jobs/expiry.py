"""The expiry sweep: an entitlement that lapses by time, with no store event, is reported
``entitlement.expired`` at the end of its period (within the worker's idle time).

The feed's clock holds the sweep's mark, ``expiries_through``: every granting entitlement
that ended up to the mark has been reported. One run reports those that ended in (mark,
now], in one transaction: the users locked, their rows read again (a renewal committed
meanwhile is seen and nothing is reported for it), the events appended and the mark
moved with the feed's clock held last. Two workers sweeping at once: the second finds the
mark moved under its lock and rolls back; so does a run whose window, read again once the
clock is held, shows a user a change committed meanwhile (the next run reports it). The
change path reads the same mark, so an entitlement reported expired here comes back as
``granted``, not ``renewed``, and judges no earlier than it.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime

from gateway.clock import utcnow
from gateway.domain import entitlement_events
from gateway.domain.model import GRANTING
from gateway.store.port import Store, Transaction

log = logging.getLogger("gateway.expiry")

#: At most this many entitlements reported per transaction; a backlog takes several runs.
BATCH = 500


class _Raced(Exception):
    """Another sweep moved the mark first."""


class ExpirySweep:
    def __init__(self, store: Store, clock: Callable[[], datetime] = utcnow, batch: int = BATCH) -> None:
        self.store, self.clock, self.batch = store, clock, batch

    def run_once(self) -> int:
        """Report what lapsed since the mark; returns how many events were appended."""
        try:
            with self.store.transaction() as tx:
                return self._sweep(tx, self.clock())
        except _Raced:
            return 0

    def _sweep(self, tx: Transaction, now: datetime) -> int:
        _, mark = tx.feed_head()
        if mark is None:  # no clock yet: it starts now, with nothing owed
            tx.take_feed_positions(0)
            return 0
        upto, users = self._window(tx, mark, now)
        if users:
            tx.lock_users(users)
        grants, deleted = tx.read_entitlements(users) if users else ({}, set())
        lapsed = sorted((g.expires_at, user, g.name, g) for user in users if user not in deleted
                        for g in grants[user] if g.status in GRANTING and g.expires_at is not None
                        and mark < g.expires_at <= upto)
        told = tx.said_inactive({(user, name) for _, user, name, _ in lapsed})  # by a change after the end
        lapsed = [entry for entry in lapsed if entry[1:3] not in told]
        last, held_mark = tx.take_feed_positions(len(lapsed))
        if held_mark != mark:
            raise _Raced
        # The clock held, every change that committed since the window was read shows; one
        # that granted in it, to a user not locked here, is the next run's.
        if {user for user, _ in tx.lapsed_grants(mark, upto, None)} - set(users):
            raise _Raced
        events = [dataclasses.replace(entitlement_events.expired(user, grant), position=last + n)
                  for n, (_, user, _, grant) in enumerate(lapsed, 1)]
        tx.append_feed(events, expiries_through=upto)
        if events:
            log.info("expired", extra={"fields": {"events": len(events), "through": upto.isoformat()}})
        return len(events)

    def _window(self, tx: Transaction, mark: datetime, now: datetime) -> tuple[datetime, list[str]]:
        """The end of this run's window and the users with an entitlement ending in it:
        up to now, or, past ``batch`` entitlements, up to the last one's end."""
        found = tx.lapsed_grants(mark, now, self.batch)
        upto = now
        if len(found) == self.batch:
            upto = found[-1][1]
            found = tx.lapsed_grants(mark, upto, None)  # every one ending at that instant too
        return upto, sorted({user for user, _ in found})
