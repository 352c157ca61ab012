"""A fake AI provider on loopback, for the gateway's tests.

One ``aiohttp.web`` server answers as OpenAI, Anthropic and Google Gemini at once,
with the providers' documented wire shapes (field names, field order, SSE framing).
Point provider base URLs at it:

* OpenAI    ``https://api.openai.com/v1``                      -> ``{url}/v1``
* Anthropic ``https://api.anthropic.com/v1``                   -> ``{url}/v1``
  (the Anthropic SDK's ``base_url`` is the host: ``{url}``)
* Gemini    ``https://generativelanguage.googleapis.com/v1beta`` -> ``{url}/v1beta``

Routes
------
``POST /v1/chat/completions``        OpenAI Chat Completions (plain, ``stream``, tools)
``POST /v1/responses``               OpenAI Responses (plain, ``stream``, function tools)
``POST /v1/embeddings``              OpenAI embeddings (``encoding_format`` float or base64)
``GET  /v1/models``                  OpenAI model list (Anthropic's list shape if the request
                                     carries an ``anthropic-version`` header)
``POST /v1/messages``                Anthropic Messages (plain, ``stream``, tools)
``POST /v1/messages/count_tokens``   Anthropic token count
``POST /v1beta/models/{m}:generateContent``        Gemini (also under ``/v1/models/...``)
``POST /v1beta/models/{m}:streamGenerateContent``  ``?alt=sse`` -> SSE, else a streamed
                                                   JSON array, as Google does
``POST /v1beta/models/{m}:countTokens``            Gemini token count
``POST /v1beta/models/{m}:embedContent``           Gemini embedding (``{"embedding": {"values"}}``)
``POST /v1beta/models/{m}:batchEmbedContents``     Gemini embeddings (``{"embeddings": [...]}``)
``POST /v1/responses/input_tokens``  OpenAI Responses input token count
                                     (``{"object": "response.input_tokens", "input_tokens"}``)
``GET  /v1beta/models``              Gemini model list
``*    /echo...``                    200 JSON describing the request as received:
                                     ``{"method","path","query","headers":[[name,value],...],
                                     "body"}`` (headers lowercased, in arrival order)

Every request (any route, also unknown ones) is recorded, before any behaviour switch
acts, in ``server.received`` as a :class:`Received` (``method``, ``path`` (raw, without
the query), ``query`` (raw string, no ``?``), ``headers`` (list of (lowercased name,
value) pairs as received, in order), ``body`` (bytes); helpers ``header(name)``,
``header_values(name)``, ``header_names()``, ``json()``). ``server.last()`` (LookupError
when empty) / ``server.clear()``. Each ``Received`` also says what the fake reported for it:
``api`` (``"openai.chat"``, ``"openai.responses"``, ``"openai.embeddings"``, ``"anthropic"``,
``"gemini"``, ``"gemini.embed"``), ``usage`` (the usage object exactly as sent, or None when
none went out: errors, token counts, Gemini embeddings, an OpenAI stream without
``include_usage``), ``events_sent`` (stream events sent before a cut) and ``tokens()`` (input and
output in the gateway's terms), so a test compares the request log with the provider's own count.

Replies
-------
``server.chat_usage`` (default ``COUNTED``): set it to any JSON value to have OpenAI chat answers
(plain, and a stream's usage chunk) report that value as their ``usage`` instead of the counted
object: an absurd provider (negative, huge or fractional counts, ``None`` for no usage).
``server.chat_model`` (default None): the model OpenAI chat answers name, instead of the one asked for.

The assistant reply is ``server.reply_text`` (default :data:`REPLY_TEXT`,
``"Hello from the fake provider!"``). Streams send it one word per content event
(``"Hello"``, ``" from"``, ``" the"``, ...).

A structured-output request (OpenAI ``response_format`` json_schema/json_object, Responses
``text.format`` json_schema, Anthropic ``output_config.format``/``output_format``, Gemini
``responseMimeType: application/json``) is answered with the
JSON text of :func:`fake_tool_args` of its schema (``{"answer": "fake"}`` without one), streamed
one word at a time like any text (tool calls still win when tools are offered).

If the request offers function tools (OpenAI ``tools`` of type function, Responses
``tools`` of type function, Anthropic ``tools``, Gemini ``functionDeclarations``) the
fake calls one: the tool named by a forcing ``tool_choice``/``allowedFunctionNames`` if
any, else the first. Its arguments are built from the tool's JSON schema by
:func:`fake_tool_args` (every property: enum[0], string ``"fake"``, integer/number ``1``,
boolean ``true``, array ``[]``, object recursed). It answers with text instead when
tool choice is ``none``/``NONE`` or when the last message already carries a tool result
(OpenAI ``role: tool``, Responses ``function_call_output``, Anthropic ``tool_result``
block, Gemini ``functionResponse`` part), so agent loops terminate.
``max_tokens`` & co. are ignored (never truncates).

Token counts (deterministic)
----------------------------
``count_words(s) = len(s.split())`` (whitespace-separated words).

* prompt tokens ``P = count_words(" ".join(all prompt texts)) + PROMPT_OVERHEAD`` (3),
  where the prompt texts are: every string ``content`` and every ``text`` string of a
  content part/block (recursing into Anthropic ``tool_result`` content) of
  - OpenAI chat: ``messages``;
  - Responses: ``instructions`` + ``input`` (string, or items' ``content``, and
    ``function_call_output`` ``output`` strings);
  - Anthropic: ``system`` + ``messages``;
  - Gemini: ``systemInstruction`` (or ``system_instruction``) + ``contents`` parts'
    ``text``.
  Tool definitions, images and tool-call arguments are not counted.
* embeddings: ``P = count_words`` of all string inputs (+ the length of token-id lists),
  no overhead; ``total_tokens = P``.
* completion tokens ``C = count_words(reply_text)`` (5 for the default) for a text reply;
  ``C = count_words(json.dumps(args))`` (default separators) for a tool call.
* ``fake-cached`` adds: cached ``K = P // 2``; reasoning ``R = REASONING_TOKENS`` (7).
  - OpenAI chat: ``prompt_tokens=P``, ``cached_tokens=K``, ``completion_tokens=C+R``,
    ``reasoning_tokens=R``, ``total=P+C+R``. Responses likewise (input/output).
  - Anthropic: ``cache_read_input_tokens=K``, ``input_tokens=P-K``, ``output_tokens=C``.
  - Gemini: ``promptTokenCount=P``, ``cachedContentTokenCount=K`` (+``cacheTokensDetails``),
    ``candidatesTokenCount=C``, ``thoughtsTokenCount=R``, ``totalTokenCount=P+C+R``.
* ``fake-cache-write`` (Anthropic only): ``cache_creation_input_tokens=P//2``,
  ``input_tokens=P-P//2``. Elsewhere it changes nothing.

:func:`prompt_tokens_for`, :func:`completion_tokens_for` and :func:`expected_usage`
compute these from a request body, so tests need not re-derive them.

Behaviour switches (substring of the request's model name; Gemini: the model in the path)
---------------------------------------------------------------------------------------
Switches combine (e.g. model ``"fake-big+fake-die-midstream"``).

``fake-error-NNN``      HTTP NNN with the provider's error JSON: OpenAI
                        ``{"error":{"message","type","param","code"}}``, Anthropic
                        ``{"type":"error","error":{"type","message"},"request_id"}``, Gemini
                        ``{"error":{"code","message","status"}}``. 429 carries
                        ``retry-after: server.retry_after`` (default ``"1"``). Any 3-digit
                        code works; 400/429/500 are the documented ones.
``fake-cut-N``          like ``fake-die-midstream`` after exactly N stream events (N >= 0), for
                        one request: a stream cut before or after its usage event.
``fake-end-N``          a stream that ends cleanly (its last chunk, no reset) after exactly N
                        events, before its end marker: no ``[DONE]``/``message_stop``/finishReason.
``fake-garbled-event``  a stream with one event that is not JSON (``data: {not json``) after
                        2 events; the rest follows as usual.
``fake-die-midstream``  sends the head and the first ``server.die_after_events`` (2) stream
                        events (non-streaming: the head with the full Content-Length and
                        half the body), then aborts the TCP connection (no terminating
                        chunk, no ``[DONE]``/``message_stop``).
``fake-reset``          aborts the connection with a TCP RST before any response byte.
``fake-slow-head``      sleeps ``server.slow_seconds`` (class default 5) before the head.
``fake-slow-stream``    sends the head and one event, then sleeps ``slow_seconds`` before
                        each further event (non-streaming: half the body, sleep, the rest).
``fake-stream-error``   a 200 stream that, after 2 events, sends the provider's in-band
                        error event (OpenAI ``data: {"error":{...}}``, Anthropic
                        ``event: error``, Gemini ``data: {"error":{...}}``) and ends.
``fake-endless-line``   a stream that, after 1 event, sends ``data: `` and then ``server.endless_chunks``
                        (64) chunks of 64 KiB with no line break, then waits ``slow_seconds`` before its
                        end: one event that never ends.
``fake-drip``           a stream that, after 1 event, sends ``server.drip_count`` (100) SSE comments
                        (``: drip``), one every ``drip_seconds`` (0.05), then the rest as usual: a
                        provider that keeps a stream alive within any read timeout.
``fake-cached``         cached prompt tokens + reasoning tokens in usage (see above).
``fake-cache-write``    Anthropic cache-creation tokens (see above).
``fake-linger``         sends the whole answer, then waits ``server.linger_seconds`` (1.0)
                        before the stream's end (the client may leave in between).
``fake-big``            the reply is ``" ".join(["lorem"] * 350_000)`` (2 099 999 bytes,
                        350 000 words; tool calls still win if tools are offered); streams
                        send it 1 000 words per event.

Framing
-------
OpenAI: non-streaming JSON pretty-printed (2-space indent, like the API); SSE
``data: {compact json}\\n\\n`` ... ``data: [DONE]\\n\\n``; Responses streaming
``event: response.X\\ndata: {...}\\n\\n``. Anthropic: compact JSON; SSE
``event: NAME\\ndata: {...}\\n\\n``. Gemini: pretty JSON (2-space); ``alt=sse`` frames are
``data: {json with ", " -> "," and ": "}\\r\\n\\r\\n`` (Google's own spacing; the CRLF
terminator is what Google's front end emits but is not stated in its docs - set
``server.gemini_sse_terminator = b"\\n\\n"`` to change it); without ``alt=sse`` the
stream is a JSON array ``[{...}\\n,\\r\\n{...}\\n]``.

API
---
``FakeProvider(host="127.0.0.1", port=0)``; ``await start()``/``await stop()`` in a running
loop, or ``start_in_thread()``/``stop_thread()`` (own loop in a daemon thread; blocks until
listening). Also usable as ``with FakeProvider() as fp`` / ``async with``. ``port``,
``url`` (``"http://127.0.0.1:PORT"``), ``received``, ``last()``, ``clear()``.

Instance knobs (class defaults): ``slow_seconds`` (5.0), ``linger_seconds`` (1.0), ``retry_after`` ("1"),
``die_after_events`` (2), ``reply_text`` (:data:`REPLY_TEXT`), ``gemini_sse_terminator``
(``b"\\r\\n\\r\\n"``), ``client_max_size`` (64 MiB).

Standalone: ``python -m tests.fake_provider --port 8099 [--host H] [--slow-seconds S]``
(prints ``fake provider listening on http://H:PORT`` once listening).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import re
import secrets
import socket
import string
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Iterable

from aiohttp import web

__all__ = [
    "FakeProvider",
    "Received",
    "REPLY_TEXT",
    "PROMPT_OVERHEAD",
    "REASONING_TOKENS",
    "BIG_WORD",
    "BIG_WORDS",
    "EMBEDDING_DIM",
    "count_words",
    "prompt_texts",
    "prompt_tokens_for",
    "completion_tokens_for",
    "expected_usage",
    "expected_reply",
    "fake_tool_args",
    "fake_embedding",
    "switches_for",
]

REPLY_TEXT = "Hello from the fake provider!"
PROMPT_OVERHEAD = 3
REASONING_TOKENS = 7
BIG_WORD = "lorem"
BIG_WORDS = 350_000
BIG_WORDS_PER_EVENT = 1_000
EMBEDDING_DIM = 8
ARG_FRAGMENT_CHARS = 5
OPENAI_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "text-embedding-3-small")
ANTHROPIC_MODELS = ("claude-test-sonnet", "claude-test-haiku")
GEMINI_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro")

APIS = ("openai.chat", "openai.responses", "openai.embeddings", "anthropic", "gemini")

_ALNUM = string.ascii_letters + string.digits


# --------------------------------------------------------------------------- helpers


def count_words(text: str) -> int:
    return len(text.split())


def _rand(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _texts_of_content(content: Any) -> list[str]:
    """Strings of a message ``content``: a string, or parts/blocks with a ``text``."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    out.append(part["text"])
                elif part.get("type") == "tool_result":
                    out.extend(_texts_of_content(part.get("content")))
    return out


def prompt_texts(api: str, body: dict) -> list[str]:
    """The texts whose words make the prompt token count (see module docstring)."""
    out: list[str] = []
    if api == "openai.chat":
        for m in body.get("messages") or []:
            if isinstance(m, dict):
                out.extend(_texts_of_content(m.get("content")))
    elif api == "openai.responses":
        if isinstance(body.get("instructions"), str):
            out.append(body["instructions"])
        inp = body.get("input")
        if isinstance(inp, str):
            out.append(inp)
        elif isinstance(inp, list):
            for item in inp:
                if not isinstance(item, dict):
                    continue
                if item.get("type") == "function_call_output":
                    if isinstance(item.get("output"), str):
                        out.append(item["output"])
                else:
                    out.extend(_texts_of_content(item.get("content")))
    elif api == "anthropic":
        out.extend(_texts_of_content(body.get("system")))
        for m in body.get("messages") or []:
            if isinstance(m, dict):
                out.extend(_texts_of_content(m.get("content")))
    elif api == "gemini":
        si = body.get("systemInstruction", body.get("system_instruction"))
        if isinstance(si, dict):
            out.extend(_texts_of_content(si.get("parts")))
        elif isinstance(si, str):
            out.append(si)
        for c in body.get("contents") or []:
            if isinstance(c, dict):
                out.extend(_texts_of_content(c.get("parts")))
    elif api == "openai.embeddings":
        inp = body.get("input")
        if isinstance(inp, str):
            out.append(inp)
        elif isinstance(inp, list):
            out.extend(x for x in inp if isinstance(x, str))
    else:
        raise ValueError(f"unknown api {api!r}; one of {APIS}")
    return out


def _embedding_inputs(body: dict) -> list[Any]:
    inp = body.get("input")
    if isinstance(inp, str):
        return [inp]
    if isinstance(inp, list):
        if inp and all(isinstance(x, int) for x in inp):
            return [inp]  # one token array
        return list(inp)
    return []


def prompt_tokens_for(api: str, body: dict) -> int:
    if api == "openai.embeddings":
        n = 0
        for x in _embedding_inputs(body):
            n += count_words(x) if isinstance(x, str) else len(x) if isinstance(x, list) else 0
        return n
    return count_words(" ".join(prompt_texts(api, body))) + PROMPT_OVERHEAD


def switches_for(model: str) -> set[str]:
    """The behaviour switches named in a model string (see module docstring)."""
    model = model or ""
    found = {
        s
        for s in (
            "fake-die-midstream",
            "fake-reset",
            "fake-slow-head",
            "fake-slow-stream",
            "fake-stream-error",
            "fake-cached",
            "fake-cache-write",
            "fake-big",
            "fake-linger",
            "fake-garbled-event",
            "fake-endless-line",
            "fake-drip",
        )
        if s in model
    }
    m = re.search(r"fake-error-(\d{3})", model)
    if m:
        found.add("fake-error-" + m.group(1))
    for name in ("fake-cut-", "fake-end-"):
        m = re.search(name + r"(\d+)", model)
        if m:
            found.add(name + m.group(1))
    return found


def _cut_after(sw: set[str], name: str = "fake-cut-") -> int | None:
    for s in sw:
        if s.startswith(name):
            return int(s[len(name) :])
    return None


def _error_status(sw: set[str]) -> int | None:
    for s in sw:
        if s.startswith("fake-error-"):
            return int(s[len("fake-error-") :])
    return None


def _fake_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return None
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if str(x).lower() != "null"), "null")
    t = str(t).lower() if t is not None else ("object" if "properties" in schema else "")
    if t == "string":
        return "fake"
    if t in ("integer", "number"):
        return 1
    if t == "boolean":
        return True
    if t == "array":
        return []
    if t == "object":
        return fake_tool_args(schema)
    return None


def fake_tool_args(schema: Any) -> dict:
    """Deterministic arguments for a JSON-schema object (all properties, in order)."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return {}
    return {k: _fake_value(v) for k, v in props.items()}


def fake_embedding(item: Any, dims: int = EMBEDDING_DIM) -> list[float]:
    """Deterministic embedding of an input (exactly representable in float32)."""
    key = item if isinstance(item, str) else json.dumps(item)
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        digest = hashlib.sha256(f"{counter}:{key}".encode()).digest()
        out.extend((b - 128) / 128.0 for b in digest)
        counter += 1
    return out[:dims]


# --------------------------------------------------------------------------- reply planning


@dataclass
class _Reply:
    kind: str  # "text" | "tool"
    text: str = ""
    deltas: list[str] = field(default_factory=list)
    tool_name: str = ""
    tool_args: dict = field(default_factory=dict)
    args_json: str = ""
    completion_tokens: int = 0

    def arg_fragments(self) -> list[str]:
        s = self.args_json
        return [s[i : i + ARG_FRAGMENT_CHARS] for i in range(0, len(s), ARG_FRAGMENT_CHARS)]


def _tools_for(api: str, body: dict) -> list[tuple[str, Any]]:
    """(name, parameters schema) of the function tools offered."""
    out: list[tuple[str, Any]] = []
    tools = body.get("tools")
    if not isinstance(tools, list):
        return out
    for t in tools:
        if not isinstance(t, dict):
            continue
        if api == "openai.chat":
            if t.get("type", "function") == "function" and isinstance(t.get("function"), dict):
                f = t["function"]
                out.append((f.get("name", ""), f.get("parameters")))
        elif api == "openai.responses":
            if t.get("type") == "function":
                out.append((t.get("name", ""), t.get("parameters")))
        elif api == "anthropic":
            if "input_schema" in t and t.get("type", "custom") == "custom":
                out.append((t.get("name", ""), t.get("input_schema")))
        elif api == "gemini":
            decls = t.get("functionDeclarations", t.get("function_declarations"))
            for d in decls or []:
                if isinstance(d, dict):
                    schema = d.get("parameters", d.get("parametersJsonSchema", d.get("parameters_json_schema")))
                    out.append((d.get("name", ""), schema))
    return out


def _forced_tool_and_none(api: str, body: dict) -> tuple[str | None, bool]:
    """(forced tool name or None, tool use disabled?)."""
    if api == "openai.chat":
        tc = body.get("tool_choice")
        if tc == "none":
            return None, True
        if isinstance(tc, dict) and isinstance(tc.get("function"), dict):
            return tc["function"].get("name"), False
    elif api == "openai.responses":
        tc = body.get("tool_choice")
        if tc == "none":
            return None, True
        if isinstance(tc, dict) and tc.get("type") == "function":
            return tc.get("name"), False
    elif api == "anthropic":
        tc = body.get("tool_choice")
        if isinstance(tc, dict):
            if tc.get("type") == "none":
                return None, True
            if tc.get("type") == "tool":
                return tc.get("name"), False
    elif api == "gemini":
        cfg = body.get("toolConfig", body.get("tool_config")) or {}
        fcc = cfg.get("functionCallingConfig", cfg.get("function_calling_config")) or {}
        mode = str(fcc.get("mode", "")).upper()
        if mode == "NONE":
            return None, True
        names = fcc.get("allowedFunctionNames", fcc.get("allowed_function_names"))
        if isinstance(names, list) and names:
            return names[0], False
    return None, False


def _last_is_tool_result(api: str, body: dict) -> bool:
    if api == "openai.chat":
        msgs = body.get("messages") or []
        return bool(msgs) and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "tool"
    if api == "openai.responses":
        inp = body.get("input")
        return isinstance(inp, list) and bool(inp) and isinstance(inp[-1], dict) and inp[-1].get("type") == "function_call_output"
    if api == "anthropic":
        msgs = body.get("messages") or []
        if msgs and isinstance(msgs[-1], dict) and isinstance(msgs[-1].get("content"), list):
            return any(isinstance(b, dict) and b.get("type") == "tool_result" for b in msgs[-1]["content"])
        return False
    if api == "gemini":
        contents = body.get("contents") or []
        if contents and isinstance(contents[-1], dict):
            return any(isinstance(p, dict) and ("functionResponse" in p or "function_response" in p) for p in contents[-1].get("parts") or [])
    return False


def _json_schema_asked(api: str, body: dict) -> dict | None:
    """The schema of a structured-output request (OpenAI chat ``response_format``, Responses ``text.format``,
    Gemini ``responseMimeType: application/json``), ``{}`` for JSON without a schema, None for plain text."""
    if api == "openai.chat":
        fmt = body.get("response_format")
    elif api == "openai.responses":
        text = body.get("text") if isinstance(body.get("text"), dict) else {}
        fmt = text.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return fmt.get("schema") if isinstance(fmt.get("schema"), dict) else {}
    elif api == "anthropic":  # structured outputs: output_config.format (GA) or the beta's output_format
        config = body.get("output_config") if isinstance(body.get("output_config"), dict) else {}
        fmt = config.get("format", body.get("output_format"))
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return fmt.get("schema") if isinstance(fmt.get("schema"), dict) else {}
        return None
    elif api == "gemini":
        cfg = body.get("generationConfig", body.get("generation_config")) or {}
        if cfg.get("responseMimeType", cfg.get("response_mime_type")) != "application/json":
            return None
        schema = cfg.get("responseJsonSchema", cfg.get("responseSchema", cfg.get("response_json_schema")))
        return schema if isinstance(schema, dict) else {}
    else:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object"):
        return None
    spec = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else {}
    return spec.get("schema") if isinstance(spec.get("schema"), dict) else {}


def _plan_reply(api: str, body: dict, model: str, reply_text: str = REPLY_TEXT) -> _Reply:
    sw = switches_for(model)
    schema_asked = _json_schema_asked(api, body)
    if schema_asked is not None:  # structured output: the reply text is a JSON object built from the schema
        reply_text = json.dumps(fake_tool_args(schema_asked) if schema_asked else {"answer": "fake"})
    tools = _tools_for(api, body)
    forced, disabled = _forced_tool_and_none(api, body)
    if tools and not disabled and not _last_is_tool_result(api, body):
        name, schema = tools[0]
        if forced:
            for n, s in tools:
                if n == forced:
                    name, schema = n, s
                    break
        args = fake_tool_args(schema)
        args_json = json.dumps(args, ensure_ascii=False)
        return _Reply(kind="tool", tool_name=name, tool_args=args, args_json=args_json, completion_tokens=count_words(args_json))
    if "fake-big" in sw:
        words = [BIG_WORD] * BIG_WORDS
        deltas = []
        for i in range(0, len(words), BIG_WORDS_PER_EVENT):
            chunk = " ".join(words[i : i + BIG_WORDS_PER_EVENT])
            deltas.append(chunk if i == 0 else " " + chunk)
        text = "".join(deltas)
        return _Reply(kind="text", text=text, deltas=deltas, completion_tokens=BIG_WORDS)
    words = reply_text.split()
    deltas = [w if i == 0 else " " + w for i, w in enumerate(words)] or [""]
    return _Reply(kind="text", text=reply_text, deltas=deltas, completion_tokens=count_words(reply_text))


def expected_reply(api: str, body: dict, model: str | None = None, reply_text: str = REPLY_TEXT) -> dict:
    """What the fake will answer: ``{"kind": "text", "text": ...}`` or
    ``{"kind": "tool", "name": ..., "args": {...}, "arguments": json}``."""
    model = model if model is not None else str(body.get("model", ""))
    r = _plan_reply(api, body, model, reply_text)
    if r.kind == "tool":
        return {"kind": "tool", "name": r.tool_name, "args": r.tool_args, "arguments": r.args_json}
    return {"kind": "text", "text": r.text}


def completion_tokens_for(api: str, body: dict, model: str | None = None, reply_text: str = REPLY_TEXT) -> int:
    """Completion tokens of the reply, without reasoning tokens."""
    model = model if model is not None else str(body.get("model", ""))
    return _plan_reply(api, body, model, reply_text).completion_tokens


# --------------------------------------------------------------------------- usage shapes


def _counts(api: str, body: dict, model: str, reply_text: str) -> tuple[int, int, int, int, int]:
    """(P, C, cached K, reasoning R, cache-write W)."""
    sw = switches_for(model)
    p = prompt_tokens_for(api, body)
    c = _plan_reply(api, body, model, reply_text).completion_tokens if api != "openai.embeddings" else 0
    cached = "fake-cached" in sw
    k = p // 2 if cached else 0
    r = REASONING_TOKENS if cached else 0
    w = p // 2 if "fake-cache-write" in sw else 0
    return p, c, k, r, w


def _openai_chat_usage(p: int, c: int, k: int, r: int) -> dict:
    return {
        "prompt_tokens": p,
        "completion_tokens": c + r,
        "total_tokens": p + c + r,
        "prompt_tokens_details": {"cached_tokens": k, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": r,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _responses_usage(p: int, c: int, k: int, r: int) -> dict:
    return {
        "input_tokens": p,
        "input_tokens_details": {"cached_tokens": k},
        "output_tokens": c + r,
        "output_tokens_details": {"reasoning_tokens": r},
        "total_tokens": p + c + r,
    }


def _anthropic_usage(p: int, c: int, k: int, w: int, output_tokens: int | None = None) -> dict:
    if k + w > p:  # cannot happen with P >= 3, but keep input_tokens >= 0
        w = max(0, p - k)
    return {
        "input_tokens": p - k - w,
        "cache_creation_input_tokens": w,
        "cache_read_input_tokens": k,
        "output_tokens": c if output_tokens is None else output_tokens,
    }


def _gemini_usage(p: int, c: int, k: int, r: int) -> dict:
    u: dict[str, Any] = {"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c + r}
    if k:
        u["cachedContentTokenCount"] = k
    u["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": p}]
    if k:
        u["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": k}]
    if r:
        u["thoughtsTokenCount"] = r
    return u


def expected_usage(api: str, body: dict, model: str | None = None, reply_text: str = REPLY_TEXT) -> dict:
    """The usage object the fake puts in a non-streaming response (and, identically, in the
    final usage event of a stream: OpenAI's usage chunk / ``response.completed``, Gemini's
    last chunk; for Anthropic, ``message_start`` carries the input side and
    ``message_delta`` ``{"output_tokens": C}``).

    ``api``: one of ``openai.chat``, ``openai.responses``, ``openai.embeddings``,
    ``anthropic``, ``gemini``. ``model`` defaults to ``body["model"]`` (pass it for Gemini,
    whose model is in the URL)."""
    model = model if model is not None else str(body.get("model", ""))
    p, c, k, r, w = _counts(api, body, model, reply_text)
    if api == "openai.chat":
        return _openai_chat_usage(p, c, k, r)
    if api == "openai.responses":
        return _responses_usage(p, c, k, r)
    if api == "openai.embeddings":
        return {"prompt_tokens": p, "total_tokens": p}
    if api == "anthropic":
        return _anthropic_usage(p, c, k, w)
    if api == "gemini":
        return _gemini_usage(p, c, k, r)
    raise ValueError(f"unknown api {api!r}; one of {APIS}")


# --------------------------------------------------------------------------- encoders


def _j_compact(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _j_pretty(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=2).encode()


def _j_google_line(obj: Any) -> bytes:
    # Google's SSE lines: {"a": 1,"b": [{"c": "d"}]}  (": " after keys, bare "," between)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ": ")).encode()


def _sse_data(payload: bytes, terminator: bytes = b"\n\n") -> bytes:
    return b"data: " + payload + terminator


def _sse_event(name: str, payload: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


# --------------------------------------------------------------------------- records


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    # What the fake reported for this request: the API ("openai.chat", "anthropic", ...), the usage object in
    # that API's own shape exactly as sent (None when it reported none: errors, Gemini embeddings), and how many
    # stream events went out before a cut (None when the answer went out whole).
    api: str | None = None
    usage: dict | None = None
    events_sent: int | None = None

    def tokens(self) -> tuple[int, int]:
        """(input, output) of the reported usage in the gateway's terms: input counts cache reads and writes,
        output counts reasoning. (0, 0) when nothing was reported."""
        u = self.usage or {}
        if self.api == "anthropic":
            return (u.get("input_tokens", 0) + u.get("cache_read_input_tokens", 0)
                    + u.get("cache_creation_input_tokens", 0), u.get("output_tokens", 0))
        if self.api == "gemini":
            return u.get("promptTokenCount", 0), u.get("candidatesTokenCount", 0) + u.get("thoughtsTokenCount", 0)
        if self.api == "openai.responses":
            return u.get("input_tokens", 0), u.get("output_tokens", 0)
        return u.get("prompt_tokens", 0), u.get("completion_tokens", 0)

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive), or None."""
        name = name.lower()
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.headers if n == name]

    def header_names(self) -> list[str]:
        return [n for n, _ in self.headers]

    def json(self) -> Any:
        return json.loads(self.body)


_RECEIVED = web.RequestKey("received", Received)


@dataclass
class _Plan:
    status: int
    headers: list[tuple[str, str]]
    frames: list[bytes]
    streaming: bool
    # in-band error frame for fake-stream-error (inserted after 2 frames, then end)
    error_frame: bytes | None = None
    api: str | None = None
    usage: dict | None = None  # the usage object this answer reports (see Received.usage)


# --------------------------------------------------------------------------- the server

COUNTED = "counted"  # FakeProvider.chat_usage's default: report the usage the fake counted


class FakeProvider:
    """Fake OpenAI/Anthropic/Gemini server. See the module docstring."""

    slow_seconds: float = 5.0
    linger_seconds: float = 1.0
    retry_after: str = "1"
    die_after_events: int = 2
    endless_chunks: int = 64
    drip_count: int = 100
    drip_seconds: float = 0.05
    reply_text: str = REPLY_TEXT
    chat_usage: Any = COUNTED  # what OpenAI chat answers report as `usage`: the counted object, or this value as is
    chat_model: str | None = None  # the model OpenAI chat answers name (None: the one asked for)
    gemini_sse_terminator: bytes = b"\r\n\r\n"
    client_max_size: int = 64 * 1024 * 1024

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.received: list[Received] = []
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def last(self) -> Received:
        if not self.received:
            raise LookupError("the fake provider has received no request")
        return self.received[-1]

    def clear(self) -> None:
        self.received.clear()

    def _make_app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            body = await request.read()
            path, _, query = request.raw_path.partition("?")
            headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.raw_headers]
            request[_RECEIVED] = received = Received(request.method, path, query, headers, body)
            self.received.append(received)
            return await handler(request)

        app = web.Application(client_max_size=self.client_max_size, middlewares=[record])
        r = app.router
        r.add_post("/v1/chat/completions", self._h_openai_chat)
        r.add_post("/v1/responses", self._h_responses)
        r.add_post("/v1/responses/input_tokens", self._h_responses_input_tokens)
        r.add_post("/v1/embeddings", self._h_embeddings)
        r.add_get("/v1/models", self._h_models)
        r.add_post("/v1/messages", self._h_anthropic)
        r.add_post("/v1/messages/count_tokens", self._h_anthropic_count)
        r.add_get("/v1beta/models", self._h_gemini_models)
        r.add_post("/v1beta/models/{rest}", self._h_gemini)
        r.add_post("/v1/models/{rest}", self._h_gemini)
        r.add_route("*", "/echo{tail:.*}", self._h_echo)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("already started")
        runner = web.AppRunner(
            self._make_app(),
            handle_signals=False,
            shutdown_timeout=0.25,
            handler_cancellation=True,
            access_log=None,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def start_in_thread(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise RuntimeError("already started in a thread")
        ready = threading.Event()
        errors: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:  # noqa: BLE001 - reported to the caller
                errors.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"fake-provider-{id(self):x}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("fake provider did not start in time")
        if errors:
            self._thread.join(timeout)
            self._thread = None
            self._loop = None
            raise errors[0]

    def stop_thread(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if not loop.is_closed():
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout)
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._loop = None
            self._thread = None

    def __enter__(self) -> FakeProvider:
        self.start_in_thread()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_thread()

    async def __aenter__(self) -> FakeProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ------------------------------------------------------------------ transport tricks

    @staticmethod
    async def _flush(request: web.Request) -> None:
        t = request.transport
        for _ in range(200):
            if t is None or t.is_closing() or t.get_write_buffer_size() == 0:
                return
            await asyncio.sleep(0.005)

    async def _kill(self, request: web.Request, rst: bool) -> web.StreamResponse:
        """Abort the connection (RST if asked) and never answer."""
        t = request.transport
        if t is not None and not t.is_closing():
            if rst:
                sock = t.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
            t.abort()
        # connection_lost cancels this handler (handler_cancellation=True); the bound keeps a
        # stray handler from lingering if it does not.
        await asyncio.sleep(5)
        raise asyncio.CancelledError()

    async def _send(self, request: web.Request, plan: _Plan, sw: set[str]) -> web.StreamResponse:
        received = request.get(_RECEIVED)
        if received is not None:
            received.api, received.usage = plan.api, plan.usage
        cut = _cut_after(sw) if plan.streaming else None
        die = "fake-die-midstream" in sw or cut is not None
        slow = "fake-slow-stream" in sw
        frames = plan.frames
        if not plan.streaming and (die or slow) and frames and len(frames[0]) > 1:
            body = frames[0]
            half = len(body) // 2
            frames = [body[:half], body[half:]]
        resp = web.StreamResponse(status=plan.status)
        for k, v in plan.headers:
            resp.headers.add(k, v)
        if not plan.streaming:
            resp.content_length = sum(len(f) for f in frames)
        await resp.prepare(request)
        die_at = (cut if cut is not None else max(1, self.die_after_events)) if plan.streaming else 1
        end = _cut_after(sw, "fake-end-") if plan.streaming else None
        for i, frame in enumerate(frames):
            if i == end:
                if received is not None:
                    received.events_sent = i
                break  # the body's end follows: a clean end, without the stream's own
            if "fake-garbled-event" in sw and plan.streaming and i == 2:
                await resp.write(b"data: {not json\n\n")
            if die and i == die_at:
                if received is not None:
                    received.events_sent = i
                await self._flush(request)
                return await self._kill(request, rst=False)
            if plan.error_frame is not None and i == 2:
                await resp.write(plan.error_frame)
                break
            if slow and i > 0:
                await asyncio.sleep(self.slow_seconds)
            if "fake-endless-line" in sw and plan.streaming and i == 1:
                await resp.write(b"data: ")
                for _ in range(self.endless_chunks):
                    await resp.write(b"x" * (64 << 10))
                await asyncio.sleep(self.slow_seconds)
                break
            if "fake-drip" in sw and plan.streaming and i == 1:
                for _ in range(self.drip_count):
                    await asyncio.sleep(self.drip_seconds)
                    await resp.write(b": drip\n\n")
            await resp.write(frame)
        if "fake-linger" in sw:  # the whole answer is out; the connection's end comes later (a slow proxy's FIN)
            await asyncio.sleep(self.linger_seconds)
        await resp.write_eof()
        return resp

    async def _respond(
        self,
        request: web.Request,
        model: str,
        build_error: Any,
        build_plan: Any,
    ) -> web.StreamResponse:
        sw = switches_for(model)
        if "fake-reset" in sw:
            return await self._kill(request, rst=True)
        if "fake-slow-head" in sw:
            await asyncio.sleep(self.slow_seconds)
        status = _error_status(sw)
        if status is not None:
            plan = build_error(status)
            if status == 429:
                plan.headers.append(("retry-after", str(self.retry_after)))
            return await self._send(request, plan, set())
        return await self._send(request, build_plan(), sw)

    @staticmethod
    async def _json_body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return {}
        return json.loads(raw)

    # ------------------------------------------------------------------ OpenAI

    @staticmethod
    def _openai_error_plan(status: int) -> _Plan:
        table = {
            400: ("invalid_request_error", None, "Invalid request (fake-error-400)."),
            401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (fake-error-401)."),
            403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden (fake-error-403)."),
            404: ("invalid_request_error", "model_not_found", "The model does not exist (fake-error-404)."),
            429: ("requests", "rate_limit_exceeded", "Rate limit reached (fake-error-429). Please try again in 1s."),
            500: ("server_error", None, "The server had an error while processing your request. Sorry about that! (fake-error-500)"),
            503: ("server_error", None, "The engine is currently overloaded, please try again later. (fake-error-503)"),
        }
        typ, code, msg = table.get(status, ("server_error" if status >= 500 else "invalid_request_error", None, f"fake-error-{status}"))
        body = {"error": {"message": msg, "type": typ, "param": None, "code": code}}
        return _Plan(
            status,
            [("content-type", "application/json"), ("x-request-id", "req_" + secrets.token_hex(16))],
            [_j_pretty(body)],
            False,
        )

    async def _openai_json(self, request: web.Request) -> dict | web.Response:
        """The request's JSON object, or OpenAI's 400 for a body that is not one."""
        try:
            body = await self._json_body(request)
        except ValueError:
            return self._openai_bad_request("We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return self._openai_bad_request("Invalid body.")
        return body

    @staticmethod
    def _openai_bad_request(message: str) -> web.Response:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
        return web.Response(status=400, body=_j_pretty(body), content_type="application/json")

    def _openai_headers(self, streaming: bool) -> list[tuple[str, str]]:
        ct = "text/event-stream; charset=utf-8" if streaming else "application/json"
        h = [("content-type", ct), ("x-request-id", "req_" + secrets.token_hex(16)), ("openai-processing-ms", "1")]
        if streaming:
            h.append(("cache-control", "no-cache"))
        return h

    async def _h_openai_chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._openai_json(request)
        if isinstance(body, web.Response):
            return body
        model = str(body.get("model", ""))
        return await self._respond(request, model, self._openai_error_plan, lambda: self._openai_chat_plan(body, model))

    def _openai_chat_plan(self, body: dict, model: str) -> _Plan:
        sw = switches_for(model)
        reply = _plan_reply("openai.chat", body, model, self.reply_text)
        p, c, k, r, _ = _counts("openai.chat", body, model, self.reply_text)
        usage = _openai_chat_usage(p, c, k, r) if self.chat_usage is COUNTED else self.chat_usage
        named = self.chat_model or model  # the model the answer names
        cid = "chatcmpl-" + _rand(29)
        created = int(time.time())
        fp = "fp_" + secrets.token_hex(5)
        streaming = bool(body.get("stream"))
        if not streaming:
            if reply.kind == "tool":
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_" + _rand(24),
                            "type": "function",
                            "function": {"name": reply.tool_name, "arguments": reply.args_json},
                        }
                    ],
                    "refusal": None,
                    "annotations": [],
                }
                finish = "tool_calls"
            else:
                message = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
                finish = "stop"
            out = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": named,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": fp,
            }
            return _Plan(200, self._openai_headers(False), [_j_pretty(out)], False, None, "openai.chat", usage)

        so = body.get("stream_options")
        include_usage = isinstance(so, dict) and bool(so.get("include_usage"))

        def chunk(choices: list, usage_value: Any = None) -> bytes:
            d: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": named,
                "service_tier": "default",
                "system_fingerprint": fp,
                "choices": choices,
            }
            if include_usage:
                d["usage"] = usage_value
            return _sse_data(_j_compact(d))

        def choice(delta: dict, finish: str | None = None) -> dict:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

        frames: list[bytes] = []
        if reply.kind == "tool":
            frames.append(
                chunk(
                    [
                        choice(
                            {
                                "role": "assistant",
                                "content": None,
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": "call_" + _rand(24),
                                        "type": "function",
                                        "function": {"name": reply.tool_name, "arguments": ""},
                                    }
                                ],
                                "refusal": None,
                            }
                        )
                    ]
                )
            )
            for frag in reply.arg_fragments():
                frames.append(chunk([choice({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]})]))
            frames.append(chunk([choice({}, "tool_calls")]))
        else:
            frames.append(chunk([choice({"role": "assistant", "content": "", "refusal": None})]))
            for d in reply.deltas:
                frames.append(chunk([choice({"content": d})]))
            frames.append(chunk([choice({}, "stop")]))
        if include_usage:
            frames.append(chunk([], usage))
        frames.append(b"data: [DONE]\n\n")
        err = None
        if "fake-stream-error" in sw:
            err = _sse_data(
                _j_compact({"error": {"message": "The server had an error while processing your request. (fake-stream-error)", "type": "server_error", "param": None, "code": None}})
            )
        return _Plan(200, self._openai_headers(True), frames, True, err, "openai.chat", usage if include_usage else None)

    # ---- Responses API

    async def _h_responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._openai_json(request)
        if isinstance(body, web.Response):
            return body
        model = str(body.get("model", ""))
        return await self._respond(request, model, self._openai_error_plan, lambda: self._responses_plan(body, model))

    def _responses_plan(self, body: dict, model: str) -> _Plan:
        sw = switches_for(model)
        reply = _plan_reply("openai.responses", body, model, self.reply_text)
        p, c, k, r, _ = _counts("openai.responses", body, model, self.reply_text)
        rid = "resp_" + secrets.token_hex(24)
        created = int(time.time())
        if reply.kind == "tool":
            item_id = "fc_" + secrets.token_hex(24)
            call_id = "call_" + _rand(24)

            def item(status: str, arguments: str) -> dict:
                return {
                    "type": "function_call",
                    "id": item_id,
                    "call_id": call_id,
                    "name": reply.tool_name,
                    "arguments": arguments,
                    "status": status,
                }

        else:
            item_id = "msg_" + secrets.token_hex(24)

            def item(status: str, text: str | None) -> dict:
                content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
                return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}

        final_item = item("completed", reply.args_json if reply.kind == "tool" else reply.text)

        def response(status: str, output: list, usage: dict | None) -> dict:
            reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
            return {
                "id": rid,
                "object": "response",
                "created_at": created,
                "status": status,
                "error": None,
                "incomplete_details": None,
                "instructions": body.get("instructions"),
                "max_output_tokens": body.get("max_output_tokens"),
                "model": model,
                "output": output,
                "parallel_tool_calls": body.get("parallel_tool_calls", True),
                "previous_response_id": body.get("previous_response_id"),
                "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
                "store": body.get("store", True),
                "temperature": body.get("temperature", 1.0),
                "text": body.get("text") or {"format": {"type": "text"}},
                "tool_choice": body.get("tool_choice", "auto"),
                "tools": body.get("tools") or [],
                "top_p": body.get("top_p", 1.0),
                "truncation": body.get("truncation", "disabled"),
                "usage": usage,
                "user": body.get("user"),
                "metadata": body.get("metadata") or {},
            }

        usage = _responses_usage(p, c, k, r)
        if not body.get("stream"):
            return _Plan(200, self._openai_headers(False), [_j_pretty(response("completed", [final_item], usage))], False,
                         None, "openai.responses", usage)

        seq = 0
        frames: list[bytes] = []

        def ev(name: str, payload: dict) -> None:
            nonlocal seq
            d = {"type": name, "sequence_number": seq}
            d.update(payload)
            seq += 1
            frames.append(_sse_event(name, _j_compact(d)))

        ev("response.created", {"response": response("in_progress", [], None)})
        ev("response.in_progress", {"response": response("in_progress", [], None)})
        if reply.kind == "tool":
            ev("response.output_item.added", {"output_index": 0, "item": item("in_progress", "")})
            for frag in reply.arg_fragments():
                ev("response.function_call_arguments.delta", {"item_id": item_id, "output_index": 0, "delta": frag})
            ev("response.function_call_arguments.done", {"item_id": item_id, "output_index": 0, "arguments": reply.args_json})
        else:
            ev("response.output_item.added", {"output_index": 0, "item": item("in_progress", None)})
            part0 = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            ev("response.content_part.added", {"item_id": item_id, "output_index": 0, "content_index": 0, "part": part0})
            for d in reply.deltas:
                ev("response.output_text.delta", {"item_id": item_id, "output_index": 0, "content_index": 0, "delta": d, "logprobs": []})
            ev("response.output_text.done", {"item_id": item_id, "output_index": 0, "content_index": 0, "text": reply.text, "logprobs": []})
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": reply.text}
            ev("response.content_part.done", {"item_id": item_id, "output_index": 0, "content_index": 0, "part": part})
        ev("response.output_item.done", {"output_index": 0, "item": final_item})
        ev("response.completed", {"response": response("completed", [final_item], usage)})
        err = None
        if "fake-stream-error" in sw:
            err = _sse_event(
                "error",
                _j_compact({"type": "error", "sequence_number": 2, "code": "server_error", "message": "The server had an error (fake-stream-error).", "param": None}),
            )
        return _Plan(200, self._openai_headers(True), frames, True, err, "openai.responses", usage)

    # ---- Responses input token count (POST /v1/responses/input_tokens)

    async def _h_responses_input_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await self._openai_json(request)
        if isinstance(body, web.Response):
            return body

        def plan() -> _Plan:
            out = {"object": "response.input_tokens", "input_tokens": prompt_tokens_for("openai.responses", body)}
            return _Plan(200, self._openai_headers(False), [_j_pretty(out)], False)

        return await self._respond(request, str(body.get("model", "")), self._openai_error_plan, plan)

    # ---- embeddings, models

    async def _h_embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._openai_json(request)
        if isinstance(body, web.Response):
            return body
        model = str(body.get("model", ""))

        def plan() -> _Plan:
            dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) and body["dimensions"] > 0 else EMBEDDING_DIM
            b64 = body.get("encoding_format") == "base64"
            data = []
            for i, x in enumerate(_embedding_inputs(body)):
                vec = fake_embedding(x, dims)
                emb: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if b64 else vec
                data.append({"object": "embedding", "index": i, "embedding": emb})
            p = prompt_tokens_for("openai.embeddings", body)
            out = {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": p, "total_tokens": p}}
            return _Plan(200, self._openai_headers(False), [_j_pretty(out)], False, None, "openai.embeddings",
                         out["usage"])

        return await self._respond(request, model, self._openai_error_plan, plan)

    async def _h_models(self, request: web.Request) -> web.StreamResponse:
        if "anthropic-version" in request.headers:
            data = [
                {"type": "model", "id": m, "display_name": m.replace("-", " ").title(), "created_at": "2025-01-01T00:00:00Z"}
                for m in ANTHROPIC_MODELS
            ]
            out = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
            return web.Response(body=_j_compact(out), content_type="application/json")
        out = {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 1686935002, "owned_by": "system"} for m in OPENAI_MODELS],
        }
        return web.Response(body=_j_pretty(out), content_type="application/json")

    # ------------------------------------------------------------------ Anthropic

    @staticmethod
    def _anthropic_error_body(status: int) -> dict:
        table = {
            400: ("invalid_request_error", "Invalid request (fake-error-400)."),
            401: ("authentication_error", "invalid x-api-key"),
            402: ("billing_error", "Billing error (fake-error-402)."),
            403: ("permission_error", "Forbidden (fake-error-403)."),
            404: ("not_found_error", "Not found (fake-error-404)."),
            413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
            429: ("rate_limit_error", "Number of requests has exceeded your rate limit (fake-error-429)."),
            500: ("api_error", "Internal server error (fake-error-500)."),
            504: ("timeout_error", "Request timed out (fake-error-504)."),
            529: ("overloaded_error", "Overloaded"),
        }
        typ, msg = table.get(status, ("api_error" if status >= 500 else "invalid_request_error", f"fake-error-{status}"))
        return {"type": "error", "error": {"type": typ, "message": msg}, "request_id": "req_011C" + _rand(20)}

    def _anthropic_error_plan(self, status: int) -> _Plan:
        body = self._anthropic_error_body(status)
        return _Plan(status, [("content-type", "application/json"), ("request-id", body["request_id"])], [_j_compact(body)], False)

    def _anthropic_bad_request(self, message: str) -> web.Response:
        body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}, "request_id": "req_011C" + _rand(20)}
        return web.Response(status=400, body=_j_compact(body), content_type="application/json")

    async def _h_anthropic(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json_body(request)
        except ValueError:
            return self._anthropic_bad_request("There was an error parsing the body of your request.")
        if not isinstance(body, dict):
            return self._anthropic_bad_request("Invalid body.")
        model = str(body.get("model", ""))
        return await self._respond(request, model, self._anthropic_error_plan, lambda: self._anthropic_plan(body, model))

    async def _h_anthropic_count(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json_body(request)
        except ValueError:
            return self._anthropic_bad_request("There was an error parsing the body of your request.")
        model = str(body.get("model", "")) if isinstance(body, dict) else ""

        def plan() -> _Plan:
            out = {"input_tokens": prompt_tokens_for("anthropic", body if isinstance(body, dict) else {})}
            return _Plan(200, [("content-type", "application/json")], [_j_compact(out)], False)

        return await self._respond(request, model, self._anthropic_error_plan, plan)

    def _anthropic_plan(self, body: dict, model: str) -> _Plan:
        sw = switches_for(model)
        reply = _plan_reply("anthropic", body, model, self.reply_text)
        p, c, k, _r, w = _counts("anthropic", body, model, self.reply_text)
        mid = "msg_01" + _rand(22)
        rid = "req_011C" + _rand(20)
        if reply.kind == "tool":
            tool_id = "toolu_01" + _rand(22)
            block = {"type": "tool_use", "id": tool_id, "name": reply.tool_name, "input": reply.tool_args}
            stop_reason = "tool_use"
        else:
            block = {"type": "text", "text": reply.text}
            stop_reason = "end_turn"
        streaming = bool(body.get("stream"))
        if not streaming:
            out = {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [block],
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": _anthropic_usage(p, c, k, w),
            }
            return _Plan(200, [("content-type", "application/json"), ("request-id", rid)], [_j_compact(out)], False,
                         None, "anthropic", out["usage"])

        frames: list[bytes] = []

        def ev(name: str, payload: dict) -> None:
            frames.append(_sse_event(name, _j_compact(payload)))

        ev(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": _anthropic_usage(p, c, k, w, output_tokens=1),
                },
            },
        )
        if reply.kind == "tool":
            start_block = {"type": "tool_use", "id": block["id"], "name": reply.tool_name, "input": {}}
        else:
            start_block = {"type": "text", "text": ""}
        ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start_block})
        ev("ping", {"type": "ping"})
        if reply.kind == "tool":
            for frag in [""] + reply.arg_fragments():
                ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": frag}})
        else:
            for d in reply.deltas:
                ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": d}})
        ev("content_block_stop", {"type": "content_block_stop", "index": 0})
        ev(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": {"output_tokens": c}},
        )
        ev("message_stop", {"type": "message_stop"})
        err = None
        if "fake-stream-error" in sw:
            err = _sse_event("error", _j_compact({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
        headers = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"), ("request-id", rid)]
        return _Plan(200, headers, frames, True, err, "anthropic", _anthropic_usage(p, c, k, w))

    # ------------------------------------------------------------------ Gemini

    @staticmethod
    def _gemini_error_plan(status: int) -> _Plan:
        table = {
            400: ("INVALID_ARGUMENT", "Request contains an invalid argument. (fake-error-400)"),
            401: ("UNAUTHENTICATED", "Request had invalid authentication credentials. (fake-error-401)"),
            403: ("PERMISSION_DENIED", "The caller does not have permission (fake-error-403)"),
            404: ("NOT_FOUND", "Requested entity was not found. (fake-error-404)"),
            429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota). (fake-error-429)"),
            500: ("INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting (fake-error-500)"),
            503: ("UNAVAILABLE", "The model is overloaded. Please try again later. (fake-error-503)"),
            504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete. (fake-error-504)"),
        }
        st, msg = table.get(status, ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT", f"fake-error-{status}"))
        body = {"error": {"code": status, "message": msg, "status": st}}
        return _Plan(status, [("content-type", "application/json; charset=UTF-8")], [_j_pretty(body)], False)

    async def _h_gemini_models(self, request: web.Request) -> web.StreamResponse:
        out = {
            "models": [
                {
                    "name": f"models/{m}",
                    "version": "001",
                    "displayName": m,
                    "inputTokenLimit": 1048576,
                    "outputTokenLimit": 65536,
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                }
                for m in GEMINI_MODELS
            ]
        }
        return web.Response(body=_j_pretty(out), content_type="application/json", charset="UTF-8")

    async def _h_gemini(self, request: web.Request) -> web.StreamResponse:
        rest = request.match_info["rest"]
        model, sep, method = rest.rpartition(":")
        if not sep or method not in ("generateContent", "streamGenerateContent", "countTokens", "embedContent",
                                     "batchEmbedContents"):
            body = {"error": {"code": 404, "message": f"Method not found: {rest}", "status": "NOT_FOUND"}}
            return web.Response(status=404, body=_j_pretty(body), content_type="application/json", charset="UTF-8")
        try:
            body = await self._json_body(request)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            err = {"error": {"code": 400, "message": "Invalid JSON payload received.", "status": "INVALID_ARGUMENT"}}
            return web.Response(status=400, body=_j_pretty(err), content_type="application/json", charset="UTF-8")
        if method == "countTokens":

            def plan() -> _Plan:
                inner = body.get("generateContentRequest") if isinstance(body.get("generateContentRequest"), dict) else body
                p = prompt_tokens_for("gemini", inner)
                out = {"totalTokens": p, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": p}]}
                return _Plan(200, [("content-type", "application/json; charset=UTF-8")], [_j_pretty(out)], False)

            return await self._respond(request, model, self._gemini_error_plan, plan)
        if method in ("embedContent", "batchEmbedContents"):
            return await self._respond(request, model, self._gemini_error_plan, lambda: self._gemini_embed_plan(body, model, method))
        streaming = method == "streamGenerateContent"
        sse = request.query.get("alt") == "sse"
        return await self._respond(request, model, self._gemini_error_plan, lambda: self._gemini_plan(body, model, streaming, sse))

    def _gemini_plan(self, body: dict, model: str, streaming: bool, sse: bool) -> _Plan:
        sw = switches_for(model)
        reply = _plan_reply("gemini", body, model, self.reply_text)
        p, c, k, r, _ = _counts("gemini", body, model, self.reply_text)
        response_id = _rand(22, _ALNUM + "-_")

        def obj(parts: list, finish: bool, cand_tokens: int) -> dict:
            cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
            if finish:
                cand["finishReason"] = "STOP"
            cand["index"] = 0
            return {
                "candidates": [cand],
                "usageMetadata": _gemini_usage(p, cand_tokens, k, r),
                "modelVersion": model,
                "responseId": response_id,
            }

        if reply.kind == "tool":
            chunks = [([{"functionCall": {"name": reply.tool_name, "args": reply.tool_args}}], True, c)]
        elif not streaming:
            chunks = [([{"text": reply.text}], True, c)]
        else:
            chunks = []
            seen = 0
            for i, d in enumerate(reply.deltas):
                seen += count_words(d)
                chunks.append(([{"text": d}], i == len(reply.deltas) - 1, seen))
        objs = [obj(*ch) for ch in chunks]

        if not streaming:
            return _Plan(200, [("content-type", "application/json; charset=UTF-8")], [_j_pretty(objs[0])], False, None,
                         "gemini", objs[0]["usageMetadata"])
        err_obj = {"error": {"code": 500, "message": "An internal error has occurred. (fake-stream-error)", "status": "INTERNAL"}}
        if sse:
            term = self.gemini_sse_terminator
            frames = [_sse_data(_j_google_line(o), term) for o in objs]
            err = _sse_data(_j_google_line(err_obj), term) if "fake-stream-error" in sw else None
            return _Plan(200, [("content-type", "text/event-stream")], frames, True, err, "gemini",
                         objs[-1]["usageMetadata"])
        frames = [(b"[" if i == 0 else b"\n,\r\n") + _j_pretty(o) for i, o in enumerate(objs)]
        frames.append(b"\n]")
        err = (b"\n,\r\n" + _j_pretty(err_obj) + b"\n]") if "fake-stream-error" in sw else None
        return _Plan(200, [("content-type", "application/json; charset=UTF-8")], frames, True, err, "gemini",
                     objs[-1]["usageMetadata"])

    def _gemini_embed_plan(self, body: dict, model: str, method: str) -> _Plan:
        """embedContent -> {"embedding": {"values"}}; batchEmbedContents -> {"embeddings": [...]}, one per request.
        Gemini's embed answers carry no token counts, so nothing is reported as usage."""
        def values(req: Any) -> dict:
            req = req if isinstance(req, dict) else {}
            content = req.get("content") if isinstance(req.get("content"), dict) else {}
            text = " ".join(_texts_of_content(content.get("parts")))
            dims = req.get("outputDimensionality")
            return {"values": fake_embedding(text, dims if isinstance(dims, int) and dims > 0 else EMBEDDING_DIM)}

        headers = [("content-type", "application/json; charset=UTF-8")]
        if method == "embedContent":
            return _Plan(200, headers, [_j_pretty({"embedding": values(body)})], False, None, "gemini.embed", None)
        requests = body.get("requests") if isinstance(body.get("requests"), list) else []
        return _Plan(200, headers, [_j_pretty({"embeddings": [values(r) for r in requests]})], False, None,
                     "gemini.embed", None)

    # ------------------------------------------------------------------ echo

    async def _h_echo(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        path, _, query = request.raw_path.partition("?")
        out = {
            "method": request.method,
            "path": path,
            "query": query,
            "headers": [[k.decode("latin-1").lower(), v.decode("latin-1")] for k, v in request.raw_headers],
            "body": raw.decode("utf-8", "replace"),
        }
        return web.Response(body=_j_pretty(out), content_type="application/json")


# --------------------------------------------------------------------------- standalone


def _main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fake_provider", description="Fake OpenAI/Anthropic/Gemini server.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--slow-seconds", type=float, default=FakeProvider.slow_seconds)
    args = ap.parse_args(list(argv) if argv is not None else None)

    async def serve() -> None:
        fp = FakeProvider(args.host, args.port)
        fp.slow_seconds = args.slow_seconds
        await fp.start()
        print(f"fake provider listening on {fp.url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await fp.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(_main())
