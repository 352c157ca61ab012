"""`gw.models`: the models the gateway can route to, in OpenAI's list shape."""
from __future__ import annotations

from ._base import R, Resource


class Models(Resource[R]):
    def list(self) -> R:
        """`GET models`: `{object: "list", data: [{id, object: "model", created, owned_by}]}`."""
        return self._call("GET", "models")
