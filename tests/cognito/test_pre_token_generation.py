"""The pre token generation handler, called as Lambda calls it, against a local gateway."""
from __future__ import annotations

import copy
import socket

import pytest

from cognito_triggers.pre_token_generation import handler
from tests.cognito.conftest import LOAD_HEADROOM, LambdaContext, load_event, log_lines, timed

SUB = "3c8f4a1e-5b2d-4e61-9a0f-7d2c1b9e8a11"
PREMIUM = {"active": True, "status": "active", "expires_at": "2026-12-22T10:00:00Z", "will_renew": True,
           "source": "apple", "product_id": "com.example.premium.monthly"}
LAPSED = {**PREMIUM, "active": False, "status": "expired", "expires_at": "2025-01-22T10:00:00Z", "will_renew": False}
EMPTY = {"premium": "false", "entitlements": "", "premium_until": ""}


def id_claims(event: dict) -> dict:
    if event["version"] == "1":
        return event["response"]["claimsOverrideDetails"]["claimsToAddOrOverride"]
    return event["response"]["claimsAndScopeOverrideDetails"]["idTokenGeneration"]["claimsToAddOrOverride"]


def access_claims(event: dict) -> dict:
    return event["response"]["claimsAndScopeOverrideDetails"]["accessTokenGeneration"]["claimsToAddOrOverride"]


def v3_event() -> dict:
    event = load_event("pre_token_generation_v2")
    event.update(version="3", triggerSource="TokenGeneration_Authentication")
    return event


def test_premium_user_gets_premium_claims_in_the_id_token_v1(gateway):
    gateway.grant(SUB, premium=PREMIUM)
    event = load_event("pre_token_generation_v1")

    assert handler(event, LambdaContext()) is event

    assert id_claims(event) == {"premium": "true", "entitlements": "premium",
                                "premium_until": "2026-12-22T10:00:00Z"}
    assert gateway.requests == [{"path": f"/v1/users/{SUB}/entitlements", "authorization": f"Bearer {gateway.api_key}"}]


@pytest.mark.parametrize("make_event", [lambda: load_event("pre_token_generation_v2"), v3_event], ids=["v2", "v3"])
def test_versions_2_and_3_put_the_claims_in_both_tokens(gateway, make_event):
    gateway.grant(SUB, premium=PREMIUM)
    event = make_event()

    handler(event, LambdaContext())

    assert id_claims(event) == access_claims(event) == {
        "premium": "true", "entitlements": "premium", "premium_until": "2026-12-22T10:00:00Z"}


def test_lapsed_premium_is_false_with_no_expiry_claim(gateway):
    gateway.grant(SUB, premium=LAPSED)
    event = load_event("pre_token_generation_v2")

    handler(event, LambdaContext())

    assert id_claims(event) == access_claims(event) == EMPTY


def test_unknown_user_gets_explicit_non_premium_claims(gateway):
    event = load_event("pre_token_generation_v1")

    handler(event, LambdaContext())

    assert id_claims(event) == EMPTY


def test_only_active_entitlements_are_listed(gateway):
    gateway.grant(SUB, premium={**PREMIUM, "expires_at": None}, pro=PREMIUM, legacy=LAPSED)
    event = load_event("pre_token_generation_v1")

    handler(event, LambdaContext())

    assert id_claims(event) == {"premium": "true", "entitlements": "premium pro", "premium_until": ""}


def test_existing_overrides_are_kept(gateway):
    gateway.grant(SUB, premium=PREMIUM)
    v1, v2 = load_event("pre_token_generation_v1"), load_event("pre_token_generation_v2")
    v1["response"]["claimsOverrideDetails"] = {"claimsToAddOrOverride": {"tenant": "acme"}, "claimsToSuppress": ["email"]}
    v2["response"]["claimsAndScopeOverrideDetails"] = {
        "idTokenGeneration": {"claimsToAddOrOverride": {"tenant": "acme"}},
        "accessTokenGeneration": {"scopesToAdd": ["api/read"]},
        "groupOverrideDetails": {"groupsToOverride": ["staff"]}}

    handler(v1, LambdaContext())
    handler(v2, LambdaContext())

    assert v1["response"]["claimsOverrideDetails"]["claimsToSuppress"] == ["email"]
    assert id_claims(v1)["tenant"] == "acme" and id_claims(v1)["premium"] == "true"
    details = v2["response"]["claimsAndScopeOverrideDetails"]
    assert details["groupOverrideDetails"] == {"groupsToOverride": ["staff"]}
    assert details["accessTokenGeneration"]["scopesToAdd"] == ["api/read"]
    assert id_claims(v2)["tenant"] == "acme" and access_claims(v2)["premium"] == "true"


@pytest.mark.parametrize("fixture", ["pre_token_generation_v1", "pre_token_generation_v2"])
def test_gateway_error_issues_the_token_without_claims(gateway, fixture):
    gateway.outage_status = 503
    event = load_event(fixture)
    original = copy.deepcopy(event)

    assert handler(event, LambdaContext()) is event

    assert event == original


def test_slow_gateway_is_abandoned_after_the_timeout(monkeypatch, gateway):
    """GATEWAY_TIMEOUT_SECONDS, not the invocation's budget (20 s here) nor the gateway's
    answer (30 s): a handler that waited for either would take 20 s at least."""
    monkeypatch.setenv("GATEWAY_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setenv("TRIGGER_BUDGET_SECONDS", "20")
    gateway.delay = 30
    event = load_event("pre_token_generation_v2")
    original = copy.deepcopy(event)

    _, elapsed = timed(handler, event, LambdaContext(timeout=30))

    assert elapsed < 0.3 + LOAD_HEADROOM, elapsed
    assert len(gateway.requests) == 1  # asked, and given up on
    assert event == original


def test_unreachable_gateway_issues_the_token_without_claims(monkeypatch):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("GATEWAY_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("GATEWAY_API_KEY", "gw_key")
    event = load_event("pre_token_generation_v1")
    context = LambdaContext()

    returned, elapsed = timed(handler, copy.deepcopy(event), context)

    assert returned == event and elapsed < context.timeout  # within Lambda's budget


def test_wrong_api_key_issues_the_token_without_claims(monkeypatch, gateway, capsys):
    monkeypatch.setenv("GATEWAY_API_KEY", "gw_wrong_secret_77")
    event = load_event("pre_token_generation_v1")

    assert handler(copy.deepcopy(event), LambdaContext()) == event

    captured = capsys.readouterr().err
    [warning] = log_lines(captured)
    assert warning["sub"] == SUB and "401" in warning["detail"]
    assert "gw_wrong_secret_77" not in captured


def test_unconfigured_gateway_adds_nothing():
    event = load_event("pre_token_generation_v2")

    assert handler(copy.deepcopy(event), LambdaContext()) == event


def test_machine_to_machine_tokens_have_no_user_to_ask_about(gateway):
    event = load_event("pre_token_generation_v3_client_credentials")

    assert handler(copy.deepcopy(event), LambdaContext()) == event
    assert gateway.requests == []


def test_logs_never_carry_the_gateway_key(gateway, capsys):
    gateway.grant(SUB, premium=PREMIUM)
    handler(load_event("pre_token_generation_v1"), LambdaContext())
    gateway.outage_status = 500
    handler(load_event("pre_token_generation_v1"), LambdaContext())

    assert gateway.api_key not in capsys.readouterr().err


def test_a_gateway_that_answers_a_byte_at_a_time_is_abandoned_within_the_budget(monkeypatch, gateway):
    """Socket timeouts bound each read: a server that keeps sending never trips them. The
    whole call is bounded, or Lambda's 5 s would run out and the sign-in fail."""
    gateway.drip = 0.2  # every read succeeds; the answer would take about a minute
    event = load_event("pre_token_generation_v2")
    original = copy.deepcopy(event)
    context = LambdaContext(timeout=3.0)

    returned, elapsed = timed(handler, event, context)

    assert returned == original and elapsed < context.timeout + LOAD_HEADROOM, elapsed
    assert len(gateway.requests) == 1


@pytest.mark.parametrize("answer", [{"entitlements": ["premium"]}, {"entitlements": {"premium": "active"}},
                                    ["premium"], {"is_premium": True, "entitlements": None}])
def test_an_answer_of_another_shape_issues_the_token_without_claims(gateway, answer):
    gateway.raw = answer  # a proxy's page, another version of the API
    event = load_event("pre_token_generation_v1")
    assert handler(copy.deepcopy(event), LambdaContext()) == event


def test_claim_values_are_strings_whatever_the_gateway_says(gateway):
    gateway.raw = {"is_premium": True, "entitlements": {"premium": {"active": True, "expires_at": 1893456000}}}
    claims = handler(load_event("pre_token_generation_v1"), LambdaContext())["response"]["claimsOverrideDetails"][
        "claimsToAddOrOverride"]
    assert claims == {"premium": "true", "entitlements": "premium", "premium_until": ""}


@pytest.mark.parametrize("level", ["", "verbose"])
def test_an_unknown_log_level_never_blocks_a_sign_in(monkeypatch, gateway, level):
    monkeypatch.setenv("LOG_LEVEL", level)
    gateway.grant(SUB, premium=PREMIUM)
    event = load_event("pre_token_generation_v1")

    assert handler(event, LambdaContext()) is event

    assert id_claims(event)["premium"] == "true"
