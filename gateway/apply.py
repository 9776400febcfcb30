"""Apply translations inside one store transaction, then re-derive entitlements and
record, in the same transaction, the feed events of what changed."""
from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Transfer, Translation, transferred
from gateway.domain import entitlement_events
from gateway.domain.entitlement_events import Cause, Changed, FeedEvent
from gateway.domain.entitlements import derive
from gateway.domain.events import Event
from gateway.domain.model import Subscription, merge_snapshot, with_account_owner
from gateway.domain.reads import StaleRead, stale_read
from gateway import late_purchases
from gateway.erasure import Concerned
from gateway.store.port import Transaction

Key = tuple[str, str]
T = TypeVar("T")

log = logging.getLogger("gateway.apply")

#: How often a store is read and the result applied in a row while the read turns out
#: older than a state stored meanwhile (``StaleRead``), before giving up.
READS = 3

#: The cause of a change the gateway made on its own, when the caller names none.
GATEWAY = Cause("gateway")

#: The account whose lock (``Transaction.lock_accounts``) a source's transfers take: one
#: at a time per source, each replays the register (``tables.transfers``) as committed.
REGISTER = ""


def apply_translation(tx: Transaction, translation: Translation, catalog: Catalog, now: datetime,
                      touched: set[Key] | None = None, cause: Cause = GATEWAY, event: Event | None = None) -> set[str]:
    """Write the changes; returns the users whose entitlements were re-derived.

    ``touched``, when given, receives the (source, key) of every subscription concerned:
    the evidence the explain API shows for the delivery. ``event``: the stored delivery
    applied, erased if it is about a deleted user (``erasure``).
    """
    changes = Changes(tx, catalog, now)
    users, keys = changes.apply(translation, cause, event)
    changes.finish()
    if touched is not None:
        touched.update(keys)
    return users


def reading_again(attempt: Callable[[], T]) -> T:
    """``attempt()``: read a store, then apply what it read in a transaction of its own;
    again while it raises ``StaleRead`` (a read that rolls back writes nothing), up to
    READS times, then the ``StaleRead`` is raised."""
    for read in itertools.count(1):
        try:
            return attempt()
        except StaleRead as exc:
            if read == READS:
                raise
            log.info("read again", extra={"fields": {"why": str(exc), "read": read}})


class Changes:
    """One or more translations applied in one transaction, in order, as if one by one.

    Subscriptions are read and locked once, kept here as they now are, and written once
    each (``flush``); entitlements are re-derived once per user at the end (``finish``).
    So a batch of deliveries costs a few statements, not a few per delivery, and ends in
    the state their one-by-one application would.

    Lock order: the store accounts a translation names (so that a link and a new
    subscription of one account see each other; a transfer also the register's,
    ``REGISTER``; a transferable one also the users it names, whom a transfer moves
    from), then its subscriptions, all keys in one
    ordered call, then the subscriptions its links and transfers move, found by account
    or owner; users last, after every subscription. Writers that follow this order
    cannot deadlock each other, except that rows found by account (a link, a transfer)
    may come before keys already locked: a batch with links or transfers may then be
    chosen as a deadlock victim and is retried delivery by delivery (``ingest``).
    """

    def __init__(self, tx: Transaction, catalog: Catalog, now: datetime) -> None:
        self.tx, self.catalog, self.now = tx, catalog, now
        self.held: dict[Key, Subscription | None] = {}  # locked in this transaction, as it now is
        self.stored: dict[Key, Subscription | None] = {}  # as it was before this transaction changed it
        self.unsaved: dict[Key, Subscription] = {}
        self.users: set[str] = set()
        self.accounts: set[Key] = set()
        self.causes: dict[str, Cause] = {}  # the last cause of each user's change
        self.concerned = Concerned()

    def lock(self, translations) -> None:
        """Lock the accounts, then the subscriptions, these translations name."""
        translations = list(translations)
        accounts = {(link.source, link.account) for t in translations for link in t.links}
        accounts.update(a for t in translations for a in t.named_accounts)  # read against the tombstone
        accounts |= {(s.source, s.account) for t in translations for s in t.snapshots if s.account}
        moved = [t for tr in translations for t in tr.transfers]
        accounts |= {(t.source, a) for t in moved for a in (*t.from_accounts, REGISTER)}
        # An owner a transferable translation gives is an account a transfer may move from:
        # locked, so that the transfer, recorded together, finds the purchase or is found.
        accounts |= {(c.source, c.user_sub) for t in translations if t.transferable
                     for c in (*t.snapshots, *t.links) if c.user_sub}
        self._lock_accounts(accounts)
        wanted = sorted({(s.source, s.key) for t in translations for s in t.snapshots} - set(self.held))
        if wanted:
            self.held.update(self.tx.lock_subscriptions(wanted))

    def apply(self, translation: Translation, cause: Cause = GATEWAY,
              event: Event | None = None) -> tuple[set[str], set[Key]]:
        """Apply one translation (of ``event``, the delivery stored); returns the users it
        concerned and the keys it touched.

        Links go first so that a snapshot in the same delivery finds its owner. Raises
        ``StaleRead`` before writing anything when a state it read may be older than the
        one held (``stale_read``): the caller rolls back and translates the delivery again.
        """
        self.lock([translation])
        for snapshot in translation.snapshots:
            if stale_read(self.held[(snapshot.source, snapshot.key)], snapshot):
                raise StaleRead(f"{snapshot.source} {snapshot.key} changed while it was read")
        step = _Step(self, translation.transferable)
        for link in translation.links:
            self._link(step, link)
        for snapshot in sorted(translation.snapshots, key=lambda s: (s.source, s.key)):
            current = self.held[(snapshot.source, snapshot.key)]
            updated = merge_snapshot(current, snapshot)
            if updated.owner_as_of is None:
                updated = with_account_owner(updated, late_purchases.owner(self.tx, updated))
            step.save(current, updated)
        for transfer in translation.transfers:
            self._transfer(step, transfer)
        self.users |= step.users
        self.causes.update(dict.fromkeys(step.users, cause))
        self.concerned.note(event, translation, (*step.users, *(self.held[key].owner for key in step.touched)))
        return step.users, step.touched

    def _link(self, step: _Step, link: Link) -> None:
        """Record ``link``; the subscriptions held under its account take the owner it
        resolves to. One that carries goes on from each purchase it attached that is held
        under another's account to the purchases held under that one's key, linked to the
        same owner. Their account needs no lock of its own: a purchase is stored under
        another's key only together with that purchase's row (``replaced``), whose lock
        ``held_by`` holds by then, so the writer of one either committed before the search
        or waits and then finds this link."""
        # A link without the store's own time is ordered by when the gateway records it.
        as_of, pending, seen = link.as_of or self.now, [(link.account, link.user_sub)], {link.account}
        while pending:
            account, user_sub = pending.pop()
            owner = self.tx.link(link.source, account, user_sub, as_of, self.now)
            if owner is None:  # the user was deleted: linked to nothing, the account kept as theirs (``owner``)
                self.tx.keep_accounts(user_sub, [(link.source, account)])
                continue
            for current in self.held_by(link.source, (account,), ()):
                updated = with_account_owner(current, owner)
                step.save(current, updated)
                key = current.snapshot.key
                if link.carries and key not in seen and updated.owner_as_of is None and updated.owner:
                    seen.add(key)
                    pending.append((key, updated.owner))

    def _transfer(self, step: _Step, transfer: Transfer) -> None:
        """Record ``transfer``; each subscription its accounts hold takes the owner that
        every recorded transfer it may reach gives it, by their stamps (``transferred``):
        one recorded while its from-set held nothing counts once an older one brings the
        purchase there. The register's lock (``REGISTER``) keeps the register as read."""
        self.tx.record_transfer(transfer, self.now)
        accounts = transfer.from_accounts
        held = self.held_by(transfer.source, accounts, accounts)
        register = self.register(transfer.source, {n for s in held for n in (s.owner, s.snapshot.account) if n})
        for current in held:
            step.save(current, transferred(current, register), replayed=True)

    def _lock_accounts(self, accounts: set[Key]) -> None:
        if accounts - self.accounts:
            self.tx.lock_accounts(sorted(accounts - self.accounts))
            self.accounts |= accounts

    def register(self, source: str, names: set[str], lock_hops: bool = False) -> list[Transfer]:
        """The recorded transfers from ``names``, and on from each one's new owner: every
        account an owner may pass through from there. ``lock_hops`` (a delivery, which
        does not hold the register's lock): each account's lock is taken before its
        transfers are read, the lock a transfer from it holds, so one committing meanwhile
        is waited for and read, or waits and then finds what this transaction moved there.
        Taken after the subscriptions' locks, out of the usual order: a deadlock it may
        make is resolved by PostgreSQL, and the victim retried."""
        reached, pending, register = set(), set(names), []
        while pending:
            if lock_hops:
                self._lock_accounts({(source, name) for name in pending})
            reached |= pending
            found = self.tx.transfers_from(source, sorted(pending))
            register += found
            pending = {t.to_user for t in found if t.to_user} - reached
        return register

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
        """Write what is left, re-derive the entitlements of every user concerned (none
        for a deleted user) and append the feed events of what changed. Before the feed,
        a delivery about a deleted user is erased (``erasure``): the users it names that
        nothing re-derives are locked and read against the tombstone with the others."""
        self.flush()
        users = sorted(self.users)
        others = self.concerned.unread(self.users)
        read = sorted(self.users | others) if others else users
        if read:
            self.tx.lock_users(read)
        # The users' subscriptions read with their rows: erasing (which writes no
        # subscription) changes nothing they hold, and their locks keep them as read.
        before, deleted, held = self.tx.read_users(read, users) if read else ({}, set(), {})
        self.concerned.erase(self.tx, deleted)
        if users:
            late_purchases.note(self.tx, {user: held[user] for user in users if user in deleted}, self.now, self.stored)
            after = {user: [] if user in deleted else list(derive([s.snapshot for s in held[user]], self.catalog).values())
                     for user in users}
            self.tx.replace_entitlements_of(after, self.now)
            append_changes(self.tx, {user: entitlement_events.changed(before[user], after[user]) for user in users},
                           self.now, self.causes)
        return set(users)


def append_changes(tx: Transaction, found: dict[str, list[Changed]], now: datetime,
                   causes: dict[str, Cause]) -> list[FeedEvent]:
    """Append the feed events of these changes: the last step of a transaction, since it
    takes the feed's clock (``Transaction.take_feed_positions``). Nothing changed, nothing
    appended, and the clock is not touched."""
    count = sum(len(changed) for changed in found.values())
    if not count:
        return []
    last, reported_through = tx.take_feed_positions(count)
    # Judged no earlier than the sweep's mark: a change stamped before an end the sweep has
    # since passed (it waited on a lock) would grant a lapse nobody reports.
    now = max(now, reported_through)
    told = tx.said_inactive({(user, name) for user, changed in found.items() for name, old, _ in changed
                             if entitlement_events.lapse_unreported(old, now, reported_through)})
    events = [event for user, changed in found.items()
              for event in entitlement_events.events(user, changed, now, causes.get(user, GATEWAY), reported_through,
                                                     frozenset(name for who, name in told if who == user))]
    numbered = [dataclasses.replace(event, position=last + n) for n, event in enumerate(events, 1)]
    tx.append_feed(numbered)
    return numbered


class _Step:
    """What one translation changed: the users concerned and the subscriptions touched."""

    def __init__(self, changes: Changes, transferable: bool = False) -> None:
        self.changes = changes
        self.transferable = transferable
        self.users: set[str] = set()
        self.touched: set[Key] = set()

    def save(self, current: Subscription | None, updated: Subscription, replayed: bool = False) -> None:
        """Keep ``updated``; in a transferable translation, one whose owner or account
        this changed, or that is now seen older (a transfer may move it from then on),
        first takes the transfers recorded from them (``replayed``: it did)."""
        if self.transferable and not replayed and _answers(updated) != (_answers(current) if current else None):
            names = {n for n in _holder(updated) if n}
            updated = transferred(updated, self.changes.register(updated.snapshot.source, names, lock_hops=True))
        key = (updated.snapshot.source, updated.snapshot.key)
        self.touched.add(key)
        self.changes.stored.setdefault(key, current)
        self.changes.held[key] = updated
        if updated != current:
            self.changes.unsaved[key] = updated
            self.users.update(s.owner for s in (current, updated) if s is not None and s.owner)


def _holder(subscription: Subscription) -> tuple[str | None, str | None]:
    """Who a transfer may move ``subscription`` from: its owner and its store account."""
    return subscription.owner, subscription.snapshot.account


def _answers(subscription: Subscription) -> tuple:
    """What decides which recorded transfers move ``subscription``: its holder, and since
    when it is seen (``transferred``)."""
    return *_holder(subscription), subscription.first_as_of
