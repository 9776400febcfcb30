"""The backfill that links existing users, against moto's Cognito and the local Stripe."""
from __future__ import annotations

import pytest

from cognito_triggers import backfill
from cognito_triggers.post_confirmation import handler
from cognito_triggers.backfill import Summary, backfill_customers
from cognito_triggers.stripe_customers import StripeCustomers
from tests.cognito.conftest import LambdaContext, naming


@pytest.fixture
def customers(stripe_api):
    return StripeCustomers(stripe_api.api_key, stripe_api.url, timeout=2.0)


@pytest.fixture(autouse=True)
def small_pages(monkeypatch):
    monkeypatch.setattr(backfill, "PAGE_SIZE", 2)


@pytest.fixture
def users(user_pool, stripe_api):
    made = [user_pool.add_user(f"user{n}@example.com", name=f"User {n}") for n in range(4)]
    linked = user_pool.add_user("linked@example.com")
    user_pool.client.admin_update_user_attributes(
        UserPoolId=user_pool.id, Username=linked["username"],
        UserAttributes=[{"Name": "custom:stripe_customer_id", "Value": "cus_Linked"}])
    user_pool.add_user("pending@example.com", status="UNCONFIRMED")
    return made


def run(user_pool, customers, **kwargs) -> tuple[Summary, list[str]]:
    printed: list[str] = []
    summary = backfill_customers(user_pool.client, customers, user_pool.id, echo=printed.append, **kwargs)
    return summary, printed


def test_links_every_user_without_a_customer_across_pages(user_pool, customers, stripe_api, users):
    summary, printed = run(user_pool, customers)

    assert summary == Summary(seen=6, already_linked=1, created_or_linked=4, skipped_unconfirmed=1, failed=0)
    for user in users:
        customer_id = user_pool.attributes(user["username"])["custom:stripe_customer_id"]
        assert stripe_api.state.get("customer", customer_id)["metadata"]["cognito_sub"] == user["sub"]
    assert any("linked cus_" in line for line in printed)


def test_rerun_changes_nothing(user_pool, customers, stripe_api, users):
    run(user_pool, customers)
    summary, _ = run(user_pool, customers)

    assert summary == Summary(seen=6, already_linked=5, created_or_linked=0, skipped_unconfirmed=1, failed=0)
    assert len(stripe_api.customers) == 4


def test_dry_run_writes_nothing_and_says_what_it_would_do(user_pool, customers, stripe_api, users):
    existing = stripe_api.add_customer(metadata={"cognito_sub": users[0]["sub"]})

    summary, printed = run(user_pool, customers, dry_run=True)

    assert summary.created_or_linked == 4 and len(stripe_api.customers) == 1
    assert stripe_api.calls("POST", "/v1/customers") == 0
    assert "custom:stripe_customer_id" not in user_pool.attributes(users[0]["username"])
    assert f"would link {existing['id']}" in "\n".join(printed)


def test_a_failing_user_is_counted_and_the_run_goes_on(user_pool, customers, stripe_api, users):
    stripe_api.fail_with(500)

    summary, printed = run(user_pool, customers)

    assert summary.failed == 4 and summary.seen == 6
    assert stripe_api.api_key not in "\n".join(printed)


def test_a_user_whose_sign_up_create_stripe_failed_and_saved_is_linked(user_pool, customers, stripe_configured):
    ada = user_pool.add_user("ada@example.com", name="Ada Lovelace")
    stripe_configured.fail_executing("/v1/customers")
    handler(user_pool.confirmation_event(ada["username"]), LambdaContext())  # logs the saved 500

    summary, printed = run(user_pool, customers)

    [customer] = stripe_configured.customers
    assert summary.created_or_linked == 1 and summary.failed == 0, printed
    assert user_pool.attributes(ada["username"])["custom:stripe_customer_id"] == customer["id"]


def test_attribute_name_without_prefix_is_accepted(user_pool, customers, users):
    summary, _ = run(user_pool, customers, attribute="stripe_customer_id")

    assert summary.already_linked == 1 and summary.created_or_linked == 4


def tombstones(*subs: str, asked: list | None = None):
    """A ``deleted`` that knows these subs as deleted, noting each page it is asked about."""
    def deleted(page: list[str]) -> set[str]:
        if asked is not None:
            asked.append(list(page))
        return set(subs) & set(page)
    return deleted


def test_a_user_deleted_in_the_gateway_is_not_made_a_customer_again(user_pool, customers, stripe_api, users):
    gone, asked = users[1], []

    summary, printed = run(user_pool, customers, deleted=tombstones(gone["sub"], asked=asked))

    assert summary == Summary(seen=6, already_linked=1, created_or_linked=3, skipped_unconfirmed=1,
                              skipped_deleted=1, failed=0)
    assert f"{gone['username']}: account deleted in the gateway; not linked" in printed
    assert naming(stripe_api, gone) == [] and "custom:stripe_customer_id" not in user_pool.attributes(
        gone["username"])
    assert {c["metadata"]["cognito_sub"] for c in stripe_api.customers} == {u["sub"] for u in users} - {gone["sub"]}
    assert user_pool.attributes(users[0]["username"])["custom:stripe_customer_id"]  # its page-mate, linked
    assert naming(stripe_api, users[0])  # as the probe above sees
    # One read per page of users to link (pages of 2 here), none for a page with nobody to link.
    assert asked == [[users[0]["sub"], users[1]["sub"]], [users[2]["sub"], users[3]["sub"]]]


def test_a_dry_run_skips_a_deleted_user_too(user_pool, customers, stripe_api, users):
    gone = users[2]

    summary, printed = run(user_pool, customers, dry_run=True, deleted=tombstones(gone["sub"]))

    assert (summary.created_or_linked, summary.skipped_deleted, summary.failed) == (3, 1, 0)
    assert f"{gone['username']}: account deleted in the gateway; not linked" in printed
    assert not any(line.startswith(f"{gone['username']}: would") for line in printed)
    assert naming(stripe_api, gone) == [] and stripe_api.calls("POST", "/v1/customers") == 0


def test_users_whose_deletion_cannot_be_read_fail_and_stripe_is_not_asked(user_pool, customers, stripe_api, users):
    def unreadable(page: list[str]) -> set[str]:
        if users[3]["sub"] in page:
            raise ConnectionError("the database does not answer")
        return set()

    summary, printed = run(user_pool, customers, deleted=unreadable)

    assert (summary.created_or_linked, summary.skipped_deleted, summary.failed) == (2, 0, 2)
    for user in users[2:]:  # the page whose read failed: nothing asked of Stripe, nothing written
        assert naming(stripe_api, user) == []
        assert "custom:stripe_customer_id" not in user_pool.attributes(user["username"])
        assert (f"{user['username']}: failed: cannot tell whether the account was deleted in the gateway: "
                "ConnectionError: the database does not answer") in printed
    assert all(user_pool.attributes(u["username"]).get("custom:stripe_customer_id") for u in users[:2])
