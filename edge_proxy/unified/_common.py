"""What every translator shares: JSON and SSE framing, id generation, input checks, and the streaming contract.

A stream translator turns one provider's server-sent events into another format's, as bytes in and bytes out:
`feed(chunk)` takes upstream bytes split anywhere and returns what can be sent now; `finish(complete)` is called
once at the end of the upstream body and returns the tail. A stream that ends without its format's end marker
was cut, and gets one in-band error event in the client's format and never a `[DONE]` (Granian cannot abort a
response whose headers are out, so the error has to be in the body). `feed` and `finish` never raise: an
upstream event that is not JSON, or whose fields are not the types its format documents (a checker below
raised ValueError), also ends the stream with an error event. Usage is checked when its event arrives, so
`finish` has nothing left that can fail. The one exception `feed` raises is `UpstreamEventTooLarge`, for an event
longer than `MAX_EVENT_BYTES` (a provider that never ends its line): the relay ends that stream as a cut one.
"""
from __future__ import annotations

import abc
import base64
import binascii
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import msgspec

from ..upstream.errors import UpstreamEventTooLarge

if TYPE_CHECKING:
    from ..request_path.plan import StreamTranslator as Stream

IdFactory = Callable[[str], str]
"""Makes an id from its prefix (`"chatcmpl-"`, `"call_"`, `"msg_"`, `"toolu_"`). Tests inject a counter."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def default_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")


def dumps(value: Any) -> bytes:
    return _encoder.encode(value)


def dumps_str(value: Any) -> str:
    return _encoder.encode(value).decode()


def loads(data: bytes | str) -> Any:
    return _decoder.decode(data)


def sse_data(value: Any) -> bytes:
    return b"data: " + _encoder.encode(value) + b"\n\n"


def sse_event(name: str, value: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encoder.encode(value) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


# --- input checks: malformed input is a ValueError whose one-line message starts with the JSON path -----------

def bad(path: str, message: str) -> NoReturn:
    raise ValueError(f"{path}: {message}")


def obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        bad(path, "expected an object")
    return value


def object_at(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """parent[key] when it is an object, else {}: for the optional parts of a provider's answer."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def opt_list(value: Any, path: str) -> list[Any]:
    """A list, or [] for null/absent."""
    if value is None:
        return []
    if not isinstance(value, list):
        bad(path, "expected a list")
    return value


def req_str(parent: dict[str, Any], key: str, path: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        bad(f"{path}.{key}", "expected a non-empty string")
    return value


def opt_str(parent: dict[str, Any], key: str, path: str) -> str:
    """An optional string field (a block's `text`, a streamed call's `arguments`): "" when absent or null."""
    value = parent.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        bad(f"{path}.{key}", "expected a string")
    return value


def token_count(usage: dict[str, Any], key: str, path: str) -> int:
    """A provider's token count: 0 when absent or null, and anything but a whole number is malformed (never
    arithmetic on a string)."""
    value = usage.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        bad(f"{path}.{key}", "expected an integer")
    return value


def event_index(value: Any, path: str) -> int:
    """A provider's `index` in a stream (a content block's, a tool call's, a candidate's); absent means 0. It is
    only ever a key, never a list index, but a list or an object as a key would raise TypeError out of feed()."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        bad(path, "expected an integer")
    return value


def reason(table: dict[str, str], value: Any) -> str | None:
    """A finish or stop reason looked up in its table; a value that is not a string has no entry."""
    return table.get(value) if isinstance(value, str) else None


def opt_number(body: dict[str, Any], key: str) -> float | int | None:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        bad(key, "expected a number")
    return value


def opt_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        bad(key, "expected an integer")
    return value


def stop_list(value: Any, path: str) -> list[str]:
    """OpenAI's `stop` (a string or a list of strings) as a list; [] when absent."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return list(value)
    bad(path, "expected a string or a list of strings")


def openai_parts(content: Any, path: str) -> list[dict[str, Any]]:
    """An OpenAI message `content` (string, list of parts or null) as a list of parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        bad(path, "expected a string, a list of content parts or null")
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            bad(f"{path}[{j}]", "expected a content part with a type")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            bad(f"{path}[{j}].text", "expected a string")
    return content


def image_url_of(part: dict[str, Any], path: str) -> str:
    """The URL of an OpenAI `image_url` part (`{"image_url": {"url": ...}}` or the bare-string shorthand)."""
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        bad(f"{path}.image_url.url", "expected a URL")
    return url


def parse_data_url(url: str, path: str) -> tuple[str, str]:
    """`data:<media type>;base64,<data>` as (media type, base64 data). Only base64 data URLs carry binary."""
    head, sep, data = url.partition(",")
    params = head[5:].split(";")
    media_type = params[0].strip().lower()
    if not sep or "base64" not in (p.strip().lower() for p in params[1:]) or not media_type:
        bad(path, "expected a base64 data URL (data:<media type>;base64,...)")
    try:
        # Validated so the upstream's 400 does not blame a payload the client never sent in its format.
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        bad(path, "the data URL is not valid base64")
    return media_type, data


def function_arguments(arguments: Any, path: str) -> dict[str, Any]:
    """A tool call's `arguments` JSON string as an object, as Anthropic and Gemini want it ("" means {})."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if not isinstance(arguments, str):
        bad(path, "expected a JSON string")
    try:
        value = loads(arguments)
    except msgspec.DecodeError:
        bad(path, "not valid JSON")
    if not isinstance(value, dict):
        bad(path, "expected a JSON object")
    return value


def include_usage(body: Any) -> bool:
    """Whether an OpenAI-format client asked for the usage chunk (`stream_options.include_usage`)."""
    options = body.get("stream_options") if isinstance(body, dict) else None
    return isinstance(options, dict) and options.get("include_usage") is True


def openai_error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


# --- server-sent events -------------------------------------------------------------------------------------
MAX_EVENT_BYTES = 16 << 20  # the most of one event a translator holds while it waits for its end


def bounded(held: int) -> None:
    """Refuse to hold more than MAX_EVENT_BYTES of one event: memory per stream stays bounded."""
    if held > MAX_EVENT_BYTES:
        raise UpstreamEventTooLarge(f"one server-sent event went past {MAX_EVENT_BYTES} bytes")


class SSEDecoder:
    """An incremental server-sent-events parser: bytes split anywhere in, (event name, data) pairs out.

    Lines end in LF, CRLF or CR (Gemini sends CRLF); a CR at the very end of a chunk is held back, since it may be
    the first half of a CRLF. Comments and fields other than `event` and `data` are ignored, per the spec.
    """

    __slots__ = ("_buf", "_event", "_data", "_held")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._event: str | None = None
        self._data: list[str] = []
        self._held = 0  # the length of the data lines in `_data`

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        if b"\n" not in chunk and b"\r" not in chunk:
            self._buf += chunk  # mid-line: no rescan, so a long line arriving in pieces stays linear
            bounded(len(self._buf) + self._held)
            return []
        buf = bytes(self._buf) + chunk
        hold = b""
        if buf.endswith(b"\r"):
            buf, hold = buf[:-1], b"\r"
        lines = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._buf = bytearray(lines.pop() + hold)
        out: list[tuple[str | None, str]] = []
        for line in lines:
            self._line(line.decode("utf-8", "replace"), out)
        bounded(len(self._buf) + self._held)
        return out

    def flush(self) -> list[tuple[str | None, str]]:
        """At a clean end of body: the last event even without its blank line."""
        out: list[tuple[str | None, str]] = []
        if self._buf:
            self._line(bytes(self._buf).rstrip(b"\r").decode("utf-8", "replace"), out)
            self._buf = bytearray()
        self._line("", out)
        return out

    def _line(self, line: str, out: list[Any]) -> None:
        if not line:
            if self._data:
                out.append((self._event, "\n".join(self._data)))
            self._event, self._data, self._held = None, [], 0
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._held += len(value)
        elif name == "event":
            self._event = value


class StreamTranslator(abc.ABC):
    """The feed/finish skeleton; subclasses handle decoded events and say how an error looks in their format."""

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self.closed = False  # after the end marker or an error event nothing more is sent
        self.failed: str | None = None  # the log's error_reason when the stream's end is an error event of ours

    def feed(self, chunk: bytes) -> bytes:
        if self.closed:
            return b""
        return self._dispatch(self._sse.feed(chunk))

    def finish(self, complete: bool = True) -> bytes:
        if self.closed:
            return b""
        out = self._dispatch(self._sse.flush()) if complete else b""
        if self.closed:
            return out
        self.closed = True
        return out + self._on_end(complete)

    def _dispatch(self, events: list[tuple[str | None, str]]) -> bytes:
        out = []
        for event, data in events:
            if self.closed:
                break
            if data.strip() == "[DONE]":
                out.append(self._on_done())
                continue
            try:
                value = loads(data)
            except msgspec.DecodeError:
                value = None
            if not isinstance(value, dict):
                self.closed, self.failed = True, "untranslatable_response"
                out.append(self._error("the provider sent an event that is not a JSON object", "upstream_error",
                                       "bad_upstream_event"))
                break
            try:
                out.append(self._on_json(event, value))
            except ValueError as exc:  # a malformed event (the `bad` helpers): the stream ends with an error event
                self.closed, self.failed = True, "untranslatable_response"
                out.append(self._error(f"the provider sent an event that cannot be translated: {exc}",
                                       "upstream_error", "bad_upstream_event"))
                break
        return b"".join(out)

    def _interrupted(self, event: bytes) -> bytes:
        """`event`, the error event that ends a stream the provider ended before its end marker, noted for the log."""
        self.failed = "upstream_interrupted"
        return event

    # what each translator defines
    @abc.abstractmethod
    def _on_json(self, event: str | None, data: dict[str, Any]) -> bytes: ...

    def _on_done(self) -> bytes:
        return b""

    @abc.abstractmethod
    def _on_end(self, complete: bool) -> bytes: ...

    @abc.abstractmethod
    def _error(self, message: str, type_: str, code: str | None) -> bytes: ...


class ChainStream:
    """Two translators in a row (Gemini → OpenAI → Anthropic): the hub format is never sent to anyone."""

    def __init__(self, first: Stream, second: Stream) -> None:
        self.first, self.second = first, second

    @property
    def closed(self) -> bool:
        return self.second.closed  # what the client sees is the second's stream

    @property
    def failed(self) -> str | None:
        return self.first.failed or self.second.failed  # the first's error event reaches the client translated

    def feed(self, chunk: bytes) -> bytes:
        return self.second.feed(self.first.feed(chunk))

    def finish(self, complete: bool = True) -> bytes:
        # The first's tail always ends in its end marker or an error event, which the second translates.
        return self.second.feed(self.first.finish(complete)) + self.second.finish(complete)
