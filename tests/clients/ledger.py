"""What every client test checks after a call: the request-log row against the fake provider's own usage.

A call is tagged twice with one nonce: in its prompt text (so the fake's `Received` for it can be found) and in
`x-lava-metadata: {"case": nonce}` (so its log row can be found with `metadata_filters`). The row must carry the
tokens the fake reported for that very request (`Received.tokens()`), `usage_source: provider`, and the cost of
those tokens at the gateway's price table; a call the fake answered without usage (an OpenAI stream without
`include_usage`) has nothing to compare with, which is itself a failure on the unified routes.
"""
from __future__ import annotations

import json
import secrets
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import httpx2 as httpx

from edge_proxy.metering.pricing import PriceTable
from edge_proxy.metering.usage_types import Usage
from edge_proxy.money import usd

from ..fake_provider import FakeProvider, Received

ROOT = Path(__file__).resolve().parents[2]
PRICES = PriceTable.load(overrides_path=str(ROOT / "tests" / "fixtures" / "prices_override.toml"))
LOG_WAIT = 15.0  # seconds a row may take to reach the log on a loaded machine (flushes are every 0.2 s)


def nonce() -> str:
    return "case" + secrets.token_hex(6)


def metadata_header(case: str) -> dict[str, str]:
    return {"x-lava-metadata": json.dumps({"case": case})}


def received_for(fake: FakeProvider, case: str) -> list[Received]:
    """The requests the fake got for one case (its nonce is in the prompt), answered ones only."""
    return [r for r in list(fake.received) if case.encode() in r.body and r.api is not None]


def _cached(rec: Received) -> tuple[int, int]:
    u = rec.usage or {}
    if rec.api == "anthropic":
        return u.get("cache_read_input_tokens", 0), u.get("cache_creation_input_tokens", 0)
    if rec.api == "gemini":
        return u.get("cachedContentTokenCount", 0), 0
    details = u.get("prompt_tokens_details") or u.get("input_tokens_details") or {}
    return details.get("cached_tokens", 0), 0


def rows(gateway, case: str, want: int = 1) -> list[dict]:
    """The log rows tagged with `case`, once `want` of them are there."""
    url = gateway.url + "/v1/requests?limit=10&metadata_filters=" + quote(json.dumps([["case", case]]))
    headers = {"authorization": f"Bearer {gateway.secret_key}"}
    deadline = time.monotonic() + LOG_WAIT
    while True:
        data = httpx.get(url, headers=headers, timeout=5).json()["data"]
        if len(data) >= want or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


def check_logged(gateway, fake: FakeProvider, case: str) -> dict:
    """The one row of `case`, checked against the one upstream answer the fake gave for it."""
    [rec] = received_for(fake, case)
    [row] = rows(gateway, case)
    assert rec.usage is not None, f"the provider reported no usage for {rec.path}: nothing to bill on"
    inp, out = rec.tokens()
    cached, write = _cached(rec)
    assert (row["model_usage"]["input_tokens"], row["model_usage"]["output_tokens"]) == (inp, out), row
    assert (row["cached_tokens"], row["cache_write_tokens"], row["usage_source"]) == (cached, write, "provider")
    cost = PRICES.cost(row["provider"], row["model"], Usage(inp, out, cached, write))
    assert cost.priced and cost.nanos is not None, f"no price for {row['provider']}/{row['model']}"
    assert Decimal(row["cost"]) == Decimal(usd(cost.nanos)), row
    assert row["status"] == "completed" and row["outcome"] == "completed"
    return row


def check_estimated(gateway, fake: FakeProvider, case: str, content_events: int) -> dict:
    """The row of a call whose provider reported no usage (an OpenAI stream without include_usage on a route that
    passes the request through unchanged): billed by the estimate rule (`metering.estimate`), one output token per
    content event the fake sent and one input token per four bytes of the upstream request."""
    [rec] = received_for(fake, case)
    [row] = rows(gateway, case)
    assert rec.usage is None
    assert row["usage_source"] == "estimated", row
    assert (row["model_usage"]["input_tokens"], row["model_usage"]["output_tokens"]) == (
        len(rec.body) // 4, content_events), row
    return row


def gemini_embedding_estimate(texts: list[str]) -> int:
    """The gateway's documented estimate for a Gemini embed call (unified/embeddings.py), spelled out again here:
    per input, one token per ASCII digit plus one per four other UTF-8 bytes, rounded up, at least one."""
    total = 0
    for text in texts:
        digits = sum(ch in "0123456789" for ch in text)
        rest = len(text.encode("utf-8")) - digits
        total += max(1, digits + (rest + 3) // 4)
    return total


def check_estimated_embedding(gateway, fake: FakeProvider, case: str, texts: list[str]) -> dict:
    """The row of a Gemini embed call, whose answer carries no token counts: billed the input estimate, priced."""
    [rec] = received_for(fake, case)
    [row] = rows(gateway, case)
    assert rec.api == "gemini.embed" and rec.usage is None and rec.path.endswith(":batchEmbedContents")
    want = gemini_embedding_estimate(texts)
    assert (row["model_usage"]["input_tokens"], row["model_usage"]["output_tokens"]) == (want, 0), row
    assert row["usage_source"] == "estimated" and row["status"] == "completed", row
    cost = PRICES.cost(row["provider"], row["model"], Usage(want, 0))
    assert cost.priced and cost.nanos, f"no price for {row['provider']}/{row['model']}"
    assert Decimal(row["cost"]) == Decimal(usd(cost.nanos)) > 0, row  # never free
    return row


def check_free(gateway, fake: FakeProvider, case: str, path: str) -> dict:
    """The row of a call to an endpoint that costs nothing (a token count): one upstream request to `path`, logged
    with no tokens, a cost of 0 and nothing charged."""
    sent = [r for r in list(fake.received) if case.encode() in r.body]
    assert [r.path for r in sent] == [path]
    [row] = rows(gateway, case)
    assert row["usage_source"] == "none" and row["status"] == "completed", row
    assert (row["model_usage"]["input_tokens"], row["model_usage"]["output_tokens"]) == (0, 0), row
    assert Decimal(row["cost"]) == 0 and Decimal(row["charge"]["amount"]) == 0, row
    return row
