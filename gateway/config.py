"""Settings, read once from the environment (and a ``.env`` file) and validated.

Each variable is documented in the README; a bad value stops the start with an error
that names the variable.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from cognito_triggers.settings import DEFAULT_ATTRIBUTE as DEFAULT_STRIPE_ATTRIBUTE

DEFAULT_DATABASE_URL = "sqlite:///instance/gateway.db"
MAX_ENTITLEMENT_CACHE_SECONDS = 300
#: The entitlement cache's backstop where the database announces every change (PostgreSQL):
#: a worker hears of a change at once, and reads a user it holds again after this long anyway.
DEFAULT_ENTITLEMENT_CACHE_SECONDS = 60
#: A delivery recorded this long ago and never applied was abandoned mid-request (a crash).
DEFAULT_EVENTS_STALE_AFTER_SECONDS = 120
#: Days a finished delivery stays in the event log (EVENTS_RETENTION_DAYS; 0: forever).
#: The least accepted is the longest a store may deliver an event again on its own: Google
#: Pub/Sub keeps a message, and retries or replays it, up to 31 days after publishing
#: (https://cloud.google.com/pubsub/docs/subscription-properties), beyond Stripe's three
#: days of retries and 30 days of resendable events (https://docs.stripe.com/webhooks/process-undelivered-events),
#: Apple's five retries over about a week (https://developer.apple.com/documentation/appstoreservernotifications/responding-to-app-store-server-notifications)
#: and RevenueCat's five over 2.5 hours (https://www.revenuecat.com/docs/integrations/webhooks).
#: Inside it a redelivery is answered ``duplicate`` from the log; see gateway/jobs/retention.py.
DEFAULT_EVENTS_RETENTION_DAYS, MIN_EVENTS_RETENTION_DAYS = 90, 31
#: Days an entitlement event stays in the feed (FEED_RETENTION_DAYS; 0: forever). An event an
#: outgoing webhook still owes is kept whatever its age, so the least accepted guards the pull
#: readers: a reader down as long as the webhooks are retried (three days, CONTRACT.md) keeps
#: its cursor more than twice over, a week-long outage included; past it, it gets 410
#: ``cursor_expired`` and resyncs (gateway/jobs/retention.py).
DEFAULT_FEED_RETENTION_DAYS, MIN_FEED_RETENTION_DAYS = 90, 7
#: Requests a second reconcile may send to each store's API (RECONCILE_RATE_<SOURCE>): about
#: 80% of the documented limit, leaving the rest to the webhooks' own fetches. Stripe: 25 a
#: second per endpoint (https://docs.stripe.com/rate-limits); App Store Server API: Get All
#: Subscription Statuses 50 a second in Production, 10% of that in Sandbox
#: (https://developer.apple.com/documentation/appstoreserverapi/identifying-rate-limits);
#: Google Play: 3,000 queries a minute per bucket (https://developers.google.com/android-publisher/quotas);
#: RevenueCat publishes its limits per endpoint in response headers only: 480 a minute is cautious.
DEFAULT_RECONCILE_RATES = {"stripe": 20.0, "apple": 40.0, "google": 40.0, "revenuecat": 8.0}
#: The longest Billing Grace Period App Store Connect offers (3, 16 or 28 days).
MAX_APPLE_GRACE_PERIOD_DAYS = 28
#: The levels LOG_LEVEL takes (the standard library's names; WARN and FATAL are its aliases).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    api_keys: tuple[str, ...] = ()
    catalog_path: str | None = None
    max_body_bytes: int = 1_048_576
    cognito_user_pool_id: str | None = None
    cognito_region: str | None = None
    cognito_app_client_ids: tuple[str, ...] = ()
    cognito_jwks_url: str | None = None
    cognito_jwks_refresh_cooldown: int = 30
    stripe_api_key: str | None = None
    stripe_webhook_secrets: tuple[str, ...] = ()
    stripe_api_base: str | None = None
    apple_bundle_id: str | None = None
    apple_app_apple_id: int | None = None
    apple_environments: tuple[str, ...] = ("Production", "Sandbox")
    apple_root_certs: tuple[str, ...] = ()
    apple_online_checks: bool = False
    apple_issuer_id: str | None = None
    apple_key_id: str | None = None
    apple_private_key: str | None = None
    apple_api_base: str | None = None
    # The app's Billing Grace Period in days (App Store Connect: 3, 16 or 28), assumed when the App
    # Store says a subscription is in its grace period without its end date (apple_state._grace_end).
    apple_grace_period_days: int = 3
    google_package_name: str | None = None
    google_pubsub_audience: str | None = None
    google_pubsub_service_account: str | None = None
    google_oidc_certs_url: str | None = None
    google_service_account_json: str | None = None
    google_play_access_token: str | None = None
    google_play_api_base: str | None = None
    revenuecat_webhook_auth: tuple[str, ...] = ()
    revenuecat_api_key: str | None = None
    revenuecat_api_base: str | None = None
    log_level: str = "INFO"
    # Bearer token that /metrics requires (unset: /metrics disabled); out of repr so a logged Settings leaks nothing.
    metrics_token: str | None = dataclasses.field(default=None, repr=False)
    # Milliseconds a worker's request samples may wait before they reach the metrics files (gateway/metrics_batch.py).
    metrics_flush_ms: int = 1000
    # The admin pages (gateway/web/admin.py); kept out of repr so a logged Settings leaks nothing.
    admin_password: str | None = dataclasses.field(default=None, repr=False)
    admin_secret_key: str | None = dataclasses.field(default=None, repr=False)
    admin_cookie_secure: str = "auto"  # "true", "false", or "auto": Secure when served over https
    # Proxies in front of the app (Heroku's router: 1) whose X-Forwarded-For/-Proto are trusted.
    forwarded_hops: int = 0
    # Seconds an entitlement read may be answered from a worker's memory (gateway/store/cache.py); 0:
    # never. None: DEFAULT_ENTITLEMENT_CACHE_SECONDS where the database announces changes, else 0.
    entitlement_cache_seconds: int | None = None
    # Seconds after which the retry worker (gateway/jobs/retry.py) takes a delivery recorded but
    # never applied for abandoned; above gunicorn's timeout, or live requests get retried too.
    events_stale_after_seconds: int = DEFAULT_EVENTS_STALE_AFTER_SECONDS
    # Days finished deliveries (and delivered outgoing webhooks, RevenueCat transfers) are kept
    # (gateway/jobs/retention.py); 0: forever.
    events_retention_days: int = DEFAULT_EVENTS_RETENTION_DAYS
    # Days entitlement events stay in the feed (gateway/jobs/retention.py); 0: forever.
    feed_retention_days: int = DEFAULT_FEED_RETENTION_DAYS
    # The Cognito attribute that holds the Stripe customer id (the backfill job; the Lambda
    # triggers read their own COGNITO_STRIPE_ATTRIBUTE, see cognito_triggers/settings.py).
    cognito_stripe_attribute: str = DEFAULT_STRIPE_ATTRIBUTE
    # Outgoing webhooks (gateway/outbound): the JSON list of endpoints, kept out of repr since
    # it holds their secrets; private and link-local targets refused unless allowed.
    outbound_webhooks: str | None = dataclasses.field(default=None, repr=False)
    outbound_allow_private_targets: bool = False
    outbound_timeout_seconds: int = 10
    # Sign a user out of Cognito everywhere when an entitlement of theirs is revoked.
    cognito_sign_out_on_revoke: bool = False
    # Requests a second reconcile sends to each store's API (gateway/jobs/reconcile_http.py).
    reconcile_rate_stripe: float = DEFAULT_RECONCILE_RATES["stripe"]
    reconcile_rate_apple: float = DEFAULT_RECONCILE_RATES["apple"]
    reconcile_rate_google: float = DEFAULT_RECONCILE_RATES["google"]
    reconcile_rate_revenuecat: float = DEFAULT_RECONCILE_RATES["revenuecat"]

    @property
    def cognito_issuer(self) -> str | None:
        if not (self.cognito_user_pool_id and self.cognito_region):
            return None
        return f"https://cognito-idp.{self.cognito_region}.amazonaws.com/{self.cognito_user_pool_id}"

    @property
    def cognito_jwks(self) -> str | None:
        issuer = self.cognito_issuer
        return self.cognito_jwks_url or (f"{issuer}/.well-known/jwks.json" if issuer else None)


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _int(env: Mapping[str, str], name: str, default: int | None, minimum: int = 1,
         maximum: int | None = None) -> int | None:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (_text(env, name) or "").lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    """Requests a second from ``50``, ``50/s``, ``3000/min`` or ``3600/h``."""
    raw = _text(env, name)
    if raw is None:
        return default
    count, _, unit = raw.replace(" ", "").partition("/")
    try:
        rate = float(count) / _PER[unit.lower() or "s"]
    except (ValueError, KeyError):
        raise ConfigError(f"{name} must be a rate such as 50/s, 3000/min or 3600/h, got {raw!r}") from None
    if not rate > 0 or rate == float("inf"):
        raise ConfigError(f"{name} must be above zero, got {raw!r}")
    return rate


def database_url(raw: str | None) -> str:
    url = raw or DEFAULT_DATABASE_URL
    if url.startswith("postgres://"):  # Heroku's spelling
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):  # the driver we ship
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not url.startswith(("sqlite", "postgresql")):
        raise ConfigError(f"DATABASE_URL must be a PostgreSQL or SQLite URL, got scheme {url.split(':')[0]!r}")
    return url


def _check(settings: Settings) -> Settings:
    for secret in settings.stripe_webhook_secrets:
        if not secret.startswith("whsec_"):
            raise ConfigError("STRIPE_WEBHOOK_SECRETS must hold whsec_... secrets")
    unknown = set(settings.apple_environments) - {"Production", "Sandbox", "Xcode", "LocalTesting"}
    if unknown:
        raise ConfigError(f"APPLE_ENVIRONMENTS has unknown environments: {', '.join(sorted(unknown))}")
    if settings.apple_grace_period_days > MAX_APPLE_GRACE_PERIOD_DAYS:
        raise ConfigError(f"APPLE_GRACE_PERIOD_DAYS must be at most {MAX_APPLE_GRACE_PERIOD_DAYS}, the longest "
                          f"Billing Grace Period Apple offers, got {settings.apple_grace_period_days}")
    if bool(settings.cognito_user_pool_id) != bool(settings.cognito_region):
        raise ConfigError("COGNITO_USER_POOL_ID and COGNITO_REGION must be set together")
    if settings.cognito_sign_out_on_revoke and not settings.cognito_user_pool_id:
        raise ConfigError("COGNITO_SIGN_OUT_ON_REVOKE needs COGNITO_USER_POOL_ID and COGNITO_REGION")
    if settings.cognito_user_pool_id and not settings.cognito_app_client_ids:
        raise ConfigError("COGNITO_APP_CLIENT_IDS must list the app clients whose tokens are accepted")
    if settings.admin_password and len(settings.admin_secret_key or "") < 32:
        # Sessions must verify in every gunicorn worker and survive restarts, so the key
        # is configured, never random per process, nor derived from a guessable password.
        raise ConfigError("ADMIN_SECRET_KEY of at least 32 characters is required when ADMIN_PASSWORD is set")
    if settings.log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {settings.log_level!r}")
    if settings.admin_cookie_secure not in ("auto", "true", "false"):
        raise ConfigError("ADMIN_COOKIE_SECURE must be auto, true or false")
    if (settings.entitlement_cache_seconds or 0) > MAX_ENTITLEMENT_CACHE_SECONDS:
        raise ConfigError(f"ENTITLEMENT_CACHE_SECONDS must be at most {MAX_ENTITLEMENT_CACHE_SECONDS} "
                          "(a refund must not go unseen for longer)")
    if 0 < settings.events_retention_days < MIN_EVENTS_RETENTION_DAYS:
        raise ConfigError(f"EVENTS_RETENTION_DAYS must be 0 (keep forever) or at least {MIN_EVENTS_RETENTION_DAYS}, "
                          f"got {settings.events_retention_days}: a store may deliver an event again for 31 days")
    if 0 < settings.feed_retention_days < MIN_FEED_RETENTION_DAYS:
        raise ConfigError(f"FEED_RETENTION_DAYS must be 0 (keep forever) or at least {MIN_FEED_RETENTION_DAYS}, "
                          f"got {settings.feed_retention_days}: a feed reader's cursor must outlast the webhooks' "
                          "three days of retries")
    if settings.catalog_path and not os.path.isfile(settings.catalog_path):
        raise ConfigError(f"CATALOG_PATH {settings.catalog_path!r} is not a file")
    if settings.outbound_webhooks:
        from gateway.outbound.endpoints import configured
        configured(settings)  # a bad endpoint stops the start, naming OUTBOUND_WEBHOOKS
    return settings


#: Read as they are, each into the Settings field of its name in lower case: text, or a
#: comma-separated list. The rest are in ``_special``.
TEXT = ("CATALOG_PATH", "COGNITO_USER_POOL_ID", "COGNITO_REGION", "COGNITO_JWKS_URL",
        "STRIPE_API_KEY", "STRIPE_API_BASE",
        "APPLE_BUNDLE_ID", "APPLE_ISSUER_ID", "APPLE_KEY_ID", "APPLE_PRIVATE_KEY", "APPLE_API_BASE",
        "GOOGLE_PACKAGE_NAME", "GOOGLE_PUBSUB_AUDIENCE", "GOOGLE_PUBSUB_SERVICE_ACCOUNT", "GOOGLE_OIDC_CERTS_URL",
        "GOOGLE_SERVICE_ACCOUNT_JSON", "GOOGLE_PLAY_ACCESS_TOKEN", "GOOGLE_PLAY_API_BASE",
        "REVENUECAT_API_KEY", "REVENUECAT_API_BASE", "METRICS_TOKEN", "ADMIN_PASSWORD", "ADMIN_SECRET_KEY")
LISTS = ("COGNITO_APP_CLIENT_IDS", "STRIPE_WEBHOOK_SECRETS", "APPLE_ROOT_CERTS", "REVENUECAT_WEBHOOK_AUTH")


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``env`` (default: the process environment plus ``.env``)."""
    if env is None:
        from dotenv import dotenv_values

        env = {**{k: v for k, v in dotenv_values(".env").items() if v is not None}, **os.environ}
    plain = {**{name.lower(): _text(env, name) for name in TEXT}, **{name.lower(): _list(env, name) for name in LISTS}}
    return _check(Settings(**plain, **_special(env)))


def _special(env: Mapping[str, str]) -> dict:
    """The variables that are numbers or flags, have a default, or name another field."""
    return {
        "database_url": database_url(_text(env, "DATABASE_URL")),
        "api_keys": _list(env, "GATEWAY_API_KEYS"),
        "max_body_bytes": _int(env, "MAX_BODY_BYTES", 1_048_576),
        "cognito_jwks_refresh_cooldown": _int(env, "COGNITO_JWKS_REFRESH_COOLDOWN", 30, minimum=0),
        "cognito_stripe_attribute": _text(env, "COGNITO_STRIPE_ATTRIBUTE") or DEFAULT_STRIPE_ATTRIBUTE,
        "apple_app_apple_id": _int(env, "APPLE_APP_APPLE_ID", None),
        "apple_environments": _list(env, "APPLE_ENVIRONMENTS") or ("Production", "Sandbox"),
        "apple_online_checks": _bool(env, "APPLE_ONLINE_CHECKS", False),
        "apple_grace_period_days": _int(env, "APPLE_GRACE_PERIOD_DAYS", 3, minimum=0),
        "log_level": (_text(env, "LOG_LEVEL") or "INFO").upper(),
        "admin_cookie_secure": (_text(env, "ADMIN_COOKIE_SECURE") or "auto").lower(),
        "forwarded_hops": _int(env, "FORWARDED_HOPS", 0, minimum=0),
        # A scrape (every 15 s or so) must see the requests before it.
        "metrics_flush_ms": _int(env, "METRICS_FLUSH_MS", 1000, minimum=100, maximum=10_000),
        "entitlement_cache_seconds": _int(env, "ENTITLEMENT_CACHE_SECONDS", None, minimum=0),
        "events_stale_after_seconds": _int(env, "EVENTS_STALE_AFTER_SECONDS", DEFAULT_EVENTS_STALE_AFTER_SECONDS),
        "events_retention_days": _int(env, "EVENTS_RETENTION_DAYS", DEFAULT_EVENTS_RETENTION_DAYS, minimum=0),
        "feed_retention_days": _int(env, "FEED_RETENTION_DAYS", DEFAULT_FEED_RETENTION_DAYS, minimum=0),
        "outbound_webhooks": _text(env, "OUTBOUND_WEBHOOKS"),
        # OUTBOUND_ALLOW_PRIVATE: the contract's name (../shared/CONTRACT.md), read where the other is unset.
        "outbound_allow_private_targets": _bool(env, "OUTBOUND_ALLOW_PRIVATE_TARGETS",
                                                _bool(env, "OUTBOUND_ALLOW_PRIVATE", False)),
        "outbound_timeout_seconds": _int(env, "OUTBOUND_TIMEOUT_SECONDS", 10),
        "cognito_sign_out_on_revoke": _bool(env, "COGNITO_SIGN_OUT_ON_REVOKE", False),
        **{f"reconcile_rate_{source}": _rate(env, f"RECONCILE_RATE_{source.upper()}", default)
           for source, default in DEFAULT_RECONCILE_RATES.items()},
    }
