"""Where the gateway keeps its state. `open_store(url)` picks the backend from EDGE_PROXY_DATABASE_URL."""
from __future__ import annotations

from ..errors import SettingsError
from .base import SECRET_KEY_PREFIX, Merchant, SecretKey, Store, hash_secret
from .sqlite import SQLiteStore

__all__ = ["SECRET_KEY_PREFIX", "Merchant", "SecretKey", "Store", "hash_secret", "open_store"]


def open_store(url: str) -> Store:
    if url.startswith("sqlite:"):
        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore
        return PostgresStore(url)
    raise SettingsError(f"EDGE_PROXY_DATABASE_URL: unsupported scheme in {url.split(':', 1)[0]!r}; "
                        "use sqlite:///path.db or postgresql://...")
