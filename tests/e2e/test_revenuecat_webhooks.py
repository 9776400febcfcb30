"""RevenueCat deliveries through the WSGI app, read back through the entitlement API."""
from __future__ import annotations

import itertools
import json
import random
import time

import pytest

from devtools import revenuecat as rc
from tests.e2e.conftest import API_KEY, count_events
from tests.support import chunked

HEADERS = {"Authorization": rc.AUTH, "Content-Type": "application/json"}
NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000


@pytest.fixture
def app(make_app):
    return make_app(REVENUECAT_WEBHOOK_AUTH=f"{rc.AUTH},Bearer rotated", GATEWAY_API_KEYS=API_KEY,
                    MAX_BODY_BYTES=4096)


@pytest.fixture
def client(app):
    return app.test_client()


def send(client, evt, headers=HEADERS):
    return client.post("/webhooks/revenuecat", data=rc.body(evt), headers=headers)


def premium(api, client, user="user-1"):
    return api(client, user)["entitlements"].get("premium")


def test_purchase_grants_premium_with_the_contract_shape(client, api):
    response = send(client, rc.event("INITIAL_PURCHASE", at_ms=NOW_MS, product_id="com.example.premium.monthly"))
    assert (response.status_code, response.get_json()) == (200, {"status": "processed"})
    answer = api(client, "user-1")
    assert answer["user_id"] == "user-1" and answer["is_premium"] is True
    assert answer["entitlements"]["premium"] == {
        "active": True, "status": "active",
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((NOW_MS + rc.MONTH_MS) / 1000))
        + (f".{(NOW_MS + rc.MONTH_MS) % 1000:03d}Z" if (NOW_MS + rc.MONTH_MS) % 1000 else "Z"),
        "will_renew": True, "source": "revenuecat", "product_id": "com.example.premium.monthly",
    }


@pytest.mark.parametrize("kind, fields, active, status, will_renew", [
    ("RENEWAL", {}, True, "active", True),
    ("UNCANCELLATION", {}, True, "active", True),
    ("NON_RENEWING_PURCHASE", {}, True, "active", False),
    ("SUBSCRIPTION_EXTENDED", {}, True, "active", True),
    ("TEMPORARY_ENTITLEMENT_GRANT", {}, True, "active", False),
    ("REFUND_REVERSED", {}, True, "active", True),
    ("CANCELLATION", {"cancel_reason": "UNSUBSCRIBE"}, True, "active", False),
    ("CANCELLATION", {"cancel_reason": "CUSTOMER_SUPPORT"}, False, "revoked", False),
    ("BILLING_ISSUE", {"grace_period_expiration_at_ms": NOW_MS + 6 * DAY_MS}, True, "grace_period", True),
    ("BILLING_ISSUE", {"expiration_at_ms": NOW_MS - DAY_MS}, False, "billing_retry", True),
    ("SUBSCRIPTION_PAUSED", {}, True, "active", False),
    ("EXPIRATION", {"expiration_reason": "UNSUBSCRIBE", "expiration_at_ms": NOW_MS}, False, "expired", False),
    ("EXPIRATION", {"expiration_reason": "SUBSCRIPTION_PAUSED", "expiration_at_ms": NOW_MS}, False, "paused", False),
])
def test_each_event_type_after_a_purchase(client, api, kind, fields, active, status, will_renew):
    send(client, rc.event("INITIAL_PURCHASE", at_ms=NOW_MS - DAY_MS))
    assert send(client, rc.event(kind, at_ms=NOW_MS, **fields)).get_json() == {"status": "processed"}
    grant = premium(api, client)
    assert (grant["active"], grant["status"], grant["will_renew"]) == (active, status, will_renew)


MONTHLY, YEARLY = "com.example.premium.monthly", "com.example.premium.yearly"


def holding(api, client) -> tuple[str, str]:
    """The premium grant's product and expiry, to the second."""
    grant = premium(api, client)
    return grant["product_id"], grant["expires_at"][:19]


def at_second(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))


@pytest.mark.parametrize("change_first", [False, True], ids=["renewal-first", "product-change-first"])
def test_an_immediate_upgrade_holds_the_new_product_whatever_order_its_two_events_arrive_in(
        client, api, change_first):
    """An App Store upgrade: RevenueCat sends a RENEWAL of the new product and a
    PRODUCT_CHANGE that still names the old product and the old period's end; the
    PRODUCT_CHANGE may be stamped after the RENEWAL."""
    old_end, new_end = NOW_MS + 20 * DAY_MS, NOW_MS + 365 * DAY_MS
    send(client, rc.event("INITIAL_PURCHASE", at_ms=NOW_MS - 10 * DAY_MS, product_id=MONTHLY, expiration_at_ms=old_end))
    renewal = rc.event("RENEWAL", at_ms=NOW_MS, product_id=YEARLY, transaction="2000002",
                       original_transaction_id="1000001", expiration_at_ms=new_end)
    change = rc.event("PRODUCT_CHANGE", at_ms=NOW_MS + 1, product_id=MONTHLY, new_product_id=YEARLY,
                      expiration_at_ms=old_end)
    answers = [send(client, evt).get_json()["status"] for evt in ([change, renewal] if change_first else [renewal, change])]
    assert sorted(answers) == ["ignored", "processed"]
    assert holding(api, client) == (YEARLY, at_second(new_end))
    assert send(client, change).get_json() == {"status": "duplicate"}
    assert holding(api, client) == (YEARLY, at_second(new_end))


def test_a_change_at_period_end_keeps_the_old_product_until_the_renewal_that_makes_it(client, api):
    """A downgrade: the PRODUCT_CHANGE comes at once, the new product with the next RENEWAL."""
    old_end = NOW_MS + 20 * DAY_MS
    send(client, rc.event("INITIAL_PURCHASE", at_ms=NOW_MS - 10 * DAY_MS, product_id=YEARLY, expiration_at_ms=old_end))
    change = rc.event("PRODUCT_CHANGE", at_ms=NOW_MS, product_id=YEARLY, new_product_id=MONTHLY,
                      expiration_at_ms=old_end)
    assert send(client, change).get_json() == {"status": "ignored"}
    assert holding(api, client) == (YEARLY, at_second(old_end))
    renewal = rc.event("RENEWAL", at_ms=old_end, product_id=MONTHLY, transaction="2000002",
                       original_transaction_id="1000001", expiration_at_ms=old_end + rc.MONTH_MS)
    assert send(client, renewal).get_json() == {"status": "processed"}
    assert holding(api, client) == (MONTHLY, at_second(old_end + rc.MONTH_MS))


@pytest.mark.parametrize("kind", ["TEST", "INVOICE_ISSUANCE", "VIRTUAL_CURRENCY_TRANSACTION",
                                  "EXPERIMENT_ENROLLMENT", "A_TYPE_FROM_THE_FUTURE"])
def test_events_of_no_interest_are_recorded_and_ignored(app, client, api, kind):
    assert send(client, rc.event(kind)).get_json() == {"status": "ignored"}
    assert count_events(app) == 1 and api(client, "user-1")["entitlements"] == {}


def test_transfer_moves_access_to_the_new_user(client, api):
    send(client, rc.event("INITIAL_PURCHASE", user="user-1", at_ms=NOW_MS - 1000))
    assert send(client, rc.transfer(["user-1"], ["user-2"], at_ms=NOW_MS)).get_json() == {"status": "processed"}
    assert api(client, "user-1")["is_premium"] is False
    assert api(client, "user-2")["is_premium"] is True
    # A late renewal stamped before the transfer does not take access back.
    send(client, rc.event("RENEWAL", user="user-1", at_ms=NOW_MS - 500))
    assert (api(client, "user-1")["is_premium"], api(client, "user-2")["is_premium"]) == (False, True)


@pytest.mark.parametrize("bought", ["as the user", "anonymously"])
def test_a_transfer_delivered_before_the_purchase_it_moves_still_moves_it(client, api, bought):
    # RevenueCat retries a failed delivery later: the TRANSFER (t2) may come first and find
    # nothing held; the purchase (t1) it moved is still the new user's when it arrives.
    account = "user-1" if bought == "as the user" else "$RCAnonymousID:5e1f"
    assert send(client, rc.transfer([account], ["user-2"], at_ms=NOW_MS)).get_json() == {"status": "processed"}
    send(client, rc.event("INITIAL_PURCHASE", user=account, original_app_user_id=account,
                          aliases=sorted({account, "user-1"}), at_ms=NOW_MS - 1000))
    assert (api(client, "user-1")["is_premium"], api(client, "user-2")["is_premium"]) == (False, True)
    # A later event of the purchase that still names the old user, stamped after the transfer: it holds.
    send(client, rc.event("RENEWAL", user="user-1", at_ms=NOW_MS + 1000))
    assert (api(client, "user-1")["is_premium"], api(client, "user-2")["is_premium"]) == (True, False)


def test_an_alias_delivered_after_a_transfer_from_its_user_gives_the_purchase_to_the_new_user(client, api):
    # Bought anonymously; the user logged in (t1, told late by an event that aliases the
    # ids), then restored on another account (TRANSFER at t2, told first).
    anonymous = "$RCAnonymousID:77aa"
    send(client, rc.event("INITIAL_PURCHASE", user=anonymous, original_app_user_id=anonymous,
                          aliases=[anonymous], at_ms=NOW_MS - 3000, transaction="500"))
    assert send(client, rc.transfer(["user-1"], ["user-2"], at_ms=NOW_MS)).get_json() == {"status": "processed"}
    send(client, rc.event("UNCANCELLATION", user="user-1", original_app_user_id=anonymous,
                          aliases=[anonymous, "user-1"], at_ms=NOW_MS - 1000, transaction="500"))
    assert (api(client, "user-1")["is_premium"], api(client, "user-2")["is_premium"]) == (False, True)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=lambda o: "".join(map(str, o)))
def test_a_purchase_made_under_an_anonymous_id_after_a_transfer_from_it_stays_where_it_was_made(
        client, api, order):
    """An anonymous id's purchase (t0) is moved to user-2 by a transfer from the dashboard
    (t1); later the same anonymous id buys again (t2): that event names anonymous ids only.
    A transfer moves what its ids held at its stamp, not a purchase begun after it, in any
    order of delivery."""
    anonymous = "$RCAnonymousID:6d1c2f0a9b8e4d7c"
    moved = rc.event("INITIAL_PURCHASE", user=anonymous, original_app_user_id=anonymous, aliases=[anonymous],
                     at_ms=NOW_MS - 3000, transaction="810", product_id=YEARLY, expiration_at_ms=NOW_MS - 1)
    transfer = rc.transfer([anonymous], ["user-2"], at_ms=NOW_MS - 2000)
    later = rc.event("INITIAL_PURCHASE", user=anonymous, original_app_user_id=anonymous, aliases=[anonymous],
                     at_ms=NOW_MS - 1000, transaction="811", product_id=MONTHLY)
    deliveries = [moved, transfer, later]
    for n in order:
        assert send(client, deliveries[n]).get_json() == {"status": "processed"}
    # user-2 holds the moved purchase (lapsed since), not the one bought after the transfer.
    grant = premium(api, client, "user-2")
    assert (grant["product_id"], grant["active"]) == (YEARLY, False)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=lambda o: "".join(map(str, o)))
def test_a_renewal_after_a_transfer_names_the_new_user_and_holds_in_any_order(client, api, order):
    """Bought anonymously (t0), moved to user-2 (t1); the renewal (t2) is user-2's event, as
    RevenueCat sends every event after a transfer to the new holder. Delivered first, it is
    the oldest stamp seen of the purchase until the purchase's own event comes."""
    anonymous = "$RCAnonymousID:3b9d0e7f1a2c4e6b"
    bought = rc.event("INITIAL_PURCHASE", user=anonymous, original_app_user_id=anonymous, aliases=[anonymous],
                      at_ms=NOW_MS - 3000, transaction="820", expiration_at_ms=NOW_MS - 1)
    transfer = rc.transfer([anonymous], ["user-2"], at_ms=NOW_MS - 2000)
    renewal = rc.event("RENEWAL", user="user-2", original_app_user_id="user-2", aliases=["user-2"],
                       at_ms=NOW_MS - 1000, transaction="821", original_transaction_id="820")
    deliveries = [bought, transfer, renewal]
    for n in order:
        assert send(client, deliveries[n]).get_json() == {"status": "processed"}
    assert premium(api, client, "user-2")["active"] is True


def holders_after_transfers(client, api, chains: dict[str, list[tuple[str, str]]]) -> dict[tuple, list[str]]:
    """Each chain's transfers after the purchase, in every order, bought as a user and
    bought anonymously (then logged in): a world of its own users and transaction each,
    in one database. Which of A, B, C holds premium in each world."""
    holders = {}
    worlds = ((name, order, bought) for name, moves in chains.items()
              for order in itertools.permutations(range(len(moves))) for bought in ("as A", "anonymously"))
    for world, (name, order, bought) in enumerate(worlds):
        users = {who: f"user-{who}{world}" for who in "ABC"}
        anonymous = f"$RCAnonymousID:{world:032x}"
        account = users["A"] if bought == "as A" else anonymous
        send(client, rc.event("INITIAL_PURCHASE", user=account, original_app_user_id=account,
                              aliases=sorted({account, users["A"]}), at_ms=NOW_MS - 10_000, transaction=f"tx-{world}"))
        transfers = [rc.transfer([users[a]], [users[b]], at_ms=NOW_MS - 5_000 + 1_000 * n)
                     for n, (a, b) in enumerate(chains[name])]
        for n in order:
            assert send(client, transfers[n]).get_json() == {"status": "processed"}
        key = (name, ",".join(f"t{n + 1}" for n in order), bought)
        holders[key] = [who for who, user in users.items() if api(client, user)["is_premium"]]
    return holders


@pytest.mark.parametrize("moved", ["APP_STORE/PRODUCTION", "PLAY_STORE/PRODUCTION", "APP_STORE/SANDBOX"])
@pytest.mark.parametrize("order", ["purchases first", "transfer first"])
def test_a_restore_moves_only_the_purchases_of_its_store_and_environment(app, client, api, moved, order):
    """A restore gives the new App User ID what the store account on the device bought
    ("content previously purchased from the same store account"), and the TRANSFER names
    that ``store`` and ``environment``: user-1's purchases elsewhere stay theirs."""
    store, environment = moved.split("/")
    purchases = [rc.event("INITIAL_PURCHASE", user="user-1", at_ms=NOW_MS - 3000 + n, transaction=f"{kind}-{n}",
                          product_id=product, store=kind.split("/")[0], environment=kind.split("/")[1])
                 for n, (kind, product) in enumerate([("APP_STORE/PRODUCTION", YEARLY), ("PLAY_STORE/PRODUCTION", MONTHLY),
                                                      ("APP_STORE/SANDBOX", "sandbox_monthly")])]
    transfer = {**rc.transfer(["user-1"], ["user-2"], at_ms=NOW_MS), "store": store, "environment": environment}
    for evt in (purchases + [transfer] if order == "purchases first" else [transfer] + purchases):
        assert send(client, evt).get_json() == {"status": "processed"}

    with app.extensions["gateway"].store.transaction(readonly=True) as tx:
        owners = {e["transaction_id"]: tx.get_subscription("revenuecat", e["transaction_id"]).owner for e in purchases}
    assert owners == {e["transaction_id"]: "user-2" if e["transaction_id"].startswith(moved) else "user-1"
                      for e in purchases}


def test_two_transfers_end_with_the_newer_holder_in_either_order(client, api):
    # A buys; B restores on A's device (A->B, t1), then A restores again (B->A, t2). In
    # either order of the two the stamps decide: B->A first finds nothing at B, and still
    # counts once A->B brings the purchase there.
    holders = holders_after_transfers(client, api, {"A->B,B->A": [("A", "B"), ("B", "A")]})
    assert holders == dict.fromkeys(holders, ["A"])


def test_three_chained_transfers_end_with_the_last_holder_in_any_order(client, api):
    holders = holders_after_transfers(client, api, {"A->B,B->A,A->C": [("A", "B"), ("B", "A"), ("A", "C")],
                                                    "A->B,B->C,C->A": [("A", "B"), ("B", "C"), ("C", "A")]})
    assert holders == {key: ["C" if key[0] == "A->B,B->A,A->C" else "A"] for key in holders}


def test_anonymous_purchase_attaches_when_an_event_aliases_the_user(client, api):
    anonymous = "$RCAnonymousID:0a1b2c"
    send(client, rc.event("INITIAL_PURCHASE", user=anonymous, original_app_user_id=anonymous,
                          aliases=[anonymous], at_ms=NOW_MS - 2000, transaction="42"))
    assert api(client, anonymous)["is_premium"] is False  # an anonymous id is nobody's sub
    send(client, rc.event("RENEWAL", user="user-7", original_app_user_id=anonymous,
                          aliases=[anonymous, "user-7"], at_ms=NOW_MS - 1000, transaction="99"))
    assert api(client, "user-7")["entitlements"]["premium"]["active"] is True
    # Both subscriptions are user-7's now: the anonymous one was attached through the alias.
    send(client, rc.event("EXPIRATION", user="user-7", aliases=[anonymous, "user-7"], at_ms=NOW_MS,
                          transaction="99", expiration_at_ms=NOW_MS))
    assert api(client, "user-7")["entitlements"]["premium"]["active"] is True


@pytest.mark.parametrize("ids", [None, []])
def test_a_purchase_mapped_to_no_entitlement_grants_nothing(client, api, ids):
    # A consumable: entitlement_ids null ("not mapped to any entitlements"), expiration null.
    send(client, rc.event("NON_RENEWING_PURCHASE", user="coin-buyer", at_ms=NOW_MS, product_id="coins_100",
                          entitlement_ids=ids, expiration_at_ms=None, transaction="coins-1"))
    assert api(client, "coin-buyer") == {"user_id": "coin-buyer", "is_premium": False, "entitlements": {}}


def test_the_billing_error_cancellation_beside_a_billing_issue_keeps_the_grace_period(client, api):
    # RevenueCat sends BILLING_ISSUE and CANCELLATION (BILLING_ERROR) together; both carry the
    # end of the period that failed to renew, already past. The grace period keeps access.
    period_end = NOW_MS - 60_000
    send(client, rc.event("INITIAL_PURCHASE", at_ms=period_end - 30 * DAY_MS, expiration_at_ms=period_end))
    for kind, at_ms, fields in [("CANCELLATION", NOW_MS + 1, {"cancel_reason": "BILLING_ERROR"}),
                                ("BILLING_ISSUE", NOW_MS, {"grace_period_expiration_at_ms": NOW_MS + 16 * DAY_MS})]:
        send(client, rc.event(kind, at_ms=at_ms, expiration_at_ms=period_end, **fields))
        assert premium(api, client)["active"] is (kind == "BILLING_ISSUE")
    assert premium(api, client)["status"] == "grace_period"
    send(client, rc.event("EXPIRATION", at_ms=NOW_MS + 2, expiration_at_ms=NOW_MS + 2,
                          expiration_reason="BILLING_ERROR"))
    assert premium(api, client)["active"] is False


@pytest.mark.parametrize("order", ["as stamped", "newer first"])
def test_an_anonymous_id_two_users_claimed_follows_the_newer_event_in_either_order(client, api, order):
    anonymous = "$RCAnonymousID:5e5e5e"
    send(client, rc.event("INITIAL_PURCHASE", user=anonymous, original_app_user_id=anonymous,
                          aliases=[anonymous], at_ms=NOW_MS - 10_000, transaction="anon"))
    older, newer = [rc.event("INITIAL_PURCHASE", user=user, original_app_user_id=anonymous, aliases=[anonymous, user],
                             at_ms=NOW_MS - ago, transaction=f"own-{user}", expiration_at_ms=NOW_MS - 1)
                    for user, ago in (("user-a", 5_000), ("user-b", 1_000))]
    for evt in ([older, newer] if order == "as stamped" else [newer, older]):
        send(client, evt)
    assert (api(client, "user-a")["is_premium"], api(client, "user-b")["is_premium"]) == (False, True)


def test_redelivery_is_a_duplicate_and_changes_nothing(app, client, api):
    evt = rc.event("INITIAL_PURCHASE", at_ms=NOW_MS)
    send(client, evt)
    before = api(client, "user-1")
    assert send(client, evt).get_json() == {"status": "duplicate"}
    assert api(client, "user-1") == before and count_events(app) == 1


def test_late_purchase_after_expiration_does_not_restore_access(client, api):
    send(client, rc.event("EXPIRATION", at_ms=NOW_MS, expiration_at_ms=NOW_MS))
    send(client, rc.event("INITIAL_PURCHASE", at_ms=NOW_MS - 5 * DAY_MS))
    assert premium(api, client)["status"] == "expired"


def test_any_order_of_a_lifecycle_ends_in_the_same_answer(make_app, api):
    lifecycle = [
        rc.event("INITIAL_PURCHASE", at_ms=NOW_MS - 40 * DAY_MS),
        rc.event("RENEWAL", at_ms=NOW_MS - 10 * DAY_MS),
        rc.event("BILLING_ISSUE", at_ms=NOW_MS - 5 * DAY_MS, grace_period_expiration_at_ms=NOW_MS + DAY_MS),
        rc.event("CANCELLATION", at_ms=NOW_MS - 2 * DAY_MS, cancel_reason="BILLING_ERROR"),
        rc.event("RENEWAL", at_ms=NOW_MS - DAY_MS),
    ]
    answers = []
    for seed in range(4):
        order = lifecycle[:]
        random.Random(seed).shuffle(order)
        client = make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, GATEWAY_API_KEYS=API_KEY).test_client()
        for evt in order:
            send(client, evt)
        answers.append(api(client, "user-1"))
        client.application.extensions["gateway"].store.engine.dispose()
        # The next order starts from an empty database.
        with client.application.extensions["gateway"].store.transaction() as tx:
            for table in ("events", "subscriptions", "entitlements", "identities"):
                tx.connection.exec_driver_sql(f"DELETE FROM {table}")
    assert all(answer == answers[0] for answer in answers)
    assert answers[0]["entitlements"]["premium"]["status"] == "active"


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json"},
    {"Authorization": "Bearer forged", "Content-Type": "application/json"},
    {"Authorization": rc.AUTH.lower(), "Content-Type": "application/json"},
])
def test_forged_or_missing_authorization_is_401_and_stores_nothing(app, client, api, headers):
    response = send(client, rc.event("INITIAL_PURCHASE"), headers)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_authorization"
    assert count_events(app) == 0 and api(client, "user-1")["is_premium"] is False


def test_rotated_secret_is_accepted(client):
    headers = {**HEADERS, "Authorization": "Bearer rotated"}
    assert send(client, rc.event("INITIAL_PURCHASE"), headers).status_code == 200


@pytest.mark.parametrize("raw", [b"{not json", b'{"api_version": "1.0"}', b'{"event": {"type": "RENEWAL"}}',
                                 json.dumps({"event": {"id": "x", "type": "RENEWAL", "app_user_id": "u",
                                                       "event_timestamp_ms": 1}}).encode()])
def test_malformed_deliveries_are_400_and_store_nothing(app, client, raw):
    response = client.post("/webhooks/revenuecat", data=raw, headers=HEADERS)
    assert response.status_code == 400 and response.get_json()["error"].startswith("malformed")
    assert count_events(app) == 0


@pytest.mark.parametrize("raw", [
    rc.body(rc.event("INITIAL_PURCHASE")).decode().encode("utf-16"),  # JSON on the wire is UTF-8
    rc.body(rc.event("INITIAL_PURCHASE", id="e" * 256)),  # longer than the event log's column
    rc.body(rc.event("INITIAL_PURCHASE", price=float("nan"))),  # Python writes NaN; JSON has none
])
def test_authenticated_bodies_no_database_could_store_are_400_not_a_500_or_a_retry(app, client, raw):
    response = client.post("/webhooks/revenuecat", data=raw, headers=HEADERS)
    assert response.status_code == 400 and response.get_json()["error"].startswith("malformed")
    assert count_events(app) == 0


def test_body_over_the_limit_is_413_before_anything_else(app, client):
    response = client.post("/webhooks/revenuecat", data=b"x" * 5000, headers=HEADERS)
    assert response.status_code == 413 and count_events(app) == 0


def test_chunked_body_over_the_limit_is_413_without_reading_it_whole(app):
    statuses, body = chunked.send(app, "/webhooks/revenuecat", HEADERS)
    assert statuses == ["413 REQUEST ENTITY TOO LARGE"] and count_events(app) == 0
    assert body.served <= 4097  # refused at the first byte past MAX_BODY_BYTES
    statuses, body = chunked.send(app, "/webhooks/revenuecat", HEADERS, chunked.EndlessBody(4096))
    assert statuses == ["400 BAD REQUEST"] and body.served == 4096  # read, not refused: it is not past the limit


def test_database_refusing_writes_answers_503_and_the_retry_succeeds(app, client, api, refuse_writes):
    evt = rc.event("INITIAL_PURCHASE", at_ms=NOW_MS)
    refuse_writes.on()
    response = send(client, evt)
    assert response.status_code == 503 and response.get_json()["error"] == "store_unavailable"
    refuse_writes.off()
    assert count_events(app) == 0
    assert send(client, evt).get_json() == {"status": "processed"}
    assert api(client, "user-1")["is_premium"] is True


def test_unknown_source_is_404_and_unconfigured_source_is_503(make_app):
    client = make_app().test_client()
    assert client.post("/webhooks/paypal", data=b"{}").status_code == 404
    response = client.post("/webhooks/revenuecat", data=rc.body(rc.event("RENEWAL")), headers=HEADERS)
    assert (response.status_code, response.get_json()["error"]) == (503, "source_not_configured")
