"""`request_bounds`' output limit, one row per form a client may send it in: the usual whole number is read without
the general check, and every other form gets exactly the answer or the 400 it always did."""
from __future__ import annotations

import json

import pytest

from edge_proxy.billing.bounds import MAX_CHOICES, MAX_OUTPUT_TOKENS, Bounds, request_bounds
from edge_proxy.errors import InvalidRequest

WHOLE = "max_tokens: must be a whole number of tokens, not "
RANGE = f"max_tokens: must be from 1 to {MAX_OUTPUT_TOKENS}, not "

LIMITS = [  # id, the body's fields after "model", the output limit read (an int or None) or the 400's message
    ("no max_tokens", "", None),
    ("max_tokens null", ',"max_tokens":null', None),
    ("a plain whole number", ',"max_tokens":64', 64),
    ("the smallest", ',"max_tokens":1', 1),
    ("the largest", f',"max_tokens":{MAX_OUTPUT_TOKENS}', MAX_OUTPUT_TOKENS),
    ("true is not a number of tokens", ',"max_tokens":true', WHOLE + "true"),
    ("false is not a number of tokens", ',"max_tokens":false', WHOLE + "false"),
    ("a float, even a whole one", ',"max_tokens":64.0', WHOLE + "64.0"),
    ("an exponent is a float", ',"max_tokens":1e3', WHOLE + "1000.0"),
    ("a string of digits", ',"max_tokens":"64"', WHOLE + '"64"'),
    ("a list", ',"max_tokens":[64]', WHOLE + "[64]"),
    ("zero", ',"max_tokens":0', RANGE + "0"),
    ("a negative number", ',"max_tokens":-1', RANGE + "-1"),
    ("one over the largest", f',"max_tokens":{MAX_OUTPUT_TOKENS + 1}', RANGE + str(MAX_OUTPUT_TOKENS + 1)),
    ("a number too large for 64 bits", ',"max_tokens":' + "9" * 30, RANGE + "9" * 30),
    ("a larger max_completion_tokens wins", ',"max_tokens":64,"max_completion_tokens":128', 128),
    ("a smaller max_completion_tokens does not", ',"max_tokens":64,"max_completion_tokens":32', 64),
    ("a bad max_completion_tokens beside a good max_tokens", ',"max_tokens":64,"max_completion_tokens":true',
     "max_completion_tokens: must be a whole number of tokens, not true"),
    ("a bad max_tokens is named before a bad max_completion_tokens", ',"max_tokens":0,"max_completion_tokens":true',
     RANGE + "0"),
    ("max_tokens beside Gemini's limit: the larger", ',"max_tokens":64,"generationConfig":{"maxOutputTokens":99}', 99),
]


@pytest.mark.parametrize("fields,expected", [row[1:] for row in LIMITS], ids=[row[0] for row in LIMITS])
def test_the_output_limit_of_a_body(fields, expected):
    body = ('{"model":"gpt-4o"' + fields + ',"messages":[]}').encode()
    bounds = bounds_or_refusal(body, expected)
    if bounds is not None:
        assert (bounds.model, bounds.max_output, bounds.input_tokens, bounds.parsed) == ("gpt-4o", expected,
                                                                                       len(body), True)


def bounds_or_refusal(body: bytes, expected: int | str) -> Bounds | None:
    """The body's bounds; or, when `expected` is a 400's message, None once that is what the body gets."""
    if not isinstance(expected, str):
        return request_bounds(body)
    with pytest.raises(InvalidRequest) as refused:
        request_bounds(body)
    assert str(refused.value.message) == expected
    return None


CHOICES = [  # id, the body's fields after "model", the answers asked for (an int) or the 400's message
    ("no n: one answer", "", 1),
    ("n null: one answer", ',"n":null', 1),
    ("n", ',"n":4', 4),
    ("the most n", f',"n":{MAX_CHOICES}', MAX_CHOICES),
    ("Gemini's candidateCount", ',"generationConfig":{"candidateCount":3}', 3),
    ("Gemini's snake_case candidate_count", ',"generation_config":{"candidate_count":2}', 2),
    ("n beside candidateCount: the larger", ',"n":2,"generationConfig":{"candidateCount":5}', 5),
    ("n zero", ',"n":0', f"n: must be from 1 to {MAX_CHOICES}, not 0"),
    ("n over the most", f',"n":{MAX_CHOICES + 1}', f"n: must be from 1 to {MAX_CHOICES}, not {MAX_CHOICES + 1}"),
    ("n true", ',"n":true', "n: must be a whole number of answers, not true"),
    ("n a string", ',"n":"4"', 'n: must be a whole number of answers, not "4"'),
    ("n a float", ',"n":4.0', "n: must be a whole number of answers, not 4.0"),
    ("a bad candidateCount", ',"generationConfig":{"candidateCount":-1}',
     f"generationConfig.candidateCount: must be from 1 to {MAX_CHOICES}, not -1"),
]


@pytest.mark.parametrize("fields,expected", [row[1:] for row in CHOICES], ids=[row[0] for row in CHOICES])
def test_the_answers_a_body_asks_for(fields, expected):
    """Each answer is billed (up to the output limit each), so the reservation multiplies by them (engine.quote)."""
    bounds = bounds_or_refusal(('{"model":"gpt-4o","max_tokens":64' + fields + ',"messages":[]}').encode(), expected)
    if bounds is not None:
        assert (bounds.max_output, bounds.choices) == (64, expected)


def test_a_quote_reserves_the_output_of_every_answer():
    """The managed and the BYOK quote alike: n answers of up to max_tokens each cost up to n times one."""
    from edge_proxy.auth import Principal
    from edge_proxy.billing.charging import Billing, max_provider_cost
    from edge_proxy.billing.engine import BillingEngine
    from edge_proxy.metering.pricing import PriceTable
    from edge_proxy.providers import Catalogue
    from edge_proxy.request_path.plan import Attempt

    provider = Catalogue.load().by_name("openai")
    engine = BillingEngine.__new__(BillingEngine)
    engine.prices = PriceTable.load()
    billing = Billing("merchant", "mer_1", merchant_id="mer_1")

    price = engine.prices.lookup("openai", "gpt-4o-mini")
    for n in (1, 4):
        body = ('{"model":"gpt-4o-mini","max_tokens":100,"n":' + str(n) + ',"messages":[]}').encode()
        attempt = Attempt(provider, None, "gpt-4o-mini", body, request_bounds(body))  # type: ignore[arg-type]
        for provider_key in (None, "sk-byok"):
            principal = Principal("mer_1", "sk_1", provider_key=provider_key, billing=billing)
            # the prompt is read once; each of the n answers writes up to max_tokens
            assert engine.quote(principal, attempt).max_cost == max_provider_cost(price, len(body), 100 * n), \
                (n, provider_key)


def test_bounds_are_a_bounds_tuple_with_every_field():
    """request_bounds builds its Bounds by tuple.__new__ (a NamedTuple's own __new__ costs twice as much): the same
    type and fields as Bounds(...), `parsed` True."""
    from edge_proxy.billing.bounds import IMAGE_TOKENS
    body = b'{"model":"gpt-4o","max_tokens":64}'
    b = request_bounds(body)
    assert type(b) is Bounds and b == Bounds("gpt-4o", 64, len(body), None, True)
    assert (b.model, b.max_output, b.input_tokens, b.unbounded, b.parsed) == ("gpt-4o", 64, 34, None, True)
    image = b'{"model":"m","messages":[{"content":[{"type":"image_url","image_url":{"url":"data:x"}},' \
            b'{"type":"file","file":{"file_id":"f1"}}]}]}'
    b = request_bounds(image)
    assert type(b) is Bounds and b == Bounds("m", None, len(image) + IMAGE_TOKENS, "a file by id", True)
    assert request_bounds(b"[1]") == Bounds(None, None, 3, None, False)


def test_a_tool_parameter_named_like_a_reference_is_not_content_by_reference():
    """`file_id` (or `file_url`, `fileUri`) names content by reference only when it holds an id, URL or URI: a
    function tool whose schema has a property of that name is bounded as any other request."""
    schema = {"type": "object", "properties": {"file_id": {"type": "string"}, "file_url": {"type": "string"}}}
    body = json.dumps({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
                       "tools": [{"type": "function", "function": {"name": "open", "parameters": schema}}]}).encode()
    assert request_bounds(body).unbounded is None
    by_id = json.dumps({"model": "m", "messages": [{"content": [{"type": "file", "file": {"file_id": "f1"}}]}]})
    assert request_bounds(by_id.encode()).unbounded == "a file by id"
    video = json.dumps({"model": "m", "messages": [{"content": [{"type": "video_url", "video_url": {"url": "u"}}]}]})
    assert request_bounds(video.encode()).unbounded == "a video by URL"


def test_text_escaped_past_ascii_is_not_parsed_whole(monkeypatch):
    """Python's json.dumps escapes every character past ASCII (and Go escapes <, > and &): such escapes spell no
    media key, so the body is bounded by its bytes without the whole parse that media needs."""
    from edge_proxy.billing import bounds

    def parse(data: bytes) -> None:
        raise AssertionError("parsed whole")
    monkeypatch.setattr(bounds, "_media", parse)
    body = json.dumps({"model": "gpt-4o-mini", "max_tokens": 10,
                       "messages": [{"role": "user", "content": "Привет <b>café</b> & 日本"}]}).replace("<", "\\u003c")
    assert "\\u041f" in body and "\\u00e9" in body and "\\u003c" in body
    assert request_bounds(body.encode()).unbounded is None
