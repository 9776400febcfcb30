"""Races between deliveries, the retry worker and reconcile, through the app, released together.

Every rule that decides access is applied by the domain's merge inside the transaction
that holds the subscription's lock, so the answer must not depend on which of two
concurrent writers read or committed first. Each race is run several times: the threads
are released by a barrier, and where both sides read the store's API first, the fake
answers those reads together (``gate``), so both translations are made before either
commits: the interleaving that a rule decided on an earlier read gets wrong.

On PostgreSQL the writers really overlap; on SQLite they queue on the one writer, which
must give the same answers.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest

from devtools import revenuecat as rc
from devtools import stripe_objects as so
from devtools.apple_store import AppStore, ms, now
from devtools.google_play import ORDER
from devtools.google_pubsub import envelope, subscription, voided
from tests.e2e.conftest import API_KEY
from tests.e2e.reconcile_world import *  # noqa: F401,F403 (fixtures)
from tests.e2e.reconcile_world import World, new_user, soon
from tests.support import google_gateway
from tests.support.google_gateway import GoogleGateway, google  # noqa: F401 (fixture)
from tests.support.stripe_scenarios import signup

ROUNDS = 4
LINK_ROUNDS = 24
PRODUCT = "com.example.premium.monthly"


def together(*calls):
    """Run ``calls`` on threads released at once; their results, or the first error raised."""
    barrier, results, errors = threading.Barrier(len(calls)), [None] * len(calls), []

    def run(index, call):
        barrier.wait()
        try:
            results[index] = call()
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def ok(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["status"]


def replay(world, source: str, event_id: str):
    """The retry worker's path (``Ingest.process``), as ``flask events replay`` runs it."""
    event = world.event(source, event_id)
    result = world.app.test_cli_runner().invoke(args=["events", "replay", str(event.id)])
    assert result.exit_code == 0, result.output
    return result.output


def reconcile(world, source: str):
    code, output = world.reconcile("--source", source)
    assert code == 0, output
    return output


# Stripe: a refund (fetched) against a later view of the same period (invoice.paid, fetched).

def stripe_subscribed(world, stripe_fake):
    s = signup(stripe_fake, user=new_user())
    s.end = int(soon(6).timestamp())  # inside the window reconcile re-reads
    stripe_fake.put(s.subscription())
    assert ok(world.stripe(so.event("customer.subscription.created", s.subscription()))) == "processed"
    assert world.premium(s.user)["active"] is True
    return s


def stripe_refund(s, fake):
    s.refund(fake)
    return so.event("charge.refunded", s.charge(amount_refunded=999))


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_stripe_refund_and_a_late_view_of_its_period_released_together_end_revoked(world, stripe_fake, round_):
    s = stripe_subscribed(world, stripe_fake)
    stripe_fake.gate("/v1/subscriptions/", 2)
    together(lambda: world.stripe(stripe_refund(s, stripe_fake)),
             lambda: world.stripe(so.event("invoice.paid", s.invoice())))
    assert stripe_fake.gates_opened == 1  # both read Stripe before either wrote
    assert world.premium(s.user)["status"] == "revoked"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_stripe_refund_and_its_failure_released_together_end_with_the_period_given_back(world, stripe_fake, round_):
    """The refund's event lists the refund as it stood (succeeded) while its failure is
    applied: both read the subscription before either writes."""
    s = stripe_subscribed(world, stripe_fake)
    made = stripe_refund(s, stripe_fake)
    failed = {**stripe_fake.state.objects["refund"][made_refund(stripe_fake, s)], "status": "failed"}
    stripe_fake.gate("/v1/subscriptions/", 2)
    together(lambda: world.stripe(made), lambda: world.stripe(so.event("refund.failed", failed)))
    assert stripe_fake.gates_opened == 1
    assert world.premium(s.user)["status"] == "active"


def made_refund(stripe_fake, s) -> str:
    return next(r["id"] for r in stripe_fake.state.objects["refund"].values() if r["charge"] == s.charge_id)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_stripe_dispute_won_on_an_old_invoice_and_a_refund_of_the_current_one_end_revoked(world, stripe_fake, round_):
    s = stripe_subscribed(world, stripe_fake)
    old_invoice, old_charge, old_intent = so.new_id("in"), so.new_id("ch"), so.new_id("pi")
    stripe_fake.put(so.invoice("basil", invoice_id=old_invoice, customer=s.customer, subscription_id=s.sub_id,
                               charge=old_charge, payment_intent=old_intent))
    stripe_fake.put(so.charge("basil", charge_id=old_charge, customer=s.customer, invoice_id=old_invoice,
                              payment_intent=old_intent))
    stripe_fake.pay(old_invoice, old_intent)
    dispute = so.dispute(dispute_id=so.new_id("dp"), charge_id=old_charge, payment_intent=old_intent)
    stripe_fake.gate("/v1/subscriptions/", 2)
    together(lambda: world.stripe(stripe_refund(s, stripe_fake)),
             lambda: world.stripe(so.event("charge.dispute.closed", {**dispute, "status": "won"})))
    assert stripe_fake.gates_opened == 1 and world.premium(s.user)["status"] == "revoked"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_stripe_dispute_won_and_a_refund_of_the_same_invoice_end_revoked(world, stripe_fake, round_):
    s = stripe_subscribed(world, stripe_fake)
    dispute = so.dispute(dispute_id=so.new_id("dp"), charge_id=s.charge_id, payment_intent=s.payment_intent)
    assert ok(world.stripe(so.event("charge.dispute.created", dispute))) == "processed"
    stripe_fake.gate("/v1/subscriptions/", 2)
    together(lambda: world.stripe(stripe_refund(s, stripe_fake)),
             lambda: world.stripe(so.event("charge.dispute.closed", {**dispute, "status": "won"})))
    assert world.premium(s.user)["status"] == "revoked"  # the win gives back the dispute's, not the refund's


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_stripe_refund_applied_by_the_retry_worker_against_a_late_view_ends_revoked(world, stripe_fake, round_):
    s = stripe_subscribed(world, stripe_fake)
    refund = stripe_refund(s, stripe_fake)
    stripe_fake.fail_with(500)
    assert ok(world.stripe(refund)) == "deferred"
    stripe_fake.recover()
    stripe_fake.gate("/v1/subscriptions/", 2)
    together(lambda: replay(world, "stripe", refund["id"]), lambda: world.stripe(so.event("invoice.paid", s.invoice())))
    assert stripe_fake.gates_opened == 1
    assert world.event("stripe", refund["id"]).status == "processed"
    assert world.premium(s.user)["status"] == "revoked"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_stripe_refund_and_reconcile_released_together_end_revoked(world, stripe_fake, round_):
    s = stripe_subscribed(world, stripe_fake)
    stripe_fake.gate("/v1/subscriptions/", 2)
    together(lambda: world.stripe(stripe_refund(s, stripe_fake)), lambda: reconcile(world, "stripe"))
    assert stripe_fake.gates_opened == 1
    assert world.premium(s.user)["status"] == "revoked"
    reconcile(world, "stripe")  # and a reconcile after it, of the same period, changes nothing
    assert world.premium(s.user)["status"] == "revoked"


# Google: a void (confirmed, then fetched) against notifications and reads of the same period.

def google_subscribed(world, play, push_signer, token):
    user = new_user()
    play.subscribe(token, user=user, acknowledged=True, days=0.25)  # inside the window reconcile re-reads
    assert ok(world.client.post("/webhooks/google", data=envelope(subscription(token)),
                                headers=push_signer.headers())) == "processed"
    play.void(token)  # refunded in the Play Console; Play goes on showing the period
    return user


def push(world, push_signer, notification, message_id=None):
    body = envelope(notification, message_id=message_id) if message_id else envelope(notification)
    return world.client.post("/webhooks/google", data=body, headers=push_signer.headers())


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_google_void_and_a_renewal_notification_released_together_end_revoked(world, play, push_signer, round_):
    token = f"token-race-{round_}"
    user = google_subscribed(world, play, push_signer, token)
    play.gate(2)
    together(lambda: push(world, push_signer, voided(token)), lambda: push(world, push_signer, subscription(token, 2)))
    assert play.gates_opened == 1
    assert world.premium(user)["status"] == "revoked"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_google_void_by_the_retry_worker_and_reconcile_end_revoked(world, play, push_signer, round_):
    token = f"token-race-retry-{round_}"
    user = google_subscribed(world, play, push_signer, token)
    play.down = True
    assert ok(push(world, push_signer, voided(token), message_id=f"void-{round_}")) == "deferred"
    play.down = False
    play.gate(2)
    together(lambda: replay(world, "google", f"void-{round_}"), lambda: reconcile(world, "google"))
    assert play.gates_opened == 1
    assert world.premium(user)["status"] == "revoked"


@pytest.fixture
def two_play_gateways(make_app, push_signer, play, cognito, tmp_path):
    """Two gateways on one database whose catalog maps the old plan and the upgrade to
    entitlements of their own, and nothing else."""
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"entitlements": {"basic": {"google": ["basic_monthly"]},
                                                    "premium": {"google": ["premium_yearly"]}}, "default": None}))
    env = dict(**push_signer.env(), **play.env(), **cognito.env(), GATEWAY_API_KEYS=google_gateway.API_KEY,
               CATALOG_PATH=str(catalog))
    return [GoogleGateway(make_app(**env), push_signer, play, cognito) for _ in range(2)]


@pytest.mark.parametrize("round_", range(LINK_ROUNDS))
def test_an_upgrade_and_its_old_tokens_notification_released_together_end_with_the_old_plan_expired(
        two_play_gateways, play, round_):
    """The old token's notification (Play still shows it active) and the upgrade's, through
    two gateways, both read from Play together: the old token's read commits between the
    upgrade's look at our store and its lock in some rounds. The old plan's entitlement
    ends expired, as when they come one after the other; taken from the look before the
    lock, the old token's product was unknown, the entitlement vanished, and the feed said
    ``entitlement.revoked`` (a refund: Cognito sign-out) to a user who had just upgraded."""
    one, two = two_play_gateways
    user, old, new = new_user(), f"tok-basic-{round_}", f"tok-up-{round_}"
    play.subscribe(old, product="basic_monthly", user=user, acknowledged=True, days=20)
    play.subscribe(new, product="premium_yearly", user=user, days=365, linked=old, acknowledged=True)
    play.gate(2)
    delays = [(round_ % 6) * 0.002, 0.0][::1 if round_ % 2 else -1]
    answers = together(lambda: time.sleep(delays[0]) or one.push(subscription(old, 4)),
                       lambda: time.sleep(delays[1]) or two.push(subscription(new, 4)))
    assert [ok(answer) for answer in answers] == ["processed", "processed"] and play.gates_opened == 1
    granted = one.entitlements(user)["entitlements"]
    assert granted["premium"]["active"] is True
    assert (granted.get("basic") or {}).get("status") == "expired", granted
    assert granted["basic"]["product_id"] == "basic_monthly"
    feed = one.client.get("/v1/events", query_string={"after": "0", "limit": "100"},
                          headers={"Authorization": f"Bearer {google_gateway.API_KEY}"}).get_json()["events"]
    assert "entitlement.revoked" not in [event["type"] for event in feed if event["user_id"] == user]


# Apple: a refund against a notification signed later that still shows the period unrefunded.

@pytest.mark.parametrize("round_", range(ROUNDS))
def test_apple_refund_and_a_later_view_of_its_period_released_together_end_revoked(world, round_):
    store, user, key = world.apple, new_user(), f"20000009{round_:02d}"
    expires, bought = soon(12), now() - timedelta(days=1)
    first = store.notification("SUBSCRIBED", signed=bought, transaction=store.transaction(
        key, token=user, expires=expires, signed=bought), renewal=store.renewal(key))
    assert ok(world.apple_post(store.body(first))) == "processed"
    refunded_at = now() - timedelta(minutes=2)
    refund = store.notification("REFUND", signed=refunded_at, transaction=store.transaction(
        key, token=user, expires=expires, signed=refunded_at, revoked=refunded_at))
    later = store.notification("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED", signed=now(),
                               transaction=store.transaction(key, token=user, expires=expires, signed=bought),
                               renewal=store.renewal(key, auto_renew=False))
    together(lambda: world.apple_post(store.body(refund)), lambda: world.apple_post(store.body(later)))
    assert world.premium(user)["status"] == "revoked"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_apple_refund_and_reconcile_of_an_unrefunded_status_end_revoked(world, apple_api, round_):
    store, user, key = world.apple, new_user(), f"20000019{round_:02d}"
    expires, bought = soon(12), now() - timedelta(days=1)
    first = store.notification("SUBSCRIBED", signed=bought, transaction=store.transaction(
        key, token=user, expires=expires, signed=bought), renewal=store.renewal(key))
    assert ok(world.apple_post(store.body(first))) == "processed"
    # The statuses the API answers were read before the refund: the period, unrefunded, as
    # signed then (signed after the refund, it would tell the refund was reversed since).
    apple_api.statuses[key] = {"environment": "Sandbox", "bundleId": store.bundle_id, "appAppleId": store.app_apple_id,
                               "data": [{"subscriptionGroupIdentifier": "21000001", "lastTransactions": [{
                                   "status": 1, "originalTransactionId": key,
                                   "signedTransactionInfo": store.chain.sign(store.transaction(
                                       key, token=user, expires=expires, signed=now() - timedelta(minutes=2))),
                                   "signedRenewalInfo": store.chain.sign(store.renewal(key))}]}]}
    refunded_at = now() - timedelta(minutes=1)
    refund = store.notification("REFUND", signed=refunded_at, transaction=store.transaction(
        key, token=user, expires=expires, signed=refunded_at, revoked=refunded_at))
    together(lambda: world.apple_post(store.body(refund)), lambda: reconcile(world, "apple"))
    assert world.premium(user)["status"] == "revoked"


# RevenueCat: a refund against a later event of the same period, and against reconcile.

def rc_subscribed(world, revenuecat, transaction):
    user, expires = new_user(), soon(6)
    event = rc.event("INITIAL_PURCHASE", user, transaction=transaction, at_ms=ms(now() - timedelta(days=29)),
                     expiration_at_ms=ms(expires))
    assert ok(world.revenuecat(event)) == "processed"
    revenuecat.subscribe(user, PRODUCT, expires=expires)
    return user, expires


def rc_refund(user, transaction, expires, at):
    return rc.event("CANCELLATION", user, transaction=transaction, at_ms=ms(at), expiration_at_ms=ms(expires),
                    cancel_reason="CUSTOMER_SUPPORT")


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_revenuecat_refund_and_a_later_event_of_its_period_released_together_end_revoked(world, revenuecat, round_):
    transaction = f"71000{round_:02d}"
    user, expires = rc_subscribed(world, revenuecat, transaction)
    refund = rc_refund(user, transaction, expires, now() - timedelta(minutes=2))
    later = rc.event("UNCANCELLATION", user, transaction=transaction, at_ms=ms(now()), expiration_at_ms=ms(expires))
    together(lambda: world.revenuecat(refund), lambda: world.revenuecat(later))
    assert world.premium(user)["status"] == "revoked"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_revenuecat_refund_and_reconcile_released_together_end_revoked(world, revenuecat, round_):
    transaction = f"72000{round_:02d}"
    user, expires = rc_subscribed(world, revenuecat, transaction)
    refund = rc_refund(user, transaction, expires, now() - timedelta(minutes=2))
    together(lambda: world.revenuecat(refund), lambda: reconcile(world, "revenuecat"))
    assert world.premium(user)["status"] == "revoked"


def test_revenuecat_refund_reversed_gives_the_period_back_and_a_later_view_keeps_it(world, revenuecat):
    transaction = "7300001"
    user, expires = rc_subscribed(world, revenuecat, transaction)
    assert ok(world.revenuecat(rc_refund(user, transaction, expires, now() - timedelta(minutes=3)))) == "processed"
    reversed_ = rc.event("REFUND_REVERSED", user, transaction=transaction, at_ms=ms(now() - timedelta(minutes=1)),
                         expiration_at_ms=ms(expires))
    assert ok(world.revenuecat(reversed_)) == "processed" and world.premium(user)["status"] == "active"


# Identity: a link and a new subscription of the same account, each in its own transaction.

@pytest.mark.parametrize("round_", range(LINK_ROUNDS))
def test_a_customer_link_and_a_new_subscription_released_together_end_linked(world, stripe_fake, round_):
    """The subscription's side reads Stripe before its transaction, the link's does not:
    the link is sent a little later, by a varying delay, so that the two transactions
    overlap in every order across the rounds."""
    user, customer, sub_id = new_user(), so.new_id("cus"), so.new_id("sub")
    start = int(now().timestamp()) - 60
    body = so.subscription("basil", sub_id=sub_id, customer=customer, start=start, end=start + 30 * so.DAY)
    stripe_fake.put(so.customer(customer_id=customer))  # Stripe's copy does not name the user yet
    stripe_fake.put(body)
    linked = so.customer(customer_id=customer, cognito_sub=user)
    delay = (round_ % 8) * 0.002
    together(lambda: time.sleep(delay) or world.stripe(so.event("customer.updated", linked, created=start + 30)),
             lambda: world.stripe(so.event("customer.subscription.created", body, created=start)))
    assert (world.premium(user) or {}).get("active") is True


@pytest.mark.parametrize("round_", range(LINK_ROUNDS))
def test_an_owner_carried_along_upgrades_and_the_next_upgrade_released_together_end_linked(
        world, play, push_signer, round_):
    """P upgraded to O, stored under P's account while P's user is unknown; then P's
    notification naming its user and the notification of O's own upgrade N, by a varying
    delay so that the two transactions overlap in every order: N goes to P's user, whether
    it is carried over from O (P committed first) or the link carries on to it."""
    user, p, o, n = new_user(), f"tok-p-{round_}", f"tok-o-{round_}", f"tok-n-{round_}"
    play.subscribe(p, "SUBSCRIPTION_STATE_EXPIRED", user=user, acknowledged=True, days=40)
    play.subscribe(o, "SUBSCRIPTION_STATE_EXPIRED", linked=p, acknowledged=True, days=20)
    play.subscribe(n, days=365, linked=o, acknowledged=True)  # a longer plan
    assert ok(push(world, push_signer, subscription(o, 4))) == "processed"
    delay = (round_ % 8) * 0.002
    answers = together(lambda: time.sleep(delay) or push(world, push_signer, subscription(p, 13)),
                       lambda: push(world, push_signer, subscription(n, 4)))
    assert [ok(answer) for answer in answers] == ["processed", "processed"]
    premium = world.premium(user)
    assert premium["active"] is True and premium["expires_at"] > soon(24 * 300).isoformat(), premium


def test_a_transfer_to_anonymous_ids_only_leaves_the_subscription_unowned(world, revenuecat):
    transaction = "7400001"
    user, _ = rc_subscribed(world, revenuecat, transaction)
    anonymous = "$RCAnonymousID:0f5c9e3a52d54b0c8a0e0e0e0e0e0e0e"
    assert ok(world.revenuecat(rc.transfer([user], [anonymous]))) == "processed"
    assert world.premium(user) is None
    held = world.client.get(f"/v1/users/{anonymous}/entitlements",
                            headers={"Authorization": f"Bearer {API_KEY}"})
    assert held.status_code in (200, 400) and not (held.get_json().get("entitlements") or {})


@pytest.mark.parametrize("round_", range(LINK_ROUNDS))
def test_two_transfers_back_and_forth_released_together_end_with_the_newer(world, revenuecat, round_):
    """A->B and the newer B->A, by a varying delay so that the two transactions overlap in
    every order: B->A finds nothing at B unless A->B committed first; either way the
    purchase ends with A, since transfers apply one at a time and replay the register."""
    user_a, _ = rc_subscribed(world, revenuecat, f"75000{round_:02d}")
    user_b, at = new_user(), now()
    there = rc.transfer([user_a], [user_b], at_ms=ms(at - timedelta(seconds=2)))
    back = rc.transfer([user_b], [user_a], at_ms=ms(at - timedelta(seconds=1)))
    delay = (round_ % 8) * 0.002
    answers = together(lambda: time.sleep(delay) or world.revenuecat(there), lambda: world.revenuecat(back))
    assert [ok(answer) for answer in answers] == ["processed", "processed"]
    assert (world.premium(user_b), (world.premium(user_a) or {}).get("active")) == (None, True)


def two_gateways_together(world, make_app, round_: int, first: dict, second: dict) -> list[str]:
    """RevenueCat's ``first`` through the world's gateway and ``second`` through another on
    the same database (one process batches concurrent deliveries into one transaction),
    released together, either one sent a little later by a delay that varies by round."""
    other = make_app(GATEWAY_API_KEYS=API_KEY, REVENUECAT_WEBHOOK_AUTH=rc.AUTH).test_client()
    delays = [(round_ % 6) * 0.003, 0.0][::1 if round_ % 2 else -1]
    answers = together(lambda: time.sleep(delays[0]) or world.revenuecat(first),
                       lambda: time.sleep(delays[1]) or other.post(
                           "/webhooks/revenuecat", data=rc.body(second), headers={"Authorization": rc.AUTH}))
    return [ok(answer) for answer in answers]


@pytest.mark.parametrize("bought", ["as the user", "anonymously"])
@pytest.mark.parametrize("round_", range(LINK_ROUNDS))
def test_a_transfer_and_the_purchase_it_moves_released_together_end_with_the_new_user(
        world, make_app, revenuecat, round_, bought):
    """A purchase (t1) and the transfer of its user's purchases (t2), each through a
    gateway of its own (one process batches concurrent deliveries into one transaction),
    by a varying delay so that the two transactions overlap in every order: the transfer
    finds the purchase (it committed first), or the purchase finds the transfer in the
    register. Bought anonymously, the purchase's account is not the user it names: its
    transaction must still hold that user's lock, or neither sees the other."""
    user_a, user_b, at = new_user(), new_user(), now()
    account = user_a if bought == "as the user" else f"$RCAnonymousID:{user_a.replace('-', '')[-32:]}"
    purchase = rc.event("INITIAL_PURCHASE", account, original_app_user_id=account, aliases=sorted({account, user_a}),
                        transaction=f"76{1 + (bought == 'anonymously')}{round_:03d}",
                        at_ms=ms(at - timedelta(seconds=2)), expiration_at_ms=ms(soon(6)))
    moved = rc.transfer([user_a], [user_b], at_ms=ms(at - timedelta(seconds=1)))
    assert two_gateways_together(world, make_app, round_, moved, purchase) == ["processed", "processed"]
    assert (world.premium(user_a), (world.premium(user_b) or {}).get("active")) == (None, True)


@pytest.mark.parametrize("round_", range(LINK_ROUNDS))
def test_a_purchase_under_an_anonymous_id_and_an_older_transfer_from_it_released_together_stay_apart(
        world, make_app, revenuecat, round_):
    """A transfer of an anonymous id's purchases (t1) and a purchase made under that id
    after it (t2, naming no user), each through a gateway of its own, by a varying delay
    so that the two transactions overlap in every order: the transfer finds the purchase
    (it committed first) and leaves it, or the purchase finds the transfer in the register
    and is not moved by it."""
    user_b, at = new_user(), now()
    anonymous = f"$RCAnonymousID:{user_b.replace('-', '')[-32:]}"
    moved = rc.transfer([anonymous], [user_b], at_ms=ms(at - timedelta(seconds=2)))
    purchase = rc.event("INITIAL_PURCHASE", anonymous, original_app_user_id=anonymous, aliases=[anonymous],
                        transaction=f"78{round_:04d}", at_ms=ms(at - timedelta(seconds=1)),
                        expiration_at_ms=ms(soon(6)))
    assert two_gateways_together(world, make_app, round_, moved, purchase) == ["processed", "processed"]
    assert world.premium(user_b) is None


# Purchase registration: two users claim one purchase at once; exactly one holds it.

@pytest.fixture
def apple_registrations(make_app, chain, tmp_path, cognito):
    app = make_app(GATEWAY_API_KEYS=API_KEY, **AppStore(chain).env(chain.write_root(tmp_path)), **cognito.env())
    return World(app, chain)


def one_winner(answers, world_premium, users):
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200, 409], [answer.get_data(as_text=True) for answer in answers]
    winner = users[[answer.status_code for answer in answers].index(200)]
    assert [(world_premium(user) or {}).get("active") is True for user in users] == [u == winner for u in users]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_users_registering_one_apple_purchase_together_one_wins(apple_registrations, cognito, round_):
    world, users = apple_registrations, (new_user(), new_user())
    signed = world.apple.chain.sign(world.apple.transaction(f"30000001{round_:02d}"))
    answers = together(*(lambda user=user: world.client.post("/v1/purchases/apple", json={"signedTransaction": signed},
                                                             headers=cognito.header(user)) for user in users))
    one_winner(answers, world.premium, users)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_users_registering_one_google_purchase_together_one_wins(google, round_):
    users, token = (new_user(), new_user()), f"tok-race-{round_}"
    google.play.subscribe(token)
    answers = together(*(lambda user=user: google.register(user, token) for user in users))
    one_winner(answers, google.premium, users)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_registration_naming_its_caller_and_one_by_another_released_together_end_with_the_named(
        apple_registrations, cognito, round_):
    """Bob's transaction names nobody, Alice's (signed later: Set App Account Token) names
    her: whichever commits first, the purchase ends hers, as the merge gives it."""
    world, key, (alice, bob) = apple_registrations, f"30000002{round_:02d}", (new_user(), new_user())
    plain = world.apple.chain.sign(world.apple.transaction(key))
    named = world.apple.chain.sign(world.apple.transaction(key, token=alice, signed=now() + timedelta(seconds=1)))
    answers = together(*(lambda user=user, signed=signed: world.client.post(
        "/v1/purchases/apple", json={"signedTransaction": signed}, headers=cognito.header(user))
        for user, signed in ((alice, named), (bob, plain))))
    assert answers[0].status_code == 200 and answers[1].status_code in (200, 409)
    assert (world.premium(alice) or {}).get("active") is True and (world.premium(bob) or {}).get("active") is not True


@pytest.mark.parametrize("round_", range(LINK_ROUNDS))
def test_a_late_purchase_and_the_next_transfer_of_its_chain_released_together_end_with_the_last_user(
        world, make_app, revenuecat, round_):
    """A bought (t1), moved A->B (t2, recorded before the purchase was delivered); then the
    purchase and B->C (t3) come together through two gateways. The purchase follows the
    register from A to B and reads what B's transfers are: B's lock, taken before that
    read, makes it wait for B->C, or B->C wait and then find the purchase at B."""
    user_a, user_b, user_c, at = new_user(), new_user(), new_user(), now()
    assert ok(world.revenuecat(rc.transfer([user_a], [user_b], at_ms=ms(at - timedelta(seconds=2))))) == "processed"
    purchase = rc.event("INITIAL_PURCHASE", user_a, transaction=f"77{round_:04d}",
                        at_ms=ms(at - timedelta(seconds=3)), expiration_at_ms=ms(soon(6)))
    onward = rc.transfer([user_b], [user_c], at_ms=ms(at - timedelta(seconds=1)))
    assert two_gateways_together(world, make_app, round_, onward, purchase) == ["processed", "processed"]
    assert (world.premium(user_a), world.premium(user_b), (world.premium(user_c) or {}).get("active")) == \
        (None, None, True)
