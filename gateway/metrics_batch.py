"""Samples of the hot metrics, kept in the process and written to prometheus_client in batches.

In multiprocess mode (gunicorn) every sample prometheus_client writes takes its lock, an
``os.getpid()`` and a write into the worker's mmapped file: about 10,000 instructions, and an
entitlement read wrote four (its request, its latency's sum and bucket, its read), over 40,000
of the some 180,000 the gateway spent above a bare Flask route. So a request only appends one
record to a deque here, and a thread of the process writes what has gathered every
``METRICS_FLUSH_MS``, one write per series. What another worker's scrape reads from the files
is therefore at most that interval old (plus the write itself, well under a millisecond); the
worker answering a scrape writes its own first, and a process writes what it holds when it
exits (gunicorn's graceful stop, SIGTERM, or a timeout's SIGABRT). A worker killed outright
(SIGKILL, the out-of-memory killer) loses at most the interval's samples.
"""
from __future__ import annotations

import atexit
import bisect
import collections
import functools
import logging
import os
import threading
import time
from itertools import repeat, starmap

log = logging.getLogger("gateway.metrics")

DEFAULT_FLUSH_MS = 1000


class Batch:
    """Streams of records, each a deque and the function that writes a list of its records.
    Producers only append (atomic on a deque); one writer at a time takes from the other
    end, so no record is lost or written twice."""

    def __init__(self, flush_ms: int = DEFAULT_FLUSH_MS) -> None:
        self.flush_ms = flush_ms
        self._streams: list[tuple[collections.deque, object]] = []
        self._flusher: threading.Thread | None = None
        self._forked()
        os.register_at_fork(after_in_child=self._forked)
        atexit.register(self.flush)

    def _forked(self) -> None:
        # A forked worker starts empty (its parent writes what it held), with a thread of its
        # own if its parent had one (an app built before the fork).
        for pending, _ in self._streams:
            pending.clear()
        self._writing, started, self._flusher = threading.Lock(), self._flusher is not None, None
        if started:
            self.start()

    def stream(self, write):
        """The ``append`` of a new stream whose records ``write(records)`` writes."""
        pending: collections.deque = collections.deque()
        self._streams.append((pending, write))
        return pending.append

    def start(self) -> None:
        """Start this process's writing thread, unless it runs."""
        if self._flusher is None or not self._flusher.is_alive():
            with self._writing:
                if self._flusher is None or not self._flusher.is_alive():
                    self._flusher = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
                    self._flusher.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.flush_ms / 1000)
            self.flush()

    def flush(self) -> None:
        """Write every record appended so far."""
        with self._writing:
            for pending, write in self._streams:
                if not pending:
                    continue
                try:
                    write(list(starmap(pending.popleft, repeat((), len(pending)))))
                except Exception:  # neither the thread nor a scrape may fail for a bad record
                    log.exception("metric samples not written")


def write_samples(records: list) -> None:
    """Records ``(metric, label values, value)``: counters add the values, histograms observe each."""
    grouped: dict[tuple, list] = collections.defaultdict(list)
    for metric, labels, value in records:
        grouped[metric, labels].append(value)
    for (metric, labels), values in grouped.items():
        found = series(metric, labels)
        if hasattr(found, "_upper_bounds"):
            observe_all(found, values)
        else:
            found.inc(sum(values))


def count_all(metric, counts: collections.Counter) -> None:
    for labels, count in counts.items():
        series(metric, labels).inc(count)


@functools.lru_cache(maxsize=4096)
def series(metric, labels: tuple):
    """``metric.labels(*labels)``, found once: labels() checks and looks the labels up under a
    lock on every call. The label sets written here are bounded (a method among eight, a route
    template, a status, a source, a delivery type and outcome, an error code); prometheus_client
    keeps every series it made in any case."""
    return metric.labels(*labels)


def observe_all(series, values: list) -> None:
    """``series.observe(v)`` for each value, in one write per bucket. prometheus_client has no
    call for it: observe() adds the value to ``_sum`` and 1 to the first bucket whose upper
    bound holds it (the exposition makes them cumulative); the same here, n at a time
    (prometheus-client is pinned; tests/unit/test_metrics_batch.py compares the two)."""
    series._sum.inc(sum(values))
    for index, count in collections.Counter(map(bisect.bisect_left, repeat(series._upper_bounds), values)).items():
        series._buckets[index].inc(count)
