"""A deleted user's personal data in the event log: erased by the deletion
(``accounts.erase``), and from every delivery about them that is applied after it.

A delivery is about a user when a subscription it touched is theirs, or a snapshot, link
or transfer in it names them; one that changes nothing (Stripe's ``customer.deleted``,
sent when the app deletes the customer) when it names them or a store account that
their tombstone keeps (``Transaction.keep_accounts``). In the transaction that applies
it, a delivery about a deleted user has its personal values replaced, as the deletion
replaced those of the deliveries it found (a link it carries to them was refused by the
store: ``Transaction.link``). The users are read against the tombstone together with
those whose entitlements are re-derived (``apply.Changes.finish``), so an ordinary
delivery, whose users are all re-derived, pays for no more than a few set operations;
one that changes nothing pays a read of the tombstone only when it carries personal values.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from gateway.domain import personal_data
from gateway.domain.changes import Translation
from gateway.domain.events import Event
from gateway.store.port import Transaction

#: Deliveries read per statement while a deletion erases them (``redact_deliveries``).
PAGE = 500


def redact_event(tx: Transaction, event: Event) -> bool:
    """Erase the personal values of one stored delivery; whether it had any."""
    payload, data = personal_data.redact_text(event.payload), personal_data.redact(event.data)
    if (payload, data) == (event.payload, event.data):
        return False
    tx.rewrite_event(event.id, payload, data)
    return True


class Concerned:
    """Whom each delivery applied in one transaction is about."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[Event, set[str]]] = []
        self.naming: list[tuple[Event, tuple[tuple[str, str], ...]]] = []  # the store accounts named
        self.linked: set[str] = set()

    def note(self, event: Event | None, translation: Translation, users: Iterable[str | None]) -> None:
        """``users``: those whose subscriptions it changed or touched."""
        self.linked.update(link.user_sub for link in translation.links)
        if event is None:
            return
        named = {*users, *translation.named_users, *(s.user_sub for s in translation.snapshots),
                 *(link.user_sub for link in translation.links), *(t.to_user for t in translation.transfers)}
        named.discard(None)
        self.deliveries.append((event, named))
        if translation.named_accounts:
            self.naming.append((event, translation.named_accounts))

    def unread(self, read: set[str]) -> set[str]:
        """The users to read against the tombstone besides ``read``: those linked, and
        those named by a delivery with personal values left to erase."""
        found = self.linked - read
        for event, named in self.deliveries:
            if not named <= read and personal_data.carries(event.data):
                found |= named - read
        return found

    def erase(self, tx: Transaction, deleted: set[str]) -> None:
        """Erase the personal values of the deliveries about the ``deleted`` users or
        about a store account their tombstone keeps."""
        about: dict[int, Event] = {}
        if deleted:
            for user in sorted(self.linked & deleted):
                # The store refuses such a link, unless the deletion committed while it was
                # made (its tombstone unseen then): this transaction waited for it since. Its
                # account is kept as a refused link keeps it (``apply.Changes._link``).
                tx.keep_accounts(user, tx.identities_of(user))
                tx.unlink_user(user)
            about = {event.id: event for event, named in self.deliveries if not named.isdisjoint(deleted)}
        naming = [(event, accounts) for event, accounts in self.naming if personal_data.carries(event.data)]
        if naming:
            kept = tx.deleted_accounts(sorted({account for _, accounts in naming for account in accounts}))
            about.update((event.id, event) for event, accounts in naming if not kept.keys().isdisjoint(accounts))
        for event in about.values():
            redact_event(tx, event)


def redact_deliveries(tx: Transaction, keys: list[tuple[str, str]], names: list[str]) -> int:
    """Erase personal values from the deliveries that touched ``keys`` or name one of
    ``names``; returns how many were changed."""
    changed, seen = 0, set()
    for event in _deliveries(tx, keys, names):
        if event.id in seen:
            continue
        seen.add(event.id)
        changed += redact_event(tx, event)
    return changed


def _deliveries(tx: Transaction, keys: list[tuple[str, str]], names: list[str]) -> Iterator[Event]:
    before = None
    while keys:
        page = tx.events_touching(keys, before_pk=before, limit=PAGE)
        yield from page
        if len(page) < PAGE:
            break
        before = page[-1].id
    for name in names:
        after = 0
        while True:
            page = tx.events_naming(name, after, PAGE)
            yield from page
            if len(page) < PAGE:
                break
            after = page[-1].id
