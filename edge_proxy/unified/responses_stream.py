"""The hub's chat chunk stream as OpenAI Responses stream events (`responses.OpenAIToResponsesStream`).

Responses streams are typed events, each `event: <type>` with a `sequence_number`: `response.created` and
`response.in_progress` first; an output item per answer part (`response.output_item.added`, then for text
`response.content_part.added`, `response.output_text.delta`... `response.output_text.done`,
`response.content_part.done`; for a tool call `response.function_call_arguments.delta`... `.done`), each closed by
`response.output_item.done`; and `response.completed` (or `response.incomplete` when the answer hit its length)
with the whole output and the usage. The hub stream must carry its usage chunk (`include_usage`). A hub stream
that ends in an error event, or is cut, ends in Responses' `error` event followed by `response.failed`.
"""
from __future__ import annotations

import time
from typing import Any

from ._common import IdFactory, StreamTranslator, default_id, event_index, opt_list, sse_event, token_count


def responses_usage(usage: Any) -> dict[str, Any]:
    """OpenAI chat usage in Responses' terms (input/output tokens, their cached and reasoning details)."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = token_count(usage, "prompt_tokens", "usage")
    completion = token_count(usage, "completion_tokens", "usage")
    pd = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    cd = usage.get("completion_tokens_details") if isinstance(usage.get("completion_tokens_details"), dict) else {}
    where_pd, where_cd = "usage.prompt_tokens_details", "usage.completion_tokens_details"
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": token_count(pd, "cached_tokens", where_pd),
                                     "cache_write_tokens": token_count(pd, "cache_write_tokens", where_pd)},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": token_count(cd, "reasoning_tokens", where_cd)},
            "total_tokens": prompt + completion}


def response_object(rid: str, model: str, created: int | None, finish: Any, output: list[dict[str, Any]],
                    usage: dict[str, Any] | None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Responses `response` object with the fields the API always sends."""
    incomplete = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(finish) if isinstance(
        finish, str) else None
    status = "failed" if error else "incomplete" if incomplete else "completed" if usage is not None else \
        "in_progress"
    return {
        "id": rid, "object": "response", "created_at": int(time.time()) if created is None else created,
        "status": status, "error": error, "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": None, "max_output_tokens": None, "model": model, "output": output,
        "parallel_tool_calls": True, "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
        "store": False, "temperature": None, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
        "tools": [], "top_p": None, "truncation": "disabled", "usage": usage, "user": None, "metadata": {},
    }


class OpenAIToResponsesStream(StreamTranslator):
    """Hub chat chunks in, Responses events out (see the module docstring and `_common` for feed/finish)."""

    def __init__(self, model: str, *, created: int | None = None, id_factory: IdFactory = default_id) -> None:
        super().__init__()
        self.model, self._ids = model, id_factory
        self.created = int(time.time()) if created is None else created
        self._rid = id_factory("resp_")
        self._seq = 0
        self._started = False
        self._output: list[dict[str, Any]] = []  # finished items, in output order
        self._text: dict[str, Any] | None = None  # the open message item: {"id", "index", "text"}
        self._calls: dict[int, dict[str, Any]] = {}  # hub tool_calls index → the open function_call item
        self._finish: Any = None
        self._usage: Any = None

    # --- events

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **payload}
        self._seq += 1
        return sse_event(kind, data)

    def _response(self, usage: dict[str, Any] | None, error: dict[str, Any] | None = None) -> dict[str, Any]:
        return response_object(self._rid, self.model, self.created, self._finish, list(self._output), usage, error)

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return (self._event("response.created", {"response": self._response(None)})
                + self._event("response.in_progress", {"response": self._response(None)}))

    # --- items

    def _open_text(self) -> bytes:
        if self._text is not None:
            return b""
        out = self._close_calls()
        self._text = {"id": self._ids("msg_"), "index": len(self._output) + len(self._calls), "text": ""}
        item = {"type": "message", "id": self._text["id"], "status": "in_progress", "role": "assistant",
                "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return out + self._event("response.output_item.added", {"output_index": self._text["index"], "item": item}) \
            + self._event("response.content_part.added", {"item_id": self._text["id"],
                                                          "output_index": self._text["index"], "content_index": 0,
                                                          "part": part})

    def _close_text(self) -> bytes:
        text, self._text = self._text, None
        if text is None:
            return b""
        part = {"type": "output_text", "text": text["text"], "annotations": [], "logprobs": []}
        item = {"type": "message", "id": text["id"], "status": "completed", "role": "assistant", "content": [part]}
        self._output.append(item)
        where = {"item_id": text["id"], "output_index": text["index"], "content_index": 0}
        return (self._event("response.output_text.done", {**where, "text": text["text"], "logprobs": []})
                + self._event("response.content_part.done", {**where, "part": part})
                + self._event("response.output_item.done", {"output_index": text["index"], "item": item}))

    def _call(self, delta: dict[str, Any]) -> bytes:
        out = b""
        key = event_index(delta.get("index"), "choices[0].delta.tool_calls[].index")
        fn: dict[str, Any] = delta["function"] if isinstance(delta.get("function"), dict) else {}
        call = self._calls.get(key)
        if call is None:
            out += self._close_text()
            call = self._calls[key] = {
                "type": "function_call", "id": self._ids("fc_"), "call_id": delta.get("id") or self._ids("call_"),
                "name": fn.get("name") or "", "arguments": "", "status": "in_progress",
                "index": len(self._output) + len(self._calls)}
            out += self._event("response.output_item.added", {"output_index": call["index"], "item": _item(call)})
        if isinstance(fn.get("arguments"), str) and fn["arguments"]:
            call["arguments"] += fn["arguments"]
            out += self._event("response.function_call_arguments.delta", {
                "item_id": call["id"], "output_index": call["index"], "delta": fn["arguments"]})
        return out

    def _close_calls(self) -> bytes:
        out = b""
        for call in self._calls.values():
            call["status"] = "completed"
            item = _item(call)
            self._output.append(item)
            out += self._event("response.function_call_arguments.done", {
                "item_id": call["id"], "output_index": call["index"], "name": call["name"],
                "arguments": call["arguments"]})
            out += self._event("response.output_item.done", {"output_index": call["index"], "item": item})
        self._calls = {}
        return out

    # --- the StreamTranslator hooks

    def _on_json(self, event: str | None, data: dict[str, Any]) -> bytes:
        if "error" in data:
            error: dict[str, Any] = data["error"] if isinstance(data["error"], dict) else {}
            self.closed = True
            return self._error(str(error.get("message") or "the provider reported an error"),
                               str(error.get("type") or "server_error"), error.get("code"))
        out = self._start()
        if data.get("usage") is not None:
            responses_usage(data["usage"])  # malformed counts end the stream here, not in finish()
            self._usage = data["usage"]
        for choice in opt_list(data.get("choices"), "choices"):
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # Responses has one output list: choice 0, as the other translators do
            delta: dict[str, Any] = choice["delta"] if isinstance(choice.get("delta"), dict) else {}
            for key in ("content", "refusal"):
                if isinstance(delta.get(key), str) and delta[key]:
                    out += self._open_text()
                    text: dict[str, Any] = self._text or {}
                    text["text"] += delta[key]
                    out += self._event("response.output_text.delta", {
                        "item_id": text["id"], "output_index": text["index"], "content_index": 0,
                        "delta": delta[key], "logprobs": []})
            for call in opt_list(delta.get("tool_calls"), "choices[0].delta.tool_calls"):
                if isinstance(call, dict):
                    out += self._call(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def _on_done(self) -> bytes:
        out = self._start() + self._close_text() + self._close_calls()
        response = self._response(responses_usage(self._usage))
        self.closed = True
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return out + self._event(kind, {"response": response})

    def _on_end(self, complete: bool) -> bytes:
        return self._interrupted(self._error("the provider closed the stream before it was complete",
                                             "upstream_error", "stream_interrupted"))

    def _error(self, message: str, type_: str, code: str | None) -> bytes:
        out = self._start() + self._event("error", {"code": code or type_, "message": message, "param": None})
        failed = self._response(responses_usage(self._usage) if self._usage else None,
                                {"code": "server_error", "message": message})
        return out + self._event("response.failed", {"response": failed})


def _item(call: dict[str, Any]) -> dict[str, Any]:
    return {k: call[k] for k in ("type", "id", "call_id", "name", "arguments", "status")}
