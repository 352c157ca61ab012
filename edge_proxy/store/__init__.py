"""Where the gateway keeps its state. `open_store(url)` picks the backend from EDGE_PROXY_DATABASE_URL."""
from __future__ import annotations

from .base import SECRET_KEY_PREFIX, Merchant, SecretKey, Store, hash_secret
from .db import open_database
from .sql_store import SQLStore

__all__ = ["SECRET_KEY_PREFIX", "Merchant", "SQLStore", "SecretKey", "Store", "hash_secret", "open_store"]


def open_store(url: str) -> SQLStore:
    return SQLStore(open_database(url, "edge_proxy_store"))
