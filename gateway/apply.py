"""Apply translations inside one store transaction, then re-derive entitlements."""
from __future__ import annotations

from datetime import datetime

from gateway.domain.catalog import Catalog
from gateway.domain.changes import Translation
from gateway.domain.entitlements import derive
from gateway.domain.model import Subscription, absorb, adopt, reassign
from gateway.store.port import Transaction

Key = tuple[str, str]


def apply_translation(tx: Transaction, translation: Translation, catalog: Catalog, now: datetime,
                      touched: set[Key] | None = None) -> set[str]:
    """Write the changes; returns the users whose entitlements were re-derived.

    ``touched``, when given, receives the (source, key) of every subscription concerned:
    the evidence the explain API shows for the delivery.
    """
    changes = Changes(tx, catalog, now)
    users, keys = changes.apply(translation)
    changes.finish()
    if touched is not None:
        touched.update(keys)
    return users


class Changes:
    """One or more translations applied in one transaction, in order, as if one by one.

    Subscriptions are read and locked once, kept here as they now are, and written once
    each (``flush``); entitlements are re-derived once per user at the end (``finish``).
    So a batch of deliveries costs a few statements, not a few per delivery, and ends in
    the state their one-by-one application would.

    Lock order, so writers never deadlock: identity links and the subscriptions they
    move; then each translation's snapshots, all its keys in one ordered call; then
    transfers; users last, after every subscription.
    """

    def __init__(self, tx: Transaction, catalog: Catalog, now: datetime) -> None:
        self.tx, self.catalog, self.now = tx, catalog, now
        self.held: dict[Key, Subscription | None] = {}  # locked in this transaction, as it now is
        self.unsaved: dict[Key, Subscription] = {}
        self.users: set[str] = set()

    def lock(self, keys) -> None:
        """Lock these subscriptions for the transaction (one call for all of them)."""
        wanted = sorted({key for key in keys if key not in self.held})
        if wanted:
            self.held.update(self.tx.lock_subscriptions(wanted))

    def apply(self, translation: Translation) -> tuple[set[str], set[Key]]:
        """Apply one translation; returns the users it concerned and the keys it touched.

        Links go first so that a snapshot in the same delivery finds its owner.
        """
        users: set[str] = set()
        touched: set[Key] = set()

        def lock_all(source: str, accounts: tuple[str, ...], owners: tuple[str, ...]) -> list[Subscription]:
            self.flush()  # the search below must see every change made so far
            found = self.tx.lock_held_by(source, accounts, owners)
            for subscription in found:  # a row already changed here is taken as it now is
                self.held.setdefault((source, subscription.snapshot.key), subscription)
            return [self.held[(source, s.snapshot.key)] for s in found]

        def save(current: Subscription | None, updated: Subscription) -> None:
            key = (updated.snapshot.source, updated.snapshot.key)
            touched.add(key)
            self.held[key] = updated
            if updated != current:
                self.unsaved[key] = updated
                users.update(s.owner for s in (current, updated) if s is not None and s.owner)

        for link in translation.links:
            owner = self.tx.link(link.source, link.account, link.user_sub, link.as_of, self.now)  # the newest link holds
            for current in lock_all(link.source, (link.account,), ()):
                save(current, adopt(current, owner))

        snapshots = sorted(translation.snapshots, key=lambda s: (s.source, s.key))
        self.lock((s.source, s.key) for s in snapshots)
        for snapshot in snapshots:
            current = self.held[(snapshot.source, snapshot.key)]
            updated = absorb(current, snapshot)
            account = updated.snapshot.account
            if updated.owner_as_of is None:
                updated = adopt(updated, self.tx.resolve(snapshot.source, account) if account else None)
            save(current, updated)

        for transfer in translation.transfers:
            accounts = transfer.from_accounts
            for current in lock_all(transfer.source, accounts, accounts):
                save(current, reassign(current, transfer.to_user, transfer.as_of))

        self.users |= users
        return users, touched

    def flush(self) -> None:
        """Write the subscriptions changed since the last flush."""
        if self.unsaved:
            self.tx.save_subscriptions(list(self.unsaved.values()), self.now)
            self.unsaved.clear()

    def finish(self) -> set[str]:
        """Write what is left and re-derive the entitlements of every user concerned."""
        self.flush()
        users = sorted(self.users)
        if users:
            self.tx.lock_users(users)
            held = self.tx.subscriptions_of_users(users)
            self.tx.replace_entitlements_of(
                {user: list(derive([s.snapshot for s in held[user]], self.catalog).values()) for user in users},
                self.now)
        return set(users)
