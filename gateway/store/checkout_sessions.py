"""The Checkout Sessions handed to users (``port_deletions``), for both SQL stores (a mixin
of ``SqlTransaction``, whose ``_execute`` it uses)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from . import tables

_T = tables.checkout_sessions
_C = _T.c


class CheckoutSessionsTransaction:
    def note_checkout_session(self, user_sub: str, session_id: str, customer: str, now: datetime,
                              forget_before: datetime) -> None:
        self._execute(sa.delete(_T).where(_C.user_sub == user_sub, _C.created_at < forget_before))
        self._insert_new(_T, [{"session_id": session_id, "user_sub": user_sub, "customer": customer,
                               "created_at": now}])

    def checkout_sessions_of(self, user_sub: str, since: datetime) -> dict[str, str]:
        query = sa.select(_C.session_id, _C.customer).where(_C.user_sub == user_sub, _C.created_at >= since)
        return {row.session_id: row.customer for row in self._execute(query)}

    def forget_checkout_sessions(self, user_sub: str) -> None:
        self._execute(sa.delete(_T).where(_C.user_sub == user_sub))
