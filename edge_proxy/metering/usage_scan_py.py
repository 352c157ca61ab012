"""Pure-Python twin of the usage scanner: the specification the compiled twin must match.

After the gateway answers, it reads token usage from the provider's own response: a whole JSON
body (``usage_from_body``) or a stream passing through chunk by chunk (``StreamScanner``).

How a stream is read (the compiled twin ``_fastpath/usage_scan.pyx`` does exactly this):

* The first non-blank byte decides the framing. ``{`` or ``[`` means a plain JSON body (an error
  body, or Gemini's JSON-array stream without ``alt=sse``): it is buffered, up to ``MAX_BODY``
  bytes, and decoded at ``result()``. Anything else is read as Server-Sent Events.
* SSE is split into lines at ``\\n`` (a ``\\r`` before it is JSON whitespace and harmless). Only a
  ``data:`` line whose bytes contain a usage *object* — ``"usage"`` or ``"usageMetadata"``
  followed by ``:`` and ``{`` — is JSON-decoded. That one test covers every event that carries
  usage (OpenAI's final chunk and ``response.completed``, Anthropic's ``message_start`` and
  ``message_delta``, Gemini chunks) and skips the ``"usage": null`` that OpenAI puts on every
  chunk when ``include_usage`` is set. A false hit only costs one decode.
* Between chunks only the unfinished tail of the current line is kept; a tail longer than
  ``MAX_LINE`` is dropped together with the rest of its line.
* ``result()`` may be called at any time, also after a truncated stream: a complete final line
  that lacks its newline is still read; a line cut mid-JSON is skipped.
* Content events (``Usage.content_events``, what a stream without its final usage is billed on):
  a ``data:`` line holding a non-empty string value of one of the format's content keys, tested on
  the bytes without a decode (``"key"``, optional whitespace, ``:``, whitespace, ``"`` and a byte
  that is not ``"``). OpenAI: ``content``, ``arguments``, ``refusal``, ``reasoning_content``,
  ``reasoning`` or ``delta``, on a line that also has a ``"delta"`` key (chat chunks and Responses
  ``*.delta`` events, not Responses' ``*.done`` events that repeat the whole text). Anthropic:
  ``text``, ``partial_json`` or ``thinking`` (so ``content_block_start``'s empty text and the
  first empty ``partial_json`` are framing). Gemini: ``text``, or a ``"functionCall"`` key. A line
  counts once however many it holds. In a JSON body (Gemini's array stream) each Gemini content
  part counts (``usage_types.body_content_events``).
* An in-band error event (``Usage.error_event``): an ``event: error`` line (Anthropic, Responses), or a
  ``data:`` line whose object starts with an ``"error"`` key (OpenAI chat, Gemini) or with
  ``"type": "error"`` (Anthropic). A stream that carries one failed, whatever its HTTP status said. A JSON body
  is an error body when its object starts the same way.

Limitation: each ``data:`` line is decoded on its own; an event whose JSON is split over several
``data:`` lines (legal SSE, but no provider does it) is not joined.
"""
from __future__ import annotations

import re

from .usage_types import (
    MAX_BODY,
    MAX_LINE,
    Usage,
    body_content_events,
    body_is_error,
    body_usage,
    new_accumulator,
)

__all__ = ["StreamScanner", "Usage", "usage_from_body"]

_MARKER = b'"usage'  # a cheap C-level find() before the exact test below
_USAGE_OBJECT = re.compile(rb'"usage(?:Metadata)?"[ \t\r\n]*:[ \t\r\n]*\{')
_WS = b" \t\r\n"
_VALUE = rb'"[ \t\r\n]*:[ \t\r\n]*"[^"]'  # a key's closing quote, then a non-empty string value
_CONTENT = {  # see the module docstring; "none" reads nothing
    "openai": re.compile(rb'"(?:content|arguments|refusal|reasoning_content|reasoning|delta)' + _VALUE),
    "anthropic": re.compile(rb'"(?:text|partial_json|thinking)' + _VALUE),
    "gemini": re.compile(rb'"text' + _VALUE + rb'|"functionCall"'),
}
_OPENAI_DELTA = b'"delta"'
_ERROR_EVENT = re.compile(rb'event:[ \t]*error[ \t\r]*$|data:[ \t]*\{[ \t\r\n]*"(?:error"|type"[ \t]*:[ \t]*"error")')

_UNDECIDED, _SSE, _BODY, _IGNORE = 0, 1, 2, 3


def usage_from_body(fmt: str, body: bytes) -> Usage:
    """Usage from a whole non-streamed JSON body; ``found=False`` for anything unreadable."""
    return body_usage(fmt, body)


def _wanted(line: bytes) -> bool:
    """True for a ``data:`` line that carries a usage object and so deserves a JSON decode."""
    return line.startswith(b"data:") and _USAGE_OBJECT.search(line) is not None


def _is_error(line: bytes) -> bool:
    """True for a line that starts an in-band error event (see the module docstring)."""
    return _ERROR_EVENT.match(line) is not None


def _is_content(fmt: str, line: bytes) -> bool:
    """True for a ``data:`` line that carried content (see the module docstring)."""
    test = _CONTENT.get(fmt)
    if test is None or not line.startswith(b"data:") or test.search(line) is None:
        return False
    return fmt != "openai" or _OPENAI_DELTA in line


class StreamScanner:
    """Reads provider usage from a response stream as it passes, without holding it."""

    __slots__ = ("_acc", "_body", "_body_len", "_error", "_events", "_fmt", "_mode", "_skip", "_tail", "_tail_len")

    def __init__(self, fmt: str) -> None:
        self._acc = new_accumulator(fmt)  # ValueError for an unknown format
        self._fmt = fmt
        self._events = 0  # content events in complete lines
        self._error = False  # an in-band error event went by
        self._mode = _IGNORE if fmt == "none" else _UNDECIDED
        self._tail: list[bytes] = []  # pieces of the unfinished current line
        self._tail_len = 0
        self._skip = False  # the current line overflowed MAX_LINE: drop it up to its newline
        self._body: list[bytes] = []
        self._body_len = 0

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the response (any split: mid-line, mid-UTF-8)."""
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        mode = self._mode
        if mode == _SSE:
            self._feed_sse(chunk)
            return
        if mode == _UNDECIDED:
            head = chunk.lstrip(_WS)[:1]
            if not head:
                return  # blank so far: nothing to keep either way
            mode = self._mode = _BODY if head in b"{[" else _SSE
            if mode == _SSE:
                self._feed_sse(chunk)
                return
        if mode == _BODY:
            self._body_len += len(chunk)
            if self._body_len > MAX_BODY:
                self._mode = _IGNORE  # too big to buffer: give up rather than grow
                self._body = []
            else:
                self._body.append(chunk)

    def _feed_sse(self, chunk: bytes) -> None:
        last = chunk.rfind(b"\n")
        if last < 0:  # still inside one line
            if not self._skip:
                self._keep(chunk)
            return
        start = 0
        if self._tail_len or self._skip:  # finish the line left open by earlier chunks
            first = chunk.find(b"\n")
            if not self._skip:
                self._tail.append(chunk[:first])
                line = b"".join(self._tail)
                self._line(line)
            self._tail = []
            self._tail_len = 0
            self._skip = False
            start = first + 1
        # Complete lines in chunk[start:last], each looked at once.
        if start < last:
            for line in chunk[start:last].split(b"\n"):
                self._line(line)
        if last + 1 < len(chunk):
            self._keep(chunk[last + 1 :])

    def _line(self, line: bytes) -> None:
        if _is_content(self._fmt, line):
            self._events += 1
        if not self._error and _is_error(line):
            self._error = True
        if _MARKER in line and _wanted(line):
            self._acc.feed(line[5:])

    def _keep(self, piece: bytes) -> None:
        self._tail_len += len(piece)
        if self._tail_len > MAX_LINE:
            self._tail = []
            self._tail_len = 0
            self._skip = True
        else:
            self._tail.append(piece)

    def result(self) -> Usage:
        """The usage seen so far; may be called repeatedly and before the stream ends."""
        acc = self._acc
        events, error = self._events, self._error
        if self._mode == _BODY:
            acc = acc.copy()
            body = b"".join(self._body)
            acc.feed_body(body)
            events = body_content_events(self._fmt, body)
            error = body_is_error(body)
        elif self._tail_len and not self._skip:
            line = b"".join(self._tail)  # a final line that lost its newline
            if _wanted(line):
                acc = acc.copy()
                acc.feed(line[5:])
            events += _is_content(self._fmt, line)
            error = error or _is_error(line)
        usage = acc.usage()
        usage.content_events = events
        usage.error_event = error
        return usage
