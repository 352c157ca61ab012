"""Streams the provider cuts mid-way, through the gateway, billed by the estimate rule (metering/estimate.py).

The fake provider cuts each stream after exactly N events (`fake-cut-N` in the model name) and records how many
went out; the row must then hold one output token per content event that reached the gateway (never Anthropic's
placeholder `output_tokens: 1`, never 0 after a content chunk), the provider's input count when it sent one, and
`usage_source: estimated`. The golden rows of the rule itself are in tests/test_usage_scan.py.
"""
from __future__ import annotations

import json

import httpx2 as httpx
import pytest

from .ledger import metadata_header, nonce, received_for, rows

CASES = [  # (id, path, body, api, events to send, content events among them, input from the provider?)
    ("anthropic stream cut after 5 text deltas", "/providers/anthropic/v1/messages",
     {"model": "claude-haiku-4-5 fake-cut-8", "max_tokens": 50, "stream": True}, "anthropic", 8, 5, True),
    ("anthropic stream cut before any delta", "/providers/anthropic/v1/messages",
     {"model": "claude-haiku-4-5 fake-cut-3", "max_tokens": 50, "stream": True}, "anthropic", 3, 0, True),
    ("anthropic stream cut, relayed to an OpenAI-format client", "/v1/chat/completions",
     {"model": "claude-haiku-4-5 fake-cut-7", "stream": True}, "anthropic", 7, 4, True),
    ("openai stream without usage cut after one content chunk", "/providers/openai/v1/chat/completions",
     {"model": "gpt-4o-mini fake-cut-2", "stream": True}, "openai.chat", 2, 1, False),
    ("openai stream with include_usage cut before its usage chunk", "/providers/openai/v1/chat/completions",
     {"model": "gpt-4o-mini fake-cut-6", "stream": True, "stream_options": {"include_usage": True}},
     "openai.chat", 6, 5, False),
    ("openai Responses stream cut after 2 text deltas, on /v1/responses", "/v1/responses",
     {"model": "gpt-4o-mini fake-cut-6", "stream": True}, "openai.responses", 6, 2, False),
    ("anthropic stream cut, relayed to a Responses client", "/v1/responses",
     {"model": "claude-haiku-4-5 fake-cut-7", "stream": True}, "anthropic", 7, 4, True),
    ("gemini stream cut after 3 chunks", "/providers/google/v1beta/models/gemini-2.5-flash+fake-cut-3"
     ":streamGenerateContent?alt=sse", {}, "gemini", 3, 3, True),
]


@pytest.mark.parametrize("path,body,api,sent,content,provider_input", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_cut_stream_is_billed_by_content_events(gateway, fake, path, body, api, sent, content, provider_input):
    case = nonce()
    text = f"{case} tell me a story about a gateway"
    if api == "gemini":
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    elif path == "/v1/responses":
        body = {**body, "input": text}
    else:
        body = {**body, "messages": [{"role": "user", "content": text}]}
    headers = {"authorization": f"Bearer {gateway.secret_key}", **metadata_header(case)}
    url = gateway.url + path
    with httpx.stream("POST", url, json=body, headers=headers, timeout=20) as r:
        assert r.status_code == 200
        raw = b"".join(r.iter_bytes())
    assert b"[DONE]" not in raw and b"message_stop" not in raw  # the cut reached the client as a cut
    assert b"response.completed" not in raw
    [rec] = received_for(fake, case)
    assert rec.events_sent == sent
    [row] = rows(gateway, case)
    assert row["outcome"] == "error" and row["usage_source"] == "estimated", row
    assert row["model_usage"]["output_tokens"] == content, row
    if provider_input:
        assert row["model_usage"]["input_tokens"] == rec.tokens()[0] or rec.usage is None, row
    else:
        assert row["model_usage"]["input_tokens"] == len(rec.body) // 4, row
    json.dumps(row)  # the row is plain JSON


ENDED_EARLY = [  # (id, path, body, what ends the client's answer)
    ("anthropic relayed to an OpenAI-format client", "/v1/chat/completions",
     {"model": "claude-haiku-4-5 fake-linger", "stream": True, "stream_options": {"include_usage": True}},
     b"data: [DONE]"),
    ("anthropic relayed to a Responses client", "/v1/responses",
     {"model": "claude-haiku-4-5 fake-linger", "stream": True}, b"response.completed"),
    ("openai, the usage chunk the gateway asked for taken out", "/v1/chat/completions",
     {"model": "gpt-4o-mini fake-linger", "stream": True}, b"data: [DONE]"),
    # passed through as the provider sent it: the provider's own end event is the client's
    ("openai chat passed through", "/providers/openai/v1/chat/completions",
     {"model": "gpt-4o-mini fake-linger", "stream": True, "stream_options": {"include_usage": True}},
     b"data: [DONE]"),
    ("openai responses passed through", "/providers/openai/v1/responses",
     {"model": "gpt-4o-mini fake-linger", "stream": True}, b"response.completed"),
    ("anthropic messages passed through", "/providers/anthropic/v1/messages",
     {"model": "claude-haiku-4-5 fake-linger", "stream": True, "max_tokens": 200}, b"message_stop"),
]


@pytest.mark.parametrize("path,body,end", [pytest.param(*c[1:], id=c[0]) for c in ENDED_EARLY])
def test_a_client_that_leaves_after_its_answer_ended_was_not_cut(gateway, fake, path, body, end):
    """The client's end marker goes out with the provider's last event (sent by the translator, or passed through
    as the provider's own); the provider's connection ends later (here 1 s). A client (the OpenAI SDK) that stops
    reading at its end marker and closes has had the whole answer: the row says completed, billed on the provider's
    own count, not a partial answer. Passed through, this was the flaky `test_tools[forward-openai]`."""
    case = nonce()
    text = f"{case} tell me a story about a gateway"
    body = {**body, "input": text} if path.endswith("/responses") else {**body, "messages": [{"role": "user",
                                                                                              "content": text}]}
    headers = {"authorization": f"Bearer {gateway.secret_key}", **metadata_header(case)}
    raw = b""
    with httpx.stream("POST", gateway.url + path, json=body, headers=headers, timeout=20) as r:
        assert r.status_code == 200
        for chunk in r.iter_bytes():
            raw += chunk
            if end in raw:
                break  # and the connection closes, as the SDK's does
    assert end in raw
    [rec] = received_for(fake, case)
    [row] = rows(gateway, case)
    assert (row["outcome"], row["usage_source"]) == ("completed", "provider"), row
    assert row["model_usage"]["output_tokens"] == rec.tokens()[1], row
