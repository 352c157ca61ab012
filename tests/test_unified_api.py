"""The unified API end to end (issue 5, "One API for every model"): a real gateway in front of the fake provider.

`/v1/chat/completions` (OpenAI format) and `/v1/messages` (Anthropic format) reach any model, `/v1/rewrite/...`
any catalogue URL, `fallbacks` retries on 5xx/429/unreachable before any byte is sent, `/v1/models` lists what a
credential may use. What reaches the fake, what comes back, and what is logged and charged are all checked.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal

import httpx2 as httpx
import pytest

from .billing_helpers import h, settled, wallet
from .fake_provider import REPLY_TEXT, FakeProvider, expected_reply, expected_usage
from .inprocess import InProcess

USER = [{"role": "user", "content": "Say hello to the unified gateway"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string"}, "days": {"type": "integer"}}}}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {
    "city": {"type": "string"}}}}]


def call(gw, path, body, key=None, headers=None):
    """POST and read the whole answer: (response, raw bytes)."""
    hdrs = {**h(key or gw.secret_key), **(headers or {})}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(gw.url + path, content=content, headers=hdrs, timeout=15)
    return r, r.content


def sse(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of each server-sent event (LF or CRLF framed)."""
    out = []
    for block in raw.replace(b"\r\n", b"\n").decode().split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            out.append((event, "\n".join(data)))
    return out


def chunks(raw: bytes) -> list[dict]:
    return [json.loads(d) for _, d in sse(raw) if d != "[DONE]"]


def text_of_chunks(raw: bytes) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks(raw) if c.get("choices"))


def anthropic_text(raw: bytes) -> str:
    return "".join(json.loads(d)["delta"].get("text", "") for e, d in sse(raw) if e == "content_block_delta")


def upstream(fake, path_part: str):
    """The last request the fake received on a path containing `path_part`."""
    return next(r for r in reversed(fake.received) if path_part in r.path)


@pytest.fixture
def merchant(gateway):
    """A fresh merchant ($10), so its request log and wallet hold only this test's requests."""
    return gateway.create_merchant("unified", "10")["secret_key"]


# -- /v1/chat/completions ----------------------------------------------------------------------------------------

def check_openai_passthrough(r, raw, fake, body):
    got = upstream(fake, "/v1/chat/completions")
    if body.get("stream"):
        # unchanged but for the usage the gateway asks for itself (a stream is billed on the provider's count),
        # whose chunk the client, which did not ask for it, never sees
        assert got.json() == {**body, "stream_options": {"include_usage": True}}
        assert raw.endswith(b"data: [DONE]\n\n") and text_of_chunks(raw) == REPLY_TEXT
        assert all(c["choices"] for c in chunks(raw))
    else:
        assert got.json() == body  # unchanged
        assert r.json()["choices"][0]["message"]["content"] == REPLY_TEXT


def check_anthropic(r, raw, fake, body):
    sent = upstream(fake, "/v1/messages").json()
    assert sent["model"] == "claude-haiku-4-5" and sent["max_tokens"] == body.get("max_tokens", 4096)
    if body.get("stream"):
        assert sent["stream"] is True
        assert raw.endswith(b"data: [DONE]\n\n") and text_of_chunks(raw) == REPLY_TEXT
        usage = [c["usage"] for c in chunks(raw) if not c["choices"]]
        want = expected_usage("anthropic", sent)
        assert usage == [{"prompt_tokens": want["input_tokens"], "completion_tokens": want["output_tokens"],
                          "total_tokens": want["input_tokens"] + want["output_tokens"],
                          "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}}]
        assert [c["choices"][0]["finish_reason"] for c in chunks(raw) if c["choices"]][-1] == "stop"
    else:
        out = r.json()
        assert out["object"] == "chat.completion" and out["model"] == "claude-haiku-4-5"
        assert out["choices"][0]["message"]["content"] == REPLY_TEXT
        assert out["choices"][0]["finish_reason"] == "stop"
        assert out["usage"]["completion_tokens"] == expected_usage("anthropic", sent)["output_tokens"]


def check_gemini(r, raw, fake, body):
    got = upstream(fake, "/v1beta/models/")
    sent = got.json()
    assert "model" not in sent and sent["contents"][0]["role"] == "user"
    if body.get("stream"):
        assert got.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent" and got.query == "alt=sse"
        assert raw.endswith(b"data: [DONE]\n\n") and text_of_chunks(raw) == REPLY_TEXT
    else:
        assert got.path == "/v1beta/models/gemini-2.0-flash:generateContent"
        out = r.json()
        assert out["model"] == "gemini-2.0-flash" and out["choices"][0]["message"]["content"] == REPLY_TEXT
        want = expected_usage("gemini", sent, model="gemini-2.0-flash")
        assert out["usage"]["prompt_tokens"] == want["promptTokenCount"]


def check_system_and_stop(r, raw, fake, body):
    sent = upstream(fake, "/v1/messages").json()
    assert sent["system"] == "Be brief." and sent["stop_sequences"] == ["END"] and sent["max_tokens"] == 20
    assert sent["messages"] == [{"role": "user", "content": USER[0]["content"]}]
    assert r.json()["choices"][0]["finish_reason"] == "stop"


def check_gemini_system_and_stop(r, raw, fake, body):
    sent = upstream(fake, "/v1beta/models/").json()
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["generationConfig"] == {"maxOutputTokens": 20, "stopSequences": ["END"], "temperature": 0.5}


def tool_args_from_stream(raw: bytes) -> tuple[str, str, str]:
    name, args, finish = "", "", None
    for c in chunks(raw):
        for choice in c.get("choices") or []:
            for call_ in choice["delta"].get("tool_calls") or []:
                name += call_.get("function", {}).get("name") or ""
                args += call_.get("function", {}).get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return name, args, finish


def check_tool_stream(api, path_part):
    def check(r, raw, fake, body):
        sent = upstream(fake, path_part).json()
        want = expected_reply(api, sent, model="gemini-2.0-flash" if api == "gemini" else None)
        name, args, finish = tool_args_from_stream(raw)
        assert (name, json.loads(args), finish) == ("get_weather", want["args"], "tool_calls")
        if api == "anthropic":  # the fake streams the arguments in 5-character fragments: each is its own chunk
            frags = [c["choices"][0]["delta"]["tool_calls"][0]["function"].get("arguments") for c in chunks(raw)
                     if c.get("choices") and c["choices"][0]["delta"].get("tool_calls")]
            assert len([f for f in frags if f]) > 3
    return check


def check_tool_plain(api, path_part):
    def check(r, raw, fake, body):
        sent = upstream(fake, path_part).json()
        want = expected_reply(api, sent, model="gemini-2.0-flash" if api == "gemini" else None)
        choice = r.json()["choices"][0]
        [tool_call] = choice["message"]["tool_calls"]
        assert tool_call["function"]["name"] == "get_weather"
        assert json.loads(tool_call["function"]["arguments"]) == want["args"]
        assert choice["finish_reason"] == "tool_calls"
    return check


def check_qualified(r, raw, fake, body):
    assert upstream(fake, "/v1/messages").json()["model"] == "claude-haiku-4-5"
    assert r.headers["x-edge-proxy-model"] == "anthropic/claude-haiku-4-5"
    assert r.json()["model"] == "claude-haiku-4-5"


def check_qualified_openai(r, raw, fake, body):
    assert upstream(fake, "/v1/chat/completions").json() == {**body, "model": "gpt-4o-mini"}
    assert r.headers["x-edge-proxy-model"] == "openai/gpt-4o-mini"


STREAM_USAGE = {"stream": True, "stream_options": {"include_usage": True}}
CHAT_CASES = [
    ("to OpenAI, passed through", {"model": "gpt-4o-mini", "messages": USER}, check_openai_passthrough),
    ("to OpenAI, streamed bytes passed through", {"model": "gpt-4o-mini", "messages": USER, "stream": True},
     check_openai_passthrough),
    ("to Anthropic", {"model": "claude-haiku-4-5", "messages": USER}, check_anthropic),
    ("to Anthropic, streamed with usage", {"model": "claude-haiku-4-5", "messages": USER, **STREAM_USAGE},
     check_anthropic),
    ("to Gemini", {"model": "gemini-2.0-flash", "messages": USER}, check_gemini),
    ("to Gemini, streamed", {"model": "gemini-2.0-flash", "messages": USER, "stream": True}, check_gemini),
    ("a system prompt, stop and max_tokens to Anthropic",
     {"model": "claude-haiku-4-5", "messages": [{"role": "system", "content": "Be brief."}, *USER],
      "stop": "END", "max_tokens": 20}, check_system_and_stop),
    ("a system prompt, stop and max_tokens to Gemini",
     {"model": "gemini-2.0-flash", "messages": [{"role": "system", "content": "Be brief."}, *USER],
      "stop": ["END"], "max_completion_tokens": 20, "temperature": 0.5}, check_gemini_system_and_stop),
    ("a tool call to Anthropic", {"model": "claude-haiku-4-5", "messages": USER, "tools": TOOLS},
     check_tool_plain("anthropic", "/v1/messages")),
    ("a streamed tool call to Anthropic (argument fragments)",
     {"model": "claude-haiku-4-5", "messages": USER, "tools": TOOLS, "stream": True},
     check_tool_stream("anthropic", "/v1/messages")),
    ("a tool call to Gemini", {"model": "gemini-2.0-flash", "messages": USER, "tools": TOOLS},
     check_tool_plain("gemini", "/v1beta/models/")),
    ("a streamed tool call to Gemini", {"model": "gemini-2.0-flash", "messages": USER, "tools": TOOLS,
                                        "stream": True}, check_tool_stream("gemini", "/v1beta/models/")),
    ("a qualified Anthropic name", {"model": "anthropic/claude-haiku-4-5", "messages": USER}, check_qualified),
    ("a qualified OpenAI name, unqualified upstream", {"model": "openai/gpt-4o-mini", "messages": USER},
     check_qualified_openai),
]


@pytest.mark.parametrize("body,check", [c[1:] for c in CHAT_CASES], ids=[c[0] for c in CHAT_CASES])
def test_chat_completions(gateway, fake, body, check):
    r, raw = call(gateway, "/v1/chat/completions", body)
    assert r.status_code == 200, raw
    assert r.headers["x-lava-request-id"].startswith("req_")
    check(r, raw, fake, body)


ERROR_CASES = [
    ("an unknown model is a 404", {"model": "no-such-model-xyz", "messages": USER}, 404, "not_found",
     "no-such-model-xyz"),
    ("a body that is not JSON is a 400", b"{not json", 400, "invalid_request_error", "JSON"),
    ("a body that is not an object is a 400", [1, 2], 400, "invalid_request_error", "object"),
    ("no model is a 400", {"messages": USER}, 400, "invalid_request_error", "model"),
    ("a bad message is a 400 naming its path", {"model": "claude-haiku-4-5", "messages": [{"role": "wizard"}]},
     400, "invalid_request_error", "messages[0].role"),
    ("a message content that is a number is a 400 naming its path",
     {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": 7}]}, 400, "invalid_request_error",
     "messages[0].content"),
    ("tools that are an object are a 400", {"model": "gemini-2.0-flash", "messages": USER, "tools": {"a": 1}},
     400, "invalid_request_error", "tools"),
    ("a stop that is an object is a 400", {"model": "claude-haiku-4-5", "messages": USER, "stop": {"a": 1}},
     400, "invalid_request_error", "stop"),
    ("bad fallbacks are a 400 naming the path", {"model": "gpt-4o-mini", "messages": USER, "fallbacks": [{"x": 1}]},
     400, "invalid_request_error", "fallbacks[0]"),
    ("a fallback off the catalogue is a 403",
     {"model": "gpt-4o-mini", "messages": USER, "fallbacks": [{"url": "evil.example.com/v1", "model": "m"}]},
     403, "forbidden", "catalogue"),
]


@pytest.mark.parametrize("body,status,type_,needle", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_bad_requests_are_refused_before_anything_is_sent(tmp_path, body, status, type_, needle):
    async def scenario():
        async with FakeProvider() as fake, InProcess(tmp_path, fake.url) as gw:
            answer = await gw.call("POST", "/v1/chat/completions", body=body if isinstance(body, bytes)
                                   else json.dumps(body).encode(), key=gw.secret_key)
            return answer, list(fake.received)

    answer, received = asyncio.run(scenario())  # in-process: these need no socket
    assert answer.status == status
    error = answer.json()["error"]
    assert error["type"] == type_ and needle in error["message"]
    assert received == []


def test_a_bad_credential_is_a_401(gateway):
    r = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER},
                   headers=h("ep_sk_nope"), timeout=10)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_provider_errors_are_translated_to_the_clients_format(gateway):
    r, _ = call(gateway, "/v1/chat/completions", {"model": "anthropic/fake-error-400", "messages": USER})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error" and "fake-error-400" in r.json()["error"]["message"]
    r, _ = call(gateway, "/v1/messages", {"model": "openai/fake-error-429", "max_tokens": 5, "messages": USER})
    assert r.status_code == 429 and "retry-after" in r.headers
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "rate_limit_error"


# -- /v1/messages --------------------------------------------------------------------------------------------------

ANTH = {"model": "gpt-4o-mini", "max_tokens": 64, "system": "Be brief.", "messages": USER}


def test_messages_to_openai(gateway, fake):
    r, _ = call(gateway, "/v1/messages", ANTH, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200
    sent = upstream(fake, "/v1/chat/completions").json()
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_completion_tokens"] == 64 and sent["model"] == "gpt-4o-mini"
    out = r.json()
    assert out["type"] == "message" and out["model"] == "gpt-4o-mini" and out["stop_reason"] == "end_turn"
    assert out["content"] == [{"type": "text", "text": REPLY_TEXT}]
    want = expected_usage("openai.chat", sent)
    assert out["usage"]["input_tokens"] == want["prompt_tokens"]


def test_messages_to_openai_streamed(gateway, fake):
    r, raw = call(gateway, "/v1/messages", {**ANTH, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    sent = upstream(fake, "/v1/chat/completions").json()
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    names = [e for e, _ in sse(raw)]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert anthropic_text(raw) == REPLY_TEXT
    delta = next(json.loads(d) for e, d in sse(raw) if e == "message_delta")
    assert delta["usage"]["output_tokens"] == expected_usage("openai.chat", sent)["completion_tokens"]


def test_messages_with_tools_to_openai_streamed(gateway, fake):
    r, raw = call(gateway, "/v1/messages", {**ANTH, "tools": ANTHROPIC_TOOLS, "stream": True})
    assert r.status_code == 200
    sent = upstream(fake, "/v1/chat/completions").json()
    args = "".join(json.loads(d)["delta"].get("partial_json", "") for e, d in sse(raw) if e == "content_block_delta")
    assert json.loads(args) == expected_reply("openai.chat", sent)["args"]
    delta = next(json.loads(d) for e, d in sse(raw) if e == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"


def test_messages_to_anthropic_pass_through(gateway, fake):
    body = {**ANTH, "model": "claude-haiku-4-5"}
    r, _ = call(gateway, "/v1/messages", body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200
    got = upstream(fake, "/v1/messages")
    assert got.json() == body and got.header("x-api-key") == "sk-managed-anthropic"
    assert r.json()["content"][0]["text"] == REPLY_TEXT


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_messages_to_gemini_compose_both_translators(gateway, fake, stream):
    r, raw = call(gateway, "/v1/messages", {**ANTH, "model": "gemini-2.0-flash", "stream": stream})
    assert r.status_code == 200
    sent = upstream(fake, "/v1beta/models/").json()
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    if stream:
        assert anthropic_text(raw) == REPLY_TEXT and [e for e, _ in sse(raw)][-1] == "message_stop"
    else:
        assert r.json()["content"][0]["text"] == REPLY_TEXT and r.json()["model"] == "gemini-2.0-flash"


# -- /v1/rewrite -------------------------------------------------------------------------------------------------

REWRITE_BODY = {"model": "claude-haiku-4-5", "messages": USER}


@pytest.mark.parametrize("url", [
    "api.anthropic.com/v1/messages", "https://api.anthropic.com/v1/messages", "https:/api.anthropic.com/v1/messages",
    "https%3A%2F%2Fapi.anthropic.com%2Fv1%2Fmessages"], ids=["scheme-less", "full", "collapsed", "percent-encoded"])
def test_rewrite_openai_format_to_an_anthropic_url(gateway, fake, url):
    r, _ = call(gateway, "/v1/rewrite/openai/" + url, REWRITE_BODY)
    assert r.status_code == 200, r.text
    assert upstream(fake, "/v1/messages").json()["model"] == "claude-haiku-4-5"
    assert r.json()["choices"][0]["message"]["content"] == REPLY_TEXT


def test_rewrite_to_a_host_off_the_catalogue_is_a_403(gateway, fake):
    fake.clear()
    r, _ = call(gateway, "/v1/rewrite/openai/https://evil.example.com/v1/messages", REWRITE_BODY)
    assert r.status_code == 403 and "catalogue" in r.json()["error"]["message"]
    r, _ = call(gateway, "/v1/rewrite/openai/127.0.0.1:8080/v1/messages", REWRITE_BODY)
    assert r.status_code == 403
    assert fake.received == []


def test_rewrite_with_an_unknown_format_is_a_400(gateway):
    r, _ = call(gateway, "/v1/rewrite/bedrock/api.anthropic.com/v1/messages", REWRITE_BODY)
    assert r.status_code == 400 and "client_format" in r.json()["error"]["message"]


def test_rewrite_google_format_to_a_gemini_url_passes_through(gateway, fake):
    body = {"contents": [{"role": "user", "parts": [{"text": "hello gemini"}]}]}
    url = "generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    r, raw = call(gateway, "/v1/rewrite/google/" + url, body)
    assert r.status_code == 200
    got = upstream(fake, "/v1beta/models/")
    assert got.json() == body and got.query == "alt=sse"
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks(raw)) == REPLY_TEXT


def test_rewrite_anthropic_format_to_a_gemini_url(gateway, fake):
    body = {"model": "gemini-2.0-flash", "max_tokens": 50, "messages": USER}
    r, _ = call(gateway, "/v1/rewrite/anthropic/generativelanguage.googleapis.com/v1beta/models/x:generateContent",
                body)
    assert r.status_code == 200
    assert upstream(fake, "/v1beta/models/").path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert r.json()["type"] == "message" and r.json()["content"][0]["text"] == REPLY_TEXT


# -- fallbacks ---------------------------------------------------------------------------------------------------

def records_of_wait(gw, key, n, timeout=5.0):
    """The merchant's first n records (all it has), oldest first, once all n are logged."""
    deadline = time.monotonic() + timeout
    while True:
        rows = httpx.get(f"{gw.url}/v1/requests?limit=20", headers=h(key), timeout=10).json()["data"]
        if len(rows) >= n:
            return rows[::-1]
        assert time.monotonic() < deadline, f"only {len(rows)} of {n} records"
        time.sleep(0.05)


@pytest.mark.parametrize("primary", ["anthropic/fake-error-500", "anthropic/fake-error-429", "anthropic/fake-reset"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_fallback_answers_when_the_primary_fails(gateway, fake, merchant, primary, stream):
    before = wallet(gateway, merchant)
    body = {"model": primary, "messages": USER, "stream": stream,
            "fallbacks": [{"url": "api.openai.com/v1/chat/completions", "model": "gpt-4o-mini"}]}
    r, raw = call(gateway, "/v1/chat/completions", body, key=merchant)
    assert r.status_code == 200, raw
    assert r.headers["x-edge-proxy-model"] == "openai/gpt-4o-mini"
    if stream:
        assert text_of_chunks(raw) == REPLY_TEXT and all(c["model"] == "gpt-4o-mini" for c in chunks(raw))
    else:
        assert r.json()["model"] == "gpt-4o-mini"
    sent = upstream(fake, "/v1/chat/completions").json()
    assert "fallbacks" not in sent and sent["model"] == "gpt-4o-mini"
    failed, answered = records_of_wait(gateway, merchant, 2)
    [answered] = settled(gateway, merchant, [answered["request_id"]])
    [failed] = settled(gateway, merchant, [failed["request_id"]])
    assert answered["request_id"] == r.headers["x-lava-request-id"] != failed["request_id"]
    want_status = {"anthropic/fake-error-500": 500, "anthropic/fake-error-429": 429}.get(primary, 502)
    assert failed["status_code"] == want_status and failed["status"] == "error"
    assert failed["provider"] == "anthropic" and failed["error_reason"] == "fell_back"
    assert answered["provider"] == "openai" and answered["status"] == "completed"
    assert float(answered["cost"]) > 0
    assert before - wallet(gateway, merchant) == Decimal(answered["cost"])  # only the answer is charged


def test_fallbacks_are_tried_in_order_and_the_last_error_is_the_answer(gateway, fake, merchant):
    body = {"model": "claude-x-fake-error-503", "max_tokens": 5, "messages": USER,
            "fallbacks": ["openai/fake-error-500", "gemini-2.0-flash-fake-error-429"]}
    r, _ = call(gateway, "/v1/messages", body, key=merchant)
    assert r.status_code == 429 and r.json()["type"] == "error"  # Gemini's 429, in Anthropic's shape
    assert r.headers["x-edge-proxy-model"] == "google/gemini-2.0-flash-fake-error-429"
    rows = records_of_wait(gateway, merchant, 3)
    assert [(x["provider"], x["status_code"]) for x in rows] == [("anthropic", 503), ("openai", 500), ("google", 429)]
    assert rows[-1]["request_id"] == r.headers["x-lava-request-id"]


def test_no_fallback_after_the_first_byte(gateway, fake):
    fake.clear()
    body = {"model": "gpt-4o-mini+fake-die-midstream", "messages": USER, "stream": True,
            "fallbacks": ["claude-haiku-4-5"]}
    r, raw = call(gateway, "/v1/chat/completions", body)
    assert r.status_code == 200
    assert b"[DONE]" not in raw and json.loads(sse(raw)[-1][1])["error"]["code"] == "stream_interrupted"
    assert not any(x.path == "/v1/messages" for x in fake.received)  # the fallback was never tried


@pytest.mark.parametrize("path,body,want", [
    ("/v1/chat/completions", {"model": "claude-haiku-4-5+fake-die-midstream", "messages": USER, "stream": True},
     "openai"),
    ("/v1/chat/completions", {"model": "gemini-2.0-flash+fake-die-midstream", "messages": USER, "stream": True},
     "openai"),
    ("/v1/messages", {"model": "gpt-4o-mini+fake-die-midstream", "max_tokens": 9, "messages": USER, "stream": True},
     "anthropic"),
], ids=["anthropic to openai", "gemini to openai", "openai to anthropic"])
def test_a_translated_stream_cut_midway_ends_with_an_error_event(gateway, path, body, want):
    r, raw = call(gateway, path, body)
    assert r.status_code == 200
    event, data = sse(raw)[-1]
    assert b"[DONE]" not in raw and b"message_stop" not in raw
    if want == "anthropic":
        assert event == "error" and json.loads(data)["type"] == "error"
    else:
        assert "error" in json.loads(data)


# -- /v1/models --------------------------------------------------------------------------------------------------

def test_models_lists_the_catalogue_models(gateway):
    r = httpx.get(gateway.url + "/v1/models", headers=h(gateway.secret_key), timeout=10)
    assert r.status_code == 200
    out = r.json()
    assert out["object"] == "list"
    owners = {m["id"]: m["owned_by"] for m in out["data"]}
    assert owners["gpt-4o-mini"] == "openai" and owners["claude-haiku-4-5"] == "anthropic"
    assert owners["gemini-2.0-flash"] == "google"
    assert len(owners) == len(out["data"])  # each id once
    assert all(set(m) == {"id", "object", "created", "owned_by"} and m["object"] == "model" for m in out["data"])
    assert httpx.get(gateway.url + "/v1/models", timeout=10).status_code == 401


def spend_key(gw, **policy) -> str:
    r = httpx.post(gw.url + "/v1/spend_keys", json={"name": "unified", **policy}, headers=h(gw.secret_key),
                   timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["key"]


def test_models_for_a_spend_key_are_filtered_by_its_policy(gateway):
    key = spend_key(gateway, allowed_providers=["anthropic"])
    data = httpx.get(gateway.url + "/v1/models", headers=h(key), timeout=10).json()["data"]
    assert data and {m["owned_by"] for m in data} == {"anthropic"}
    key = spend_key(gateway, allowed_models=["gpt-4o-mini", "claude-haiku-4-5"])
    data = httpx.get(gateway.url + "/v1/models", headers=h(key), timeout=10).json()["data"]
    assert sorted(m["id"] for m in data) == ["claude-haiku-4-5", "gpt-4o-mini"]


def test_a_spend_key_may_only_use_its_models(gateway):
    key = spend_key(gateway, allowed_models=["claude-haiku-4-5"])
    r, _ = call(gateway, "/v1/chat/completions", {"model": "claude-haiku-4-5", "messages": USER}, key=key)
    assert r.status_code == 200
    r, _ = call(gateway, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER}, key=key)
    assert r.status_code == 403


# -- metering ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,body,api,path_part", [
    ("/v1/chat/completions", {"model": "claude-haiku-4-5", "messages": USER}, "anthropic", "/v1/messages"),
    ("/v1/chat/completions", {"model": "claude-haiku-4-5", "messages": USER, "stream": True}, "anthropic",
     "/v1/messages"),
    ("/v1/chat/completions", {"model": "gemini-2.0-flash", "messages": USER, "stream": True}, "gemini",
     "/v1beta/models/"),
    ("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 9, "messages": USER, "stream": True}, "openai.chat",
     "/v1/chat/completions"),
], ids=["anthropic", "anthropic streamed", "gemini streamed", "openai streamed for an anthropic client"])
def test_translated_calls_are_metered_from_the_upstreams_usage(gateway, fake, path, body, api, path_part):
    r, _ = call(gateway, path, body)
    assert r.status_code == 200
    sent = upstream(fake, path_part).json()
    [rec] = settled(gateway, gateway.secret_key, [r.headers["x-lava-request-id"]])
    want = expected_usage(api, sent, model="gemini-2.0-flash" if api == "gemini" else None)
    tokens = {"anthropic": ("input_tokens", "output_tokens"), "gemini": ("promptTokenCount", "candidatesTokenCount"),
              "openai.chat": ("prompt_tokens", "completion_tokens")}[api]
    assert (rec["model_usage"]["input_tokens"], rec["model_usage"]["output_tokens"]) == tuple(want[t] for t in tokens)
    assert rec["usage_source"] == "provider" and rec["priced"] is True and float(rec["cost"]) > 0
    assert rec["stream"] is body.get("stream", False) and rec["status"] == "completed"


def test_metadata_reaches_every_attempts_record(gateway, merchant):
    tag = uuid.uuid4().hex
    body = {"model": "anthropic/fake-error-500", "messages": USER, "fallbacks": ["gpt-4o-mini"]}
    r, _ = call(gateway, "/v1/chat/completions", body, key=merchant,
                headers={"x-lava-metadata": json.dumps({"t": tag})})
    assert r.status_code == 200
    rows = records_of_wait(gateway, merchant, 2)
    assert [x["metadata"] for x in rows] == [{"t": tag}, {"t": tag}]
