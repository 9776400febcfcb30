"""A local OCSP responder for the test chain: Apple's verifier asks it (through the
certificates' AIA pointer) whether the leaf and intermediate are revoked.

``mode``: ``"good"`` answers a signed GOOD status, ``"revoked"`` a REVOKED one,
``"down"`` a 503 as if the responder could not be reached (the library's retryable case).
"""
from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from devtools.apple_pki import Chain
from devtools.servers import LocalServer


class OcspResponder:
    def __init__(self) -> None:
        self.mode = "good"
        self.issuers: dict[int, tuple] = {}
        self.server = LocalServer({"POST /ocsp": self._answer})

    @property
    def url(self) -> str:
        return f"{self.server.url}/ocsp"

    def serve(self, chain: Chain) -> None:
        """Answer for ``chain``'s intermediate (issued by its root) and leaf."""
        self.issuers[chain.intermediate.cert.serial_number] = (chain.intermediate.cert, chain.root)
        self.issuers[chain.leaf.cert.serial_number] = (chain.leaf.cert, chain.intermediate)

    def _answer(self, request):
        if self.mode == "down":
            return 503, b"", {}
        asked = ocsp.load_der_ocsp_request(request.body)
        cert, issuer = self.issuers[asked.serial_number]
        now = dt.datetime.now(dt.timezone.utc)
        status = ocsp.OCSPCertStatus.GOOD if self.mode == "good" else ocsp.OCSPCertStatus.REVOKED
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=issuer.cert, algorithm=hashes.SHA256(), cert_status=status,
            this_update=now - dt.timedelta(minutes=1), next_update=now + dt.timedelta(hours=1),
            revocation_time=now - dt.timedelta(minutes=5) if self.mode == "revoked" else None,
            revocation_reason=x509.ReasonFlags.key_compromise if self.mode == "revoked" else None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert)
        response = builder.sign(issuer.key, hashes.SHA256())
        return 200, response.public_bytes(serialization.Encoding.DER), {"Content-Type": "application/ocsp-response"}

    def __enter__(self) -> "OcspResponder":
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)
