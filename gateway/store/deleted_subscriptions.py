"""The deleted users' subscriptions (``port_deletions``), for both SQL stores (a mixin of
``SqlTransaction``, whose ``_execute`` it uses)."""
from __future__ import annotations

import dataclasses
from datetime import datetime

import sqlalchemy as sa

from gateway.domain.deletion import PENDING, DeletedSubscription

from . import rows, tables

_T = tables.deleted_subscriptions
_D = _T.c


def _row(found) -> DeletedSubscription:
    values = found._asdict()
    return DeletedSubscription(**{**values, **{name: rows.utc(values[name]) for name in _TIMES}})


_TIMES = ("found_at", "next_attempt_at", "leased_until")


def _unleased(now: datetime) -> tuple:
    """Pending, and nobody stopping it now (a lease that lapsed: its holder died)."""
    # The outcome in the SQL's text, not a parameter: the plan matches the partial index.
    return _D.outcome == sa.literal(PENDING, literal_execute=True), sa.or_(_D.leased_until.is_(None),
                                                                            _D.leased_until <= now)


class DeletedSubscriptionsTransaction:
    def note_deleted_subscriptions(self, noted: list[DeletedSubscription]) -> None:
        self._insert_new(_T, [dataclasses.asdict(row) for row in noted])

    def note_bought_again(self, noted: list[DeletedSubscription]) -> None:
        for row in noted:
            values = {k: v for k, v in dataclasses.asdict(row).items() if k not in ("source", "key")}
            self._execute(sa.update(_T).where(_D.source == row.source, _D.key == row.key, _D.outcome != PENDING)
                          .values(**values))


    def deleted_subscription_keys(self, user_subs: list[str]) -> set[tuple[str, str]]:
        found = self._execute(sa.select(_D.source, _D.key).where(_D.user_sub.in_(list(user_subs))))
        return {(row.source, row.key) for row in found}

    def deleted_subscriptions_of(self, user_sub: str) -> list[DeletedSubscription]:
        query = sa.select(_T).where(_D.user_sub == user_sub).order_by(_D.source, _D.key)
        return [_row(found) for found in self._execute(query)]

    def claim_late_purchases(self, now: datetime, lease_until: datetime, limit: int) -> list[DeletedSubscription]:
        query = (sa.select(_T).where(*_unleased(now), _D.next_attempt_at <= now)
                 .order_by(_D.next_attempt_at, _D.source, _D.key).limit(limit))
        return self._lease(query, lease_until)

    def claim_late_purchases_of(self, user_sub: str, now: datetime, lease_until: datetime) -> list[DeletedSubscription]:
        return self._lease(sa.select(_T).where(_D.user_sub == user_sub, *_unleased(now))
                           .order_by(_D.source, _D.key), lease_until)

    def _lease(self, query: sa.Select, lease_until: datetime) -> list[DeletedSubscription]:
        """The rows of ``query`` locked (those another transaction is claiming passed) and
        leased until ``lease_until``."""
        due = [_row(found) for found in self._execute(query.with_for_update(skip_locked=True))]
        for row in due:
            self._execute(sa.update(_T).where(_D.source == row.source, _D.key == row.key)
                          .values(leased_until=lease_until))
        return [dataclasses.replace(row, leased_until=lease_until) for row in due]

    def settle_late_purchase(self, row: DeletedSubscription, outcome: str, attempts: int,
                             next_attempt_at: datetime | None, last_error: str | None) -> bool:
        lease = _D.leased_until.is_(None) if row.leased_until is None else _D.leased_until == row.leased_until
        done = self._execute(sa.update(_T).where(_D.source == row.source, _D.key == row.key, _D.outcome == PENDING, lease)
                             .values(outcome=outcome, attempts=attempts, next_attempt_at=next_attempt_at,
                                     last_error=last_error, leased_until=None))
        return done.rowcount == 1
