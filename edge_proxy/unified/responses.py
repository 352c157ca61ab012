"""OpenAI Responses (`POST /v1/responses`) ⇄ the hub (OpenAI chat completions), for models that do not speak it.

OpenAI models answer `/v1/responses` themselves; an Anthropic or Gemini model gets the request translated to the
hub (`responses_request_to_openai`) and from there to its own format by the existing translators, and the answer
comes back through the hub: whole (`openai_response_to_responses`) or streamed (`OpenAIToResponsesStream`, chained
after the provider's hub translator with `include_usage`, since `response.completed` always carries usage).
Errors are OpenAI's shape on both sides, so the hub error body is the Responses error body.

The gateway keeps no conversation state: `previous_response_id`, `conversation`, `item_reference` items and
`background` are a 400, as are OpenAI's built-in tools (web search, file search, ...). `store`, `include`,
`reasoning`, `truncation`, `service_tier`, `prompt_cache_key` and `safety_identifier` have no equivalent and are
dropped. Pure functions over dicts and bytes; malformed input raises ValueError("<json path>: <what>").
"""
from __future__ import annotations

from typing import Any

from ._common import (
    IdFactory,
    bad,
    default_id,
    dumps_str,
    obj,
    opt_int,
    opt_list,
    opt_number,
    req_str,
)
from .responses_stream import OpenAIToResponsesStream, response_object, responses_usage

__all__ = ["OpenAIToResponsesStream", "openai_request_to_responses", "openai_response_to_responses",
           "responses_request_to_openai", "responses_usage"]

_STATELESS = ("previous_response_id", "conversation", "background", "prompt")
_ROLES = ("user", "system", "developer", "assistant")


# --- Responses request → hub request --------------------------------------------------------------------------

def responses_request_to_openai(body: dict[str, Any], *, max_tokens_param: str = "max_tokens") -> dict[str, Any]:
    """A Responses create request as an OpenAI chat completions request (see the module docstring)."""
    body = obj(body, "body")
    for key in _STATELESS:
        if body.get(key) not in (None, False):
            bad(key, "the gateway keeps no conversation state for non-OpenAI models: send the whole input")
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    else:
        for i, item in enumerate(opt_list(items, "input")):
            _input_item(obj(item, f"input[{i}]"), f"input[{i}]", messages)
    out: dict[str, Any] = {"model": body["model"]} if "model" in body else {}
    out["messages"] = messages
    if (max_tokens := opt_int(body, "max_output_tokens")) is not None:
        out[max_tokens_param] = max_tokens
    for key in ("temperature", "top_p"):
        if (value := opt_number(body, key)) is not None:
            out[key] = value
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # response.completed always reports usage
    if isinstance(body.get("user"), str) and body["user"]:
        out["user"] = body["user"]
    if isinstance(body.get("parallel_tool_calls"), bool):
        out["parallel_tool_calls"] = body["parallel_tool_calls"]
    tools = [_hub_tool(t, f"tools[{i}]") for i, t in enumerate(opt_list(body.get("tools"), "tools"))]
    if tools:
        out["tools"] = tools
        if (choice := _hub_tool_choice(body.get("tool_choice"))) is not None:
            out["tool_choice"] = choice
    text = body.get("text")
    if text is not None and (fmt := _hub_response_format(obj(text, "text").get("format"))) is not None:
        out["response_format"] = fmt
    return out


def _input_item(item: dict[str, Any], path: str, messages: list[dict[str, Any]]) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in _ROLES:
            bad(f"{path}.role", f"expected one of {', '.join(_ROLES)}")
        content = item.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            return
        parts = [_hub_part(obj(p, f"{path}.content[{j}]"), f"{path}.content[{j}]")
                 for j, p in enumerate(opt_list(content, f"{path}.content"))]
        if role == "assistant":  # the chat format's assistant content is text only
            messages.append({"role": "assistant", "content": "".join(p.get("text") or "" for p in parts)})
            return
        messages.append({"role": role, "content": parts})
    elif kind == "function_call":
        call = {"id": req_str(item, "call_id", path), "type": "function",
                "function": {"name": req_str(item, "name", path), "arguments": item.get("arguments") or "{}"}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":  # calls right after a text (or calls) join its turn
            last.setdefault("tool_calls", []).append(call)
            if last.get("content") == "":
                last["content"] = None
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        if isinstance(output, list):
            output = "".join(p.get("text") or "" for p in output if isinstance(p, dict))
        if not isinstance(output, str):
            bad(f"{path}.output", "expected a string")
        messages.append({"role": "tool", "tool_call_id": req_str(item, "call_id", path), "content": output})
    elif kind == "reasoning":
        return  # reasoning items from an earlier OpenAI answer have no chat-completions field
    elif kind == "item_reference":
        bad(f"{path}.type", "the gateway keeps no stored items for non-OpenAI models: send the item itself")
    else:
        bad(f"{path}.type", f"a {kind!r} input item cannot be sent to a non-OpenAI model")


def _hub_part(part: dict[str, Any], path: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        if not isinstance(part.get("text"), str):
            bad(f"{path}.text", "expected a string")
        return {"type": "text", "text": part["text"]}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        if not isinstance(part.get("image_url"), str):
            bad(f"{path}.image_url", "only image_url images can be sent to a non-OpenAI model (not file_id)")
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if not isinstance(part.get("file_data"), str):
            bad(f"{path}.file_data", "only inline file_data can be sent to a non-OpenAI model (not file_id)")
        file = {"file_data": part["file_data"]}
        if isinstance(part.get("filename"), str):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    bad(f"{path}.type", f"a {kind!r} content part cannot be sent to a non-OpenAI model")


def _hub_tool(tool: Any, path: str) -> dict[str, Any]:
    tool = obj(tool, path)
    if tool.get("type") != "function":
        bad(f"{path}.type", f"OpenAI's built-in {tool.get('type')!r} tool cannot run on a non-OpenAI model")
    fn: dict[str, Any] = {"name": req_str(tool, "name", path)}
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    fn["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
    if isinstance(tool.get("strict"), bool):
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def _hub_tool_choice(choice: Any) -> Any:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": req_str(choice, "name", "tool_choice")}}
    bad("tool_choice", "expected auto, none, required or {type: function, name}")


def _hub_response_format(fmt: Any) -> dict[str, Any] | None:
    if fmt is None:
        return None
    fmt = obj(fmt, "text.format")
    if fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") != "json_schema":
        bad("text.format.type", "expected text, json_object or json_schema")
    spec: dict[str, Any] = {"name": req_str(fmt, "name", "text.format")}
    if not isinstance(fmt.get("schema"), dict):
        bad("text.format.schema", "expected a JSON schema object")
    for key in ("description", "schema", "strict"):
        if key in fmt:
            spec[key] = fmt[key]
    return {"type": "json_schema", "json_schema": spec}


# --- hub request → Responses request (for POST /v1/responses/input_tokens) ------------------------------------

def openai_request_to_responses(hub: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request as a Responses request: what `/v1/responses/input_tokens` counts for OpenAI models.

    System messages become `instructions`; tool calls and results become function_call items."""
    hub = obj(hub, "body")
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    for i, msg in enumerate(opt_list(hub.get("messages"), "messages")):
        msg = obj(msg, f"messages[{i}]")
        role, content = msg.get("role"), msg.get("content")
        if role in ("system", "developer"):
            instructions.append(content if isinstance(content, str) else
                                "".join(p.get("text") or "" for p in content or [] if isinstance(p, dict)))
        elif role == "tool":
            items.append({"type": "function_call_output", "call_id": req_str(msg, "tool_call_id", f"messages[{i}]"),
                          "output": content if isinstance(content, str) else dumps_str(content)})
        else:
            if content:
                items.append({"role": role, "content": content if isinstance(content, str) else
                              [_responses_part(obj(p, f"messages[{i}].content[{j}]"), str(role))
                               for j, p in enumerate(content)]})
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                items.append({"type": "function_call", "call_id": call.get("id"), "name": fn.get("name"),
                              "arguments": fn.get("arguments") or "{}"})
    out: dict[str, Any] = {"model": hub["model"]} if "model" in hub else {}
    if instructions:
        out["instructions"] = "\n".join(instructions)
    out["input"] = items
    tools = []
    for t in hub.get("tools") or []:
        fn = t.get("function") or {}
        tools.append({"type": "function", "name": fn.get("name"), "parameters": fn.get("parameters")}
                     | ({"description": fn["description"]} if "description" in fn else {}))
    if tools:
        out["tools"] = tools
    return out


def _responses_part(part: dict[str, Any], role: str) -> dict[str, Any]:
    if part.get("type") == "text":
        return {"type": "output_text" if role == "assistant" else "input_text", "text": part.get("text") or ""}
    if part.get("type") == "image_url":
        image = part.get("image_url")
        return {"type": "input_image", "image_url": image.get("url") if isinstance(image, dict) else image}
    if part.get("type") == "file":
        return {"type": "input_file", **(part.get("file") or {})}
    bad("messages.content.type", f"a {part.get('type')!r} part has no Responses equivalent")


# --- hub response → Responses response -------------------------------------------------------------------------

def openai_response_to_responses(hub: dict[str, Any], model: str, *, created: int | None = None,
                                 id_factory: IdFactory = default_id) -> dict[str, Any]:
    """An OpenAI `chat.completion` (choice 0) as a Responses `response` object."""
    hub = obj(hub, "body")
    choices = opt_list(hub.get("choices"), "choices")
    choice: dict[str, Any] = obj(choices[0], "choices[0]") if choices else {}
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    output: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        content.append({"type": "output_text", "text": message["content"], "annotations": [], "logprobs": []})
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append({"type": "refusal", "refusal": message["refusal"]})
    if content:
        output.append({"type": "message", "id": id_factory("msg_"), "status": "completed", "role": "assistant",
                       "content": content})
    for i, call in enumerate(opt_list(message.get("tool_calls"), "choices[0].message.tool_calls")):
        call = obj(call, f"choices[0].message.tool_calls[{i}]")
        fn: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
        output.append({"type": "function_call", "id": id_factory("fc_"),
                       "call_id": call.get("id") or id_factory("call_"), "name": fn.get("name") or "",
                       "arguments": fn.get("arguments") or "{}", "status": "completed"})
    return response_object(id_factory("resp_"), model, created, choice.get("finish_reason"), output,
                           responses_usage(hub.get("usage")))
