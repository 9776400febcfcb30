"""Hearing every committed change of entitlements, on PostgreSQL.

Migration 0006 has a trigger send ``NOTIFY gateway_entitlements, '<user sub>'`` for every
row of ``entitlements`` written or deleted (``'*'`` for a TRUNCATE). PostgreSQL delivers a
notification to every session listening, once its transaction has committed; a transaction
whose notification cannot be queued fails at its commit, so no change commits unheard.

A ``ChangeListener`` is one thread per process, on a connection of its own (named
``gateway-entitlement-listener`` in ``pg_stat_activity``), that hands each user it hears
of to ``forget``. What it cannot promise, it says: ``listening()`` is true only while the
connection is known to be up, that is, for ``ALIVE_SECONDS`` after a round trip that
proved it (a heartbeat every ``HEARTBEAT_SECONDS``; a closed connection is seen at once).
A cache must not answer from memory otherwise. When it connects again, it first listens,
then calls ``forget_everyone`` (what it may have missed meanwhile), then says it listens.
A notification reaches the session that listens: through a pooler that hands a server's
session to another client between transactions (PgBouncer in transaction mode, for one),
notifications go astray while every heartbeat still answers. A pooler shows itself
(``pooler.pooled``), and then the listener says why, once, as an error, and gives up for
the life of the process: its cache stays bypassed, every read asks the database.

A connection that had listened and is lost is retried after ``FIRST_RETRY_SECONDS``,
however often that happens; while the database refuses, the wait doubles up to
``MAX_BACKOFF_SECONDS``.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

import psycopg

from .pooler import pooled

log = logging.getLogger("gateway.store")

CHANNEL = "gateway_entitlements"
EVERYONE = "*"
APPLICATION_NAME = "gateway-entitlement-listener"
HEARTBEAT_SECONDS = 1.0
ALIVE_SECONDS = 2.5
FIRST_RETRY_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0


class BehindAPooler(Exception):
    """The listener's connection reaches PostgreSQL through a pooler."""


class ChangeListener:
    def __init__(self, conninfo: str, forget: Callable[[Iterable[str]], None],
                 forget_everyone: Callable[[], None], heartbeat: float = HEARTBEAT_SECONDS,
                 alive: float = ALIVE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.conninfo = conninfo
        self.forget = forget
        self.forget_everyone = forget_everyone
        self.heartbeat = heartbeat
        self.alive = alive
        self._clock = clock
        self._alive_until = 0.0
        self._pid: int | None = None
        self._start = threading.Lock()
        self._stopping = threading.Event()

    def listening(self) -> bool:
        """Whether every change committed up to a moment ago has been heard; starts the
        thread in this process if it has not started yet (a gunicorn worker forks after the
        app is built, and threads do not survive a fork)."""
        if self._pid != os.getpid():
            self._start_thread()
            return False
        return self._clock() < self._alive_until

    def stop(self) -> None:
        self._stopping.set()
        self._alive_until = 0.0

    def _start_thread(self) -> None:
        with self._start:
            if self._pid == os.getpid():
                return
            self._pid, self._alive_until = os.getpid(), 0.0
            threading.Thread(target=self._run, name=APPLICATION_NAME, daemon=True).start()

    def _run(self) -> None:
        backoff = FIRST_RETRY_SECONDS
        while not self._stopping.is_set():
            try:
                self._listen()
            except BehindAPooler as exc:
                self._alive_until = 0.0
                log.error("entitlement listener is behind a connection pooler, which may hand its session to "
                          "another client and its notifications with it; the cache is bypassed in this process. "
                          "Point DATABASE_URL at PostgreSQL itself, or set ENTITLEMENT_CACHE_SECONDS=0",
                          extra={"fields": {"error": str(exc)}})
                return
            except (psycopg.Error, OSError) as exc:
                listened, self._alive_until = self._alive_until > 0, 0.0
                if listened:  # a connection that worked was lost: a blip, not a refusal
                    backoff = FIRST_RETRY_SECONDS
                log.warning("entitlement listener disconnected; the cache is bypassed until it is back",
                            extra={"fields": {"error": str(exc).strip(), "retry_in_seconds": backoff}})
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _listen(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True, application_name=APPLICATION_NAME,
                             connect_timeout=5, keepalives=1, keepalives_idle=5, keepalives_interval=2,
                             keepalives_count=2, prepare_threshold=None) as connection:
            if why := pooled(connection):
                raise BehindAPooler(why)
            connection.execute(f"LISTEN {CHANNEL}")
            self.forget_everyone()  # whatever committed before the LISTEN went unheard
            self._beat()
            log.info("entitlement listener listening", extra={"fields": {"channel": CHANNEL}})
            while not self._stopping.is_set():
                self._hear(connection.notifies(timeout=self.heartbeat))
                # A round trip proves the connection; what was sent before it came with it.
                connection.execute("SELECT 1")
                self._hear(connection.notifies(timeout=0))
                self._beat()

    def _hear(self, notes: Iterable[psycopg.Notify]) -> None:
        for note in notes:  # each as it arrives
            if note.payload == EVERYONE:
                self.forget_everyone()
            else:
                self.forget((note.payload,))

    def _beat(self) -> None:
        self._alive_until = self._clock() + self.alive
