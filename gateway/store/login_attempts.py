"""The admin's sign-in attempts per client, in the database (migration 0017): every gunicorn
worker of every instance counts against one limit, where a count in each process's memory
gave a guesser the limit once per worker.

An attempt is counted in one statement, an UPSERT returning the count: concurrent attempts,
from any process, each get a count of their own (PostgreSQL serializes them on the row;
SQLite has one writer), so no two find the same count below the limit. A client's window
opens at its first attempt and lasts ``window``; the first attempt after it opens the next.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from . import statements, tables
from .sql import EngineWork

_A = tables.admin_login_attempts.c

#: Expired rows of other clients deleted per attempt: bounded, so that one sign-in after
#: a spray of addresses does not pay for all of them at once.
PRUNE_BATCH = 500


def _count(insert) -> sa.Insert:
    statement = insert(tables.admin_login_attempts)
    current = _A.window_start > sa.bindparam("cutoff", type_=_A.window_start.type)
    return statement.on_conflict_do_update(index_elements=["client"], set_={
        "attempts": sa.case((current, _A.attempts + 1), else_=1),
        "window_start": sa.case((current, _A.window_start), else_=statement.excluded.window_start),
    }).returning(_A.attempts)


_COUNT = {dialect: _count(insert) for dialect, insert in statements.INSERTS.items()}
# SKIP LOCKED (PostgreSQL; SQLite has one writer): a row another attempt holds is left for
# the next one, so two attempts never wait on each other's rows.
_PRUNE = sa.delete(tables.admin_login_attempts).where(_A.client.in_(
    sa.select(_A.client).where(_A.window_start <= sa.bindparam("cutoff")).limit(PRUNE_BATCH)
    .with_for_update(skip_locked=True).scalar_subquery()))


class LoginAttempts(EngineWork):
    def count(self, client: str, now: datetime, window: timedelta) -> int:
        """Count one attempt of ``client``; how many it made in its window, this one included."""
        cutoff = now - window
        with self._transaction() as connection:
            counted = connection.execute(_COUNT[connection.dialect.name],
                                         {"client": client, "attempts": 1, "window_start": now, "cutoff": cutoff})
            attempts = counted.scalar_one()
            connection.execute(_PRUNE, {"cutoff": cutoff})
            return attempts

    def forget(self, client: str) -> None:
        with self._transaction() as connection:
            connection.execute(sa.delete(tables.admin_login_attempts).where(_A.client == client))
