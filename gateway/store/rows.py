"""Rows to the domain's records and back, derived from the tables.

A column named like a field of the record it stores carries that field as it is: a
time column comes back in UTC, an enum field (``Status``) is stored by its value. Only
what differs is written out below: the owner (``user_sub``), the entitlement names, their
own terms and the revocations (JSON), the stamp those terms and the period's id describe
(``derived_as_of``: another stamp than the row's means a release that knew neither wrote
it since, and both read as unknown), and when a row was written. A column no record
knows is written NULL, so a new nullable column needs the migration, the table and the
tests, and a new field of the same name in the domain when the gateway uses it.
"""
from __future__ import annotations

import dataclasses
import enum
import operator
import typing
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from gateway.domain.entitlements import Grant
from gateway.domain.events import Event
from gateway.domain.model import NO_REVOCATIONS, Revocations, Snapshot, Subscription
from gateway.domain.terms import Term

from . import tables

Reader = Callable[[Any], Any]


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _reader(table: sa.Table, record: type, name: str) -> Reader | None:
    """How column ``name`` is read back into the field: a time in UTC, an enum from its
    value, anything else as it is (``None``)."""
    if isinstance(table.c[name].type, sa.DateTime):
        return utc
    kind = typing.get_type_hints(record).get(name)
    return _member(kind) if isinstance(kind, type) and issubclass(kind, enum.Enum) else None


def _member(kind: type[enum.Enum]) -> Reader:
    """``kind(value)``, the known values found in a dict (an Enum call costs more than the
    rest of a row; the entitlement read makes one per row)."""
    members = {member.value: member for member in kind}
    return lambda value: members[value] if value in members else kind(value)


class _Carried:
    """The columns of ``table`` named like a field of ``record``: read into the fields'
    values, and written from them."""

    def __init__(self, table: sa.Table, record: type, besides: tuple[str, ...] = ()) -> None:
        fields = [f.name for f in dataclasses.fields(record)]
        self.names = tuple(c.name for c in table.c if c.name in fields and c.name not in besides)
        self._get = operator.attrgetter(*self.names)
        readers = ((name, _reader(table, record, name)) for name in self.names)
        self._readers = tuple((name, read) for name, read in readers if read is not None)
        self._enums = tuple(name for name, read in self._readers if read is not utc)

    def read(self, row) -> dict[str, Any]:
        values = self._values(row)
        for name, read in self._readers:
            values[name] = read(values[name])
        return values

    def written(self, record) -> dict[str, Any]:
        values = self._values(record)
        for name in self._enums:
            values[name] = values[name].value
        return values

    def _values(self, source) -> dict[str, Any]:
        got = self._get(source)
        return dict(zip(self.names, got if len(self.names) > 1 else (got,)))


def _unset(table: sa.Table, *written: str) -> dict[str, None]:
    """NULL for each column of ``table`` not ``written``."""
    return dict.fromkeys(c.name for c in table.c if c.name not in written)


def json_columns(table: sa.Table) -> tuple[str, ...]:
    """The JSON columns of ``table`` (a driver may have to wrap their values)."""
    return tuple(c.name for c in table.c if isinstance(c.type, sa.JSON))


# Events: every column is a field of ``Event``.
_EVENT = _Carried(tables.events, Event)
_EVENT_INSERTED = tuple(c.name for c in tables.events.c if c.name != "id")


def event(row) -> Event | None:
    return None if row is None else Event(**_EVENT.read(row))


def event_row(fields: dict[str, Any]) -> dict[str, Any]:
    """The row ``Transaction.record_events`` inserts for a delivery: received, or applied
    in the same transaction (``status``), which then counts as its first attempt."""
    row = {**dict.fromkeys(_EVENT_INSERTED), "status": "received", **fields}
    return {**row, "attempts": 0 if row["status"] == "received" else 1}


def recorded(pk: int, row: dict[str, Any]) -> Event:
    """The event ``row`` (``event_row``) became, once inserted as ``pk``."""
    return Event(id=pk, **{name: row[name] for name in _EVENT.names if name != "id"})


# Entitlements: the columns of a ``Grant``, in its fields' order (``grants`` reads them so).
GRANT_COLUMNS = tuple(f.name for f in dataclasses.fields(Grant))
_GRANT = _Carried(tables.entitlements, Grant)
_GRANT_UNSET = _unset(tables.entitlements, *_GRANT.names, "user_sub", "updated_at")
_GRANT_READERS = tuple((at, read) for at, read in enumerate(_reader(tables.entitlements, Grant, name)
                                                             for name in GRANT_COLUMNS) if read is not None)


def grants(rows) -> list[Grant]:
    """Grants from rows of ``GRANT_COLUMNS``, by position."""
    found = []
    for row in rows:
        values = list(row)
        for at, read in _GRANT_READERS:
            values[at] = read(values[at])
        found.append(Grant(*values))
    return found


def grant_row(user_sub: str, grant: Grant, now: datetime) -> dict[str, Any]:
    return {**_GRANT.written(grant), **_GRANT_UNSET, "user_sub": user_sub, "updated_at": now}


# Subscriptions: the newest snapshot's fields, then the subscription's own. The stored
# snapshot names no user: ``user_sub`` is the subscription's owner.
_SNAPSHOT = _Carried(tables.subscriptions, Snapshot, besides=("user_sub", "entitlement_terms"))
_SUBSCRIPTION = _Carried(tables.subscriptions, Subscription, besides=("revocations",))
_SUBSCRIPTION_UNSET = _unset(tables.subscriptions, *_SNAPSHOT.names, *_SUBSCRIPTION.names, "user_sub",
                             "entitlement_names", "entitlement_terms", "derived_as_of", "revocations", "updated_at")


def subscription_row(subscription: Subscription, now: datetime) -> dict[str, Any]:
    latest = subscription.latest
    return {
        **_SNAPSHOT.written(latest), **_SUBSCRIPTION.written(subscription), **_SUBSCRIPTION_UNSET,
        "user_sub": subscription.owner,
        "entitlement_names": list(latest.entitlements) if latest.entitlements is not None else None,
        "entitlement_terms": _terms_json(latest.entitlement_terms), "derived_as_of": latest.as_of,
        "revocations": _revocations_json(subscription.revocations), "updated_at": now,
    }


def subscription(row) -> Subscription | None:
    if row is None:
        return None
    names, carried = row.entitlement_names, _SNAPSHOT.read(row)
    derived = row.derived_as_of is None or utc(row.derived_as_of) == carried["as_of"]
    if not derived:  # written since by a release that knew neither (``derived_as_of``)
        carried["period_id"] = carried["shown_as_of"] = None
    snapshot = Snapshot(**carried, user_sub=None, entitlement_terms=_terms(row.entitlement_terms) if derived else None,
                        entitlements=tuple(names) if names is not None else None)
    return Subscription(snapshot, owner=row.user_sub, revocations=_revocations(row.revocations),
                        **_SUBSCRIPTION.read(row))


# Identities: an account's link to a user.
_IDENTITY_UNSET = _unset(tables.identities, "source", "account", "user_sub", "as_of", "created_at")


def identity_row(source: str, account: str, user_sub: str, as_of: datetime | None, now: datetime) -> dict[str, Any]:
    return {**_IDENTITY_UNSET, "source": source, "account": account, "user_sub": user_sub, "as_of": as_of,
            "created_at": now}


def _terms_json(terms: tuple[Term, ...] | None) -> dict | None:
    return {term.name: {"end": term.expires_at.isoformat() if term.expires_at else None, "renews": term.will_renew,
                        "product": term.product_id} for term in terms or ()} or None


def _terms(value: dict | None) -> tuple[Term, ...] | None:
    return tuple(sorted((_term(name, held) for name, held in (value or {}).items()), key=lambda term: term.name)) or None


def _term(name: str, held: dict) -> Term:
    end = held["end"]
    return Term(name, held["product"], utc(datetime.fromisoformat(end)) if end else None, held["renews"])


def _revocations_json(revocations: Revocations) -> dict | None:
    if revocations == NO_REVOCATIONS:
        return None
    # [cause, end] or, where the store named the payment, [cause, end, payment id]
    taken = ([cause, end.isoformat() if end else None, *([period_id] if period_id else [])]
             for cause, end, period_id in revocations.taken)
    # "shown": {cause: stamp}, apart from "taken", whose items a release before it reads
    # by position; one that rewrites the row drops it, and the cause is final again.
    shown = {cause: at.isoformat() for cause, at in revocations.shown}
    return {"taken": sorted(taken, key=lambda item: (item[0], item[1] or "", item[2:])),
            "given_back": sorted(revocations.given_back), **({"shown": shown} if shown else {})}


def _revocations(value: dict | None) -> Revocations:
    if not value:
        return NO_REVOCATIONS
    return Revocations(
        frozenset((cause, utc(datetime.fromisoformat(end)) if end else None, period[0] if period else None)
                  for cause, end, *period in value["taken"]),
        frozenset(value["given_back"]),
        frozenset((cause, utc(datetime.fromisoformat(at))) for cause, at in value.get("shown", {}).items()))
