"""OpenAI embeddings (`POST /v1/embeddings`) for Gemini models: Gemini's `batchEmbedContents`, both ways.

OpenAI-format providers take the request unchanged. A Gemini model gets every input as one request of a
`batchEmbedContents` call (`dimensions` → `outputDimensionality`), and the `embeddings` come back as OpenAI's
`data` list, as floats or, for `encoding_format: base64` (what the openai SDKs ask for by default), as base64
little-endian float32, as OpenAI sends them. Anthropic has no embeddings API: `embeddings_target` refuses it with a
message that says so.

Gemini's embed answers carry no token counts (the Gemini API's `BatchEmbedContentsResponse` has `embeddings` only;
`usageMetadata` is Vertex AI's), yet Google bills them by input token, so the request is billed on an estimate
(`estimated_input_tokens`, logged `usage_source: estimated`) that the answer's `usage` reports too. The rule, per
input: one token per ASCII digit plus one per four other UTF-8 bytes, rounded up, at least one. Google documents
"a token is about 4 characters" for Gemini; counting bytes instead of characters keeps that for English and counts
non-Latin scripts (2 to 4 bytes a character) closer to what a SentencePiece vocabulary makes of them, and digits
count one each because Gemini's tokenizer (the one Gemma's report describes) splits numbers into digits. It is
an estimate, not a bound: text denser in tokens than that (random strings, some code) is billed under its true
count; calling countTokens first would be exact but would double the upstream round trips of every embed call.
"""
from __future__ import annotations

import base64
import struct
from typing import Any

from ._common import bad, obj, opt_int, req_str

__all__ = ["embeddings_target", "estimated_input_tokens", "gemini_embed_path", "gemini_embeddings_to_openai",
           "openai_embeddings_to_gemini"]

_DIGITS = b"0123456789"
_BYTES_PER_TOKEN = 4


def embeddings_target(usage_format: str, provider: str) -> str:
    """The format an embeddings request goes upstream in ("openai" or "gemini"); ValueError for providers
    without an embeddings API (Anthropic), which the route answers with a 400 naming the reason."""
    if usage_format in ("openai", "gemini"):
        return usage_format
    bad("model", f"provider {provider!r} has no embeddings API: pick an OpenAI or Gemini embedding model")


def gemini_embed_path(model: str) -> str:
    """The path of Gemini's batch embed call for `model` (`models/` accepted), from the provider's base URL
    (`/v1beta`), as `count_tokens.count_request` gives its paths."""
    model = model.removeprefix("models/")
    if not model or any(c in model for c in "/?#:%\\ "):
        bad("model", "expected a Gemini model name")
    return f"/models/{model}:batchEmbedContents"


def _inputs(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, list) and value and all(isinstance(v, (int, list)) for v in value):
        bad("input", "Gemini embeds text, not token ids: send strings")
    bad("input", "expected a non-empty string or list of strings")


def estimated_input_tokens(body: dict[str, Any]) -> int:
    """The input tokens an embeddings request is billed for when its answer reports none (the module docstring
    has the rule and why)."""
    total = 0
    for text in _inputs(obj(body, "body")):
        data = text.encode()
        digits = len(data) - len(data.translate(None, _DIGITS))
        total += max(1, digits + -(-(len(data) - digits) // _BYTES_PER_TOKEN))
    return total


def openai_embeddings_to_gemini(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI embeddings request as a Gemini `batchEmbedContents` body (one request per input)."""
    body = obj(body, "body")
    dims = opt_int(body, "dimensions")
    if body.get("encoding_format") not in (None, "float", "base64"):
        bad("encoding_format", "expected float or base64")
    name = "models/" + model.removeprefix("models/")
    requests = []
    for text in _inputs(body):
        request: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if dims is not None:
            request["outputDimensionality"] = dims
        requests.append(request)
    return {"requests": requests}


def gemini_embeddings_to_openai(body: dict[str, Any], model: str, encoding_format: str | None = None) -> dict[str, Any]:
    """A Gemini `batchEmbedContents` (or `embedContent`) answer as OpenAI's embeddings list."""
    body = obj(body, "body")
    if isinstance(body.get("embedding"), dict):
        vectors = [body["embedding"]]
    elif isinstance(body.get("embeddings"), list):
        vectors = body["embeddings"]
    else:
        bad("embeddings", "expected a list of embeddings")
    data = []
    for i, vector in enumerate(vectors):
        values = obj(vector, f"embeddings[{i}]").get("values")
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
            bad(f"embeddings[{i}].values", "expected a list of numbers")
        embedding: Any = values
        if encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    return {"object": "list", "data": data, "model": req_str({"model": model}, "model", "body"),
            "usage": {"prompt_tokens": 0, "total_tokens": 0}}
