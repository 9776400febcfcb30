"""The pure rules: newest-wins, ownership, entitlement merge, expiry at read time."""
from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from gateway.domain.catalog import Catalog, CatalogError, parse_catalog
from gateway.domain.entitlements import derive, is_premium
from gateway.apply import READS, reading_again
from gateway.domain.changes import Transfer, transferred
from gateway.domain.model import (Snapshot, Status, Subscription, claim_ownership, merge_snapshot, newest, supersedes,
                                  with_account_owner)
from gateway.domain.reads import StaleRead, stale_read
from gateway.domain.terms import Term

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def snap(seconds=0, status=Status.ACTIVE, days=30, source="revenuecat", key="k1", **kw) -> Snapshot:
    as_of = T0 + timedelta(seconds=seconds)
    return Snapshot(source=source, key=key, as_of=as_of, status=status,
                    expires_at=kw.pop("expires_at", as_of + timedelta(days=days)),
                    product_id=kw.pop("product_id", "monthly"), **kw)


def test_newer_snapshot_replaces_older():
    assert supersedes(snap(10), snap(5))
    assert not supersedes(snap(5), snap(10))


def test_late_renewal_does_not_undo_refund():
    refund, renewal = snap(20, Status.REVOKED), snap(10, Status.ACTIVE, days=60)
    assert merge_snapshot(merge_snapshot(None, refund), renewal).snapshot.status is Status.REVOKED


def fold(*snapshots):
    current = None
    for snapshot in snapshots:
        current = merge_snapshot(current, snapshot)
    return current


def test_a_refund_is_final_for_its_period_in_either_order():
    """A refund decided at 10 s; the store later (20 s) still shows the same period active."""
    refund = snap(10, expires_at=T0 + timedelta(days=30), revokes="refunded:in_1")
    later_view = snap(20, expires_at=T0 + timedelta(days=30))
    for order in ((refund, later_view), (later_view, refund)):
        merged = fold(*order)
        assert merged.snapshot.status is Status.REVOKED and merged.snapshot.raw_status.endswith(":refunded")
        assert merged.latest.as_of == later_view.as_of  # the newest view is kept, its access taken back


def test_a_renewal_into_a_later_period_grants_after_a_refund():
    refund = snap(10, expires_at=T0 + timedelta(days=30), revokes="refunded:in_1")
    renewal = snap(20, expires_at=T0 + timedelta(days=60))
    assert fold(renewal, refund).snapshot.status is Status.ACTIVE


def test_a_won_dispute_gives_back_only_what_that_dispute_took():
    period = T0 + timedelta(days=30)
    dispute = snap(10, expires_at=period, revokes="disputed:dp_1")
    won = snap(30, expires_at=period, restores="disputed:dp_1")
    refund = snap(20, expires_at=period, revokes="refunded:in_2")
    other_won = snap(30, expires_at=period, restores="disputed:dp_old")
    assert fold(dispute, won).snapshot.status is Status.ACTIVE
    assert fold(won, dispute).snapshot.status is Status.ACTIVE  # the win delivered first still counts
    assert fold(dispute, refund, won).snapshot.status is Status.REVOKED
    assert fold(refund, other_won).snapshot.status is Status.REVOKED


def test_a_cause_made_of_several_returns_stands_only_while_each_does_in_every_order():
    """A charge refunded in full by two refunds; one of them fails later (Stripe)."""
    period = T0 + timedelta(days=30)
    full = snap(10, expires_at=period, revokes="refunded:re_1+re_2")
    one_failed = snap(20, expires_at=period, restores="refunded:re_1")
    other_failed = snap(20, expires_at=period, restores="refunded:re_3")
    again = snap(30, expires_at=period, revokes="refunded:re_2+re_4")  # a new refund makes it full again
    for order in itertools.permutations((full, one_failed)):
        assert fold(*order).snapshot.status is Status.ACTIVE
    assert fold(full, other_failed).snapshot.status is Status.REVOKED
    for order in itertools.permutations((full, one_failed, again)):
        assert fold(*order).snapshot.status is Status.REVOKED


def test_a_read_in_flight_that_shows_the_add_on_as_stored_holds_though_the_add_on_names_no_end():
    """The state ``stale_read`` compares leaves the stamps out, an add-on's own terms too."""
    written, end = T0 + timedelta(seconds=100), T0 + timedelta(days=30)
    terms = (Term("storage", "storage_addon", None, False),)
    stored = dataclasses.replace(fold(snap(10, expires_at=end, entitlement_terms=terms)), updated_at=written)
    same = snap(20, read_since=written - timedelta(seconds=5), expires_at=end, entitlement_terms=terms)
    assert not stale_read(stored, same)


def test_a_store_reported_revocation_without_a_newer_period_stays_revoked():
    refunded = snap(10, Status.REVOKED, expires_at=T0 + timedelta(days=30), revokes="refunded:1000")
    reversed_ = snap(20, expires_at=T0 + timedelta(days=30), restores="refunded:1000")
    assert fold(refunded, snap(15, expires_at=T0 + timedelta(days=30))).snapshot.status is Status.REVOKED
    assert fold(reversed_, refunded).snapshot.status is Status.ACTIVE


def test_a_read_holds_unless_what_was_written_since_it_began_says_otherwise():
    written = T0 + timedelta(seconds=100)  # when the gateway wrote the stored state (its clock)
    stored = dataclasses.replace(fold(snap(10, expires_at=T0 + timedelta(days=30))), updated_at=written)
    other = dict(status=Status.EXPIRED, expires_at=T0 + timedelta(days=30))
    assert not stale_read(stored, snap(20, read_since=written + timedelta(seconds=1), **other))  # written before
    assert stale_read(stored, snap(20, read_since=written, **other))  # written as it began: cannot tell
    assert stale_read(stored, snap(20, read_since=written - timedelta(seconds=5), **other))  # written in flight
    same = snap(20, read_since=written - timedelta(seconds=5), expires_at=T0 + timedelta(days=30))
    assert not stale_read(stored, same)  # both say the same: no order needed
    # A body judged newer than the stored state, which another writer has since overtaken.
    assert stale_read(stored, snap(10, read_since=written + timedelta(seconds=1), **other))
    assert not stale_read(None, snap(20, read_since=T0))  # nothing stored
    assert not stale_read(stored, snap(20, **other))  # an event's whole truth (Apple, RevenueCat): no read to doubt
    assert merge_snapshot(None, snap(20, read_since=T0)).latest.read_since is None  # never stored
    assert stored == dataclasses.replace(stored, updated_at=None)  # when it was written is not what it is


def test_a_read_naming_a_user_other_than_the_owner_stored_since_it_began_is_read_again():
    written = T0 + timedelta(seconds=100)
    period = dict(expires_at=T0 + timedelta(days=30))
    owned = dataclasses.replace(fold(snap(10, user_sub="bob", **period)), updated_at=written)
    unowned = dataclasses.replace(fold(snap(10, **period)), updated_at=written)
    naming = dict(user_sub="alice", **period)  # the same state as stored; it names Alice
    assert stale_read(owned, snap(20, read_since=written - timedelta(seconds=5), **naming))  # Bob named in flight
    assert not stale_read(owned, snap(20, read_since=written + timedelta(seconds=1), **naming))  # Bob seen by it
    assert not stale_read(unowned, snap(20, read_since=written - timedelta(seconds=5), **naming))  # nobody to undo
    bob = dict(naming, user_sub="bob")
    assert not stale_read(owned, snap(20, read_since=written - timedelta(seconds=5), **bob))  # names the owner


def test_a_read_is_made_again_while_stale_then_given_up():
    reads = []

    def stale():
        reads.append(1)
        raise StaleRead("changed while it was read")

    with pytest.raises(StaleRead):
        reading_again(stale)
    assert len(reads) == READS == 3
    answers = iter([StaleRead("once"), "applied"])

    def second_time_lucky():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert reading_again(second_time_lucky) == "applied"
    with pytest.raises(ValueError):  # any other failure is not read again
        reading_again(lambda: (reads.append(1), int("x")))
    assert len(reads) == READS + 1


def test_same_second_ties_resolve_to_the_more_final_state_in_either_order():
    active, expired = snap(5, Status.ACTIVE), snap(5, Status.EXPIRED)
    assert newest([active, expired]) == newest([expired, active]) == expired


def test_same_second_views_that_differ_only_in_an_entitlement_s_own_end_converge():
    """Two reads of a Play purchase in one instant, one before an add-on's end moved."""
    early, late = (snap(5, entitlement_terms=(Term("storage", "addon", T0 + timedelta(days=days), False),))
                   for days in (3, 5))
    assert merge_snapshot(merge_snapshot(None, early), late) == merge_snapshot(merge_snapshot(None, late), early)


def test_same_second_views_that_differ_only_in_an_add_on_s_renewal_or_product_converge():
    """Two reads of a Play purchase in one instant, one before the add-on was cancelled; and
    an add-on whose product is unknown (``None``) beside one whose product is named: never
    compared with each other."""
    end = T0 + timedelta(days=3)
    views = [snap(5, entitlement_terms=(Term("storage", product, end, renews),))
             for product, renews in (("addon", True), ("addon", False), (None, False), ("other", False))]
    for first, second in itertools.permutations(views, 2):
        assert fold(first, second) == fold(second, first)


def test_an_entitlement_with_terms_of_its_own_shows_its_product_end_and_renewal():
    """A Play add-on cancelled on a renewing base plan: the add-on's entitlement ends with its
    own line item, shows its product, and does not renew; the base plan's is the purchase's."""
    addon_end = T0 + timedelta(days=10)
    purchase = snap(0, product_id="base", will_renew=True, entitlements=("premium", "storage"),
                    entitlement_terms=(Term("storage", "storage_addon", addon_end, False),))
    grants = derive([purchase], Catalog(products={}))
    assert (grants["storage"].product_id, grants["storage"].expires_at, grants["storage"].will_renew) == (
        "storage_addon", addon_end, False)
    assert (grants["premium"].product_id, grants["premium"].expires_at, grants["premium"].will_renew) == (
        "base", purchase.expires_at, True)


def test_a_refunded_purchase_renews_none_of_its_entitlements():
    """A refund takes the whole purchase back: an add-on that renewed on its own renews no more."""
    view = snap(6, will_renew=True, entitlements=("premium", "storage"),
                entitlement_terms=(Term("storage", "storage_addon", T0 + timedelta(days=3), True),))
    refunded = fold(snap(5, expires_at=view.expires_at, revokes="refunded:GPA.1"), view)  # Play still shows it
    grants = derive([refunded.snapshot], Catalog(products={}))
    assert {name: (grant.status, grant.will_renew) for name, grant in grants.items()} == {
        "premium": (Status.REVOKED, False), "storage": (Status.REVOKED, False)}


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        Snapshot(source="stripe", key="k", as_of=datetime(2026, 1, 1), status=Status.ACTIVE)


def test_owner_named_by_a_newer_delivery_wins_and_a_late_one_does_not_undo_it():
    first = merge_snapshot(None, snap(1, user_sub="alice"))
    moved = claim_ownership(first, "bob", T0 + timedelta(seconds=5))
    late = merge_snapshot(moved, snap(3, user_sub="alice"))
    assert (moved.owner, late.owner) == ("bob", "bob")


def moves(*hops):
    """Transfers (from, to, second) as a store's register holds them."""
    return [Transfer("revenuecat", (a,), b, T0 + timedelta(seconds=s)) for a, b, s in hops]


def test_transfers_replay_by_their_stamps_from_the_claim_held():
    bought = merge_snapshot(None, snap(0, user_sub="alice", account="alice"))
    # B->A recorded first (bob held nothing then) still counts after A->B, older.
    assert transferred(bought, moves(("bob", "alice", 20), ("alice", "bob", 10))).owner == "alice"
    chain = moves(("alice", "bob", 10), ("bob", "carol", 20), ("carol", "alice", 30))
    assert transferred(bought, chain[::-1]).owner == "alice"
    # A transfer from someone who does not hold it by then moves nothing.
    assert transferred(bought, moves(("bob", "carol", 5), ("alice", "bob", 10))).owner == "bob"
    # Nor does one older than the claim held, even from its holder.
    named = claim_ownership(bought, "alice", T0 + timedelta(seconds=40))
    assert transferred(named, moves(("alice", "bob", 30))) == named


def test_a_transfer_from_the_store_account_moves_it_whoever_holds_it():
    anonymous = merge_snapshot(None, snap(0, account="$RCAnonymousID:1"))
    moved = transferred(anonymous, moves(("$RCAnonymousID:1", None, 5), ("$RCAnonymousID:1", "bob", 10)))
    assert (moved.owner, moved.owner_as_of) == ("bob", T0 + timedelta(seconds=10))


def test_owner_found_through_identity_fills_only_an_unknown_owner():
    unknown = merge_snapshot(None, snap(1, account="cus_1"))
    assert with_account_owner(unknown, "alice").owner == "alice"
    assert with_account_owner(merge_snapshot(None, snap(1, user_sub="bob")), "alice").owner == "bob"


def test_a_named_owner_replaces_one_found_through_identity():
    adopted = with_account_owner(merge_snapshot(None, snap(1, account="x")), "alice")
    assert merge_snapshot(adopted, snap(0, user_sub="bob")).owner == "bob"


CATALOG = parse_catalog({
    "entitlements": {
        "premium": {"stripe": ["price_m"], "apple": ["com.x.monthly"], "revenuecat": ["pro"]},
        "family": {"stripe": ["price_f"]},
    },
    "default": None,
})


def test_catalog_maps_products_and_falls_back_to_default():
    assert CATALOG.entitlements_for("stripe", "price_m") == ("premium",)
    assert CATALOG.entitlements_for("stripe", "price_unknown") == ()
    assert Catalog(products={}).entitlements_for("google", "anything") == ("premium",)
    assert CATALOG.map_names("revenuecat", ["pro", "extra"]) == ("premium", "extra")


@pytest.mark.parametrize("document", [[], {"entitlements": []}, {"entitlements": {"p": {"nope": ["x"]}}},
                                      {"entitlements": {"p": {"stripe": "x"}}}, {"entitlements": {}, "default": 3}])
def test_catalog_rejects_malformed_documents(document):
    with pytest.raises(CatalogError):
        parse_catalog(document)


def test_active_beats_inactive_then_latest_expiry_wins():
    now = T0 + timedelta(days=1)
    stripe = snap(0, Status.ACTIVE, days=10, source="stripe", key="sub_1", product_id="price_m")
    apple = snap(0, Status.GRACE_PERIOD, days=20, source="apple", key="100", product_id="com.x.monthly")
    revoked = snap(0, Status.REVOKED, days=90, source="revenuecat", key="r1", product_id="p",
                   entitlements=("premium",))
    grant = derive([stripe, apple, revoked], CATALOG)["premium"]
    assert (grant.source, grant.is_active(now)) == ("apple", True)


def test_expiry_is_judged_at_read_time():
    grants = derive([snap(0, Status.ACTIVE, days=30, source="stripe", product_id="price_m")], CATALOG)
    grant = grants["premium"]
    assert is_premium(grants.values(), T0 + timedelta(days=29))
    assert not is_premium(grants.values(), T0 + timedelta(days=31))
    assert grant.status_at(T0 + timedelta(days=31)) is Status.EXPIRED


def test_no_end_means_active_for_good_and_paused_never_grants():
    lifetime = snap(0, Status.ACTIVE, expires_at=None, source="stripe", product_id="price_m")
    paused = snap(0, Status.PAUSED, days=30, source="stripe", key="k2", product_id="price_f")
    grants = derive([lifetime, paused], CATALOG)
    assert grants["premium"].is_active(T0 + timedelta(days=3650))
    assert not grants["family"].is_active(T0)


def test_product_in_no_entitlement_grants_nothing_without_default():
    assert derive([snap(0, source="stripe", product_id="price_unknown")], CATALOG) == {}


def test_domain_imports_only_the_standard_library():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('flask', 'sqlalchemy', 'stripe', 'jwt', 'marshmallow'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import gateway.domain.model, gateway.domain.entitlements, gateway.domain.catalog, gateway.domain.changes\n"
        "import gateway.domain.events\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
