"""The tokens a request is billed for: the provider's final count, or an estimate when it never arrived.

The scanners (`usage.StreamScanner`, `usage_from_body`) say what the provider reported and whether that was its
final count (`Usage.final`), and count the stream events that carried content (`Usage.content_events`). The rule:

- an answer from an API that reports no counts at all (Gemini's embed calls), whose planner estimated its input
  (`input_estimate`): that estimate, no output, `estimated`;
- the final count arrived (`final`): the provider's input and output, `usage_source: provider`;
- an answer with usage that is not a stream: the provider's, `provider`;
- an error answer (status >= 400) without usage, or a `none`-format provider: nothing, `none`;
- a stream without its final count (cut, or an OpenAI stream without `include_usage`), `estimated`: the input is
  the provider's if it gave any (Anthropic's `message_start`, Gemini's running counts), else one token per four
  request-body bytes; the output is the provider's running count or one token per content event, whichever is
  larger;
- a whole answer from an endpoint the catalogue meters (`metered`: chat, messages, responses, embeddings...) that
  reports no usage the scanner can read (none, or a count that is not a whole number up to
  `usage_types.MAX_COUNT`): estimated the same way, `estimated`. Until this release it was `none`, and free;
- any other whole answer without usage (a model list, an endpoint only the caller's own key may call): `none`.

So a stream cut after 15 text deltas is billed 15 output tokens whatever its format, never Anthropic's placeholder
`output_tokens: 1`, and an OpenAI stream cut after one content chunk is billed 1. Cache and reasoning counts are
the provider's when it sent them, else 0.
"""
from __future__ import annotations

import msgspec

from .usage_types import Usage

__all__ = ["Billed", "answer_outcome", "billed_usage"]

_BYTES_PER_INPUT_TOKEN = 4


class Billed(msgspec.Struct, frozen=True, gc=False):
    """The token counts that go on the request-log row and into pricing, and where they came from."""

    # a msgspec Struct, not a frozen dataclass: one is made per request, and this is ten times cheaper to make
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    usage_source: str  # provider | estimated | none


def billed_usage(usage: Usage, *, fmt: str, stream: bool, status: int, request_bytes: int,
                 input_estimate: int | None = None, metered: bool = False) -> Billed:
    """Apply the rule in the module docstring to one upstream answer."""
    if input_estimate is not None and not usage.found and status < 400:
        return Billed(input_estimate, 0, 0, 0, 0, "estimated")
    if fmt == "none" or (not usage.found and (status >= 400 or not (stream or metered))):
        return Billed(0, 0, 0, 0, 0, "none")
    if usage.final or status >= 400 or (usage.found and not stream):
        return Billed(usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.cache_write_tokens,
                      usage.reasoning_tokens, "provider")
    inp = usage.input_tokens if usage.found and usage.input_tokens else request_bytes // _BYTES_PER_INPUT_TOKEN
    out = max(usage.output_tokens, usage.content_events)
    return Billed(inp, out, usage.cached_tokens, usage.cache_write_tokens, usage.reasoning_tokens, "estimated")


def answer_outcome(status: int, usage: Usage, *, complete: bool = True) -> tuple[str, str | None]:
    """The log outcome and error_reason of an upstream answer the client received: a provider error status or an
    in-band error event (`Usage.error_event`) is an `error`, never `completed`; so is a body the provider cut
    (`complete=False`). A client that left is the relay's to say (`partial`)."""
    if status >= 400:
        return "error", f"provider_status_{status}"
    if usage.error_event:
        return "error", "provider_error_event"
    if not complete:
        return "error", "upstream_interrupted"
    return "completed", None
