"""Trusted roots for App Store signed data, and a cache of x5c chains already verified.

Apple signs notifications, transactions and renewal info as JWS whose ``x5c`` header
carries leaf, intermediate and root certificates
(https://developer.apple.com/documentation/appstoreservernotifications/responsebodyv2).
Verifying that chain is the costly step, and every JWS of a notification (three per
notification) is signed by the same, rarely rotated chain.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from base64 import b64decode
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.config import ConfigError

BUNDLED_ROOT = Path(__file__).resolve().parent.parent / "data" / "apple" / "AppleRootCA-G3.cer"


def load_roots(paths: tuple[str, ...]) -> list[bytes]:
    """DER bytes of the configured roots (APPLE_ROOT_CERTS, DER or PEM), else Apple Root CA G3."""
    roots = []
    for path in paths or (str(BUNDLED_ROOT),):
        try:
            raw = Path(path).read_bytes()
            cert = x509.load_pem_x509_certificate(raw) if b"-----BEGIN" in raw else x509.load_der_x509_certificate(raw)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"APPLE_ROOT_CERTS: {path!r} is not a readable certificate: {exc}") from None
        roots.append(cert.public_bytes(Encoding.DER))
    return roots


@dataclasses.dataclass(frozen=True)
class _Verified:
    key: EllipticCurvePublicKey
    not_before: datetime
    not_after: datetime


class VerifiedChains:
    """Leaf keys of x5c chains that Apple's verifier has accepted, keyed by the chain.

    A later JWS carrying the same x5c then needs only its ES256 signature checked. An entry
    is used only while now and the JWS's date both fall inside every certificate's
    validity, so it never outlives a certificate and answers exactly as a fresh chain
    check at that date would; least recently used entries go beyond ``max_size``.
    """

    def __init__(self, roots: list[bytes], max_size: int = 64, clock: Callable[[], float] = time.time) -> None:
        self.roots = [x509.load_der_x509_certificate(root) for root in roots]
        self.max_size = max_size
        self.clock = clock
        self._entries: collections.OrderedDict[tuple[str, ...], _Verified] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def key_for(self, x5c: tuple[str, ...] | None, at: float) -> EllipticCurvePublicKey | None:
        with self._lock:
            entry = self._entries.get(x5c) if x5c else None
            if entry is None or not _covers(entry, self.clock()) or not _covers(entry, at):
                self.misses += 1
                return None
            self._entries.move_to_end(x5c)
            self.hits += 1
            return entry.key

    def remember(self, x5c: tuple[str, ...]) -> EllipticCurvePublicKey:
        """Record a chain the library has just verified; returns its leaf's public key."""
        certs = [x509.load_der_x509_certificate(b64decode(c, validate=True)) for c in x5c[:2]]
        certs += [root for root in self.roots if root.subject == certs[1].issuer]
        entry = _Verified(certs[0].public_key(),
                          max(c.not_valid_before_utc for c in certs),
                          min(c.not_valid_after_utc for c in certs))
        with self._lock:
            if self.max_size > 0:
                self._entries[x5c] = entry
                self._entries.move_to_end(x5c)
                while len(self._entries) > self.max_size:
                    self._entries.popitem(last=False)
        return entry.key

    def __len__(self) -> int:
        return len(self._entries)


def _covers(entry: _Verified, at: float) -> bool:
    return entry.not_before.timestamp() <= at <= entry.not_after.timestamp()
