"""One adapter per provider: verify a delivery on its raw bytes, then translate it.

Every adapter offers the ``Provider`` contract below. ``verify`` guarantees that what it
returns came from the provider and is well formed; ``translate`` turns a stored event
into the changes to apply (and may fetch the authoritative state from the store's API).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from gateway.domain.changes import Translation
from gateway.domain.events import Event
from gateway.domain.model import Snapshot, Subscription


@dataclasses.dataclass(frozen=True)
class Delivery:
    """A verified, well-formed delivery, ready to be recorded."""

    source: str
    event_id: str
    event_type: str
    payload: str
    data: Any
    #: What applying it changes, when the delivery alone tells (``translates_offline``).
    translation: Translation | None = None


class Lookup(Protocol):
    """Read access to what the gateway already knows, for translation decisions."""

    def subscription(self, source: str, key: str) -> Subscription | None: ...

    def resolve(self, source: str, account: str) -> str | None: ...


class Provider(Protocol):
    source: str
    #: True when ``translate`` needs no store API: the delivery is then recorded and
    #: applied in one transaction.
    translates_offline: bool

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Delivery:
        """Raise ``NotConfigured``, ``Unauthorized`` or ``Malformed``, or return the delivery."""

    def translate(self, event: Event, lookup: Lookup) -> Translation:
        """Raise ``StoreApiError`` when a store API fails; ``Malformed`` when the event cannot apply."""


__all__ = ["Delivery", "Lookup", "Provider", "Snapshot"]
