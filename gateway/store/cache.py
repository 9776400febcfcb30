"""An opt-in cache of entitlement reads, per process (``ENTITLEMENT_CACHE_SECONDS``).

Off by default: then every read asks the database. When on, a user's grants, once read,
are answered from this process's memory for up to that many seconds. Expiry is still
judged at each read (the grants are cached, not the answer), so an entitlement lapses
on time.

What a read may miss, and what it may not:

- A change committed by this process (a webhook, a purchase, the admin) is seen by the
  next read in this process. The users whose entitlements a transaction replaced are
  forgotten once it has committed, and a read that overlapped such a commit does not
  keep what it read (``_generation``), so it cannot put back what the commit replaced.
- A change committed by another process (the other gunicorn workers, another dyno, the
  reconciliation job) is seen within ``seconds``: this process does not hear of it.

So with N workers, a webhook's effect reaches every read within ``seconds`` of its 200.
The purchase endpoints answer with the caller's entitlements themselves, so an app that
has just bought does not depend on this.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
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
        self._generation = 0  # bumped by every commit that replaced someone's entitlements

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

    def forget(self, users) -> None:
        with self._mutex:
            self._generation += 1
            for user_sub in users:
                self._grants.pop(user_sub, None)

    def entitlements_of(self, user_sub: str) -> list[Grant]:
        now = self._clock()
        with self._mutex:
            entry = self._grants.get(user_sub)
            generation = self._generation
        if entry is not None and now - entry[0] < self.seconds:
            metrics.observe_cache_lookup(hit=True)
            return list(entry[1])
        metrics.observe_cache_lookup(hit=False)
        grants = self.store.entitlements_of(user_sub)
        with self._mutex:
            if self._generation == generation:  # no commit replaced entitlements meanwhile
                self._grants.pop(user_sub, None)  # re-inserted last: the dict stays oldest first
                self._grants[user_sub] = (now, tuple(grants))
                while len(self._grants) > self.max_users:
                    del self._grants[next(iter(self._grants))]
        return grants

    def ping(self) -> None:
        self.store.ping()


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
