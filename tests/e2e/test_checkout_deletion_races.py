"""A Checkout Session opened while the same account is deleted, the two requests released
together, against the local Stripe fake.

The deletion expires the user's open sessions before it records the tombstone, outside any
transaction; a checkout that had read the user before the tombstone and opened its session
after that list left a session the deleted user could pay. Whatever the interleaving, no
session handed to the client may stay open once the deletion answered, and the deleted
user holds nothing. On PostgreSQL the two really overlap; on SQLite they queue on the one
writer, which must give the same answers.
"""
from __future__ import annotations

import time

import pytest

from tests.e2e.test_races import together
from tests.e2e.test_stripe_checkout import USER, checkout, client, env  # noqa: F401 (fixtures)
from tests.support.stripe_gateway import fake, stripe_catalog, stripe_server  # noqa: F401 (fixtures)

ROUNDS = 3
#: How long the deletion starts after the checkout in the free-running races.
DELAYS = (0.0, 0.01, 0.02, 0.04, 0.08)


def delete(client, cognito):
    return client.delete("/v1/me", headers=cognito.header(USER))


def while_held(held, call):
    """``call`` made while the other thread's Stripe request ``held`` waits for its answer,
    which is sent once ``call`` has ended."""
    def run():
        assert held.read.wait(5), "the other request never reached Stripe"
        try:
            return call()
        finally:
            held.release()
    return run


def assert_nothing_payable_survives(client, cognito, fake, api, opened, deleted) -> None:
    assert deleted.status_code == 200, deleted.get_data(as_text=True)
    assert opened.status_code in (200, 403), opened.get_data(as_text=True)
    if opened.status_code == 403:
        assert opened.get_json()["error"] == "account_deleted"
    still_open = [s["id"] for s in fake.sessions() if s["status"] == "open" and s["client_reference_id"] == USER]
    assert still_open == [], f"a deleted user's session is payable (checkout answered {opened.status_code})"
    assert api(client, USER)["entitlements"] == {}
    again = checkout(client, cognito)
    assert (again.status_code, again.get_json()["error"]) == (403, "account_deleted")


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_session_opened_after_the_deletion_listed_the_open_ones_is_expired(client, cognito, fake, api, round_):
    assert checkout(client, cognito).status_code == 200  # the user's customer, linked, and a first session
    listed = fake.hold("/v1/checkout/sessions", "GET")  # the deletion's list of open sessions, held

    opened, deleted = together(while_held(listed, lambda: checkout(client, cognito)), lambda: delete(client, cognito))

    assert_nothing_payable_survives(client, cognito, fake, api, opened, deleted)
    assert opened.status_code == 200  # handed out before the tombstone: the deletion went round for it
    assert {s["id"]: s["status"] for s in fake.sessions()}[opened.get_json()["id"]] == "expired"
    assert fake.calls("GET", "/v1/checkout/sessions") == 2


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_checkout_past_its_first_check_when_the_deletion_commits_hands_out_no_session(
        client, cognito, fake, api, round_):
    assert checkout(client, cognito).status_code == 200
    found = fake.hold("/v1/customers/search", "GET")  # the checkout has read the user, not deleted yet

    opened, deleted = together(lambda: checkout(client, cognito), while_held(found, lambda: delete(client, cognito)))

    assert_nothing_payable_survives(client, cognito, fake, api, opened, deleted)
    assert opened.status_code == 403  # it was opened after the tombstone: refused, and expired


@pytest.mark.parametrize("delay", DELAYS)
def test_checkout_and_deletion_released_together_leave_nothing_payable(client, cognito, fake, api, delay):
    assert checkout(client, cognito).status_code == 200

    opened, deleted = together(lambda: checkout(client, cognito),
                               lambda: time.sleep(delay) or delete(client, cognito))

    assert_nothing_payable_survives(client, cognito, fake, api, opened, deleted)
