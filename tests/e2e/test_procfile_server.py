"""The gateway as deployed: Procfile release and web (gunicorn), spoken to over real HTTP."""
from __future__ import annotations

import http.client
import json
import threading
from urllib.parse import urlsplit

import pytest

from devtools import revenuecat as rc
from tests.e2e.conftest import API_KEY
from tests.support.procfile import serve


@pytest.fixture
def gateway(database_url):
    env = {"DATABASE_URL": database_url, "REVENUECAT_WEBHOOK_AUTH": rc.AUTH, "GATEWAY_API_KEYS": API_KEY,
           "MAX_BODY_BYTES": "65536", "LOG_LEVEL": "WARNING"}
    with serve(env) as (url, process):
        yield urlsplit(url).port


def call(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"null")


def test_signed_deliveries_over_http_drive_the_entitlement_api(gateway):
    evt = rc.event("INITIAL_PURCHASE", user="http-user")
    headers = {"Authorization": rc.AUTH, "Content-Type": "application/json"}
    assert call(gateway, "POST", "/webhooks/revenuecat", rc.body(evt), headers) == (200, {"status": "processed"})
    assert call(gateway, "POST", "/webhooks/revenuecat", rc.body(evt), headers) == (200, {"status": "duplicate"})
    status, answer = call(gateway, "GET", "/v1/users/http-user/entitlements",
                          headers={"Authorization": f"Bearer {API_KEY}"})
    assert status == 200 and answer["is_premium"] is True
    assert call(gateway, "GET", "/readyz")[0] == 200


def test_chunked_body_past_the_limit_is_refused_over_http(gateway):
    connection = http.client.HTTPConnection("127.0.0.1", gateway, timeout=10)
    connection.putrequest("POST", "/webhooks/revenuecat")
    connection.putheader("Authorization", rc.AUTH)
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    chunk = b" " * 16384
    try:
        for _ in range(8):  # 128 KiB against a 64 KiB limit
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may answer and close before the whole body is sent
    response = connection.getresponse()
    assert response.status == 413


def test_concurrent_senders_with_duplicates_record_each_delivery_once(gateway):
    events = [rc.event("RENEWAL", user=f"burst-{n % 10}", transaction=f"t{n % 10}", at_ms=1_900_000_000_000 + n)
              for n in range(60)]
    deliveries = events + events[::3]  # every third one twice
    outcomes, lock = [], threading.Lock()

    def send(batch):
        for evt in batch:
            status, body = call(gateway, "POST", "/webhooks/revenuecat", rc.body(evt),
                                {"Authorization": rc.AUTH})
            with lock:
                outcomes.append((status, body["status"]))

    threads = [threading.Thread(target=send, args=(deliveries[i::6],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(status == 200 for status, _ in outcomes)
    assert sum(1 for _, s in outcomes if s == "processed") == 60
    assert sum(1 for _, s in outcomes if s == "duplicate") == 20
    for n in range(10):
        _, answer = call(gateway, "GET", f"/v1/users/burst-{n}/entitlements",
                         headers={"Authorization": f"Bearer {API_KEY}"})
        assert answer["is_premium"] is True
