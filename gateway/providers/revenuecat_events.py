"""RevenueCat webhooks: shared-secret ``Authorization`` header, one event per delivery.

Wire format: https://www.revenuecat.com/docs/integrations/webhooks/event-types-and-fields
Body ``{"api_version": "1.0", "event": {...}}``; a retry carries the same ``event.id``.
RevenueCat counts only HTTP 200 as delivered.
"""
from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import datetime

import marshmallow as ma

from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Transfer, Translation, ignored
from gateway.domain.deletion import ANONYMOUS_APP_USER
from gateway.domain.events import Event
from gateway.domain.model import Snapshot, Status
from gateway.errors import Malformed, NotConfigured, Unauthorized
from gateway.providers import Delivery, Lookup, wire

SOURCE = "revenuecat"

# Types that grant until expiration_at_ms, with whether they renew by themselves.
_GRANTING = {
    "INITIAL_PURCHASE": True, "RENEWAL": True, "UNCANCELLATION": True,
    "SUBSCRIPTION_EXTENDED": True, "REFUND_REVERSED": True,
    "NON_RENEWING_PURCHASE": False, "TEMPORARY_ENTITLEMENT_GRANT": False,
}
_STATE_TYPES = set(_GRANTING) | {"CANCELLATION", "BILLING_ISSUE", "SUBSCRIPTION_PAUSED", "EXPIRATION"}


# Each string that reaches a column is held to that column's length (gateway/store/tables.py),
# so that SQLite, which does not enforce lengths, refuses what PostgreSQL would.
_ID, _NAME, _ENVIRONMENT = ma.validate.Length(max=255), ma.validate.Length(max=128), ma.validate.Length(max=32)


def _text(size: ma.validate.Length = _ID) -> ma.fields.String:
    return ma.fields.String(load_default=None, allow_none=True, validate=size)


def _texts(size: ma.validate.Length = _ID, default=list) -> ma.fields.List:
    return ma.fields.List(ma.fields.String(validate=size), load_default=default, allow_none=True)


class _EventSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    type = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    event_timestamp_ms = ma.fields.Integer(load_default=None, allow_none=True, strict=True)
    app_user_id = _text()  # the subscription's account, and maybe its owner
    original_app_user_id = _text()
    aliases = _texts()  # each one linked to the owner
    product_id = _text()
    # Absent from an older payload, null where the product maps to no entitlement: which of
    # the two it is matters (``_entitlement_names``), so neither gets a default.
    entitlement_ids = ma.fields.List(ma.fields.String(validate=_NAME), allow_none=True)
    entitlement_id = ma.fields.String(allow_none=True, validate=_NAME)  # deprecated
    expiration_at_ms = ma.fields.Integer(load_default=None, allow_none=True, strict=True)
    grace_period_expiration_at_ms = ma.fields.Integer(load_default=None, allow_none=True, strict=True)
    original_transaction_id = _text()  # the subscription's key
    transaction_id = _text()
    environment = _text(_ENVIRONMENT)
    store = _text(_ENVIRONMENT)  # APP_STORE, PLAY_STORE, STRIPE, ...: the store under RevenueCat
    cancel_reason = ma.fields.String(load_default=None, allow_none=True)
    expiration_reason = ma.fields.String(load_default=None, allow_none=True)
    transferred_from = _texts()
    transferred_to = _texts()  # the new owner


_EVENT_SCHEMA = _EventSchema()  # built once: a schema holds no state between loads


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else wire.from_millis(ms, "a RevenueCat *_ms field", code="malformed_event")


def is_anonymous(app_user_id: str | None) -> bool:
    return not app_user_id or app_user_id.startswith(ANONYMOUS_APP_USER)


def _owner(event: dict) -> str | None:
    """The Cognito sub: the first id that is not an anonymous RevenueCat id."""
    candidates = [event["app_user_id"], event["original_app_user_id"], *(event["aliases"] or [])]
    return next((c for c in candidates if not is_anonymous(c)), None)


class RevenueCatEvents:
    source = SOURCE
    translates_offline = True

    def __init__(self, accepted_auth: tuple[str, ...], catalog: Catalog) -> None:
        self.accepted = [value.encode() for value in accepted_auth]
        self.catalog = catalog

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Delivery:
        if not self.accepted:
            raise NotConfigured("RevenueCat is not configured (REVENUECAT_WEBHOOK_AUTH)")
        given = (headers.get("Authorization") or "").encode()
        # Compare against every accepted value, so timing says nothing about which matched.
        matched = [hmac.compare_digest(given, value) for value in self.accepted]
        if not given or not any(matched):
            raise Unauthorized("the Authorization header does not match", code="invalid_authorization")
        raw = _parse(body)
        event = _load(raw)
        translation = self.translate_event(event)  # one that cannot apply is refused unstored
        return Delivery(SOURCE, event["id"], event["type"], body.decode("utf-8"), raw, translation)

    def translate(self, event: Event, lookup: Lookup) -> Translation:
        return self.translate_event(_load(event.data))

    def translate_event(self, event: dict) -> Translation:
        kind = event["type"]
        if kind == "TRANSFER":
            return self._transfer(event)
        if kind == "PRODUCT_CHANGE":
            # "Does not mean the new subscription is in effect immediately": its product_id
            # and expiration_at_ms are the old product's. An immediate change comes with a
            # RENEWAL of the new product, a change at period end with the next RENEWAL.
            return _ignored("PRODUCT_CHANGE announces a change; the RENEWAL that makes it carries the state", event)
        if kind not in _STATE_TYPES:
            return _ignored(f"{kind} carries no subscription state", event)
        if kind == "CANCELLATION" and event["cancel_reason"] == "BILLING_ERROR":
            # Sent beside BILLING_ISSUE, whose grace period keeps access; its expiration_at_ms
            # is the end of the period that failed to renew. EXPIRATION ends access.
            return _ignored("CANCELLATION for BILLING_ERROR: the BILLING_ISSUE carries the state", event)
        return self._snapshot(event)

    def _snapshot(self, event: dict) -> Translation:
        key = event["original_transaction_id"] or event["transaction_id"]
        as_of = _time(event["event_timestamp_ms"])
        if not key or as_of is None or not event["app_user_id"]:
            raise Malformed(f"{event['type']} needs original_transaction_id, app_user_id and event_timestamp_ms")
        owner = _owner(event)
        status, expires_at, will_renew = self._state(event)
        ids = _entitlement_names(event)
        snapshot = Snapshot(
            source=SOURCE, key=key, as_of=as_of, status=status, product_id=event["product_id"],
            expires_at=expires_at, will_renew=will_renew, user_sub=owner,
            account=event["app_user_id"], environment=event["environment"], store=event["store"],
            raw_status=_raw_status(event),
            entitlements=self.catalog.map_names(SOURCE, ids) if ids is not None else None,
            **_revocation(event, status),
        )
        aliases = {a for a in [event["app_user_id"], event["original_app_user_id"], *(event["aliases"] or [])] if a}
        links = tuple(Link(SOURCE, alias, owner, as_of) for alias in sorted(aliases) if owner and alias != owner)
        return Translation(snapshots=(snapshot,), links=links, transferable=True)

    @staticmethod
    def _state(event: dict) -> tuple[Status, datetime | None, bool]:
        kind, expires_at = event["type"], _time(event["expiration_at_ms"])
        if kind in _GRANTING:
            return Status.ACTIVE, expires_at, _GRANTING[kind]
        if kind == "CANCELLATION":
            if event["cancel_reason"] == "CUSTOMER_SUPPORT":  # a refund: access ends now
                return Status.REVOKED, expires_at, False
            return Status.ACTIVE, expires_at, False
        if kind == "BILLING_ISSUE":
            grace_end = _time(event["grace_period_expiration_at_ms"])
            if grace_end is not None:
                return Status.GRACE_PERIOD, grace_end, True
            return Status.BILLING_RETRY, expires_at, True
        if kind == "SUBSCRIPTION_PAUSED":  # pauses at the end of the period, not before
            return Status.ACTIVE, expires_at, False
        if event["expiration_reason"] == "SUBSCRIPTION_PAUSED":
            return Status.PAUSED, expires_at, False
        return Status.EXPIRED, expires_at, False

    @staticmethod
    def _transfer(event: dict) -> Translation:
        as_of = _time(event["event_timestamp_ms"])
        sources, targets = event["transferred_from"] or [], event["transferred_to"] or []
        if as_of is None or not sources or not targets:
            raise Malformed("TRANSFER needs transferred_from, transferred_to and event_timestamp_ms")
        # An anonymous target still takes the access away from the old user, and
        # gives it to nobody until the app logs a user in (an alias then links it).
        to_user = next((t for t in targets if not is_anonymous(t)), None)
        # A restore moves what the store account on the device bought ("content previously
        # purchased from the same store account"), of the store and environment it names.
        return Translation(transfers=(Transfer(SOURCE, tuple(sources), to_user, as_of, event["store"],
                                               event["environment"]),))


def _ignored(reason: str, event: dict) -> Translation:
    """Nothing to apply; the user and the app user ids named (a deleted user's are erased)."""
    ids = [event["app_user_id"], event["original_app_user_id"], *(event["aliases"] or [])]
    return ignored(reason, [_owner(event)], [(SOURCE, i) for i in ids])


def _entitlement_names(event: dict) -> list[str] | None:
    """What RevenueCat says the purchase grants: exactly ``entitlement_ids``, none where it
    is null or empty (a consumable, a product mapped to no entitlement). Only a payload
    without it falls back to the deprecated ``entitlement_id``, and one with neither to
    the catalog (``None``)."""
    if "entitlement_ids" in event:
        return event["entitlement_ids"] or []
    if "entitlement_id" in event:
        return [event["entitlement_id"]] if event["entitlement_id"] else []
    return None


def _revocation(event: dict, status: Status) -> dict:
    """A refund (``CANCELLATION`` for ``CUSTOMER_SUPPORT``) takes back the period of the
    transaction it refunded; ``REFUND_REVERSED`` gives that transaction's period back."""
    cause = f"refunded:{event['transaction_id'] or event['original_transaction_id']}"
    if status is Status.REVOKED:
        return {"revokes": cause}
    if event["type"] == "REFUND_REVERSED":
        return {"restores": cause}
    return {}


def _raw_status(event: dict) -> str:
    reason = event["cancel_reason"] or event["expiration_reason"]
    return (f"{event['type']}:{reason}" if reason else event["type"])[:64]  # a label, held to its column


def _parse(body: bytes) -> dict:
    document = wire.parse_object(body)
    if not isinstance(document.get("event"), dict):
        raise Malformed('the body must be {"api_version", "event": {...}}', code="malformed_event")
    return document["event"]


def _load(event: dict) -> dict:
    try:
        return _EVENT_SCHEMA.load(event)
    except ma.ValidationError as exc:
        raise Malformed(f"invalid event: {exc.messages}", code="malformed_event") from None


def build(settings, catalog: Catalog) -> RevenueCatEvents:
    return RevenueCatEvents(settings.revenuecat_webhook_auth, catalog)
