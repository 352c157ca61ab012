"""An account of the ledger (ledger.py): a merchant's wallet, a customer's balance, or one of the operator's."""
from __future__ import annotations

from typing import NamedTuple

_TABLE = {"merchant": ("merchants", "merchant_id"), "customer": ("customers", "customer_id"),
          "operator": ("ledger_accounts", "account_id")}


class Payer(NamedTuple):
    kind: str  # "merchant" | "customer" | "operator"
    id: str

    @property
    def table(self) -> str:
        return _TABLE[self.kind][0]

    @property
    def key_column(self) -> str:
        return _TABLE[self.kind][1]

    @property
    def redis_key(self) -> str:
        # the braces are a Redis Cluster hash tag: every key of one payer lands in the same slot
        return f"edge_proxy:{{{self.kind}:{self.id}}}"
