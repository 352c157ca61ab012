"""One table of media-scan cases, run against the compiled scan and its pure-Python twin (the regular expression).

A body the scan passes over is reserved for without parsing it whole, so a marker it misses would let an image
(6,000 tokens each) or content by reference through at the price of its bytes: every marker, at every place in a
body, must be found.
"""
from __future__ import annotations

import importlib
import os
import random

import pytest

from edge_proxy.billing import _media_scan_py, bounds

PURE_PYTHON = os.environ.get("EDGE_PROXY_PURE_PYTHON", "") not in ("", "0")
MARKERS = [b"image", b"file", b"document", b"video", b"\\u0069", b"\\u005F", b"\\u00e9", b"\\u"]


def compiled():
    """The compiled scan, which must be built (tests/test_fastpath_loaded.py says so when it is not)."""
    if PURE_PYTHON:
        pytest.skip("EDGE_PROXY_PURE_PYTHON is set: only the pure-Python twin is under test")
    return importlib.import_module("edge_proxy.billing._media_scan_c")


@pytest.fixture(params=["py", "c"])
def build(request):
    """The media-scan module under test: the twin, or the compiled module."""
    return _media_scan_py if request.param == "py" else compiled()


CASES = [  # id, body, holds a marker
    ("an empty body holds none", b"", False),
    ("a plain chat body holds none",
     b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello!"}],"max_tokens":64}', False),
    ("an OpenAI image part", b'{"messages":[{"content":[{"type":"image_url","image_url":{"url":"x"}}]}]}', True),
    ("a Responses file by id", b'{"input":[{"content":[{"type":"input_file","file_id":"f1"}]}]}', True),
    ("an Anthropic document", b'{"messages":[{"content":[{"type":"document","source":{}}]}]}', True),
    ("a Gemini video by URI", b'{"contents":[{"parts":[{"fileData":{"fileUri":"gs://v"}}]}]}', True),
    ("a video URL", b'{"messages":[{"content":[{"type":"video_url","video_url":"u"}]}]}', True),
    ("a key spelled with an escape", b'{"\\u0069mage_url":1}', True),
    ("an escaped underscore, hex in capitals", b'{"file\\u005Fid":1}', True),
    ("an escaped digit", b'{"a\\u0030":1}', True),
    ("an escaped capital letter", b'{"\\u0049":1}', True),
    ("escaped text past ASCII is no marker (json.dumps escapes all of it)",
     b'{"a":"caf\\u00e9 \\u041f\\u0440\\u0438 \\u6587"}', False),
    ("escaped punctuation is no marker (Go escapes <, > and &)", b'{"a":"\\u003cb\\u003e \\u0026 \\u0027"}', False),
    ("escapes just outside the word characters are no markers",
     b'"\\u002f\\u003a\\u0040\\u005b\\u005e\\u0060\\u007b\\u00ff"', False),
    ("an escape cut short at the end is no marker", b'{"a":"\\u006', False),
    ("a `\\u` escape outside u00XX is no marker", b'{"a":"\\u1069"}', False),
    ("a marker at the very start", b"image", True),
    ("a marker at the very end", b'{"a":"b"}video', True),
    ("a backslash at the very end is not an escape of u", b'{"a":"b\\', False),
    ("a marker cut short at the end is not one", b'{"a":"b"}imag', False),
    ("a cut `file` at the end is not one", b"fil", False),
    ("a cut `document` at the end is not one", b"documen", False),
    ("capitals are not markers (JSON keys and types are lower case)", b'{"Image":"File Document Video"}', False),
    ("a backslash before another letter is no marker", b'{"a":"line\\nbreak \\t"}', False),
    ("bytes past ASCII do not confuse it", "{\"a\":\"caf\u00e9 \u6587\u4ef6 \U0001f5bc\"}".encode(), False),
    ("a marker after bytes past ASCII", "\u00e9\u00e9image".encode(), True),
    ("a NUL byte before a marker", b"\x00\x00file", True),
]


@pytest.mark.parametrize("body,found", [(b, f) for _, b, f in CASES], ids=[i for i, _, _ in CASES])
def test_media_markers(build, body, found):
    assert build.has_media_markers(body) is found


WORD_ESCAPES = [  # id, body, holds a `\\u` escape of a letter, digit or underscore
    ("none in an empty body", b"", False),
    ("none in plain text", b'{"a":"file image"}', False),
    ("an escaped letter", b'{"\\u0069d":1}', True),
    ("an escaped capital, hex in capitals", b'"\\u004A"', True),
    ("an escaped underscore", b'"file\\u005fid"', True),
    ("an escaped digit", b'"\\u0039"', True),
    ("text escaped past ASCII", b'"caf\\u00e9 \\u041f\\u0440 \\u6587 \\ud83d\\ude00"', False),
    ("escaped punctuation", b'"\\u003c\\u003e\\u0026\\u0027\\u002f\\u0040\\u005b\\u0060\\u007b"', False),
    ("an escape cut short at the end", b'"\\u006', False),
    ("a backslash at the very end", b"\\", False),
    ("an escaped backslash before text that looks like one (as the expression: yes)", b'"\\\\u0069"', True),
    ("after many escapes past ASCII", b'"' + b"\\u0416" * 1000 + b'\\u0061"', True),
]


@pytest.mark.parametrize("body,found", [(b, f) for _, b, f in WORD_ESCAPES], ids=[i for i, _, _ in WORD_ESCAPES])
def test_word_escapes(build, body, found):
    assert build.has_word_escape(body) is found


@pytest.mark.parametrize("name", ["has_media_markers", "has_word_escape"])
def test_random_bodies_agree_with_the_regular_expression(name):
    scan, twin = getattr(compiled(), name), getattr(_media_scan_py, name)
    rng = random.Random(17)
    alphabet = b'ifdvuaegmcnlotmo\\"{}: 0567fF9A'
    for _ in range(5000):
        body = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        if rng.random() < 0.3:
            at = rng.randrange(0, len(body) + 1)
            body = body[:at] + rng.choice(MARKERS)[:rng.randrange(1, 9)] + body[at:]
        assert scan(body) is twin(body), body


def test_an_image_in_a_long_body_is_still_counted():
    body = b'{"max_tokens":10,"messages":[{"content":"' + b"x" * 100_000 + b'"},{"type":"image_url"}]}'
    assert bounds.request_bounds(body).input_tokens == len(body) + bounds.IMAGE_TOKENS


def test_the_compiled_scan_refuses_what_is_not_bytes():
    with pytest.raises(TypeError):
        compiled().has_media_markers(None)
