"""Google-shaped Pub/Sub pushes for tests: OIDC push tokens and their certificates.

Moved to ``gateway.demo.google_pubsub``, its one home, shared with the local demo; re-exported here.
"""
from gateway.demo.google_pubsub import *  # noqa: F401,F403
