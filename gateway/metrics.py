"""Prometheus metrics: what the gateway counts, and the exposition of ``/metrics``.

Under gunicorn every worker is a process of its own, so the counters live in
prometheus_client's multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set
(gunicorn.conf.py sets it): each worker writes its samples to files there and a scrape,
whichever worker answers it, adds them all up. Without it (tests, ``flask run``) they
live in this process. The event backlog, the feed's readers behind it and the parked
outgoing webhook deliveries are not counted at all: they are read from the database at
scrape time, so they are right whichever process changed them (the worker runs the readers
and parks deliveries, an operator's command drops them, the web answers the scrape).
"""
from __future__ import annotations

import collections
import logging
import operator
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from gateway.domain.catalog import SOURCES
from gateway import metrics_batch
from gateway.metrics_batch import Batch

log = logging.getLogger("gateway.metrics")

BACKLOG_STATUSES = ("deferred", "failed")
# Seconds. A delivery takes milliseconds when it carries its truth, up to the store
# API timeouts (4-5 s) when it must fetch it.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Our own registry, never prometheus_client's global one: nothing else in the process
# (libraries, a second app in the tests) can register a clashing name into it.
REGISTRY = CollectorRegistry(auto_describe=True)

DELIVERIES = Counter("gateway_webhook_deliveries", "Verified webhook deliveries, by outcome.",
                     ["source", "type", "outcome"], registry=REGISTRY)
DELIVERY_SECONDS = Histogram("gateway_webhook_processing_seconds",
                             "Time to verify, record and apply one delivery.", ["source"],
                             buckets=LATENCY_BUCKETS, registry=REGISTRY)
REFUSALS = Counter("gateway_webhook_verification_failures",
                   "Webhook deliveries refused (4xx/503), by the error code answered.",
                   ["source", "reason"], registry=REGISTRY)
READS = Counter("gateway_entitlement_reads", "Entitlement reads, by endpoint and result.",
                ["endpoint", "result"], registry=REGISTRY)
CACHE_LOOKUPS = Counter("gateway_entitlement_cache_lookups",
                        "Entitlement reads the cache (ENTITLEMENT_CACHE_SECONDS) answered, or passed on.",
                        ["outcome"], registry=REGISTRY)
REQUESTS = Counter("gateway_http_requests", "HTTP requests, by route template and status.",
                   ["method", "route", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("gateway_http_request_seconds", "HTTP request latency, by route template.",
                            ["route"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
# Reconcile runs as a job of its own: its samples reach /metrics when it shares the web's
# PROMETHEUS_MULTIPROC_DIR; the gauges show the latest run's value ("mostrecent").
RECONCILED = Counter("gateway_reconcile_subscriptions", "Subscriptions re-read by reconcile, by outcome.",
                     ["source", "outcome"], registry=REGISTRY)
RECONCILE_PROGRESS = Gauge("gateway_reconcile_progress_ratio", "Share of the run's due subscriptions "
                           "checked so far (1: the run is through).", ["source"], registry=REGISTRY,
                           multiprocess_mode="mostrecent")
RECONCILE_RATE = Gauge("gateway_reconcile_rate_per_second", "Subscriptions checked a second in the "
                       "latest run, since it started.", ["source"], registry=REGISTRY,
                       multiprocess_mode="mostrecent")


# The hot series are written in batches, every METRICS_FLUSH_MS (gateway/metrics_batch.py).
BATCH = Batch()


def configure(flush_ms: int) -> None:
    """Write this process's batches every ``flush_ms`` from now on."""
    BATCH.flush_ms = flush_ms
    BATCH.start()


def _write_requests(records: list) -> None:
    """Records ``(method, route, status, seconds, read endpoint, read result)``, from
    observe_request: counted in C (Counter over itemgetter), one write per series."""
    metrics_batch.count_all(REQUESTS, collections.Counter(map(operator.itemgetter(0, 1, 2), records)))
    reads = collections.Counter(map(operator.itemgetter(4, 5), records))
    reads.pop((None, None), None)
    metrics_batch.count_all(READS, reads)
    latencies = collections.defaultdict(list)
    for _, route, _, seconds, _, _ in records:
        latencies[route].append(seconds)
    for route, values in latencies.items():
        metrics_batch.observe_all(metrics_batch.series(REQUEST_SECONDS, (route,)), values)


_note = BATCH.stream(metrics_batch.write_samples)
_note_request = BATCH.stream(_write_requests)


def observe_request(method: str, route: str, status: int, seconds: float, read: tuple = (None, None)) -> None:
    """One answered request; ``read``: an entitlement read's endpoint and result."""
    _note_request((method, route, status, seconds, *read))


def observe_delivery(source: str, event_type: str, outcome: str, seconds: float) -> None:
    """One answered delivery (called by the ingest use case, so the retry worker's
    replays are not counted as deliveries)."""
    _note((DELIVERIES, (source, event_type, outcome), 1))
    _note((DELIVERY_SECONDS, (source,), seconds))


def observe_refusal(source: str, reason: str) -> None:
    _note((REFUSALS, (source if source in SOURCES else "unknown", reason), 1))


def observe_cache_lookup(hit: bool) -> None:
    _note((CACHE_LOOKUPS, ("hit" if hit else "miss",), 1))


def observe_reconcile(source: str, outcome: str, progress: float, rate: float) -> None:
    # A job's, not a request's: written at once (the gauges keep the latest value, not a sum).
    RECONCILED.labels(source, outcome).inc()
    RECONCILE_PROGRESS.labels(source).set(progress)
    RECONCILE_RATE.labels(source).set(rate)


def _read(failure: str, read):
    """``read()``, or None, logged as ``failure``, while the database cannot be reached:
    the scrape then answers without that gauge rather than failing whole."""
    from gateway.store.port import StoreUnavailable

    try:
        return read()
    except StoreUnavailable as exc:
        log.warning(failure, extra={"fields": {"error": str(exc)}})
        return None


class BacklogCollector:
    """``gateway_events_backlog{source,status}``: deferred and failed events, counted in
    the event log when scraped. Every source and status is present, zero included, so
    an alert on the series never sees it vanish."""

    def __init__(self, store) -> None:
        self.store = store

    def collect(self):
        counts = _read("backlog not counted", self._counts)
        if counts is None:
            return
        gauge = GaugeMetricFamily("gateway_events_backlog", "Events waiting for a retry (deferred) "
                                  "or given up on (failed), by source.", labels=["source", "status"])
        for source in sorted(set(SOURCES) | {s for s, _ in counts}):
            for status in BACKLOG_STATUSES:
                gauge.add_metric([source, status], counts.get((source, status), 0))
        yield gauge

    def _counts(self) -> dict[tuple[str, str], int]:
        with self.store.transaction() as tx:
            return tx.count_events(BACKLOG_STATUSES)


class FeedReadersCollector:
    """``gateway_feed_reader_behind{reader,name}``: 1 for a reader of the feed that is
    behind it (enabled again after the retention deleted events it had not read; it does
    nothing until an operator skips the gap), else 0. Read from the database when scraped,
    whichever process runs the reader: every enabled webhook endpoint (``reader="webhook"``)
    and the Cognito sign-out while it is on (``reader="sign_out"``)."""

    def __init__(self, store, settings) -> None:
        self.store, self.settings = store, settings

    def collect(self):
        readers = _read("feed readers not read", self._readers)
        if readers is None:
            return
        gauge = GaugeMetricFamily("gateway_feed_reader_behind", "1: the reader is behind the feed (events it "
                                  "had not read were pruned) and does nothing until its gap is skipped.",
                                  labels=["reader", "name"])
        for (reader, name), is_behind in sorted(readers.items()):
            gauge.add_metric([reader, name], int(is_behind))
        yield gauge

    def _readers(self) -> dict[tuple[str, str], bool]:
        from gateway.jobs import sign_out
        from gateway.store.outbox import Outbox

        outbox = Outbox.of(self.store)
        enabled, behind = [e.name for e in outbox.endpoints() if e.enabled], outbox.behind(enabled_only=True)
        readers = {("webhook", name): name in behind for name in enabled}
        if self.settings is not None and sign_out.enabled(self.settings):
            readers["sign_out", sign_out.CURSOR] = sign_out.behind(self.store) is not None
        return readers


class ParkedDeliveriesCollector:
    """``gateway_webhook_deliveries_parked{name,reason}``: each endpoint's outgoing webhook
    deliveries parked ``failed``, each holding back its user's later ones until an operator
    acts. ``reason="event_gone"``: its event was deleted, so it can never be sent (resync
    the user, then ``flask webhooks drop``); ``"retries_exhausted"``: it failed for three
    days (fix the receiver, then replay). Read from the database when scraped; every
    endpoint and reason is present, zero included."""

    def __init__(self, store) -> None:
        self.store = store

    def collect(self):
        from gateway.store.outbox import Outbox

        outbox = Outbox.of(self.store)
        found = _read("parked webhook deliveries not counted", lambda: ({e.name for e in outbox.endpoints()},
                                                                        outbox.parked()))
        if found is None:
            return
        names, parked = found
        gauge = GaugeMetricFamily("gateway_webhook_deliveries_parked", "Outgoing webhook deliveries parked "
                                  "failed, holding back their users' later ones until an operator acts.",
                                  labels=["name", "reason"])
        for name in sorted(names | set(parked)):
            count, gone = parked.get(name, (0, 0))
            gauge.add_metric([name, "event_gone"], gone)
            gauge.add_metric([name, "retries_exhausted"], count - gone)
        yield gauge


def multiprocess_dir() -> str | None:
    # Not a setting of ours (gateway/config.py): prometheus_client reads this variable from the
    # process environment itself (when imported, when a worker opens its sample files, and
    # at each scrape), and a .env file never reaches it. The exposition must follow the same
    # reading, so it reads the same place.
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition(store, settings=None) -> bytes:
    """The text of one scrape: every worker's samples (or this process's), the backlog, the
    feed's readers behind it and the parked webhook deliveries. This process's samples are
    written first; another worker's are at most METRICS_FLUSH_MS old."""
    BATCH.flush()
    registry = CollectorRegistry()
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(BacklogCollector(store))
    registry.register(FeedReadersCollector(store, settings))
    registry.register(ParkedDeliveriesCollector(store))
    return generate_latest(registry)


class _Forward:
    """Hands a scrape registry the samples of this process's registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self):
        return self.source.collect()
