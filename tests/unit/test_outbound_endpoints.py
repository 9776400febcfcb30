"""OUTBOUND_WEBHOOKS read and refused as an operator would see it, and the delivery rules:
which events an endpoint wants, when a failed one is tried again or parked."""
from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta, timezone

import pytest

from gateway.config import ConfigError, from_env
from gateway.domain.webhooks import GIVE_UP_AFTER, LONGEST_WAIT, MIN_ATTEMPTS, Endpoint, retry_at
from gateway.outbound.endpoints import configured, parse
from tests.support.webhook_receiver import secret

PUBLIC = "https://93.184.215.14/hooks"


def env(*endpoints, **more) -> dict[str, str]:
    return {"OUTBOUND_WEBHOOKS": json.dumps(list(endpoints)), **more}


def resolver(*addresses):
    return lambda host, port, proto=0: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]


def test_endpoints_are_read_with_their_secrets_in_order_and_their_types():
    old, new = secret(), secret()
    settings = from_env(env({"name": "backend", "url": PUBLIC, "secrets": [old, new]},
                            {"name": "crm", "url": "https://hooks.example/in", "secrets": [new],
                             "types": ["entitlement.revoked"]}, OUTBOUND_ALLOW_PRIVATE_TARGETS="true"))
    found = parse(settings.outbound_webhooks, resolve=resolver("93.184.215.14"))
    assert found == [Endpoint("backend", PUBLIC, (old, new)),
                     Endpoint("crm", "https://hooks.example/in", (new,), ("entitlement.revoked",))]
    assert old not in repr(settings)


@pytest.mark.parametrize("value, says", [
    ("[{", "not JSON"),
    ('{"name": "x"}', "JSON list of objects"),
    (json.dumps([{"name": "x", "url": PUBLIC}]), "url and secrets"),
    (json.dumps([{"name": "x", "url": PUBLIC, "secrets": ["s"], "extra": 1}]), "url and secrets"),
    (json.dumps([{"url": PUBLIC, "secrets": ["whsec_x"], "types": ["*"], "events": ["*"]}]), "(or events)"),
    (json.dumps([{"name": "x", "url": PUBLIC, "secrets": []}]), "one or more"),
    (json.dumps([{"name": "x", "url": PUBLIC, "secrets": ["whsec_c2hvcnQ="]}]), "secret 1"),
    (json.dumps([{"name": "x", "url": PUBLIC, "secrets": ["sk_live_abc"]}]), "secret 1"),
    (json.dumps([{"name": "bad name!", "url": PUBLIC, "secrets": ["whsec_x"]}]), "name"),
    (json.dumps([{"name": "x", "url": "http://127.0.0.1:8000/h", "secrets": ["whsec_x"]}]), "https"),
    (json.dumps([{"name": "x", "url": "https://127.0.0.1/h", "secrets": ["whsec_x"]}]), "not a public address"),
    (json.dumps([{"name": "x", "url": "https://169.254.169.254/latest/meta-data", "secrets": ["whsec_x"]}]),
     "not a public address"),
])
def test_a_bad_value_stops_the_start_naming_the_variable_and_never_a_secret(value, says):
    key = secret()
    with pytest.raises(ConfigError, match="OUTBOUND_WEBHOOKS") as raised:
        from_env({"OUTBOUND_WEBHOOKS": value.replace("whsec_x", key)})
    assert says in str(raised.value)
    assert not any(leak in str(raised.value) for leak in (key, "sk_live_abc", "c2hvcnQ="))


def test_the_contracts_form_is_read_too(tmp_path):
    """../shared/CONTRACT.md's form: a list of {"url", "secrets", "events"} as text or the path
    of a file, no name (the host names the endpoint), and OUTBOUND_ALLOW_PRIVATE."""
    key = secret()
    listed = [{"url": "http://127.0.0.1:8001/hooks", "secrets": [key], "events": ["entitlement.*"]},
              {"url": "http://127.0.0.1:8001/other", "secrets": [key]}]
    path = tmp_path / "webhooks.json"
    path.write_text(json.dumps(listed))
    for value in (str(path), json.dumps(listed)):
        settings = from_env({"OUTBOUND_WEBHOOKS": value, "OUTBOUND_ALLOW_PRIVATE": "true"})
        assert configured(settings) == [
            Endpoint("127.0.0.1-8001", "http://127.0.0.1:8001/hooks", (key,), ("entitlement.*",)),
            Endpoint("127.0.0.1-8001-2", "http://127.0.0.1:8001/other", (key,))]
    with pytest.raises(ConfigError, match="OUTBOUND_ALLOW_PRIVATE_TARGETS"):  # still refused unless allowed
        from_env({"OUTBOUND_WEBHOOKS": str(path)})
    with pytest.raises(ConfigError, match="OUTBOUND_ALLOW_PRIVATE_TARGETS"):  # the precise name wins
        from_env({"OUTBOUND_WEBHOOKS": str(path), "OUTBOUND_ALLOW_PRIVATE": "true",
                  "OUTBOUND_ALLOW_PRIVATE_TARGETS": "false"})


def test_types_are_checked_and_a_family_or_all_may_be_named():
    key = secret()
    with pytest.raises(ConfigError, match="unknown event type 'entitlement.grantd'"):
        from_env(env({"name": "x", "url": PUBLIC, "secrets": [key], "types": ["entitlement.grantd"]}))
    with pytest.raises(ConfigError, match="unknown event type 'billing.\\*'"):
        from_env(env({"name": "x", "url": PUBLIC, "secrets": [key], "types": ["billing.*"]}))
    with pytest.raises(ConfigError, match="unique"):
        from_env(env({"name": "x", "url": PUBLIC, "secrets": [key]}, {"name": "x", "url": PUBLIC, "secrets": [key]}))
    family = Endpoint("x", PUBLIC, (key,), ("entitlement.*",))
    assert family.wants("entitlement.revoked") and not family.wants("user.deleted")
    assert Endpoint("x", PUBLIC, (key,), ("*",)).wants("user.deleted") and Endpoint("x", PUBLIC, (key,)).wants("any")


def test_a_private_receiver_is_accepted_only_when_allowed():
    local = [{"name": "x", "url": "http://127.0.0.1:8000/hooks", "secrets": [secret()]}]
    with pytest.raises(ConfigError, match="OUTBOUND_ALLOW_PRIVATE_TARGETS"):
        from_env(env(*local))
    assert from_env(env(*local, OUTBOUND_ALLOW_PRIVATE_TARGETS="true")).outbound_webhooks
    with pytest.raises(ValueError, match="192.168.1.20"):  # a public name that resolves inside
        parse(json.dumps([{"name": "x", "url": "https://hooks.example/in", "secrets": [secret()]}]),
              resolve=resolver("192.168.1.20"))


AT = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


def test_retries_back_off_exponentially_with_jitter_up_to_a_ceiling():
    waits = [retry_at(n, AT, AT, 0.0) - AT for n in range(1, 16)]
    assert waits[0] == timedelta(seconds=15) and waits[1] == timedelta(seconds=30) and waits[2] == timedelta(minutes=1)
    assert waits[-1] == LONGEST_WAIT / 2 and waits == sorted(waits)
    assert retry_at(3, AT, AT, 0.999) - AT < timedelta(minutes=2) <= 2 * (retry_at(3, AT, AT, 0.0) - AT)


def test_a_delivery_is_parked_only_after_three_days_and_a_few_attempts():
    late = AT + GIVE_UP_AFTER
    assert retry_at(MIN_ATTEMPTS, AT, late - timedelta(seconds=1), 0.5) is not None
    assert retry_at(MIN_ATTEMPTS - 1, AT, late + timedelta(days=30), 0.5) is not None
    assert retry_at(MIN_ATTEMPTS, AT, late, 0.5) is None
