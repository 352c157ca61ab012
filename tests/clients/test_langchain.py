"""LangChain's `ChatOpenAI` and `ChatAnthropic` against the gateway: invoke, stream, tools, structured output,
and ChatOpenAI's Responses API mode."""
from __future__ import annotations

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from ..fake_provider import REPLY_TEXT
from . import MODELS, PERSON_VALUE
from .ledger import check_logged, metadata_header, nonce


class Person(BaseModel):
    name: str
    age: int


@tool
def get_weather(city: str, unit: str) -> str:
    """Weather for a city (unit: c or f)."""
    return "sunny"


OPENAI_BASES = {"unified": "/v1", "providers": "/providers/openai/v1",
                "forward": "/v1/forward?u=https://api.openai.com/v1"}
OPENAI_ROUTES = [
    pytest.param("unified", "openai", id="unified-openai"),
    pytest.param("unified", "anthropic", id="unified-anthropic"),
    pytest.param("unified", "gemini", id="unified-gemini"),
    pytest.param("providers", "openai", id="providers-openai"),
    pytest.param("forward", "openai", id="forward-openai"),
]
ANTHROPIC_BASES = {"unified": "", "providers": "/providers/anthropic",
                   "forward": "/v1/forward?u=https://api.anthropic.com"}
ANTHROPIC_ROUTES = [
    pytest.param("unified", "anthropic", id="unified-anthropic"),
    pytest.param("unified", "openai", id="unified-openai"),
    pytest.param("unified", "gemini", id="unified-gemini"),
    pytest.param("providers", "anthropic", id="providers-anthropic"),
    pytest.param("forward", "anthropic", id="forward-anthropic"),
]


def chat_openai(gateway, route, provider, case, **kw) -> ChatOpenAI:
    return ChatOpenAI(model=MODELS[provider], base_url=gateway.url + OPENAI_BASES[route], api_key=gateway.secret_key,
                      max_retries=0, timeout=20, default_headers=metadata_header(case), **kw)


def chat_anthropic(gateway, route, provider, case) -> ChatAnthropic:
    return ChatAnthropic(model=MODELS[provider], base_url=gateway.url + ANTHROPIC_BASES[route],
                         api_key=gateway.secret_key, max_retries=0, timeout=20, max_tokens=200,
                         default_headers=metadata_header(case))


def prompt(case: str) -> str:
    return f"{case} say hello to the gateway"


@pytest.mark.parametrize("route,provider", OPENAI_ROUTES)
def test_chat_openai(gateway, fake, route, provider, request):
    case = nonce()
    msg = chat_openai(gateway, route, provider, case).invoke(prompt(case))
    assert msg.content == REPLY_TEXT
    row = check_logged(gateway, fake, case)
    assert msg.usage_metadata["output_tokens"] == row["model_usage"]["output_tokens"]

    # streamed as LangChain streams by default; on /v1 the gateway asks the provider for usage itself
    case = nonce()
    llm = chat_openai(gateway, route, provider, case, stream_usage=False)
    assert "".join(chunk.content for chunk in llm.stream(prompt(case))) == REPLY_TEXT
    if route == "unified":
        check_logged(gateway, fake, case)


@pytest.mark.parametrize("route,provider", OPENAI_ROUTES)
def test_chat_openai_tools_and_structured_output(gateway, fake, route, provider):
    case = nonce()
    msg = chat_openai(gateway, route, provider, case).bind_tools([get_weather]).invoke(prompt(case))
    [call] = msg.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "fake", "unit": "fake"})
    check_logged(gateway, fake, case)
    case = nonce()
    person = chat_openai(gateway, route, provider, case).with_structured_output(Person).invoke(prompt(case))
    assert person == Person(**PERSON_VALUE)
    check_logged(gateway, fake, case)


@pytest.mark.parametrize("route,provider", [
    pytest.param("unified", "openai", id="unified-openai"),
    pytest.param("unified", "anthropic", id="unified-anthropic"),
    pytest.param("unified", "gemini", id="unified-gemini"),
    pytest.param("providers", "openai", id="providers-openai"),
])
def test_chat_openai_responses_api(gateway, fake, route, provider):
    case = nonce()
    msg = chat_openai(gateway, route, provider, case, use_responses_api=True).invoke(prompt(case))
    assert msg.text == REPLY_TEXT
    check_logged(gateway, fake, case)


@pytest.mark.parametrize("route,provider", ANTHROPIC_ROUTES)
def test_chat_anthropic(gateway, fake, route, provider):
    case = nonce()
    msg = chat_anthropic(gateway, route, provider, case).invoke(prompt(case))
    assert msg.content == REPLY_TEXT
    row = check_logged(gateway, fake, case)
    assert msg.usage_metadata["output_tokens"] == row["model_usage"]["output_tokens"]
    case = nonce()
    assert "".join(c.text for c in chat_anthropic(gateway, route, provider, case).stream(prompt(case))) == REPLY_TEXT
    check_logged(gateway, fake, case)


@pytest.mark.parametrize("route,provider", ANTHROPIC_ROUTES)
def test_chat_anthropic_tools_and_structured_output(gateway, fake, route, provider):
    case = nonce()
    msg = chat_anthropic(gateway, route, provider, case).bind_tools([get_weather]).invoke(prompt(case))
    [call] = msg.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "fake", "unit": "fake"})
    check_logged(gateway, fake, case)
    case = nonce()
    person = chat_anthropic(gateway, route, provider, case).with_structured_output(Person).invoke(prompt(case))
    assert person == Person(**PERSON_VALUE)
    check_logged(gateway, fake, case)

