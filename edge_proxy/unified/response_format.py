"""OpenAI's `response_format` on an Anthropic model: a forced tool whose input is the answer, as Anthropic documents.

Anthropic's guide to JSON output with tools: offer one tool whose `input_schema` is the wanted schema and force it
with `tool_choice`; the model's `tool_use.input` is then the JSON object. Going to Anthropic,
`{"type": "json_schema", "json_schema": {"name", "schema", ...}}` becomes a tool named `RESPONSE_TOOL` with that
schema, and `{"type": "json_object"}` the same with any object. Coming back, a `tool_use` of that name is the
message content (its input as JSON text, plain or streamed), never a tool call, and `stop_reason: tool_use` with no
other tool call is `finish_reason: stop`. The name is reserved: a client tool with it is a 400, so an answer
cannot be mistaken for a real tool call.

With the client's own tools offered as well, the model must call a tool (`tool_choice: any`): one of the client's,
or the response tool to answer; a client's `tool_choice` that names a function is kept, and `none` leaves only the
response tool.
"""
from __future__ import annotations

from typing import Any

from ._common import bad

RESPONSE_TOOL = "json_response"
_DESCRIPTION = "Give the final answer: the input is the response, a JSON object that matches the schema."


def response_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The Anthropic tool for a request's `response_format`, or None when it asks for plain text (or nothing)."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        bad("response_format", "expected {type: text}, {type: json_object} or {type: json_schema, json_schema}")
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return {"name": RESPONSE_TOOL, "description": _DESCRIPTION, "input_schema": {"type": "object"}}
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        bad("response_format.json_schema", "expected an object with a schema")
    schema = spec.get("schema", {"type": "object"})
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        bad("response_format.json_schema.schema", "Anthropic answers in a tool input, which must be an object "
                                                  "schema (type: object)")
    description = _DESCRIPTION
    if isinstance(spec.get("description"), str) and spec["description"]:
        description += " " + spec["description"]
    return {"name": RESPONSE_TOOL, "description": description, "input_schema": {"type": "object", **schema}}


def with_response_tool(tool: dict[str, Any], tools: list[dict[str, Any]],
                       choice: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The request's tools and tool_choice once the response tool joins them (see the module docstring)."""
    for i, t in enumerate(tools):
        if t.get("name") == RESPONSE_TOOL:
            bad(f"tools[{i}].function.name", f"{RESPONSE_TOOL!r} is reserved for response_format on Anthropic models")
    if not tools or (choice or {}).get("type") == "none":
        return [tool], {"type": "tool", "name": RESPONSE_TOOL}
    if (choice or {}).get("type") == "tool":
        return [*tools, tool], choice  # type: ignore[return-value]
    forced: dict[str, Any] = {"type": "any"}
    if choice and choice.get("disable_parallel_tool_use"):
        forced["disable_parallel_tool_use"] = True
    return [*tools, tool], forced


def is_response_tool(block: Any) -> bool:
    """Whether an Anthropic content block is the response tool's answer."""
    return isinstance(block, dict) and block.get("type") == "tool_use" and block.get("name") == RESPONSE_TOOL
