"""Stream usage on the unified routes: ask an OpenAI-format provider for it, and hide it from a client that did not.

An OpenAI chat stream reports usage only with `stream_options.include_usage`; without it the gateway can only
estimate (LangChain's `ChatOpenAI`, LiteLLM and the plain openai SDK stream without it). Where the gateway may
change the upstream request (the unified routes, not the pass-through ones), it asks for usage itself
(`with_usage_requested`) and, when the client had not asked, drops the extra usage chunk on the way back
(`UsageChunkStrip`), so the client sees the stream it asked for and the log gets the provider's own count.
With `include_usage` OpenAI also puts `"usage": null` on every other chunk; that field is in the documented chunk
shape either way, so those chunks pass through byte for byte.
"""
from __future__ import annotations

from typing import Any

import msgspec

from ..stream_errors import sse_error_event

__all__ = ["StripUsage", "UsageChunkStrip", "with_usage_requested"]

_decode = msgspec.json.Decoder()


def with_usage_requested(body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the body to send upstream, whether the client itself asked for the usage chunk). A request that does not
    stream is returned as it is."""
    options = body.get("stream_options")
    asked = isinstance(options, dict) and options.get("include_usage") is True
    if body.get("stream") is not True or asked:
        return body, asked
    merged = dict(options) if isinstance(options, dict) else {}
    merged["include_usage"] = True
    return {**body, "stream_options": merged}, False


class UsageChunkStrip:
    """An OpenAI chat SSE stream less its usage chunk (`"choices": []` with a usage object); everything else passes
    through unchanged, event by event. Same feed/finish contract as the translators (`_common.StreamTranslator`),
    so it chains with them; an upstream error event is passed on as it came, and a cut ends in an error event."""

    __slots__ = ("_buf", "closed")

    def __init__(self) -> None:
        self._buf = b""
        self.closed = False  # the provider's [DONE] went out: the client has the whole stream

    def feed(self, chunk: bytes) -> bytes:
        data = self._buf + chunk
        out = []
        start = 0
        while True:
            end, sep = _event_end(data, start)
            if end < 0:
                break
            event = data[start:end + sep]
            if not _is_usage_chunk(event):
                out.append(event)
                self.closed = self.closed or event.startswith(b"data: [DONE]")
            start = end + sep
        self._buf = data[start:]
        return b"".join(out)

    def finish(self, complete: bool = True) -> bytes:
        """The rest; a cut stream ends with the in-band error event OpenAI's SDKs raise on, as a pass-through
        stream would (request_path/relay.py)."""
        tail, self._buf = self._buf, b""
        tail = b"" if _is_usage_chunk(tail) else tail
        return tail if complete else tail + sse_error_event("openai")


def _event_end(data: bytes, start: int) -> tuple[int, int]:
    """Where the next event that starts at `start` ends (its blank line), and the blank line's length."""
    ends = [(i, len(sep)) for sep in (b"\n\n", b"\r\n\r\n", b"\r\r") if (i := data.find(sep, start)) >= 0]
    return min(ends) if ends else (-1, 0)


def _is_usage_chunk(event: bytes) -> bool:
    if b'"usage"' not in event or b'"choices"' not in event:
        return False
    for line in event.splitlines():
        if line.startswith(b"data:"):
            try:
                value = _decode.decode(line[5:])
            except msgspec.DecodeError:
                return False
            return (isinstance(value, dict) and value.get("choices") == [] and isinstance(value.get("usage"), dict))
    return False


class StripUsage:
    """The attempt translation (`request_path.plan.Translation`) for an OpenAI-format client and provider when the
    gateway asked for usage the client did not: bodies as they came, streams less the usage chunk."""

    __slots__ = ()
    client_format = "openai"

    def body(self, data: bytes, status: int) -> bytes:
        return data

    def stream(self) -> UsageChunkStrip:
        return UsageChunkStrip()
