"""The official `openai` SDK on every route it can use, for OpenAI, Anthropic and Gemini models."""
from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

from ..fake_provider import REPLY_TEXT, fake_embedding
from . import (
    EMBEDDING_MODELS,
    MODELS,
    PERSON_VALUE,
    WEATHER,
    WEATHER_ARGS,
)
from .ledger import (
    check_estimated,
    check_estimated_embedding,
    check_logged,
    gemini_embedding_estimate,
    metadata_header,
    nonce,
)

BASES = {"unified": "/v1", "providers": "/providers/openai/v1", "forward": "/v1/forward?u=https://api.openai.com/v1"}
CHAT = [  # (route, provider): the OpenAI format reaches every model on /v1, only OpenAI on the others
    pytest.param("unified", "openai", id="unified-openai"),
    pytest.param("unified", "anthropic", id="unified-anthropic"),
    pytest.param("unified", "gemini", id="unified-gemini"),
    pytest.param("providers", "openai", id="providers-openai"),
    pytest.param("forward", "openai", id="forward-openai"),
]


class Person(BaseModel):
    name: str
    age: int


def client(gateway, route: str, case: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + BASES[route], api_key=gateway.secret_key, max_retries=0,
                         timeout=20, default_headers=metadata_header(case))


def ask(case: str) -> list[dict]:
    return [{"role": "user", "content": f"{case} say hello to the gateway"}]


@pytest.mark.parametrize("route,provider", CHAT)
def test_text(gateway, fake, route, provider):
    case = nonce()
    r = client(gateway, route, case).chat.completions.create(model=MODELS[provider], messages=ask(case))
    assert r.choices[0].message.content == REPLY_TEXT and r.choices[0].finish_reason == "stop"
    row = check_logged(gateway, fake, case)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (
        row["model_usage"]["input_tokens"], row["model_usage"]["output_tokens"])


@pytest.mark.parametrize("include_usage", [True, False], ids=["include_usage", "no_usage_asked"])
@pytest.mark.parametrize("route,provider", CHAT)
def test_stream(gateway, fake, route, provider, include_usage, request):
    passthrough = provider == "openai" and route != "unified"  # the request goes upstream unchanged
    case = nonce()
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client(gateway, route, case).chat.completions.create(
        model=MODELS[provider], messages=ask(case), stream=True, **extra))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY_TEXT
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == (1 if include_usage else 0)  # never a usage chunk the client did not ask for
    if passthrough and not include_usage:
        check_estimated(gateway, fake, case, content_events=len(REPLY_TEXT.split()))
        return
    row = check_logged(gateway, fake, case)
    if include_usage:
        assert usage_chunks[0].usage.completion_tokens == row["model_usage"]["output_tokens"]


@pytest.mark.parametrize("route,provider", CHAT)
def test_tools(gateway, fake, route, provider):
    case = nonce()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    c = client(gateway, route, case)
    r = c.chat.completions.create(model=MODELS[provider], messages=ask(case), tools=tools)
    [call] = r.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", WEATHER_ARGS)
    assert r.choices[0].finish_reason == "tool_calls"
    check_logged(gateway, fake, case)
    # the same streamed, through the SDK's own accumulator
    case = nonce()
    c = client(gateway, route, case)
    with c.chat.completions.stream(model=MODELS[provider], messages=ask(case), tools=tools,
                                   stream_options={"include_usage": True}) as stream:
        final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == WEATHER_ARGS
    assert not final.choices[0].message.content  # no empty text part ahead of the call
    check_logged(gateway, fake, case)


@pytest.mark.parametrize("route,provider", CHAT)
def test_structured_output(gateway, fake, route, provider):
    case = nonce()
    r = client(gateway, route, case).chat.completions.parse(model=MODELS[provider], messages=ask(case),
                                                             response_format=Person)
    assert r.choices[0].message.parsed == Person(**PERSON_VALUE)
    check_logged(gateway, fake, case)


@pytest.mark.parametrize("route,provider", [
    pytest.param("unified", "openai", id="unified-openai"),
    pytest.param("unified", "gemini", id="unified-gemini"),
    pytest.param("providers", "openai", id="providers-openai"),
    pytest.param("forward", "openai", id="forward-openai"),
])
def test_embeddings(gateway, fake, route, provider):
    case = nonce()
    texts = [f"{case} first", "second text"]
    r = client(gateway, route, case).embeddings.create(model=EMBEDDING_MODELS[provider], input=texts,
                                                        encoding_format="float")
    assert [d.embedding for d in r.data] == [fake_embedding(t) for t in texts]
    if provider == "openai":
        check_logged(gateway, fake, case)
        return
    check_estimated_embedding(gateway, fake, case, texts)
    assert r.usage.prompt_tokens == gemini_embedding_estimate(texts)  # the answer says what the log bills
    # the SDK's default asks for base64 (float32, little-endian) and decodes it itself
    case = nonce()
    texts = [f"{case} 2024 résumé", "数字 42"]
    r = client(gateway, route, case).embeddings.create(model=EMBEDDING_MODELS[provider], input=texts)
    assert [d.embedding for d in r.data] == [fake_embedding(t) for t in texts]
    check_estimated_embedding(gateway, fake, case, texts)


RESPONSES = [
    pytest.param("unified", "openai", id="unified-openai"),
    pytest.param("unified", "anthropic", id="unified-anthropic"),
    pytest.param("unified", "gemini", id="unified-gemini"),
    pytest.param("providers", "openai", id="providers-openai"),
    pytest.param("forward", "openai", id="forward-openai"),
]


@pytest.mark.parametrize("route,provider", RESPONSES)
def test_responses(gateway, fake, route, provider):
    case = nonce()
    c = client(gateway, route, case)
    r = c.responses.create(model=MODELS[provider], input=f"{case} say hello")
    assert r.output_text == REPLY_TEXT
    check_logged(gateway, fake, case)
    case = nonce()
    c = client(gateway, route, case)
    events = list(c.responses.create(model=MODELS[provider], input=f"{case} say hello", stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY_TEXT
    assert events[-1].type == "response.completed"
    check_logged(gateway, fake, case)


@pytest.mark.parametrize("route,provider", RESPONSES)
def test_responses_tools(gateway, fake, route, provider):
    case = nonce()
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": True}]
    r = client(gateway, route, case).responses.create(model=MODELS[provider], input=f"{case} weather?",
                                                       tools=tools)
    [call] = [o for o in r.output if o.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", WEATHER_ARGS)
    check_logged(gateway, fake, case)
