"""Spend keys on the request path (Lava's "Manage AI spend"): is this key allowed to make this request?

Answers: 401 when the key is expired or paused; 403 for a model or provider it does not allow.
(Rate, request and spend limits are enforced below, with counters shared across workers.)
"""
from __future__ import annotations

from ..errors import Forbidden, InvalidToken
from .spend_key_store import SpendKey


class SpendKeyGate:
    def __init__(self, db, redis=None) -> None:
        self.db = db
        self.redis = redis

    async def admit(self, key: SpendKey, provider: str, model: str | None) -> None:
        if key.status != "active":
            raise InvalidToken(f"this spend key is {key.status}")
        if key.expired():
            raise InvalidToken("this spend key has expired")
        if key.allowed_providers is not None and provider not in key.allowed_providers:
            raise Forbidden(f"this spend key may not use provider {provider!r}")
        if key.allowed_models is not None and model not in key.allowed_models:
            raise Forbidden(f"this spend key may not use model {model!r}")
