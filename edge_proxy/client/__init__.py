"""edge_proxy.client: a typed Python client for an edge_proxy (or Lava) gateway, sync and async.

It mirrors the Lava Node SDK (`@lavapayments/nodejs`): `providers`, `generate_forward_token()`, `gateway()` and
every management resource, with Python names (`spend_keys`, `get_subscription`). Answers are plain dicts of the
gateway's JSON; a non-2xx answer raises the error class for its status.

| module | what |
|---|---|
| `gateway.py` | `Gateway` and `AsyncGateway` |
| `config.py` | where the secret key and base URL come from (arguments, then the environment) |
| `transport.py` | the httpx2 layer: requests, JSON answers, errors |
| `forward_tokens.py` | forward tokens and gateway URLs, byte for byte as the Node SDK makes them |
| `providers.py` | `gw.providers.<name>` forward URLs, from the provider catalogue |
| `resources/` | one module per REST resource group |
| `errors.py` | every exception |
"""
try:  # the one third-party package the client needs; the gateway itself never imports this package
    import httpx2 as _httpx2  # noqa: F401
except ImportError as _missing:
    raise ImportError("edge_proxy.client needs the client extra (httpx2 is not installed): "
                      "pip install 'edge-proxy[client]'", name=_missing.name) from None

from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    GatewayError,
    InsufficientBalanceError,
    InvalidSecretKeyError,
    MissingSecretKeyError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from .forward_tokens import UNSET, generate_forward_token
from .gateway import AsyncGateway, Gateway
from .providers import Providers

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncGateway",
    "AuthenticationError",
    "Gateway",
    "GatewayError",
    "InsufficientBalanceError",
    "InvalidSecretKeyError",
    "MissingSecretKeyError",
    "NotFoundError",
    "PermissionDeniedError",
    "Providers",
    "RateLimitError",
    "UNSET",
    "generate_forward_token",
]
