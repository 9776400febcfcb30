"""An Apple-shaped certificate chain minted at test time, and an App Store JWS signer.

Moved to ``gateway.demo.apple_pki``, its one home, shared with the local demo; re-exported here.
"""
from gateway.demo.apple_pki import *  # noqa: F401,F403
