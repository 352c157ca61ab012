"""The official OpenAI and Anthropic Python SDKs, pointed at the gateway, complete plain and streamed calls."""
from __future__ import annotations

import anthropic
import openai

from .fake_provider import expected_reply, expected_usage

MESSAGES = [{"role": "user", "content": "Say hello to the gateway please"}]


def openai_client(gateway, token):
    return openai.OpenAI(base_url=gateway.url + "/providers/openai/v1", api_key=token, max_retries=0)


def anthropic_client(gateway, token):
    return anthropic.Anthropic(base_url=gateway.url + "/providers/anthropic", api_key=token, max_retries=0)


def test_openai_sdk_plain(gateway, token):
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    completion = openai_client(gateway, token()).chat.completions.create(**body)
    assert completion.choices[0].message.content == expected_reply("openai.chat", body)["text"]
    want = expected_usage("openai.chat", body)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        want["prompt_tokens"], want["completion_tokens"])


def test_openai_sdk_streamed_with_usage(gateway, token):
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    stream = openai_client(gateway, token()).chat.completions.create(
        **body, stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text == expected_reply("openai.chat", body)["text"]
    assert usage.total_tokens == expected_usage("openai.chat", body)["total_tokens"]


def test_openai_sdk_through_the_forward_url_with_a_raw_secret_key(gateway):
    client = openai.OpenAI(base_url=gateway.url + "/v1/forward?u=https://api.openai.com/v1/",
                           api_key=gateway.secret_key, max_retries=0)
    # the SDK appends "chat/completions" to the whole base URL string, so `u` must end in "/"
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content


def test_anthropic_sdk_plain(gateway, token):
    body = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": MESSAGES}
    message = anthropic_client(gateway, token()).messages.create(**body)
    assert message.content[0].text == expected_reply("anthropic", body)["text"]
    want = expected_usage("anthropic", body)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (want["input_tokens"], want["output_tokens"])


def test_anthropic_sdk_streamed(gateway, token):
    body = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": MESSAGES}
    with anthropic_client(gateway, token()).messages.stream(**body) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == expected_reply("anthropic", body)["text"]
    want = expected_usage("anthropic", body)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (want["input_tokens"], want["output_tokens"])
