"""/metrics: deliveries, refusals, reads and the backlog, in one process and under gunicorn."""
from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools import revenuecat as rc
from tests.e2e.conftest import API_KEY
from tests.support.events import record_event
from tests.support.procfile import serve

HEADERS = {"Authorization": rc.AUTH, "Content-Type": "application/json"}
METRICS_TOKEN = "scrape-secret"


def samples(text: str, name: str) -> dict[tuple, float]:
    """``{sorted label items: value}`` of one sample name in an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def total(text: str, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for k, v in samples(text, name).items() if wanted <= set(k))


@pytest.fixture
def app(make_app):
    return make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, GATEWAY_API_KEYS=API_KEY, METRICS_TOKEN=METRICS_TOKEN)


def scrape(client, **headers) -> str:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}", **headers})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_deliveries_refusals_and_reads_are_counted(app):
    client = app.test_client()
    before = scrape(client)
    for n in range(3):
        client.post("/webhooks/revenuecat", data=rc.body(rc.event("RENEWAL", user="m1", at_ms=n + 1)), headers=HEADERS)
    client.post("/webhooks/revenuecat", data=rc.body(rc.event("RENEWAL")), headers={"Authorization": "Bearer nope"})
    client.get("/v1/users/m1/entitlements", headers={"Authorization": f"Bearer {API_KEY}"})
    client.get("/v1/users/m1/entitlements", headers={"Authorization": "Bearer wrong"})
    after = scrape(client)

    def grew(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("gateway_webhook_deliveries_total", source="revenuecat", type="RENEWAL", outcome="processed") == 3
    assert grew("gateway_webhook_processing_seconds_count", source="revenuecat") == 3
    assert grew("gateway_webhook_verification_failures_total", source="revenuecat",
                reason="invalid_authorization") == 1
    assert grew("gateway_entitlement_reads_total", endpoint="user", result="ok") == 1
    assert grew("gateway_entitlement_reads_total", endpoint="user", result="invalid_api_key") == 1
    assert grew("gateway_http_requests_total", route="/webhooks/<source>", status="401") == 1


def test_a_made_up_http_method_cannot_add_series(app):
    client = app.test_client()
    before = total(scrape(client), "gateway_http_requests_total", method="OTHER", route="unmatched")
    for method in ("FOOBAR", "XYZZY1", "PROPFIND"):
        client.open("/v1/anything", method=method)
    text = scrape(client)
    methods = {dict(labels)["method"] for labels in samples(text, "gateway_http_requests_total")}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}
    # The counters are the process's: other tests in it (the fuzzers) made up methods too.
    assert total(text, "gateway_http_requests_total", method="OTHER", route="unmatched") - before == 3


def test_backlog_is_read_from_the_event_log_at_scrape_time(app):
    with app.extensions["gateway"].store.transaction() as tx:
        for n, status in enumerate(["deferred", "deferred", "failed", "processed"]):
            record_event(tx, source="google", event_id=f"m{n}", event_type="4", payload="{}", data={},
                         received_at=datetime.now(timezone.utc), status=status)
    text = scrape(app.test_client())
    assert total(text, "gateway_events_backlog", source="google", status="deferred") == 2
    assert total(text, "gateway_events_backlog", source="google", status="failed") == 1
    assert total(text, "gateway_events_backlog", source="stripe", status="failed") == 0


def test_metrics_token_is_required_when_set(make_app):
    client = make_app(METRICS_TOKEN=METRICS_TOKEN).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer other"}).status_code == 401
    assert "gateway_events_backlog" in scrape(client)


def test_metrics_are_disabled_without_a_token(make_app):
    """The gateway is reachable from the internet (the stores must reach its webhooks):
    without METRICS_TOKEN, /metrics would show anyone the deliveries counted by type
    (refunds, disputes) and run a count on the event log per request. Like the server API
    without GATEWAY_API_KEYS, it is disabled, and says what to set."""
    answer = make_app().test_client().get("/metrics")
    assert answer.status_code == 503 and answer.get_json()["error"] == "metrics_not_configured"
    assert "METRICS_TOKEN" in answer.get_json()["message"] and b"gateway_" not in answer.data


def call(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read().decode()


# A worker writes its samples every METRICS_FLUSH_MS (1 s by default): what another worker's
# scrape reads is at most that old. Half a second more for a busy machine's scheduling.
FLUSH_BOUND = 1.5


def files_total(directory: Path, name: str, **labels) -> float:
    """What a scrape by any other worker reads: every worker's files in the directory."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return total(generate_latest(registry).decode(), name, **labels)


def await_files(directory: Path, count: int, *series: tuple) -> None:
    """Until each ``(name, labels)`` totals ``count`` in the files, within FLUSH_BOUND. A flush
    writes one series after another: a look in the middle of one sees some and not yet the
    others, so all are awaited together."""
    answered = time.monotonic()
    while any(files_total(directory, name, **labels) != count for name, labels in series):
        assert time.monotonic() - answered < FLUSH_BOUND, f"the samples are not in the files within {FLUSH_BOUND} s"
        time.sleep(0.02)


def burst(port, size: int, offset: int) -> list[int]:
    """``size`` signed deliveries from 8 concurrent senders, one connection each; the statuses."""
    events = [rc.event("RENEWAL", user=f"w{n % 6}", transaction=f"w{n % 6}", at_ms=1_900_000_000_000 + offset + n)
              for n in range(size)]
    statuses = []

    def send(batch):
        for evt in batch:
            statuses.append(call(port, "POST", "/webhooks/revenuecat", rc.body(evt), HEADERS)[0])

    threads = [threading.Thread(target=send, args=(events[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_counters_add_up_across_gunicorn_workers(database_url, tmp_path):
    size, metrics_dir = 48, tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {"DATABASE_URL": database_url, "REVENUECAT_WEBHOOK_AUTH": rc.AUTH, "LOG_LEVEL": "WARNING",
           "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "METRICS_TOKEN": METRICS_TOKEN}
    with serve(env, workers=2) as (url, _):
        port, sent = urlsplit(url).port, 0
        # Until both workers have served part of it: a worker still booting may miss a burst.
        while sent == 0 or (len(worker_files(metrics_dir)) < 2 and sent < 5 * size):
            assert burst(port, size, sent) == [200] * size
            sent += size
        assert len(worker_files(metrics_dir)) == 2
        await_files(metrics_dir, sent, ("gateway_webhook_deliveries_total", {"source": "revenuecat"}),
                    ("gateway_webhook_processing_seconds_count", {"source": "revenuecat"}))
        # Whichever worker answers a scrape, it reports every worker's deliveries.
        for _ in range(4):
            status, text = call(port, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert status == 200
            assert total(text, "gateway_webhook_deliveries_total", source="revenuecat") == sent
            assert total(text, "gateway_webhook_processing_seconds_count", source="revenuecat") == sent


def reads(port: int, count: int) -> None:
    """``count`` API-key reads of one user, 4 at once, each on a connection of its own."""
    def read(_):
        assert call(port, "GET", "/v1/users/m1/entitlements", headers={"Authorization": f"Bearer {API_KEY}"})[0] == 200

    threads = [threading.Thread(target=lambda: [read(n) for n in range(count // 4)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def read_env(database_url: str, metrics_dir: Path, **more) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "GATEWAY_API_KEYS": API_KEY, "LOG_LEVEL": "WARNING",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "METRICS_TOKEN": METRICS_TOKEN, **more}


def test_a_workers_samples_reach_every_scrape_within_the_flush_interval(database_url, tmp_path):
    """A request only notes its samples; the worker's thread writes them to the files
    every METRICS_FLUSH_MS, idle or not, so a scrape answered by another worker is never
    more than that late about them (gateway/metrics_batch.py)."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    with serve(read_env(database_url, metrics_dir), workers=2) as (url, _):
        port = urlsplit(url).port
        reads(port, 40)
        await_files(metrics_dir, 40, ("gateway_entitlement_reads_total", {"endpoint": "user", "result": "ok"}),
                    ("gateway_http_request_seconds_count", {"route": "/v1/users/<user_sub>/entitlements"}))
        status, text = call(port, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert status == 200 and total(text, "gateway_entitlement_reads_total", endpoint="user", result="ok") == 40


def test_a_scrape_writes_its_workers_samples_first_and_a_stopping_worker_writes_the_rest(database_url, tmp_path):
    """With the longest interval allowed, nothing waits for it: the worker answering a scrape
    writes its own samples before reading the files, and gunicorn's graceful stop lets a
    worker write what it holds."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    with serve(read_env(database_url, metrics_dir, METRICS_FLUSH_MS="10000"), workers=1) as (url, _):
        port = urlsplit(url).port
        reads(port, 8)
        status, text = call(port, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert status == 200 and total(text, "gateway_entitlement_reads_total", endpoint="user", result="ok") == 8
        reads(port, 12)
    assert files_total(metrics_dir, "gateway_entitlement_reads_total", endpoint="user", result="ok") == 20
    assert files_total(metrics_dir, "gateway_http_requests_total", route="/v1/users/<user_sub>/entitlements",
                       status="200") == 20


def worker_files(directory: Path) -> set[str]:
    """The pids of the workers that have counted something (``counter_<pid>.db``)."""
    return {p.stem.rsplit("_", 1)[-1] for p in directory.glob("counter_*.db")}


def test_a_reloaded_gunicorn_still_removes_the_metrics_directory_it_made(database_url, tmp_path):
    """gunicorn reads its config again on HUP, with the directory's variable already set."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"DATABASE_URL": database_url, "REVENUECAT_WEBHOOK_AUTH": rc.AUTH, "LOG_LEVEL": "WARNING",
           "TMPDIR": str(scratch)}
    with serve(env, workers=1) as (url, web):
        port = urlsplit(url).port
        assert call(port, "GET", "/healthz")[0] == 200
        assert len(list(scratch.glob("gateway-metrics-*"))) == 1
        os.kill(gunicorn_master(web.pid), signal.SIGHUP)
        time.sleep(2)  # the old worker stops, a new one starts from the config read again
        assert call(port, "GET", "/healthz")[0] == 200
    assert list(scratch.glob("gateway-metrics-*")) == []


def gunicorn_master(pid: int) -> int:
    """The Procfile's process itself, or the child of its shell."""
    if Path(f"/proc/{pid}/comm").read_text().strip() not in ("sh", "dash", "bash"):
        return pid
    return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
