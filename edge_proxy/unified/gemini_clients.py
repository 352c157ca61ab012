"""Gemini-format clients in front of an OpenAI-format hub: the `client_format=google` half of `/v1/rewrite`.

Gemini request → OpenAI request, OpenAI response/stream → Gemini. A Gemini body names neither the model nor
whether to stream (both are in its URL, `models/{model}:streamGenerateContent`), so the caller passes them;
`parse_gemini_model_path` reads them from such a path. Pure functions; malformed input raises
ValueError("<json path>: <what>").

OpenAI tool call ids travel as Gemini `functionCall.id`; a `functionResponse` without an id is matched to the
earliest unanswered call of the same name.
"""
from __future__ import annotations

import re
from collections import defaultdict, deque
from typing import Any

from ..stream_errors import sse_error_event
from ._common import (IdFactory, StreamTranslator, bad, default_id, dumps, dumps_str, event_index, function_arguments,
                      obj, object_at, opt_list, opt_str, reason, req_str, stop_list, token_count)

FINISH_REASON = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "function_call": "STOP",
                 "content_filter": "SAFETY"}
_MODE = {"AUTO": "auto", "NONE": "none", "ANY": "required", "VALIDATED": "auto"}
_AUDIO = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mp3": "mp3", "audio/mpeg": "mp3"}
_MODEL_PATH = re.compile(r"/v1(?:beta|alpha)?/models/([^/:?#]+):(generateContent|streamGenerateContent)(?:\?.*)?")


def parse_gemini_model_path(path: str) -> tuple[str, bool]:
    """`/v1beta/models/{model}:generateContent` or `:streamGenerateContent…` as (model, stream)."""
    match = _MODEL_PATH.fullmatch(path)
    if match is None:
        bad("path", "expected /v1beta/models/{model}:generateContent or :streamGenerateContent")
    return match.group(1), match.group(2) == "streamGenerateContent"


def gemini_request_to_openai(body: dict[str, Any], model: str, stream: bool = False, *,
                             max_tokens_param: str = "max_tokens",
                             id_factory: IdFactory = default_id) -> dict[str, Any]:
    """A Gemini `generateContent` body as an OpenAI chat completions request.

    Dropped: safetySettings, cachedContent, topK, thinkingConfig, responseModalities, speechConfig, labels,
    thought parts. Non-function tools (googleSearch, codeExecution, urlContext…) raise ValueError.
    """
    body = obj(body, "body")
    messages: list[dict[str, Any]] = []
    system = body.get("systemInstruction")
    if system is not None:
        system = obj(system, "systemInstruction")
        text = "\n".join(opt_str(p, "text", f"systemInstruction.parts[{j}]")
                         for j, p in enumerate(opt_list(system.get("parts"), "systemInstruction.parts"))
                         if isinstance(p, dict))
        if text:
            messages.append({"role": "system", "content": text})
    pending: dict[str, deque[str]] = defaultdict(deque)  # function name → ids of calls not yet answered
    for i, content in enumerate(opt_list(body.get("contents"), "contents")):
        path = f"contents[{i}]"
        content = obj(content, path)
        role = content.get("role", "user")
        parts = [obj(p, f"{path}.parts[{j}]") for j, p in enumerate(opt_list(content.get("parts"), f"{path}.parts"))]
        if role == "model":
            texts, calls = [], []
            for j, part in enumerate(parts):
                if part.get("thought") is True:
                    continue
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif isinstance(part.get("functionCall"), dict):
                    fc = part["functionCall"]
                    name = req_str(fc, "name", f"{path}.parts[{j}].functionCall")
                    call_id = fc.get("id") or id_factory("call_")
                    pending[name].append(call_id)
                    call = {"id": call_id, "type": "function",
                            "function": {"name": name, "arguments": dumps_str(fc.get("args") or {})}}
                    if isinstance(part.get("thoughtSignature"), str):
                        call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
                    calls.append(call)
            if any(texts) or calls:
                message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if any(texts) else None}
                if calls:
                    message["tool_calls"] = calls
                messages.append(message)
        elif role in ("user", "function"):  # "function": the older spelling of a function-response turn
            user_parts = []
            for j, part in enumerate(parts):
                ppath = f"{path}.parts[{j}]"
                if isinstance(part.get("functionResponse"), dict):
                    fr = part["functionResponse"]
                    name = req_str(fr, "name", f"{ppath}.functionResponse")
                    call_id = fr.get("id")
                    if call_id in pending[name]:
                        pending[name].remove(call_id)
                    elif pending[name]:
                        call_id = pending[name].popleft()
                    else:
                        bad(f"{ppath}.functionResponse", f"no earlier functionCall of {name!r} is unanswered")
                    response = fr.get("response")
                    messages.append({"role": "tool", "tool_call_id": call_id,
                                     "content": response if isinstance(response, str) else dumps_str(response)})
                elif (converted := _openai_part(part, ppath)) is not None:
                    user_parts.append(converted)
            if user_parts:
                only_text = len(user_parts) == 1 and user_parts[0]["type"] == "text"
                messages.append({"role": "user", "content": user_parts[0]["text"] if only_text else user_parts})
        else:
            bad(f"{path}.role", f"expected user or model, not {role!r}")

    out: dict[str, Any] = {"model": model, "messages": messages}
    config = body.get("generationConfig")
    config = obj(config, "generationConfig") if config is not None else {}
    for key, name in (("temperature", "temperature"), ("topP", "top_p"), ("maxOutputTokens", max_tokens_param),
                      ("candidateCount", "n"), ("seed", "seed"), ("presencePenalty", "presence_penalty"),
                      ("frequencyPenalty", "frequency_penalty")):
        if config.get(key) is not None:
            out[name] = config[key]
    if stops := stop_list(config.get("stopSequences"), "generationConfig.stopSequences"):
        out["stop"] = stops
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if isinstance(schema, dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": _lower(schema)}}
    elif config.get("responseMimeType") == "application/json":
        out["response_format"] = {"type": "json_object"}
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # Gemini clients expect usageMetadata at the end
    tools = []
    for i, tool in enumerate(opt_list(body.get("tools"), "tools")):
        tool = obj(tool, f"tools[{i}]")
        if set(tool) - {"functionDeclarations"}:
            bad(f"tools[{i}]", "only functionDeclarations can be sent to an OpenAI-format model")
        for j, decl in enumerate(opt_list(tool.get("functionDeclarations"), f"tools[{i}].functionDeclarations")):
            decl = obj(decl, f"tools[{i}].functionDeclarations[{j}]")
            fn: dict[str, Any] = {"name": req_str(decl, "name", f"tools[{i}].functionDeclarations[{j}]")}
            if isinstance(decl.get("description"), str):
                fn["description"] = decl["description"]
            params = decl.get("parametersJsonSchema") or decl.get("parameters")
            fn["parameters"] = _lower(params) if isinstance(params, dict) else {"type": "object", "properties": {}}
            tools.append({"type": "function", "function": fn})
    if tools:
        out["tools"] = tools
        tool_config = object_at(body, "toolConfig")
        fcc = tool_config.get("functionCallingConfig")
        if isinstance(fcc, dict) and reason(_MODE, fcc.get("mode")) is not None:
            names = fcc.get("allowedFunctionNames")
            if fcc["mode"] == "ANY" and isinstance(names, list) and len(names) == 1:
                out["tool_choice"] = {"type": "function", "function": {"name": names[0]}}
            else:
                out["tool_choice"] = _MODE[fcc["mode"]]
    return out


def _openai_part(part: dict[str, Any], path: str) -> dict[str, Any] | None:
    if isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]} if part["text"] and part.get("thought") is not True else None
    if isinstance(part.get("inlineData"), dict):
        data = part["inlineData"]
        mime = req_str(data, "mimeType", f"{path}.inlineData").lower()
        b64 = req_str(data, "data", f"{path}.inlineData")
        if mime.startswith("image/"):
            return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{b64}"}}
        if mime in _AUDIO:
            return {"type": "input_audio", "input_audio": {"data": b64, "format": _AUDIO[mime]}}
        return {"type": "file", "file": {"filename": "file", "file_data": f"data:{mime};base64,{b64}"}}
    if isinstance(part.get("fileData"), dict):
        uri = req_str(part["fileData"], "fileUri", f"{path}.fileData")
        if not uri.startswith(("https://", "http://")):
            bad(f"{path}.fileData.fileUri", "only http(s) file URIs can be sent to an OpenAI-format model")
        return {"type": "image_url", "image_url": {"url": uri}}
    bad(path, "expected a text, inlineData, fileData or functionResponse part")


def _lower(schema: Any) -> Any:
    """Gemini's OpenAPI-style schemas spell types in capitals (OBJECT, STRING); JSON Schema wants lower case."""
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_lower(v) for v in schema]
    return schema


# --- OpenAI → Gemini ----------------------------------------------------------------------------------------

def gemini_usage(usage: Any) -> dict[str, Any]:
    """OpenAI usage as usageMetadata: reasoning tokens are Gemini's thoughts, outside candidatesTokenCount."""
    usage = usage if isinstance(usage, dict) else {}
    prompt, completion = token_count(usage, "prompt_tokens", "usage"), token_count(usage, "completion_tokens", "usage")
    details = usage.get("completion_tokens_details")
    thoughts = token_count(details, "reasoning_tokens", "usage.completion_tokens_details") if isinstance(
        details, dict) else 0
    details = usage.get("prompt_tokens_details")
    cached = token_count(details, "cached_tokens", "usage.prompt_tokens_details") if isinstance(details, dict) else 0
    meta = {"promptTokenCount": prompt, "candidatesTokenCount": max(completion - thoughts, 0),
            "totalTokenCount": prompt + completion}
    if cached:
        meta["cachedContentTokenCount"] = cached
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    return meta


def _call_part(call: dict[str, Any]) -> dict[str, Any]:
    fn = object_at(call, "function")
    try:
        args = function_arguments(fn.get("arguments"), "arguments")
    except ValueError:
        args = {}  # Gemini's args must be an object; a model's broken JSON cannot be passed on
    fc: dict[str, Any] = {"name": fn.get("name") or "", "args": args}
    if call.get("id"):
        fc["id"] = call["id"]
    part: dict[str, Any] = {"functionCall": fc}
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    if isinstance(google, dict) and isinstance(google.get("thought_signature"), str):
        part["thoughtSignature"] = google["thought_signature"]
    return part


def openai_response_to_gemini(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI `chat.completion` as a Gemini `generateContent` response (one candidate per choice)."""
    body = obj(body, "body")
    candidates = []
    for i, choice in enumerate(opt_list(body.get("choices"), "choices")):
        choice = obj(choice, f"choices[{i}]")
        message = object_at(choice, "message")
        parts: list[dict[str, Any]] = []
        if isinstance(message.get("content"), str) and message["content"]:
            parts.append({"text": message["content"]})
        parts.extend(_call_part(c) for c in opt_list(message.get("tool_calls"), f"choices[{i}].message.tool_calls")
                     if isinstance(c, dict))
        candidates.append({"content": {"role": "model", "parts": parts},
                           "finishReason": reason(FINISH_REASON, choice.get("finish_reason")) or "STOP",
                           "index": choice.get("index", i)})
    out = {"candidates": candidates, "usageMetadata": gemini_usage(body.get("usage")), "modelVersion": model}
    if body.get("id"):
        out["responseId"] = body["id"]
    return out


def _sse(value: Any) -> bytes:
    # Gemini frames with CRLF; Google's SDKs take LF too, and LF matches the gateway's own error event.
    return b"data: " + dumps(value) + b"\n\n"


class OpenAIToGeminiStream(StreamTranslator):
    """An OpenAI chunk stream as `streamGenerateContent?alt=sse` (see `_common` for feed/finish).

    Text goes out as it comes; a function call goes out whole, as Gemini sends them, once its arguments are
    complete (at the finish_reason). The last chunk carries the finishReason and, once the usage chunk has come,
    usageMetadata. Gemini has no end marker: the stream simply ends after it. Choice 0 only. A stream that ends
    after a finish_reason without `[DONE]` is complete; one that ends before is cut (a Gemini error event).
    """

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model
        self._id: str | None = None
        self._calls: dict[int, dict[str, Any]] = {}  # OpenAI tool_calls index → the call accumulated so far
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None

    def _chunk(self, parts: list[dict[str, Any]], finish: str | None = None) -> bytes:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
        if finish:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        out: dict[str, Any] = {"candidates": [candidate]}
        if finish and self._usage is not None:
            out["usageMetadata"] = gemini_usage(self._usage)
        out["modelVersion"] = self.model
        if self._id:
            out["responseId"] = self._id
        return _sse(out)

    def _on_json(self, event: str | None, data: dict[str, Any]) -> bytes:
        if "error" in data and not data.get("choices"):
            error = data["error"] if isinstance(data["error"], dict) else {"message": data["error"]}
            self.closed = True
            return self._error(str(error.get("message") or "the provider reported an error"), "INTERNAL", None)
        self._id = self._id or data.get("id")
        if isinstance(data.get("usage"), dict):
            gemini_usage(data["usage"])  # malformed counts end the stream here, not in finish()
            self._usage = data["usage"]
        out = []
        for choice in opt_list(data.get("choices"), "choices"):
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = object_at(choice, "delta")
            if isinstance(delta.get("content"), str) and delta["content"]:
                out.append(self._chunk([{"text": delta["content"]}]))
            for call in opt_list(delta.get("tool_calls"), "choices[0].delta.tool_calls"):
                if not isinstance(call, dict):
                    continue
                path = "choices[0].delta.tool_calls[]"
                fn = object_at(call, "function")
                acc = self._calls.setdefault(event_index(call.get("index"), f"{path}.index"),
                                             {"function": {"name": "", "arguments": ""}})
                for key in ("id", "extra_content"):
                    if call.get(key):
                        acc[key] = call[key]
                acc["function"]["name"] += opt_str(fn, "name", f"{path}.function")
                acc["function"]["arguments"] += opt_str(fn, "arguments", f"{path}.function")
            if choice.get("finish_reason"):
                self._finish = reason(FINISH_REASON, choice["finish_reason"]) or "STOP"
        return b"".join(out)

    def _final(self) -> bytes:
        self.closed = True
        return self._chunk([_call_part(c) for c in self._calls.values()], self._finish or "STOP")

    def _on_done(self) -> bytes:
        return self._final()

    def _on_end(self, complete: bool) -> bytes:
        if complete and self._finish is not None:
            return self._final()
        return self._interrupted(sse_error_event("gemini"))

    def _error(self, message: str, type_: str, code: str | None) -> bytes:
        return _sse({"error": {"code": 500, "message": message, "status": type_ if type_.isupper() else "INTERNAL"}})
