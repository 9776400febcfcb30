"""``StripeCustomers``, the module the trigger shares with the gateway's checkout, on the local Stripe."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import stripe

from cognito_triggers import stripe_customers
from cognito_triggers.stripe_customers import IDEMPOTENCY_PREFIX, CustomerPending, StripeCustomers, search_query
from tests.cognito.conftest import LOAD_HEADROOM
from tests.fakes.stripe_api import StripeError


@pytest.fixture
def customers(stripe_api):
    return StripeCustomers(stripe_api.api_key, stripe_api.url, timeout=2.0)


def test_ensure_creates_once_then_finds(customers, stripe_api):
    first = customers.ensure_customer("sub-1", "ada@example.com", "Ada", "ada")
    again = customers.ensure_customer("sub-1", "ada@example.com", "Ada", "ada")

    assert first == again and len(stripe_api.customers) == 1
    assert stripe_api.customers[0]["metadata"] == {"cognito_sub": "sub-1", "cognito_username": "ada"}


def test_create_carries_the_fixed_idempotency_key(customers, stripe_api):
    customers.ensure_customer("sub-1")

    [create] = [r for r in stripe_api.requests if r.method == "POST"]
    assert create.headers["idempotency-key"] == f"{IDEMPOTENCY_PREFIX}sub-1"
    assert create.params == {"metadata": {"cognito_sub": "sub-1"}}


def test_changed_details_inside_the_search_lag_find_the_first_customer_and_make_no_second(customers, stripe_api):
    stripe_api.search_lag(60)
    first = customers.ensure_customer("sub-1", "ada@example.com")

    # Stripe refuses the key's reuse with other details; the list shows what the search does not yet
    assert customers.ensure_customer("sub-1", "ada@new.example") == first
    assert len(stripe_api.customers) == 1
    assert {r.headers["idempotency-key"] for r in stripe_api.requests if r.method == "POST"} == {"cognito-customer-sub-1"}


def test_a_create_meeting_one_still_executing_waits_and_gets_the_same_customer(customers, stripe_api):
    held = stripe_api.hold("/v1/customers")  # the first create executes until released
    with ThreadPoolExecutor() as pool:
        first = pool.submit(customers.ensure_customer, "sub-1")
        assert held.read.wait(2)
        stripe_api.release_after_key_in_use(held)

        second = customers.ensure_customer("sub-1")

    assert second == first.result() and stripe_api.state.counts["customer.created"] == 1
    assert stripe_api.keys_in_use >= 1  # the second met the first executing, and waited
    keys = {r.headers["idempotency-key"] for r in stripe_api.requests if r.method == "POST"}
    assert keys == {f"{IDEMPOTENCY_PREFIX}sub-1"}


def test_a_create_still_executing_after_every_wait_says_ask_again_and_makes_nothing(customers, stripe_api):
    patient = StripeCustomers(stripe_api.api_key, stripe_api.url, timeout=10.0)
    held = stripe_api.hold("/v1/customers")
    with ThreadPoolExecutor() as pool:
        first = pool.submit(patient.ensure_customer, "sub-1")
        assert held.read.wait(2)
        try:
            with pytest.raises(CustomerPending, match="still being created"):
                customers.ensure_customer("sub-1")
            assert stripe_api.customers == []
        finally:
            held.release()
    assert stripe_api.calls("POST", "/v1/customers") == 1 + 4  # the first, then each attempt of the second
    assert [c["id"] for c in stripe_api.customers] == [first.result()]


@pytest.mark.parametrize("refusal", [
    StripeError(409, "invalid_request_error", "The request conflicts with another.", "resource_conflict"),
    StripeError(400, "invalid_request_error", "Invalid email address: ada@", "email_invalid", "email"),
], ids=["another-409", "400"])
def test_a_refused_create_is_raised_at_once(customers, stripe_api, refusal):
    stripe_api.refuse_next("POST", "/v1/customers", refusal)

    with pytest.raises(stripe.StripeError) as raised:
        customers.ensure_customer("sub-1", "ada@")
    assert raised.value.http_status == refusal.status and not isinstance(raised.value, CustomerPending)
    assert stripe_api.calls("POST", "/v1/customers") == 1 and stripe_api.customers == []


def test_changed_details_after_the_lag_find_the_first_customer(customers, stripe_api):
    first = customers.ensure_customer("sub-1", "ada@example.com")

    assert customers.ensure_customer("sub-1", "ada@new.example") == first


def test_find_returns_the_oldest_of_duplicates(customers, stripe_api):
    older = stripe_api.add_customer(metadata={"cognito_sub": "sub-1"})
    older["created"] -= 100
    stripe_api.add_customer(metadata={"cognito_sub": "sub-1"})

    assert customers.find_customer("sub-1") == older["id"]
    assert customers.find_customer("sub-2") is None


def test_quotes_in_the_sub_are_escaped(customers, stripe_api):
    assert search_query("it's") == "metadata['cognito_sub']:'it\\'s'"
    made = customers.ensure_customer("it's")

    assert customers.find_customer("it's") == made


def test_each_call_is_bounded_by_the_timeout(stripe_api):
    """Stripe hangs 30 s, and stripe-python's own timeout is 80 s: a call that took either
    would take 30 s at least."""
    stripe_api.hang(30)
    customers = StripeCustomers(stripe_api.api_key, stripe_api.url, timeout=lambda: 0.5)

    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        customers.find_customer("sub-1")
    assert time.monotonic() - started < 0.5 + LOAD_HEADROOM
    assert len(stripe_api.requests) == 1


def test_a_wrong_key_is_an_authentication_error(stripe_api):
    with pytest.raises(stripe.AuthenticationError):
        StripeCustomers("sk_test_wrong", stripe_api.url).find_customer("sub-1")


def creates(stripe_api) -> list[tuple[str, int, str | None]]:
    """Each create sent: its idempotency key, Stripe's status, and whether the answer was a replay."""
    return [(r.headers["idempotency-key"], r.status, r.replayed) for r in stripe_api.requests
            if (r.method, r.path) == ("POST", "/v1/customers")]


def test_a_saved_server_error_is_not_the_users_answer_for_24_hours(customers, stripe_api):
    stripe_api.fail_executing("/v1/customers")  # the create begins, fails, and Stripe saves the 500
    with pytest.raises(stripe.APIError):
        customers.ensure_customer("sub-1", "ada@example.com")

    made = customers.ensure_customer("sub-1", "ada@example.com")

    assert [c["id"] for c in stripe_api.customers] == [made]
    assert creates(stripe_api) == [("cognito-customer-sub-1", 500, None), ("cognito-customer-sub-1", 500, "true"),
                                   ("cognito-customer.2-sub-1", 200, None)]
    assert customers.ensure_customer("sub-1", "ada@example.com") == made


def test_a_server_error_that_made_the_customer_all_the_same_is_found_not_doubled(customers, stripe_api):
    stripe_api.search_lag(60)  # the search cannot show it yet; the list can
    stripe_api.fail_executing("/v1/customers", creates=True)
    with pytest.raises(stripe.APIError):
        customers.ensure_customer("sub-1")

    assert customers.ensure_customer("sub-1") == stripe_api.customers[0]["id"]
    assert len(stripe_api.customers) == 1 and len(creates(stripe_api)) == 2


def test_a_key_first_used_with_other_details_that_failed_moves_on(customers, stripe_api):
    stripe_api.fail_executing("/v1/customers")
    with pytest.raises(stripe.APIError):  # the trigger, with the user's email
        customers.ensure_customer("sub-1", "ada@example.com", "Ada", "ada")

    made = customers.ensure_customer("sub-1")  # checkout, without: Stripe answers 400 idempotency_error

    assert [c["id"] for c in stripe_api.customers] == [made]
    assert [(key, status) for key, status, _ in creates(stripe_api)] == [
        ("cognito-customer-sub-1", 500), ("cognito-customer-sub-1", 400), ("cognito-customer.2-sub-1", 200)]


def test_rivals_moving_past_a_saved_error_together_make_one_customer(customers, stripe_api):
    stripe_api.fail_executing("/v1/customers")
    with pytest.raises(stripe.APIError):
        customers.ensure_customer("sub-1")
    stripe_api.gate("/v1/customers", 2, exact=True)  # both read the new customers before either creates
    held = stripe_api.hold("/v1/customers", "POST")  # the first create on the next key executes until released
    stripe_api.release_after_key_in_use(held)

    with ThreadPoolExecutor() as pool:
        made = list(pool.map(lambda details: customers.ensure_customer("sub-1", *details),
                             [("ada@example.com", "Ada"), ()]))

    assert stripe_api.gates_opened == 1 and stripe_api.keys_in_use >= 1
    assert made[0] == made[1] and [c["id"] for c in stripe_api.customers] == made[:1]
    assert {key for key, status, _ in creates(stripe_api) if status == 200} == {"cognito-customer.2-sub-1"}


def test_keys_all_holding_saved_errors_say_to_ask_again_later(customers, stripe_api):
    for _ in range(3):
        stripe_api.fail_executing("/v1/customers")
        with pytest.raises(stripe.APIError):  # each call spends one more key on a fresh failure
            customers.ensure_customer("sub-1")

    with pytest.raises(CustomerPending, match="spent on a failed creation"):
        customers.ensure_customer("sub-1")
    assert stripe_api.customers == [] and {key for key, _, _ in creates(stripe_api)} == {
        "cognito-customer-sub-1", "cognito-customer.2-sub-1", "cognito-customer.3-sub-1"}


def test_too_many_new_customers_to_rule_one_out_makes_none(customers, stripe_api):
    stripe_api.search_lag(60)
    for n in range(stripe_customers.RECENT_PAGES * 100 + 1):
        stripe_api.add_customer(metadata={"cognito_sub": f"other-{n}"})
    stripe_api.fail_executing("/v1/customers")
    with pytest.raises(stripe.APIError):
        customers.ensure_customer("sub-1")

    with pytest.raises(CustomerPending, match="search shows it"):
        customers.ensure_customer("sub-1")
    assert not [c for c in stripe_api.customers if c["metadata"]["cognito_sub"] == "sub-1"]
    assert len(creates(stripe_api)) == 2
