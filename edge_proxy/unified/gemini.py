"""OpenAI chat completions → Gemini `generateContent`, and Gemini responses and streams back to OpenAI.

Used when a `/v1/chat/completions` (or, composed with `anthropic.py`, a `/v1/messages`) request goes to a
provider whose catalogue `usage_format` is "gemini". The model is not in a Gemini body but in the URL:
`gemini_path`. Pure functions over dicts and bytes; malformed input raises ValueError("<json path>: <what>").

Gemini function calls usually carry no id, so tool call ids come from `id_factory`; a later `tool` message is
matched to its function name through the assistant message that made the call. Gemini 3 wants a function call's
`thoughtSignature` back in the next turn: it travels as `extra_content.google.thought_signature` on the OpenAI
tool call, as in Google's own OpenAI-compatible endpoint.
"""
from __future__ import annotations

import mimetypes
import time
from typing import Any

import msgspec

from ..stream_errors import sse_error_event
from ._common import (SSE_DONE, IdFactory, StreamTranslator, bad, default_id, dumps_str, event_index,
                      function_arguments, image_url_of, loads, obj, object_at, openai_error_body, openai_parts,
                      opt_int, opt_list, opt_number, parse_data_url, reason, req_str, sse_data, stop_list,
                      token_count)

# Gemini-format clients (`/v1/rewrite/google/…`) live in their own module, for size; part of this module's API.
from .gemini_clients import (
    OpenAIToGeminiStream,
    gemini_request_to_openai,
    gemini_usage,
    openai_response_to_gemini,
    parse_gemini_model_path,
)

FINISH_REASON = {  # Gemini finishReason → OpenAI finish_reason; anything else (OTHER, MALFORMED_…) is "stop"
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mp3"}


def gemini_path(model: str, stream: bool) -> str:
    """The path, from the origin, of a Gemini generate call (`models/` in the model name is accepted)."""
    model = model.removeprefix("models/")
    if not model or "/" in model or "?" in model or "#" in model:
        bad("model", "expected a Gemini model name")
    if stream:
        return f"/v1beta/models/{model}:streamGenerateContent?alt=sse"
    return f"/v1beta/models/{model}:generateContent"


def openai_request_to_gemini(body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """An OpenAI chat completions request as a Gemini `generateContent` body, and whether to stream.

    Mapped: messages (system/developer → systemInstruction, assistant → role "model", tool → functionResponse),
    image/audio/file parts (data: URLs → inlineData, http(s) URLs → fileData), tools → functionDeclarations
    (`parametersJsonSchema`, so JSON Schema passes unchanged), tool_choice → toolConfig, and temperature, top_p,
    max(_completion)_tokens, stop, n, seed, presence/frequency_penalty, response_format → generationConfig.
    Dropped: logit_bias, logprobs, top_logprobs, user, reasoning_effort, service_tier, store, metadata,
    modalities, audio, prediction, parallel_tool_calls, stream_options (the stream translator's include_usage).
    """
    body = obj(body, "body")
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool_call_id → function name, for the functionResponse

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:  # Gemini refuses a content without parts
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, msg in enumerate(opt_list(body.get("messages"), "messages")):
        path = f"messages[{i}]"
        msg = obj(msg, path)
        role = msg.get("role")
        parts = openai_parts(msg.get("content"), f"{path}.content")
        if role in ("system", "developer"):
            for j, part in enumerate(parts):
                if part["type"] != "text":
                    bad(f"{path}.content[{j}].type", "a system message may hold only text")
                if part["text"]:
                    system.append({"text": part["text"]})
        elif role == "user":
            add("user", [p for j, part in enumerate(parts) if (p := _gemini_part(part, f"{path}.content[{j}]"))])
        elif role == "assistant":
            model_parts = []
            for j, part in enumerate(parts):
                text = part.get(part["type"]) if part["type"] in ("text", "refusal") else None
                if not isinstance(text, str):
                    bad(f"{path}.content[{j}].type", "an assistant message may hold only text")
                if text:
                    model_parts.append({"text": text})
            for j, call in enumerate(opt_list(msg.get("tool_calls"), f"{path}.tool_calls")):
                cpath = f"{path}.tool_calls[{j}]"
                call = obj(call, cpath)
                fn = obj(call.get("function"), f"{cpath}.function")
                name = req_str(fn, "name", f"{cpath}.function")
                if isinstance(call.get("id"), str):
                    call_names[call["id"]] = name
                call_part: dict[str, Any] = {"functionCall": {
                    "name": name, "args": function_arguments(fn.get("arguments"), f"{cpath}.function.arguments")}}
                extra = call.get("extra_content")
                google = extra.get("google") if isinstance(extra, dict) else None
                if isinstance(google, dict) and isinstance(google.get("thought_signature"), str):
                    call_part["thoughtSignature"] = google["thought_signature"]
                model_parts.append(call_part)
            add("model", model_parts)
        elif role == "tool":
            call_id = req_str(msg, "tool_call_id", path)
            called = call_names.get(call_id) or msg.get("name")
            if not isinstance(called, str) or not called:
                bad(f"{path}.tool_call_id", "no earlier assistant tool call has this id")
            text = "".join(p.get("text") or "" for p in parts if p["type"] == "text")
            add("user", [{"functionResponse": {"name": called, "response": _function_response(text)}}])
        else:
            bad(f"{path}.role", f"unsupported role {role!r}")

    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = [_declaration(t, f"tools[{i}]") for i, t in enumerate(opt_list(body.get("tools"), "tools"))]
    if tools:
        out["tools"] = [{"functionDeclarations": tools}]
        if (config := _tool_config(body.get("tool_choice"))) is not None:
            out["toolConfig"] = {"functionCallingConfig": config}
    generation: dict[str, Any] = {}
    for key, name in (("temperature", "temperature"), ("top_p", "topP"), ("presence_penalty", "presencePenalty"),
                      ("frequency_penalty", "frequencyPenalty")):
        if (value := opt_number(body, key)) is not None:
            generation[name] = value
    max_tokens = opt_int(body, "max_completion_tokens")
    if (max_tokens := max_tokens if max_tokens is not None else opt_int(body, "max_tokens")) is not None:
        generation["maxOutputTokens"] = max_tokens
    if stops := stop_list(body.get("stop"), "stop"):
        generation["stopSequences"] = stops
    if (n := opt_int(body, "n")) is not None and n != 1:
        generation["candidateCount"] = n
    if (seed := opt_int(body, "seed")) is not None:
        generation["seed"] = seed
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        generation["responseMimeType"] = "application/json"
        schema = fmt.get("json_schema")
        if fmt["type"] == "json_schema" and isinstance(schema, dict) and isinstance(schema.get("schema"), dict):
            generation["responseJsonSchema"] = schema["schema"]
    if generation:
        out["generationConfig"] = generation
    return out, body.get("stream") is True


def _gemini_part(part: dict[str, Any], path: str) -> dict[str, Any] | None:
    kind = part["type"]
    if kind == "text":
        return {"text": part["text"]} if part["text"] else None
    if kind == "image_url":
        url = image_url_of(part, path)
        if url.startswith("data:"):
            mime, data = parse_data_url(url, f"{path}.image_url.url")
            return {"inlineData": {"mimeType": mime, "data": data}}
        if not url.startswith(("https://", "http://")):
            bad(f"{path}.image_url.url", "expected an http(s) or data: URL")
        # Gemini fetches the URL itself; mimeType is a guess from the extension, left out when there is none.
        file_data: dict[str, str] = {"fileUri": url}
        if guessed := mimetypes.guess_type(url.split("?", 1)[0])[0]:
            file_data = {"mimeType": guessed, "fileUri": url}
        return {"fileData": file_data}
    if kind == "input_audio":
        audio = obj(part.get("input_audio"), f"{path}.input_audio")
        fmt = audio.get("format")
        if fmt not in _AUDIO_MIME:
            bad(f"{path}.input_audio.format", "expected wav or mp3")
        return {"inlineData": {"mimeType": _AUDIO_MIME[fmt], "data": req_str(audio, "data", f"{path}.input_audio")}}
    if kind == "file":
        file = obj(part.get("file"), f"{path}.file")
        if not isinstance(file.get("file_data"), str):
            bad(f"{path}.file", "only inline file_data can be sent to Gemini (not file_id)")
        mime, data = parse_data_url(file["file_data"], f"{path}.file.file_data")
        return {"inlineData": {"mimeType": mime, "data": data}}
    bad(f"{path}.type", f"a {kind!r} part cannot be sent to Gemini")


def _function_response(text: str) -> dict[str, Any]:
    # Gemini's response must be an object: a JSON object result goes as is, anything else under "output".
    try:
        value = loads(text) if text.lstrip().startswith("{") else None
    except msgspec.DecodeError:
        value = None
    return value if isinstance(value, dict) else {"output": text}


def _declaration(tool: Any, path: str) -> dict[str, Any]:
    tool = obj(tool, path)
    if tool.get("type", "function") != "function":
        bad(f"{path}.type", "only function tools can be sent to Gemini")
    fn = obj(tool.get("function"), f"{path}.function")
    out = {"name": req_str(fn, "name", f"{path}.function")}
    if isinstance(fn.get("description"), str):
        out["description"] = fn["description"]
    if fn.get("parameters"):
        out["parametersJsonSchema"] = fn["parameters"]
    return out


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        return {"mode": "ANY", "allowedFunctionNames": [req_str(choice["function"], "name", "tool_choice.function")]}
    bad("tool_choice", "expected auto, none, required or {type: function, function: {name}}")


# --- Gemini → OpenAI ----------------------------------------------------------------------------------------

def openai_usage(meta: Any) -> dict[str, Any]:
    """Gemini usageMetadata in OpenAI's terms: thinking tokens are output tokens, as OpenAI counts reasoning."""
    meta = meta if isinstance(meta, dict) else {}
    prompt = token_count(meta, "promptTokenCount", "usageMetadata")
    thoughts = token_count(meta, "thoughtsTokenCount", "usageMetadata")
    completion = token_count(meta, "candidatesTokenCount", "usageMetadata") + thoughts
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": token_count(meta, "cachedContentTokenCount", "usageMetadata")},
            "completion_tokens_details": {"reasoning_tokens": thoughts}}


def _split_parts(candidate: dict[str, Any], ids: IdFactory, first_index: int = 0) -> tuple[str, list[dict[str, Any]]]:
    """A candidate's visible text and its function calls as OpenAI tool calls (thought summaries are left out)."""
    content = object_at(candidate, "content")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in opt_list(content.get("parts"), "content.parts"):
        if not isinstance(part, dict) or part.get("thought") is True:
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            fc = part["functionCall"]
            call = {"index": first_index + len(calls), "id": fc.get("id") or ids("call_"), "type": "function",
                    "function": {"name": fc.get("name") or "", "arguments": dumps_str(fc.get("args") or {})}}
            if isinstance(part.get("thoughtSignature"), str):
                call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
            calls.append(call)
    return "".join(texts), calls


def _finish(candidate: dict[str, Any], has_calls: bool) -> str | None:
    if not candidate.get("finishReason"):
        return None
    finish = reason(FINISH_REASON, candidate["finishReason"]) or "stop"
    # Gemini says STOP after a function call; OpenAI clients look for "tool_calls" to run them.
    return "tool_calls" if finish == "stop" and has_calls else finish


def _blocked(body: dict[str, Any]) -> bool:
    feedback = body.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def gemini_response_to_openai(body: dict[str, Any], model: str, *, created: int | None = None,
                              id_factory: IdFactory = default_id) -> dict[str, Any]:
    """A Gemini `generateContent` response as an OpenAI `chat.completion` (one choice per candidate)."""
    body = obj(body, "body")
    candidates = opt_list(body.get("candidates"), "candidates")
    choices = []
    for i, candidate in enumerate(candidates):
        candidate = obj(candidate, f"candidates[{i}]")
        text, calls = _split_parts(candidate, id_factory)
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None,
                                   "refusal": None}
        if calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
        choices.append({"index": candidate.get("index", i), "message": message, "logprobs": None,
                        "finish_reason": _finish(candidate, bool(calls)) or "stop"})
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason): no candidates at all
        choices.append({"index": 0, "message": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None, "finish_reason": "content_filter" if _blocked(body) else "stop"})
    return {"id": body.get("responseId") or id_factory("chatcmpl-"), "object": "chat.completion",
            "created": int(time.time()) if created is None else created, "model": model, "choices": choices,
            "usage": openai_usage(body.get("usageMetadata"))}


def gemini_error_to_openai(body: Any) -> dict[str, Any]:
    """A Gemini error body (`{"error": {code, message, status}}`) in OpenAI's error shape."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    status = error.get("status")
    return openai_error_body(str(error.get("message") or "the provider returned an error"),
                             str(status).lower() if status else "api_error", str(status) if status else None)


class GeminiToOpenAIStream(StreamTranslator):
    """A Gemini `streamGenerateContent?alt=sse` stream as an OpenAI chunk stream (see `_common` for feed/finish).

    Gemini has no end event: the chunk with a finishReason is the last one. A finish_reason chunk goes out as
    soon as a candidate's finishReason arrives; at the end of the upstream body `finish()` sends the usage chunk
    (with include_usage) and `[DONE]` if a finishReason was seen, and otherwise treats the stream as cut.
    """

    def __init__(self, model: str, include_usage: bool = False, *, created: int | None = None,
                 id_factory: IdFactory = default_id) -> None:
        super().__init__()
        self.model, self.include_usage, self._ids = model, include_usage, id_factory
        self.created = int(time.time()) if created is None else created
        self._id: str | None = None
        self._started: set[int] = set()  # candidates whose role chunk went out
        self._calls: dict[int, int] = {}  # candidate → tool calls sent so far (the next tool_calls index)
        self._finished: set[int] = set()
        self._usage: Any = None

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {"id": self._id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:
            chunk["usage"] = None
        return sse_data(chunk)

    def _on_json(self, event: str | None, data: dict[str, Any]) -> bytes:
        if "error" in data:
            error = data["error"] if isinstance(data["error"], dict) else {}
            self.closed = True
            status = error.get("status")
            return self._error(str(error.get("message") or "the provider reported an error"),
                               str(status).lower() if status else "api_error", str(status) if status else None)
        if self._id is None:
            self._id = data.get("responseId") or self._ids("chatcmpl-")
        if data.get("usageMetadata") is not None:
            openai_usage(data["usageMetadata"])  # malformed counts end the stream here, not in finish()
            self._usage = data["usageMetadata"]  # cumulative on every chunk: the last one wins
        out = []
        candidates: list[Any] = data["candidates"] if isinstance(data.get("candidates"), list) else []
        if not candidates and _blocked(data):
            candidates = [{"index": 0, "finishReason": "PROHIBITED_CONTENT"}]
        for position, candidate in enumerate(candidates):
            if not isinstance(candidate, dict):
                continue
            index = (position if candidate.get("index") is None
                     else event_index(candidate["index"], f"candidates[{position}].index"))
            if index in self._finished:
                continue
            text, calls = _split_parts(candidate, self._ids, self._calls.get(index, 0))
            if index not in self._started:
                # The role goes out first, as OpenAI sends it: `content: ""` before text, `content: null` with a
                # turn's first tool calls (never an empty text delta ahead of them).
                self._started.add(index)
                if calls and not text:
                    out.append(self._chunk(index, {"role": "assistant", "content": None, "tool_calls": calls}))
                    self._calls[index] = len(calls)
                    calls = []
                else:
                    out.append(self._chunk(index, {"role": "assistant", "content": ""}))
            if text:
                out.append(self._chunk(index, {"content": text}))
            if calls:
                self._calls[index] = self._calls.get(index, 0) + len(calls)
                out.append(self._chunk(index, {"tool_calls": calls}))
            if finish := _finish(candidate, index in self._calls):
                self._finished.add(index)
                out.append(self._chunk(index, {}, finish))
        return b"".join(out)

    def _on_end(self, complete: bool) -> bytes:
        # A finishReason means the answer is whole, even if the connection then closed badly.
        if not self._finished:
            return self._interrupted(sse_error_event("openai"))
        out = b""
        if self.include_usage:
            out = sse_data({"id": self._id, "object": "chat.completion.chunk", "created": self.created,
                            "model": self.model, "choices": [], "usage": openai_usage(self._usage)})
        return out + SSE_DONE

    def _error(self, message: str, type_: str, code: str | None) -> bytes:
        return sse_data(openai_error_body(message, type_, code))


__all__ = [
    "FINISH_REASON", "gemini_path", "openai_request_to_gemini", "gemini_response_to_openai", "gemini_error_to_openai",
    "openai_usage", "GeminiToOpenAIStream", "parse_gemini_model_path", "gemini_request_to_openai",
    "openai_response_to_gemini", "gemini_usage", "OpenAIToGeminiStream",
]
