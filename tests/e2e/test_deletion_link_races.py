"""An account deletion and a delivery linking a new store account to the user, through two
gateways released together by a barrier: whichever commits first, the account ends kept
by the tombstone (``Transaction.keep_accounts``), as it does when the link comes after
the deletion, so a purchase made under it later that names nobody is the deleted user's
late purchase, not one billing unseen."""
from __future__ import annotations

import time
import uuid

import pytest

from devtools import revenuecat as rc
from tests.conftest import DATABASE
from tests.e2e.test_account_deletion import fakes, gateway_env, late_rows, world  # noqa: F401 (fixtures)
from tests.e2e.test_races import together

pytestmark = pytest.mark.skipif(DATABASE != "postgresql", reason="SQLite has one writer at a time")

ROUNDS = 16
#: One of the two starts later by a multiple of this, varying by round, from the deletion
#: 60 ms after the delivery to the delivery 15 ms after the deletion: the delivery's
#: transaction then overlaps each part of the deletion's in turn.
STEP = 0.005
LEAD = 12
ALIASES = 40


def anonymous() -> str:
    return f"$RCAnonymousID:{uuid.uuid4().hex}"


@pytest.mark.parametrize("linked_by", ["its purchase again", "a new purchase"])
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_an_alias_linked_while_the_account_is_deleted_is_kept_and_what_it_buys_later_is_a_late_purchase(
        world, make_app, fakes, database_url, linked_by, round_):  # noqa: F811
    """The user's RevenueCat purchase is delivered again (a renewal) or a new one is, each
    aliasing an anonymous id not seen before, while the account is deleted. The renewal
    locks the subscription the deletion locks: committed while the deletion waits for it,
    its link was erased after the deletion had read the user's links, and the account
    was not kept. The new purchase locks nothing the deletion locks before the user: its
    link made before the tombstone committed was erased once it read the tombstone, and
    the account was not kept either."""
    user, first, second = str(uuid.uuid4()), anonymous(), anonymous()
    headers = {"Authorization": world.credentials.revenuecat_auth, "Content-Type": "application/json"}
    now_ms, tag = int(time.time() * 1000), f"{round_:02d}{uuid.uuid4().hex[:8]}"
    world.post("revenuecat", rc.body(rc.event("INITIAL_PURCHASE", user, at_ms=now_ms - 60_000,
                                              transaction=f"rc_a{tag}", aliases=[user, first])), headers)
    again = ("RENEWAL", f"rc_a{tag}") if linked_by == "its purchase again" else ("INITIAL_PURCHASE", f"rc_b{tag}")
    # Aliases of earlier installs too: each is a link, so the delivery's transaction stays open
    # long enough for the deletion's to start meanwhile.
    aliases = [user, second, *(anonymous() for _ in range(ALIASES))]
    linking = rc.event(again[0], user, at_ms=now_ms - 30_000, transaction=again[1], aliases=aliases)
    other = make_app(**gateway_env(fakes, database_url)).test_client()

    later = (round_ - LEAD) * STEP  # how much later the delivery starts (< 0: earlier)
    deleted, delivered = together(lambda: time.sleep(max(-later, 0)) or world.delete(user),
                                  lambda: time.sleep(max(later, 0)) or other.post(
                                      "/webhooks/revenuecat", data=rc.body(linking), headers=headers))

    assert (deleted.status_code, delivered.status_code) == (200, 200), deleted.get_data(as_text=True)
    # The app, still on the device's new anonymous id, buys: the event names that id only.
    late = rc.event("INITIAL_PURCHASE", second, at_ms=now_ms, transaction=f"rc_c{tag}", aliases=[second],
                    original_app_user_id=second)
    world.post("revenuecat", rc.body(late), headers)
    assert ("revenuecat", f"rc_c{tag}", "pending") in {(row.source, row.key, row.outcome)
                                                       for row in late_rows(world, user)}
    assert world.entitlements(user)["is_premium"] is False
