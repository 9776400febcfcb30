"""Group commit: concurrent requests of one process share one transaction.

A thread that submits work while no batch is running becomes the leader and runs a
batch of everything queued so far, its own item first in line; threads that submit
meanwhile wait. When the batch ends, every waiter in it has its answer, and the first
thread still queued leads the next batch. At low load a batch is one item and costs what
it did alone; under load, one transaction (and one durable commit) serves many requests.

Nothing here knows about the store: ``run(items)`` does the work and must give each item
its answer (``Slot.done``); an exception it lets out fails every item left unanswered.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Slot:
    """One submitted item and, once its batch ran, its answer."""

    __slots__ = ("item", "_ready", "_lead", "value", "error")

    def __init__(self, item: Any) -> None:
        self.item = item
        self._ready = threading.Event()
        self._lead = False
        self.value: Any = None
        self.error: BaseException | None = None

    def done(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error
        self._ready.set()


class GroupCommit:
    def __init__(self, run: Callable[[list[Slot]], None], max_batch: int = 64) -> None:
        self._run = run
        self.max_batch = max_batch
        self._mutex = threading.Lock()
        self._queue: list[Slot] = []
        self._leading = False

    def submit(self, item: Any) -> Any:
        """Run ``item`` in the next batch; returns its answer or raises its error."""
        slot = Slot(item)
        with self._mutex:
            self._queue.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot._ready.wait()  # answered, or handed the lead
        if lead or slot._lead:
            slot._lead = False
            slot._ready.clear()
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.value

    def _lead(self) -> None:
        with self._mutex:  # the leader is first in line: its item is in this batch
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        try:
            self._run(batch)
        except BaseException as exc:  # noqa: B902 - every waiter must wake, whatever happened
            for slot in batch:
                if not slot._ready.is_set():
                    slot.done(error=exc)
            raise
        finally:
            with self._mutex:
                if self._queue:
                    successor = self._queue[0]
                    successor._lead = True
                    successor._ready.set()
                else:
                    self._leading = False
            for slot in batch:  # an item the run forgot must not wait for ever
                if not slot._ready.is_set():
                    slot.done(error=RuntimeError("the batch gave this item no answer"))
