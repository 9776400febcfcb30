"""How fast App Store notifications verify, with and without the verified-chain cache.

Each notification carries three JWS (payload, signedTransactionInfo, signedRenewalInfo),
all signed by the same x5c chain. Measured with a P-256 chain minted like Apple's
(devtools/apple_pki.py), so the library does the same X.509 and ES256 work.

    .venv/bin/python bench/apple_verify.py [--seconds 3]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from appstoreserverlibrary.models.Environment import Environment  # noqa: E402
from appstoreserverlibrary.signed_data_verifier import SignedDataVerifier  # noqa: E402

from devtools.apple_ocsp import OcspResponder  # noqa: E402
from devtools.apple_pki import mint_chain  # noqa: E402
from devtools.apple_store import APP_APPLE_ID, BUNDLE_ID, AppStore  # noqa: E402
from gateway.domain.catalog import Catalog  # noqa: E402
from gateway.providers.apple_chains import VerifiedChains  # noqa: E402
from gateway.providers.apple_notifications import AppleNotifications  # noqa: E402
from gateway.providers.apple_trust import AppleVerifier  # noqa: E402


def rate(work, seconds: float) -> tuple[float, float]:
    """Calls per second and mean milliseconds per call, over about ``seconds``."""
    work()  # warm up (and fill whatever cache is in play)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
        count += 1
    elapsed = time.perf_counter() - started
    return count / elapsed, elapsed / count * 1000


def bodies(store: AppStore, n: int = 50) -> list[bytes]:
    return [store.body(store.notification("DID_RENEW", transaction=store.transaction(str(i), token=str(uuid.uuid4())),
                                          renewal=store.renewal(str(i)))) for i in range(n)]


def cycling(items):
    state = {"i": 0}

    def next_item():
        state["i"] = (state["i"] + 1) % len(items)
        return items[state["i"]]
    return next_item


def provider(chain, online: bool, cache_size: int) -> AppleNotifications:
    verifier = AppleVerifier([chain.root.der], bundle_id=BUNDLE_ID, app_apple_id=APP_APPLE_ID,
                             environments=("Production", "Sandbox"), online_checks=online,
                             chains=VerifiedChains([chain.root.der], max_size=cache_size))
    return AppleNotifications(verifier, Catalog(products={}))


def library_only(chain, store) -> callable:
    """Apple's SignedDataVerifier alone, offline: three full verifications per notification."""
    library = SignedDataVerifier([chain.root.der], False, Environment.SANDBOX, BUNDLE_ID, APP_APPLE_ID)
    n = store.notification("DID_RENEW", transaction=store.transaction("1"), renewal=store.renewal("1"))
    signed = (chain.sign(n), n["data"]["signedTransactionInfo"], n["data"]["signedRenewalInfo"])
    return lambda: (library.verify_and_decode_notification(signed[0]),
                    library.verify_and_decode_signed_transaction(signed[1]),
                    library.verify_and_decode_renewal_info(signed[2]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    seconds = parser.parse_args().seconds
    chain = mint_chain()
    store = AppStore(chain)
    offline = bodies(store)
    rows = [("library only, offline (3 x SignedDataVerifier)", rate(library_only(chain, store), seconds))]
    for label, size in (("gateway, offline, chain cache off", 0), ("gateway, offline, chain cache on", 64)):
        adapter, body = provider(chain, False, size), cycling(offline)
        rows.append((label, rate(lambda: adapter.verify(body(), {}), seconds)))
    with OcspResponder() as ocsp:
        online_chain = mint_chain(ocsp_url=ocsp.url)
        ocsp.serve(online_chain)
        online = bodies(AppStore(online_chain))
        body = cycling(online)
        rows.append(("gateway, online OCSP (local responder), cold: new verifier each time",
                     rate(lambda: provider(online_chain, True, 64).verify(body(), {}), seconds)))
        adapter = provider(online_chain, True, 64)
        rows.append(("gateway, online OCSP, library's own 15-min chain cache warm",
                     rate(lambda: adapter.verify(body(), {}), seconds)))
    print(f"{'case':72} {'notifications/s':>16} {'ms each':>8}")
    for label, (per_second, ms) in rows:
        print(f"{label:72} {per_second:16.0f} {ms:8.2f}")


if __name__ == "__main__":
    main()
