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

import re
from typing import Any

import msgspec

from ..stream_errors import sse_error_event
from ._common import bounded

__all__ = ["StripUsage", "UsageChunkStrip", "with_usage_requested"]

_decode = msgspec.json.Decoder()
# A blank line, in any of the line endings a stream may use: one scan finds the first of them, where a find() per
# ending would scan to the end of the data for each that is absent, once per event.
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


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
    failed = None  # what it sends is the provider's; a cut is the relay's to log

    def __init__(self) -> None:
        self._buf = bytearray()  # the event begun and not yet ended
        self.closed = False  # the provider's [DONE] went out: the client has the whole stream

    def feed(self, chunk: bytes) -> bytes:
        buf = self._buf
        if buf:
            # The open event can end only in the new bytes, or in a blank line that straddles them (at most 4
            # bytes): look only there, so an event that arrives in many pieces is not scanned again at each.
            if _EVENT_END.search(buf[-3:] + chunk) is None:
                buf += chunk
                bounded(len(buf))
                return b""
            data = bytes(buf) + chunk
        else:
            data = chunk
        out = []
        start = 0
        for end in _EVENT_END.finditer(data):
            event = data[start:end.end()]
            if not _is_usage_chunk(event):
                out.append(event)
                self.closed = self.closed or event.startswith(b"data: [DONE]")
            start = end.end()
        self._buf = bytearray(data[start:])
        bounded(len(self._buf))
        return b"".join(out)

    def finish(self, complete: bool = True) -> bytes:
        """The rest; a cut stream ends with the in-band error event OpenAI's SDKs raise on, as a pass-through
        stream would (request_path/relay.py), in place of the event it cut (which would garble it)."""
        tail, self._buf = bytes(self._buf), bytearray()
        if not complete:
            return sse_error_event("openai")
        return b"" if _is_usage_chunk(tail) else tail


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
