"""POST /v1/purchases/google, ownership by linkedPurchaseToken, and the service account."""
from __future__ import annotations

import threading

from devtools import google_pubsub as rtdn
from devtools.google_play import ORDER
from tests.support.google_gateway import API_KEY, _play_server, google, play, push_signer  # noqa: F401

ALICE, BOB = "a11ce000-0000-4000-8000-000000000001", "b0b00000-0000-4000-8000-000000000002"


def test_registering_a_purchase_links_acknowledges_and_answers_the_entitlements(google):
    google.play.subscribe("tok-r")
    answer = google.register(ALICE, "tok-r")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["user_id"] == ALICE and body["is_premium"] is True
    assert body["entitlements"]["premium"]["product_id"] == "premium_monthly"
    assert google.play.acks == [("premium_monthly", "tok-r")]
    assert google.client.get("/v1/me/entitlements", headers=google.cognito.header(ALICE)).get_json() == body


def test_a_subscription_stored_before_its_owner_is_known_attaches_on_registration(google):
    google.play.subscribe("tok-early")
    assert google.push(rtdn.subscription("tok-early", 4)).get_json() == {"status": "processed"}
    assert google.entitlements(ALICE)["is_premium"] is False
    assert google.register(ALICE, "tok-early").get_json()["is_premium"] is True
    assert len(google.play.acks) == 1  # the notification acknowledged it already


def test_later_notifications_of_a_registered_token_reach_its_user(google):
    google.play.subscribe("tok-later")
    google.register(ALICE, "tok-later")
    google.play.subscribe("tok-later", "SUBSCRIPTION_STATE_ON_HOLD", acknowledged=True, days=-1)
    google.push(rtdn.subscription("tok-later", 5))
    assert google.premium(ALICE)["status"] == "billing_retry" and google.premium(ALICE)["active"] is False


def test_a_token_linked_to_another_user_is_409(google):
    google.play.subscribe("tok-owned")
    assert google.register(ALICE, "tok-owned").status_code == 200
    answer = google.register(BOB, "tok-owned")
    assert (answer.status_code, answer.get_json()["error"]) == (409, "purchase_owned_by_another_user")
    assert google.entitlements(BOB)["is_premium"] is False


def test_a_purchase_made_for_another_user_is_409(google):
    google.play.subscribe("tok-named", user=ALICE)
    assert google.register(BOB, "tok-named").status_code == 409


def test_an_unknown_token_is_404(google):
    answer = google.register(ALICE, "tok-nobody")
    assert (answer.status_code, answer.get_json()["error"]) == (404, "unknown_purchase")


def test_a_product_the_purchase_does_not_hold_is_400(google):
    google.play.subscribe("tok-p", product="premium_monthly")
    assert google.register(ALICE, "tok-p", product="premium_yearly").status_code == 400
    assert google.play.acks == []


def test_bad_bodies_and_missing_tokens_are_refused(google):
    assert google.register(None, "tok").status_code == 401
    answer = google.client.post("/v1/purchases/google", json={"purchaseToken": ""}, headers=google.cognito.header(ALICE))
    assert (answer.status_code, answer.get_json()["error"]) == (400, "malformed_purchase")


def test_a_failed_acknowledgement_is_503_and_the_retry_acknowledges_once(google):
    google.play.subscribe("tok-ack")
    google.play.fail_acks = 1
    first = google.register(ALICE, "tok-ack")
    assert (first.status_code, first.get_json()["error"]) == (503, "acknowledgement_failed")
    assert google.register(ALICE, "tok-ack").status_code == 200
    assert google.play.acks == [("premium_monthly", "tok-ack")]


def test_the_play_api_down_is_503(google):
    google.play.down = True
    answer = google.register(ALICE, "tok-any")
    assert (answer.status_code, answer.get_json()["error"]) == (503, "play_api_unavailable")


def test_registration_without_the_google_source_is_503(make_app, cognito):
    app = make_app(**cognito.env())
    answer = app.test_client().post("/v1/purchases/google", json={"purchaseToken": "t", "productId": "p"},
                                    headers=cognito.header(ALICE))
    assert (answer.status_code, answer.get_json()["error"]) == (503, "source_not_configured")


def test_an_upgrade_carries_the_owner_to_the_new_token_and_retires_the_old_one(google):
    google.play.subscribe("tok-old", product="premium_monthly", days=20)
    google.register(ALICE, "tok-old")
    google.play.subscribe("tok-old", "SUBSCRIPTION_STATE_EXPIRED", acknowledged=True, days=20)
    google.play.subscribe("tok-new", product="premium_yearly", days=365, linked="tok-old")
    assert google.push(rtdn.subscription("tok-new", 4)).get_json() == {"status": "processed"}
    premium = google.premium(ALICE)
    assert (premium["active"], premium["product_id"]) == (True, "premium_yearly")
    assert ("premium_yearly", "tok-new") in google.play.acks
    # The old token no longer grants: once the new one ends, so does access, although
    # the old token's period would still run for 20 days.
    google.play.subscribe("tok-new", "SUBSCRIPTION_STATE_EXPIRED", acknowledged=True, days=-1, linked="tok-old")
    google.push(rtdn.subscription("tok-new", 13))
    assert google.entitlements(ALICE)["is_premium"] is False


def test_a_pending_upgrade_does_not_retire_the_old_token(google):
    google.play.subscribe("tok-paid", user=ALICE)
    google.push(rtdn.subscription("tok-paid", 4))
    google.play.subscribe("tok-pending", "SUBSCRIPTION_STATE_PENDING", user=ALICE, linked="tok-paid")
    google.push(rtdn.subscription("tok-pending", 4))
    assert google.premium(ALICE)["active"] is True


def test_an_upgrade_registered_by_another_user_is_409(google):
    google.play.subscribe("tok-a1", user=ALICE)
    google.push(rtdn.subscription("tok-a1", 4))
    google.play.subscribe("tok-a2", linked="tok-a1")
    assert google.register(BOB, "tok-a2").status_code == 409


def test_the_service_account_key_gets_an_access_token_once(make_app, push_signer, play, cognito):
    app = make_app(**push_signer.env(), **play.env(service_account=True), GATEWAY_API_KEYS=API_KEY)
    play.subscribe("tok-sa", user=ALICE)
    play.subscribe("tok-sa2", user=ALICE)
    client = app.test_client()
    for token in ("tok-sa", "tok-sa2"):
        answer = client.post("/webhooks/google", data=rtdn.envelope(rtdn.subscription(token)),
                             headers=push_signer.headers())
        assert answer.get_json() == {"status": "processed"}
    assert len(play.grants) == 1 and play.grants[0]["iss"] == "play-api@example-project.iam.gserviceaccount.com"
    assert len(play.acks) == 2


def test_a_failing_token_endpoint_defers_the_event(make_app, push_signer, play):
    app = make_app(**push_signer.env(), **play.env(service_account=True))
    play.subscribe("tok-sa", user=ALICE)
    play.key = None  # the endpoint no longer knows the key the gateway signs with
    answer = app.test_client().post("/webhooks/google", data=rtdn.envelope(rtdn.subscription("tok-sa")),
                                    headers=push_signer.headers())
    assert answer.get_json() == {"status": "deferred"} and play.gets == []


def test_without_play_api_credentials_events_are_kept_for_later(make_app, push_signer, play):
    app = make_app(**push_signer.env())
    answer = app.test_client().post("/webhooks/google", data=rtdn.envelope(rtdn.subscription("tok-x")),
                                    headers=push_signer.headers())
    assert answer.get_json() == {"status": "deferred"}


def test_a_registration_whose_read_of_play_is_overtaken_reads_again(google):
    """Play answers the registration with the active state, slowly; meanwhile the purchase is
    revoked and its notification stores that. The registration reads again (it does not
    store the older answer over the newer one) and links the token all the same."""
    google.play.subscribe("tok-overtaken", acknowledged=True)
    assert google.push(rtdn.subscription("tok-overtaken", 4)).get_json() == {"status": "processed"}
    held = google.play.hold()
    answer: dict = {}
    registering = threading.Thread(target=lambda: answer.update(response=google.register(ALICE, "tok-overtaken")))
    registering.start()
    assert held.read.wait(10)
    google.play.subscribe("tok-overtaken", "SUBSCRIPTION_STATE_EXPIRED", acknowledged=True, days=0)
    assert google.push(rtdn.subscription("tok-overtaken", 12)).get_json() == {"status": "processed"}
    held.release()
    registering.join(30)
    assert answer["response"].status_code == 200, answer["response"].get_json()
    assert answer["response"].get_json()["is_premium"] is False  # Play's newest answer
    assert google.premium(ALICE)["status"] == "expired"  # linked: the user holds the token
    assert google.play.gets.count("tok-overtaken") == 4


def test_an_upgrade_delivered_before_its_old_purchase_goes_to_the_old_purchases_user(google):
    """The new token's notification comes first (the old token's was deferred, or is late)
    and names nobody; the old token's own delivery, naming its user, attaches both."""
    google.play.subscribe("tok-o", "SUBSCRIPTION_STATE_EXPIRED", user=ALICE, acknowledged=True, days=20)
    google.play.subscribe("tok-n", product="premium_yearly", days=365, linked="tok-o", acknowledged=True)
    assert google.push(rtdn.subscription("tok-n", 4)).get_json() == {"status": "processed"}
    assert google.entitlements(ALICE)["is_premium"] is False  # nobody is known to hold it yet
    assert google.push(rtdn.subscription("tok-o", 13)).get_json() == {"status": "processed"}
    premium = google.premium(ALICE)
    assert (premium["active"], premium["product_id"]) == (True, "premium_yearly")


def test_an_upgrade_whose_old_purchase_is_registered_later_goes_to_its_user(google):
    google.play.subscribe("tok-o2", "SUBSCRIPTION_STATE_EXPIRED", acknowledged=True, days=20)
    google.play.subscribe("tok-n2", product="premium_yearly", days=365, linked="tok-o2", acknowledged=True)
    assert google.push(rtdn.subscription("tok-n2", 4)).get_json() == {"status": "processed"}
    assert google.register(ALICE, "tok-o2").status_code == 200
    premium = google.premium(ALICE)
    assert (premium["active"], premium["product_id"]) == (True, "premium_yearly")
    assert google.register(BOB, "tok-n2", product="premium_yearly").status_code == 409  # it is Alice's now


def test_an_upgrade_registered_before_its_old_purchase_is_known_is_the_callers(google):
    google.play.subscribe("tok-o3", "SUBSCRIPTION_STATE_EXPIRED", acknowledged=True, days=20)
    google.play.subscribe("tok-n3", product="premium_yearly", days=365, linked="tok-o3", acknowledged=True)
    assert google.push(rtdn.subscription("tok-n3", 4)).get_json() == {"status": "processed"}
    assert google.register(ALICE, "tok-n3", product="premium_yearly").get_json()["is_premium"] is True
    google.push(rtdn.subscription("tok-n3", 2))  # a renewal: still hers
    assert google.premium(ALICE)["active"] is True


def test_two_upgrades_delivered_newest_first_go_to_the_first_purchases_user(google):
    """P upgraded to O, O to N; the notifications come N, O, then P naming Alice: the link
    that names her attaches O (held under P's account) and N (held under O's)."""
    google.play.subscribe("tok-p4", "SUBSCRIPTION_STATE_EXPIRED", user=ALICE, acknowledged=True, days=40)
    google.play.subscribe("tok-o4", "SUBSCRIPTION_STATE_EXPIRED", linked="tok-p4", acknowledged=True, days=20)
    google.play.subscribe("tok-n4", product="premium_yearly", days=365, linked="tok-o4", acknowledged=True)
    for token in ("tok-n4", "tok-o4"):
        assert google.push(rtdn.subscription(token, 4)).get_json() == {"status": "processed"}
    assert google.entitlements(ALICE)["is_premium"] is False  # nobody is known to hold them yet
    assert google.push(rtdn.subscription("tok-p4", 13)).get_json() == {"status": "processed"}
    premium = google.premium(ALICE)
    assert (premium["active"], premium["product_id"]) == (True, "premium_yearly")
    assert google.register(BOB, "tok-n4", product="premium_yearly").status_code == 409  # it is Alice's


def test_two_upgrades_delivered_before_the_first_purchase_is_registered_go_to_its_registrant(google):
    google.play.subscribe("tok-p5", "SUBSCRIPTION_STATE_EXPIRED", acknowledged=True, days=40)
    google.play.subscribe("tok-o5", "SUBSCRIPTION_STATE_EXPIRED", linked="tok-p5", acknowledged=True, days=20)
    google.play.subscribe("tok-n5", product="premium_yearly", days=365, linked="tok-o5", acknowledged=True)
    for token in ("tok-n5", "tok-o5"):
        assert google.push(rtdn.subscription(token, 4)).get_json() == {"status": "processed"}
    assert google.register(ALICE, "tok-p5").status_code == 200
    premium = google.premium(ALICE)
    assert (premium["active"], premium["product_id"]) == (True, "premium_yearly")


def test_the_user_a_purchase_names_may_claim_it_after_another_registered_it(google):
    """Bob registered a purchase made without an obfuscated account id; Play now names Alice
    (a notification would give it to her): her registration is hers, not a 409."""
    google.play.subscribe("tok-renamed")
    assert google.register(BOB, "tok-renamed").status_code == 200
    google.play.subscribe("tok-renamed", user=ALICE, acknowledged=True)
    answer = google.register(ALICE, "tok-renamed")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["is_premium"] is True and google.entitlements(BOB)["is_premium"] is False


def prepaid(purchase: dict) -> dict:
    """A prepaid plan: it does not renew; the user tops it up (a purchase of its own)."""
    for item in purchase["lineItems"]:
        del item["autoRenewingPlan"]
        item["prepaidPlan"] = {"allowExtendAfterTime": item["expiryTime"]}
    return purchase


def test_a_prepaid_top_up_extends_access_and_the_topped_up_token_grants_no_more(google):
    """A top-up is a new purchase token whose ``linkedPurchaseToken`` names the one topped up
    (https://developers.google.com/android-publisher/api-ref/rest/v3/purchases.subscriptionsv2),
    ending later: access goes on, renewed, and the old token's own notification, read later,
    does not bring its earlier end back."""
    prepaid(google.play.subscribe("tok-pp1", user=ALICE, acknowledged=True, days=3))
    assert google.push(rtdn.subscription("tok-pp1", 4)).get_json() == {"status": "processed"}
    assert google.premium(ALICE)["active"] is True and google.premium(ALICE)["will_renew"] is False
    top_up = prepaid(google.play.subscribe("tok-pp2", user=ALICE, acknowledged=True, days=33, linked="tok-pp1",
                                           order=f"{ORDER}9"))
    assert google.push(rtdn.subscription("tok-pp2", 4)).get_json() == {"status": "processed"}
    assert google.push(rtdn.subscription("tok-pp1", 13)).get_json() == {"status": "processed"}
    premium = google.premium(ALICE)
    assert (premium["active"], premium["will_renew"]) == (True, False)
    assert premium["expires_at"][:19] == top_up["lineItems"][0]["expiryTime"][:19]
    feed = google.client.get("/v1/events", query_string={"after": 0, "limit": 100},
                             headers={"Authorization": f"Bearer {API_KEY}"}).get_json()["events"]
    assert [e["type"] for e in feed] == ["entitlement.granted", "entitlement.renewed"]
