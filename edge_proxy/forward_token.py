"""Decodes Lava forward tokens: picks the compiled decoder once, at import, unless EDGE_PROXY_PURE_PYTHON=1.

Reading that one variable at import is deliberate (as yarl does): it chooses code, not behaviour.
"""
from __future__ import annotations

import os

from ._forward_token_py import decode_forward_token as decode_forward_token_py
from .forward_token_fields import ForwardToken

__all__ = ["ForwardToken", "decode_forward_token", "decode_forward_token_py", "encode_forward_token", "IMPLEMENTATION"]

IMPLEMENTATION = "py"
decode_forward_token = decode_forward_token_py
if os.environ.get("EDGE_PROXY_PURE_PYTHON", "") in ("", "0"):
    try:
        from ._forward_token_c import decode_forward_token  # noqa: F811
        IMPLEMENTATION = "c"
    except ImportError:  # not built: test_fastpath_compiled_loaded fails loudly on a build that should have it
        pass


def encode_forward_token(secret_key: str, customer_id: str | None = None, meter_slug: str | None = None,
                         provider_key: str | None = None, disable_billing: bool | None = None) -> str:
    """A forward token in Lava's format: base64 of the JSON object, unset fields left out."""
    import base64
    import msgspec

    body: dict[str, object] = {"secret_key": secret_key}
    for name, value in (("customer_id", customer_id), ("meter_slug", meter_slug),
                        ("provider_key", provider_key), ("disable_billing", disable_billing)):
        if value is not None:
            body[name] = value
    return base64.b64encode(msgspec.json.encode(body)).decode("ascii")
