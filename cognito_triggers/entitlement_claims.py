"""Token claims from the gateway's entitlements answer, merged into a pre token generation event.

Event shapes: https://docs.aws.amazon.com/cognito/latest/developerguide/user-pool-lambda-pre-token-generation.html
- version "1": ``response.claimsOverrideDetails.claimsToAddOrOverride`` (ID token only);
- versions "2" and "3": ``response.claimsAndScopeOverrideDetails`` with ``idTokenGeneration``
  and ``accessTokenGeneration``, each with its own ``claimsToAddOrOverride``.
Claim values are strings so that the same claims work in every version.
"""
from __future__ import annotations

ACCESS_TOKEN_VERSIONS = ("2", "3")


def claims_for(answer: dict) -> dict[str, str]:
    """``premium``, ``entitlements`` (active names, space-separated) and ``premium_until``."""
    entitlements = answer.get("entitlements")
    if not isinstance(entitlements, dict) or not all(isinstance(g, dict) for g in entitlements.values()):
        raise ValueError("the gateway's answer has no entitlements object")  # claims must be right or absent
    active = sorted(name for name, grant in entitlements.items() if grant.get("active") is True)
    premium = entitlements.get("premium") or {}
    is_premium = answer.get("is_premium")
    if not isinstance(is_premium, bool):
        is_premium = bool(active)
    # A lapsed grant's expiry is history, not a promise: only an active one sets premium_until.
    until = premium.get("expires_at") if premium.get("active") is True else None
    # Cognito takes only string claim values here (version 1 events): never anything else.
    return {"premium": "true" if is_premium else "false", "entitlements": " ".join(active),
            "premium_until": until if isinstance(until, str) else ""}


def add_claims(event: dict, claims: dict[str, str]) -> dict:
    """Add ``claims`` to the event's response, keeping whatever overrides it already holds."""
    response = _child(event, "response")
    if str(event.get("version")) in ACCESS_TOKEN_VERSIONS:
        details = _child(response, "claimsAndScopeOverrideDetails")
        for token in ("idTokenGeneration", "accessTokenGeneration"):
            _child(_child(details, token), "claimsToAddOrOverride").update(claims)
    else:
        _child(_child(response, "claimsOverrideDetails"), "claimsToAddOrOverride").update(claims)
    return event


def _child(parent: dict, key: str) -> dict:
    """``parent[key]``, made a dict if Cognito sent it missing or null."""
    if not isinstance(parent.get(key), dict):
        parent[key] = {}
    return parent[key]
