"""One table of golden fixtures run against both usage-scanner twins (pure Python and compiled).

Each file in tests/fixtures/usage/ is one provider response in its documented shape plus the
Usage that must come out of it (``expect``). A fixture holds either a whole body (``body``: JSON
value, or ``body_text``: raw text) or a stream (``events``: SSE events rendered here, or
``sse_text``: a raw transcript); ``truncate_after`` cuts the rendered bytes right after the first
occurrence of a string, like a connection dropping mid-event.
"""
from __future__ import annotations

import importlib
import json
import random
from pathlib import Path

import msgspec
import pytest

from edge_proxy.metering import usage, usage_scan_py
from edge_proxy.metering.usage_types import MAX_BODY, MAX_LINE, Usage

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "usage").glob("*.json"))
EOLS = {"lf": "\n", "crlf": "\r\n"}


@pytest.fixture(params=["py", "c"])
def scan(request):
    """The usage-scan module under test: the twin, or the compiled module (which must be built)."""
    if request.param == "py":
        return usage_scan_py
    if usage.PURE_PYTHON:
        pytest.skip("EDGE_PROXY_PURE_PYTHON is set: only the pure-Python twin is under test")
    return importlib.import_module("edge_proxy.metering._usage_scan_c")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def is_stream(fx: dict) -> bool:
    return "events" in fx or "sse_text" in fx


def render(fx: dict, eol: str = "\n") -> bytes:
    """The bytes on the wire for a fixture."""
    if "body" in fx:
        text = json.dumps(fx["body"], indent=2, ensure_ascii=False)
    elif "body_text" in fx:
        text = fx["body_text"]
    elif "sse_text" in fx:
        text = fx["sse_text"].replace("\n", eol)
    else:
        out = []
        for ev in fx["events"]:
            data = ev["data"]
            if not isinstance(data, str):  # providers send compact JSON, one object per data line
                data = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            if "event" in ev:
                out.append(f"event: {ev['event']}{eol}")
            out.append(f"data: {data}{eol}{eol}")
        text = "".join(out)
    raw = text.encode("utf-8")
    if "truncate_after" in fx:
        cut = fx["truncate_after"].encode("utf-8")
        at = raw.find(cut)
        assert at >= 0, f"truncate_after {fx['truncate_after']!r} not in the fixture"
        raw = raw[: at + len(cut)]
    return raw


def chunkings(raw: bytes) -> dict[str, list[bytes]]:
    """The ways a transcript is split into chunks: any split must give the same usage."""
    lines = raw.splitlines(keepends=True)
    return {
        "whole": [raw] if raw else [],
        "1byte": [raw[i : i + 1] for i in range(len(raw))],
        "7byte": [raw[i : i + 7] for i in range(0, len(raw), 7)],
        "lines": lines,
    }


def scan_stream(mod, fmt: str, chunks) -> Usage:
    s = mod.StreamScanner(fmt)
    for c in chunks:
        s.feed(c)
    return s.result()


def expected(fx: dict) -> Usage:
    return msgspec.convert(fx["expect"], Usage)


CASES = []
for _path in FIXTURES:
    _fx = load(_path)
    for _eol in EOLS if is_stream(_fx) else ["lf"]:
        for _how in ("whole", "1byte", "7byte", "lines"):
            CASES.append(pytest.param(_path, _eol, _how, id=f"{_path.stem}-{_eol}-{_how}"))


def test_fixtures_are_there():
    assert len(FIXTURES) >= 30, "the golden fixture table went missing"


@pytest.mark.parametrize("path,eol,how", CASES)
def test_stream_scanner_reads_fixture(scan, path, eol, how):
    fx = load(path)
    raw = render(fx, EOLS[eol])
    assert scan_stream(scan, fx["fmt"], chunkings(raw)[how]) == expected(fx)


@pytest.mark.parametrize("path", [p for p in FIXTURES if not is_stream(load(p))], ids=lambda p: p.stem)
def test_usage_from_body_reads_fixture(scan, path):
    fx = load(path)
    assert scan.usage_from_body(fx["fmt"], render(fx)) == expected(fx)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_twins_agree_on_random_chunkings(path):
    if usage.PURE_PYTHON:
        pytest.skip("EDGE_PROXY_PURE_PYTHON is set: the compiled twin is not under test")
    c = importlib.import_module("edge_proxy.metering._usage_scan_c")
    fx = load(path)
    rng = random.Random(path.stem)  # reproducible per fixture
    for eol in EOLS.values():
        raw = render(fx, eol)
        for _ in range(20):
            cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, rng.randint(1, 40)))) if len(raw) > 1 else []
            chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)]) if b > a]
            got_py = scan_stream(usage_scan_py, fx["fmt"], chunks)
            assert got_py == scan_stream(c, fx["fmt"], chunks) == expected(fx)


def test_usage_scan_c_loaded():
    """The compiled scanner is what the gateway uses unless pure Python is forced."""
    if usage.PURE_PYTHON:
        pytest.skip("EDGE_PROXY_PURE_PYTHON is set: the pure-Python twin is forced on purpose")
    c = importlib.import_module("edge_proxy.metering._usage_scan_c")  # fails if not built
    assert usage.COMPILED
    assert usage.StreamScanner is c.StreamScanner
    assert usage.usage_from_body is c.usage_from_body


# --- behaviour beyond the fixture table ---

OPENAI_FINAL = b'data: {"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n'


# One data: line each: is it a content event, and is its usage read? The compiled twin tests every key in one pass
# over the line's quotes, the pure one searches for each key on its own: these rows hold both to the same answers.
LINES = [
    ("openai chat content", "openai", b'data: {"choices":[{"delta":{"content":"Hi"}}],"usage":null}', 1, False),
    ("openai empty content is framing", "openai", b'data: {"choices":[{"delta":{"content":""}}]}', 0, False),
    ("openai content without a delta key is not counted", "openai", b'data: {"message":{"content":"Hi"}}', 0, False),
    ("openai delta after the content key", "openai", b'data: {"content" : "Hi","x":{"delta":{}}}', 1, False),
    ("openai tool arguments", "openai", b'data: {"delta":{"tool_calls":[{"arguments":"{"}]}}', 1, False),
    ("openai refusal", "openai", b'data: {"delta":{"refusal":"no"}}', 1, False),
    ("openai reasoning", "openai", b'data: {"delta":{"reasoning":"hm"}}', 1, False),
    ("openai reasoning_content", "openai", b'data: {"delta":{"reasoning_content":"hm"}}', 1, False),
    ("openai a longer key is not a content key", "openai", b'data: {"delta":{"contents":"x","reasoning_x":"y"}}',
     0, False),
    ("openai responses delta string", "openai", b'data: {"type":"response.output_text.delta","delta":"Hi"}', 1,
     False),
    ("openai null content", "openai", b'data: {"delta":{"content":null}}', 0, False),
    ("openai usage object", "openai", b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}', 0,
     True),
    ("openai usage with spaces before the object", "openai", b'data: {"usage" :\t{"prompt_tokens":3}}', 0, True),
    ("openai usage null is skipped", "openai", b'data: {"choices":[],"usage":null}', 0, False),
    ("openai usage key inside a string value", "openai", b'data: {"delta":{"content":"\\"usage\\": {"}}', 1,
     False),
    ("openai a quote at the end of the line", "openai", b'data: {"delta":{"content":"', 0, False),
    ("anthropic text", "anthropic", b'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}',
     1, False),
    ("anthropic empty text is framing", "anthropic", b'data: {"content_block":{"type":"text","text":""}}', 0, False),
    ("anthropic partial_json", "anthropic", b'data: {"delta":{"partial_json":"{\\"a"}}', 1, False),
    ("anthropic thinking", "anthropic", b'data: {"delta":{"thinking":"hm"}}', 1, False),
    ("anthropic message_delta usage", "anthropic", b'data: {"type":"message_delta","usage":{"output_tokens":9}}', 0,
     True),
    ("gemini text", "gemini", b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}]}}]}', 1, False),
    ("gemini function call", "gemini", b'data: {"candidates":[{"content":{"parts":[{"functionCall":{}}]}}]}', 1,
     False),
    ("gemini usageMetadata", "gemini", b'data: {"usageMetadata":{"promptTokenCount":2}}', 0, True),
    ("gemini usage alone is not usageMetadata's prefix", "gemini", b'data: {"usageX":{"promptTokenCount":2}}', 0,
     False),
    ("a line that is not data: is not read", "openai", b'event: {"delta":{"content":"Hi"},"usage":{"x":1}}', 0,
     False),
]


@pytest.mark.parametrize("fmt,line,events,found", [r[1:] for r in LINES], ids=[r[0] for r in LINES])
@pytest.mark.parametrize("newline", [True, False], ids=["line", "last line without newline"])
def test_one_line(scan, fmt, line, events, found, newline):
    s = scan.StreamScanner(fmt)
    s.feed(line + (b"\n\n" if newline else b""))
    u = s.result()
    assert (u.content_events, u.found) == (events, found)


# The compiled twin finds a line's quotes 16 bytes at a time, and only those a key's first letter follows; the line's
# last bytes go through a zeroed copy. These rows move each key across every offset of a block, and end lines on a
# quote or a key's first letter, so a key split by a block boundary or at the end of the line reads as in the twin.
SHIFTED = [  # (name, fmt, line after the padding, content events, usage found)
    ("openai content and usage", "openai", b'"delta":{"content":"Hi"},"usage":{"prompt_tokens":3}}', 1, True),
    ("openai usage null", "openai", b'"delta":{"role":"assistant","refusal":null},"usage":null}', 0, False),
    ("openai refusal", "openai", b'"delta":{"refusal":"no"},"created":1,"choices":[]}', 1, False),
    ("openai reasoning_content", "openai", b'"delta":{"reasoning_content":"hm","arguments":""}}', 1, False),
    ("anthropic text and usage", "anthropic", b'"delta":{"text":"Hi"},"usage":{"output_tokens":9}}', 1, True),
    ("anthropic partial_json", "anthropic", b'"delta":{"partial_json":"{"}}', 1, False),
    ("gemini usageMetadata", "gemini", b'"usageMetadata":{"promptTokenCount":2}}', 0, True),
    ("gemini functionCall", "gemini", b'"parts":[{"functionCall":{}}]}', 1, False),
    ("a quote ends the line", "openai", b'"delta":{"content":"', 0, False),
    ("a key's first letter ends the line", "openai", b'"delta":{},"u', 0, False),
    ("usage cut before its object", "openai", b'"delta":{},"usage":', 0, False),
]


@pytest.mark.parametrize("fmt,tail,events,found", [r[1:] for r in SHIFTED], ids=[r[0] for r in SHIFTED])
def test_keys_at_every_offset_of_a_block(scan, fmt, tail, events, found):
    for pad in range(34):  # the tail starts at every offset of two 16-byte blocks
        line = b'data: {"p":"' + b"y" * pad + b'",' + tail
        for newline in (b"\n\n", b""):
            s = scan.StreamScanner(fmt)
            s.feed(line + newline)
            u = s.result()
            assert (u.content_events, u.found) == (events, found), (pad, newline)


def test_unknown_format_is_a_configuration_error(scan):
    with pytest.raises(ValueError, match="unknown usage format"):
        scan.StreamScanner("cohere-v9")
    with pytest.raises(ValueError, match="unknown usage format"):
        scan.usage_from_body("cohere-v9", b"{}")


def test_result_can_be_read_mid_stream_and_again(scan):
    s = scan.StreamScanner("openai")
    assert s.result() == Usage()
    s.feed(OPENAI_FINAL[:30])
    assert s.result().found is False
    s.feed(OPENAI_FINAL[30:])
    first = s.result()
    assert first == s.result() == Usage(3, 4, model="m", found=True, final=True)
    first.input_tokens = 999  # the caller owns its copy
    assert s.result().input_tokens == 3


def test_final_line_without_newline_still_counts(scan):
    s = scan.StreamScanner("openai")
    s.feed(OPENAI_FINAL.rstrip(b"\n"))
    assert s.result().output_tokens == 4
    assert s.result().output_tokens == 4  # reading the tail does not consume it


def test_chunks_may_be_bytearray_or_memoryview(scan):
    s = scan.StreamScanner("openai")
    s.feed(bytearray(OPENAI_FINAL[:20]))
    s.feed(memoryview(OPENAI_FINAL)[20:])
    assert s.result().input_tokens == 3


ERROR_BODIES = [  # (name, fmt, body, error_event): body_is_error answers most bodies from their first key's first byte
    ("openai error", "openai", b'{"error":{"message":"x","type":"requests"}}', True),
    ("anthropic error", "anthropic", b'{"type":"error","error":{"type":"overloaded_error"}}', True),
    ("gemini error", "gemini", b'{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}', True),
    ("error after whitespace", "openai", b' \r\n{ "error" : {}}', True),
    ("type error spaced", "anthropic", b'{"type" : "error"}', True),
    ("a key starting with e", "openai", b'{"embedding":[1],"error":null}', False),
    ("a key starting with t", "anthropic", b'{"type":"message","usage":{"input_tokens":1,"output_tokens":2}}', False),
    ("an answer", "openai", b'{"id":"c","error":{},"usage":{"prompt_tokens":1}}', False),
    ("error not the first key", "gemini", b'{"candidates":[],"error":{}}', False),
    ("just the opening", "openai", b'{"', False),
    ("empty", "openai", b"", False),
    ("an error body in format none", "none", b'{"error":{}}', False),
]


@pytest.mark.parametrize("fmt,body,error", [r[1:] for r in ERROR_BODIES], ids=[r[0] for r in ERROR_BODIES])
@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_body_error_event(scan, fmt, body, error, wrap):
    u = scan.usage_from_body(fmt, wrap(body))
    assert u.error_event is error
    assert u == scan.usage_from_body(fmt, body)  # a bytearray or memoryview reads like its bytes


# OpenAI-style counts a provider sends null or negative read as 0, each on its own (usage_types._openai_usage writes
# `_n` out per field): one row per field, the Usage given whole, positionally in its field order.
ODD_OPENAI_COUNTS = [
    ("negative prompt, null completion, output_tokens instead",
     b'{"usage":{"prompt_tokens":-5,"completion_tokens":null,"output_tokens":7}}',
     Usage(0, 7, 0, 0, 0, None, True, 0, 0, 0, 0, True)),
    ("negative details, an output audio count",
     b'{"model":"m","usage":{"prompt_tokens":9,"completion_tokens":8,"prompt_tokens_details":{"cached_tokens":-1,'
     b'"cache_write_tokens":-2,"audio_tokens":null},"completion_tokens_details":{"reasoning_tokens":-3,'
     b'"audio_tokens":4}}}',
     Usage(9, 8, 0, 0, 0, "m", True, 0, 0, 0, 4, True)),
    ("every detail positive",
     b'{"usage":{"prompt_tokens":20,"completion_tokens":10,"prompt_tokens_details":{"cached_tokens":3,'
     b'"cache_write_tokens":2,"audio_tokens":5},"completion_tokens_details":{"reasoning_tokens":6,"audio_tokens":1}}}',
     Usage(20, 10, 3, 2, 6, None, True, 0, 5, 0, 1, True)),
    ("DeepSeek's cache hits, the details silent on them",
     b'{"usage":{"prompt_tokens":20,"completion_tokens":10,"prompt_cache_hit_tokens":12,'
     b'"prompt_tokens_details":{"cached_tokens":null}}}',
     Usage(20, 10, 12, 0, 0, None, True, 0, 0, 0, 0, True)),
    ("DeepSeek's cache hits negative", b'{"usage":{"prompt_tokens":20,"prompt_cache_hit_tokens":-4}}',
     Usage(20, 0, 0, 0, 0, None, True, 0, 0, 0, 0, True)),
    ("xAI: reasoning outside completion_tokens",
     b'{"usage":{"prompt_tokens":5,"completion_tokens":10,"total_tokens":19,'
     b'"completion_tokens_details":{"reasoning_tokens":4}}}',
     Usage(5, 14, 0, 0, 4, None, True, 0, 0, 0, 0, True)),
    ("Responses: in response, with its model",
     b'{"type":"response.completed","response":{"model":"r","usage":{"input_tokens":3,"output_tokens":-1,'
     b'"input_tokens_details":{"cached_tokens":2},"output_tokens_details":{"reasoning_tokens":1}}}}',
     Usage(3, 0, 2, 0, 1, "r", True, 0, 0, 0, 0, True)),
]


@pytest.mark.parametrize("body,want", [r[1:] for r in ODD_OPENAI_COUNTS], ids=[r[0] for r in ODD_OPENAI_COUNTS])
def test_openai_counts_null_or_negative_read_as_zero(scan, body, want):
    assert scan.usage_from_body("openai", body) == want
    got = scan_stream(scan, "openai", [b"data: " + body + b"\n\n"])  # the same document as a stream's event
    assert got == msgspec.structs.replace(want, content_events=got.content_events)


PAST_ANY_COUNT = [  # (id, fmt, a document whose count is past usage_types.MAX_COUNT: it is not read)
    ("openai prompt", "openai", b'{"usage":{"prompt_tokens":100000000000000000000,"completion_tokens":5}}'),
    ("openai 64-bit", "openai", b'{"usage":{"prompt_tokens":9,"completion_tokens":9223372036854775807}}'),
    ("openai a detail", "openai", b'{"usage":{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":1000000001}}}'),
    ("responses", "openai", b'{"response":{"usage":{"input_tokens":1000000001,"output_tokens":1}}}'),
    ("anthropic output", "anthropic", b'{"usage":{"input_tokens":3,"output_tokens":18446744073709551615}}'),
    ("anthropic 1h writes", "anthropic",
     b'{"usage":{"input_tokens":3,"cache_creation":{"ephemeral_1h_input_tokens":1000000001}}}'),
    ("gemini prompt", "gemini", b'{"usageMetadata":{"promptTokenCount":1000000001,"candidatesTokenCount":2}}'),
    ("gemini audio", "gemini", b'{"usageMetadata":{"promptTokenCount":3,"promptTokensDetails":'
                              b'[{"modality":"AUDIO","tokenCount":1000000001}]}}'),
]


@pytest.mark.parametrize("fmt,body", [r[1:] for r in PAST_ANY_COUNT], ids=[r[0] for r in PAST_ANY_COUNT])
def test_a_count_past_any_real_one_is_not_read(scan, fmt, body):
    assert not scan.usage_from_body(fmt, body).found
    assert not scan_stream(scan, fmt, [b"data: " + body + b"\n\n"]).found
    at_most = body.replace(b"100000000000000000000", b"1000000000").replace(b"9223372036854775807", b"1000000000")
    at_most = at_most.replace(b"18446744073709551615", b"1000000000").replace(b"1000000001", b"1000000000")
    assert scan.usage_from_body(fmt, at_most).found  # a billion is still a count


def test_over_long_line_is_dropped_and_scanning_resyncs(scan):
    s = scan.StreamScanner("openai")
    s.feed(b'data: {"usage":{"prompt_tokens":1},"pad":"')
    piece = b"x" * 65536
    for _ in range(MAX_LINE // len(piece) + 1):  # the open line outgrows MAX_LINE
        s.feed(piece)
    s.feed(b'"}\n\n' + OPENAI_FINAL)
    assert s.result() == Usage(3, 4, model="m", found=True, final=True)


def test_body_larger_than_bound_gives_no_usage(scan):
    s = scan.StreamScanner("openai")
    s.feed(b'{"pad":"')
    piece = b"x" * (1 << 20)
    for _ in range(MAX_BODY // len(piece) + 1):
        s.feed(piece)
    s.feed(b'","usage":{"prompt_tokens":1}}')
    assert s.result().found is False


def test_blank_chunks_before_the_stream_are_harmless(scan):
    s = scan.StreamScanner("openai")
    s.feed(b"\r\n")
    s.feed(b"   ")
    s.feed(OPENAI_FINAL)
    assert s.result().output_tokens == 4


def test_format_none_ignores_everything(scan):
    s = scan.StreamScanner("none")
    s.feed(OPENAI_FINAL)
    assert s.result() == Usage()


# --- cut streams: the golden rows of what is billed (metering.estimate) -----------------------------------------

BILLED = [p for p in FIXTURES if "billed" in load(p)]


def test_every_format_has_cut_stream_rows_before_and_after_usage():
    sources = {(load(p)["fmt"], load(p)["billed"]["usage_source"]) for p in BILLED}
    for fmt in ("openai", "anthropic", "gemini"):
        assert {(fmt, "estimated"), (fmt, "provider")} <= sources, fmt


@pytest.mark.parametrize("how", ["whole", "1byte", "7byte"])
@pytest.mark.parametrize("path", BILLED, ids=lambda p: p.stem)
def test_cut_stream_is_billed_exactly(scan, path, how):
    from edge_proxy.metering.estimate import billed_usage
    fx = load(path)
    got = scan_stream(scan, fx["fmt"], chunkings(render(fx))[how])
    billed = billed_usage(got, fmt=fx["fmt"], stream=True, status=200, request_bytes=fx["request_bytes"])
    assert {"input_tokens": billed.input_tokens, "output_tokens": billed.output_tokens,
            "usage_source": billed.usage_source} == fx["billed"]


ESTIMATE_RULE = [
    # (id, usage, stream, status, (input, output, source))
    ("a final count is billed as reported", Usage(10, 4, found=True, final=True, content_events=9), True, 200,
     (10, 4, "provider")),
    ("a whole answer with usage is the provider's", Usage(10, 4, found=True), False, 200, (10, 4, "provider")),
    ("an error answer without usage bills nothing", Usage(), False, 500, (0, 0, "none")),
    ("an error stream without usage bills nothing", Usage(content_events=3), True, 429, (0, 0, "none")),
    ("a body without usage bills nothing", Usage(), False, 200, (0, 0, "none")),
    ("a stream without usage: input from the body, output per content event", Usage(content_events=6), True, 200,
     (25, 6, "estimated")),
    ("a running count above the events wins", Usage(9, 12, found=True, content_events=3), True, 200,
     (9, 12, "estimated")),
    ("events above the running count win", Usage(9, 2, found=True, content_events=7), True, 200,
     (9, 7, "estimated")),
]


@pytest.mark.parametrize("usage,stream,status,want", [c[1:] for c in ESTIMATE_RULE], ids=[c[0] for c in ESTIMATE_RULE])
def test_estimate_rule(usage, stream, status, want):
    from edge_proxy.metering.estimate import billed_usage
    b = billed_usage(usage, fmt="openai", stream=stream, status=status, request_bytes=100)
    assert (b.input_tokens, b.output_tokens, b.usage_source) == want


METERED_BODY = [  # a whole answer from an endpoint the catalogue meters (chat, messages, embeddings...)
    ("a metered body without usage: input from the request body, no output counted", Usage(), 200,
     (25, 0, "estimated")),
    ("a metered body with usage is the provider's", Usage(10, 4, found=True, final=True), 200, (10, 4, "provider")),
    ("a metered error body without usage bills nothing", Usage(), 500, (0, 0, "none")),
]


@pytest.mark.parametrize("usage,status,want", [c[1:] for c in METERED_BODY], ids=[c[0] for c in METERED_BODY])
def test_a_metered_answer_without_usage_is_estimated_never_free(usage, status, want):
    """Until this release a whole answer whose usage could not be read (none, or a count not a whole number) was
    billed as free; a stream was already estimated."""
    from edge_proxy.metering.estimate import billed_usage
    b = billed_usage(usage, fmt="openai", stream=False, status=status, request_bytes=100, metered=True)
    assert (b.input_tokens, b.output_tokens, b.usage_source) == want


INPUT_ESTIMATE = [  # an API that reports no counts (Gemini embeddings): the planner's estimate of its input
    ("an answer without usage bills the input estimate", Usage(), 200, (12, 0, "estimated")),
    ("the provider's count wins over the estimate", Usage(7, 0, found=True, final=True), 200, (7, 0, "provider")),
    ("an error answer bills nothing, estimate or not", Usage(), 400, (0, 0, "none")),
]


@pytest.mark.parametrize("usage,status,want", [c[1:] for c in INPUT_ESTIMATE], ids=[c[0] for c in INPUT_ESTIMATE])
def test_an_input_estimate_bills_an_answer_that_reports_no_usage(usage, status, want):
    from edge_proxy.metering.estimate import billed_usage
    b = billed_usage(usage, fmt="gemini", stream=False, status=status, request_bytes=100, input_estimate=12)
    assert (b.input_tokens, b.output_tokens, b.usage_source) == want


def test_format_none_is_never_estimated():
    from edge_proxy.metering.estimate import billed_usage
    b = billed_usage(Usage(content_events=5), fmt="none", stream=True, status=200, request_bytes=400)
    assert (b.input_tokens, b.output_tokens, b.usage_source) == (0, 0, "none")


OUTCOMES = [
    ("a 200 answer is completed", 200, Usage(found=True, final=True), True, ("completed", None)),
    ("a provider 5xx is an error", 503, Usage(), True, ("error", "provider_status_503")),
    ("a provider 4xx is an error", 400, Usage(error_event=True), True, ("error", "provider_status_400")),
    ("an in-band error event is an error", 200, Usage(error_event=True, content_events=2), True,
     ("error", "provider_error_event")),
    ("a cut body is an error", 200, Usage(content_events=2), False, ("error", "upstream_interrupted")),
]


@pytest.mark.parametrize("status,usage,complete,want", [c[1:] for c in OUTCOMES], ids=[c[0] for c in OUTCOMES])
def test_answer_outcome(status, usage, complete, want):
    from edge_proxy.metering.estimate import answer_outcome
    assert answer_outcome(status, usage, complete=complete) == want
