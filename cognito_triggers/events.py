"""Read-only views of the Cognito trigger events the handlers act on.

Shapes: https://docs.aws.amazon.com/cognito/latest/developerguide/cognito-user-pools-working-with-lambda-triggers.html
(common fields), user-pool-lambda-post-confirmation.html and
user-pool-lambda-pre-token-generation.html (request and response parameters).
"""
from __future__ import annotations

from dataclasses import dataclass, field


def user_attributes(event: dict) -> dict[str, str]:
    return (event.get("request") or {}).get("userAttributes") or {}


@dataclass(frozen=True)
class ConfirmedUser:
    pool_id: str
    username: str
    sub: str
    email: str | None = None
    name: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: dict) -> "ConfirmedUser":
        attributes = user_attributes(event)
        return cls(pool_id=event["userPoolId"], username=event["userName"], sub=attributes["sub"],
                   email=attributes.get("email"), name=display_name(attributes), attributes=attributes)


def display_name(attributes: dict[str, str]) -> str | None:
    """``name`` when the pool collects it, else given and family names joined."""
    if attributes.get("name"):
        return attributes["name"]
    parts = [attributes.get("given_name"), attributes.get("family_name")]
    return " ".join(part for part in parts if part) or None
