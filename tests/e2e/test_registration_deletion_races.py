"""A purchase registered (POST /v1/purchases/apple, a transaction without appAccountToken)
while the same account is deleted, the two requests released together.

Whichever commits first, the purchase must end on the deletion's report for the user to
cancel in the App Store: found live under the user's lock by the deletion (which goes round
again for it), or found by the registration's transaction against the tombstone and recorded
as a purchase after the deletion (``late_purchases``), which the worker reports. It grants
nothing either way, and the store account is linked to nobody. On PostgreSQL the two really
overlap; on SQLite they queue on the one writer, which must give the same answers.
"""
from __future__ import annotations

import time
import uuid

import pytest

from tests.e2e.test_apple_purchases import chain, client, register, store  # noqa: F401 (fixtures)
from tests.e2e.test_races import together

DELAYS = (0.0, 0.005, 0.01, 0.02, 0.04, 0.08)


def work_once(client) -> None:
    result = client.application.test_cli_runner().invoke(args=["events", "work", "--once"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("delay", DELAYS)
@pytest.mark.parametrize("first", ["registration", "deletion"])
def test_a_purchase_registered_while_the_account_is_deleted_ends_on_its_report(
        client, api, cognito, store, first, delay):
    user, key = str(uuid.uuid4()), str(4100 + int(delay * 1000))
    signed = store.chain.sign(store.transaction(key))
    late = {"registration": (0.0, delay), "deletion": (delay, 0.0)}[first]

    registered, deleted = together(
        lambda: time.sleep(late[0]) or register(client, cognito, user, signed),
        lambda: time.sleep(late[1]) or client.delete("/v1/me", headers=cognito.header(user)))

    assert registered.status_code == 200, registered.get_data(as_text=True)
    assert deleted.status_code == 200, deleted.get_data(as_text=True)
    work_once(client)  # a purchase found after the deletion is reported by the worker
    again = client.delete("/v1/me", headers=cognito.header(user)).get_json()
    reported = [item for item in again["user_must_cancel"] if item["source"] == "apple"]
    assert len(reported) == 1 and reported[0]["reason"] == "must_cancel_in_store", again
    assert api(client, user)["entitlements"] == {}
    with client.application.extensions["gateway"].store.transaction(readonly=True) as tx:
        assert tx.resolve("apple", key) is None and tx.identities_of(user) == []
