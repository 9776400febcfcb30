"""An Apple-shaped certificate chain minted at test time, and an App Store JWS signer.

The chain mirrors Apple's: a root CA, an intermediate carrying the "Apple Worldwide
Developer Relations" marker OID 1.2.840.113635.100.6.2.1, and a leaf carrying the
App Store receipt-signing OID 1.2.840.113635.100.6.11.1; EC P-256 throughout, with the
extensions OpenSSL's X509_STRICT mode requires (basicConstraints, keyUsage, AKI/SKI).
The library verifies it exactly as it verifies Apple's, once its root is trusted.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

INTERMEDIATE_OID = "1.2.840.113635.100.6.2.1"
LEAF_OID = "1.2.840.113635.100.6.11.1"


@dataclasses.dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.der).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Apple Inc.")])


def _issue(common_name: str, issuer: Issued | None, *, ca: bool, marker: str | None,
           not_before: dt.datetime, not_after: dt.datetime, ocsp_url: str | None) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    signer_key = issuer.key if issuer else key
    public = key.public_key()
    usage = dict(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                 key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name))
               .issuer_name(issuer.cert.subject if issuer else _name(common_name))
               .public_key(public)
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(**usage), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
                              critical=False))
    if marker:
        builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(marker), b"\x05\x00"),
                                        critical=False)
    if ocsp_url and issuer:
        access = x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    return Issued(builder.sign(signer_key, hashes.SHA256()), key)


@dataclasses.dataclass(frozen=True)
class Chain:
    root: Issued
    intermediate: Issued
    leaf: Issued

    @property
    def x5c(self) -> list[str]:
        return [self.leaf.b64, self.intermediate.b64, self.root.b64]

    def write_root(self, directory, name: str = "root.cer", pem: bool = False) -> str:
        """The root's DER (or PEM) in ``directory``; the path goes into APPLE_ROOT_CERTS."""
        path = directory / name
        encoding = serialization.Encoding.PEM if pem else serialization.Encoding.DER
        path.write_bytes(self.root.cert.public_bytes(encoding))
        return str(path)

    def sign(self, claims: dict, x5c: list[str] | None = None) -> str:
        """An App Store JWS: ES256 with the chain in the ``x5c`` header."""
        return jwt.encode(claims, self.leaf.key, algorithm="ES256", headers={"x5c": x5c or self.x5c})


def mint_chain(*, days: int = 365, ocsp_url: str | None = None, leaf_oid: str = LEAF_OID,
               intermediate_oid: str = INTERMEDIATE_OID, valid_from: dt.datetime | None = None) -> Chain:
    """A fresh root, intermediate and leaf. ``ocsp_url`` adds an AIA OCSP pointer to the
    intermediate and leaf, as Apple's certificates have, for online revocation checks."""
    start = valid_from or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    end = start + dt.timedelta(days=days)
    root = _issue("Test Apple Root CA", None, ca=True, marker=None, not_before=start,
                  not_after=end + dt.timedelta(days=365), ocsp_url=None)
    intermediate = _issue("Test Apple WWDR CA", root, ca=True, marker=intermediate_oid, not_before=start,
                          not_after=end + dt.timedelta(days=180), ocsp_url=ocsp_url)
    leaf = _issue("Test Prod ECC Mac App Store and iTunes Store Receipt Signing", intermediate, ca=False,
                  marker=leaf_oid, not_before=start, not_after=end, ocsp_url=ocsp_url)
    return Chain(root, intermediate, leaf)
