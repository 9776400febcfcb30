"""Outgoing webhook endpoints in the admin: only a signed-in operator's form changes them,
never to an address inside the network unless allowed; failed deliveries are replayed."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from devtools import revenuecat as rc
from gateway.outbound.worker import Deliverer
from gateway.store.outbox import Outbox
from tests.e2e.test_admin import PASSWORD, SECRET_KEY, sign_in, token
from tests.support.webhook_receiver import Receiver, free_port, secret


def admin_app(make_app, **env):
    return make_app(ADMIN_PASSWORD=PASSWORD, ADMIN_SECRET_KEY=SECRET_KEY, REVENUECAT_WEBHOOK_AUTH=rc.AUTH, **env)


def endpoints(app) -> dict:
    return {e.name: e for e in Outbox.of(app.extensions["gateway"].store).endpoints()}


def form(client, **fields):
    return {"csrf_token": token(client, "/admin/webhooks"), "name": "crm", "url": "https://93.184.215.14/hooks",
            "secrets": secret(), **fields}


def test_signed_out_or_without_the_csrf_token_nothing_changes(make_app):
    client = admin_app(make_app).test_client()
    app = client.application
    fields = {"name": "crm", "url": "https://93.184.215.14/hooks", "secrets": secret()}
    refused = client.post("/admin/webhooks", data=fields)
    assert refused.status_code == 302 and refused.location.startswith("/admin/login")
    assert client.get("/admin/webhooks").status_code == 302
    sign_in(client)
    assert client.post("/admin/webhooks", data=fields).status_code == 400
    assert client.post("/admin/webhooks", data={**fields, "csrf_token": "forged"}).status_code == 403
    assert endpoints(app) == {}
    saved = client.post("/admin/webhooks", data=form(client), follow_redirects=True)
    assert saved.status_code == 200 and "Added endpoint crm." in saved.get_data(as_text=True)
    assert endpoints(app)["crm"].url == "https://93.184.215.14/hooks" and endpoints(app)["crm"].origin == "admin"
    kept = endpoints(app)["crm"].secrets
    edited = client.post("/admin/webhooks", data=form(client, url="https://93.184.215.15/v2", secrets=""),
                         follow_redirects=True)
    assert "Saved endpoint crm." in edited.get_data(as_text=True) and kept[0] not in edited.get_data(as_text=True)
    assert (endpoints(app)["crm"].url, endpoints(app)["crm"].secrets) == ("https://93.184.215.15/v2", kept)
    assert client.post("/admin/webhooks/crm/enabled", data={"enabled": "0"}).status_code == 400
    assert endpoints(app)["crm"].enabled is True
    client.post("/admin/webhooks/crm/enabled", data={"enabled": "0", "csrf_token": token(client, "/admin/webhooks")})
    assert endpoints(app)["crm"].enabled is False


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/hooks", "https://127.0.0.1/hooks",
                                 "https://169.254.169.254/latest/meta-data", "https://[::1]/hooks",
                                 "https://10.1.2.3/hooks"])
def test_an_endpoint_inside_the_network_is_refused_unless_allowed(make_app, url):
    client = admin_app(make_app).test_client()
    sign_in(client)
    refused = client.post("/admin/webhooks", data=form(client, url=url))
    assert refused.status_code == 400 and "Not saved" in refused.get_data(as_text=True)
    assert endpoints(client.application) == {}
    allowed = admin_app(make_app, OUTBOUND_ALLOW_PRIVATE_TARGETS="true").test_client()
    sign_in(allowed)
    assert allowed.post("/admin/webhooks", data=form(allowed, url=url)).status_code == 302
    assert endpoints(allowed.application)["crm"].url == url


def test_a_weak_secret_is_refused_and_an_env_endpoint_is_not_the_admins(make_app):
    env = json.dumps([{"name": "backend", "url": "https://93.184.215.14/env", "secrets": [secret()]}])
    app = admin_app(make_app, OUTBOUND_WEBHOOKS=env)
    Deliverer.build(app.extensions["gateway"]).sync()
    client = app.test_client()
    sign_in(client)
    weak = client.post("/admin/webhooks", data=form(client, secrets="whsec_c2hvcnQ="))
    assert weak.status_code == 400 and "secret 1" in weak.get_data(as_text=True) and "crm" not in endpoints(app)
    assert client.post("/admin/webhooks", data=form(client, name="backend")).status_code == 409
    assert client.post("/admin/webhooks/backend/enabled",
                       data={"enabled": "0", "csrf_token": token(client, "/admin/webhooks")}).status_code == 409
    assert endpoints(app)["backend"].url == "https://93.184.215.14/env" and endpoints(app)["backend"].enabled


def test_the_page_shows_failed_deliveries_and_replays_them_in_order(make_app):
    receiver = Receiver([secret()], port=free_port())  # not listening yet: refused
    app = admin_app(make_app, OUTBOUND_ALLOW_PRIVATE_TARGETS="true")
    client = app.test_client()
    sign_in(client)
    client.post("/admin/webhooks", data=form(client, url=receiver.url, secrets=receiver.secrets[0]))
    deliverer = Deliverer.build(app.extensions["gateway"])
    for kind, at in (("INITIAL_PURCHASE", 0), ("RENEWAL", 1000)):
        evt = rc.event(kind, "user-9", at_ms=int(datetime.now(timezone.utc).timestamp() * 1000) + at)
        client.post("/webhooks/revenuecat", data=rc.body(evt), headers={"Authorization": rc.AUTH})
    start = datetime.now(timezone.utc)
    for step in range(14):
        deliverer.run_once(start + timedelta(hours=6 * step))
    page = client.get("/admin/webhooks").get_data(as_text=True)
    assert re.search(r'<tr id="failed-crm-1">.*?entitlement.granted.*?user-9.*?refused', page, re.S)
    assert '<td class="count-failed">1</td>' in page and '<td class="count-pending">1</td>' in page
    receiver.start()
    try:
        done = client.post("/admin/webhooks/crm/replay", data={"csrf_token": token(client, "/admin/webhooks")},
                           follow_redirects=True)
        assert "Replaying 1 failed delivery of crm." in done.get_data(as_text=True)
        assert deliverer.run_once(start + timedelta(days=4)) == 2
        assert [b["type"] for b in receiver.accepted()] == ["entitlement.granted", "entitlement.renewed"]
    finally:
        receiver.stop()


def test_each_attempt_checks_the_target_again(make_app):
    """An endpoint saved while private targets were allowed is not called once they are not."""
    receiver = Receiver([secret()]).start()
    try:
        allowed = admin_app(make_app, OUTBOUND_ALLOW_PRIVATE_TARGETS="true")
        client = allowed.test_client()
        sign_in(client)
        client.post("/admin/webhooks", data=form(client, url=receiver.url, secrets=receiver.secrets[0]))
        strict = admin_app(make_app)  # the next start, without OUTBOUND_ALLOW_PRIVATE_TARGETS
        deliverer = Deliverer.build(strict.extensions["gateway"])
        evt = rc.event("INITIAL_PURCHASE", "user-3")
        client.post("/webhooks/revenuecat", data=rc.body(evt), headers={"Authorization": rc.AUTH})
        assert deliverer.run_once() == 1 and receiver.attempts == []
        (refused,) = Outbox.of(strict.extensions["gateway"].store).deliveries()
        assert refused.status == "pending" and refused.last_error.startswith("target refused")
    finally:
        receiver.stop()
