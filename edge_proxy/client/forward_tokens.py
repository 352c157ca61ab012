"""Forward tokens and gateway URLs, built exactly as the Lava Node SDK builds them.

A forward token is base64 (standard alphabet, padded) of the compact JSON object
`{"secret_key", "customer_id", "meter_slug", "provider_key", "disable_billing"}` in that key order. As in the
Node SDK, where `undefined` is left out and `null` is sent, an argument not given (`UNSET`) is left out and
`None` is sent as JSON `null`.
"""
from __future__ import annotations

import base64
import enum
import json
from typing import Any, Final
from urllib.parse import quote


class Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET
"""The default of an optional argument: "not given", which is left out of a body (unlike None, sent as null)."""

GATEWAY_FORMATS = ("openai", "anthropic", "google", "bedrock")


def generate_forward_token(secret_key: str, *, customer_id: str | None | Unset = UNSET,
                           meter_slug: str | None | Unset = UNSET, provider_key: str | None | Unset = UNSET,
                           disable_billing: bool | None | Unset = UNSET) -> str:
    """The forward token for these options, byte for byte what the Node SDK's generateForwardToken() sends."""
    fields: dict[str, Any] = {"secret_key": secret_key}
    for name, value in (("customer_id", customer_id), ("meter_slug", meter_slug),
                        ("provider_key", provider_key), ("disable_billing", disable_billing)):
        if value is not UNSET:
            fields[name] = value
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)  # JSON.stringify's bytes
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def gateway_token(secret_key: str, *, customer_id: str | None | Unset = UNSET,
                  meter_slug: str | None | Unset = UNSET, provider_key: str | None | Unset = UNSET,
                  disable_billing: bool | None | Unset = UNSET) -> str:
    """The token gateway() sends: customer billing needs both ids; a meter alone sends `customer_id: null`.

    Raises ValueError for a customer_id without a meter_slug, as the Node SDK's gateway() throws.
    """
    if customer_id is not UNSET and meter_slug is not UNSET:
        return generate_forward_token(secret_key, customer_id=customer_id, meter_slug=meter_slug,
                                      provider_key=provider_key, disable_billing=disable_billing)
    if meter_slug is not UNSET:
        return generate_forward_token(secret_key, customer_id=None, meter_slug=meter_slug, provider_key=provider_key)
    if customer_id is not UNSET:
        raise ValueError("gateway(): customer_id requires meter_slug. Provide both for customer billing, "
                         "or omit both for merchant billing.")
    return generate_forward_token(secret_key, provider_key=provider_key)


def gateway_url(api_base: str, url: str, format: str | None = None) -> str:
    """`<api_base>forward?u=<encodeURIComponent(url)>`, or `<api_base>rewrite/<format>/<url>` with the URL raw."""
    if format:
        if format not in GATEWAY_FORMATS:
            raise ValueError(f"format: must be one of {', '.join(GATEWAY_FORMATS)}, not {format!r}")
        return f"{api_base}rewrite/{format}/{url}"
    return f"{api_base}forward?u={quote(url, safe=_URI_COMPONENT_SAFE)}"


# The characters encodeURIComponent leaves alone, besides letters and digits (which quote never escapes).
_URI_COMPONENT_SAFE = "-_.!~*'()"


def gateway_body(body: Any) -> tuple[bytes | None, str | None]:
    """The request body and the content type it implies, as the Node SDK's prepareGatewayBody() decides.

    dicts and lists are sent as JSON (application/json); str and bytes pass through with no implied type; None
    sends no body; anything else is sent as its str().
    """
    if body is None:
        return None, None
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), None
    if isinstance(body, str):
        return body.encode("utf-8"), None
    if isinstance(body, (dict, list, tuple)):
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), "application/json"
    return str(body).encode("utf-8"), None
