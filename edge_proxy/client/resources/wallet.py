"""`gw.wallet` (ours): the merchant's own balance, which pays for requests billed to the merchant.

Only the gateway's operator funds a wallet (`POST /admin/merchants/{id}/credit`); a merchant's key cannot."""
from __future__ import annotations

from decimal import Decimal

from ._base import R, Resource, usd


class Wallet(Resource[R]):
    def retrieve(self) -> R:
        """`GET wallet`: `{merchant_id, balance}`; also the cheapest way to check that a key works."""
        return self._call("GET", "wallet")

    def credit(self, amount: str | int | Decimal) -> R:
        """`POST wallet/credit`: always a PermissionDeniedError (403) naming the operator's route.

        Kept so that code written when a merchant could fund its own wallet gets the gateway's answer, not an
        AttributeError; it never adds funds."""
        return self._call("POST", "wallet/credit", {"amount": usd(amount)})
