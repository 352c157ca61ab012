"""The fake provider speaks the providers' shapes: proven with the official SDKs (OpenAI,
Anthropic) and raw HTTP (Gemini) pointed straight at it, plus its behaviour switches."""
from __future__ import annotations

import asyncio
import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import openai
import pytest

try:  # the HTTP library under the SDKs (httpx2 in current releases)
    import httpx2 as _httpx
except ImportError:  # pragma: no cover
    import httpx as _httpx

from tests.fake_provider import (
    BIG_WORD,
    BIG_WORDS,
    PROMPT_OVERHEAD,
    REASONING_TOKENS,
    REPLY_TEXT,
    FakeProvider,
    count_words,
    expected_reply,
    expected_usage,
    fake_embedding,
    prompt_tokens_for,
)

ROOT = Path(__file__).resolve().parent.parent
REPLY_WORDS = count_words(REPLY_TEXT)
WEATHER_TOOL_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["location"],
}
WEATHER_ARGS = {"location": "fake", "unit": "celsius"}


@pytest.fixture(scope="module")
def fp():
    server = FakeProvider()
    server.start_in_thread()
    yield server
    server.stop_thread()


@pytest.fixture
def oai(fp):
    return openai.OpenAI(base_url=fp.url + "/v1", api_key="x", max_retries=0, timeout=10)


@pytest.fixture
def claude(fp):
    return anthropic.Anthropic(base_url=fp.url, api_key="x", max_retries=0, timeout=10)


def raw(fp, method: str, path: str, body=None, headers=None, timeout: float = 10):
    """One HTTP request with http.client: (status, headers dict (lowercased), body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", fp.port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        hdrs = {"content-type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def gemini_body(text: str = "Why is the sky blue?") -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


# ----------------------------------------------------------------------------- OpenAI


def test_openai_chat_plain(fp, oai):
    fp.clear()
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello to me"}]
    r = oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == "gpt-4o-mini"
    assert r.choices[0].message.content == REPLY_TEXT
    assert r.choices[0].finish_reason == "stop"
    body = {"model": "gpt-4o-mini", "messages": messages}
    assert prompt_tokens_for("openai.chat", body) == 6 + PROMPT_OVERHEAD
    assert r.usage.model_dump(exclude_none=True) == expected_usage("openai.chat", body)
    assert r.usage.completion_tokens == REPLY_WORDS
    # recorded as received
    rec = fp.last()
    assert (rec.method, rec.path, rec.query) == ("POST", "/v1/chat/completions", "")
    assert rec.header("authorization") == "Bearer x"
    assert rec.json()["messages"] == messages
    # documented key order on the wire
    status, headers, data = raw(fp, "POST", "/v1/chat/completions", body)
    obj = json.loads(data)
    assert list(obj) == ["id", "object", "created", "model", "choices", "usage", "service_tier", "system_fingerprint"]
    assert list(obj["choices"][0]) == ["index", "message", "logprobs", "finish_reason"]
    assert list(obj["choices"][0]["message"]) == ["role", "content", "refusal", "annotations"]
    assert headers["content-type"] == "application/json"


def test_openai_chat_stream_include_usage(fp, oai):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "stream please"}]}
    chunks = list(oai.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY_TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump(exclude_none=True) == expected_usage("openai.chat", body)

    # raw framing: data: {...}\n\n ... data: [DONE]\n\n; usage:null only with include_usage
    status, headers, data = raw(fp, "POST", "/v1/chat/completions", dict(body, stream=True, stream_options={"include_usage": True}))
    assert headers["content-type"].startswith("text/event-stream")
    events = data.decode().split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e[len("data: ") :]) for e in events[:-2]]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert all(p["usage"] is None for p in payloads[:-1]) and payloads[-1]["choices"] == []
    status, headers, data = raw(fp, "POST", "/v1/chat/completions", dict(body, stream=True))
    payloads = [json.loads(e[6:]) for e in data.decode().split("\n\n")[:-2]]
    assert all("usage" not in p for p in payloads) and payloads[-1]["choices"][0]["finish_reason"] == "stop"


def test_openai_chat_tool_call_streamed_and_plain(fp, oai):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}}]
    messages = [{"role": "user", "content": "weather in Paris?"}]
    chunks = list(
        oai.chat.completions.create(model="gpt-4o", messages=messages, tools=tools, stream=True, stream_options={"include_usage": True})
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id.startswith("call_") and calls[0].function.name == "get_weather"
    assert len(calls) > 2  # arguments arrive in fragments
    args = "".join(tc.function.arguments or "" for tc in calls)
    assert json.loads(args) == WEATHER_ARGS
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    body = {"model": "gpt-4o", "messages": messages, "tools": tools}
    assert chunks[-1].usage.completion_tokens == count_words(json.dumps(WEATHER_ARGS))
    assert chunks[-1].usage.model_dump(exclude_none=True) == expected_usage("openai.chat", body)

    r = oai.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert call.type == "function" and json.loads(call.function.arguments) == WEATHER_ARGS
    # after a tool result, it answers with text
    followup = messages + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    r2 = oai.chat.completions.create(model="gpt-4o", messages=followup, tools=tools)
    assert r2.choices[0].message.content == REPLY_TEXT


def test_openai_responses_embeddings_models(fp, oai):
    r = oai.responses.create(model="gpt-4.1", input="tell me something", instructions="be nice")
    assert r.object == "response" and r.status == "completed"
    assert r.output_text == REPLY_TEXT
    body = {"model": "gpt-4.1", "input": "tell me something", "instructions": "be nice"}
    assert r.usage.model_dump(exclude_none=True) == expected_usage("openai.responses", body)
    assert r.usage.input_tokens == 5 + PROMPT_OVERHEAD

    events = list(oai.responses.create(model="gpt-4.1", input="tell me something", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY_TEXT
    assert events[-1].response.usage.output_tokens == REPLY_WORDS

    e = oai.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])  # SDK asks for base64
    assert [d.embedding for d in e.data] == [fake_embedding("one two"), fake_embedding("three")]
    assert (e.usage.prompt_tokens, e.usage.total_tokens) == (3, 3)
    e = oai.embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float", dimensions=4)
    assert e.data[0].embedding == fake_embedding("x", 4)

    assert "gpt-4o" in [m.id for m in oai.models.list()]


# ----------------------------------------------------------------------------- Anthropic


def test_anthropic_plain(fp, claude):
    msg = claude.messages.create(
        model="claude-test", max_tokens=100, system="you are terse", messages=[{"role": "user", "content": "hello there friend"}]
    )
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.content[0].type == "text" and msg.content[0].text == REPLY_TEXT
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    body = {"model": "claude-test", "system": "you are terse", "messages": [{"role": "user", "content": "hello there friend"}]}
    assert msg.usage.input_tokens == 6 + PROMPT_OVERHEAD
    assert msg.usage.output_tokens == REPLY_WORDS
    assert msg.usage.cache_read_input_tokens == 0 and msg.usage.cache_creation_input_tokens == 0
    rec = fp.last()
    # this SDK version authenticates with "authorization: Bearer", older ones with x-api-key
    assert (rec.header("x-api-key") == "x" or rec.header("authorization") == "Bearer x") and rec.header("anthropic-version")
    status, _, data = raw(fp, "POST", "/v1/messages", dict(body, max_tokens=10))
    obj = json.loads(data)
    assert list(obj) == ["id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"]
    assert obj["usage"] == expected_usage("anthropic", body)
    assert list(obj["usage"]) == ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"]


def test_anthropic_stream(fp, claude):
    with claude.messages.stream(model="claude-test-stream", max_tokens=100, messages=[{"role": "user", "content": "stream it"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == REPLY_TEXT and final.content[0].text == REPLY_TEXT
    assert final.usage.input_tokens == 2 + PROMPT_OVERHEAD and final.usage.output_tokens == REPLY_WORDS
    assert final.stop_reason == "end_turn"

    body = {"model": "claude-test-stream", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "stream it"}]}
    status, headers, data = raw(fp, "POST", "/v1/messages", body)
    assert headers["content-type"].startswith("text/event-stream")
    frames = data.decode().split("\n\n")
    assert frames[-1] == ""
    names = []
    for f in frames[:-1]:
        ev, dat = f.split("\n")
        assert ev.startswith("event: ") and dat.startswith("data: ")
        names.append(ev[7:])
        assert json.loads(dat[6:])["type"] == ev[7:]
    assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * REPLY_WORDS + [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = json.loads(frames[0].split("\n")[1][6:])
    assert start["message"]["usage"]["output_tokens"] == 1
    delta = json.loads(frames[-3].split("\n")[1][6:])
    assert delta == {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": REPLY_WORDS}}


def test_anthropic_tool_use(fp, claude):
    tools = [{"name": "get_weather", "description": "weather", "input_schema": WEATHER_TOOL_SCHEMA}]
    messages = [{"role": "user", "content": "weather in Paris?"}]
    msg = claude.messages.create(model="claude-test", max_tokens=100, tools=tools, messages=messages)
    block = msg.content[0]
    assert msg.stop_reason == "tool_use" and block.type == "tool_use" and block.id.startswith("toolu_")
    assert block.name == "get_weather" and block.input == WEATHER_ARGS
    assert msg.usage.output_tokens == count_words(json.dumps(WEATHER_ARGS))

    partials = []
    with claude.messages.stream(model="claude-test", max_tokens=100, tools=tools, messages=messages) as s:
        for ev in s:
            if ev.type == "content_block_delta" and ev.delta.type == "input_json_delta":
                partials.append(ev.delta.partial_json)
        final = s.get_final_message()
    assert len(partials) > 2 and json.loads("".join(partials)) == WEATHER_ARGS
    assert final.content[0].input == WEATHER_ARGS and final.stop_reason == "tool_use"

    followup = messages + [
        {"role": "assistant", "content": [block.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}]},
    ]
    msg2 = claude.messages.create(model="claude-test", max_tokens=100, tools=tools, messages=followup)
    assert msg2.content[0].text == REPLY_TEXT
    assert expected_reply("anthropic", {"model": "m", "tools": tools, "messages": followup}) == {"kind": "text", "text": REPLY_TEXT}


# ----------------------------------------------------------------------------- Gemini


def test_gemini_plain(fp):
    status, headers, data = raw(fp, "POST", "/v1beta/models/gemini-2.5-flash:generateContent?key=k", gemini_body())
    assert status == 200 and headers["content-type"].startswith("application/json")
    obj = json.loads(data)
    assert list(obj) == ["candidates", "usageMetadata", "modelVersion", "responseId"]
    cand = obj["candidates"][0]
    assert cand["content"] == {"parts": [{"text": REPLY_TEXT}], "role": "model"}
    assert cand["finishReason"] == "STOP" and cand["index"] == 0
    assert obj["usageMetadata"] == {
        "promptTokenCount": 5 + PROMPT_OVERHEAD,
        "candidatesTokenCount": REPLY_WORDS,
        "totalTokenCount": 5 + PROMPT_OVERHEAD + REPLY_WORDS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 5 + PROMPT_OVERHEAD}],
    }
    assert obj["usageMetadata"] == expected_usage("gemini", gemini_body(), model="gemini-2.5-flash")
    assert obj["modelVersion"] == "gemini-2.5-flash"
    assert fp.last().query == "key=k"


def test_gemini_stream_sse_and_json_array(fp):
    status, headers, data = raw(fp, "POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", gemini_body())
    assert headers["content-type"].startswith("text/event-stream")
    frames = data.split(b"\r\n\r\n")
    assert frames[-1] == b""
    objs = [json.loads(f[len(b"data: ") :]) for f in frames[:-1]]
    assert all(f.startswith(b'data: {"candidates": [{') for f in frames[:-1])
    assert "".join(o["candidates"][0]["content"]["parts"][0]["text"] for o in objs) == REPLY_TEXT
    assert all("usageMetadata" in o for o in objs)
    assert [o["usageMetadata"]["candidatesTokenCount"] for o in objs] == list(range(1, REPLY_WORDS + 1))
    assert objs[-1]["candidates"][0]["finishReason"] == "STOP"
    assert all("finishReason" not in o["candidates"][0] for o in objs[:-1])
    assert objs[-1]["usageMetadata"] == expected_usage("gemini", gemini_body(), model="gemini-2.5-flash")

    status, headers, data = raw(fp, "POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", gemini_body())
    arr = json.loads(data)
    assert isinstance(arr, list) and len(arr) == REPLY_WORDS
    assert "".join(o["candidates"][0]["content"]["parts"][0]["text"] for o in arr) == REPLY_TEXT

    tools = [{"functionDeclarations": [{"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}]}]
    status, _, data = raw(fp, "POST", "/v1beta/models/gemini-2.5-flash:generateContent", dict(gemini_body(), tools=tools))
    part = json.loads(data)["candidates"][0]["content"]["parts"][0]
    assert part == {"functionCall": {"name": "get_weather", "args": WEATHER_ARGS}}


# ----------------------------------------------------------------------------- switches


def test_error_switches_have_provider_shapes(fp, oai, claude):
    with pytest.raises(openai.InternalServerError) as ei:
        oai.chat.completions.create(model="fake-error-500", messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 500
    assert set(ei.value.body) == {"message", "type", "param", "code"} and ei.value.body["type"] == "server_error"
    with pytest.raises(openai.RateLimitError) as ei:
        oai.chat.completions.create(model="fake-error-429", messages=[{"role": "user", "content": "x"}], stream=True)
    assert ei.value.response.headers["retry-after"] == fp.retry_after
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="fake-error-400", messages=[{"role": "user", "content": "x"}])

    with pytest.raises(anthropic.InternalServerError) as ei:
        claude.messages.create(model="fake-error-500", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    body = ei.value.body
    assert body["type"] == "error" and body["error"] == {"type": "api_error", "message": body["error"]["message"]}
    with pytest.raises(anthropic.RateLimitError) as ei:
        claude.messages.create(model="fake-error-429", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ei.value.body["error"]["type"] == "rate_limit_error" and ei.value.response.headers["retry-after"]

    status, headers, data = raw(fp, "POST", "/v1beta/models/fake-error-500:generateContent", gemini_body())
    assert status == 500 and json.loads(data) == {"error": {"code": 500, "message": json.loads(data)["error"]["message"], "status": "INTERNAL"}}
    status, headers, data = raw(fp, "POST", "/v1beta/models/fake-error-429:streamGenerateContent?alt=sse", gemini_body())
    assert status == 429 and json.loads(data)["error"]["status"] == "RESOURCE_EXHAUSTED" and headers["retry-after"] == "1"
    status, _, data = raw(fp, "POST", "/v1beta/models/fake-error-400:generateContent", gemini_body())
    assert status == 400 and json.loads(data)["error"]["status"] == "INVALID_ARGUMENT"


def test_reset_before_head(fp, oai):
    fp.clear()
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="fake-reset", messages=[{"role": "user", "content": "x"}])
    assert fp.last().json()["model"] == "fake-reset"  # recorded before the reset
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        raw(fp, "POST", "/v1beta/models/fake-reset:generateContent", gemini_body())


def test_die_midstream_raises_in_sdks(fp, oai, claude):
    got = []
    with pytest.raises(openai.APIConnectionError):
        for c in oai.chat.completions.create(model="fake-die-midstream", messages=[{"role": "user", "content": "x"}], stream=True):
            got.append(c)
    assert len(got) == fp.die_after_events  # the first events did arrive
    # the Anthropic SDK lets the transport error through unwrapped while streaming
    with pytest.raises((anthropic.APIConnectionError, _httpx.TransportError)):
        with claude.messages.stream(model="fake-die-midstream", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as s:
            s.get_final_message()
    with pytest.raises(openai.APIConnectionError):  # non-streaming: half a body, then abort
        oai.chat.completions.create(model="fake-die-midstream", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(http.client.IncompleteRead):
        raw(fp, "POST", "/v1beta/models/fake-die-midstream:streamGenerateContent?alt=sse", gemini_body())


def test_stream_error_event(fp, oai, claude):
    with pytest.raises(openai.APIError) as ei:
        list(oai.chat.completions.create(model="fake-stream-error", messages=[{"role": "user", "content": "x"}], stream=True))
    assert "fake-stream-error" in ei.value.message
    with pytest.raises(anthropic.APIStatusError) as ei2:
        with claude.messages.stream(model="fake-stream-error", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as s:
            s.get_final_message()
    assert "overloaded" in str(ei2.value).lower()


def test_slow_head_and_slow_stream(fp, oai):
    fp.slow_seconds = 0.6
    try:
        slow = openai.OpenAI(base_url=fp.url + "/v1", api_key="x", max_retries=0, timeout=0.2)
        with pytest.raises(openai.APITimeoutError):
            slow.chat.completions.create(model="fake-slow-head", messages=[{"role": "user", "content": "x"}])
        t0 = time.monotonic()
        oai.chat.completions.create(model="fake-slow-head", messages=[{"role": "user", "content": "x"}])
        assert time.monotonic() - t0 >= 0.55

        fp.slow_seconds = 0.1
        stamps = []
        t0 = time.monotonic()
        for _ in oai.chat.completions.create(model="fake-slow-stream", messages=[{"role": "user", "content": "x"}], stream=True):
            stamps.append(time.monotonic())
        assert len(stamps) == REPLY_WORDS + 2
        # a sleep before each event after the first: a lower bound on the whole, which a busy machine only lengthens
        # (the gap between two reads is not: a late read makes the next gap short)
        assert stamps[-1] - t0 >= 0.1 * (len(stamps) - 1)
    finally:
        fp.slow_seconds = FakeProvider.slow_seconds


def test_cached_usage(fp, oai, claude):
    messages = [{"role": "user", "content": "one two three four five six seven"}]
    p = 7 + PROMPT_OVERHEAD
    r = oai.chat.completions.create(model="gpt-4o-fake-cached", messages=messages)
    assert r.usage.prompt_tokens == p and r.usage.prompt_tokens_details.cached_tokens == p // 2
    assert r.usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS
    assert r.usage.completion_tokens == REPLY_WORDS + REASONING_TOKENS
    chunks = list(
        oai.chat.completions.create(model="fake-cached", messages=messages, stream=True, stream_options={"include_usage": True})
    )
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == p // 2

    msg = claude.messages.create(model="claude-fake-cached", max_tokens=5, messages=messages)
    assert msg.usage.cache_read_input_tokens == p // 2 and msg.usage.input_tokens == p - p // 2
    msg = claude.messages.create(model="claude-fake-cache-write", max_tokens=5, messages=messages)
    assert msg.usage.cache_creation_input_tokens == p // 2 and msg.usage.input_tokens == p - p // 2

    body = {"contents": [{"parts": [{"text": messages[0]["content"]}]}]}
    _, _, data = raw(fp, "POST", "/v1beta/models/gemini-fake-cached:generateContent", body)
    um = json.loads(data)["usageMetadata"]
    assert um["cachedContentTokenCount"] == p // 2 and um["thoughtsTokenCount"] == REASONING_TOKENS
    assert um["totalTokenCount"] == p + REPLY_WORDS + REASONING_TOKENS
    assert um == expected_usage("gemini", body, model="gemini-fake-cached")


def test_big_body(fp, oai):
    r = oai.chat.completions.create(model="fake-big", messages=[{"role": "user", "content": "x"}])
    big = " ".join([BIG_WORD] * BIG_WORDS)
    assert len(big) > 2_000_000 and r.choices[0].message.content == big
    assert r.usage.completion_tokens == BIG_WORDS
    text = "".join(
        c.choices[0].delta.content or ""
        for c in oai.chat.completions.create(model="fake-big", messages=[{"role": "user", "content": "x"}], stream=True)
        if c.choices
    )
    assert text == big


# ----------------------------------------------------------------------------- recording, echo, lifecycle


def test_echo_and_recording(fp):
    fp.clear()
    conn = http.client.HTTPConnection("127.0.0.1", fp.port, timeout=5)
    conn.putrequest("POST", "/echo/some/path%2Fx?b=2&a=%20", skip_host=True, skip_accept_encoding=True)
    for name, value in [("Host", "upstream.example"), ("X-Zeta", "1"), ("Authorization", "Bearer secret"), ("X-Alpha", "2"), ("X-Zeta", "3")]:
        conn.putheader(name, value)
    conn.putheader("Content-Length", "5")
    conn.endheaders(b"hello")
    resp = conn.getresponse()
    echoed = json.loads(resp.read())
    conn.close()
    assert resp.status == 200
    assert echoed["method"] == "POST" and echoed["path"] == "/echo/some/path%2Fx" and echoed["query"] == "b=2&a=%20"
    expected_headers = [
        ("host", "upstream.example"),
        ("x-zeta", "1"),
        ("authorization", "Bearer secret"),
        ("x-alpha", "2"),
        ("x-zeta", "3"),
        ("content-length", "5"),
    ]
    assert [tuple(h) for h in echoed["headers"]] == expected_headers and echoed["body"] == "hello"
    rec = fp.last()
    assert len(fp.received) == 1
    assert (rec.method, rec.path, rec.query, rec.body) == ("POST", "/echo/some/path%2Fx", "b=2&a=%20", b"hello")
    assert rec.headers == expected_headers and rec.header_values("X-Zeta") == ["1", "3"]
    status, _, data = raw(fp, "GET", "/echo")
    assert status == 200 and json.loads(data)["method"] == "GET"
    fp.clear()
    assert fp.received == []
    with pytest.raises(LookupError):
        fp.last()


def test_async_start_stop_and_port_zero():
    async def main():
        import aiohttp

        a, b = FakeProvider(), FakeProvider()
        await a.start()
        await b.start()
        try:
            assert a.port and b.port and a.port != b.port and a.url == f"http://127.0.0.1:{a.port}"
            async with aiohttp.ClientSession() as s:
                async with s.get(a.url + "/v1/models") as r:
                    assert r.status == 200 and (await r.json())["object"] == "list"
            assert len(a.received) == 1 and b.received == []
        finally:
            await a.stop()
            await b.stop()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", a.port), timeout=1).close()

    asyncio.run(main())

    with FakeProvider() as t:  # thread mode as a context manager
        assert raw(t, "GET", "/v1/models")[0] == 200


def test_standalone_module():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_provider", "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v1/models")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ----------------------------------------------------------------------------- what the fake reported, per request


def test_each_request_records_the_usage_it_was_told(fp, oai, claude):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me in"}]}
    r = oai.chat.completions.create(**body)
    rec = fp.last()
    assert rec.api == "openai.chat" and rec.usage == r.usage.model_dump(exclude_none=True)
    assert rec.tokens() == (r.usage.prompt_tokens, r.usage.completion_tokens) and rec.events_sent is None
    # a stream without include_usage reports nothing; with it, the usage chunk's object
    list(oai.chat.completions.create(**body, stream=True))
    assert fp.last().usage is None and fp.last().tokens() == (0, 0)
    chunks = list(oai.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    assert fp.last().usage == chunks[-1].usage.model_dump(exclude_none=True)
    # Anthropic: the final usage (message_start's input side, message_delta's output), cache writes counted in
    m = claude.messages.create(model="claude-test-haiku fake-cache-write", max_tokens=50,
                               messages=[{"role": "user", "content": "cache these words for me"}])
    rec = fp.last()
    assert rec.api == "anthropic" and rec.usage == m.usage.model_dump(exclude_none=True)
    assert rec.tokens() == (m.usage.input_tokens + m.usage.cache_creation_input_tokens, m.usage.output_tokens)
    # errors report nothing
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="gpt-4o fake-error-400", messages=body["messages"])
    assert fp.last().usage is None


def test_cut_after_n_events(fp):
    body = {"model": "claude-test-haiku fake-cut-4", "max_tokens": 20, "stream": True,
            "messages": [{"role": "user", "content": "hello"}]}
    with pytest.raises(_httpx.TransportError if hasattr(_httpx, "TransportError") else Exception):
        with _httpx.stream("POST", fp.url + "/v1/messages", json=body, timeout=10) as resp:
            b"".join(resp.iter_bytes())
    rec = fp.last()
    assert rec.events_sent == 4
    with pytest.raises(http.client.IncompleteRead):
        raw(fp, "POST", "/v1/chat/completions",
            {"model": "gpt-4o fake-cut-0", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert fp.last().events_sent == 0


def test_gemini_embeddings(fp):
    status, _, data = raw(fp, "POST", "/v1beta/models/gemini-embedding-001:embedContent",
                          {"content": {"parts": [{"text": "hello world"}]}, "outputDimensionality": 4})
    assert status == 200 and json.loads(data) == {"embedding": {"values": fake_embedding("hello world", 4)}}
    assert fp.last().api == "gemini.embed" and fp.last().usage is None
    batch = {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}}
                          for t in ("one", "two")]}
    status, _, data = raw(fp, "POST", "/v1beta/models/gemini-embedding-001:batchEmbedContents", batch)
    assert status == 200
    assert json.loads(data) == {"embeddings": [{"values": fake_embedding(t)} for t in ("one", "two")]}


def test_responses_input_tokens(fp, oai):
    body = {"model": "gpt-4o", "input": "how many tokens is this", "instructions": "be brief"}
    count = oai.responses.input_tokens.count(**body)
    assert count.object == "response.input_tokens"
    assert count.input_tokens == prompt_tokens_for("openai.responses", body) == 7 + PROMPT_OVERHEAD
