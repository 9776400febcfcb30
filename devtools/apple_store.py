"""App Store signed data for the demo and the tests: transactions, renewal info and V2
notifications, signed with a chain from ``apple_pki`` exactly as the App Store signs them.

Field names follow Apple's JWSTransactionDecodedPayload, JWSRenewalInfoDecodedPayload and
responseBodyV2DecodedPayload.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

from devtools.apple_pki import Chain

BUNDLE_ID = "com.example.app"
APP_APPLE_ID = 1234567890
PRODUCT = "com.example.premium.monthly"
AUTO_RENEWABLE = "Auto-Renewable Subscription"


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


class AppStore:
    """Signs what the App Store would send for one app in one environment."""

    def __init__(self, chain: Chain, *, bundle_id: str = BUNDLE_ID, app_apple_id: int | None = APP_APPLE_ID,
                 environment: str = "Sandbox") -> None:
        self.chain, self.bundle_id, self.app_apple_id, self.environment = chain, bundle_id, app_apple_id, environment

    def env(self, root_path: str) -> dict[str, str]:
        """Gateway settings that trust this store's chain."""
        return {"APPLE_BUNDLE_ID": BUNDLE_ID, "APPLE_APP_APPLE_ID": str(APP_APPLE_ID),
                "APPLE_ROOT_CERTS": root_path}

    def transaction(self, original_id: str, *, token: str | None = None, product: str = PRODUCT,
                    expires: datetime | None = None, signed: datetime | None = None,
                    revoked: datetime | None = None, kind: str = AUTO_RENEWABLE, **extra) -> dict:
        signed = signed or now()
        claims = {
            "transactionId": extra.pop("transaction_id", original_id), "originalTransactionId": original_id,
            "bundleId": self.bundle_id, "productId": product, "purchaseDate": ms(signed - timedelta(minutes=1)),
            "originalPurchaseDate": ms(signed - timedelta(minutes=1)), "quantity": 1, "type": kind,
            "inAppOwnershipType": "PURCHASED", "signedDate": ms(signed), "environment": self.environment,
            "transactionReason": "PURCHASE", "storefront": "USA", "storefrontId": "143441",
            "price": 9990, "currency": "USD",
        }
        if kind == AUTO_RENEWABLE:
            claims["expiresDate"] = ms(expires or signed + timedelta(days=30))
        if token:
            claims["appAccountToken"] = token
        if revoked:
            claims.update(revocationDate=ms(revoked), revocationReason=0)
        return {**claims, **extra}

    def renewal(self, original_id: str, *, auto_renew: bool = True, retry: bool = False,
                grace_until: datetime | None = None, signed: datetime | None = None,
                product: str = PRODUCT, **extra) -> dict:
        claims = {"originalTransactionId": original_id, "autoRenewProductId": product, "productId": product,
                  "autoRenewStatus": 1 if auto_renew else 0, "isInBillingRetryPeriod": retry,
                  "signedDate": ms(signed or now()), "environment": self.environment}
        if grace_until:
            claims["gracePeriodExpiresDate"] = ms(grace_until)
        return {**claims, **extra}

    def notification(self, kind: str, subtype: str | None = None, *, transaction: dict | None = None,
                     renewal: dict | None = None, signed: datetime | None = None, status: int | None = 1,
                     **top) -> dict:
        """``status``: the subscription's status as of ``signed`` (1 active, 2 expired, 3 billing
        retry, 4 billing grace period, 5 revoked); ``None`` leaves it out, as payloads before
        App Store Server Notifications 2.8 did."""
        data = {"appAppleId": self.app_apple_id, "bundleId": self.bundle_id, "bundleVersion": "42",
                "environment": self.environment}
        if status is not None:
            data["status"] = status
        if transaction is not None:
            data["signedTransactionInfo"] = self.chain.sign(transaction)
        if renewal is not None:
            data["signedRenewalInfo"] = self.chain.sign(renewal)
        claims = {"notificationType": kind, "notificationUUID": str(uuid.uuid4()), "data": data,
                  "version": "2.0", "signedDate": ms(signed or now())}
        if subtype:
            claims["subtype"] = subtype
        return {**claims, **top}

    def body(self, notification: dict, chain: Chain | None = None) -> bytes:
        return json.dumps({"signedPayload": (chain or self.chain).sign(notification)}).encode()
