"""The unified API's translation layer (edge_proxy/unified/): golden fixtures, SDK acceptance, odd input.

Each file in tests/fixtures/translate/ is one case: `<name>.json` names the translator, its arguments and (for
requests and responses) the input and the exact expected output, or a list of malformed inputs with the exact
ValueError message. A stream case keeps its raw upstream SSE transcript in `<name>.in.sse` and the exact
translated transcript in `<name>.out.sse`; every stream is fed whole, a byte at a time, line by line and in
7-byte pieces, and must give the same bytes. Generated ids and timestamps are injected, so outputs are
deterministic. After a deliberate change, `EDGE_PROXY_UPDATE_GOLDEN=1 pytest tests/test_translate.py` rewrites
the expected outputs: review the diff before committing it.

The outputs are also handed to the official SDKs: OpenAI chunks go through `openai`'s own stream parser and
accumulator, Anthropic events through `anthropic`'s `messages.stream()`, responses through their pydantic
models and requests through the SDKs' request TypedDicts.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types import message_create_params as anthropic_params
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat import completion_create_params as openai_params
from pydantic import TypeAdapter

from edge_proxy.unified import ChainStream, include_usage
from edge_proxy.unified._common import SSEDecoder
from edge_proxy.unified.anthropic import (AnthropicToOpenAIStream, OpenAIToAnthropicStream,
                                          anthropic_error_to_openai, anthropic_request_to_openai,
                                          anthropic_response_to_openai, openai_error_to_anthropic,
                                          openai_request_to_anthropic, openai_response_to_anthropic)
from edge_proxy.unified.gemini import (GeminiToOpenAIStream, OpenAIToGeminiStream, gemini_error_to_openai,
                                       gemini_path, gemini_request_to_openai, gemini_response_to_openai,
                                       openai_request_to_gemini, openai_response_to_gemini, parse_gemini_model_path)
from edge_proxy.unified.models import Fallback, guess_provider, parse_fallbacks, split_model
from edge_proxy.unified.rewrite import parse_rewrite_path

FIXTURES = Path(__file__).parent / "fixtures" / "translate"
UPDATE = os.environ.get("EDGE_PROXY_UPDATE_GOLDEN") == "1"
CREATED = 1700000000


def ids():
    """A deterministic id factory: `call_gen1`, `chatcmpl-gen2`, …"""
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}gen{next(counter)}"


def _gemini_pair(body: dict) -> dict:
    out, stream = openai_request_to_gemini(body)
    return {"body": out, "stream": stream}


PLAIN = {
    "openai_request_to_anthropic": lambda body, args: openai_request_to_anthropic(body),
    "anthropic_response_to_openai": lambda body, args: anthropic_response_to_openai(
        body, args["model"], created=CREATED, id_factory=ids()),
    "anthropic_request_to_openai": lambda body, args: anthropic_request_to_openai(body, **args),
    "openai_response_to_anthropic": lambda body, args: openai_response_to_anthropic(
        body, args["model"], id_factory=ids()),
    "openai_request_to_gemini": lambda body, args: _gemini_pair(body),
    "anthropic_request_to_gemini": lambda body, args: _gemini_pair(anthropic_request_to_openai(body)),
    "gemini_response_to_openai": lambda body, args: gemini_response_to_openai(
        body, args["model"], created=CREATED, id_factory=ids()),
    "gemini_request_to_openai": lambda body, args: gemini_request_to_openai(
        body, args["model"], args.get("stream", False), id_factory=ids()),
    "openai_response_to_gemini": lambda body, args: openai_response_to_gemini(body, args["model"]),
}


def _gemini_to_anthropic(model: str) -> ChainStream:
    factory = ids()
    return ChainStream(GeminiToOpenAIStream(model, True, created=CREATED, id_factory=factory),
                       OpenAIToAnthropicStream(model, id_factory=factory))


STREAMS = {  # translator name → (factory, output format)
    "AnthropicToOpenAIStream": (lambda a: AnthropicToOpenAIStream(a["model"], a["include_usage"], created=CREATED,
                                                                  id_factory=ids()), "openai"),
    "OpenAIToAnthropicStream": (lambda a: OpenAIToAnthropicStream(a["model"], id_factory=ids()), "anthropic"),
    "GeminiToOpenAIStream": (lambda a: GeminiToOpenAIStream(a["model"], a["include_usage"], created=CREATED,
                                                            id_factory=ids()), "openai"),
    "GeminiToAnthropicStream": (lambda a: _gemini_to_anthropic(a["model"]), "anthropic"),
    "OpenAIToGeminiStream": (lambda a: OpenAIToGeminiStream(a["model"]), "gemini"),
}


def _load(kind: str) -> list[Any]:
    cases = []
    for path in sorted(FIXTURES.glob("*.json")):
        case = json.loads(path.read_text())
        is_stream = case["translator"] in STREAMS
        if (kind == "stream") == is_stream and (kind == "errors") == ("cases" in case):
            cases.append(pytest.param(path, case, id=path.stem))
    return cases


# --- plain requests and responses ---------------------------------------------------------------------------

def _deep(value: Any) -> Any:
    """Pydantic validates Iterable fields lazily: walk everything so every nested error surfaces."""
    if isinstance(value, dict):
        return {k: _deep(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ValidatorIterator":
        return [_deep(v) for v in value]
    return value


ANTHROPIC_REQUEST = {False: TypeAdapter(anthropic_params.MessageCreateParamsNonStreaming),
                     True: TypeAdapter(anthropic_params.MessageCreateParamsStreaming)}
OPENAI_REQUEST = {False: TypeAdapter(openai_params.CompletionCreateParamsNonStreaming),
                  True: TypeAdapter(openai_params.CompletionCreateParamsStreaming)}


def _check_shape(translator: str, out: dict) -> None:
    """The output as the target SDK's own types see it."""
    if translator == "openai_request_to_anthropic":
        _deep(ANTHROPIC_REQUEST[out.get("stream", False)].validate_python(out))
    elif translator in ("anthropic_request_to_openai", "gemini_request_to_openai"):
        _deep(OPENAI_REQUEST[out.get("stream", False)].validate_python(out))
    elif translator in ("anthropic_response_to_openai", "gemini_response_to_openai"):
        ChatCompletion.model_validate(out)
    elif translator == "openai_response_to_anthropic":
        Message.model_validate(out)


@pytest.mark.parametrize("path,case", _load("plain"))
def test_golden_plain(path: Path, case: dict) -> None:
    out = PLAIN[case["translator"]](case["input"], case.get("args", {}))
    # The output must survive JSON encoding unchanged (no tuples, no non-JSON values).
    assert json.loads(json.dumps(out)) == out
    if UPDATE:
        case["expected"] = out
        path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")
    assert out == case["expected"]
    assert list(json.dumps(out)) == list(json.dumps(case["expected"]))  # key order too
    _check_shape(case["translator"], out)


@pytest.mark.parametrize("path,case", _load("errors"))
def test_golden_malformed(path: Path, case: dict) -> None:
    for sub in case["cases"]:
        with pytest.raises(ValueError) as info:
            PLAIN[case["translator"]](sub["input"], case.get("args", {}))
        assert str(info.value) == sub["error"]
        assert "\n" not in str(info.value)


# --- streams ------------------------------------------------------------------------------------------------

def _chunkings(data: bytes) -> dict[str, list[bytes]]:
    lines = data.splitlines(keepends=True)
    return {
        "whole": [data],
        "bytes": [data[i:i + 1] for i in range(len(data))],
        "lines": lines,
        "sevens": [data[i:i + 7] for i in range(0, len(data), 7)],
        "line-halves": [piece for line in lines for piece in (line[:len(line) // 2], line[len(line) // 2:])],
    }


def _run(translator: Any, chunks: list[bytes], complete: bool) -> bytes:
    out = b"".join(translator.feed(chunk) for chunk in chunks)
    out += translator.finish(complete)
    assert translator.feed(b"data: {}\n\n") == b"" and translator.finish(True) == b"", "output after the end"
    return out


def _events(data: bytes) -> list[tuple[str | None, str]]:
    """A deliberately plain SSE split, independent of the translators' own decoder (Gemini's CRLF as LF)."""
    data = data.replace(b"\r\n", b"\n")
    assert data.endswith(b"\n\n") and b"\r" not in data
    events = []
    for block in data.decode().split("\n\n")[:-1]:
        name, datas = None, []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            else:
                assert field == "data", line
                datas.append(value)
        events.append((name, "\n".join(datas)))
    return events


def _check_openai_stream(out: bytes) -> None:
    events = _events(out)
    ended = events[-1][1] == "[DONE]" or "error" in json.loads(events[-1][1])
    assert ended, "an OpenAI stream ends in [DONE] or an error event"
    for i, (name, data) in enumerate(events):
        assert name is None
        if data == "[DONE]" or "error" in json.loads(data):
            assert i == len(events) - 1, "nothing after [DONE] or an error"
            if data != "[DONE]":
                assert set(json.loads(data)["error"]) >= {"message", "type"}
            continue
        ChatCompletionChunk.model_validate(json.loads(data))

    client = openai.OpenAI(api_key="sk-test", base_url="http://gateway.test/v1", http_client=httpx2.Client(
        transport=httpx2.MockTransport(lambda request: httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=out))))
    state = ChatCompletionStreamState()
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    if events[-1][1] != "[DONE]":
        with pytest.raises(openai.APIError):
            for chunk in stream:
                state.handle_chunk(chunk)
        return
    for chunk in stream:
        state.handle_chunk(chunk)
    final = state.current_completion_snapshot  # get_final_completion() refuses finish_reason "length"
    assert final.choices
    for choice in final.choices:
        for call in choice.message.tool_calls or []:
            assert isinstance(json.loads(call.function.arguments), dict)


def _check_anthropic_stream(out: bytes) -> None:
    events = _events(out)
    adapter = TypeAdapter(RawMessageStreamEvent)
    for i, (name, data) in enumerate(events):
        body = json.loads(data)
        assert name == body["type"], "the event name repeats the data's type"
        if name == "error":
            assert i == len(events) - 1
            assert body["error"]["type"] and body["error"]["message"]
        else:
            adapter.validate_python(body)
    assert events[-1][0] in ("message_stop", "error")

    client = anthropic.Anthropic(api_key="sk-ant-test", base_url="http://gateway.test", http_client=httpx2.Client(
        transport=httpx2.MockTransport(lambda request: httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=out))))
    manager = client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    if events[-1][0] == "error":
        with pytest.raises(anthropic.APIError), manager as stream:
            stream.until_done()
        return
    with manager as stream:
        final = stream.get_final_message()
    Message.model_validate(final.to_dict())
    for block in final.content:
        if block.type == "tool_use":
            assert isinstance(block.input, dict) and block.input


def _check_gemini_stream(out: bytes) -> None:
    # No Gemini SDK is installed: check the documented GenerateContentResponse shape by hand.
    events = _events(out)
    for i, (name, data) in enumerate(events):
        body = json.loads(data)
        assert name is None
        if "error" in body:
            assert i == len(events) - 1 and set(body["error"]) == {"code", "message", "status"}
            continue
        [candidate] = body["candidates"]
        assert candidate["index"] == 0 and candidate["content"]["role"] == "model"
        for part in candidate["content"]["parts"]:
            assert set(part) <= {"text", "functionCall", "thoughtSignature"}
            if "functionCall" in part:
                assert isinstance(part["functionCall"]["args"], dict) and part["functionCall"]["name"]
        assert ("finishReason" in candidate) == (i == len(events) - 1), "finishReason only on the last chunk"


CHECK_STREAM = {"openai": lambda out: _check_openai_stream(out), "anthropic": lambda out: _check_anthropic_stream(out),
                "gemini": lambda out: _check_gemini_stream(out)}


@pytest.mark.parametrize("path,case", _load("stream"))
def test_golden_stream(path: Path, case: dict) -> None:
    factory, fmt = STREAMS[case["translator"]]
    data = path.with_suffix(".in.sse").read_bytes()
    if case.get("newline") == "crlf":
        data = data.replace(b"\n", b"\r\n")
    complete = case.get("complete", True)
    outputs = {name: _run(factory(case["args"]), chunks, complete) for name, chunks in _chunkings(data).items()}
    golden = path.with_suffix(".out.sse")
    if UPDATE:
        golden.write_bytes(outputs["whole"])
    for name, out in outputs.items():
        assert out == golden.read_bytes(), f"chunking {name!r} differs from the golden transcript"
    CHECK_STREAM[fmt](outputs["whole"])


def test_fixture_files_pair_up() -> None:
    stems = {p.name.split(".")[0] for p in FIXTURES.iterdir()}
    for stem in stems:
        case = json.loads((FIXTURES / f"{stem}.json").read_text())
        if case["translator"] in STREAMS:
            assert (FIXTURES / f"{stem}.in.sse").exists() and (FIXTURES / f"{stem}.out.sse").exists()
        else:
            assert "cases" in case or "expected" in case


# --- streams: the contract around the goldens ---------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: AnthropicToOpenAIStream("m", True), lambda: OpenAIToAnthropicStream("m"),
    lambda: GeminiToOpenAIStream("m", True), lambda: _gemini_to_anthropic("m"), lambda: OpenAIToGeminiStream("m")])
@pytest.mark.parametrize("garbage", [b"data: {not json\n\n", b"data: [1, 2]\n\n", b"data: \"text\"\n\n"])
def test_stream_garbage_becomes_an_error_event(make, garbage: bytes) -> None:
    translator = make()
    out = translator.feed(garbage) + translator.finish(True)
    [(_, data)] = _events(out)
    assert "error" in json.loads(data)


@pytest.mark.parametrize("make", [
    lambda: AnthropicToOpenAIStream("m", True), lambda: OpenAIToAnthropicStream("m"),
    lambda: GeminiToOpenAIStream("m", True), lambda: OpenAIToGeminiStream("m")])
@pytest.mark.parametrize("complete", [True, False])
def test_empty_upstream_is_cut(make, complete: bool) -> None:
    out = make().finish(complete)
    assert b"the provider closed the stream before it was complete" in out
    assert b"[DONE]" not in out and out.count(b"data: ") == 1


HOSTILE_EVENTS = [  # (id, translator, one event that is JSON but not the shape the provider documents)
    ("an Anthropic block index that is a list", lambda: AnthropicToOpenAIStream("m", True),
     {"type": "content_block_start", "index": [], "content_block": {"type": "tool_use", "id": "t", "name": "f"}}),
    ("an Anthropic delta index that is an object", lambda: AnthropicToOpenAIStream("m", True),
     {"type": "content_block_delta", "index": {}, "delta": {"type": "input_json_delta", "partial_json": "{"}}),
    ("an Anthropic token count that is a string", lambda: AnthropicToOpenAIStream("m", True),
     {"type": "message_start", "message": {"id": "msg", "usage": {"input_tokens": "3"}}}),
    ("OpenAI choices that are a number", lambda: OpenAIToAnthropicStream("m"), {"choices": 1}),
    ("an OpenAI tool call index that is a list", lambda: OpenAIToAnthropicStream("m"),
     {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": [], "function": {"name": "f"}}]}}]}),
    ("an OpenAI token count that is a string", lambda: OpenAIToAnthropicStream("m"),
     {"choices": [], "usage": {"prompt_tokens": "3"}}),
    ("OpenAI tool calls that are a number, to Gemini", lambda: OpenAIToGeminiStream("m"),
     {"choices": [{"index": 0, "delta": {"tool_calls": 1}}]}),
    ("OpenAI call arguments that are a number, to Gemini", lambda: OpenAIToGeminiStream("m"),
     {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 1}}]}}]}),
    ("a Gemini candidate index that is a list", lambda: GeminiToOpenAIStream("m", True),
     {"candidates": [{"index": [], "content": {"parts": [{"text": "hi"}]}}]}),
    ("Gemini parts that are a number", lambda: GeminiToOpenAIStream("m", True),
     {"candidates": [{"content": {"parts": 1}}]}),
    ("a Gemini token count that is a string", lambda: GeminiToOpenAIStream("m", True),
     {"candidates": [], "usageMetadata": {"promptTokenCount": "3"}}),
]


@pytest.mark.parametrize("make,event", [c[1:] for c in HOSTILE_EVENTS], ids=[c[0] for c in HOSTILE_EVENTS])
def test_a_malformed_event_ends_the_stream_with_one_error_event(make, event: dict) -> None:
    translator = make()
    out = translator.feed(b"data: " + json.dumps(event).encode() + b"\n\n") + translator.finish(True)
    events = _events(out)
    assert "cannot be translated" in events[-1][1] and "error" in json.loads(events[-1][1])
    assert b"[DONE]" not in out and out.count(b"cannot be translated") == 1


def test_a_reason_that_is_not_a_string_is_a_plain_stop() -> None:
    anthropic = AnthropicToOpenAIStream("m").feed(b'data: {"type": "message_delta", "delta": {"stop_reason": []}}\n\n')
    assert json.loads(_events(anthropic)[-1][1])["choices"][0]["finish_reason"] == "stop"
    openai = OpenAIToAnthropicStream("m").feed(b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": []}]}'
                                               b'\n\ndata: [DONE]\n\n')
    assert b'"stop_reason":"end_turn"' in openai


def test_openai_done_without_anything_is_an_empty_message() -> None:
    out = OpenAIToAnthropicStream("m", id_factory=ids()).feed(b"data: [DONE]\n\n")
    assert [name for name, _ in _events(out)] == ["message_start", "message_delta", "message_stop"]
    _check_anthropic_stream(out)


def test_openai_stream_without_done_after_finish_is_complete() -> None:
    translator = OpenAIToAnthropicStream("m", id_factory=ids())
    last = b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\n'
    out = translator.feed(last) + translator.finish(True)
    assert _events(out)[-1][0] == "message_stop"
    cut = OpenAIToAnthropicStream("m", id_factory=ids())
    cut.feed(last)
    assert _events(cut.finish(False))[-1][0] == "error"


def test_gemini_stream_last_event_without_blank_line() -> None:
    translator = GeminiToOpenAIStream("m", False, created=CREATED, id_factory=ids())
    out = translator.feed(b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}]},"finishReason":"STOP"}]}')
    assert out == b""
    out = translator.finish(True)
    assert out.endswith(b"data: [DONE]\n\n") and b'"content":"Hi"' in out


SSE_SAMPLE = b"event: a\ndata: 1\n\n: comment\ndata:2\ndata: 3\nid: 9\nretry: 5\n\n\n\nevent: b\n\ndata: 4\n\n"


@pytest.mark.parametrize("data", [SSE_SAMPLE, SSE_SAMPLE.replace(b"\n", b"\r\n"), SSE_SAMPLE.replace(b"\n", b"\r")],
                         ids=["lf", "crlf", "cr"])
def test_sse_decoder(data: bytes) -> None:
    # An event name without data is dropped (per the SSE spec), and so is the name: "4" has no event name.
    expected = [("a", "1"), (None, "2\n3"), (None, "4")]
    for chunks in _chunkings(data).values():
        decoder = SSEDecoder()
        assert [e for chunk in chunks for e in decoder.feed(chunk)] + decoder.flush() == expected


def test_include_usage() -> None:
    assert include_usage({"stream": True, "stream_options": {"include_usage": True}})
    assert not include_usage({"stream": True}) and not include_usage({"stream_options": None})


# --- odd but valid input never raises -----------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {"messages": []},
    {"messages": [{"role": "user", "content": None}]},
    {"messages": [{"role": "user", "content": []}, {"role": "assistant", "content": None, "tool_calls": []}]},
    {"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": None}]},
    {"messages": [{"role": "system", "content": ""}, {"role": "user", "content": "x"}], "stop": [], "tools": [],
     "tool_choice": "auto", "max_tokens": None, "temperature": None, "user": None},
])
def test_odd_openai_requests(body: dict) -> None:
    openai_request_to_anthropic(body)
    openai_request_to_gemini(body)


@pytest.mark.parametrize("body", [
    {"messages": [], "max_tokens": 1},
    {"messages": [{"role": "user", "content": []}], "max_tokens": 1, "system": []},
    {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}], "max_tokens": 1},
])
def test_odd_anthropic_requests(body: dict) -> None:
    openai_request_to_gemini(anthropic_request_to_openai(body))


@pytest.mark.parametrize("body", [{}, {"content": []}, {"content": [{"type": "tool_use"}], "usage": None},
                                  {"content": [{"type": "server_tool_use", "id": "x"}], "stop_reason": "pause_turn"}])
def test_odd_anthropic_responses(body: dict) -> None:
    ChatCompletion.model_validate(anthropic_response_to_openai(body, "m"))


@pytest.mark.parametrize("body", [{}, {"choices": []}, {"choices": [{"message": None}]},
                                  {"choices": [{"message": {"content": None, "tool_calls": [
                                      {"id": "c", "function": {"name": "f", "arguments": "not json"}}]}}]}])
def test_odd_openai_responses(body: dict) -> None:
    Message.model_validate(openai_response_to_anthropic(body, "m"))


@pytest.mark.parametrize("body", [{}, {"candidates": []}, {"candidates": [{}]},
                                  {"candidates": [{"content": {"role": "model"}, "finishReason": "OTHER"}]}])
def test_odd_gemini_responses(body: dict) -> None:
    ChatCompletion.model_validate(gemini_response_to_openai(body, "m"))


# --- round trip and errors ----------------------------------------------------------------------------------

def test_openai_anthropic_openai_round_trip_keeps_the_conversation() -> None:
    case = json.loads((FIXTURES / "openai_to_anthropic_request_tools.json").read_text())
    back = anthropic_request_to_openai(openai_request_to_anthropic(case["input"]))
    original = case["input"]["messages"]
    assert [m["role"] for m in back["messages"]] == [m["role"] for m in original]
    calls = back["messages"][1]["tool_calls"]
    for got, sent in zip(calls, original[1]["tool_calls"]):
        assert got["id"] == sent["id"]
        assert json.loads(got["function"]["arguments"]) == json.loads(sent["function"]["arguments"])
    assert back["tool_choice"] == "required" and back["parallel_tool_calls"] is False


def test_error_bodies() -> None:
    assert anthropic_error_to_openai({"type": "error", "error": {"type": "overloaded_error", "message": "Over"}}) == {
        "error": {"message": "Over", "type": "overloaded_error", "param": None, "code": None}}
    assert openai_error_to_anthropic({"error": {"message": "Slow down", "type": "requests"}}, 429) == {
        "type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}
    assert gemini_error_to_openai({"error": {"code": 400, "message": "Bad", "status": "INVALID_ARGUMENT"}}) == {
        "error": {"message": "Bad", "type": "invalid_argument", "param": None, "code": "INVALID_ARGUMENT"}}
    assert anthropic_error_to_openai("oops")["error"]["type"] == "api_error"
    assert openai_error_to_anthropic(None, 502)["error"]["type"] == "api_error"


# --- models, fallbacks, rewrite paths, Gemini paths ---------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("anthropic/claude-haiku-4-5", ("anthropic", "claude-haiku-4-5")),
    ("claude-haiku-4-5", (None, "claude-haiku-4-5")),
    ("groq/openai/gpt-oss-20b", ("groq", "openai/gpt-oss-20b")),
    ("google-openai-compatible/gemini-2.0-flash", ("google-openai-compatible", "gemini-2.0-flash")),
])
def test_split_model(name: str, expected: tuple) -> None:
    assert split_model(name) == expected


def test_split_model_with_known_providers() -> None:
    known = {"openai", "anthropic", "together", "googleOpenaiCompatible"}
    assert split_model("meta-llama/Llama-3.3-70B", known) == (None, "meta-llama/Llama-3.3-70B")
    assert split_model("together/meta-llama/Llama-3.3-70B", known) == ("together", "meta-llama/Llama-3.3-70B")
    for bad in ("", "anthropic/", "/claude-x", None):
        with pytest.raises(ValueError, match="^model: "):
            split_model(bad)


@pytest.mark.parametrize("model,provider", [
    ("gpt-4o-mini", "openai"), ("o1", "openai"), ("o3-mini", "openai"), ("o4-mini-2025-04-16", "openai"),
    ("chatgpt-4o-latest", "openai"), ("text-embedding-3-small", "openai"), ("claude-haiku-4-5", "anthropic"),
    ("gemini-2.5-flash", "google"), ("models/gemini-2.0-flash", "google"), ("grok-4", "xai"),
    ("mistral-large-latest", "mistral"), ("magistral-medium-2506", "mistral"), ("codestral-latest", "mistral"),
    ("ministral-8b-latest", "mistral"), ("deepseek-chat", "deepseek"), ("Claude-3-Opus", "anthropic"),
    ("o1x", None), ("llama-3.3-70b-versatile", None), ("openai/gpt-oss-20b", None), ("", None),
])
def test_guess_provider(model: str, provider: str | None) -> None:
    assert guess_provider(model) == provider


def test_parse_fallbacks() -> None:
    assert parse_fallbacks(None) == []
    assert parse_fallbacks([
        "gpt-4o-mini",
        {"url": "api.openai.com/v1/chat/completions", "model": "gpt-4o-mini"},
        {"url": "https://api.anthropic.com/v1/messages", "model": "claude-3-haiku-20240307"},
        {"model": "gemini-2.0-flash"},
    ]) == [Fallback(None, "gpt-4o-mini"), Fallback("https://api.openai.com/v1/chat/completions", "gpt-4o-mini"),
           Fallback("https://api.anthropic.com/v1/messages", "claude-3-haiku-20240307"),
           Fallback(None, "gemini-2.0-flash")]


@pytest.mark.parametrize("value,message", [
    ("gpt-4o", "fallbacks: expected a list of model names or {url, model} objects"),
    (["a"] * 6, "fallbacks: at most 5 are allowed, got 6"),
    (["gpt-4o", 5], "fallbacks[1]: expected a model name or {url, model}"),
    (["gpt-4o", ""], "fallbacks[1]: expected a model name or {url, model}"),
    ([{"url": "api.openai.com/v1", "modle": "x"}], "fallbacks[0]: expected a model name or {url, model}"),
    ([{"url": "api.openai.com/v1"}], "fallbacks[0].model: expected a model name"),
    ([{"url": 5, "model": "x"}], "fallbacks[0].url: expected a provider URL"),
    ([{"url": "ftp://api.openai.com/v1", "model": "x"}], "fallbacks[0].url: only http(s) URLs are allowed"),
])
def test_parse_fallbacks_errors(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_fallbacks(value)
    assert str(info.value) == message


ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"


@pytest.mark.parametrize("path,query,expected", [
    ("/v1/rewrite/openai/api.anthropic.com/v1/messages", "", ("openai", "https://api.anthropic.com/v1/messages")),
    ("/v1/rewrite/anthropic/https://api.openai.com/v1/chat/completions", "",
     ("anthropic", "https://api.openai.com/v1/chat/completions")),
    ("/v1/rewrite/google/https:/api.anthropic.com/v1/messages", "", ("google", ANTHROPIC_URL)),
    ("/v1/rewrite/openai/HTTPS://api.anthropic.com/v1/messages", "", ("openai", ANTHROPIC_URL)),
    ("/v1/rewrite/openai/https:///api.anthropic.com/v1/messages", "", ("openai", ANTHROPIC_URL)),
    # What the Lava Node SDK's gateway(url, {format}) sends: the full URL in the path, its query as the gateway's.
    ("/v1/rewrite/anthropic/https://api.openai.com/v1/chat/completions", "api-version=2024-10-21",
     ("anthropic", "https://api.openai.com/v1/chat/completions?api-version=2024-10-21")),
    ("/v1/rewrite/openai/https%3A%2F%2Fapi.anthropic.com%2Fv1%2Fmessages", "",
     ("openai", "https://api.anthropic.com/v1/messages")),
    ("/v1/rewrite/anthropic/generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent",
     "alt=sse", ("anthropic", "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:"
                 "streamGenerateContent?alt=sse")),
    ("/v1/rewrite/openai/http://127.0.0.1:9000/v1/chat/completions", "?a=1&b=2",
     ("openai", "http://127.0.0.1:9000/v1/chat/completions?a=1&b=2")),
])
def test_parse_rewrite_path(path: str, query: str, expected: tuple) -> None:
    assert parse_rewrite_path(path, query) == expected


@pytest.mark.parametrize("path,message", [
    ("/v1/forward", "path: expected /v1/rewrite/{openai|anthropic|google}/{provider URL}"),
    ("/v1/rewrite/gemini/api.openai.com/v1", "client_format: expected one of openai, anthropic, google, not 'gemini'"),
    ("/v1/rewrite/bedrock/https://bedrock-runtime.us-east-1.amazonaws.com/model/x/converse",
     "client_format: expected one of openai, anthropic, google, not 'bedrock'"),
    ("/v1/rewrite/openai", "provider_url: expected a provider URL"),
    ("/v1/rewrite/openai/", "provider_url: expected a provider URL"),
    ("/v1/rewrite/openai/https://", "provider_url: expected a host, as in api.openai.com/v1/chat/completions"),
    ("/v1/rewrite/openai/ftp://api.openai.com/v1", "provider_url: only http(s) URLs are allowed"),
    ("/v1/rewrite/openai/api.openai.com/v1 x", "provider_url: the URL holds whitespace, a backslash or a '#'"),
])
def test_parse_rewrite_path_errors(path: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rewrite_path(path, "")
    assert str(info.value) == message


def test_gemini_round_trip_through_openai_keeps_contents() -> None:
    case = json.loads((FIXTURES / "gemini_to_openai_request.json").read_text())
    back, stream = openai_request_to_gemini(gemini_request_to_openai(case["input"], "m", True))
    sent = [{**c, "parts": [p for p in c["parts"] if not p.get("thought")]} for c in case["input"]["contents"]]
    # The image part and the calls survive; responses come back in call order (Gemini answers per call id).
    assert [c["role"] for c in back["contents"]] == [c["role"] for c in sent] and stream is True
    assert back["contents"][0] == sent[0] and back["contents"][1] == sent[1]
    names = [p["functionResponse"]["name"] for p in back["contents"][2]["parts"]]
    assert names == ["get_time", "get_weather"]
    assert back["systemInstruction"] == case["input"]["systemInstruction"]


def test_parse_gemini_model_path() -> None:
    assert parse_gemini_model_path("/v1beta/models/gemini-2.0-flash:generateContent") == ("gemini-2.0-flash", False)
    assert parse_gemini_model_path("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse") == (
        "gemini-2.5-pro", True)
    with pytest.raises(ValueError, match="^path: "):
        parse_gemini_model_path("/v1beta/models/gemini-2.0-flash:countTokens")


def test_gemini_path() -> None:
    assert gemini_path("gemini-2.0-flash", False) == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert gemini_path("models/gemini-2.5-pro", True) == "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    with pytest.raises(ValueError, match="^model: "):
        gemini_path("../x", False)
