"""Real ``Stripe-Signature`` headers, minted in the test with a secret made at test time.

Moved to ``gateway.demo.stripe_signing``, its one home, shared with the local demo; re-exported here.
"""
from gateway.demo.stripe_signing import *  # noqa: F401,F403
