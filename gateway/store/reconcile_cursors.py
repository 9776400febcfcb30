"""Reconcile's reads and its cursor per source, for both SQL stores (a mixin of
``SqlTransaction``, whose ``_execute`` it uses)."""
from __future__ import annotations

from datetime import datetime

from gateway.domain.model import Subscription

from . import rows, statements, tables

_cursors = tables.reconcile_cursors.c


class ReconcileTransaction:
    def subscriptions_to_reconcile(self, source, expires_from, expires_to, limit=10_000,
                                   after=None, unresolved_from=None) -> list[Subscription]:
        query = statements.subscriptions_to_reconcile(source, expires_from, expires_to, limit, after, unresolved_from)
        return [rows.subscription(row) for row in self._execute(query)]

    def reconcile_cursor(self, source: str) -> str | None:
        return self._cursor(_cursors.last_key, _cursors.source, source)

    def move_reconcile_cursor(self, source: str, last_key: str, now: datetime) -> None:
        self._move_cursor(_cursors.source, source, {"last_key": last_key, "updated_at": now})
