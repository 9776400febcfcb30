"""/openapi.json: a valid OpenAPI 3 document of the routes the app serves, and a fuzz of
every documented operation (schemathesis) that must never meet a 500."""
from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error, status_code_conformance
from schemathesis.generation.modes import GenerationMode

from devtools import revenuecat as rc
from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore
from devtools.google_pubsub import PushSigner
from devtools.stripe_signing import new_secret
from tests.e2e.conftest import API_KEY

# Per operation, bounded so the whole fuzz stays well under a minute.
EXAMPLES = 30
# 502 (a store refused the call) and 503 (not configured, or a dependency is down) are
# documented answers; any other 5xx, a 500 above all, is a bug.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"checks": {"not_a_server_error": {"expected-statuses": ["2XX", "3XX", "4XX", "502", "503"]}}})


@pytest.fixture(scope="module")
def signer():
    with PushSigner() as push:
        yield push


@pytest.fixture
def app(make_app, tmp_path, cognito, signer):
    """Every source configured, so fuzzed requests reach verification and parsing."""
    chain = mint_chain()
    return make_app(GATEWAY_API_KEYS=API_KEY, REVENUECAT_WEBHOOK_AUTH=rc.AUTH, STRIPE_WEBHOOK_SECRETS=new_secret(),
                    **AppStore(chain).env(chain.write_root(tmp_path)), **signer.env(), **cognito.env())


def test_document_is_valid_openapi_3(app):
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    validate(document)
    assert document["openapi"].startswith("3.")
    assert {"cognito", "apiKey", "googlePubSub", "revenuecat"} <= set(document["components"]["securitySchemes"])


def test_document_covers_every_v1_and_webhook_route(app):
    documented = set(app.test_client().get("/openapi.json").get_json()["paths"])
    served = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/v1/")}
    assert served <= documented
    assert {f"/webhooks/{s}" for s in ("stripe", "apple", "google", "revenuecat")} <= documented


def test_request_schemas_are_the_views_own(app):
    schemas = app.test_client().get("/openapi.json").get_json()["components"]["schemas"]
    assert set(schemas["CheckoutBody"]["required"]) == {"price_id", "success_url", "cancel_url"}
    assert schemas["ApplePurchaseBody"]["required"] == ["signedTransaction"]
    assert set(schemas["GooglePurchaseBody"]["required"]) == {"productId", "purchaseToken"}


def _credentials(path: str, cognito) -> dict[str, str]:
    """Good credentials where one is a plain header, so fuzzed bodies reach the parsers."""
    if path == "/webhooks/revenuecat":
        return {"Authorization": rc.AUTH}
    if path.startswith("/v1/users/"):
        return {"Authorization": f"Bearer {API_KEY}"}
    if path.startswith("/v1/"):
        return cognito.header("fuzz-user")
    return {}


def _cases(operation):
    """Requests as documented (positive) and, where the document constrains a parameter or
    a body, requests that break it (negative: ``limit=abc``, a body of the wrong type), which
    a client can send as easily: both must get a documented answer, never a 500."""
    negative = operation.as_strategy(GenerationMode.NEGATIVE)
    return operation.as_strategy(GenerationMode.POSITIVE) | negative


def test_no_documented_operation_answers_500_or_an_undocumented_status(app, cognito):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    for operation in operations:
        headers = _credentials(operation.path, cognito)

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=_cases(operation))
        def fuzz(case):
            case.headers = {**(case.headers or {}), **headers}
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance])

        fuzz()


def test_a_nul_in_the_url_is_a_documented_400_of_every_operation(app, cognito):
    """Every route refuses a NUL in its path or query (web/errors.py) before its view runs, so
    each operation's documented answers include 400, whatever else it can answer."""
    client = app.test_client()
    paths = client.get("/openapi.json").get_json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            url = re.sub(r"\{\w+\}", "someone", path) + "?probe=%00"
            answer = client.open(url, method=method.upper(), headers=_credentials(path, cognito))
            assert answer.status_code == 400, (method, path, answer.status_code)
            assert "400" in operation["responses"], (method, path)


def test_real_answers_validate_against_their_documented_schemas(app):
    """What the endpoints answer, checked against the schemas of the document they serve, as
    a client generated from /openapi.json reads them (unknown fields fail too: the document
    says ``additionalProperties: false``). The check reads the served JSON only, with an
    OpenAPI 3.0 validator: it shares no code with ``gateway/``."""
    client, auth = app.test_client(), {"Authorization": f"Bearer {API_KEY}"}
    document = client.get("/openapi.json").get_json()
    delivered = client.post("/webhooks/revenuecat", data=rc.body(rc.event("INITIAL_PURCHASE", user="doc-user")),
                            headers={"Authorization": rc.AUTH, "Content-Type": "application/json"})
    answers = {
        "WebhookAnswer": delivered,
        "EntitlementsAnswer": client.get("/v1/users/doc-user/entitlements", headers=auth),
        "HistoryAnswer": client.get("/v1/users/doc-user/history", headers=auth),
        "FeedPage": client.get("/v1/events", headers=auth),
        "Health": client.get("/healthz"),
        "Error": client.get("/v1/users/doc-user/entitlements", headers={"Authorization": "Bearer wrong"}),
    }
    for name, answer in answers.items():
        errors = _documented(document, name).iter_errors(answer.get_json())
        assert [error.message for error in errors] == [], (name, answer.get_json())
    history = answers["HistoryAnswer"].get_json()
    assert history["subscriptions"][0]["evidence"] == [history["deliveries"][0]["id"]]
    assert answers["FeedPage"].get_json()["events"], "the delivery above made a feed event to check"


def _documented(document: dict, name: str) -> OAS30Validator:
    """A validator of ``#/components/schemas/<name>`` with the served document's references."""
    root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return OAS30Validator(root, format_checker=OAS30Validator.FORMAT_CHECKER)
