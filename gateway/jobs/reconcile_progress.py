"""One source's share of a reconcile run: the cursor it leaves behind, a line on the console
every so often, and the metrics (``gateway_reconcile_*``).

Workers finish subscriptions out of order, so the cursor moves to the last key of the
longest finished prefix of the run's order, each time that prefix grows, in a small
transaction of its own: a run killed midway resumes after what it finished and reads again
only what was in flight. A subscription the run never got to (its source declared down)
holds the cursor before it, so the next run starts there.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gateway.metrics import observe_reconcile

log = logging.getLogger("gateway.reconcile")


class Progress:
    def __init__(self, source: str, keys: list[str], save: Callable[[str], None],
                 echo: Callable[[str], None], every: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.source, self.keys, self.save, self.echo, self.every = source, keys, save, echo, every
        self.position = {key: index for index, key in enumerate(keys)}
        self.finished = [False] * len(keys)
        self.prefix = self.count = self.failed = 0
        self.monotonic = monotonic
        self.started = self.printed = monotonic()
        self.lock = threading.Lock()

    def done(self, key: str, outcome: str, visited: bool = True) -> None:
        """``key`` is through with ``outcome`` (changed, unchanged, failed); ``visited``
        False: it was never asked about, and the cursor must not pass it."""
        with self.lock:
            self.count += 1
            self.failed += outcome == "failed"
            if visited:
                self.finished[self.position[key]] = True
                self._advance()
            rate = self.count / max(self.monotonic() - self.started, 1e-6)
            observe_reconcile(self.source, outcome, self.count / len(self.keys), rate)
            if self.monotonic() - self.printed >= self.every:
                self.printed = self.monotonic()
                self._report(rate)

    def _advance(self) -> None:
        start = self.prefix
        while self.prefix < len(self.keys) and self.finished[self.prefix]:
            self.prefix += 1
        if self.prefix > start:  # under the lock: saved in order, never moved back
            self.save(self.keys[self.prefix - 1])

    def _report(self, rate: float) -> None:
        total = len(self.keys)
        self.echo(f"{self.source}: {self.count} of {total} checked ({100 * self.count // total}%), "
                  f"{rate:.1f}/s, failed {self.failed}")
        log.info("reconcile progress", extra={"fields": {
            "source": self.source, "checked": self.count, "due": total, "per_second": round(rate, 2),
            "failed": self.failed}})
