"""Bring the schema up to date: idempotent, safe on every deploy, while the previous
release serves.

The release phase migrates the database while the previous release's web and worker
dynos keep serving on it, so on PostgreSQL:

- One upgrade at a time: the upgrade holds a session advisory lock, and a second one
  (two deploys close together) waits for it, then finds the schema up to date. It polls
  rather than waits in one statement: a waiting statement is a transaction that an index
  built concurrently would wait for, while the first upgrade waits for the index.
- Each migration commits alone (``env.py``), so its locks are held for its own statements.
- Every lock is waited for at most ``lock_timeout`` seconds. A statement waiting for a lock
  makes every later statement on that table wait behind it: an ``ALTER TABLE`` queued
  behind a long transaction would stop every delivery. A migration that times out is
  rolled back, and the upgrade is tried again after a pause, ``attempts`` times, before it
  fails with the statement that waited and the oldest open transactions (the deploy then
  stops, and the previous release serves on).
- An index on a table that holds rows is built with ``CREATE INDEX CONCURRENTLY``
  (``online.create_index``), which blocks no reader or writer.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Iterator

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from .pooler import pooled

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")

#: Seconds a migration's statement waits for a lock before the attempt gives up.
LOCK_TIMEOUT = 3.0
#: Attempts of the whole upgrade before it fails; the pause between them doubles, up to 30 s.
ATTEMPTS = 8
PAUSE = 1.0
#: The session advisory lock of the upgrade (two keys: apart from the store's, which are
#: transaction locks in spaces 1-3 and never taken by the upgrade).
_UPGRADE_LOCK = (0, 20261207)
_LOCK_NOT_AVAILABLE = "55P03"

log = logging.getLogger(__name__)


class MigrationBlocked(RuntimeError):
    """The upgrade could not take a lock it needs within its attempts."""


def _config(url: str, lock_timeout: float | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.attributes["url"] = url
    cfg.attributes["lock_timeout"] = lock_timeout
    return cfg


def upgrade(url: str, revision: str = "head", *, lock_timeout: float = LOCK_TIMEOUT, attempts: int = ATTEMPTS,
            pause: float = PAUSE) -> None:
    """Upgrade to ``revision``; on PostgreSQL, trying again while a lock is not available."""
    for attempt in range(1, attempts + 1):
        try:
            command.upgrade(_config(url, lock_timeout), revision)
            return
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            if attempt == attempts:
                raise MigrationBlocked(_blocked(url, exc, lock_timeout, attempts)) from exc
            log.warning("migration waited %s s for a lock, attempt %d of %d: %s", lock_timeout, attempt,
                        attempts, exc.statement)
            time.sleep(min(pause * 2 ** (attempt - 1), 30.0))


def downgrade(url: str, revision: str) -> None:
    """Step the schema back to ``revision`` (tests of a migration's data step)."""
    command.downgrade(_config(url), revision)


@contextlib.contextmanager
def session(connection: sa.Connection, lock_timeout: float | None) -> Iterator[None]:
    """The upgrade's session on ``connection`` (an autocommit one): alone, and waiting for
    any lock at most ``lock_timeout`` seconds. Nothing to do on SQLite, nor, for want of a
    session of its own, through a pooler."""
    if connection.dialect.name != "postgresql":
        yield
        return
    through = pooled(connection.connection.driver_connection)
    if through:
        # A transaction pooler lends the server session for a transaction only: a SET or a
        # session lock would stay on a session that other clients, the gateway's, use next.
        log.warning("the upgrade goes through a connection pooler (%s): no lock timeout and no advisory "
                    "lock; give the release a direct URL", through)
        yield
        return
    while not connection.scalar(sa.select(sa.func.pg_try_advisory_lock(*_UPGRADE_LOCK))):
        log.warning("another upgrade of this database is running: waiting for it")
        time.sleep(1.0)
    if lock_timeout is not None:
        connection.execute(sa.text(f"SET lock_timeout = '{int(lock_timeout * 1000)}ms'"))
    connection.commit()  # ends SQLAlchemy's own autobegun transaction, so the isolation can change
    try:
        yield
    finally:
        connection.rollback()
        connection.execute(sa.select(sa.func.pg_advisory_unlock(*_UPGRADE_LOCK)))
        connection.commit()


_OLDEST = sa.text(
    "SELECT pid, state, now() - xact_start AS open_for, left(query, 100) AS query FROM pg_stat_activity"
    " WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND datname = current_database()"
    " ORDER BY xact_start LIMIT 3")


def _blocked(url: str, exc: sa.exc.OperationalError, lock_timeout: float, attempts: int) -> str:
    from .sql import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            oldest = "; ".join(f"pid {row.pid} ({row.state}, open {row.open_for}): {row.query}"
                               for row in connection.execute(_OLDEST))
    finally:
        engine.dispose()
    return (f"a migration could not take a lock within {lock_timeout} s, {attempts} times, and was rolled "
            f"back (those before it are applied); the previous release serves on. It waited at: "
            f"{exc.statement}. Oldest open "
            f"transactions: {oldest or 'none now'}. End the transaction that holds the table, then deploy again.")
