"""Settings from the environment: defaults, Heroku URLs, and errors that name the variable."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import ConfigError, from_env


def test_defaults_need_no_configuration():
    settings = from_env({})
    assert settings.database_url == "sqlite:///instance/gateway.db"
    assert settings.max_body_bytes == 1_048_576 and settings.apple_environments == ("Production", "Sandbox")
    assert settings.api_keys == () and settings.cognito_issuer is None
    assert settings.entitlement_cache_seconds is None  # the database's default: app._cached
    assert settings.events_stale_after_seconds == 120
    assert settings.cognito_stripe_attribute == "custom:stripe_customer_id"
    assert settings.apple_grace_period_days == 3  # the shortest Billing Grace Period Apple offers
    assert settings.metrics_flush_ms == 1000  # a worker's samples reach the metrics files within a second


def test_the_jobs_settings_are_read_with_the_others():
    settings = from_env({"EVENTS_STALE_AFTER_SECONDS": " 45 ", "COGNITO_STRIPE_ATTRIBUTE": "custom:stripe_id"})
    assert settings.events_stale_after_seconds == 45 and settings.cognito_stripe_attribute == "custom:stripe_id"


@pytest.mark.parametrize("url, expected", [
    ("postgres://u:p@db.example:5432/d", "postgresql+psycopg://u:p@db.example:5432/d"),
    ("postgresql://u:p@h/d", "postgresql+psycopg://u:p@h/d"),
    ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
])
def test_heroku_postgres_urls_are_accepted(url, expected):
    assert from_env({"DATABASE_URL": url}).database_url == expected


def test_lists_are_comma_separated_and_trimmed():
    settings = from_env({"GATEWAY_API_KEYS": " a, b ,,c", "STRIPE_WEBHOOK_SECRETS": "whsec_1,whsec_2"})
    assert settings.api_keys == ("a", "b", "c") and settings.stripe_webhook_secrets == ("whsec_1", "whsec_2")


def test_cognito_issuer_and_jwks_url_come_from_region_and_pool():
    settings = from_env({"COGNITO_USER_POOL_ID": "eu-west-1_abc", "COGNITO_REGION": "eu-west-1",
                         "COGNITO_APP_CLIENT_IDS": "c1"})
    assert settings.cognito_issuer == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc"
    assert settings.cognito_jwks == settings.cognito_issuer + "/.well-known/jwks.json"


@pytest.mark.parametrize("env, variable", [
    ({"MAX_BODY_BYTES": "lots"}, "MAX_BODY_BYTES"),
    ({"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES"),
    ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
    ({"STRIPE_WEBHOOK_SECRETS": "sk_live_oops"}, "STRIPE_WEBHOOK_SECRETS"),
    ({"APPLE_ENVIRONMENTS": "Production,Staging"}, "APPLE_ENVIRONMENTS"),
    ({"APPLE_APP_APPLE_ID": "12ab"}, "APPLE_APP_APPLE_ID"),
    ({"APPLE_ONLINE_CHECKS": "maybe"}, "APPLE_ONLINE_CHECKS"),
    ({"APPLE_GRACE_PERIOD_DAYS": "-1"}, "APPLE_GRACE_PERIOD_DAYS"),
    ({"APPLE_GRACE_PERIOD_DAYS": "29"}, "APPLE_GRACE_PERIOD_DAYS"),
    ({"APPLE_GRACE_PERIOD_DAYS": "16d"}, "APPLE_GRACE_PERIOD_DAYS"),
    ({"COGNITO_USER_POOL_ID": "eu-west-1_abc"}, "COGNITO_REGION"),
    ({"COGNITO_USER_POOL_ID": "p", "COGNITO_REGION": "r"}, "COGNITO_APP_CLIENT_IDS"),
    ({"CATALOG_PATH": "/nonexistent/catalog.json"}, "CATALOG_PATH"),
    ({"ENTITLEMENT_CACHE_SECONDS": "-1"}, "ENTITLEMENT_CACHE_SECONDS"),
    ({"ENTITLEMENT_CACHE_SECONDS": "1.5"}, "ENTITLEMENT_CACHE_SECONDS"),
    ({"ENTITLEMENT_CACHE_SECONDS": "301"}, "ENTITLEMENT_CACHE_SECONDS"),
    ({"EVENTS_STALE_AFTER_SECONDS": "soon"}, "EVENTS_STALE_AFTER_SECONDS"),
    ({"EVENTS_STALE_AFTER_SECONDS": "0"}, "EVENTS_STALE_AFTER_SECONDS"),
    ({"EVENTS_STALE_AFTER_SECONDS": "-5"}, "EVENTS_STALE_AFTER_SECONDS"),
    ({"EVENTS_STALE_AFTER_SECONDS": "2.5"}, "EVENTS_STALE_AFTER_SECONDS"),
    ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
    ({"METRICS_FLUSH_MS": "99"}, "METRICS_FLUSH_MS"),
    ({"METRICS_FLUSH_MS": "10001"}, "METRICS_FLUSH_MS"),
])
def test_bad_values_stop_the_start_naming_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        from_env(env)


def test_a_dotenv_file_supplies_what_the_environment_lacks(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("GATEWAY_API_KEYS=from-file\nMAX_BODY_BYTES=2048\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAX_BODY_BYTES", "4096")
    monkeypatch.delenv("GATEWAY_API_KEYS", raising=False)
    settings = from_env()
    assert settings.api_keys == ("from-file",) and settings.max_body_bytes == 4096


def test_the_environment_is_read_in_config_only():
    """Settings are read once at start, here: no module of the app or its jobs reads a variable
    later. prometheus_client reads PROMETHEUS_MULTIPROC_DIR itself, and gateway/metrics.py
    follows that reading (a .env file never reaches the library)."""
    package = Path(__file__).resolve().parents[2] / "gateway"
    allowed = {package / "config.py", package / "metrics.py"}
    readers = re.compile(r"\bos\.environ\b|\bgetenv\b|\benviron\.get\b|\benvvar\s*=|auto_envvar_prefix")
    found = [f"{path.relative_to(package.parent)}:{number}: {line.strip()}"
             for path in sorted(package.rglob("*.py")) if path not in allowed
             for number, line in enumerate(path.read_text().splitlines(), 1) if readers.search(line)]
    assert found == []
