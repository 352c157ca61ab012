"""LiteLLM's client (`litellm.completion`, `embedding`, `responses`) against the gateway, offline.

LiteLLM fetches its model cost map from the internet at import unless `LITELLM_LOCAL_MODEL_COST_MAP` is set, so
it is set before the import; `no_network` then fails the test if LiteLLM resolves any host but the loopback.
"""
from __future__ import annotations

import os
import socket

import pytest

# Before the import: LiteLLM fetches its cost map and Anthropic beta-header table from the internet otherwise.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS"] = "True"
os.environ["LITELLM_OFFLINE_MODE"] = "true"
import litellm

from ..fake_provider import REPLY_TEXT
from . import (
    EMBEDDING_MODELS,
    MODELS,
    PERSON_VALUE,
    WEATHER,
    WEATHER_ARGS,
)
from .ledger import check_estimated_embedding, check_logged, metadata_header, nonce

litellm.telemetry = False
litellm.drop_params = False

ROUTES = [  # (route, litellm provider prefix, model family)
    pytest.param("/v1", "openai", "openai", id="unified-openai"),
    pytest.param("/v1", "openai", "anthropic", id="unified-anthropic-via-openai-format"),
    pytest.param("/v1", "openai", "gemini", id="unified-gemini-via-openai-format"),
    pytest.param("", "anthropic", "anthropic", id="unified-anthropic-messages"),
    pytest.param("/providers/openai/v1", "openai", "openai", id="providers-openai"),
    pytest.param("/providers/anthropic", "anthropic", "anthropic", id="providers-anthropic"),
    pytest.param("/v1/forward?u=https://api.openai.com/v1", "openai", "openai", id="forward-openai"),
]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any name lookup other than the loopback fails the test: LiteLLM must not phone home."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            lookups.append(str(host))
            raise OSError(f"no network in tests: {host}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield
    assert lookups == [], f"LiteLLM tried to reach {lookups}"


def call(gateway, base, prefix, family, case, **kw):
    return litellm.completion(model=f"{prefix}/{MODELS[family]}", api_base=gateway.url + base,
                              api_key=gateway.secret_key, extra_headers=metadata_header(case), num_retries=0,
                              timeout=20, messages=[{"role": "user", "content": f"{case} say hello"}], **kw)


@pytest.mark.parametrize("base,prefix,family", ROUTES)
def test_completion(gateway, fake, base, prefix, family):
    case = nonce()
    r = call(gateway, base, prefix, family, case, max_tokens=100)
    assert r.choices[0].message.content == REPLY_TEXT
    row = check_logged(gateway, fake, case)
    assert r.usage.completion_tokens == row["model_usage"]["output_tokens"]


@pytest.mark.parametrize("base,prefix,family", ROUTES)
def test_stream(gateway, fake, base, prefix, family, request):
    case = nonce()
    chunks = list(call(gateway, base, prefix, family, case, max_tokens=100, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY_TEXT
    if prefix == "openai" and family == "openai" and base != "/v1":
        return  # passed through unchanged without include_usage: estimated (see test_openai_sdk.test_stream)
    check_logged(gateway, fake, case)


@pytest.mark.parametrize("base,prefix,family", ROUTES)
def test_tools_and_json_schema(gateway, fake, base, prefix, family):
    case = nonce()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    r = call(gateway, base, prefix, family, case, max_tokens=100, tools=tools)
    [tc] = r.choices[0].message.tool_calls
    assert (tc.function.name, litellm.utils.json.loads(tc.function.arguments)) == ("get_weather", WEATHER_ARGS)
    check_logged(gateway, fake, case)
    case = nonce()
    schema = {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": {
        "type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"], "additionalProperties": False}}}
    r = call(gateway, base, prefix, family, case, max_tokens=100, response_format=schema)
    assert litellm.utils.json.loads(r.choices[0].message.content) == PERSON_VALUE
    check_logged(gateway, fake, case)


@pytest.mark.parametrize("base,family", [
    pytest.param("/v1", "openai", id="unified-openai"),
    pytest.param("/v1", "gemini", id="unified-gemini"),
    pytest.param("/providers/openai/v1", "openai", id="providers-openai"),
])
def test_embedding(gateway, fake, base, family):
    case = nonce()
    texts = [f"{case} one", "two"]
    r = litellm.embedding(model=f"openai/{EMBEDDING_MODELS[family]}", input=texts,
                          api_base=gateway.url + base, api_key=gateway.secret_key,
                          extra_headers=metadata_header(case), timeout=20)
    assert len(r.data) == 2
    if family == "gemini":
        check_estimated_embedding(gateway, fake, case, texts)
    else:
        check_logged(gateway, fake, case)
