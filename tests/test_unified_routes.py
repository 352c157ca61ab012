"""`/v1/responses`, `/v1/embeddings` and `/v1/messages/count_tokens` end to end (issue 18): a real gateway in front
of the fake provider. What reaches the fake (which endpoint, which body), what comes back (in the client's format,
errors too), and what is logged are checked; the client libraries' view is in tests/clients/.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from edge_proxy.unified.translation import JSONAnswer

from .billing_helpers import settled
from .fake_provider import REPLY_TEXT, FakeProvider, expected_usage, fake_embedding
from .inprocess import InProcess
from .test_unified_api import call, records_of_wait, sse, upstream

ASK = "Say hello to the unified gateway"
MESSAGES = [{"role": "user", "content": ASK}]


@pytest.fixture
def merchant(gateway):
    """A fresh merchant ($10), so its request log holds only this test's requests."""
    return gateway.create_merchant("routes", "10")["secret_key"]


def output_text(response: dict) -> str:
    return "".join(part["text"] for item in response["output"] if item["type"] == "message"
                   for part in item["content"] if part["type"] == "output_text")


# -- /v1/responses -------------------------------------------------------------------------------------------------

def test_responses_for_an_openai_model_pass_through_unchanged(gateway, fake):
    first, raw = call(gateway, "/v1/responses", {"model": "gpt-4o-mini", "input": ASK})
    assert first.status_code == 200, raw
    # a response of the caller's own (tests/test_response_owners.py has the rule on the managed key)
    body = {"model": "gpt-4o-mini", "input": ASK, "max_output_tokens": 50, "previous_response_id": first.json()["id"]}
    r, raw = call(gateway, "/v1/responses", body)
    assert r.status_code == 200, raw
    sent = upstream(fake, "/v1/responses")
    assert sent.path == "/v1/responses" and sent.json() == body  # OpenAI keeps the conversation state itself
    assert r.headers["x-edge-proxy-model"] == "openai/gpt-4o-mini" and output_text(r.json()) == REPLY_TEXT


def test_a_qualified_openai_name_goes_upstream_unqualified(gateway, fake):
    r, raw = call(gateway, "/v1/responses", {"model": "openai/gpt-4o-mini", "input": ASK, "stream": True})
    assert r.status_code == 200, raw
    assert upstream(fake, "/v1/responses").json() == {"model": "gpt-4o-mini", "input": ASK, "stream": True}
    events = [json.loads(d) for _, d in sse(raw)]
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == REPLY_TEXT
    [row] = settled(gateway, gateway.secret_key, [r.headers["x-lava-request-id"]])
    usage = events[-1]["response"]["usage"]
    assert (row["model_usage"]["input_tokens"], row["model_usage"]["output_tokens"]) == (
        usage["input_tokens"], usage["output_tokens"])
    assert row["usage_source"] == "provider" and row["endpoint"] == "/v1/responses"


@pytest.mark.parametrize("model,path_part,api", [
    ("claude-haiku-4-5", "/v1/messages", "anthropic"),
    ("gemini-2.0-flash", ":generateContent", "gemini"),
], ids=["anthropic", "gemini"])
def test_responses_for_other_models_are_translated_both_ways(gateway, fake, model, path_part, api):
    body = {"model": model, "instructions": "Be brief.", "input": [{"role": "user", "content": ASK}],
            "max_output_tokens": 40}
    r, raw = call(gateway, "/v1/responses", body)
    assert r.status_code == 200, raw
    sent = upstream(fake, path_part)
    answer = r.json()
    assert answer["object"] == "response" and answer["status"] == "completed" and output_text(answer) == REPLY_TEXT
    want = expected_usage(api, sent.json(), model=model if api == "gemini" else None)
    names = {"anthropic": ("input_tokens", "output_tokens"), "gemini": ("promptTokenCount", "candidatesTokenCount")}[api]
    assert (answer["usage"]["input_tokens"], answer["usage"]["output_tokens"]) == tuple(want[n] for n in names)
    if api == "anthropic":
        assert sent.json()["system"] == "Be brief." and sent.json()["max_tokens"] == 40
    [row] = settled(gateway, gateway.secret_key, [r.headers["x-lava-request-id"]])
    assert row["model_usage"]["output_tokens"] == answer["usage"]["output_tokens"] and float(row["cost"]) > 0


def test_an_openai_format_provider_without_responses_gets_its_chat_api(tmp_path):
    """Mistral speaks OpenAI's chat format but has no /responses the gateway meters: the hub carries it."""
    async def scenario():
        async with FakeProvider() as fake, InProcess(tmp_path, fake.url, {
                "EDGE_PROXY_UPSTREAM_MISTRAL": fake.url + "/v1", "EDGE_PROXY_PROVIDER_KEY_MISTRAL": "sk-m"}) as gw:
            for stream in (False, True):
                answer = await gw.call("POST", "/v1/responses", key=gw.secret_key, body={
                    "model": "mistral/mistral-small-latest", "input": ASK, "stream": stream,
                    "max_output_tokens": 50})
                assert answer.status == 200, answer.body
                sent = fake.last()
                assert sent.path == "/v1/chat/completions" and sent.json()["messages"] == MESSAGES
                if stream:  # the gateway asked for the usage chunk response.completed needs
                    assert sent.json()["stream_options"] == {"include_usage": True}
                    events = [json.loads(d) for _, d in sse(answer.body)]
                    assert events[-1]["type"] == "response.completed"
                    assert output_text(events[-1]["response"]) == REPLY_TEXT and events[-1]["response"]["usage"]
                else:
                    assert output_text(answer.json()) == REPLY_TEXT

    asyncio.run(scenario())


def test_a_provider_error_on_responses_comes_in_openais_shape(gateway, fake):
    r, raw = call(gateway, "/v1/responses", {"model": "anthropic/fake-error-400", "input": ASK})
    assert r.status_code == 400, raw
    assert r.json()["error"]["type"] == "invalid_request_error" and "fake-error-400" in r.json()["error"]["message"]
    assert r.headers["x-edge-proxy-model"] == "anthropic/fake-error-400"


@pytest.mark.parametrize("body,needle", [
    ({"model": "claude-haiku-4-5", "input": ASK, "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"model": "claude-haiku-4-5", "input": ASK, "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"model": "gemini-2.0-flash", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
], ids=["no stored conversation for Claude", "no built-in OpenAI tool on Claude", "no stored item for Gemini"])
def test_what_a_non_openai_model_cannot_do_is_a_400_before_anything_is_sent(gateway, fake, body, needle):
    before = len(fake.received)
    r, raw = call(gateway, "/v1/responses", body)
    assert r.status_code == 400 and needle in r.json()["error"]["message"], raw
    assert len(fake.received) == before


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_responses_fallback_answers_when_the_primary_fails(gateway, fake, merchant, stream):
    body = {"model": "openai/fake-error-503", "input": ASK, "stream": stream, "fallbacks": ["claude-haiku-4-5"]}
    r, raw = call(gateway, "/v1/responses", body, key=merchant)
    assert r.status_code == 200, raw
    assert r.headers["x-edge-proxy-model"] == "anthropic/claude-haiku-4-5"
    if stream:
        events = [json.loads(d) for _, d in sse(raw)]
        assert events[-1]["type"] == "response.completed" and output_text(events[-1]["response"]) == REPLY_TEXT
    else:
        assert output_text(r.json()) == REPLY_TEXT
    assert "fallbacks" not in upstream(fake, "/v1/responses").json()
    failed, answered = records_of_wait(gateway, merchant, 2)
    assert (failed["provider"], failed["status_code"], failed["error_reason"]) == ("openai", 503, "fell_back")
    assert (answered["provider"], answered["status"]) == ("anthropic", "completed")


def test_a_url_fallback_to_openai_goes_to_its_responses_endpoint(gateway, fake, merchant):
    body = {"model": "anthropic/fake-error-500", "input": ASK,
            "fallbacks": [{"url": "api.openai.com/v1/chat/completions", "model": "gpt-4o-mini"}]}
    r, raw = call(gateway, "/v1/responses", body, key=merchant)
    assert r.status_code == 200, raw
    assert upstream(fake, "/v1/").path == "/v1/responses" and output_text(r.json()) == REPLY_TEXT


# -- /v1/embeddings ------------------------------------------------------------------------------------------------

def test_a_gemini_embedding_is_one_batch_call(gateway, fake):
    body = {"model": "gemini-embedding-001", "input": ["one", "two"], "dimensions": 3}
    r, raw = call(gateway, "/v1/embeddings", body)
    assert r.status_code == 200, raw
    sent = upstream(fake, ":batchEmbedContents")
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.json() == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}, "outputDimensionality": 3}
        for t in ("one", "two")]}
    assert [d["embedding"] for d in r.json()["data"]] == [fake_embedding(t, 3) for t in ("one", "two")]
    [row] = settled(gateway, gateway.secret_key, [r.headers["x-lava-request-id"]])
    assert row["usage_source"] == "estimated" and row["model_usage"]["input_tokens"] == 2
    assert r.json()["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


def test_an_openai_embedding_passes_through_without_a_null_fallbacks(gateway, fake):
    r, raw = call(gateway, "/v1/embeddings", {"model": "text-embedding-3-small", "input": "one", "fallbacks": None})
    assert r.status_code == 200, raw
    assert upstream(fake, "/v1/embeddings").json() == {"model": "text-embedding-3-small", "input": "one"}


@pytest.mark.parametrize("body,status,needle", [
    ({"model": "claude-haiku-4-5", "input": "x"}, 400, "no embeddings API"),
    ({"model": "text-embedding-3-small", "input": "x", "fallbacks": ["gemini-embedding-001"]}, 400, "fallbacks"),
    ({"model": "gemini-embedding-001", "input": [[1, 2]]}, 400, "token ids"),
    ({"model": "gemini-embedding-001", "input": []}, 400, "input"),
    ({"input": "x"}, 400, "model"),
    ({"model": "no-such-embedder", "input": "x"}, 404, "no-such-embedder"),
], ids=["anthropic has none", "no fallbacks to other vectors", "gemini embeds text only", "no input",
        "no model", "an unknown model"])
def test_embeddings_that_cannot_be_served_are_refused_before_anything_is_sent(gateway, fake, body, status, needle):
    before = len(fake.received)
    r, raw = call(gateway, "/v1/embeddings", body)
    assert r.status_code == status and needle in r.json()["error"]["message"], raw
    assert len(fake.received) == before


def test_a_gemini_embed_error_comes_in_openais_shape_and_is_not_billed(gateway, fake):
    r, raw = call(gateway, "/v1/embeddings", {"model": "gemini-embedding-001+fake-error-429", "input": "x"})
    assert r.status_code == 429, raw
    assert set(r.json()) == {"error"} and "fake-error-429" in r.json()["error"]["message"]
    [row] = settled(gateway, gateway.secret_key, [r.headers["x-lava-request-id"]])
    assert row["usage_source"] == "none" and row["model_usage"]["input_tokens"] == 0 and row["status"] == "error"


# -- /v1/messages/count_tokens -------------------------------------------------------------------------------------

def test_a_gemini_count_is_a_count_tokens_call_of_the_translated_request(gateway, fake):
    body = {"model": "gemini-2.0-flash", "system": "Be brief.", "messages": MESSAGES}
    r, raw = call(gateway, "/v1/messages/count_tokens", body)
    assert r.status_code == 200 and set(r.json()) == {"input_tokens"}, raw
    sent = upstream(fake, ":countTokens")
    request = sent.json()["generateContentRequest"]
    assert sent.path == "/v1beta/models/gemini-2.0-flash:countTokens" and request["model"] == "models/gemini-2.0-flash"
    assert request["contents"] == [{"role": "user", "parts": [{"text": ASK}]}]
    assert request["systemInstruction"]["parts"] == [{"text": "Be brief."}]


def test_an_openai_count_is_an_input_tokens_call(gateway, fake):
    r, raw = call(gateway, "/v1/messages/count_tokens", {"model": "gpt-4o-mini", "system": "Be brief.",
                                                           "messages": MESSAGES})
    assert r.status_code == 200, raw
    sent = upstream(fake, "/input_tokens").json()
    assert sent["instructions"] == "Be brief." and sent["input"] == [{"role": "user", "content": ASK}]
    assert r.json()["input_tokens"] > 0


def test_an_anthropic_count_passes_through(gateway, fake):
    body = {"model": "claude-haiku-4-5", "messages": MESSAGES}
    r, raw = call(gateway, "/v1/messages/count_tokens", body)
    assert r.status_code == 200, raw
    assert upstream(fake, "/count_tokens").json() == body and upstream(fake, "/count_tokens").header(
        "anthropic-version") == "2023-06-01"


COUNT_REFUSALS = [
    ({"model": "mistral-small-latest", "messages": MESSAGES}, 400, "no token counting endpoint"),
    ({"model": "claude-haiku-4-5", "messages": MESSAGES, "fallbacks": ["gpt-4o-mini"]}, 400, "fallbacks"),
    ({"messages": MESSAGES}, 400, "model"),
]
COUNT_REFUSAL_IDS = ["a provider that cannot count", "no fallbacks: another tokenizer's count", "no model"]


def _message(body: dict) -> str:
    return (body.get("error") or {}).get("message", "")


@pytest.mark.parametrize("body,status,needle", COUNT_REFUSALS, ids=COUNT_REFUSAL_IDS)
def test_counts_that_cannot_be_made_are_refused_before_anything_is_sent(gateway, fake, body, status, needle):
    before = len(fake.received)
    r, raw = call(gateway, "/v1/messages/count_tokens", body)
    assert r.status_code == status and needle in _message(r.json()), raw
    assert len(fake.received) == before


@pytest.mark.parametrize("path,body", [
    ("/v1/messages/count_tokens", {"model": "mistral-small-latest", "messages": MESSAGES}),
    ("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "wizard"}]}),
    ("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 5, "system": [{"type": "text", "text": 7}],
                      "messages": MESSAGES}),
    ("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 5,
                      "messages": [{"role": "assistant", "content": [{"type": "text", "text": {}}]}]}),
], ids=["count_tokens", "messages", "a system text that is a number", "an assistant text that is an object"])
def test_a_refusal_while_planning_comes_in_anthropics_shape(gateway, path, body):
    r, raw = call(gateway, path, body)
    assert r.status_code == 400 and r.json()["type"] == "error", raw


def test_a_count_error_from_gemini_comes_in_anthropics_shape(gateway, fake):
    r, raw = call(gateway, "/v1/messages/count_tokens", {"model": "gemini-2.0-flash+fake-error-500",
                                                           "messages": MESSAGES})
    assert r.status_code == 500, raw
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "api_error"


# -- answers that are one JSON body ----------------------------------------------------------------------------------

@pytest.mark.parametrize("client,check", [
    ("openai", lambda event: json.loads(event.removeprefix(b"data: "))["error"]["type"] == "upstream_error"),
    ("anthropic", lambda event: event.startswith(b"event: error\n")
     and json.loads(event.split(b"data: ", 1)[1])["type"] == "error"),
], ids=["openai client", "anthropic client"])
def test_an_event_stream_in_place_of_a_json_answer_becomes_one_error_event(client, check):
    stream = JSONAnswer("gemini", client).stream()
    assert stream.feed(b'data: {"embeddings": []}\n\n') == b""
    event = stream.finish(True)
    assert event.endswith(b"\n\n") and check(event.strip())


# -- a translated stream the gateway itself ends with an error event ----------------------------------------------
ENDED_EARLY = [  # id, route, model (with the fake provider's switch), the request log's (outcome, error_reason)
    ("a whole Anthropic stream to an OpenAI client is completed",
     "/v1/chat/completions", "claude-haiku-4-5", ("completed", None)),
    ("an Anthropic stream that ends cleanly before message_stop, to an OpenAI client, is an error",
     "/v1/chat/completions", "claude-haiku-4-5+fake-end-3", ("error", "upstream_interrupted")),
    ("a Gemini stream that ends cleanly before its finishReason, to an OpenAI client, is an error",
     "/v1/chat/completions", "gemini-2.0-flash+fake-end-1", ("error", "upstream_interrupted")),
    ("an OpenAI stream that ends cleanly before [DONE], to an Anthropic client, is an error",
     "/v1/messages", "gpt-4o-mini+fake-end-2", ("error", "upstream_interrupted")),
    ("an Anthropic stream that ends cleanly before message_stop, to a Responses client, is an error",
     "/v1/responses", "claude-haiku-4-5+fake-end-3", ("error", "upstream_interrupted")),
    ("an OpenAI stream with an event that is not JSON, to an Anthropic client, is an error",
     "/v1/messages", "gpt-4o-mini+fake-garbled-event", ("error", "untranslatable_response")),
]


@pytest.mark.parametrize("path,model,logged", [row[1:] for row in ENDED_EARLY], ids=[row[0] for row in ENDED_EARLY])
def test_a_translated_stream_ended_with_the_gateways_error_event_is_logged_as_an_error(tmp_path, path, model,
                                                                                         logged):
    """The client's SDK raises on the error event the translator sends in place of the stream's end: its log row
    says so too, not `completed` (a provider that resets the connection instead is `upstream_interrupted` already)."""
    async def scenario():
        async with FakeProvider() as fake, InProcess(tmp_path, fake.url) as gw:
            answer = await gw.call("POST", path, key=gw.secret_key, body={
                "model": model, "max_tokens": 20, "messages": MESSAGES, "input": ASK, "stream": True}
                if path == "/v1/responses" else {"model": model, "max_tokens": 20, "messages": MESSAGES,
                                                  "stream": True})
            await gw.drain()
            listed = await gw.call("GET", "/v1/requests?limit=10", key=gw.secret_key)
            return answer, listed.json()["data"]

    answer, rows = asyncio.run(scenario())
    assert answer.status == 200 and answer.streamed
    data = sse(answer.body)[-1][1]
    last = {} if data == "[DONE]" else json.loads(data)
    ended_with_an_error = "error" in last or last.get("type") in ("error", "response.failed")
    assert ended_with_an_error is (logged[0] == "error"), answer.body[-300:]
    [row] = [r for r in rows if r["request_id"] == answer.header("x-lava-request-id")]
    assert (row["outcome"], row["error_reason"]) == logged


# -- one event that never ends -------------------------------------------------------------------------------------
ENDLESS = [  # id, route, model: each translator that holds an event until its end
    ("an Anthropic stream to an OpenAI client", "/v1/chat/completions", "claude-haiku-4-5+fake-endless-line"),
    ("an OpenAI stream to an Anthropic client", "/v1/messages", "gpt-4o-mini+fake-endless-line"),
    ("an OpenAI stream less its usage chunk", "/v1/chat/completions", "gpt-4o-mini+fake-endless-line"),
    ("an OpenAI chat stream to a Responses client", "/v1/responses", "mistral/mistral-small+fake-endless-line"),
]


@pytest.mark.parametrize("path,model", [row[1:] for row in ENDLESS], ids=[row[0] for row in ENDLESS])
def test_an_event_past_the_cap_ends_the_stream_as_a_cut_one(tmp_path, monkeypatch, path, model):
    """A provider's event with no line break is held only up to MAX_EVENT_BYTES: past it the stream ends with the
    gateway's error event, before the provider's end, and is logged as an error, billed by the cut-stream rule."""
    from edge_proxy.unified import _common
    monkeypatch.setattr(_common, "MAX_EVENT_BYTES", 1 << 20)  # the provider sends 4 MiB of one event

    async def scenario():
        async with FakeProvider() as fake, InProcess(tmp_path, fake.url, {
                "EDGE_PROXY_UPSTREAM_MISTRAL": fake.url + "/v1", "EDGE_PROXY_PROVIDER_KEY_MISTRAL": "sk-m"}) as gw:
            fake.slow_seconds = 60  # the provider would hold the stream open a minute after its 4 MiB
            body = {"model": model, "max_tokens": 20, "messages": MESSAGES, "stream": True}
            if path == "/v1/responses":
                body = {"model": model, "max_output_tokens": 20, "input": ASK, "stream": True}
            async with asyncio.timeout(30):  # a guard against a hang, not a measure
                answer = await gw.call("POST", path, key=gw.secret_key, body=body)
            await gw.drain()
            listed = await gw.call("GET", "/v1/requests?limit=10", key=gw.secret_key)
            return answer, listed.json()["data"]

    answer, rows = asyncio.run(scenario())
    assert answer.status == 200 and answer.streamed and b"xxxx" not in answer.body
    data = sse(answer.body)[-1][1]
    last = json.loads(data)
    assert "error" in last or last.get("type") in ("error", "response.failed"), answer.body[-300:]
    [row] = [r for r in rows if r["request_id"] == answer.header("x-lava-request-id")]
    assert (row["outcome"], row["error_reason"]) == ("error", "upstream_event_too_large")
    assert row["usage_source"] == "estimated" and row["model_usage"]["input_tokens"] > 0, row


# -- a stream that never ends --------------------------------------------------------------------------------------
DRIPPING = [  # id, route, model: a provider that sends a comment every 50 ms, within any read timeout
    ("a passed-through OpenAI stream", "/providers/openai/v1/chat/completions", "gpt-4o-mini+fake-drip"),
    ("an Anthropic stream translated for an OpenAI client", "/v1/chat/completions", "claude-haiku-4-5+fake-drip"),
    ("a passed-through Anthropic stream", "/v1/messages", "claude-haiku-4-5+fake-drip"),
]


@pytest.mark.parametrize("path,model", [row[1:] for row in DRIPPING], ids=[row[0] for row in DRIPPING])
def test_a_stream_past_its_deadline_ends_as_a_cut_one(tmp_path, path, model):
    """EDGE_PROXY_MAX_STREAM_SECONDS bounds a stream however its provider keeps it alive: past it the stream ends
    with the route's error event, is logged as an error, billed by the cut-stream rule, and its reservation goes."""
    async def scenario():
        async with FakeProvider() as fake, InProcess(tmp_path, fake.url, {"EDGE_PROXY_MAX_STREAM_SECONDS": "0.2"}) \
                as gw:
            answer = await gw.call("POST", path, key=gw.secret_key, body={
                "model": model, "max_tokens": 20, "messages": MESSAGES, "stream": True})
            await gw.drain()
            listed = await gw.call("GET", "/v1/requests?limit=10", key=gw.secret_key)
            return answer, listed.json()["data"], gw.svc.billing.inflight

    answer, rows, inflight = asyncio.run(scenario())
    assert answer.status == 200 and answer.streamed
    name, data = sse(answer.body)[-1]
    assert name == "error" or "error" in (json.loads(data) if data != "[DONE]" else {}), answer.body[-300:]
    [row] = [r for r in rows if r["request_id"] == answer.header("x-lava-request-id")]
    assert (row["outcome"], row["error_reason"]) == ("error", "stream_deadline")
    assert row["usage_source"] == "estimated" and row["model_usage"]["input_tokens"] > 0, row
    assert inflight == {}  # the reservation was given back
