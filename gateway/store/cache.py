"""A per-process cache of entitlement reads (``ENTITLEMENT_CACHE_SECONDS``).

A user's grants, once read, are answered from this process's memory for up to that many
seconds. Expiry is still judged at each read (the grants are cached, not the answer), so
an entitlement lapses on time.

What a read may miss, and what it may not:

- On PostgreSQL (on by default there) every commit that changes a user's entitlements, in
  any process of any dyno, is announced by the database (migration 0006), and this
  process's listener (``notify.ChangeListener``) forgets that user as it hears it: a
  change reaches every worker's reads within the notification's trip (bench/README.md
  measures it). While the listener cannot vouch for its connection, every read asks the
  database; when it is back, everything read before is forgotten. The seconds are a
  backstop only.
- A change committed by this process (a webhook, a purchase, the admin) is seen by its
  next read: the users whose entitlements a transaction replaced are forgotten once it has
  committed.
- A read that overlapped a commit or a notification does not keep what it read
  (``_generation``), so it cannot put back what the commit replaced.
- Where the database announces nothing (SQLite, where it is off unless set), a change
  committed by another process is seen within ``seconds``.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from gateway import metrics
from gateway.domain.entitlements import Grant

from .port import Store, Transaction

#: Users held per process at most; the oldest entry goes first. About 0.5 KB each.
MAX_USERS = 20_000


class CachedEntitlements(Store):
    def __init__(self, store: Store, seconds: float, max_users: int = MAX_USERS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.seconds = seconds
        self.max_users = max_users
        self._clock = clock
        self._mutex = threading.Lock()
        self._grants: dict[str, tuple[float, tuple[Grant, ...]]] = {}  # user -> (read at, grants)
        self._generation = 0  # bumped by every commit or notification that replaced entitlements
        self.listener = store.listen(self.forget, self.forget_everyone)  # None: the database cannot

    @property
    def engine(self):
        """The database's engine, for the jobs that speak SQL to it."""
        return self.store.engine

    def transaction(self, readonly: bool = False) -> contextlib.AbstractContextManager[Transaction]:
        if readonly:
            return self.store.transaction(readonly=True)
        return self._writing()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Transaction]:
        tx = _NotingWrites(self.store.transaction())
        try:
            with tx.inner as inner:
                tx.tx = inner
                yield tx
        finally:
            # After the commit (or the rollback: forgetting then costs one read, no more).
            if tx.users:
                self.forget(tx.users)

    def forget(self, users: Iterable[str]) -> None:
        with self._mutex:
            self._generation += 1
            for user_sub in users:
                self._grants.pop(user_sub, None)

    def forget_everyone(self) -> None:
        with self._mutex:
            self._generation += 1
            self._grants.clear()

    def entitlements_of(self, user_sub: str) -> list[Grant]:
        now = self._clock()
        trusted = self.listener is None or self.listener.listening()
        with self._mutex:
            entry = self._grants.get(user_sub) if trusted else None
            generation = self._generation
        if entry is not None and now - entry[0] < self.seconds:
            metrics.observe_cache_lookup(hit=True)
            return list(entry[1])
        metrics.observe_cache_lookup(hit=False)
        grants = self.store.entitlements_of(user_sub)
        with self._mutex:
            if trusted and self._generation == generation:  # nothing replaced entitlements meanwhile
                self._grants.pop(user_sub, None)  # re-inserted last: the dict stays oldest first
                self._grants[user_sub] = (now, tuple(grants))
                while len(self._grants) > self.max_users:
                    del self._grants[next(iter(self._grants))]
        return grants

    def ping(self) -> None:
        self.store.ping()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        self.store.close()


class _NotingWrites:
    """A writing transaction that notes whose entitlements it replaced."""

    def __init__(self, inner: contextlib.AbstractContextManager[Transaction]) -> None:
        self.inner = inner
        self.tx: Transaction | None = None
        self.users: set[str] = set()

    def replace_entitlements_of(self, grants: dict[str, list[Grant]], now: datetime) -> None:
        self.users.update(grants)
        self.tx.replace_entitlements_of(grants, now)

    def __getattr__(self, name):
        return getattr(self.tx, name)
