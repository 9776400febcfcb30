"""``flask --app wsgi backfill-stripe-customers`` against moto's Cognito and the Stripe fake."""
from __future__ import annotations

import sqlalchemy as sa

from tests.cognito.conftest import naming


def run(app, *args):
    return app.test_cli_runner().invoke(args=["backfill-stripe-customers", *args])


def test_backfill_links_every_confirmed_user_once(make_app, user_pool, stripe_api):
    alice = user_pool.add_user("alice@example.com", name="Alice")
    bob = user_pool.add_user("bob@example.com")
    user_pool.add_user("carol@example.com", status="UNCONFIRMED")
    app = make_app(STRIPE_API_KEY=stripe_api.api_key, STRIPE_API_BASE=stripe_api.url)

    dry = run(app, "--user-pool-id", user_pool.id, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert stripe_api.customers == [] and "would create" in dry.output

    first = run(app, "--user-pool-id", user_pool.id)
    assert first.exit_code == 0, first.output
    customers = {c["metadata"]["cognito_sub"]: c["id"] for c in stripe_api.customers}
    assert set(customers) == {alice["sub"], bob["sub"]}
    assert user_pool.attributes("alice@example.com")["custom:stripe_customer_id"] == customers[alice["sub"]]

    again = run(app, "--user-pool-id", user_pool.id)
    assert again.exit_code == 0 and len(stripe_api.customers) == 2 and "already_linked=2" in again.output


def test_backfill_needs_a_stripe_key(make_app, user_pool):
    result = run(make_app(), "--user-pool-id", user_pool.id)
    assert result.exit_code != 0 and "STRIPE_API_KEY" in result.output


def test_the_attribute_comes_from_the_settings(make_app, aws_mock, stripe_api):
    import boto3

    from tests.cognito.conftest import REGION, UserPool

    pool = UserPool(boto3.client("cognito-idp", region_name=REGION), attribute="billing_id")
    pool.add_user("alice@example.com")
    app = make_app(STRIPE_API_KEY=stripe_api.api_key, STRIPE_API_BASE=stripe_api.url,
                   COGNITO_STRIPE_ATTRIBUTE="custom:billing_id")  # read once, into the settings
    result = run(app, "--user-pool-id", pool.id)
    assert result.exit_code == 0, result.output
    assert pool.attributes("alice@example.com")["custom:billing_id"] == stripe_api.customers[0]["id"]


def test_the_pool_ids_region_wins_over_cognito_region(make_app, user_pool, stripe_api):
    """A pool id names its region (``eu-west-1_AbC123``): COGNITO_REGION, the region of the
    pool the client API accepts, must not send a backfill of another pool elsewhere."""
    user_pool.add_user("alice@example.com")
    app = make_app(STRIPE_API_KEY=stripe_api.api_key, STRIPE_API_BASE=stripe_api.url, COGNITO_REGION="us-east-1",
                   COGNITO_USER_POOL_ID="us-east-1_Gateway", COGNITO_APP_CLIENT_IDS="app")
    result = run(app, "--user-pool-id", user_pool.id)
    assert result.exit_code == 0, result.output
    assert user_pool.attributes("alice@example.com")["custom:stripe_customer_id"] == stripe_api.customers[0]["id"]


def test_a_pool_id_without_a_region_is_refused_before_anything_is_asked(make_app, aws_mock, stripe_api):
    app = make_app(STRIPE_API_KEY=stripe_api.api_key, STRIPE_API_BASE=stripe_api.url)
    result = run(app, "--user-pool-id", "TestPool")
    assert result.exit_code != 0 and "TestPool is not a user pool id" in result.output
    assert stripe_api.requests == []


def test_a_stripe_server_error_or_rate_limit_is_tried_again(make_app, user_pool, stripe_api):
    """A backfill pages through every user: a passing 500 (retried by stripe-python's own
    max_network_retries) or 429 (which stripe-python leaves to the caller: the job waits
    and tries the user again) must not leave users unlinked."""
    from tests.fakes.stripe_api import StripeError

    user_pool.add_user("alice@example.com")
    user_pool.add_user("bob@example.com")
    stripe_api.refuse_next("GET", "/v1/customers/search", StripeError(500, "api_error", "An unknown error occurred."))
    stripe_api.refuse_next("POST", "/v1/customers", StripeError(429, "invalid_request_error", "Request rate limit "
                                                                "exceeded.", code="rate_limit"))
    result = run(make_app(STRIPE_API_KEY=stripe_api.api_key, STRIPE_API_BASE=stripe_api.url),
                 "--user-pool-id", user_pool.id)
    assert result.exit_code == 0, result.output
    assert len(stripe_api.customers) == 2 and "created_or_linked=2" in result.output


def test_a_stripe_outage_fails_each_user_after_a_bounded_number_of_tries(make_app, user_pool, stripe_api):
    from cognito_triggers.backfill import STRIPE_RETRIES

    user_pool.add_user("alice@example.com")
    stripe_api.fail_with(503)
    result = run(make_app(STRIPE_API_KEY=stripe_api.api_key, STRIPE_API_BASE=stripe_api.url),
                 "--user-pool-id", user_pool.id)
    assert result.exit_code != 0 and "failed=1" in result.output
    assert stripe_api.calls("GET", "/v1/customers/search") == 1 + STRIPE_RETRIES


def test_a_user_deleted_in_the_gateway_is_skipped_dry_run_or_not(make_app, user_pool, stripe_api):
    """The deletion keeps a tombstone and erases the user's personal data; Cognito keeps the
    user until the app removes it. A customer made now would hand Stripe the email again."""
    alice = user_pool.add_user("alice@example.com", name="Alice")
    bob = user_pool.add_user("bob@example.com", name="Bob")
    app = make_app(STRIPE_API_KEY=stripe_api.api_key, STRIPE_API_BASE=stripe_api.url)
    deleted = app.test_cli_runner().invoke(args=["users", "delete", bob["sub"]])
    assert deleted.exit_code == 0, deleted.output
    skipped = "bob@example.com: account deleted in the gateway; not linked"

    dry = run(app, "--user-pool-id", user_pool.id, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert skipped in dry.output and "skipped_deleted=1" in dry.output and "bob@example.com: would" not in dry.output

    linked = run(app, "--user-pool-id", user_pool.id)
    assert linked.exit_code == 0, linked.output
    assert skipped in linked.output and "created_or_linked=1" in linked.output and "skipped_deleted=1" in linked.output
    assert [c["metadata"]["cognito_sub"] for c in stripe_api.customers] == [alice["sub"]]
    assert user_pool.attributes("alice@example.com")["custom:stripe_customer_id"] == stripe_api.customers[0]["id"]
    assert "custom:stripe_customer_id" not in user_pool.attributes("bob@example.com")
    assert naming(stripe_api, bob) == []


def test_tombstones_that_cannot_be_read_fail_the_run_and_nothing_is_made(make_app, user_pool, stripe_api,
                                                                          database_url):
    """The database cannot answer whether the users were deleted: each fails, as on a Stripe
    outage, Stripe is asked nothing about them, and the command exits 1 for a rerun."""
    user_pool.add_user("alice@example.com")
    user_pool.add_user("bob@example.com")
    app = make_app(STRIPE_API_KEY=stripe_api.api_key, STRIPE_API_BASE=stripe_api.url)
    engine = sa.create_engine(database_url)

    def rename(old: str, new: str) -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")

    rename("deleted_users", "deleted_users_away")
    try:
        for args in (("--dry-run",), ()):
            result = run(app, "--user-pool-id", user_pool.id, *args)
            assert result.exit_code != 0 and "failed=2" in result.output, result.output
            assert "2 users could not be linked" in result.output
            assert "alice@example.com: failed: cannot tell whether the account was deleted in the gateway: " \
                   "StoreUnavailable" in result.output
    finally:
        rename("deleted_users_away", "deleted_users")
        engine.dispose()
    assert stripe_api.requests == []
    assert "custom:stripe_customer_id" not in user_pool.attributes("alice@example.com")
