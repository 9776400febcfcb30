"""Purchase registration: a signed-in user claims a store purchase made in the app.

Used where the store does not name our user (Apple without ``appAccountToken``, Google
without ``obfuscatedExternalAccountId``). The purchase's key is linked to the caller,
and any subscription stored before its owner was known attaches at that moment.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from gateway.apply import apply_translation
from gateway.domain.entitlement_events import Cause
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Translation
from gateway.domain.entitlements import Grant
from gateway.domain.model import Snapshot, Subscription, claim_ownership
from gateway.errors import Conflict, Unavailable
from gateway.store.port import Store, StoreUnavailable


def register_purchase(store: Store, catalog: Catalog, clock: Callable[[], datetime], *,
                      source: str, key: str, user_sub: str, translation: Translation,
                      carries: bool = False) -> list[Grant]:
    """Link ``key`` of ``source`` to ``user_sub`` and apply ``translation``; the user's grants.
    ``carries``: the key is a purchase that later purchases replacing it go with
    (``Link.carries``: Google).

    Raises ``Conflict`` when the purchase already belongs to another user.
    """
    claimed = {s.user_sub for s in translation.snapshots if s.user_sub} | {link.user_sub for link in translation.links}
    if claimed - {user_sub}:
        raise Conflict("the purchase was made for another user", code="purchase_owned_by_another_user")
    snapshots = tuple(dataclasses.replace(s, account=s.account or key) for s in translation.snapshots)
    # The key, and the account its purchase goes with when that is another (a Google
    # upgrade whose old purchase's user is not known yet goes with the old token).
    accounts = sorted({key} | {s.account for s in snapshots if s.key == key})
    translation = dataclasses.replace(translation, snapshots=snapshots,
                                      links=translation.links + tuple(Link(source, a, user_sub, carries=carries) for a in accounts))
    try:
        with store.transaction() as tx:
            tx.lock_accounts([(source, a) for a in accounts])  # the lock order of every writer: accounts first
            current = tx.lock_subscriptions([(source, key)])[(source, key)]
            if _held_by_another(tx, source, accounts, current, snapshots, user_sub):
                raise Conflict("the purchase is linked to another user", code="purchase_owned_by_another_user")
            apply_translation(tx, translation, catalog, clock(), cause=Cause("purchase", source))
            return tx.entitlements_of(user_sub)
    except StoreUnavailable as exc:
        raise Unavailable("the purchase cannot be stored right now", code="store_unavailable") from exc


def _held_by_another(tx, source: str, accounts: list[str], current: Subscription | None,
                     snapshots: tuple[Snapshot, ...], user_sub: str) -> bool:
    """Whether the purchase is another user's. One the store names the caller in
    (``appAccountToken``, ``obfuscatedExternalAccountId``) is the caller's, as the merge
    makes it, unless a newer delivery named another (``model.claim_ownership``): an
    earlier registration by another user does not hold against it. Otherwise its owner,
    and the users its accounts are linked to, must be the caller."""
    named = [s for s in snapshots if s.user_sub == user_sub and s.account in accounts]
    if named:
        held = claim_ownership(current, user_sub, max(s.as_of for s in named)) if current else None
        return held is not None and held.owner != user_sub
    owners = {current.owner if current else None, *(tx.resolve(source, a) for a in accounts)} - {None, user_sub}
    return bool(owners)
