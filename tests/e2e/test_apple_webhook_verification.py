"""What POST /webhooks/apple refuses, and that a refusal stores nothing."""
from __future__ import annotations

import base64
import json
import uuid

import pytest

from devtools.apple_ocsp import OcspResponder
from devtools.apple_pki import LEAF_OID, mint_chain
from devtools.apple_store import AppStore
from gateway.config import ConfigError
from tests.e2e.conftest import API_KEY, count_events

USER = str(uuid.uuid4())


@pytest.fixture(scope="module")
def chain():
    return mint_chain()


@pytest.fixture
def store(chain):
    return AppStore(chain)


@pytest.fixture
def root_path(chain, tmp_path):
    return chain.write_root(tmp_path)


@pytest.fixture
def app(make_app, store, root_path):
    return make_app(GATEWAY_API_KEYS=API_KEY, **store.env(root_path))


def renewal_body(store, **transaction) -> bytes:
    return store.body(store.notification("DID_RENEW", transaction=store.transaction("3000", token=USER, **transaction)))


def refused(app, body: bytes, status: int, code: str | None = None):
    response = app.test_client().post("/webhooks/apple", data=body, content_type="application/json")
    assert response.status_code == status, response.get_data(as_text=True)
    if code:
        assert response.get_json()["error"] == code
    assert count_events(app) == 0


def _tamper(signed: str) -> str:
    header, payload, signature = signed.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["notificationType"] = "REFUND"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return ".".join([header, forged, signature])


def test_chain_of_another_root_is_401(app, store):
    refused(app, store.body(store.notification("TEST"), chain=mint_chain()), 401)


def test_chain_of_another_root_is_401_even_after_a_good_chain_was_cached(app, store):
    assert app.test_client().post("/webhooks/apple", data=store.body(store.notification("TEST"))).status_code == 200
    forged = mint_chain()
    # The forger copies the trusted chain into x5c but signs with a key of its own.
    response = app.test_client().post("/webhooks/apple", data=json.dumps({"signedPayload": forged.sign(
        store.notification("TEST"), x5c=store.chain.x5c)}))
    assert response.status_code == 401


def test_tampered_payload_is_401(app, store):
    signed = json.loads(renewal_body(store))["signedPayload"]
    refused(app, json.dumps({"signedPayload": _tamper(signed)}).encode(), 401)


def test_tampered_payload_is_401_on_a_warm_chain_cache(app, store):
    body = renewal_body(store)
    assert app.test_client().post("/webhooks/apple", data=body).status_code == 200
    signed = json.loads(store.body(store.notification("TEST")))["signedPayload"]
    response = app.test_client().post("/webhooks/apple", data=json.dumps({"signedPayload": _tamper(signed)}))
    assert response.status_code == 401 and count_events(app) == 1


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_notification_for_another_bundle_id_is_401(app, chain, store, warm):
    if warm:
        assert app.test_client().post("/webhooks/apple", data=store.body(store.notification("TEST"))).status_code == 200
    other = AppStore(chain, bundle_id="com.example.other")
    response = app.test_client().post("/webhooks/apple", data=other.body(other.notification("TEST")))
    assert (response.status_code, response.get_json()["error"]) == (401, "apple_invalid_app_identifier")
    assert count_events(app) == int(warm)


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_production_notification_for_another_app_id_is_401(app, chain, warm):
    production = AppStore(chain, environment="Production")
    if warm:
        assert app.test_client().post("/webhooks/apple", data=production.body(
            production.notification("TEST"))).status_code == 200
    other = AppStore(chain, environment="Production", app_apple_id=999)
    response = app.test_client().post("/webhooks/apple", data=other.body(other.notification("TEST")))
    assert (response.status_code, response.get_json()["error"]) == (401, "apple_invalid_app_identifier")
    assert count_events(app) == int(warm)


def test_transaction_of_another_bundle_inside_a_good_notification_is_401(app, store):
    refused(app, renewal_body(store, bundleId="com.example.other"), 401)


def test_transaction_signed_by_another_chain_inside_a_good_notification_is_401(app, store):
    notification = store.notification("DID_RENEW")
    notification["data"]["signedTransactionInfo"] = mint_chain().sign(store.transaction("3000", token=USER))
    refused(app, store.body(notification), 401)


def test_renewal_info_of_another_environment_is_401(app, store, chain):
    production = AppStore(chain, environment="Production")
    notification = store.notification("DID_RENEW", transaction=store.transaction("3000", token=USER),
                                      renewal=production.renewal("3000"))
    refused(app, store.body(notification), 401)


def test_environment_not_accepted_is_401(make_app, store, root_path):
    app = make_app(APPLE_ENVIRONMENTS="Production", **store.env(root_path))
    refused(app, store.body(store.notification("TEST")), 401, "apple_invalid_environment")


def test_leaf_without_apple_receipt_signing_oid_is_401(make_app, tmp_path):
    bad = mint_chain(leaf_oid="1.2.3.4")
    store = AppStore(bad)
    refused(make_app(**store.env(bad.write_root(tmp_path))), store.body(store.notification("TEST")), 401)


def test_intermediate_without_apple_wwdr_oid_is_401(make_app, tmp_path):
    bad = mint_chain(intermediate_oid=LEAF_OID)
    store = AppStore(bad)
    refused(make_app(**store.env(bad.write_root(tmp_path))), store.body(store.notification("TEST")), 401)


@pytest.mark.parametrize("body, status", [
    (b"not json", 400), (b"\xff\xfe", 400), (b"[]", 400), (b"{}", 400), (b'{"signedPayload": 7}', 400),
    (b'{"signedPayload": "junk"}', 401), (b'{"signedPayload": "a.b.c"}', 401), (b"", 400),
])
def test_junk_body_is_refused(app, body, status):
    refused(app, body, status)


def test_notification_without_uuid_is_400(app, store):
    notification = store.notification("TEST")
    del notification["notificationUUID"]
    refused(app, store.body(notification), 400)


def test_source_without_bundle_id_answers_503_not_configured(make_app, store):
    refused(make_app(), store.body(store.notification("TEST")), 503, "source_not_configured")


def test_production_without_app_id_stops_the_start(make_app, root_path):
    with pytest.raises(ConfigError, match="APPLE_APP_APPLE_ID"):
        make_app(APPLE_BUNDLE_ID="com.example.app", APPLE_ROOT_CERTS=root_path)


def test_sandbox_only_needs_no_app_id(make_app, store, root_path):
    app = make_app(APPLE_BUNDLE_ID="com.example.app", APPLE_ROOT_CERTS=root_path, APPLE_ENVIRONMENTS="Sandbox")
    assert app.test_client().post("/webhooks/apple", data=store.body(store.notification("TEST"))).status_code == 200


@pytest.fixture(scope="module")
def responder():
    with OcspResponder() as running:
        yield running


@pytest.fixture
def ocsp(responder):
    responder.mode = "good"
    return responder


@pytest.fixture
def online(make_app, ocsp, tmp_path):
    chain = mint_chain(ocsp_url=ocsp.url)
    ocsp.serve(chain)
    store = AppStore(chain)
    return make_app(APPLE_ONLINE_CHECKS="true", **store.env(chain.write_root(tmp_path))), store


def test_online_checks_accept_a_chain_the_responder_says_is_good(online):
    app, store = online
    assert app.test_client().post("/webhooks/apple", data=renewal_body(store)).get_json() == {"status": "processed"}


def test_online_checks_refuse_a_revoked_chain_with_401(online, ocsp):
    ocsp.mode = "revoked"
    refused(online[0], renewal_body(online[1]), 401)


def test_revocation_check_that_cannot_be_made_is_503_so_apple_retries(online, ocsp):
    ocsp.mode = "down"
    refused(online[0], renewal_body(online[1]), 503, "apple_revocation_check_unavailable")
