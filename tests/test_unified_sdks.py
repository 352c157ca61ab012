"""Official SDKs against the unified API, unchanged: the format they speak is not the provider's.

- the `openai` SDK (base_url `<gateway>/v1`) reaches Anthropic through `/v1/chat/completions`;
- the `anthropic` SDK (base_url `<gateway>`) reaches OpenAI through `/v1/messages`;
- the Lava Node SDK's `lava.gateway(url, {format: 'openai'})` reaches an Anthropic URL through `/v1/rewrite/...`,
  and `lava.models.list()` reads `/v1/models`.
"""
from __future__ import annotations

import json
import shutil

import anthropic
import openai
import pytest

from .fake_provider import REPLY_TEXT, expected_reply, expected_usage
from .test_lava_node_sdk import NODE_DIR, sdk

MESSAGES = [{"role": "user", "content": "Say hello to the unified gateway please"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                                                "required": ["city"]}}}


def openai_client(gateway, token):
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=token, max_retries=0)


def anthropic_client(gateway, token):
    return anthropic.Anthropic(base_url=gateway.url, api_key=token, max_retries=0)


def last_json(fake, path):
    return next(r for r in reversed(fake.received) if r.path == path).json()


# -- openai SDK → Anthropic ----------------------------------------------------------------------------------------

def test_openai_sdk_reaches_anthropic(gateway, fake, token):
    completion = openai_client(gateway, token()).chat.completions.create(
        model="claude-haiku-4-5", messages=[{"role": "system", "content": "Be nice."}, *MESSAGES], max_tokens=50)
    sent = last_json(fake, "/v1/messages")
    assert sent["system"] == "Be nice." and sent["max_tokens"] == 50
    assert completion.model == "claude-haiku-4-5"
    assert completion.choices[0].message.content == REPLY_TEXT
    assert completion.choices[0].finish_reason == "stop"
    want = expected_usage("anthropic", sent)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        want["input_tokens"], want["output_tokens"])


def test_openai_sdk_streams_from_anthropic(gateway, fake, token):
    stream = openai_client(gateway, token()).chat.completions.create(
        model="claude-haiku-4-5", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    sent = last_json(fake, "/v1/messages")
    assert text == REPLY_TEXT and finish == "stop"
    want = expected_usage("anthropic", sent)
    assert usage.total_tokens == want["input_tokens"] + want["output_tokens"]


def test_openai_sdk_tool_calls_from_anthropic(gateway, fake, token):
    client = openai_client(gateway, token())
    completion = client.chat.completions.create(model="claude-haiku-4-5", messages=MESSAGES, tools=[WEATHER])
    sent = last_json(fake, "/v1/messages")
    want = expected_reply("anthropic", sent)
    [call] = completion.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == want["args"]
    assert completion.choices[0].finish_reason == "tool_calls"

    # the SDK's streaming helper assembles the argument fragments; then the tool result goes back
    with client.chat.completions.stream(model="claude-haiku-4-5", messages=MESSAGES, tools=[WEATHER]) as stream:
        final = stream.get_final_completion()
    [streamed] = final.choices[0].message.tool_calls
    assert streamed.function.name == "get_weather" and json.loads(streamed.function.arguments) == want["args"]
    assert streamed.id.startswith("toolu_")  # Anthropic's id, kept
    follow_up = client.chat.completions.create(model="claude-haiku-4-5", tools=[WEATHER], messages=[
        *MESSAGES, final.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": streamed.id, "content": "sunny"}])
    assert follow_up.choices[0].message.content == REPLY_TEXT
    sent = last_json(fake, "/v1/messages")
    assert sent["messages"][-1]["content"][0] == {"type": "tool_result", "tool_use_id": streamed.id,
                                                 "content": "sunny"}


# -- anthropic SDK → OpenAI ----------------------------------------------------------------------------------------

def test_anthropic_sdk_reaches_openai(gateway, fake, token):
    message = anthropic_client(gateway, token()).messages.create(
        model="gpt-4o-mini", max_tokens=100, system="Be nice.", messages=MESSAGES)
    sent = last_json(fake, "/v1/chat/completions")
    assert sent["messages"][0] == {"role": "system", "content": "Be nice."}
    assert message.model == "gpt-4o-mini" and message.content[0].text == REPLY_TEXT
    assert message.stop_reason == "end_turn"
    want = expected_usage("openai.chat", sent)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        want["prompt_tokens"], want["completion_tokens"])


def test_anthropic_sdk_streams_from_openai(gateway, fake, token):
    with anthropic_client(gateway, token()).messages.stream(
            model="gpt-4o-mini", max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    sent = last_json(fake, "/v1/chat/completions")
    assert text == REPLY_TEXT and final.stop_reason == "end_turn"
    want = expected_usage("openai.chat", sent)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (want["prompt_tokens"], want["completion_tokens"])


def test_anthropic_sdk_tool_use_from_openai(gateway, fake, token):
    tool = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
    with anthropic_client(gateway, token()).messages.stream(
            model="gpt-4o-mini", max_tokens=100, messages=MESSAGES, tools=[tool]) as stream:
        final = stream.get_final_message()
    want = expected_reply("openai.chat", last_json(fake, "/v1/chat/completions"))
    [block] = final.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == want["args"]
    assert final.stop_reason == "tool_use"


def test_an_sdk_sees_provider_errors_in_its_own_shape(gateway, token):
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(gateway, token()).chat.completions.create(model="anthropic/fake-error-429", messages=MESSAGES)
    assert "fake-error-429" in str(caught.value)
    with pytest.raises(anthropic.InternalServerError) as caught:
        anthropic_client(gateway, token()).messages.create(model="openai/fake-error-500", max_tokens=5,
                                                           messages=MESSAGES)
    assert caught.value.body["error"]["type"] == "api_error"


# -- the Lava Node SDK ---------------------------------------------------------------------------------------------

node = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "@lavapayments").is_dir(),
    reason="node or the Lava SDK is not installed (tests/run.sh installs both)")


@node
def test_lava_sdk_gateway_with_openai_format_reaches_an_anthropic_url(gateway, fake):
    body = {"model": "claude-haiku-4-5", "messages": MESSAGES, "max_tokens": 30}
    out = sdk(gateway, "rewrite", UPSTREAM_URL="https://api.anthropic.com/v1/messages", BODY=json.dumps(body),
              FORMAT="openai")
    assert out["object"] == "chat.completion" and out["model"] == "claude-haiku-4-5"
    assert out["choices"][0]["message"]["content"] == REPLY_TEXT
    assert fake.last().path == "/v1/messages" and fake.last().json()["max_tokens"] == 30


@node
def test_lava_sdk_models_list(gateway):
    out = sdk(gateway, "models")
    assert out["object"] == "list"
    ids = {m["id"]: m["owned_by"] for m in out["data"]}
    assert ids["claude-haiku-4-5"] == "anthropic" and ids["gpt-4o-mini"] == "openai"
