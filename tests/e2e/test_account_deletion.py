"""Account deletion through HTTP (``DELETE /v1/me``) and the CLI (``flask users delete``):
real Cognito tokens, signed store deliveries, and the local Stripe and Play fakes as
real HTTP servers."""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from devtools import revenuecat as rc
from devtools import scenarios
from devtools import stripe_objects as so
from devtools.cognito import CognitoIssuer
from devtools.credentials import load_or_mint
from devtools.fakes import DemoFakes, InProcessSender
from devtools.stripe_signing import signed
from gateway.domain.entitlement_events import REVOKED, USER_DELETED
from tests.e2e.test_races import together
from tests.support.events import find_event

USER = "7d3c2a10-5b1e-4c2f-9a8d-2f6e4b1c0d9e"
OTHER = "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
EMAIL, NAME = "jane.roe@example.com", "Jane Roe"


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    with DemoFakes(load_or_mint(tmp_path_factory.mktemp("deletion"))) as running:
        yield running


class World(InProcessSender):
    """The gateway and the stores' fakes; also the ``sender`` the demo's scenarios speak to."""

    def __init__(self, app, fakes: DemoFakes) -> None:
        super().__init__(fakes, app.test_client())
        self.app, self.store = app, app.extensions["gateway"].store

    def stripe_event(self, event_type: str, obj: dict) -> dict:
        event = so.event(event_type, obj)
        self.post("stripe", *signed(event, self.credentials.stripe_webhook_secret))
        return event

    def delete(self, user: str = USER, **token):
        return self.client.delete("/v1/me", headers=self.fakes.cognito.header(user, **token))

    def entitlements(self, user: str = USER) -> dict:
        answer = self.client.get(f"/v1/users/{user}/entitlements",
                                 headers={"Authorization": f"Bearer {self.credentials.api_key}"})
        assert answer.status_code == 200
        return answer.get_json()

    def events(self):
        with self.store.transaction(readonly=True) as tx:
            return tx.search_events(limit=1000)

    def feed(self, user: str = USER):
        with self.store.transaction(readonly=True) as tx:
            return tx.read_feed(0, 1000, user)


def gateway_env(fakes: DemoFakes, database_url: str) -> dict:
    return {k: v for k, v in fakes.gateway_env(database_url).items() if k != "DATABASE_URL"}


@pytest.fixture
def world(fakes, make_app, database_url):
    fakes.play.reset()
    fakes.stripe.objects.clear()
    fakes.stripe.cancels.clear()
    fakes.stripe.fail_cancels = 0
    return World(make_app(**gateway_env(fakes, database_url)), fakes)


def subscribe_everywhere(world: World, user: str = USER) -> dict:
    """Stripe (with an invoice and a customer update carrying the user's email and name),
    Google Play and the App Store; returns the Stripe objects."""
    scenarios.stripe(world, "subscribe", user)
    scenarios.google(world, "purchase", user)
    scenarios.apple(world, "subscribe", user)
    h = scenarios._ids(user)
    customer = {**so.customer(customer_id=f"cus_demo{h}", cognito_sub=user, email=EMAIL), "name": NAME,
                "address": {"line1": "1 Main St", "city": "Springfield", "country": "US"}, "phone": "+15550100"}
    world.stripe_event("customer.updated", customer)
    invoice = {**so.invoice("basil", invoice_id=f"in_demo{h}", customer=customer["id"],
                            subscription_id=f"sub_demo{h}"),
               "customer_email": EMAIL, "customer_name": NAME, "customer_address": customer["address"]}
    paid = world.stripe_event("invoice.paid", invoice)
    return {"subscription": f"sub_demo{h}", "customer": customer["id"], "invoice_event": paid["id"],
            "google_token": f"demo-purchase-token-{h}"}


def stored_text(world: World) -> str:
    return "\n".join(e.payload + json.dumps(e.data) for e in world.events())


def test_deleting_an_account_cancels_what_it_can_erases_personal_data_and_revokes(world):
    ids = subscribe_everywhere(world)
    before = world.entitlements()
    assert before["is_premium"] is True and EMAIL in stored_text(world) and NAME in stored_text(world)

    answer = world.delete()

    assert answer.status_code == 200, answer.get_data(as_text=True)
    report = answer.get_json()
    assert [(c["source"], c["store"]) for c in report["cancelled"]] == [("google", "Google Play"), ("stripe", "Stripe")]
    assert [(c["source"], c["store"], c["reason"]) for c in report["user_must_cancel"]] == [
        ("apple", "App Store", "must_cancel_in_store")]
    assert report["user_must_cancel"][0]["product_id"] == "com.example.premium.monthly"
    assert world.fakes.stripe.cancels == [ids["subscription"]]
    assert world.fakes.stripe.objects[ids["subscription"]]["status"] == "canceled"
    assert world.fakes.play.cancels == [(ids["google_token"], "DEVELOPER_REQUESTED_STOP_PAYMENTS")]
    assert world.entitlements() == {"user_id": USER, "is_premium": False, "entitlements": {}}

    text = stored_text(world)
    assert EMAIL not in text and NAME not in text and "1 Main St" not in text and "+15550100" not in text
    invoice = next(e for e in world.events() if e.event_id == ids["invoice_event"])
    paid = invoice.data["data"]["object"]
    assert (paid["id"], paid["amount_paid"], paid["currency"], paid["status"]) == (
        f"in_demo{scenarios._ids(USER)}", 999, "usd", "paid")
    assert paid["customer_email"] == "[redacted]" and json.loads(invoice.payload)["data"]["object"]["total"] == 999

    feed = world.feed()
    assert any(e.type == REVOKED and e.entitlement == "premium" for e in feed)
    deleted = [e for e in feed if e.type == USER_DELETED]
    assert len(deleted) == 1 and deleted[0] == feed[-1] and deleted[0].after == {"report": report}
    with world.store.transaction(readonly=True) as tx:
        assert tx.identities_of(USER) == []


def test_a_second_deletion_answers_the_first_report_and_calls_no_store(world):
    subscribe_everywhere(world)
    first = world.delete()
    assert first.status_code == 200
    cancels = (list(world.fakes.stripe.cancels), list(world.fakes.play.cancels))
    feed = world.feed()

    again = world.delete()

    assert (again.status_code, again.get_json()) == (200, first.get_json())
    assert (world.fakes.stripe.cancels, world.fakes.play.cancels) == cancels
    assert world.feed() == feed


def test_a_late_delivery_for_a_deleted_user_grants_nothing(world):
    subscribe_everywhere(world)
    assert world.delete().status_code == 200

    scenarios.apple(world, "renew", USER)
    scenarios.google(world, "purchase", USER)
    scenarios.stripe(world, "subscribe", USER)

    assert world.entitlements() == {"user_id": USER, "is_premium": False, "entitlements": {}}
    assert [e.type for e in world.feed()].count(USER_DELETED) == 1


def test_a_transfer_away_from_the_deleted_user_still_moves_the_purchase_delivered_later(world):
    # OTHER buys; OTHER->USER (t1), then USER->THIRD (t2): by the stamps THIRD holds it. t2 is
    # delivered first (USER holds nothing yet), USER deletes the account, then t1 arrives.
    third = "3c4d5e6f-0a1b-4c2d-8e9f-aabbccddeeff"
    now_ms = int(time.time() * 1000)
    headers = {"Authorization": world.credentials.revenuecat_auth, "Content-Type": "application/json"}
    world.post("revenuecat", rc.body(rc.event("INITIAL_PURCHASE", OTHER, at_ms=now_ms - 10_000,
                                              transaction="rc_moved")), headers)
    world.post("revenuecat", rc.body(rc.transfer([USER], [third], at_ms=now_ms - 4_000)), headers)
    assert world.delete().status_code == 200
    world.post("revenuecat", rc.body(rc.transfer([OTHER], [USER], at_ms=now_ms - 5_000)), headers)
    with world.store.transaction(readonly=True) as tx:
        assert tx.subscriptions_of_users([USER])[USER] == []
    assert world.entitlements(third)["is_premium"] is True
    assert world.entitlements(USER)["is_premium"] is False


def test_forged_and_expired_tokens_delete_nothing(world):
    subscribe_everywhere(world)
    forged = CognitoIssuer()  # a key of its own, never published in the pool's JWKS
    answers = [world.client.delete("/v1/me", headers=forged.header(USER)),
               world.delete(exp=int(time.time()) - 60),
               world.client.delete("/v1/me")]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert world.fakes.stripe.cancels == [] and world.fakes.play.cancels == []
    assert world.entitlements()["is_premium"] is True and EMAIL in stored_text(world)


def test_a_store_failure_is_503_records_nothing_and_the_retry_completes(world):
    ids = subscribe_everywhere(world)
    world.fakes.play.fail_cancels = 1

    failed = world.delete()

    assert (failed.status_code, failed.get_json()["error"]) == (503, "store_api_unavailable")
    assert world.entitlements()["is_premium"] is True and EMAIL in stored_text(world)
    assert not any(e.type == USER_DELETED for e in world.feed())

    retried = world.delete()

    assert retried.status_code == 200
    assert [c["source"] for c in retried.get_json()["cancelled"]] == ["google", "stripe"]
    assert world.fakes.stripe.cancels == [ids["subscription"]]  # the retry found it cancelled already
    assert world.fakes.play.cancels == [(ids["google_token"], "DEVELOPER_REQUESTED_STOP_PAYMENTS")]
    assert world.entitlements()["is_premium"] is False and EMAIL not in stored_text(world)


def test_stripe_down_is_503_and_the_retry_cancels(world):
    ids = subscribe_everywhere(world)
    world.fakes.stripe.fail_cancels = 1
    assert world.delete().status_code == 503
    assert world.delete().status_code == 200
    assert world.fakes.stripe.cancels == [ids["subscription"]]


@pytest.mark.parametrize("store", ["stripe", "google"])
def test_a_store_refusing_the_gateways_credentials_is_503_and_deletes_nothing(world, monkeypatch, store):
    # A rolled Stripe key, a Play access token no longer valid: the store answers 401 to the
    # gateway, which says nothing of the subscription. Reported for the user to cancel, it
    # went on billing (a Stripe subscription the user cannot cancel once the account is gone).
    ids = subscribe_everywhere(world)
    if store == "stripe":
        key, world.fakes.stripe.api_key = world.fakes.stripe.api_key, "sk_test_rolled"
    else:
        monkeypatch.setattr("devtools.google_play.ACCESS_TOKEN", "ya29.rotated")

    failed = world.delete()

    assert (failed.status_code, failed.get_json()["error"]) == (503, "store_api_unavailable")
    assert world.entitlements()["is_premium"] is True and not any(e.type == USER_DELETED for e in world.feed())
    if store == "stripe":
        world.fakes.stripe.api_key = key
    else:
        monkeypatch.undo()
    retried = world.delete()
    assert retried.status_code == 200 and sorted(c["source"] for c in retried.get_json()["cancelled"]) == \
        ["google", "stripe"]
    assert world.fakes.stripe.cancels == [ids["subscription"]]


def test_the_cli_deletes_the_same_way_and_is_idempotent(world):
    ids = subscribe_everywhere(world)
    subscribe_everywhere(world, OTHER)
    runner = world.app.test_cli_runner()

    result = runner.invoke(args=["users", "delete", USER])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [c["source"] for c in report["cancelled"]] == ["google", "stripe"]
    assert ids["subscription"] in world.fakes.stripe.cancels and len(world.fakes.stripe.cancels) == 1
    assert world.entitlements()["is_premium"] is False
    assert world.entitlements(OTHER)["is_premium"] is True  # another user's data stays
    assert EMAIL in stored_text(world)
    again = runner.invoke(args=["users", "delete", USER])
    assert again.exit_code == 0 and json.loads(again.output) == report
    assert len(world.fakes.stripe.cancels) == 1
    assert world.delete().get_json() == report


def test_the_cli_reports_a_store_outage_and_deletes_nothing(world):
    subscribe_everywhere(world)
    world.fakes.play.fail_cancels = 1
    result = world.app.test_cli_runner().invoke(args=["users", "delete", USER])
    assert result.exit_code != 0 and "store_api_unavailable" in result.output
    assert world.entitlements()["is_premium"] is True


def test_a_user_with_nothing_known_is_deleted_with_an_empty_report(world):
    answer = world.delete(OTHER)
    assert (answer.status_code, answer.get_json()) == (200, {"cancelled": [], "user_must_cancel": []})
    assert [e.type for e in world.feed(OTHER)] == [USER_DELETED]
    scenarios.google(world, "purchase", OTHER)  # bought after deleting the account: still nothing
    assert world.entitlements(OTHER)["is_premium"] is False


RACE_ROUNDS = 6


def bought_again(world: World, user: str, store: str) -> tuple[bytes, dict, str]:
    """A second purchase by ``user``, as its store delivers it: (body, headers, what the
    deletion must report of it: ``cancelled`` or ``user_must_cancel``)."""
    h = scenarios._ids(user)
    if store == "stripe":  # the web checkout, in another tab: a second subscription of the customer
        again = so.subscription("basil", sub_id=f"sub_again{h}", customer=f"cus_demo{h}", cognito_sub=user)
        world.fakes.stripe.put(again)
        return (*signed(so.event("customer.subscription.created", again), world.credentials.stripe_webhook_secret),
                "cancelled")
    bought = rc.event("INITIAL_PURCHASE", user, transaction=f"rc_again{h}", at_ms=int(time.time() * 1000))
    return rc.body(bought), {"Authorization": world.credentials.revenuecat_auth,
                             "Content-Type": "application/json"}, "user_must_cancel"


@pytest.mark.parametrize("store", ["stripe", "revenuecat"])
@pytest.mark.parametrize("round_", range(RACE_ROUNDS))
def test_a_purchase_stored_while_the_account_is_deleted_is_stopped_or_reported_too(
        world, make_app, fakes, database_url, store, round_):
    """The user buys again while the deletion cancels what it read: the purchase's
    delivery, through another gateway, commits while the deletion's Stripe call is in
    flight (held until the delivery is answered), after the deletion's read (even rounds,
    by a varying delay) or before it (odd rounds: the deletion starts later). Decided on
    that read, made before the cancellations, the deletion left a new Stripe subscription
    billing a user who can no longer cancel it, and reported nothing of a new store
    purchase."""
    user = str(uuid.uuid4())
    scenarios.stripe(world, "subscribe", user)
    body, headers, report_as = bought_again(world, user, store)
    other = make_app(**gateway_env(fakes, database_url)).test_client()
    held = fakes.stripe.hold_cancel()
    delivery_delay, deletion_delay = ((round_ % 4) * 0.004, 0.0) if round_ % 2 == 0 else (0.0, 0.3)

    def deliver():
        time.sleep(delivery_delay)
        try:
            return other.post(f"/webhooks/{store}", data=body, headers=headers)
        finally:
            held.release()

    deleted, delivered = together(lambda: time.sleep(deletion_delay) or world.delete(user), deliver)

    assert (deleted.status_code, delivered.status_code) == (200, 200), deleted.get_data(as_text=True)
    report = deleted.get_json()
    h = scenarios._ids(user)
    listed = report["cancelled"] + report["user_must_cancel"]
    assert sorted(item["source"] for item in listed) == sorted(["stripe", store]), report
    assert len(report[report_as]) == 1 + (report_as == "cancelled"), report
    if store == "stripe":
        assert sorted(fakes.stripe.cancels) == sorted([f"sub_demo{h}", f"sub_again{h}"])
    assert world.entitlements(user) == {"user_id": user, "is_premium": False, "entitlements": {}}
# Deliveries that arrive after the deletion: each is stored with its personal values
# erased, links nothing to the deleted user and grants nothing; another user's stays whole.

def stored(world: World, source: str, event_id: str):
    with world.store.transaction(readonly=True) as tx:
        return find_event(tx, source, event_id)


def assert_erased(event, *values: str) -> None:
    text = event.payload + json.dumps(event.data)
    assert not [value for value in values if value in text], text
    assert "[redacted]" in text


def assert_deleted_user_left_alone(world: World) -> None:
    with world.store.transaction(readonly=True) as tx:
        assert tx.identities_of(USER) == []
    assert world.entitlements() == {"user_id": USER, "is_premium": False, "entitlements": {}}


def customer_with_personal_data(customer_id: str, cognito_sub: str | None) -> dict:
    return {**so.customer(customer_id=customer_id, cognito_sub=cognito_sub, email=EMAIL), "name": NAME,
            "address": {"line1": "1 Main St", "city": "Springfield", "country": "US"}}


@pytest.mark.parametrize("metadata", ["cognito_sub", "none"])
def test_a_late_customer_deleted_is_stored_with_its_personal_data_erased(world, metadata):
    # The app deletes the Stripe customer after the account: Stripe sends customer.deleted with
    # the customer as it was. Without metadata.cognito_sub (a customer made by Checkout), only
    # the customer id, which the tombstone keeps, tells it is the deleted user's.
    ids = subscribe_everywhere(world)
    assert world.delete().status_code == 200
    customer = customer_with_personal_data(ids["customer"], USER if metadata == "cognito_sub" else None)
    event = so.event("customer.deleted", customer)
    world.post("stripe", *signed(event, world.credentials.stripe_webhook_secret), wanted="ignored")

    late = stored(world, "stripe", event["id"])
    assert_erased(late, EMAIL, NAME, "1 Main St")
    assert late.data["data"]["object"]["id"] == ids["customer"] and late.event_type == "customer.deleted"
    assert_deleted_user_left_alone(world)


@pytest.mark.parametrize("stamped", ["after", "before"])
def test_a_late_customer_updated_naming_the_deleted_user_links_nothing_and_is_erased(world, stamped):
    # "before": stamped before the deletion, delivered after it (Stripe retries for days).
    ids = subscribe_everywhere(world)
    created = int(time.time()) - (3600 if stamped == "before" else 0)
    assert world.delete().status_code == 200
    event = so.event("customer.updated", customer_with_personal_data(ids["customer"], USER), created=created)
    body, headers = signed(event, world.credentials.stripe_webhook_secret)
    world.post("stripe", body, headers)
    world.post("stripe", body, headers, wanted="duplicate")  # Stripe's retry of the same event

    assert_erased(stored(world, "stripe", event["id"]), EMAIL, NAME, "1 Main St")
    assert_deleted_user_left_alone(world)
    scenarios.stripe(world, "subscribe", USER)  # the customer's subscription delivered again
    assert_deleted_user_left_alone(world)


def test_a_late_invoice_deferred_then_retried_by_the_worker_is_erased_too(world):
    # Recorded first, Stripe refusing the read (a rolled key): deferred with its body as it
    # came; the retry worker applies it and erases it in the same transaction.
    ids = subscribe_everywhere(world)
    assert world.delete().status_code == 200
    invoice = {**so.invoice("basil", invoice_id=f"in_late{scenarios._ids(USER)}", customer=ids["customer"],
                            subscription_id=ids["subscription"]), "customer_email": EMAIL, "customer_name": NAME}
    event = so.event("invoice.paid", invoice)
    key, world.fakes.stripe.api_key = world.fakes.stripe.api_key, "sk_test_rolled"
    world.post("stripe", *signed(event, world.credentials.stripe_webhook_secret), wanted="deferred")
    world.fakes.stripe.api_key = key
    assert EMAIL in stored(world, "stripe", event["id"]).payload

    assert retry_now(world) == "processed: 1"

    late = stored(world, "stripe", event["id"])
    assert late.status == "processed"
    assert_erased(late, EMAIL, NAME)
    assert late.data["data"]["object"]["amount_paid"] == 999
    assert_deleted_user_left_alone(world)


def retry_now(world: World) -> str:
    """Let the backoff of every deferred delivery pass, then run ``flask events retry``."""
    far, past = datetime.now(timezone.utc) + timedelta(days=1), datetime.now(timezone.utc) - timedelta(seconds=1)
    with world.store.transaction() as tx:  # claimed with a lease in the past: due now
        tx.claim_due_events(now=far, stale_before=past, lease_until=past, limit=1000)
    result = world.app.test_cli_runner().invoke(args=["events", "retry"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def attributes(email: str, name: str) -> dict:
    """RevenueCat's reserved subscriber attributes, as its events carry them."""
    return {"$email": {"value": email, "updated_at_ms": 1}, "$displayName": {"value": name, "updated_at_ms": 1}}


def test_late_revenuecat_events_are_erased_link_nothing_and_another_users_stay_whole(world):
    headers = {"Authorization": world.credentials.revenuecat_auth, "Content-Type": "application/json"}
    now_ms, other_email = int(time.time() * 1000), "john.doe@example.com"

    def send(kind: str, user: str, at_ms: int, transaction: str, wanted: str = "processed", **fields) -> dict:
        event = rc.event(kind, user, at_ms=at_ms, transaction=transaction, **fields)
        world.post("revenuecat", rc.body(event), headers, wanted=wanted)
        return event

    send("INITIAL_PURCHASE", USER, now_ms - 60_000, "rc_user", subscriber_attributes=attributes(EMAIL, NAME))
    send("INITIAL_PURCHASE", OTHER, now_ms - 60_000, "rc_other",
         subscriber_attributes=attributes(other_email, "John Doe"))
    assert world.delete().status_code == 200
    # Both users' events alias one anonymous id (one device): OTHER holds it now.
    other = send("RENEWAL", OTHER, now_ms - 1_000, "rc_other", subscriber_attributes=attributes(other_email, "John Doe"))

    late = [send("RENEWAL", USER, now_ms, "rc_user", subscriber_attributes=attributes(EMAIL, NAME)),
            # stamped before the deletion and before the state stored: it changes nothing
            send("RENEWAL", USER, now_ms - 30_000, "rc_user", subscriber_attributes=attributes(EMAIL, NAME)),
            send("PRODUCT_CHANGE", USER, now_ms, "rc_user", wanted="ignored",
                 subscriber_attributes=attributes(EMAIL, NAME))]
    world.post("revenuecat", rc.body(late[0]), headers, wanted="duplicate")

    for event in late:
        assert_erased(stored(world, "revenuecat", event["id"]), EMAIL, NAME)
    assert_deleted_user_left_alone(world)  # the anonymous alias every event names is not linked again
    kept = stored(world, "revenuecat", other["id"])
    assert kept.data["subscriber_attributes"]["$email"]["value"] == other_email and other_email in kept.payload
    assert world.entitlements(OTHER)["is_premium"] is True
    with world.store.transaction(readonly=True) as tx:  # the deleted user's newer alias did not take it
        assert [account for _, account in tx.identities_of(OTHER)] == [late[0]["aliases"][1]]


# Purchases stored after the deletion (a Checkout completed moments after it, a store
# purchase under the deleted sub): they grant nothing, and must not go on billing either.

def late_stripe_subscription(world: World, user: str = USER, name: str = "late") -> dict:
    """A new subscription of the user's customer, bought after the deletion, as Stripe
    delivers it (the Checkout Session's ``subscription_data.metadata`` names the user)."""
    h = scenarios._ids(user)
    late = so.subscription("basil", sub_id=f"sub_{name}{h}", customer=f"cus_demo{h}", cognito_sub=user)
    world.fakes.stripe.put(late)
    world.stripe_event("customer.subscription.created", late)
    return late


def work_once(world: World) -> None:
    """One turn of every chore of the worker (``flask events work --once``)."""
    result = world.app.test_cli_runner().invoke(args=["events", "work", "--once"])
    assert result.exit_code == 0, result.output


def late_rows(world: World, user: str = USER):
    with world.store.transaction(readonly=True) as tx:
        return [row for row in tx.deleted_subscriptions_of(user) if row.outcome != "reported"]


def test_a_stripe_subscription_bought_after_the_deletion_is_cancelled_by_the_worker_and_reported(world):
    subscribe_everywhere(world)
    first = world.delete().get_json()
    late = late_stripe_subscription(world)
    world.stripe_event("customer.subscription.updated", late)  # Stripe tells of it again: found once

    assert world.entitlements()["is_premium"] is False
    assert [(row.source, row.key, row.outcome) for row in late_rows(world)] == [("stripe", late["id"], "pending")]

    work_once(world)

    assert world.fakes.stripe.cancels[-1] == late["id"] and world.fakes.stripe.objects[late["id"]]["status"] == "canceled"
    again = world.delete().get_json()
    assert again == {"cancelled": first["cancelled"] + [{"source": "stripe", "store": "Stripe",
                                                         "product_id": late["items"]["data"][0]["price"]["id"],
                                                         "after_deletion": True}],
                     "user_must_cancel": first["user_must_cancel"]}
    cancels = list(world.fakes.stripe.cancels)
    world.stripe_event("customer.subscription.deleted", world.fakes.stripe.objects[late["id"]])
    work_once(world)
    assert world.delete().get_json() == again and world.fakes.stripe.cancels == cancels
    assert [e.type for e in world.feed()].count(USER_DELETED) == 1


def test_stripe_down_leaves_a_late_purchase_pending_and_the_deletion_asked_again_cancels_it(world):
    subscribe_everywhere(world)
    first = world.delete().get_json()
    late = late_stripe_subscription(world)
    world.fakes.stripe.fail_cancels = 2

    work_once(world)  # Stripe answers 500: tried again later

    (row,) = late_rows(world)
    assert (row.outcome, row.attempts) == ("pending", 1) and "Stripe" in row.last_error
    assert row.next_attempt_at > datetime.now(timezone.utc)
    failed = world.delete()  # asked again, it stops what is pending itself: Stripe still down
    assert (failed.status_code, failed.get_json()["error"]) == (503, "store_api_unavailable")
    assert "nothing was deleted" not in failed.get_json()["message"]  # it was: the purchase since is not cancelled yet

    again = world.delete()

    assert again.status_code == 200 and len(again.get_json()["cancelled"]) == len(first["cancelled"]) + 1
    assert world.fakes.stripe.objects[late["id"]]["status"] == "canceled"
    assert [row.outcome for row in late_rows(world)] == ["cancelled"]


def test_a_store_purchase_after_the_deletion_is_reported_for_the_user_to_cancel(world):
    subscribe_everywhere(world)
    first = world.delete().get_json()
    headers = {"Authorization": world.credentials.revenuecat_auth, "Content-Type": "application/json"}
    bought = rc.event("INITIAL_PURCHASE", USER, transaction="rc_after_deletion", at_ms=int(time.time() * 1000))
    world.post("revenuecat", rc.body(bought), headers)

    work_once(world)

    assert world.entitlements()["is_premium"] is False
    again = world.delete().get_json()
    assert again["cancelled"] == first["cancelled"]
    assert again["user_must_cancel"] == first["user_must_cancel"] + [{
        "source": "revenuecat", "store": "RevenueCat", "product_id": bought["product_id"],
        "after_deletion": True, "reason": "must_cancel_in_store"}]


@pytest.mark.parametrize("round_", range(RACE_ROUNDS))
def test_a_stripe_purchase_racing_the_deletion_is_cancelled_whichever_commits_first(
        world, make_app, fakes, database_url, round_):
    """The deletion and a new subscription's delivery through another gateway, released
    together by a barrier, one of them a little later by a delay that varies by round: the
    deletion finds the purchase (it committed first, or while its cancels were in flight),
    or the purchase finds the tombstone under the user's lock and is recorded for the
    worker. Either way it is cancelled at Stripe once and reported. Decided before that
    lock (or not at all, as before), a purchase committed after the tombstone billed on."""
    user = str(uuid.uuid4())
    scenarios.stripe(world, "subscribe", user)
    h = scenarios._ids(user)
    again = so.subscription("basil", sub_id=f"sub_again{h}", customer=f"cus_demo{h}", cognito_sub=user)
    fakes.stripe.put(again)
    body, headers = signed(so.event("customer.subscription.created", again), world.credentials.stripe_webhook_secret)
    other = make_app(**gateway_env(fakes, database_url)).test_client()
    delays = [(round_ % 3) * 0.01, 0.0][::1 if round_ % 2 else -1]

    deleted, delivered = together(lambda: time.sleep(delays[0]) or world.delete(user),
                                  lambda: time.sleep(delays[1]) or other.post("/webhooks/stripe", data=body,
                                                                              headers=headers))
    assert (deleted.status_code, delivered.status_code) == (200, 200), deleted.get_data(as_text=True)
    work_once(world)

    assert sorted(fakes.stripe.cancels) == sorted([f"sub_demo{h}", f"sub_again{h}"])
    report = world.delete(user).get_json()
    assert sorted(item["source"] for item in report["cancelled"]) == ["stripe", "stripe"], report
    assert world.entitlements(user) == {"user_id": user, "is_premium": False, "entitlements": {}}
