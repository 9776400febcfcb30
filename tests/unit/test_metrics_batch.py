"""The batches of metric samples (gateway/metrics_batch.py): what they write is what writing
each sample at once would have written, and no sample is lost or written twice."""
from __future__ import annotations

import os
import sys
import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.metrics import LATENCY_BUCKETS
from gateway.metrics_batch import Batch, observe_all, write_samples

# On a bound, between two, under the first, past the last, zero.
VALUES = [0.005, 0.0051, 0.001, 0.3, 0.3, 10.0, 11.0, 42.5, 0.0, 2.5, 0.7]


def histogram(registry):
    return Histogram("latency_seconds", "Latency.", ["route"], buckets=LATENCY_BUCKETS, registry=registry)


def test_observations_written_together_read_as_observed_one_by_one():
    one_by_one, together = CollectorRegistry(), CollectorRegistry()
    series = histogram(one_by_one).labels("/r")
    for value in VALUES:
        series.observe(value)
    observe_all(histogram(together).labels("/r"), VALUES)
    assert exposed(together) == exposed(one_by_one)


def exposed(registry) -> list[str]:
    """The exposition's lines but the series' creation times."""
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_samples_reach_the_metrics_only_when_flushed():
    registry = CollectorRegistry()
    counter, latency = Counter("hits", "Hits.", ["kind"], registry=registry), histogram(registry)
    batch = Batch(flush_ms=10_000)
    note = batch.stream(write_samples)
    for value in VALUES:
        note((counter, ("a",), 1))
        note((latency, ("/r",), value))
    note((counter, ("b",), 2))
    assert registry.get_sample_value("hits_total", {"kind": "a"}) is None
    batch.flush()
    assert registry.get_sample_value("hits_total", {"kind": "a"}) == len(VALUES)
    assert registry.get_sample_value("hits_total", {"kind": "b"}) == 2
    assert registry.get_sample_value("latency_seconds_count", {"route": "/r"}) == len(VALUES)
    assert registry.get_sample_value("latency_seconds_sum", {"route": "/r"}) == sum(VALUES)


def test_records_appended_while_flushing_are_each_written_once():
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns as often as they can: every window is tried
    try:
        written = _flushed_while_appending()
    finally:
        sys.setswitchinterval(interval)
    assert len(written) == 8 * 20_000
    assert set(written) == {(t, n) for t in range(8) for n in range(20_000)}


def _flushed_while_appending() -> list[tuple]:
    written: list[tuple] = []
    batch = Batch(flush_ms=10_000)
    note = batch.stream(written.extend)
    start, done = threading.Barrier(9), threading.Event()

    def produce(thread: int) -> None:
        start.wait()
        for n in range(20_000):
            note((thread, n))

    producers = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for producer in producers:
        producer.start()
    start.wait()
    threading.Thread(target=lambda: (_flush_until(batch, done))).start()
    for producer in producers:
        producer.join()
    done.set()
    batch.flush()
    return written


def _flush_until(batch: Batch, done: threading.Event) -> None:
    while not done.is_set():
        batch.flush()


def test_a_forked_worker_starts_empty_with_a_writer_of_its_own():
    """gunicorn forks its workers; were the app built first, a worker must neither write its
    parent's pending records again nor go without the thread that writes its own."""
    written: list = []
    batch = Batch(flush_ms=10_000)
    note = batch.stream(written.extend)
    batch.start()
    note(("parent",))
    pid = os.fork()
    if pid == 0:  # the child: exits 0 only if it holds nothing and writes on its own
        note(("child",))
        batch.flush()
        os._exit(0 if written == [("child",)] and batch._flusher.is_alive() else 1)
    assert os.waitpid(pid, 0)[1] == 0
    batch.flush()
    assert written == [("parent",)]
