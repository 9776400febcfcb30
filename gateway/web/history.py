"""``GET /v1/users/<sub>/history``: a user's entitlements, the store subscriptions behind
them and the deliveries that produced them (API key, like the entitlement read)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from gateway.clock import utcnow
from gateway.domain.entitlements import iso
from gateway.domain.events import Event
from gateway.errors import Unavailable
from gateway.explain import MAX_DELIVERIES, Explanation, Holding, explain
from gateway.store.port import MAX_ROW_ID, StoreUnavailable
from gateway.web.presenters import entitlements_answer
from gateway.web.queries import query_number

bp = Blueprint("history", __name__)


@bp.get("/v1/users/<user_sub>/history")
def of_user(user_sub: str):
    services = current_app.extensions["gateway"]
    services.api_keys.check(request.headers.get("Authorization"))
    limit = query_number("limit", 100, 1, MAX_DELIVERIES)
    before = query_number("before", None, 1, MAX_ROW_ID)
    now = utcnow()
    try:
        found = explain(services.store, services.catalog, user_sub, now, before_pk=before, limit=limit)
    except StoreUnavailable as exc:
        raise Unavailable("history cannot be read right now", code="store_unavailable") from exc
    return jsonify(history_answer(found, now))


def history_answer(found: Explanation, now) -> dict:
    return {
        **entitlements_answer(found.user_sub, found.grants, now),
        "subscriptions": [subscription_view(h) for h in found.holdings],
        "deliveries": [delivery_view(e, found.links.get(e.id, [])) for e in found.deliveries],
        "next_before": found.next_before,
    }


def subscription_view(holding: Holding) -> dict:
    sub, s = holding.subscription, holding.subscription.snapshot
    return {
        "source": s.source, "key": s.key, "status": s.status.value, "raw_status": s.raw_status,
        "product_id": s.product_id, "expires_at": iso(s.expires_at), "will_renew": s.will_renew,
        "as_of": iso(s.as_of), "environment": s.environment, "owner_as_of": iso(sub.owner_as_of),
        "entitlements": list(holding.names), "chosen_for": list(holding.chosen_for),
        "explanation": holding.verdict, "evidence": list(holding.evidence),
    }


def delivery_view(event: Event, keys: list[tuple[str, str]]) -> dict:
    return {
        "id": event.id, "source": event.source, "event_id": event.event_id, "type": event.event_type,
        "status": event.status, "received_at": iso(event.received_at), "attempts": event.attempts,
        "last_error": event.last_error, "processed_at": iso(event.processed_at),
        "subscriptions": [{"source": source, "key": key} for source, key in keys],
    }
