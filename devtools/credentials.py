"""The demo's credentials for every source, minted on this machine once and kept in
``instance/demo/credentials.json`` (``instance/`` is never committed), so the demo
server and ``demo send`` in another shell sign and verify with the same keys.

Nothing here is a real store credential: the Apple chain is an Apple-shaped chain of our
own, trusted only because ``APPLE_ROOT_CERTS`` names its root; the Google and Cognito
keys are RSA keys whose public halves only the demo's local fakes publish.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devtools.apple_pki import Chain, Issued, mint_chain
from devtools.google_pubsub import mint_key, self_signed_pem
from devtools.stripe_signing import new_secret

FILE = "credentials.json"
APPLE_ROOT = "apple_root.cer"


@dataclasses.dataclass(frozen=True)
class Credentials:
    directory: Path
    stripe_webhook_secret: str
    stripe_api_key: str
    revenuecat_auth: str
    api_key: str
    google_kid: str
    google_key_pem: str
    cognito_kid: str
    cognito_key_pem: str
    apple: dict  # {"root"|"intermediate"|"leaf": {"cert": PEM, "key": PEM}}
    webhook_secret: str = ""  # signs the demo's outgoing webhooks (added to older files on load)

    @property
    def apple_root_path(self) -> str:
        return str(self.directory / APPLE_ROOT)

    def apple_chain(self) -> Chain:
        def issued(name: str) -> Issued:
            part = self.apple[name]
            return Issued(x509.load_pem_x509_certificate(part["cert"].encode()), _private(part["key"]))

        return Chain(issued("root"), issued("intermediate"), issued("leaf"))

    def google_key(self):
        return _private(self.google_key_pem)

    def cognito_key(self):
        return _private(self.cognito_key_pem)


def load_or_mint(directory: str | Path) -> Credentials:
    """The credentials kept in ``directory``, minted and written there on first use."""
    directory = Path(directory)
    path = directory / FILE
    if path.exists():
        fields = json.loads(path.read_text())
        if not fields.get("webhook_secret"):  # written before the demo sent webhooks
            fields["webhook_secret"] = webhook_secret()
            path.write_text(json.dumps(fields, indent=2))  # the file keeps its 0600
        return Credentials(directory=directory, **fields)
    credentials = _mint(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fields = {k: v for k, v in dataclasses.asdict(credentials).items() if k != "directory"}
    # Private keys: created readable by their owner only, never for a moment by others.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(json.dumps(fields, indent=2))
    chain = credentials.apple_chain()
    (directory / APPLE_ROOT).write_bytes(chain.root.der)
    return credentials


def _mint(directory: Path) -> Credentials:
    chain, google, cognito = mint_chain(days=3650), mint_key(), mint_key()
    apple = {name: {"cert": issued.cert.public_bytes(serialization.Encoding.PEM).decode(),
                    "key": _pem(issued.key)}
             for name, issued in (("root", chain.root), ("intermediate", chain.intermediate), ("leaf", chain.leaf))}
    return Credentials(
        directory=directory, stripe_webhook_secret=new_secret(),
        stripe_api_key="sk_test_demo_" + secrets.token_urlsafe(18),
        revenuecat_auth="Bearer rc_demo_" + secrets.token_urlsafe(18),
        api_key="gk_demo_" + secrets.token_urlsafe(18),
        google_kid=secrets.token_hex(16), google_key_pem=_pem(google),
        cognito_kid=secrets.token_hex(16), cognito_key_pem=_pem(cognito), apple=apple,
        webhook_secret=webhook_secret(),
    )


def webhook_secret() -> str:
    """A Standard Webhooks secret: whsec_ and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def google_certificate(credentials: Credentials) -> str:
    """The self-signed certificate Google's certificate endpoint would publish for the key."""
    return self_signed_pem(credentials.google_key())


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _private(pem: str):
    return serialization.load_pem_private_key(pem.encode(), password=None)
