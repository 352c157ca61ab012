"""`POST /v1/embeddings`: OpenAI's embeddings request for any OpenAI-format or Gemini embedding model.

An OpenAI-format provider gets the request as it came (the model name without its provider part) at its own
`/embeddings`; a Gemini model gets it as one `batchEmbedContents` call (embeddings.py translates both ways) and is
billed on an estimate of its input, since Gemini's embed answers carry no token counts; an Anthropic model is a
400 saying Anthropic has no embeddings API. One attempt: a fallback to another model would answer with vectors
of another space, which a client storing them cannot tell apart, so `fallbacks` is a 400.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..billing.bounds import request_bounds
from ..request_path.plan import Attempt, Plan
from ._common import dumps
from .embeddings import (
    embeddings_target,
    estimated_input_tokens,
    gemini_embed_path,
    gemini_embeddings_to_openai,
    openai_embeddings_to_gemini,
)
from .planner import one_attempt_plan, one_model, provider_target
from .translation import JSONAnswer

if TYPE_CHECKING:
    from granian.rsgi import Headers, Scope

    from ..services import Services

_NO_FALLBACKS = "embeddings from another model are vectors of another space"


def embeddings_plan(svc: Services, scope: Scope, headers: Headers, query: str, raw: bytes) -> Plan:
    """`POST /v1/embeddings`: an OpenAI embeddings request for any embedding model in the catalogue."""
    return one_attempt_plan(headers, raw, lambda body, raw: _attempt(svc, body, raw))


def _attempt(svc: Services, body: dict[str, Any], raw: bytes) -> Attempt:
    provider, model, as_is = one_model(svc, body, _NO_FALLBACKS)
    if embeddings_target(provider.usage_format, provider.name) == "openai":
        data = raw if as_is else dumps({**body, "model": model})
        return Attempt(provider, provider_target(svc, provider, "/embeddings"), model, data, request_bounds(data))
    data = dumps(openai_embeddings_to_gemini(body, model))
    estimate = estimated_input_tokens(body)
    answer = GeminiEmbeddingsAnswer(model, body.get("encoding_format"), estimate)
    attempt = Attempt(provider, provider_target(svc, provider, gemini_embed_path(model)), model, data,
                      request_bounds(data), translation=answer)
    attempt.input_estimate = estimate
    return attempt


class GeminiEmbeddingsAnswer(JSONAnswer):
    """A Gemini `batchEmbedContents` answer as OpenAI's embeddings list, whose `usage` is the estimate billed."""

    __slots__ = ("model", "encoding_format", "estimate")

    def __init__(self, model: str, encoding_format: str | None, estimate: int) -> None:
        super().__init__("gemini", "openai")
        self.model, self.encoding_format, self.estimate = model, encoding_format, estimate

    def convert(self, answer: Any) -> dict[str, Any]:
        out = gemini_embeddings_to_openai(answer, self.model, self.encoding_format)
        out["usage"] = {"prompt_tokens": self.estimate, "total_tokens": self.estimate}
        return out
