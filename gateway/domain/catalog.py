"""Which entitlements a store product grants."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

SOURCES = ("stripe", "apple", "google", "revenuecat")


class CatalogError(ValueError):
    """The catalog document is not of the documented shape."""


@dataclasses.dataclass(frozen=True)
class Catalog:
    """Product ids per source mapped to entitlement names, with a default.

    ``default`` is granted by any product listed nowhere; ``None`` grants nothing.
    """

    products: Mapping[tuple[str, str], tuple[str, ...]]
    default: str | None = "premium"

    def entitlements_for(self, source: str, product_id: str | None) -> tuple[str, ...]:
        granted = self.products.get((source, product_id or ""))
        if granted is not None:
            return granted
        return (self.default,) if self.default else ()

    def granted_by(self, source: str, product_ids) -> tuple[str, ...]:
        """What these products grant together (a subscription's several items), each name
        once, in the order first granted."""
        granted: list[str] = []
        for product_id in product_ids:
            granted += [name for name in self.entitlements_for(source, product_id) if name not in granted]
        return tuple(granted)

    def knows(self, source: str, product_id: str) -> bool:
        return (source, product_id) in self.products

    def map_names(self, source: str, names) -> tuple[str, ...]:
        """Entitlement names a provider reports (RevenueCat), mapped where listed."""
        mapped: list[str] = []
        for name in names:
            for granted in self.products.get((source, name), (name,)):
                if granted not in mapped:
                    mapped.append(granted)
        return tuple(mapped)


def parse_catalog(document: object) -> Catalog:
    if not isinstance(document, dict) or not isinstance(document.get("entitlements"), dict):
        raise CatalogError('the catalog needs an object "entitlements"')
    default = document.get("default", "premium")
    if default is not None and not isinstance(default, str):
        raise CatalogError('"default" must be a string or null')
    products: dict[tuple[str, str], tuple[str, ...]] = {}
    for name, per_source in document["entitlements"].items():
        if not isinstance(per_source, dict):
            raise CatalogError(f'entitlement "{name}" must map sources to product lists')
        for source, ids in per_source.items():
            if source not in SOURCES:
                raise CatalogError(f'entitlement "{name}": unknown source "{source}"')
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise CatalogError(f'entitlement "{name}": "{source}" must be a list of ids')
            for product_id in ids:
                granted = products.get((source, product_id), ())
                products[(source, product_id)] = granted + (name,)
    return Catalog(products=products, default=default)


def load_catalog(path: str | None) -> Catalog:
    if not path:
        return Catalog(products={})
    with open(path, encoding="utf-8") as handle:
        try:
            return parse_catalog(json.load(handle))
        except json.JSONDecodeError as exc:
            raise CatalogError(f"{path} is not JSON: {exc}") from exc
