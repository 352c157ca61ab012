"""`POST /v1/messages/count_tokens`: Anthropic's token count for any Anthropic, Gemini or OpenAI model.

An Anthropic model counts its own (the request as it came, at `/messages/count_tokens`); a Gemini model gets
`countTokens` and OpenAI `POST /responses/input_tokens`, with the body translated and the answer brought back as
Anthropic's `{"input_tokens": N}` (count_tokens.py). Every one of these endpoints costs nothing at its provider,
and the catalogue marks them free, so the pipeline reserves nothing for them and the log row carries no tokens
and no cost. One attempt: a count is of one model's tokenizer, so another model's count would be a wrong answer,
and `fallbacks` is a 400.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..billing.bounds import request_bounds
from ..request_path.plan import Attempt, Plan
from ._common import dumps
from .count_tokens import count_request, count_target, count_tokens_to_anthropic
from .planner import one_attempt_plan, one_model, provider_target
from .translation import JSONAnswer

if TYPE_CHECKING:
    from granian.rsgi import Headers, Scope

    from ..services import Services

_NO_FALLBACKS = "a count is of one model's tokenizer, and another model's count would be a wrong answer"


def count_tokens_plan(svc: Services, scope: Scope, headers: Headers, query: str, raw: bytes) -> Plan:
    """`POST /v1/messages/count_tokens`: an Anthropic count_tokens request for any model that can count."""
    return one_attempt_plan(headers, raw, lambda body, raw: _attempt(svc, body, raw), "anthropic")


def _attempt(svc: Services, body: dict[str, Any], raw: bytes) -> Attempt:
    provider, model, as_is = one_model(svc, body, _NO_FALLBACKS)
    target = count_target(provider.usage_format, provider.name)
    if target == "anthropic":
        data = raw if as_is else dumps({**body, "model": model})
        return Attempt(provider, provider_target(svc, provider, "/messages/count_tokens"), model, data,
                       request_bounds(data))
    path, upstream = count_request(body, target, model)
    data = dumps(upstream)
    return Attempt(provider, provider_target(svc, provider, path), model, data, request_bounds(data),
                   translation=CountAnswer(target))


class CountAnswer(JSONAnswer):
    """A Gemini or OpenAI token count as Anthropic's `{"input_tokens": N}`; errors in Anthropic's shape."""

    __slots__ = ()

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, "anthropic")

    def convert(self, answer: Any) -> dict[str, Any]:
        return count_tokens_to_anthropic(answer, self.upstream)
