"""How a translated attempt's answer reaches the client: the provider's format -> OpenAI chat (the hub) -> the
client's format, for whole bodies, error bodies and SSE streams. Only the halves that are needed run. Client
formats are the catalogue's usage formats ("openai", "anthropic", "gemini") and "responses" (OpenAI Responses,
whose errors are OpenAI's)."""
from __future__ import annotations

from typing import Any

import msgspec

from ..request_path.plan import StreamTranslator
from ..request_path.replies import GEMINI_STATUS
from ._common import ChainStream, dumps, loads, openai_error_body
from .anthropic import (
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    anthropic_error_to_openai,
    anthropic_response_to_openai,
    openai_error_to_anthropic,
    openai_response_to_anthropic,
)
from .gemini import (
    GeminiToOpenAIStream,
    OpenAIToGeminiStream,
    gemini_error_to_openai,
    gemini_response_to_openai,
    openai_response_to_gemini,
)
from .responses import OpenAIToResponsesStream, openai_response_to_responses


class FormatTranslation:
    """An attempt's answer from `upstream` format ("openai", "anthropic", "gemini") to `client` format (those or
    "responses")."""

    __slots__ = ("upstream", "client_format", "model", "include_usage")

    def __init__(self, upstream: str, client: str, model: str, include_usage: bool) -> None:
        self.upstream, self.client_format, self.model, self.include_usage = upstream, client, model, include_usage

    def body(self, data: bytes, status: int) -> bytes:
        """A whole body (an answer, or an error when status >= 400) in the client's format."""
        if status >= 400:
            return dumps(translate_error(self.upstream, self.client_format, data, status))
        body = loads(data)
        if self.upstream == "anthropic":
            hub = anthropic_response_to_openai(body, self.model)
        elif self.upstream == "gemini":
            hub = gemini_response_to_openai(body, self.model)
        else:
            hub = body
        if self.client_format == "anthropic":
            return dumps(openai_response_to_anthropic(hub, self.model))
        if self.client_format == "gemini":
            return dumps(openai_response_to_gemini(hub, self.model))
        if self.client_format == "responses":
            return dumps(openai_response_to_responses(hub, self.model))
        return dumps(hub)

    def stream(self) -> StreamTranslator:
        """A stream translator (feed/finish): upstream SSE -> OpenAI chunks (the hub) -> the client's SSE."""
        first: StreamTranslator | None = None
        second: StreamTranslator | None = None
        client = self.client_format
        hub_usage = self.include_usage or client != "openai"  # the second half needs the usage chunk
        if self.upstream == "anthropic":
            first = AnthropicToOpenAIStream(self.model, hub_usage)
        elif self.upstream == "gemini":
            first = GeminiToOpenAIStream(self.model, hub_usage)
        if client == "anthropic":
            second = OpenAIToAnthropicStream(self.model)
        elif client == "gemini":
            second = OpenAIToGeminiStream(self.model)
        elif client == "responses":
            second = OpenAIToResponsesStream(self.model)
        if first is not None and second is not None:
            return ChainStream(first, second)
        translator = first or second
        assert translator is not None, "a translation joins two different formats"
        return translator


def translate_error(upstream: str, client: str, data: bytes, status: int) -> dict[str, Any]:
    """A provider's error body (any shape, even not JSON) as the client format's error body."""
    try:
        body = loads(data)
    except (msgspec.DecodeError, ValueError):
        body = None
    if upstream == "anthropic":
        hub = anthropic_error_to_openai(body)
    elif upstream == "gemini":
        hub = gemini_error_to_openai(body)
    elif isinstance(body, dict) and isinstance(body.get("error"), dict):
        hub = body
    else:
        text = data[:500].decode("utf-8", "replace").strip()
        hub = openai_error_body(text or "the provider returned an error", "api_error")
    if client == "anthropic":
        return openai_error_to_anthropic(hub, status)
    if client == "gemini":
        error = hub["error"] if isinstance(hub, dict) and isinstance(hub.get("error"), dict) else {}
        return {"error": {"code": status, "message": str(error.get("message") or "the provider returned an error"),
                          "status": GEMINI_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")}}
    return hub


class JSONAnswer:
    """The translation of an API that answers with one JSON body (embeddings, token counts): `convert` turns a
    2xx body into the client's, and an error body comes in the client format's error shape. Such an API never
    streams, so an event stream in place of its body is not its answer: the client gets one error event."""

    __slots__ = ("upstream", "client_format")

    def __init__(self, upstream: str, client: str) -> None:
        self.upstream, self.client_format = upstream, client

    def convert(self, answer: Any) -> dict[str, Any]:
        raise NotImplementedError

    def body(self, data: bytes, status: int) -> bytes:
        if status >= 400:
            return dumps(translate_error(self.upstream, self.client_format, data, status))
        return dumps(self.convert(loads(data)))

    def stream(self) -> StreamTranslator:
        return _NotAStream(self.client_format)


class _NotAStream:
    __slots__ = ("client_format",)
    closed = False  # its one error event goes out at finish()
    failed = "untranslatable_response"
    _MESSAGE = "the provider answered with an event stream where its API documents one JSON body"

    def __init__(self, client_format: str) -> None:
        self.client_format = client_format

    def feed(self, chunk: bytes) -> bytes:
        return b""

    def finish(self, complete: bool = True) -> bytes:
        error = translate_error("openai", self.client_format,
                                dumps(openai_error_body(self._MESSAGE, "upstream_error")), 502)
        event = b"event: error\n" if self.client_format == "anthropic" else b""
        return event + b"data: " + dumps(error) + b"\n\n"
