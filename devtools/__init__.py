"""The local demo: every store's credentials minted on this machine, local fakes of the
store APIs, and deliveries signed exactly as each store signs them.

The signers and fakes here are also what the tests and the benchmarks sign with, so the demo
and the tests speak the same wire format. This is a development package: it is not shipped
with the gateway (``gateway`` never imports it; tests/unit/test_layering.py checks), and
``make demo`` runs it as ``python -m devtools``.
"""
