"""OpenAI chat completions ⇄ Anthropic Messages, both ways, for requests, responses and streams.

`POST /v1/chat/completions` to a model whose provider speaks Anthropic uses the first half (OpenAI request →
Anthropic request, Anthropic response/stream → OpenAI); `POST /v1/messages` to an OpenAI-format provider uses the
second half. Anthropic ↔ Gemini goes through OpenAI (see `_common.ChainStream`). Pure functions over dicts and
bytes: no HTTP here. Malformed input raises ValueError("<json path>: <what>"), which the caller turns into a 400.

Upstream ids are kept (an Anthropic `msg_…` becomes the chat completion id, `toolu_…` the tool call id, and the
reverse); ids that do not exist upstream come from `id_factory`.
"""
from __future__ import annotations

import time
from typing import Any

from ..stream_errors import sse_error_event
from ._common import (SSE_DONE, IdFactory, StreamTranslator, bad, default_id, dumps_str, event_index,
                      function_arguments, image_url_of, obj, object_at, openai_error_body, openai_parts, opt_int,
                      opt_list, opt_number, parse_data_url, reason, req_str, sse_data, stop_list, token_count)

# The /v1/messages direction lives in its own module, for size; it is part of this module's API.
from .anthropic_clients import (
    STOP_REASON,
    OpenAIToAnthropicStream,
    anthropic_request_to_openai,
    anthropic_usage,
    openai_error_to_anthropic,
    openai_response_to_anthropic,
)
from .response_format import is_response_tool, response_tool, with_response_tool

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients rarely send it

FINISH_REASON = {  # Anthropic stop_reason → OpenAI finish_reason
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
}


# --- OpenAI request → Anthropic request ---------------------------------------------------------------------

def openai_request_to_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completions request as an Anthropic Messages request.

    `response_format` (json_schema, json_object) becomes a forced tool (`response_format.py`).
    Dropped, having no Anthropic equivalent: n, presence_penalty, frequency_penalty, logit_bias, logprobs,
    top_logprobs, seed, reasoning_effort, service_tier, store, metadata, modalities, audio,
    prediction, web_search_options, stream_options (the stream translator's `include_usage` covers it),
    functions/function_call (legacy). `parallel_tool_calls: false` becomes `disable_parallel_tool_use`.
    `temperature` is passed as is (Anthropic's range is 0–1; above it the provider answers 400).
    """
    body = obj(body, "body")
    system: list[dict[str, Any]] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []  # (role, blocks), consecutive same-role messages merged

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:  # Anthropic refuses empty messages; an empty OpenAI message carries nothing anyway
            return
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))

    for i, msg in enumerate(opt_list(body.get("messages"), "messages")):
        path = f"messages[{i}]"
        msg = obj(msg, path)
        role = msg.get("role")
        parts = openai_parts(msg.get("content"), f"{path}.content")
        if role in ("system", "developer"):
            # Anthropic has one top-level system prompt: system messages anywhere in the history join it, in order.
            for j, part in enumerate(parts):
                if part["type"] != "text":
                    bad(f"{path}.content[{j}].type", "a system message may hold only text")
                if part["text"]:
                    system.append(_text_block(part))
        elif role == "user":
            add("user", [b for j, p in enumerate(parts) if (b := _user_block(p, f"{path}.content[{j}]"))])
        elif role == "assistant":
            blocks = []
            for j, part in enumerate(parts):
                if part["type"] in ("text", "refusal"):
                    text = part.get(part["type"])  # a text part's "text", a refusal part's "refusal"
                    if isinstance(text, str) and text:
                        blocks.append(_text_block({**part, "text": text}))
                else:
                    bad(f"{path}.content[{j}].type", "an assistant message may hold only text")
            for j, call in enumerate(opt_list(msg.get("tool_calls"), f"{path}.tool_calls")):
                cpath = f"{path}.tool_calls[{j}]"
                call = obj(call, cpath)
                fn = obj(call.get("function"), f"{cpath}.function")
                blocks.append({"type": "tool_use", "id": req_str(call, "id", cpath),
                               "name": req_str(fn, "name", f"{cpath}.function"),
                               "input": function_arguments(fn.get("arguments"), f"{cpath}.function.arguments")})
            add("assistant", blocks)
        elif role == "tool":
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": req_str(msg, "tool_call_id", path)}
            if isinstance(msg.get("content"), str):
                if msg["content"]:
                    result["content"] = msg["content"]
            else:
                content = [b for j, p in enumerate(parts) if (b := _user_block(p, f"{path}.content[{j}]"))]
                if content:
                    result["content"] = content
            add("user", [result])
        else:
            bad(f"{path}.role", f"unsupported role {role!r}")

    out: dict[str, Any] = {}
    if "model" in body:
        out["model"] = body["model"]
    max_tokens = opt_int(body, "max_completion_tokens")
    out["max_tokens"] = max_tokens if max_tokens is not None else (opt_int(body, "max_tokens") or DEFAULT_MAX_TOKENS)
    if system:
        out["system"] = system[0]["text"] if len(system) == 1 and system[0].keys() == {"type", "text"} else system
    out["messages"] = [{"role": role, "content": _collapse(role, blocks)} for role, blocks in turns]
    if stops := stop_list(body.get("stop"), "stop"):
        out["stop_sequences"] = stops
    for key in ("temperature", "top_p"):
        if (value := opt_number(body, key)) is not None:
            out[key] = value
    if body.get("stream") is True:
        out["stream"] = True
    if isinstance(body.get("user"), str) and body["user"]:
        out["metadata"] = {"user_id": body["user"]}
    tools = [_anthropic_tool(t, f"tools[{i}]") for i, t in enumerate(opt_list(body.get("tools"), "tools"))]
    choice = None
    if tools:
        choice = _anthropic_tool_choice(body.get("tool_choice"))
        if body.get("parallel_tool_calls") is False and (choice or {}).get("type") != "none":
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if (answer_tool := response_tool(body)) is not None:
        tools, choice = with_response_tool(answer_tool, tools, choice)
    if tools:
        out["tools"] = tools
        if choice:
            out["tool_choice"] = choice
    return out


def _text_block(part: dict[str, Any]) -> dict[str, Any]:
    block = {"type": "text", "text": part["text"]}
    if part.get("cache_control"):  # OpenAI-format clients aimed at Claude send Anthropic's cache hints this way
        block["cache_control"] = part["cache_control"]
    return block


def _user_block(part: dict[str, Any], path: str) -> dict[str, Any] | None:
    kind = part["type"]
    if kind == "text":
        return _text_block(part) if part["text"] else None
    if kind == "image_url":
        url = image_url_of(part, path)
        if url.startswith("data:"):
            media_type, data = parse_data_url(url, f"{path}.image_url.url")
            source = {"type": "base64", "media_type": media_type, "data": data}
        elif url.startswith(("https://", "http://")):
            source = {"type": "url", "url": url}
        else:
            bad(f"{path}.image_url.url", "expected an http(s) or data: URL")
        block = {"type": "image", "source": source}
    elif kind == "file":
        file = obj(part.get("file"), f"{path}.file")
        if not isinstance(file.get("file_data"), str):
            bad(f"{path}.file", "only inline file_data can be sent to Anthropic (not file_id)")
        media_type, data = parse_data_url(file["file_data"], f"{path}.file.file_data")
        if media_type != "application/pdf":
            bad(f"{path}.file.file_data", f"Anthropic takes PDF documents, not {media_type}")
        block = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}
    else:
        bad(f"{path}.type", f"a {kind!r} part cannot be sent to Anthropic")
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _collapse(role: str, blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if role == "user":  # Anthropic wants tool results before anything else in the user turn
        blocks.sort(key=lambda b: b["type"] != "tool_result")
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"}:
        text: str = blocks[0]["text"]
        return text
    return blocks


def _anthropic_tool(tool: Any, path: str) -> dict[str, Any]:
    tool = obj(tool, path)
    if tool.get("type", "function") != "function":
        bad(f"{path}.type", "only function tools can be sent to Anthropic")
    fn = obj(tool.get("function"), f"{path}.function")
    out: dict[str, Any] = {"name": req_str(fn, "name", f"{path}.function")}
    if isinstance(fn.get("description"), str):
        out["description"] = fn["description"]
    out["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return out


def _anthropic_tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in ("auto", "none", "required"):
        return {"type": {"required": "any"}.get(choice, choice)}
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        return {"type": "tool", "name": req_str(choice["function"], "name", "tool_choice.function")}
    bad("tool_choice", "expected auto, none, required or {type: function, function: {name}}")


# --- Anthropic response → OpenAI response -------------------------------------------------------------------

def anthropic_response_to_openai(body: dict[str, Any], model: str, *, created: int | None = None,
                                 id_factory: IdFactory = default_id) -> dict[str, Any]:
    """An Anthropic Message as an OpenAI `chat.completion`. Thinking blocks are dropped (no OpenAI field)."""
    body = obj(body, "body")
    texts, calls = [], []
    for i, block in enumerate(opt_list(body.get("content"), "content")):
        block = obj(block, f"content[{i}]")
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif is_response_tool(block):  # response_format's answer is the content, not a tool call
            texts.append(dumps_str(block.get("input") or {}))
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id") or id_factory("call_"), "type": "function",
                          "function": {"name": block.get("name") or "",
                                       "arguments": dumps_str(block.get("input") or {})}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                               "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": body.get("id") or id_factory("chatcmpl-"), "object": "chat.completion",
        "created": int(time.time()) if created is None else created, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _finish(body.get("stop_reason"), bool(calls))}],
        "usage": openai_usage(body.get("usage")),
    }


def _finish(stop_reason: Any, has_calls: bool) -> str:
    finish = reason(FINISH_REASON, stop_reason) or "stop"
    # The response_format tool's answer is content: "tool_use" without a real tool call is a plain stop.
    return "stop" if finish == "tool_calls" and not has_calls else finish


def openai_usage(usage: Any) -> dict[str, Any]:
    """Anthropic usage in OpenAI's terms: OpenAI's prompt_tokens counts cached input, Anthropic's input_tokens not.

    `prompt_tokens` = input + cache reads + cache writes; `prompt_tokens_details` says which part was read from
    the cache (`cached_tokens`) and which was written to it (`cache_write_tokens`, OpenAI's own field for it).
    """
    usage = usage if isinstance(usage, dict) else {}
    read = token_count(usage, "cache_read_input_tokens", "usage")
    write = token_count(usage, "cache_creation_input_tokens", "usage")
    prompt = token_count(usage, "input_tokens", "usage") + read + write
    completion = token_count(usage, "output_tokens", "usage")
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write}}


def anthropic_error_to_openai(body: Any) -> dict[str, Any]:
    """An Anthropic error body (`{"type": "error", "error": {type, message}}`) in OpenAI's error shape."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    return openai_error_body(str(error.get("message") or "the provider returned an error"),
                             str(error.get("type") or "api_error"))


class AnthropicToOpenAIStream(StreamTranslator):
    """An Anthropic Messages SSE stream as an OpenAI `chat.completion.chunk` stream (see `_common` for feed/finish).

    The usage chunk (`"choices": []`) is sent only when the client asked for `stream_options.include_usage`; the
    Anthropic stream always carries usage, so nothing has to be requested upstream.
    """

    def __init__(self, model: str, include_usage: bool = False, *, created: int | None = None,
                 id_factory: IdFactory = default_id) -> None:
        super().__init__()
        self.model, self.include_usage, self._ids = model, include_usage, id_factory
        self.created = int(time.time()) if created is None else created
        self._id: str | None = None
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # Anthropic content block index → OpenAI tool_calls index
        self._answers: set[int] = set()  # content block indexes of the response_format tool: streamed as text
        self._role_sent = False  # the role goes out with the first content, as OpenAI sends it
        self._finished = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if self._id is None:
            self._id = self._ids("chatcmpl-")
        chunk = {"id": self._id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:  # as OpenAI does: null on every chunk but the usage one
            chunk["usage"] = None
        return sse_data(chunk)

    def _first(self, delta: dict[str, Any]) -> dict[str, Any]:
        """The delta, with the role on the answer's first one: a text turn starts as OpenAI's does (content
        ""), a tool-call turn with `content: null`, never an empty text before its tool calls."""
        if self._role_sent:
            return delta
        self._role_sent = True
        if "tool_calls" in delta:
            return {"role": "assistant", "content": None, **delta}
        return {"role": "assistant", "content": "", **{k: v for k, v in delta.items() if k != "content"}}

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):  # message_delta repeats fields; a null one keeps the earlier value
            self._usage.update({k: v for k, v in usage.items() if v is not None})
            openai_usage(self._usage)  # malformed counts end the stream at the event that brought them

    def _on_json(self, event: str | None, data: dict[str, Any]) -> bytes:
        kind = data.get("type") or event
        if kind == "message_start":
            message = object_at(data, "message")
            self._id = self._id or message.get("id")
            self._merge_usage(message.get("usage"))
            return b""
        if kind == "content_block_start":
            block = object_at(data, "content_block")
            index = event_index(data.get("index"), "index")
            if is_response_tool(block):
                self._answers.add(index)
                return b"" if self._role_sent else self._chunk(self._first({}))
            if block.get("type") == "tool_use":
                call_index = self._tools[index] = len(self._tools)
                return self._chunk(self._first({"tool_calls": [{
                    "index": call_index, "id": block.get("id") or self._ids("call_"), "type": "function",
                    "function": {"name": block.get("name") or "", "arguments": ""}}]}))
            if block.get("type") == "text":
                if block.get("text"):
                    return self._chunk(self._first({"content": block["text"]}))
                return b"" if self._role_sent else self._chunk(self._first({}))
            return b""
        if kind == "content_block_delta":
            delta = object_at(data, "delta")
            if delta.get("type") == "text_delta" and delta.get("text"):
                return self._chunk(self._first({"content": delta["text"]}))
            if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                index = event_index(data.get("index"), "index")
                if index in self._answers:
                    return self._chunk(self._first({"content": delta["partial_json"]}))
                if index in self._tools:
                    return self._chunk({"tool_calls": [{"index": self._tools[index],
                                                        "function": {"arguments": delta["partial_json"]}}]})
            return b""  # thinking, signature and citation deltas have no chat-completions field
        if kind == "message_delta":
            self._merge_usage(data.get("usage"))
            delta = object_at(data, "delta")
            if self._finished:
                return b""
            self._finished = True
            return self._chunk(self._first({}), _finish(delta.get("stop_reason"), bool(self._tools)))
        if kind == "message_stop":
            out = b"" if self._finished else self._chunk(self._first({}), "stop")
            if self.include_usage:
                out += sse_data({"id": self._id, "object": "chat.completion.chunk", "created": self.created,
                                 "model": self.model, "choices": [], "usage": openai_usage(self._usage)})
            self.closed = True
            return out + SSE_DONE
        if kind == "error":
            error = object_at(data, "error")
            self.closed = True
            return self._error(str(error.get("message") or "the provider reported an error"),
                               str(error.get("type") or "api_error"), None)
        return b""  # ping and events this translator does not know

    def _on_end(self, complete: bool) -> bytes:
        return self._interrupted(sse_error_event("openai"))  # no message_stop: the stream was cut

    def _error(self, message: str, type_: str, code: str | None) -> bytes:
        return sse_data(openai_error_body(message, type_, code))

__all__ = [
    "DEFAULT_MAX_TOKENS", "FINISH_REASON", "STOP_REASON", "openai_request_to_anthropic",
    "anthropic_response_to_openai", "anthropic_error_to_openai", "openai_usage", "AnthropicToOpenAIStream",
    "anthropic_request_to_openai", "openai_response_to_anthropic", "openai_error_to_anthropic", "anthropic_usage",
    "OpenAIToAnthropicStream",
]
