"""Reconcile's reads and its cursor per source, for both SQL stores (a mixin of
``SqlTransaction``, whose ``_execute`` it uses)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from gateway.domain.model import Subscription

from . import rows, statements, tables

_cursors = tables.reconcile_cursors.c


class ReconcileTransaction:
    def subscriptions_to_reconcile(self, source, expires_from, expires_to, limit=10_000,
                                   after=None) -> list[Subscription]:
        query = statements.subscriptions_to_reconcile(source, expires_from, expires_to, limit, after)
        return [rows.subscription(row) for row in self._execute(query)]

    def reconcile_cursor(self, source: str) -> str | None:
        found = self._execute(sa.select(_cursors.last_key).where(_cursors.source == source)).first()
        return None if found is None else found.last_key

    def move_reconcile_cursor(self, source: str, last_key: str, now: datetime) -> None:
        values = {"last_key": last_key, "updated_at": now}
        moved = self._execute(sa.update(tables.reconcile_cursors).where(_cursors.source == source).values(values))
        if not moved.rowcount:
            self._execute(sa.insert(tables.reconcile_cursors).values(source=source, **values))
