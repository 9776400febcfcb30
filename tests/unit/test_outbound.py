"""Outgoing webhooks: Standard Webhooks signatures, and targets refused inside the operator's network."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.outbound import signing, targets


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def test_a_standard_webhooks_verifier_accepts_each_secret_of_a_rolling_pair():
    old, new, at = secret(), secret(), datetime.now(timezone.utc)
    body = '{"id":"evt_1","type":"entitlement.granted"}'
    sent = signing.headers("evt_1", body, (old, new), at)
    for key in (old, new):
        assert Webhook(key).verify(body, sent) == {"id": "evt_1", "type": "entitlement.granted"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret()).verify(body, sent)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body.replace("granted", "revoked"), sent)


def test_the_signature_is_hmac_sha256_of_id_timestamp_body_as_the_spec_writes_it():
    key, at, body = secret(), datetime(2026, 12, 5, 8, 0, 0, tzinfo=timezone.utc), "{}"
    sent = signing.headers("evt_2", body, (key,), at)
    raw = base64.b64decode(key.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(raw, f"evt_2.{int(at.timestamp())}.{body}".encode(),
                                         hashlib.sha256).digest()).decode()
    assert sent["webhook-signature"] == f"v1,{expected}"
    assert (sent["webhook-id"], sent["webhook-timestamp"]) == ("evt_2", str(int(at.timestamp())))


@pytest.mark.parametrize("bad", ["", "not-prefixed", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()])
def test_weak_or_malformed_secrets_are_refused(bad):
    with pytest.raises(ValueError):
        signing.check_secret(bad)


def resolver(*addresses):
    return lambda host, port, proto=0: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]


@pytest.mark.parametrize("url, addresses", [
    ("https://127.0.0.1/hook", ()),
    ("https://169.254.169.254/latest/meta-data", ()),
    ("https://[::1]/hook", ()),
    ("https://10.0.0.5/hook", ()),
    ("https://receiver.example/hook", ("192.168.1.20",)),
    ("https://receiver.example/hook", ("93.184.215.14", "172.16.0.1")),  # one private answer is enough
    ("https://receiver.example/hook", ("0.0.0.0",)),
    ("http://receiver.example/hook", ("93.184.215.14",)),
    ("ftp://receiver.example/hook", ("93.184.215.14",)),
    ("https://user:pass@receiver.example/hook", ("93.184.215.14",)),
])
def test_targets_inside_the_network_or_off_https_are_refused(url, addresses):
    with pytest.raises(targets.TargetRefused):
        targets.check(url, resolve=resolver(*addresses))


def test_a_public_https_target_passes_and_private_ones_pass_when_allowed():
    targets.check("https://receiver.example/hook", resolve=resolver("93.184.215.14"))
    targets.check("http://127.0.0.1:8080/hook", allow_private=True, resolve=resolver())
