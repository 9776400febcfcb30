"""Apply a translation inside one store transaction, then re-derive entitlements."""
from __future__ import annotations

from datetime import datetime

from gateway.domain.catalog import Catalog
from gateway.domain.changes import Translation
from gateway.domain.entitlements import derive
from gateway.domain.model import Subscription, absorb, adopt, reassign
from gateway.store.port import Transaction


def apply_translation(tx: Transaction, translation: Translation, catalog: Catalog, now: datetime,
                      touched: set[tuple[str, str]] | None = None) -> set[str]:
    """Write the changes; returns the users whose entitlements were re-derived.

    Links go first so that a snapshot in the same delivery finds its owner. Subscriptions
    are locked in key order, users after all subscriptions, so writers never deadlock.
    ``touched``, when given, receives the (source, key) of every subscription concerned:
    the evidence the explain API shows for the delivery.
    """
    users: set[str] = set()
    held: dict[tuple[str, str], Subscription | None] = {}  # locked in this transaction, as it now is

    def lock(source: str, key: str) -> Subscription | None:
        if (source, key) not in held:
            held[(source, key)] = tx.lock_subscription(source, key)
        return held[(source, key)]

    def lock_all(source: str, accounts: tuple[str, ...], owners: tuple[str, ...]) -> list[Subscription]:
        found = tx.lock_held_by(source, accounts, owners)
        for subscription in found:  # a row already changed here is taken as it now is
            held.setdefault((source, subscription.snapshot.key), subscription)
        return [held[(source, s.snapshot.key)] for s in found]

    def save(current: Subscription | None, updated: Subscription) -> None:
        held[(updated.snapshot.source, updated.snapshot.key)] = updated
        if updated != current:
            tx.save_subscription(updated, now)
            users.update(s.owner for s in (current, updated) if s is not None and s.owner)

    for link in translation.links:
        owner = tx.link(link.source, link.account, link.user_sub, link.as_of, now)  # the newest link holds
        for current in lock_all(link.source, (link.account,), ()):
            save(current, adopt(current, owner))

    for snapshot in sorted(translation.snapshots, key=lambda s: (s.source, s.key)):
        current = lock(snapshot.source, snapshot.key)
        updated = absorb(current, snapshot)
        account = updated.snapshot.account
        if updated.owner_as_of is None:
            updated = adopt(updated, tx.resolve(snapshot.source, account) if account else None)
        save(current, updated)

    for transfer in translation.transfers:
        accounts = transfer.from_accounts
        for current in lock_all(transfer.source, accounts, accounts):
            save(current, reassign(current, transfer.to_user, transfer.as_of))

    if touched is not None:
        touched.update(held)
    tx.lock_users(sorted(users))
    for user in users:
        subscriptions = [s.snapshot for s in tx.subscriptions_of(user)]
        tx.replace_entitlements(user, list(derive(subscriptions, catalog).values()), now)
    return users
