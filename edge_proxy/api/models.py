"""`GET /v1/models`: OpenAI's `{object: "list", data: [...]}` of the models the unified API can reach, filtered by
a spend key's policy."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .common import reply

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services


async def list_models(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    key = caller.spend_key
    data, seen = [], set()
    for provider, model in svc.models.listing:
        if model in seen:
            continue
        if key is not None and (
                (key.allowed_providers is not None and provider not in key.allowed_providers)
                or (key.allowed_models is not None and model not in key.allowed_models
                    and f"{provider}/{model}" not in key.allowed_models)):
            continue
        seen.add(model)
        data.append({"id": model, "object": "model", "created": 0, "owned_by": provider})
    reply(proto, 200, {"object": "list", "data": data})
