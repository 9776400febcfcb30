"""Account deletion's and the feed consumers' statements, for both SQL stores (a mixin of
``SqlTransaction``, whose ``_execute`` it uses)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from gateway.domain.events import Event

from . import feed, rows, tables

_deleted, _identities, _events = tables.deleted_users.c, tables.identities.c, tables.events.c
_kept = tables.deleted_accounts.c
_cursors = tables.feed_cursors.c


class AccountsTransaction:
    def deletion_report(self, user_sub: str) -> dict[str, Any] | None:
        found = self._execute(sa.select(_deleted.report).where(_deleted.user_sub == user_sub)).first()
        return None if found is None else found.report

    def deleted_at(self, user_sub: str) -> datetime | None:
        return rows.utc(self._execute(sa.select(_deleted.deleted_at).where(_deleted.user_sub == user_sub)).scalar())

    def identities_of(self, user_sub: str) -> list[tuple[str, str]]:
        query = sa.select(_identities.source, _identities.account).where(_identities.user_sub == user_sub)
        return sorted((row.source, row.account) for row in self._execute(query))

    def keep_accounts(self, user_sub: str, accounts: list[tuple[str, str]]) -> None:
        self._insert_new(tables.deleted_accounts, [{"source": s, "account": a, "user_sub": user_sub} for s, a in accounts])

    def deleted_among(self, user_subs: list[str]) -> set[str]:
        return set(self._execute(feed.DELETED_AMONG, {"user_subs": list(user_subs)}).scalars())

    def deleted_accounts(self, accounts: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        linked = sa.select(_identities.account).where(
            _identities.source == _kept.source, _identities.account == _kept.account).exists()
        query = sa.select(_kept.source, _kept.account, _kept.user_sub).where(
            sa.tuple_(_kept.source, _kept.account).in_(accounts), ~linked)
        return {(row.source, row.account): row.user_sub for row in self._execute(query)}

    def unlink_user(self, user_sub: str) -> None:
        # The transfer register is kept: other users' access is replayed from it.
        self._execute(sa.delete(tables.identities).where(_identities.user_sub == user_sub))

    def events_naming(self, text: str, after_pk: int, limit: int) -> list[Event]:
        query = sa.select(tables.events).where(_events.id > after_pk, _events.payload.contains(text, autoescape=True))
        return [rows.event(row) for row in self._execute(query.order_by(_events.id).limit(limit))]

    def rewrite_event(self, event_pk: int, payload: str, data: Any) -> None:
        self._execute(sa.update(tables.events).where(_events.id == event_pk).values(payload=payload, data=data))

    def feed_cursor(self, name: str) -> int | None:
        return self._cursor(_cursors.position, _cursors.name, name)

    def move_feed_cursor(self, name: str, position: int, now: datetime) -> None:
        self._move_cursor(_cursors.name, name, {"position": position, "updated_at": now})
