"""A Cognito-shaped token issuer for the demo and the tests: an RSA key minted now, its
JWKS served locally."""
from __future__ import annotations

import json
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.servers import LocalServer

REGION, POOL_ID, CLIENT_ID = "eu-west-1", "eu-west-1_TestPool", "test-app-client"


class CognitoIssuer:
    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.rotate()
        self.server = LocalServer({"GET /jwks.json": lambda request: (200, self.jwks(), {})})

    def rotate(self) -> str:
        kid = uuid.uuid4().hex
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid
        return kid

    def jwks(self) -> dict:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{REGION}.amazonaws.com/{POOL_ID}"

    def env(self) -> dict[str, str]:
        return {"COGNITO_USER_POOL_ID": POOL_ID, "COGNITO_REGION": REGION,
                "COGNITO_APP_CLIENT_IDS": CLIENT_ID, "COGNITO_JWKS_URL": f"{self.server.url}/jwks.json"}

    def token(self, sub: str, use: str = "id", kid: str | None = None, **overrides) -> str:
        now = int(time.time())
        claims = {"sub": sub, "iss": self.issuer, "token_use": use, "iat": now, "exp": now + 3600,
                  "auth_time": now, "cognito:username": sub}
        claims.update({"aud": CLIENT_ID} if use == "id" else {"client_id": CLIENT_ID, "scope": "openid"})
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        kid = kid or self.kid
        return jwt.encode(claims, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def header(self, sub: str, **kwargs) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, **kwargs)}"}

    def __enter__(self) -> "CognitoIssuer":
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)
