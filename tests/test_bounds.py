"""`request_bounds`' output limit, one row per form a client may send it in: the usual whole number is read without
the general check, and every other form gets exactly the answer or the 400 it always did."""
from __future__ import annotations

import pytest

from edge_proxy.billing.bounds import MAX_OUTPUT_TOKENS, request_bounds
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
    if isinstance(expected, str):
        with pytest.raises(InvalidRequest) as refused:
            request_bounds(body)
        assert str(refused.value.message) == expected
    else:
        bounds = request_bounds(body)
        assert (bounds.model, bounds.max_output, bounds.input_tokens, bounds.parsed) == ("gpt-4o", expected,
                                                                                       len(body), True)


def test_bounds_are_a_bounds_tuple_with_every_field():
    """request_bounds builds its Bounds by tuple.__new__ (a NamedTuple's own __new__ costs twice as much): the same
    type and fields as Bounds(...), `parsed` True."""
    from edge_proxy.billing.bounds import IMAGE_TOKENS, Bounds
    body = b'{"model":"gpt-4o","max_tokens":64}'
    b = request_bounds(body)
    assert type(b) is Bounds and b == Bounds("gpt-4o", 64, len(body), None, True)
    assert (b.model, b.max_output, b.input_tokens, b.unbounded, b.parsed) == ("gpt-4o", 64, 34, None, True)
    image = b'{"model":"m","messages":[{"content":[{"type":"image_url","image_url":{"url":"data:x"}},' \
            b'{"type":"file","file":{"file_id":"f1"}}]}]}'
    b = request_bounds(image)
    assert type(b) is Bounds and b == Bounds("m", None, len(image) + IMAGE_TOKENS, "a file by id", True)
    assert request_bounds(b"[1]") == Bounds(None, None, 3, None, False)
