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
    return DeletedSubscription(**{**values, "found_at": rows.utc(values["found_at"]),
                                  "next_attempt_at": rows.utc(values["next_attempt_at"])})


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
        # The outcome in the SQL's text, not a parameter: the plan matches the partial index.
        query = (sa.select(_T).where(_D.outcome == sa.literal(PENDING, literal_execute=True), _D.next_attempt_at <= now)
                 .order_by(_D.next_attempt_at, _D.source, _D.key).limit(limit).with_for_update(skip_locked=True))
        due = [_row(found) for found in self._execute(query)]
        for row in due:
            self._execute(sa.update(_T).where(_D.source == row.source, _D.key == row.key)
                          .values(next_attempt_at=lease_until))
        return [dataclasses.replace(row, next_attempt_at=lease_until) for row in due]

    def settle_late_purchase(self, row: DeletedSubscription, outcome: str, attempts: int,
                             next_attempt_at: datetime | None, last_error: str | None) -> bool:
        lease = _D.next_attempt_at.is_(None) if row.next_attempt_at is None else _D.next_attempt_at == row.next_attempt_at
        done = self._execute(sa.update(_T).where(_D.source == row.source, _D.key == row.key, _D.outcome == PENDING, lease)
                             .values(outcome=outcome, attempts=attempts, next_attempt_at=next_attempt_at,
                                     last_error=last_error))
        return done.rowcount == 1
