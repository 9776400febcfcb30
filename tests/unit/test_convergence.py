"""Any order of the same deliveries ends in the same state; duplicates change nothing."""
from __future__ import annotations

import dataclasses
import functools
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.apply import apply_translation
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Transfer, Translation
from gateway.domain.model import Snapshot, Status, merge_snapshot
from gateway.domain.terms import Term
from tests.fakes.memory_store import MemoryStore

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=2)

snapshots = st.builds(
    Snapshot,
    source=st.just("revenuecat"),
    key=st.sampled_from(["t1", "t2"]),
    # Few distinct seconds, so that equal stamps (Stripe's one-second resolution) are common.
    as_of=st.integers(0, 5).map(lambda s: T0 + timedelta(seconds=s)),
    status=st.sampled_from(list(Status)),
    product_id=st.sampled_from(["monthly", "yearly"]),
    expires_at=st.one_of(st.none(), st.integers(-3, 40).map(lambda d: T0 + timedelta(days=d))),
    will_renew=st.booleans(),
    user_sub=st.sampled_from([None, "alice", "bob"]),
    account=st.sampled_from([None, "alice", "anon-1"]),
    # Refunds, chargebacks and voids, and the stores giving some back.
    revokes=st.sampled_from([None, None, None, "refunded:in_1", "disputed:dp_1"]),
    restores=st.sampled_from([None, None, None, "disputed:dp_1", "refunded:in_1"]),
    # The period shown, and the one a revocation takes back when it is another (Stripe).
    period_id=st.sampled_from([None, "p1", "p2"]),
    revoked_period=st.sampled_from([None, None, (T0 + timedelta(days=10), "p1"), (T0 + timedelta(days=20), "p2")]),
    # An entitlement's own product, end and renewal (a Play add-on), some of them unknown.
    entitlement_terms=st.one_of(st.none(), st.tuples(st.builds(
        Term, name=st.just("premium"), product_id=st.sampled_from([None, "addon", "other"]),
        expires_at=st.sampled_from([None, T0 + timedelta(days=10), T0 + timedelta(days=20)]),
        will_renew=st.booleans()))),
)
changes = st.one_of(
    snapshots.map(lambda s: Translation(snapshots=(s,))),
    st.builds(Link, source=st.just("revenuecat"), account=st.just("anon-1"),
              user_sub=st.sampled_from(["alice", "carol"])).map(lambda l: Translation(links=(l,))),
)


# What one subscription must end as, written out from the README's rules rather than taken
# from the gateway (tests/soak/oracle.py does the same from the stores' wire formats), so a
# rule changed in the gateway fails here even when it still converges.
FINALITY = ("pending", "active", "grace_period", "billing_retry", "paused", "expired", "revoked")


def newest_candidates(deliveries: list[Snapshot]) -> list[Snapshot]:
    """The newest deliveries by the store's time, and among those at that time the most
    final state's: one of them is what the subscription shows."""
    latest = max(s.as_of for s in deliveries)
    at_latest = [s for s in deliveries if s.as_of == latest]
    most_final = max(FINALITY.index(s.status.value) for s in at_latest)
    return [s for s in at_latest if FINALITY.index(s.status.value) == most_final]


def expected_status(deliveries: list[Snapshot], shown: Snapshot) -> str:
    """The status the subscription counts as, showing ``shown``: revoked when the state is,
    or when a refund or chargeback no store gave back took back the period shown. A
    revocation takes the period its delivery names (``revoked_period``), else the one that
    delivery shows; it is the period shown when both name their period and it is the same
    one, or, when either does not, unless the period shown ends after the one taken (a
    renewal)."""
    given_back = {s.restores for s in deliveries if s.restores}
    for s in deliveries:
        if not s.revokes or s.revokes in given_back:
            continue
        end, period = s.revoked_period or (s.expires_at, s.period_id)
        if period and shown.period_id:
            same = period == shown.period_id
        else:
            same = not (shown.expires_at and end and shown.expires_at > end)
        if same:
            return "revoked"
    return shown.status.value


def assert_ends_as_the_rules_say(subscription, deliveries: list[Snapshot]) -> None:
    candidates = newest_candidates(deliveries)
    state = lambda s: (s.as_of, s.status, s.expires_at, s.will_renew, s.product_id, s.period_id)  # noqa: E731
    assert state(subscription.latest) in [state(s) for s in candidates], (subscription.latest, candidates)
    shown = next(s for s in candidates if state(s) == state(subscription.latest))
    assert subscription.snapshot.status.value == expected_status(deliveries, shown), (subscription, deliveries)
    assert subscription.snapshot.expires_at == shown.expires_at


def final_state(deliveries: list[Translation]):
    store = MemoryStore()
    for translation in deliveries:
        with store.transaction() as tx:
            apply_translation(tx, translation, Catalog(products={}), NOW)
    state = store.state
    entitlements = {user: grants for user, grants in state.entitlements.items() if grants}
    return state.subscriptions, entitlements


@settings(max_examples=300, deadline=None)
@given(st.lists(snapshots.map(lambda s: dataclasses.replace(s, key="t1")), min_size=1, max_size=8),
       st.randoms())
def test_snapshot_register_converges_in_any_order(deliveries, random):
    shuffled = deliveries[:]
    random.shuffle(shuffled)
    fold = lambda items: functools.reduce(merge_snapshot, items[1:], merge_snapshot(None, items[0]))
    assert fold(shuffled) == fold(deliveries)
    assert_ends_as_the_rules_say(fold(shuffled), deliveries)


@settings(max_examples=200, deadline=None)
@given(st.lists(changes, min_size=1, max_size=8), st.randoms(), st.data())
def test_store_converges_in_any_order_with_duplicates(deliveries, random, data):
    replayed = deliveries + data.draw(st.lists(st.sampled_from(deliveries), max_size=4))
    random.shuffle(replayed)
    found = final_state(replayed)
    assert found == final_state(deliveries)
    for (_, key), subscription in found[0].items():
        assert_ends_as_the_rules_say(subscription, [s for t in deliveries for s in t.snapshots if s.key == key])


def assert_moved_by_the_transfer(after: dict, before: dict, transfer: Transfer) -> None:
    """A transfer newer than every delivery moves each subscription that one of its
    accounts holds (its owner, or the store account it was bought on) to its user, and
    no other (README, RevenueCat's TRANSFER)."""
    for key, subscription in after.items():
        held = before[key]
        moved = held.owner in transfer.from_accounts or held.latest.account in transfer.from_accounts
        assert subscription.owner == (transfer.to_user if moved else held.owner), (key, held, subscription)


@settings(max_examples=300, deadline=None)
@given(st.lists(snapshots, min_size=1, max_size=6), st.randoms(),
       st.sampled_from(["dave", None]))
def test_transfer_and_deliveries_converge_in_any_order(deliveries, random, to_user):
    # A transfer after every delivery it must move: its stamp is the latest. To nobody
    # (None) when RevenueCat transferred to anonymous ids only.
    transfer = Translation(transfers=(Transfer("revenuecat", ("alice", "anon-1"), to_user,
                                               T0 + timedelta(seconds=10)),))
    ordered = [Translation(snapshots=(s,)) for s in deliveries] + [transfer]
    shuffled = ordered[:]
    random.shuffle(shuffled)
    expected, _ = final_state(ordered)
    found, _ = final_state(shuffled)
    assert_moved_by_the_transfer(expected, final_state(ordered[:-1])[0], transfer.transfers[0])
    # A transfer moves what the accounts hold when it applies, so the one order-sensitive
    # case is a subscription delivered (again) after it: it may end with another holder,
    # and nothing else may differ. Every other subscription must end exactly the same.
    at = shuffled.index(transfer)
    late = {(s.source, s.key) for t in shuffled[at + 1:] for s in t.snapshots}
    assert {k: v for k, v in found.items() if k not in late} == {k: v for k, v in expected.items() if k not in late}
    for key in late:  # and those differ in who holds them only
        assert dataclasses.replace(found[key], owner=None, owner_as_of=None) == \
            dataclasses.replace(expected[key], owner=None, owner_as_of=None)


@settings(max_examples=300, deadline=None)
@given(st.lists(snapshots.map(lambda s: dataclasses.replace(s, user_sub=s.user_sub and "alice")), min_size=1,
                max_size=6), st.randoms(), st.sampled_from(["dave", None]))
def test_transferable_deliveries_and_a_transfer_converge_exactly_in_any_order(deliveries, random, to_user):
    # RevenueCat's deliveries answer to its register of transfers (``transferable``): one
    # delivered after the transfer that moved its purchase, or that hands the purchase to
    # a holder the transfer moved from, still ends moved. No exception as above, for
    # transfers as RevenueCat makes them: from the holder at its stamp (every user a
    # delivery names here is one the transfer moves from).
    transfer = Translation(transfers=(Transfer("revenuecat", ("alice", "anon-1"), to_user,
                                               T0 + timedelta(seconds=10)),))
    ordered = [Translation(snapshots=(s,), transferable=True) for s in deliveries] + [transfer]
    shuffled = ordered[:]
    random.shuffle(shuffled)
    assert final_state(shuffled) == final_state(ordered)
    assert_moved_by_the_transfer(final_state(ordered)[0], final_state(ordered[:-1])[0], transfer.transfers[0])


@settings(max_examples=200, deadline=None)
@given(st.lists(snapshots, min_size=1, max_size=6), st.randoms(), st.sampled_from(["dave", None]))
def test_deliveries_in_any_order_before_a_transfer_end_the_same(deliveries, random, to_user):
    transfer = Translation(transfers=(Transfer("revenuecat", ("alice", "anon-1"), to_user,
                                               T0 + timedelta(seconds=10)),))
    shuffled = deliveries[:]
    random.shuffle(shuffled)
    assert final_state([Translation(snapshots=(s,)) for s in shuffled] + [transfer]) == \
        final_state([Translation(snapshots=(s,)) for s in deliveries] + [transfer])


def test_the_transfer_check_compares_like_with_like():
    """The keys the test above sets aside are (source, key) pairs, as the store's are."""
    subscriptions, _ = final_state([Translation(snapshots=(Snapshot("revenuecat", "t1", T0, Status.ACTIVE),))])
    assert set(subscriptions) == {("revenuecat", "t1")}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["alice", "bob", "carol"]), min_size=1, max_size=5),
       st.sampled_from(["alice", "anon-1"]), st.randoms())
def test_chained_transfers_after_the_purchase_converge_in_any_order(hops, account, random):
    # The purchase is alice's (bought as alice, or anonymously then logged in); each transfer
    # moves it from whoever holds it at its stamp, as RevenueCat makes them. Delivered after
    # the purchase in any order, they end where their stamps say, the last hop.
    bought = Snapshot("revenuecat", "t1", T0, Status.ACTIVE, expires_at=T0 + timedelta(days=30),
                      user_sub="alice", account=account)
    purchase = Translation(snapshots=(bought,))
    holders = ["alice", *hops]
    transfers = [Translation(transfers=(Transfer("revenuecat", (a,), b, T0 + timedelta(seconds=n)),))
                 for n, (a, b) in enumerate(zip(holders, holders[1:]), 1)]
    shuffled = transfers[:]
    random.shuffle(shuffled)
    expected = final_state([purchase, *transfers])
    assert expected[0][("revenuecat", "t1")].owner == holders[-1]
    assert final_state([purchase, *shuffled]) == expected


def owner_after(seen: list[Snapshot], transfer: Transfer) -> str | None:
    """The rule, written out: the newest claim holds, among the users the deliveries name
    and the transfer's user; the transfer claims only a purchase seen no later than its
    stamp, held by then by a user or an account (each one it moves from, here)."""
    claims = [(s.as_of, s.user_sub) for s in seen if s.user_sub]
    if min(s.as_of for s in seen) <= transfer.as_of and any(s.user_sub or s.account for s in seen):
        claims.append((transfer.as_of, transfer.to_user or ""))
    return max(claims)[1] or None if claims else None


@settings(max_examples=300, deadline=None)
@given(st.lists(snapshots.map(lambda s: dataclasses.replace(s, key="t1", user_sub=s.user_sub and "alice")),
                min_size=1, max_size=6), st.integers(0, 5), st.randoms(), st.sampled_from(["dave", None]))
def test_a_transfer_moves_only_the_purchases_seen_by_its_stamp_in_any_order(deliveries, at, random, to_user):
    # The transfer is stamped among the deliveries of one purchase: one whose every delivery
    # is stamped after it was bought after it (RevenueCat names the holder in each event),
    # and stays where its deliveries put it; one seen by then is moved, unless a user it
    # names claims it later. A delivery older than all the others, arriving after the
    # transfer, makes it one seen by then. Transferable deliveries: each order ends the same.
    moved = Transfer("revenuecat", ("alice", "anon-1"), to_user, T0 + timedelta(seconds=at))
    ordered = [Translation(snapshots=(s,), transferable=True) for s in deliveries] + [Translation(transfers=(moved,))]
    shuffled = ordered[:]
    random.shuffle(shuffled)
    found = final_state(shuffled)
    assert found == final_state(ordered)
    for (_, key), subscription in found[0].items():
        assert subscription.owner == owner_after([s for s in deliveries if s.key == key], moved)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["alice", "bob", "carol"]), min_size=1, max_size=4), st.integers(0, 5),
       st.randoms())
def test_chained_transfers_from_an_anonymous_id_move_only_what_it_bought_before_them(hops, bought_at, random):
    # The purchase names no user, only its anonymous account; the chain starts from that
    # account at T0+1s, one hop a second. A transfer stamped before the purchase did not
    # move it, nor any later hop from a user it never reached: written out below, each
    # transfer moves it when it is seen by then and held by the transfer's from-id.
    bought = Snapshot("revenuecat", "t1", T0 + timedelta(seconds=bought_at), Status.ACTIVE,
                      expires_at=T0 + timedelta(days=30), account="anon-1")
    holders = ["anon-1", *hops]
    moves = [Transfer("revenuecat", (a,), b, T0 + timedelta(seconds=n))
             for n, (a, b) in enumerate(zip(holders, holders[1:]), 1)]
    holder = "anon-1"
    for move in moves:
        if bought.as_of <= move.as_of and move.from_accounts == (holder,):
            holder = move.to_user
    deliveries = [Translation(snapshots=(bought,), transferable=True), *(Translation(transfers=(m,)) for m in moves)]
    random.shuffle(deliveries)
    subscriptions, _ = final_state(deliveries)
    assert subscriptions[("revenuecat", "t1")].owner == (None if holder == "anon-1" else holder)


@settings(max_examples=200, deadline=None)
@given(st.lists(snapshots.map(lambda s: dataclasses.replace(s, key="t1", user_sub="alice", account="alice")),
                min_size=1, max_size=6), st.integers(0, 6), st.randoms(), st.sampled_from(["dave", None]))
def test_a_transfer_among_the_deliveries_gives_way_to_a_newer_one(deliveries, stamp, random, to_user):
    # RevenueCat names alice on every event of her purchase; she transfers it at ``stamp``.
    # An event stamped after the transfer is a newer claim and keeps it with alice; else
    # the transfer's user holds it (at one instant, the greater user id; nobody is least).
    transfer = Translation(transfers=(Transfer("revenuecat", ("alice",), to_user, T0 + timedelta(seconds=stamp)),))
    ordered = [Translation(snapshots=(s,), transferable=True) for s in deliveries] + [transfer]
    shuffled = ordered[:]
    random.shuffle(shuffled)
    subscriptions, _ = final_state(shuffled)
    newest = max(s.as_of for s in deliveries)
    claims = [(newest, "alice"), (transfer.transfers[0].as_of, to_user or "")]
    assert subscriptions[("revenuecat", "t1")].owner == (max(claims)[1] or None)


# The written-out rules above are the oracle: they read the records the gateway made (its
# Snapshot, Status and Transfer are the inputs and outputs here) but call none of its code.
ORACLE = ("newest_candidates", "expected_status", "assert_ends_as_the_rules_say", "assert_moved_by_the_transfer",
          "owner_after")


def test_the_written_out_rules_call_no_code_of_the_gateway():
    import ast
    import inspect
    import sys

    module = sys.modules[__name__]
    imported = {name for name, value in vars(module).items()
                if getattr(value, "__module__", "").startswith("gateway") or name == "gateway"}
    for name in ORACLE:
        tree = ast.parse(inspect.getsource(getattr(module, name)))
        body = [node for function in tree.body for statement in function.body for node in ast.walk(statement)]
        used = {node.id for node in body if isinstance(node, ast.Name)}
        assert not used & imported, f"{name} calls the gateway's {sorted(used & imported)}"
