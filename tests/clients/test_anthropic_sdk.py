"""The official `anthropic` SDK on every route it can use, for Anthropic, OpenAI and Gemini models."""
from __future__ import annotations

import anthropic
import pytest

from ..fake_provider import REPLY_TEXT, prompt_tokens_for
from . import (
    MODELS,
    WEATHER,
    WEATHER_ARGS,
)
from .ledger import check_free, check_logged, metadata_header, nonce, rows

BASES = {"unified": "", "providers": "/providers/anthropic", "forward": "/v1/forward?u=https://api.anthropic.com"}
ROUTES = [
    pytest.param("unified", "anthropic", id="unified-anthropic"),
    pytest.param("unified", "openai", id="unified-openai"),
    pytest.param("unified", "gemini", id="unified-gemini"),
    pytest.param("providers", "anthropic", id="providers-anthropic"),
    pytest.param("forward", "anthropic", id="forward-anthropic"),
]


def client(gateway, route: str, case: str, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url + BASES[route], api_key=key or gateway.secret_key,
                               max_retries=0, timeout=20, default_headers=metadata_header(case))


def ask(case: str) -> list[dict]:
    return [{"role": "user", "content": f"{case} say hello to the gateway"}]


@pytest.mark.parametrize("route,provider", ROUTES)
def test_text(gateway, fake, route, provider):
    case = nonce()
    m = client(gateway, route, case).messages.create(model=MODELS[provider], max_tokens=100, messages=ask(case))
    assert m.content[0].text == REPLY_TEXT and m.stop_reason == "end_turn"
    row = check_logged(gateway, fake, case)
    assert m.usage.output_tokens == row["model_usage"]["output_tokens"]


@pytest.mark.parametrize("route,provider", ROUTES)
def test_stream(gateway, fake, route, provider):
    case = nonce()
    with client(gateway, route, case).messages.stream(model=MODELS[provider], max_tokens=100,
                                                      messages=ask(case)) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY_TEXT and final.stop_reason == "end_turn"
    row = check_logged(gateway, fake, case)
    assert final.usage.output_tokens == row["model_usage"]["output_tokens"]


@pytest.mark.parametrize("route,provider", ROUTES)
def test_tools(gateway, fake, route, provider):
    tools = [{"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER}]
    for streamed in (False, True):
        case = nonce()
        c = client(gateway, route, case)
        if streamed:
            with c.messages.stream(model=MODELS[provider], max_tokens=100, messages=ask(case), tools=tools) as s:
                m = s.get_final_message()
        else:
            m = c.messages.create(model=MODELS[provider], max_tokens=100, messages=ask(case), tools=tools)
        [use] = [b for b in m.content if b.type == "tool_use"]
        assert (use.name, use.input, m.stop_reason) == ("get_weather", WEATHER_ARGS, "tool_use")
        check_logged(gateway, fake, case)


COUNT_PATHS = {"anthropic": "/v1/messages/count_tokens", "openai": "/v1/responses/input_tokens",
               "gemini": f"/v1beta/models/{MODELS['gemini']}:countTokens"}


@pytest.mark.parametrize("route,provider", [
    pytest.param("unified", "anthropic", id="unified-anthropic"),
    pytest.param("unified", "openai", id="unified-openai"),
    pytest.param("unified", "gemini", id="unified-gemini"),
    pytest.param("providers", "anthropic", id="providers-anthropic"),
])
def test_count_tokens(gateway, fake, route, provider):
    case = nonce()
    count = client(gateway, route, case).messages.count_tokens(model=MODELS[provider], messages=ask(case))
    assert count.input_tokens == prompt_tokens_for("anthropic", {"messages": ask(case)})
    check_free(gateway, fake, case, COUNT_PATHS[provider])  # counted at the provider's own endpoint, never billed


@pytest.mark.parametrize("route", ["unified", "providers"])
def test_our_errors_come_in_anthropic_shape(gateway, route):
    with pytest.raises(anthropic.AuthenticationError) as info:
        client(gateway, route, nonce(), key="not-a-key").messages.create(
            model=MODELS["anthropic"], max_tokens=10, messages=ask("x"))
    assert info.value.body["type"] == "error" and "credentials" in info.value.body["error"]["message"]


@pytest.mark.parametrize("route,provider", ROUTES[:1] + ROUTES[3:])
# fake-linger holds the provider's end back after its error event, so the client leaves first (the SDK stops at the
# event): the row must still say error, not partial
@pytest.mark.parametrize("how", ["fake-error-500", "fake-stream-error", "fake-stream-error+fake-linger"])
def test_failed_answers_are_logged_as_errors(gateway, fake, route, provider, how):
    case = nonce()
    c = client(gateway, route, case)
    with pytest.raises(anthropic.APIError), c.messages.stream(
            model=f"{MODELS[provider]} {how}", max_tokens=100, messages=ask(case)) as s:
        s.until_done()
    [row] = rows(gateway, case)
    assert row["outcome"] == "error" and row["error_reason"], row
