"""The local demo: every store's credentials minted on this machine, local fakes of the
store APIs, and deliveries signed exactly as each store signs them.

The signers and fakes here are also what the tests sign with (``tests/support`` re-exports
them), so the demo and the tests speak the same wire format. Nothing here is used by the
gateway when it serves real traffic.
"""
