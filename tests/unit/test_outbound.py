"""Outgoing webhooks: Standard Webhooks signatures, and targets refused inside the operator's network."""
from __future__ import annotations

import base64
import hashlib
import hmac
import _socket
import ipaddress
import os
import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.domain.webhooks import Endpoint
from gateway.outbound import signing, targets
from gateway.outbound.worker import Deliverer


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


@pytest.mark.parametrize("address", [
    "64:ff9b::a9fe:a9fe",    # NAT64 (RFC 6052): 169.254.169.254, the metadata service, on an IPv6-only network
    "64:ff9b::a00:5",        # NAT64: 10.0.0.5
    "64:ff9b:1::a00:5",      # the local-use NAT64 prefix (RFC 8215): never a public address
    "2002:7f00:1::1",        # 6to4 of 127.0.0.1
    "::7f00:1",              # IPv4-compatible 127.0.0.1 (deprecated, still routed by some stacks)
    "::ffff:169.254.169.254",
])
def test_an_ipv6_address_carrying_an_inside_ipv4_address_is_refused(address):
    """Python counts these as global; each reaches the IPv4 address inside it."""
    with pytest.raises(targets.TargetRefused):
        targets.check("https://receiver.example/hook", resolve=resolver(address))


def test_an_ipv6_address_carrying_a_public_ipv4_address_passes():
    targets.check("https://receiver.example/hook", resolve=resolver("64:ff9b::5db8:d70e", "2606:2800:220:1::1"))


def test_a_public_https_target_passes_and_private_ones_pass_when_allowed():
    targets.check("https://receiver.example/hook", resolve=resolver("93.184.215.14"))
    targets.check("http://127.0.0.1:8080/hook", allow_private=True, resolve=resolver())


def test_a_name_that_answers_the_connection_otherwise_than_the_check_gets_no_connection(monkeypatch):
    """DNS rebinding: the receiver's name answers the target check with a public address
    and, a moment later (a TTL of 0), the connection with an inside one: the metadata
    service, localhost. An attempt connects only to addresses that were checked. The name
    service is faked below socket.getaddrinfo, where every resolver of the process asks."""
    inside = socket.create_server(("127.0.0.1", 0))
    inside.settimeout(0.5)
    answers, real = iter(["93.184.215.14"]), _socket.getaddrinfo

    def rebinding(host, port, *args):
        if host != "rebind.example":
            return real(host, port, *args)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers, "127.0.0.1"), inside.getsockname()[1]))]

    monkeypatch.setattr(_socket, "getaddrinfo", rebinding)
    with inside:
        error = Deliverer(None, [], timeout=1).post(Endpoint("backend", "https://rebind.example/hook", (secret(),)),
                                                    "evt_1", "{}")
        assert error is not None and "resolves to 127.0.0.1, which is not a public address" in error, error
        with pytest.raises(TimeoutError):
            inside.accept()


def _self_signed(tmp_path, name: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_a_checked_connection_speaks_tls_to_the_receivers_name(monkeypatch, tmp_path):
    """The connection goes to the checked address, and TLS to the name: its certificate
    is verified for receiver.example (127.0.0.1 stands in for its public address)."""
    cert, key = _self_signed(tmp_path, "receiver.example")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real = _socket.getaddrinfo
    monkeypatch.setattr(_socket, "getaddrinfo", lambda host, port, *args: real(
        "127.0.0.1" if host == "receiver.example" else host, port, *args))
    monkeypatch.setattr(ipaddress.IPv4Address, "is_global", property(lambda address: True))
    deliverer = Deliverer(None, [], timeout=2)
    deliverer.session.verify = cert
    url = f"https://receiver.example:{server.server_address[1]}/hook"
    try:  # a certificate for receiver.example, not for 127.0.0.1: verified against the name
        assert deliverer.post(Endpoint("backend", url, (secret(),)), "evt_1", "{}") is None
    finally:
        server.shutdown()
