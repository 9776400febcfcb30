"""The post confirmation handler, called as Lambda calls it, against moto's Cognito and a local Stripe."""
from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import boto3
import pytest

from cognito_triggers import aws, settings
from cognito_triggers.post_confirmation import handler
from cognito_triggers.stripe_customers import IDEMPOTENCY_PREFIX, StripeCustomers
from tests.cognito.conftest import LOAD_HEADROOM, REGION, LambdaContext, UserPool, load_event, log_lines, timed

pytestmark = pytest.mark.usefixtures("stripe_configured")


@pytest.fixture
def ada(user_pool):
    return user_pool.add_user("ada@example.com", name="Ada Lovelace")


def test_confirmed_user_gets_a_customer_with_metadata_and_the_attribute(user_pool, ada, stripe_api, cognito_writes):
    event = user_pool.confirmation_event(ada["username"])

    assert handler(event, LambdaContext()) is event

    [customer] = stripe_api.customers
    assert customer["email"] == "ada@example.com" and customer["name"] == "Ada Lovelace"
    assert customer["metadata"] == {"cognito_sub": ada["sub"], "cognito_username": "ada@example.com"}
    assert user_pool.attributes(ada["username"])["custom:stripe_customer_id"] == customer["id"]
    [create] = [r for r in stripe_api.requests if (r.method, r.path) == ("POST", "/v1/customers")]
    assert create.headers["idempotency-key"] == IDEMPOTENCY_PREFIX + ada["sub"]
    assert len(cognito_writes) == 1


def test_cognito_retries_make_one_customer_and_one_attribute_value(user_pool, ada, stripe_api, cognito_writes):
    event = user_pool.confirmation_event(ada["username"])

    for _ in range(3):  # Cognito makes up to three attempts, each with the same payload
        handler(copy.deepcopy(event), LambdaContext())

    [customer] = stripe_api.customers
    assert stripe_api.state.counts["customer.created"] == 1
    assert {write["UserAttributes"][0]["Value"] for write in cognito_writes} == {customer["id"]}
    assert user_pool.attributes(ada["username"])["custom:stripe_customer_id"] == customer["id"]


def test_a_retry_that_lost_the_search_race_replays_the_first_create(user_pool, ada, stripe_api):
    stripe_api.search_lag(60)  # Stripe's search may not show a customer made seconds ago
    event = user_pool.confirmation_event(ada["username"])

    handler(copy.deepcopy(event), LambdaContext())
    handler(copy.deepcopy(event), LambdaContext())

    assert stripe_api.calls("POST", "/v1/customers") == 2
    assert stripe_api.state.counts["customer.created"] == 1


def checkout_creating(stripe_api, pool, sub):
    """The gateway's checkout creating the user's customer, its create held executing in Stripe."""
    held = stripe_api.hold("/v1/customers")
    checkout = pool.submit(StripeCustomers(stripe_api.api_key, stripe_api.url, timeout=10.0).ensure_customer, sub)
    assert held.read.wait(2)
    return held, checkout


def test_a_confirmation_during_checkouts_create_waits_and_links_that_customer(user_pool, ada, stripe_api,
                                                                               cognito_writes):
    with ThreadPoolExecutor() as pool:
        held, checkout = checkout_creating(stripe_api, pool, ada["sub"])
        stripe_api.release_after_key_in_use(held)

        handler(user_pool.confirmation_event(ada["username"]), LambdaContext())

    assert stripe_api.keys_in_use >= 1 and stripe_api.state.counts["customer.created"] == 1
    assert user_pool.attributes(ada["username"])["custom:stripe_customer_id"] == checkout.result()


def test_a_customer_still_being_created_after_the_waits_is_logged_and_nothing_written(user_pool, ada, stripe_api,
                                                                                      cognito_writes, capsys):
    event = user_pool.confirmation_event(ada["username"])
    with ThreadPoolExecutor() as pool:
        held, checkout = checkout_creating(stripe_api, pool, ada["sub"])
        try:
            assert handler(event, LambdaContext()) is event
        finally:
            held.release()

    assert cognito_writes == [] and "custom:stripe_customer_id" not in user_pool.attributes(ada["username"])
    [warning] = [line for line in log_lines(capsys.readouterr().err) if line["level"] == "warning"]
    assert (warning["sub"], warning["error"], warning["code"]) == (ada["sub"], "CustomerInFlight",
                                                                   "idempotency_key_in_use")
    assert "still being created" in warning["detail"]
    assert [c["id"] for c in stripe_api.customers] == [checkout.result()]  # checkout's, made once


def test_an_attempt_after_a_create_stripe_failed_and_saved_links_a_customer(user_pool, ada, stripe_api, capsys):
    stripe_api.fail_executing("/v1/customers")  # Stripe saves the 500 and replays it for 24 hours
    event = user_pool.confirmation_event(ada["username"])

    handler(copy.deepcopy(event), LambdaContext())
    assert "custom:stripe_customer_id" not in user_pool.attributes(ada["username"])
    handler(copy.deepcopy(event), LambdaContext())

    [customer] = stripe_api.customers
    assert user_pool.attributes(ada["username"])["custom:stripe_customer_id"] == customer["id"]
    assert [(r.status, r.replayed) for r in stripe_api.requests if r.method == "POST"] == [
        (500, None), (500, "true"), (200, None)]


def test_rerun_after_the_link_writes_nothing(user_pool, ada, stripe_api, cognito_writes):
    handler(user_pool.confirmation_event(ada["username"]), LambdaContext())
    requests_before = len(stripe_api.requests)

    handler(user_pool.confirmation_event(ada["username"]), LambdaContext())

    assert len(cognito_writes) == 1
    assert len(stripe_api.requests) == requests_before


def test_admin_confirmation_is_treated_like_a_sign_up(user_pool, stripe_api, cognito_writes):
    user = user_pool.add_user("grace@example.com")
    event = load_event("post_confirmation_admin_confirm_sign_up")
    event.update(userPoolId=user_pool.id, userName=user["username"])
    event["request"]["userAttributes"].update(sub=user["sub"], email="grace@example.com")

    handler(event, LambdaContext())

    [customer] = stripe_api.customers
    assert customer["name"] == "Ada Lovelace"  # given_name and family_name of the fixture
    assert user_pool.attributes(user["username"])["custom:stripe_customer_id"] == customer["id"]


def test_a_federated_users_first_sign_in_links_the_user_named_by_their_provider(user_pool, stripe_api, cognito_writes):
    """A first sign-in through Google, Apple or SAML runs PreSignUp_ExternalProvider then
    this trigger as PostConfirmation_ConfirmSignUp, with ``userName`` the provider-prefixed
    name (``Google_<id>``), not the sub: the attribute is written to that name, the customer
    keyed by the sub."""
    event = load_event("post_confirmation_federated_sign_up")
    user = user_pool.client.admin_create_user(UserPoolId=user_pool.id, Username=event["userName"],
                                              MessageAction="SUPPRESS")["User"]
    sub = next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")
    event.update(userPoolId=user_pool.id)
    event["request"]["userAttributes"]["sub"] = sub

    assert handler(event, LambdaContext()) is event

    [customer] = stripe_api.customers
    assert customer["metadata"] == {"cognito_sub": sub, "cognito_username": "Google_107691234567890123456"}
    assert user_pool.attributes("Google_107691234567890123456")["custom:stripe_customer_id"] == customer["id"]
    assert [write["Username"] for write in cognito_writes] == ["Google_107691234567890123456"]


def test_forgot_password_confirmation_does_nothing(user_pool, ada, stripe_api, cognito_writes):
    event = user_pool.confirmation_event(ada["username"], "post_confirmation_confirm_forgot_password")
    original = copy.deepcopy(event)

    assert handler(event, LambdaContext()) is event

    assert event == original
    assert stripe_api.requests == [] and cognito_writes == []


def test_existing_customer_with_the_sub_is_linked_not_duplicated(user_pool, ada, stripe_api):
    existing = stripe_api.add_customer(email="ada@old.example", metadata={"cognito_sub": ada["sub"]})

    handler(user_pool.confirmation_event(ada["username"]), LambdaContext())

    assert [customer["id"] for customer in stripe_api.customers] == [existing["id"]]
    assert stripe_api.calls("POST", "/v1/customers") == 0
    assert user_pool.attributes(ada["username"])["custom:stripe_customer_id"] == existing["id"]


def test_attribute_already_set_means_no_stripe_call_and_no_write(user_pool, ada, stripe_api, cognito_writes):
    event = user_pool.confirmation_event(ada["username"])
    event["request"]["userAttributes"]["custom:stripe_customer_id"] = "cus_LinkedBefore"

    assert handler(event, LambdaContext()) is event

    assert stripe_api.requests == [] and cognito_writes == []


@pytest.mark.parametrize("configured", ["billing_customer", "custom:billing_customer"])
def test_attribute_name_is_configurable_with_or_without_prefix(monkeypatch, aws_mock, stripe_api, configured):
    monkeypatch.setenv("COGNITO_STRIPE_ATTRIBUTE", configured)
    pool = UserPool(boto3.client("cognito-idp", region_name=REGION), attribute="billing_customer")
    user = pool.add_user("ada@example.com")

    handler(pool.confirmation_event(user["username"]), LambdaContext())

    assert pool.attributes(user["username"])["custom:billing_customer"] == stripe_api.customers[0]["id"]


def test_stripe_outage_returns_the_event_at_once(user_pool, ada, stripe_api, cognito_writes, capsys):
    stripe_api.fail_with(500)
    event = user_pool.confirmation_event(ada["username"])
    original = copy.deepcopy(event)

    context = LambdaContext()
    returned, elapsed = timed(handler, event, context)

    assert returned is event and elapsed < context.timeout
    assert len(stripe_api.requests) == 1  # Stripe's answer taken at once: no retry, no wait
    assert event == original and cognito_writes == []
    [warning] = [line for line in log_lines(capsys.readouterr().err) if line["level"] == "warning"]
    assert warning["sub"] == ada["sub"] and warning["http_status"] == 500


def test_hanging_stripe_is_cut_off_within_cognitos_budget(user_pool, ada, stripe_api, cognito_writes):
    """As deployed: one Stripe call gives up after STRIPE_TIMEOUT_SECONDS (1.5), well within
    the 5 s Cognito waits; waiting for Stripe would take 30."""
    stripe_api.hang(30)
    context = LambdaContext()

    _, elapsed = timed(handler, user_pool.confirmation_event(ada["username"]), context)

    assert elapsed < context.timeout, elapsed
    assert len(stripe_api.requests) == 1  # the call was made, and given up on
    assert cognito_writes == []


def test_one_stripe_call_gives_up_after_its_own_timeout(monkeypatch, user_pool, ada, stripe_api, cognito_writes):
    """The call's timeout, not the invocation's: with a budget of 20 s, a call that took
    the budget or waited for Stripe (30 s) would take 20 s at least."""
    monkeypatch.setenv("TRIGGER_BUDGET_SECONDS", "20")
    stripe_api.hang(30)

    _, elapsed = timed(handler, user_pool.confirmation_event(ada["username"]), LambdaContext(timeout=30))

    assert elapsed < settings.stripe_timeout() + LOAD_HEADROOM, elapsed
    assert len(stripe_api.requests) == 1 and cognito_writes == []


def test_little_time_left_in_the_invocation_shortens_every_call(monkeypatch, user_pool, ada, stripe_api):
    """Lambda's remaining time bounds the calls: with 2.5 s left (the Stripe call gets what
    the Cognito write after it leaves), and 20 s allowed to Stripe and to the invocation, a
    handler that did not read the context would wait 18 s at least."""
    monkeypatch.setenv("TRIGGER_BUDGET_SECONDS", "20")
    monkeypatch.setenv("STRIPE_TIMEOUT_SECONDS", "20")
    stripe_api.hang(30)
    context = LambdaContext(timeout=2.5)

    _, elapsed = timed(handler, user_pool.confirmation_event(ada["username"]), context)

    assert elapsed < context.timeout + LOAD_HEADROOM, elapsed
    assert len(stripe_api.requests) == 1


def test_unknown_user_in_cognito_is_logged_not_raised(user_pool, stripe_api, capsys):
    event = user_pool.confirmation_event(user_pool.add_user("ada@example.com")["username"])
    event["userName"] = "deleted-meanwhile"

    assert handler(event, LambdaContext()) is event

    [warning] = [line for line in log_lines(capsys.readouterr().err) if line["level"] == "warning"]
    assert warning["error"] == "UserNotFoundException"


def test_attribute_missing_from_the_schema_is_logged_not_raised(user_pool, ada, stripe_api, capsys):
    # moto does not check custom attributes against the schema; answer as Cognito does.
    def refuse(**kwargs):
        error = {"Error": {"Code": "InvalidParameterException",
                           "Message": "Attribute does not exist in the schema."}}
        return SimpleNamespace(status_code=400, headers={}), error
    aws.client("cognito-idp").meta.events.register(
        "before-call.cognito-identity-provider.AdminUpdateUserAttributes", refuse)

    assert handler(user_pool.confirmation_event(ada["username"]), LambdaContext())

    [warning] = [line for line in log_lines(capsys.readouterr().err) if line["level"] == "warning"]
    assert warning["error"] == "InvalidParameterException" and warning["sub"] == ada["sub"]


def test_stripe_key_is_read_from_ssm_once_per_container(monkeypatch, user_pool, stripe_api):
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name="/gateway/stripe-key", Value=stripe_api.api_key, Type="SecureString")
    monkeypatch.delenv("STRIPE_API_KEY")
    monkeypatch.setenv("STRIPE_API_KEY_PARAMETER", "/gateway/stripe-key")
    first, second = user_pool.add_user("ada@example.com"), user_pool.add_user("alan@example.com")

    handler(user_pool.confirmation_event(first["username"]), LambdaContext())
    ssm.delete_parameter(Name="/gateway/stripe-key")
    handler(user_pool.confirmation_event(second["username"]), LambdaContext())

    assert len(stripe_api.customers) == 2
    assert "custom:stripe_customer_id" in user_pool.attributes(second["username"])


def test_unconfigured_stripe_leaves_sign_up_alone(monkeypatch, user_pool, ada, stripe_api, cognito_writes):
    monkeypatch.delenv("STRIPE_API_KEY")

    event = user_pool.confirmation_event(ada["username"])
    assert handler(event, LambdaContext()) is event

    assert stripe_api.requests == [] and cognito_writes == []


def test_logs_are_json_and_never_carry_the_key(monkeypatch, user_pool, ada, stripe_api, capsys):
    handler(user_pool.confirmation_event(ada["username"]), LambdaContext())
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_wrongKey51Hx")
    handler(user_pool.confirmation_event(user_pool.add_user("alan@example.com")["username"]), LambdaContext())
    stripe_api.fail_with(500)
    handler(user_pool.confirmation_event(user_pool.add_user("mary@example.com")["username"]), LambdaContext())

    captured = capsys.readouterr().err
    lines = log_lines(captured)
    assert [line["message"] for line in lines] == [
        "stripe customer linked", "stripe customer not linked", "stripe customer not linked"]
    assert stripe_api.api_key not in captured and "sk_test_wrongKey51Hx" not in captured
    assert "wrongKey" not in captured


def test_a_stripe_that_answers_a_byte_at_a_time_is_abandoned_within_the_budget(user_pool, ada, stripe_api,
                                                                                 cognito_writes):
    stripe_api.trickle(0.2)  # every read succeeds; each answer would take tens of seconds
    event = user_pool.confirmation_event(ada["username"])
    context = LambdaContext(timeout=3.0)

    returned, elapsed = timed(handler, event, context)

    assert returned is event and elapsed < context.timeout + LOAD_HEADROOM, elapsed
    assert len(stripe_api.requests) == 1 and cognito_writes == []


@pytest.mark.parametrize("level", ["", "verbose"])
def test_an_unknown_log_level_never_blocks_a_sign_up(monkeypatch, user_pool, ada, stripe_api, level):
    """LOG_LEVEL left empty by a template, or a level logging does not know, must not make
    the handler raise: Cognito would fail the user's sign-up."""
    monkeypatch.setenv("LOG_LEVEL", level)
    event = user_pool.confirmation_event(ada["username"])

    assert handler(event, LambdaContext()) is event

    [customer] = stripe_api.customers
    assert user_pool.attributes(ada["username"])["custom:stripe_customer_id"] == customer["id"]
