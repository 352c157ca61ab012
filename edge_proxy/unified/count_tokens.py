"""Anthropic's token count (`POST /v1/messages/count_tokens`) for OpenAI and Gemini models.

Anthropic models count their own. Otherwise the Messages-format body goes to the hub (`anthropic_request_to_openai`)
and from there to the provider's counting endpoint:

- gemini: `POST /v1beta/models/{model}:countTokens` with `{"generateContentRequest": {model, contents, ...}}`,
  answered with `totalTokens`;
- openai: `POST /v1/responses/input_tokens` with a Responses body (`openai_request_to_responses`), the endpoint the
  openai SDK documents as `responses.input_tokens.count`, answered with `input_tokens`.

Both answers come back as Anthropic's `{"input_tokens": N}`. Counting is free at every provider, so these calls
carry no usage to bill. OpenAI-compatible providers other than OpenAI have no counting endpoint: the pipeline
should answer them with a 400 (`count_target` says which).
"""
from __future__ import annotations

from typing import Any

from ._common import bad, obj
from .anthropic_clients import anthropic_request_to_openai
from .gemini import openai_request_to_gemini
from .responses import openai_request_to_responses

__all__ = ["count_request", "count_target", "count_tokens_to_anthropic"]

_PLACEHOLDER_MAX_TOKENS = 1  # count_tokens bodies have no max_tokens; the hub translation wants one


def count_target(usage_format: str, provider: str) -> str:
    """Where a count goes: "anthropic" (as is), "gemini" or "openai" (OpenAI itself only); ValueError otherwise."""
    if usage_format == "anthropic" or usage_format == "gemini" or (usage_format == "openai" and provider == "openai"):
        return usage_format
    bad("model", f"provider {provider!r} has no token counting endpoint")


def count_request(body: dict[str, Any], target: str, model: str) -> tuple[str, dict[str, Any]]:
    """The upstream (path from the provider's base, body) for counting an Anthropic-format body's tokens."""
    body = obj(body, "body")
    hub = anthropic_request_to_openai({**body, "max_tokens": body.get("max_tokens", _PLACEHOLDER_MAX_TOKENS)})
    hub["model"] = model
    if target == "gemini":
        gemini, _ = openai_request_to_gemini(hub)
        gemini.pop("generationConfig", None)  # the count is of the prompt; a generation setting changes nothing
        name = "models/" + model.removeprefix("models/")
        return f"/{name}:countTokens", {"generateContentRequest": {"model": name, **gemini}}
    if target == "openai":
        return "/responses/input_tokens", openai_request_to_responses(hub)
    bad("model", f"no counting translation for {target!r}")


def count_tokens_to_anthropic(answer: Any, target: str) -> dict[str, Any]:
    """The provider's count as Anthropic's `{"input_tokens": N}`."""
    answer = obj(answer, "body")
    value = answer.get("totalTokens") if target == "gemini" else answer.get("input_tokens")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        bad("totalTokens" if target == "gemini" else "input_tokens", "expected a token count")
    return {"input_tokens": value}
