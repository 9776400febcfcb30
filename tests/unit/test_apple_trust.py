"""Trusted roots, the verified-chain cache, and the verifier around Apple's library."""
from __future__ import annotations

import datetime as dt
import hashlib
import time

import pytest

from devtools.apple_pki import mint_chain
from devtools.apple_store import APP_APPLE_ID, BUNDLE_ID, AppStore
from gateway.config import ConfigError
from gateway.errors import Unauthorized
from gateway.providers.apple_chains import BUNDLED_ROOT, VerifiedChains, load_roots
from gateway.providers.apple_trust import AppleVerifier

APPLE_ROOT_CA_G3_SHA256 = "63343abfb89a6a03ebb57e9b3f5fa7be7c4f5c756f3017b3a8c488c3653e9179"


@pytest.fixture(scope="module")
def chain():
    return mint_chain()


def verifier(chain, **kwargs) -> AppleVerifier:
    options = dict(bundle_id=BUNDLE_ID, app_apple_id=APP_APPLE_ID, environments=("Production", "Sandbox"))
    return AppleVerifier([chain.root.der], **{**options, **kwargs})


def test_bundled_root_is_apple_root_ca_g3():
    assert hashlib.sha256(BUNDLED_ROOT.read_bytes()).hexdigest() == APPLE_ROOT_CA_G3_SHA256


def test_default_roots_are_the_bundled_root():
    assert load_roots(()) == [BUNDLED_ROOT.read_bytes()]


def test_roots_load_from_der_and_pem(chain, tmp_path):
    der, pem = chain.write_root(tmp_path, "root.cer"), chain.write_root(tmp_path, "root.pem", pem=True)
    assert load_roots((der, pem)) == [chain.root.der, chain.root.der]


@pytest.mark.parametrize("content", [None, b"not a certificate"])
def test_unreadable_root_names_the_variable(tmp_path, content):
    path = tmp_path / "root.cer"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match="APPLE_ROOT_CERTS"):
        load_roots((str(path),))


def test_same_chain_is_verified_once(chain):
    store, check = AppStore(chain), verifier(chain)
    for n in range(5):
        assert check.transaction(chain.sign(store.transaction(str(n))))["originalTransactionId"] == str(n)
    assert (check.chains.misses, check.chains.hits, len(check.chains)) == (1, 4, 1)


def test_cache_keeps_at_most_max_size_chains(chain):
    chains = VerifiedChains([chain.root.der], max_size=2)
    others = [mint_chain() for _ in range(3)]
    for other in others:
        chains.remember(tuple(other.x5c))
    assert len(chains) == 2
    assert chains.key_for(tuple(others[0].x5c), time.time()) is None
    assert chains.key_for(tuple(others[2].x5c), time.time()) is not None


def test_cache_entry_is_never_used_past_a_certificates_validity(chain):
    leaf_end = chain.leaf.cert.not_valid_after_utc.timestamp()
    later = VerifiedChains([chain.root.der], clock=lambda: leaf_end + 1)
    later.remember(tuple(chain.x5c))
    assert later.key_for(tuple(chain.x5c), time.time()) is None
    fresh = VerifiedChains([chain.root.der])
    fresh.remember(tuple(chain.x5c))
    assert fresh.key_for(tuple(chain.x5c), leaf_end + 1) is None  # a JWS dated after the leaf expired
    assert fresh.key_for(tuple(chain.x5c), time.time()) is not None


def test_jws_dated_after_the_leaf_expired_is_refused_on_a_warm_cache(chain):
    store, check = AppStore(chain), verifier(chain)
    check.transaction(chain.sign(store.transaction("1")))
    late = chain.leaf.cert.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(Unauthorized):
        check.transaction(chain.sign(store.transaction("1", signed=late)))


def test_expired_chain_is_refused():
    old = mint_chain(days=10, valid_from=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30))
    with pytest.raises(Unauthorized):
        verifier(old).transaction(old.sign(AppStore(old).transaction("1")))


def test_chain_in_an_unexpected_order_is_refused(chain):
    store = AppStore(chain)
    with pytest.raises(Unauthorized):
        verifier(chain).transaction(chain.sign(store.transaction("1"), x5c=list(reversed(chain.x5c))))


def test_pem_root_is_trusted_like_der(chain, tmp_path):
    roots = load_roots((chain.write_root(tmp_path, "root.pem", pem=True),))
    check = AppleVerifier(roots, bundle_id=BUNDLE_ID, app_apple_id=None, environments=("Sandbox",))
    assert check.transaction(chain.sign(AppStore(chain).transaction("7")))["productId"]


def test_renewal_info_is_checked_for_its_environment(chain):
    store = AppStore(chain)
    check = verifier(chain, environments=("Sandbox",), app_apple_id=None)
    assert check.renewal(chain.sign(store.renewal("1")), "Sandbox")["autoRenewStatus"] == 1
    with pytest.raises(Unauthorized):
        check.renewal(chain.sign(store.renewal("1")), "Production")


def test_unknown_fields_and_enum_values_are_kept_raw(chain):
    store = AppStore(chain)
    claims = verifier(chain).notification(chain.sign(store.notification("BRAND_NEW", "NEW_SUBTYPE", extra=1)))
    assert (claims["notificationType"], claims["subtype"], claims["extra"]) == ("BRAND_NEW", "NEW_SUBTYPE", 1)



def test_xcode_data_is_accepted_unsigned_only_when_that_environment_is_configured(chain):
    xcode = AppStore(chain, environment="Xcode")
    unsigned_by_apple = mint_chain().sign(xcode.transaction("8"))  # Xcode signs with a local certificate
    assert verifier(chain, environments=("Xcode",)).transaction(unsigned_by_apple)["environment"] == "Xcode"
    with pytest.raises(Unauthorized):
        verifier(chain).transaction(unsigned_by_apple)
