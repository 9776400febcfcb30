"""``flask --app wsgi backfill-stripe-customers`` against moto's Cognito and the Stripe fake."""
from __future__ import annotations


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
