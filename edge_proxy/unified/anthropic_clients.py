"""Anthropic Messages clients in front of an OpenAI-format provider: the `POST /v1/messages` half.

Anthropic request → OpenAI request, OpenAI response/stream → Anthropic. `anthropic.py` re-exports everything
public here, so callers import both directions from there. Pure functions over dicts and bytes; malformed input
raises ValueError("<json path>: <what>"). Upstream ids are kept; missing ones come from `id_factory`.
"""
from __future__ import annotations

from typing import Any

from ..stream_errors import sse_error_event
from ._common import (
    IdFactory,
    StreamTranslator,
    bad,
    default_id,
    dumps_str,
    event_index,
    function_arguments,
    obj,
    object_at,
    opt_int,
    opt_list,
    opt_number,
    opt_str,
    reason,
    req_str,
    sse_event,
    stop_list,
    token_count,
)

STOP_REASON = {  # OpenAI finish_reason → Anthropic stop_reason
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
    "content_filter": "refusal",
}

# --- Anthropic request → OpenAI request (POST /v1/messages to an OpenAI-format provider) --------------------

def anthropic_request_to_openai(body: dict[str, Any], *, max_tokens_param: str = "max_tokens") -> dict[str, Any]:
    """An Anthropic Messages request as an OpenAI chat completions request.

    `max_tokens_param`: OpenAI's own reasoning models take only `max_completion_tokens`; most other
    OpenAI-format providers only `max_tokens`, hence the caller's choice. Structured output (`output_config.format`,
    the beta's `output_format`) becomes `response_format` json_schema. Dropped: top_k, thinking, cache_control,
    service_tier, container, mcp_servers, context_management, a tool result's is_error, thinking blocks in
    history. Server tools (web search, code execution…) raise ValueError: an OpenAI-format model cannot run them.
    """
    body = obj(body, "body")
    out: dict[str, Any] = {}
    if "model" in body:
        out["model"] = body["model"]
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, list):
        system = "\n".join(opt_str(obj(b, f"system[{i}]"), "text", f"system[{i}]") for i, b in enumerate(system))
    elif system is not None and not isinstance(system, str):
        bad("system", "expected a string or a list of text blocks")
    if system:
        messages.append({"role": "system", "content": system})
    for i, msg in enumerate(opt_list(body.get("messages"), "messages")):
        path = f"messages[{i}]"
        msg = obj(msg, path)
        role, content = msg.get("role"), msg.get("content")
        if role not in ("user", "assistant"):
            bad(f"{path}.role", f"expected user or assistant, not {role!r}")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        blocks = [obj(b, f"{path}.content[{j}]") for j, b in enumerate(opt_list(content, f"{path}.content"))]
        if role == "assistant":
            texts = [opt_str(b, "text", f"{path}.content[{j}]")
                     for j, b in enumerate(blocks) if b.get("type") == "text"]
            calls = [{"id": req_str(b, "id", f"{path}.content[{j}]"), "type": "function",
                      "function": {"name": req_str(b, "name", f"{path}.content[{j}]"),
                                   "arguments": dumps_str(b.get("input") or {})}}
                     for j, b in enumerate(blocks) if b.get("type") == "tool_use"]
            if not any(texts) and not calls:
                continue  # only thinking: nothing an OpenAI-format model can take back
            message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if any(texts) else None}
            if calls:
                message["tool_calls"] = calls
            messages.append(message)
            continue
        parts: list[dict[str, Any]] = []
        for j, block in enumerate(blocks):
            bpath = f"{path}.content[{j}]"
            if block.get("type") == "tool_result":
                # OpenAI tool messages take text only: images in a result go to the user message that follows.
                result = block.get("content")
                result_blocks = [obj(b, f"{bpath}.content[{k}]") for k, b in enumerate(opt_list(
                    result if not isinstance(result, str) else None, f"{bpath}.content"))]
                text = result if isinstance(result, str) else "\n".join(
                    opt_str(b, "text", f"{bpath}.content[{k}]")
                    for k, b in enumerate(result_blocks) if b.get("type") == "text")
                messages.append({"role": "tool", "tool_call_id": req_str(block, "tool_use_id", bpath),
                                 "content": text})
                parts.extend(_openai_part(b, f"{bpath}.content[{k}]")
                             for k, b in enumerate(result_blocks) if b.get("type") != "text")
            elif block.get("type") in ("thinking", "redacted_thinking"):
                continue
            elif block.get("type") != "text" or block.get("text"):
                parts.append(_openai_part(block, bpath))
        if parts:
            only_text = len(parts) == 1 and parts[0]["type"] == "text"
            messages.append({"role": "user", "content": parts[0]["text"] if only_text else parts})
    out["messages"] = messages
    if (max_tokens := opt_int(body, "max_tokens")) is not None:
        out[max_tokens_param] = max_tokens
    if stops := stop_list(body.get("stop_sequences"), "stop_sequences"):
        out["stop"] = stops
    for key in ("temperature", "top_p"):
        if (value := opt_number(body, key)) is not None:
            out[key] = value
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # so the Anthropic message_delta can carry usage
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    tools = [_openai_tool(t, f"tools[{i}]") for i, t in enumerate(opt_list(body.get("tools"), "tools"))]
    if tools:
        out["tools"] = tools
        choice = body.get("tool_choice")
        if choice is not None:
            choice = obj(choice, "tool_choice")
            kind = choice.get("type")
            if kind in ("auto", "none", "any"):
                out["tool_choice"] = {"any": "required"}.get(kind, kind)
            elif kind == "tool":
                out["tool_choice"] = {"type": "function",
                                      "function": {"name": req_str(choice, "name", "tool_choice")}}
            else:
                bad("tool_choice.type", "expected auto, any, tool or none")
            if choice.get("disable_parallel_tool_use") is True and kind != "none":
                out["parallel_tool_calls"] = False
    if (fmt := _output_format(body)) is not None:
        out["response_format"] = fmt
    return out


def _output_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """Anthropic's structured output (`output_config.format`, or the beta's `output_format`) as OpenAI's
    `response_format`: a JSON schema is a JSON schema on either side."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else body.get("output_format")
    path = "output_config.format" if isinstance(config, dict) else "output_format"
    if fmt is None:
        return None
    fmt = obj(fmt, path)
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        bad(path, "expected {type: json_schema, schema}")
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt["schema"], "strict": True}}


def _openai_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    kind, source = block.get("type"), block.get("source")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            bad(f"{path}.text", "expected a string")
        return {"type": "text", "text": block["text"]}
    if kind in ("image", "document"):
        source = obj(source, f"{path}.source")
        if source.get("type") == "base64":
            media_type = req_str(source, "media_type", f"{path}.source")
            data = req_str(source, "data", f"{path}.source")
            url = f"data:{media_type};base64,{data}"
            if kind == "image":
                return {"type": "image_url", "image_url": {"url": url}}
            return {"type": "file", "file": {"filename": block.get("title") or "document.pdf", "file_data": url}}
        if source.get("type") == "url" and kind == "image":
            return {"type": "image_url", "image_url": {"url": req_str(source, "url", f"{path}.source")}}
        if source.get("type") == "text" and kind == "document":
            return {"type": "text", "text": req_str(source, "data", f"{path}.source")}
        bad(f"{path}.source.type", f"a {source.get('type')!r} {kind} source cannot be sent to an OpenAI-format model")
    bad(f"{path}.type", f"a {kind!r} block cannot be sent to an OpenAI-format model")


def _openai_tool(tool: Any, path: str) -> dict[str, Any]:
    tool = obj(tool, path)
    if tool.get("type") not in (None, "custom"):
        bad(f"{path}.type", f"the Anthropic server tool {tool.get('type')!r} cannot run on an OpenAI-format model")
    fn: dict[str, Any] = {"name": req_str(tool, "name", path)}
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    fn["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": fn}


# --- OpenAI response → Anthropic response -------------------------------------------------------------------

def openai_response_to_anthropic(body: dict[str, Any], model: str, *,
                                 id_factory: IdFactory = default_id) -> dict[str, Any]:
    """An OpenAI `chat.completion` as an Anthropic Message (its first choice: Anthropic has no `n`).

    Tool call arguments that are not a JSON object become `{}` (Anthropic's `input` must be an object).
    """
    body = obj(body, "body")
    choices = opt_list(body.get("choices"), "choices")
    choice = obj(choices[0], "choices[0]") if choices else {}
    message = object_at(choice, "message")
    content: list[dict[str, Any]] = []
    for text in (message.get("content"), message.get("refusal")):
        if isinstance(text, list):  # a few OpenAI-compatible providers answer with content parts
            text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
        if isinstance(text, str) and text:
            content.append({"type": "text", "text": text})
    for i, call in enumerate(opt_list(message.get("tool_calls"), "choices[0].message.tool_calls")):
        call = obj(call, f"choices[0].message.tool_calls[{i}]")
        fn = object_at(call, "function")
        try:
            arguments = function_arguments(fn.get("arguments"), "arguments")
        except ValueError:
            arguments = {}
        content.append({"type": "tool_use", "id": call.get("id") or id_factory("toolu_"),
                        "name": fn.get("name") or "", "input": arguments})
    return {"id": body.get("id") or id_factory("msg_"), "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": reason(STOP_REASON, choice.get("finish_reason")) or "end_turn",
            "stop_sequence": None, "usage": anthropic_usage(body.get("usage"))}


def anthropic_usage(usage: Any) -> dict[str, Any]:
    """OpenAI usage in Anthropic's terms: Anthropic's input_tokens leaves out what was read from the cache."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = token_count(details, "cached_tokens", "usage.prompt_tokens_details") if isinstance(details, dict) else 0
    return {"input_tokens": max(token_count(usage, "prompt_tokens", "usage") - cached, 0),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached,
            "output_tokens": token_count(usage, "completion_tokens", "usage")}


_ERROR_TYPE = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


def openai_error_to_anthropic(body: Any, status: int) -> dict[str, Any]:
    """An OpenAI-format error body in Anthropic's shape; the type comes from the HTTP status, as Anthropic's does."""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    return {"type": "error", "error": {"type": _ERROR_TYPE.get(status, "api_error"),
                                       "message": str(message or "the provider returned an error")}}


class OpenAIToAnthropicStream(StreamTranslator):
    """An OpenAI `chat.completion.chunk` stream as Anthropic's event sequence (see `_common` for feed/finish).

    Anthropic announces usage in message_start, before any content; OpenAI's comes last (the upstream request has
    `stream_options.include_usage`), so message_start carries zeros and message_delta the real counts, which the
    Anthropic SDKs take over. Only choice 0 is translated. A stream that ends after a finish_reason without
    `[DONE]` is accepted as complete; one that ends before a finish_reason is cut.
    """

    def __init__(self, model: str, *, id_factory: IdFactory = default_id) -> None:
        super().__init__()
        self.model, self._ids = model, id_factory
        self._started = False
        self._open: int | None = None  # the content block open now (Anthropic's blocks never interleave)
        self._text_block: int | None = None
        self._blocks = 0
        self._tools: dict[int, int] = {}  # OpenAI tool_calls index → Anthropic content block index
        self._stop: str | None = None
        self._usage: dict[str, Any] = {}

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._text_block = self._open, None, None
        return sse_event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _start_block(self, block: dict[str, Any]) -> bytes:
        out = self._close_block()
        self._open = self._blocks
        self._blocks += 1
        return out + sse_event("content_block_start",
                               {"type": "content_block_start", "index": self._open, "content_block": block})

    def _on_json(self, event: str | None, data: dict[str, Any]) -> bytes:
        if "error" in data and not data.get("choices"):
            error = data["error"]
            message = error.get("message") if isinstance(error, dict) else error
            self.closed = True
            return self._error(str(message or "the provider reported an error"), "api_error", None)
        out = []
        if not self._started:
            self._started = True
            out.append(sse_event("message_start", {"type": "message_start", "message": {
                "id": data.get("id") or self._ids("msg_"), "type": "message", "role": "assistant",
                "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}))
        if isinstance(data.get("usage"), dict):
            anthropic_usage(data["usage"])  # malformed counts end the stream here, not in finish()
            self._usage = data["usage"]
        for choice in opt_list(data.get("choices"), "choices"):
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = object_at(choice, "delta")
            for text in (delta.get("content"), delta.get("refusal")):
                if isinstance(text, str) and text:
                    if self._text_block is None or self._open != self._text_block:
                        out.append(self._start_block({"type": "text", "text": ""}))
                        self._text_block = self._open
                    out.append(sse_event("content_block_delta", {"type": "content_block_delta", "index": self._open,
                                                                 "delta": {"type": "text_delta", "text": text}}))
            for call in opt_list(delta.get("tool_calls"), "choices[0].delta.tool_calls"):
                if not isinstance(call, dict):
                    continue
                fn = object_at(call, "function")
                key = event_index(call.get("index"), "choices[0].delta.tool_calls[].index")
                if key not in self._tools:
                    out.append(self._start_block({"type": "tool_use", "id": call.get("id") or self._ids("toolu_"),
                                                  "name": fn.get("name") or "", "input": {}}))
                    self._tools[key] = self._blocks - 1  # the block _start_block just opened
                if isinstance(fn.get("arguments"), str) and fn["arguments"]:
                    out.append(sse_event("content_block_delta", {
                        "type": "content_block_delta", "index": self._tools[key],
                        "delta": {"type": "input_json_delta", "partial_json": fn["arguments"]}}))
            if choice.get("finish_reason"):
                self._stop = reason(STOP_REASON, choice["finish_reason"]) or "end_turn"
                out.append(self._close_block())
        return b"".join(out)

    def _on_done(self) -> bytes:
        # [DONE] with nothing before it still makes a well-formed (empty) Anthropic message.
        return (b"" if self._started else self._on_json(None, {})) + self._final()

    def _final(self) -> bytes:
        usage = {"output_tokens": 0}  # no usage chunk came: the provider ignored stream_options
        if self._usage:
            usage = anthropic_usage(self._usage)
            del usage["cache_creation_input_tokens"]  # OpenAI reports no cache writes: absent, not a false 0
        self.closed = True
        return (self._close_block()
                + sse_event("message_delta", {"type": "message_delta",
                                              "delta": {"stop_reason": self._stop or "end_turn", "stop_sequence": None},
                                              "usage": usage})
                + sse_event("message_stop", {"type": "message_stop"}))

    def _on_end(self, complete: bool) -> bytes:
        if complete and self._stop is not None:
            return self._final()
        return self._interrupted(sse_error_event("anthropic"))

    def _error(self, message: str, type_: str, code: str | None) -> bytes:
        return sse_event("error", {"type": "error", "error": {"type": "api_error", "message": message}})
