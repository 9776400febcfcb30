"""A Stripe webhook delivery, verified on its raw body, then parsed.

Signatures: https://docs.stripe.com/webhooks#verify-events. ``Stripe-Signature`` is
``t=<unix time>,v1=<HMAC-SHA256 of f"{t}.{body}">``; stripe-python checks it in constant
time with a 300 s tolerance. Each secret of STRIPE_WEBHOOK_SECRETS is tried, so a secret
can be rolled without downtime. Since stripe-python 15 its Event is no longer a dict, so
the verified text is parsed here with ``json``.
"""
from __future__ import annotations

import logging

import stripe

from gateway.errors import Malformed, Unauthorized
from gateway.providers import stripe_objects
from gateway.providers import wire
from gateway.providers.stripe_api import PINNED_VERSION

TOLERANCE = 300
log = logging.getLogger("gateway.stripe")
_seen_versions: set[str] = set()


def verified_text(body: bytes, header: str | None, secrets: tuple[str, ...]) -> str:
    """The body as text, if one of ``secrets`` signed it within the tolerance."""
    if not header:
        raise Unauthorized("the Stripe-Signature header is missing", code="missing_signature")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:  # Stripe signs UTF-8 text; these bytes are not it
        raise Unauthorized("the body is not UTF-8 text", code="invalid_signature") from None
    errors = []
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, TOLERANCE)
            return text
        except stripe.SignatureVerificationError as exc:
            errors.append(str(exc.user_message or exc))
    stale = [error for error in errors if "tolerance" in error]
    raise Unauthorized((stale or errors)[-1], code="stale_signature" if stale else "invalid_signature")


def parse(text: str, acted_on: frozenset[str]) -> dict:
    """The event, refused as malformed unless it has the fields every event has
    (https://docs.stripe.com/api/events/object), and an object id for types we act on."""
    event = wire.parse_object(text)
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not (isinstance(obj, dict) and _text(event.get("id")) and _text(event.get("type"))
            and isinstance(event.get("created"), int)):
        raise Malformed("a Stripe event needs id, type, created and data.object", code="malformed_event")
    wire.from_seconds(event["created"], "created", code="malformed_event")
    if event["type"] in acted_on:
        if not _text(obj.get("id")):
            raise Malformed(f"{event['type']} needs data.object.id", code="malformed_event")
        _check_object(obj)
    note_api_version(event)
    return event


def _check_object(obj: dict) -> None:
    """Refuse, before it is stored, an object whose ids or times no column or datetime can
    hold (gateway/store/tables.py): SQLite would keep a long value that PostgreSQL refuses."""
    ids = [obj.get("id"), obj.get("client_reference_id"), stripe_objects.cognito_sub(obj)]
    ids += [stripe_objects.ref(obj.get(name)) for name in ("customer", "subscription", "invoice", "charge", "payment_intent")]
    ids += [i for item in stripe_objects._items(obj) for i in stripe_objects._product_ids(item)]  # noqa: SLF001 (same source's reader)
    if any(isinstance(value, str) and len(value) > 255 for value in ids):
        raise Malformed("an id of data.object is longer than 255 characters", code="malformed_event")
    status = obj.get("status")
    if not (status is None or isinstance(status, str) and len(status) <= 64):
        raise Malformed("data.object.status must be a string of at most 64 characters", code="malformed_event")
    stripe_objects.expires_at(obj)  # these raise Malformed for a time out of range
    stripe_objects.period_id(obj)


def note_api_version(event: dict) -> None:
    """Log once per version and process when an endpoint renders events in another API
    version than the one we pin: both shapes are read, but the drift is worth knowing.
    https://docs.stripe.com/webhooks/versioning"""
    version = event.get("api_version")
    if isinstance(version, str) and version and version != PINNED_VERSION and version not in _seen_versions:
        _seen_versions.add(version)
        log.warning("Stripe event API version differs from the pinned version", extra={"fields": {
            "event_id": event["id"], "api_version": version, "pinned": PINNED_VERSION}})


def _text(value) -> bool:
    return isinstance(value, str) and bool(value)
