"""Fixtures for the Cognito triggers: moto's AWS, a local Stripe and gateway, Lambda's context.

Nothing leaves 127.0.0.1: AWS calls go to moto (fake credentials set here), Stripe and the
gateway are local HTTP fakes.
"""
from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from cognito_triggers import aws, stripe_key
from tests.cognito.fake_gateway import FakeGateway
from tests.fakes.stripe_api import FakeStripe

EVENTS = Path(__file__).parent / "events"
REGION = "eu-west-1"
CONFIG = ("STRIPE_API_KEY", "STRIPE_API_KEY_PARAMETER", "STRIPE_API_BASE", "STRIPE_TIMEOUT_SECONDS",
          "COGNITO_STRIPE_ATTRIBUTE", "TRIGGER_BUDGET_SECONDS", "GATEWAY_URL", "GATEWAY_API_KEY",
          "GATEWAY_TIMEOUT_SECONDS", "AWS_PROFILE", "AWS_ENDPOINT_URL", "HTTP_PROXY", "HTTPS_PROXY",
          "http_proxy", "https_proxy")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes seconds (builds the Lambda bundle); still runs by default")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch):
    """Fake AWS credentials for moto, no trigger configuration, fresh per-container caches."""
    for name in CONFIG:
        monkeypatch.delenv(name, raising=False)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                        "NO_PROXY": "127.0.0.1,localhost"}.items():
        monkeypatch.setenv(name, value)
    aws.reset()
    stripe_key.reset()
    yield
    aws.reset()
    stripe_key.reset()


#: Seconds a loaded machine may add to a handler's own time (a thread woken late, a slow
#: import or client): the timing tests bound what a handler takes by the timeout under test
#: plus this, and are set up so that a handler that waited for the server, or for any longer
#: timeout, would take far longer still.
LOAD_HEADROOM = 5.0


def timed(call, *args):
    """``call(*args)`` and the seconds it took."""
    started = time.monotonic()
    result = call(*args)
    return result, time.monotonic() - started


class LambdaContext:
    """What the handlers use of Lambda's context (https://docs.aws.amazon.com/lambda/latest/dg/python-context.html)."""

    def __init__(self, timeout: float = 5.0, function_name: str = "cognito-trigger") -> None:
        self.timeout = timeout  # the function's timeout: Lambda's budget for this invocation
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2026/01/01/[$LATEST]0123456789abcdef"
        self._ends = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


def load_event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


class UserPool:
    """A moto user pool whose schema has the custom attribute, and helpers to make users."""

    def __init__(self, client, attribute: str = "stripe_customer_id") -> None:
        self.client = client
        schema = [{"Name": attribute, "AttributeDataType": "String", "Mutable": True}] if attribute else []
        self.id = client.create_user_pool(PoolName="users", Schema=schema)["UserPool"]["Id"]

    def add_user(self, email: str, name: str | None = None, status: str = "CONFIRMED") -> dict:
        """A CONFIRMED user, or one that signed up and has not confirmed yet (UNCONFIRMED)."""
        attributes = [{"Name": "email", "Value": email}] + ([{"Name": "name", "Value": name}] if name else [])
        if status == "UNCONFIRMED":
            client_id = self.client.create_user_pool_client(UserPoolId=self.id, ClientName="app")
            self.client.sign_up(ClientId=client_id["UserPoolClient"]["ClientId"], Username=email,
                                Password="Passw0rd!23", UserAttributes=attributes)
        else:
            self.client.admin_create_user(UserPoolId=self.id, Username=email, UserAttributes=attributes,
                                          MessageAction="SUPPRESS")
            self.client.admin_set_user_password(UserPoolId=self.id, Username=email, Password="Passw0rd!23",
                                                Permanent=True)
        return self.attributes(email) | {"username": email}

    def attributes(self, username: str) -> dict[str, str]:
        user = self.client.admin_get_user(UserPoolId=self.id, Username=username)
        return {item["Name"]: item["Value"] for item in user["UserAttributes"]}

    def confirmation_event(self, username: str, fixture: str = "post_confirmation_confirm_sign_up") -> dict:
        """The event Cognito sends for this user: the fixture's shape, this pool's user in it."""
        event = load_event(fixture)
        event.update(userPoolId=self.id, userName=username, region=REGION)
        event["request"]["userAttributes"] = {"cognito:user_status": "CONFIRMED", **self.attributes(username)}
        return event


@pytest.fixture
def aws_mock():
    with mock_aws():
        yield


@pytest.fixture
def user_pool(aws_mock):
    return UserPool(boto3.client("cognito-idp", region_name=REGION))


@pytest.fixture
def cognito_writes(user_pool):
    """AdminUpdateUserAttributes calls made through the triggers' (cached) Cognito client."""
    writes: list[dict] = []

    def record(params, **kwargs):
        writes.append(copy.deepcopy(params))
    aws.client("cognito-idp").meta.events.register(
        "provide-client-params.cognito-identity-provider.AdminUpdateUserAttributes", record)
    return writes


@pytest.fixture
def stripe_api():
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def stripe_configured(monkeypatch, stripe_api):
    monkeypatch.setenv("STRIPE_API_KEY", stripe_api.api_key)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_api.url)
    return stripe_api


@pytest.fixture
def gateway(monkeypatch):
    with FakeGateway() as fake:
        monkeypatch.setenv("GATEWAY_URL", fake.url)
        monkeypatch.setenv("GATEWAY_API_KEY", fake.api_key)
        yield fake


def naming(stripe_api, user: dict) -> list:
    """The requests to Stripe that name the user (``UserPool.add_user``'s sub or email) anywhere."""
    return [r for r in stripe_api.requests if user["sub"] in str(r.params) or user["email"] in str(r.params)]


def log_lines(captured: str) -> list[dict]:
    """The JSON log records in captured stderr (every line must parse)."""
    return [json.loads(line) for line in captured.splitlines() if line.strip()]
