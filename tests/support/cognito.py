"""A Cognito-shaped token issuer for tests: an RSA key minted now, its JWKS served locally.

Moved to ``gateway.demo.cognito``, its one home, shared with the local demo; re-exported here.
"""
from gateway.demo.cognito import *  # noqa: F401,F403
