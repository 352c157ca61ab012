"""`gw.wallet` (ours): the merchant's own balance, which pays for requests billed to the merchant."""
from __future__ import annotations

from decimal import Decimal

from ._base import R, Resource, usd


class Wallet(Resource[R]):
    def retrieve(self) -> R:
        """`GET wallet`: `{merchant_id, balance}`; also the cheapest way to check that a key works."""
        return self._call("GET", "wallet")

    def credit(self, amount: str | int | Decimal) -> R:
        """`POST wallet/credit {"amount": "USD"}`: add funds; answers the wallet with its new balance."""
        return self._call("POST", "wallet/credit", {"amount": usd(amount)})
