"""POST /webhooks/apple through the WSGI app, with notifications signed by a chain minted
for the test and trusted through APPLE_ROOT_CERTS; state read back through the API."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore, now
from tests.e2e.conftest import API_KEY, count_events
from tests.support.events import find_event

USER = str(uuid.uuid4())


@pytest.fixture(scope="module")
def chain():
    return mint_chain()


@pytest.fixture
def store(chain):
    return AppStore(chain)


@pytest.fixture
def app(make_app, store, chain, tmp_path):
    return make_app(GATEWAY_API_KEYS=API_KEY, **store.env(chain.write_root(tmp_path)))


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, body: bytes):
    return client.post("/webhooks/apple", data=body, content_type="application/json")


def premium(api, client, user=USER) -> dict | None:
    return api(client, user)["entitlements"].get("premium")


def subscription(app, key: str):
    with app.extensions["gateway"].store.transaction() as tx:
        return tx.get_subscription("apple", key)


def test_subscribed_notification_makes_the_token_owner_premium(client, api, store):
    expires = now() + timedelta(days=30)
    transaction = store.transaction("1000", token=USER.upper(), expires=expires)
    body = store.body(store.notification("SUBSCRIBED", "INITIAL_BUY", transaction=transaction,
                                         renewal=store.renewal("1000")))
    response = post(client, body)
    assert response.status_code == 200 and response.get_json() == {"status": "processed"}
    answer = api(client, USER)
    assert answer["is_premium"] is True
    assert answer["entitlements"]["premium"] == {
        "active": True, "status": "active", "expires_at": expires.isoformat().replace("+00:00", "Z"),
        "will_renew": True, "source": "apple", "product_id": "com.example.premium.monthly"}


def test_environment_and_raw_type_are_recorded_on_the_subscription(app, client, store):
    body = store.body(store.notification("DID_RENEW", transaction=store.transaction("1001", token=USER)))
    assert post(client, body).status_code == 200
    stored = subscription(app, "1001")
    assert (stored.snapshot.environment, stored.snapshot.raw_status, stored.owner) == ("Sandbox", "DID_RENEW", USER)


def test_production_notification_is_accepted_with_the_app_id(client, api, chain):
    production = AppStore(chain, environment="Production")
    body = production.body(production.notification("DID_RENEW", transaction=production.transaction("1002", token=USER)))
    assert post(client, body).get_json() == {"status": "processed"}
    assert premium(api, client)["active"] is True


def test_redelivery_of_a_notification_is_a_duplicate(app, client, api, store):
    body = store.body(store.notification("DID_RENEW", transaction=store.transaction("1003", token=USER)))
    assert post(client, body).get_json() == {"status": "processed"}
    assert post(client, body).get_json() == {"status": "duplicate"}
    assert count_events(app) == 1
    assert premium(api, client)["active"] is True


def test_late_renewal_does_not_undo_refund(client, api, store):
    renewed_at, refunded_at = now() - timedelta(minutes=10), now() - timedelta(minutes=5)
    renew = store.notification("DID_RENEW", signed=renewed_at,
                               transaction=store.transaction("1004", token=USER, signed=renewed_at))
    refund = store.notification("REFUND", signed=refunded_at, transaction=store.transaction(
        "1004", token=USER, signed=refunded_at, revoked=refunded_at))
    assert post(client, store.body(refund)).get_json() == {"status": "processed"}
    assert post(client, store.body(renew)).get_json() == {"status": "processed"}
    assert premium(api, client) == {**premium(api, client), "active": False, "status": "revoked"}
    assert api(client, USER)["is_premium"] is False


def test_a_refund_of_a_past_period_leaves_the_current_one(client, api, store):
    """Apple's REFUND carries the refunded transaction, which may be an old renewal: its
    revocation is that period's. The current paid period stands, and so it does when the
    refund is reversed or declined."""
    renewed = now() - timedelta(days=1)
    current = store.notification("DID_RENEW", signed=renewed, transaction=store.transaction(
        "1006", token=USER, transaction_id="1006-2", signed=renewed, expires=now() + timedelta(days=29)))
    assert post(client, store.body(current)).get_json() == {"status": "processed"}
    past_period = dict(token=USER, transaction_id="1006-1", signed=now(),
                       expires=now() - timedelta(days=30))
    for kind, extra in (("REFUND", {"revoked": now()}), ("REFUND_REVERSED", {}), ("REFUND_DECLINED", {})):
        about_the_past = store.notification(kind, signed=now(), transaction=store.transaction("1006", **past_period,
                                                                                              **extra))
        assert post(client, store.body(about_the_past)).get_json() == {"status": "ignored"}, kind
    assert (premium(api, client)["status"], premium(api, client)["active"]) == ("active", True)
    refund_now = store.notification("REFUND", signed=now(), transaction=store.transaction(
        "1006", token=USER, transaction_id="1006-2", signed=now(), expires=now() + timedelta(days=29), revoked=now()))
    assert post(client, store.body(refund_now)).get_json() == {"status": "processed"}
    assert premium(api, client)["status"] == "revoked"


def test_grace_period_grants_until_its_end_then_billing_retry_does_not(client, api, store):
    lapsed, grace_end = now() - timedelta(hours=1), now() + timedelta(days=6)
    failed = store.notification("DID_FAIL_TO_RENEW", "GRACE_PERIOD",
                                transaction=store.transaction("1005", token=USER, expires=lapsed),
                                renewal=store.renewal("1005", retry=True, grace_until=grace_end))
    assert post(client, store.body(failed)).get_json() == {"status": "processed"}
    granted = premium(api, client)
    assert (granted["status"], granted["active"]) == ("grace_period", True)
    assert granted["expires_at"] == grace_end.isoformat().replace("+00:00", "Z")
    expired = store.notification("GRACE_PERIOD_EXPIRED", signed=now() + timedelta(seconds=1),
                                 transaction=store.transaction("1005", token=USER, expires=lapsed),
                                 renewal=store.renewal("1005", retry=True, grace_until=now() - timedelta(seconds=1)))
    assert post(client, store.body(expired)).get_json() == {"status": "processed"}
    assert (premium(api, client)["status"], api(client, USER)["is_premium"]) == ("billing_retry", False)


def test_billing_retry_without_grace_period_takes_access_away(client, api, store):
    failed = store.notification("DID_FAIL_TO_RENEW", transaction=store.transaction(
        "1006", token=USER, expires=now() - timedelta(hours=1)), renewal=store.renewal("1006", retry=True))
    assert post(client, store.body(failed)).get_json() == {"status": "processed"}
    assert premium(api, client) == {**premium(api, client), "status": "billing_retry", "active": False,
                                    "will_renew": True}


def _z(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# The App Store has sent DID_FAIL_TO_RENEW:GRACE_PERIOD whose renewal info has no
# gracePeriodExpiresDate (developer forums, thread 792548), and one whose renewal info says
# isInBillingRetryPeriod false beside a grace end to come (thread 749813). The notification's
# data.status, 4 (billing grace period) as of its signedDate, or, in payloads that predate the
# field, the GRACE_PERIOD subtype, says the subscription is in its grace period all the same.
GRACE_WITHOUT_ITS_END = [
    pytest.param(4, {"retry": True}, None, id="status-4-no-grace-date"),
    pytest.param(None, {"retry": True}, None, id="no-status-no-grace-date"),
    pytest.param(4, {"retry": False}, timedelta(days=5), id="status-4-grace-date-not-retrying"),
    pytest.param(None, {"retry": False}, timedelta(days=5), id="no-status-grace-date-not-retrying"),
]


@pytest.mark.parametrize("status, renewal, grace_left", GRACE_WITHOUT_ITS_END)
def test_a_grace_period_the_renewal_info_does_not_spell_out_still_grants(client, api, store, status, renewal,
                                                                       grace_left):
    lapsed = now() - timedelta(hours=1)
    if grace_left:
        renewal["grace_until"] = now() + grace_left
    failed = store.notification("DID_FAIL_TO_RENEW", "GRACE_PERIOD", status=status,
                                transaction=store.transaction("1010", token=USER, expires=lapsed),
                                renewal=store.renewal("1010", **renewal))
    assert post(client, store.body(failed)).get_json() == {"status": "processed"}
    granted = premium(api, client)
    # Without a date, the shortest grace period Apple offers (3 days) from the lapsed period's end.
    assert (granted["status"], granted["active"], granted["expires_at"]) == (
        "grace_period", True, _z(renewal.get("grace_until") or lapsed + timedelta(days=3)))
    ended = store.notification("GRACE_PERIOD_EXPIRED", signed=now() + timedelta(seconds=1), status=3,
                               transaction=store.transaction("1010", token=USER, expires=lapsed),
                               renewal=store.renewal("1010", retry=True))
    assert post(client, store.body(ended)).get_json() == {"status": "processed"}
    assert (premium(api, client)["status"], api(client, USER)["is_premium"]) == ("billing_retry", False)


def test_the_grace_period_assumed_without_a_date_is_the_configured_one(make_app, store, chain, tmp_path, api):
    client = make_app(GATEWAY_API_KEYS=API_KEY, APPLE_GRACE_PERIOD_DAYS="16",
                      **store.env(chain.write_root(tmp_path))).test_client()
    lapsed = now() - timedelta(days=10)
    failed = store.notification("DID_FAIL_TO_RENEW", "GRACE_PERIOD", status=4,
                                transaction=store.transaction("1011", token=USER, expires=lapsed),
                                renewal=store.renewal("1011", retry=True))
    assert post(client, store.body(failed)).get_json() == {"status": "processed"}
    assert (premium(api, client)["status"], premium(api, client)["expires_at"]) == (
        "grace_period", _z(lapsed + timedelta(days=16)))


def test_a_notification_during_a_grace_period_longer_than_assumed_keeps_it(client, api, store):
    """On day 5 of a grace period without its date, turning auto-renew off: status 4 says the
    grace period goes on, so it is not the 3 days assumed but the next length Apple offers, 16."""
    lapsed = now() - timedelta(days=5)
    off = store.notification("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED", status=4,
                             transaction=store.transaction("1013", token=USER, expires=lapsed),
                             renewal=store.renewal("1013", retry=True, auto_renew=False))
    assert post(client, store.body(off)).get_json() == {"status": "processed"}
    assert premium(api, client) == {**premium(api, client), "status": "grace_period", "active": True,
                                    "will_renew": False, "expires_at": _z(lapsed + timedelta(days=16))}


def test_billing_retry_said_by_the_status_is_not_read_as_a_grace_period(client, api, store):
    """Only a grace period said by the notification is assumed: a DID_FAIL_TO_RENEW without
    subtype, status 3 (billing retry), takes access away even with auto-renew on."""
    failed = store.notification("DID_FAIL_TO_RENEW", status=3, transaction=store.transaction(
        "1012", token=USER, expires=now() - timedelta(hours=1)), renewal=store.renewal("1012", retry=False))
    assert post(client, store.body(failed)).get_json() == {"status": "processed"}
    assert (premium(api, client)["status"], api(client, USER)["is_premium"]) == ("billing_retry", False)


def test_turning_auto_renew_off_keeps_access_until_expiry(client, api, store):
    off = store.notification("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED",
                             transaction=store.transaction("1007", token=USER),
                             renewal=store.renewal("1007", auto_renew=False))
    assert post(client, store.body(off)).get_json() == {"status": "processed"}
    assert premium(api, client) == {**premium(api, client), "active": True, "will_renew": False}


def test_notification_without_app_account_token_is_stored_without_owner(app, client, api, store):
    body = store.body(store.notification("SUBSCRIBED", "INITIAL_BUY", transaction=store.transaction("1008")))
    assert post(client, body).get_json() == {"status": "processed"}
    stored = subscription(app, "1008")
    assert (stored.owner, stored.snapshot.account, stored.snapshot.status.value) == (None, "1008", "active")


def test_event_is_logged_under_its_notification_uuid_with_type_and_subtype(app, client, store):
    notification = store.notification("DID_CHANGE_RENEWAL_PREF", "DOWNGRADE", transaction=store.transaction("1009"))
    body = store.body(notification)
    assert post(client, body).status_code == 200
    with app.extensions["gateway"].store.transaction() as tx:
        event = find_event(tx, "apple", notification["notificationUUID"])
    assert (event.event_type, event.status, event.payload) == ("DID_CHANGE_RENEWAL_PREF:DOWNGRADE", "processed",
                                                               body.decode())
