"""Apply translations inside one store transaction, then re-derive entitlements."""
from __future__ import annotations

from datetime import datetime

from gateway.domain.catalog import Catalog
from gateway.domain.changes import Translation
from gateway.domain.entitlements import derive
from gateway.domain.model import Subscription, claim_ownership, merge_snapshot, with_account_owner
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

    Lock order: the store accounts a translation names (so that a link and a new
    subscription of one account see each other), then its subscriptions, all keys in one
    ordered call, then the subscriptions its links and transfers move, found by account
    or owner; users last, after every subscription. Writers that follow this order
    cannot deadlock each other, except that rows found by account (a link, a transfer)
    may come before keys already locked: a batch with links or transfers may then be
    chosen as a deadlock victim and is retried delivery by delivery (``ingest``).
    """

    def __init__(self, tx: Transaction, catalog: Catalog, now: datetime) -> None:
        self.tx, self.catalog, self.now = tx, catalog, now
        self.held: dict[Key, Subscription | None] = {}  # locked in this transaction, as it now is
        self.unsaved: dict[Key, Subscription] = {}
        self.users: set[str] = set()
        self.accounts: set[Key] = set()

    def lock(self, translations) -> None:
        """Lock the accounts, then the subscriptions, these translations name."""
        translations = list(translations)
        accounts = {(link.source, link.account) for t in translations for link in t.links}
        accounts |= {(s.source, s.account) for t in translations for s in t.snapshots if s.account}
        accounts |= {(t.source, a) for tr in translations for t in tr.transfers for a in t.from_accounts}
        if accounts - self.accounts:
            self.tx.lock_accounts(sorted(accounts - self.accounts))
            self.accounts |= accounts
        wanted = sorted({(s.source, s.key) for t in translations for s in t.snapshots} - set(self.held))
        if wanted:
            self.held.update(self.tx.lock_subscriptions(wanted))

    def apply(self, translation: Translation) -> tuple[set[str], set[Key]]:
        """Apply one translation; returns the users it concerned and the keys it touched.

        Links go first so that a snapshot in the same delivery finds its owner.
        """
        self.lock([translation])
        step = _Step(self)
        for link in translation.links:
            # A link without the store's own time is ordered by when the gateway records it.
            owner = self.tx.link(link.source, link.account, link.user_sub, link.as_of or self.now, self.now)
            for current in self.held_by(link.source, (link.account,), ()):
                step.save(current, with_account_owner(current, owner))
        for snapshot in sorted(translation.snapshots, key=lambda s: (s.source, s.key)):
            current = self.held[(snapshot.source, snapshot.key)]
            updated = merge_snapshot(current, snapshot)
            account = updated.snapshot.account
            if updated.owner_as_of is None:
                updated = with_account_owner(updated, self.tx.resolve(snapshot.source, account) if account else None)
            step.save(current, updated)
        for transfer in translation.transfers:
            accounts = transfer.from_accounts
            for current in self.held_by(transfer.source, accounts, accounts):
                step.save(current, claim_ownership(current, transfer.to_user, transfer.as_of))
        self.users |= step.users
        return step.users, step.touched

    def held_by(self, source: str, accounts: tuple[str, ...], owners: tuple[str, ...]) -> list[Subscription]:
        """The subscriptions these accounts or owners hold, locked, each as it now is here."""
        self.flush()  # the search below must see every change made so far
        found = self.tx.lock_held_by(source, accounts, owners)
        for subscription in found:  # a row already changed here is taken as it now is
            self.held.setdefault((source, subscription.snapshot.key), subscription)
        return [self.held[(source, s.snapshot.key)] for s in found]

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


class _Step:
    """What one translation changed: the users concerned and the subscriptions touched."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.users: set[str] = set()
        self.touched: set[Key] = set()

    def save(self, current: Subscription | None, updated: Subscription) -> None:
        key = (updated.snapshot.source, updated.snapshot.key)
        self.touched.add(key)
        self.changes.held[key] = updated
        if updated != current:
            self.changes.unsaved[key] = updated
            self.users.update(s.owner for s in (current, updated) if s is not None and s.owner)
