"""What every request leaves behind (gateway/web/access.py): one access line and its metrics,
timed from the request's start, and no delivery's users noted by an earlier request."""
from __future__ import annotations

import logging
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import logs

API_KEY = "gk_test_" + "a" * 24
METRICS_TOKEN = "access-scrape-secret"
READ = "/v1/users/<user_sub>/entitlements"


@pytest.fixture
def app(make_app):
    return make_app(GATEWAY_API_KEYS=API_KEY, METRICS_TOKEN=METRICS_TOKEN, LOG_LEVEL="INFO")


def counted(client) -> dict[tuple, float]:
    """``{(sample name, sorted label items): value}`` of a scrape (it writes the samples
    its worker holds first)."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def grown(before: dict, after: dict, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(value - before.get(key, 0) for key, value in after.items() if key[0] == name and wanted <= set(key[1]))


def access_lines(caplog) -> list[dict]:
    return [record.fields for record in caplog.records if record.name == "gateway.access"]


def test_each_read_writes_its_access_line_and_its_metrics(app, caplog):
    client = app.test_client()
    before = counted(client)
    caplog.set_level(logging.INFO, logger="gateway.access")
    for authorization in (f"Bearer {API_KEY}", f"Bearer {API_KEY}", "Bearer wrong"):
        client.get("/v1/users/u1/entitlements", headers={"Authorization": authorization})
    lines = access_lines(caplog)
    after = counted(client)
    assert [(line["path"], line["status"], line.get("user"), line.get("error")) for line in lines] == [
        (READ, 200, "u1", None), (READ, 200, "u1", None), (READ, 401, None, "invalid_api_key")]
    assert all(line["method"] == "GET" and line["ms"] >= 0 for line in lines)
    assert grown(before, after, "gateway_http_requests_total", route=READ, status="200", method="GET") == 2
    assert grown(before, after, "gateway_http_requests_total", route=READ, status="401", method="GET") == 1
    assert grown(before, after, "gateway_http_request_seconds_count", route=READ) == 3
    assert grown(before, after, "gateway_entitlement_reads_total", endpoint="user", result="ok") == 2
    assert grown(before, after, "gateway_entitlement_reads_total", endpoint="user", result="invalid_api_key") == 1


def test_the_time_written_covers_the_whole_request(app, caplog):
    app.add_url_rule("/slow-probe", "slow_probe", lambda: (time.sleep(0.05), "")[1])  # a test's own route
    client = app.test_client()
    before = counted(client)
    caplog.set_level(logging.INFO, logger="gateway.access")
    assert client.get("/slow-probe").status_code == 200
    (line,) = access_lines(caplog)
    assert line["path"] == "/slow-probe" and line["ms"] >= 50
    assert grown(before, counted(client), "gateway_http_request_seconds_sum", route="/slow-probe") >= 0.05


def test_a_request_starts_without_the_users_noted_before_it_on_its_thread(app):
    # A delivery that failed after noting its users leaves them on the thread, which the
    # next delivery it serves must not log as its own.
    app.add_url_rule("/users-probe", "users_probe", lambda: {"users": logs.take_users()})
    client = app.test_client()
    logs.note_users({"left-over"})
    assert client.get("/users-probe").get_json() == {"users": []}
