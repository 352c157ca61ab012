"""Micro-benchmarks of StreamScanner.feed on the hot path, pure-Python twin vs compiled.

Run: .venv/bin/pytest bench/bench_usage_scan.py --benchmark-enable
Each round scans one whole response: a fresh scanner, every chunk fed, then result(). The "floor"
rows time a scanner whose feed() does nothing, i.e. what the loop itself costs.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

# bench/ is not a package and edge_proxy need not be installed: run against this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_proxy.metering import usage_scan_py
from edge_proxy.metering.usage_types import Usage

WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".", " Zürich", " 東京"]


def _openai_chunks(n: int = 200) -> list[bytes]:
    """An OpenAI chat stream with include_usage: one SSE event per network read, as most arrive."""
    def chunk(delta: dict, usage=None, choices=True) -> bytes:
        c = {"id": "chatcmpl-BNs2sSKbQ9cVh3Qh6X1pJp0Ywn7Tz", "object": "chat.completion.chunk", "created": 1745001234,
             "model": "gpt-4o-mini-2024-07-18", "service_tier": "default", "system_fingerprint": "fp_0392822090",
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}] if choices else [],
             "usage": usage}
        return b"data: " + json.dumps(c, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"

    out = [chunk({"role": "assistant", "content": "", "refusal": None})]
    out += [chunk({"content": WORDS[i % len(WORDS)]}) for i in range(n - 3)]
    out.append(chunk({}, usage={"prompt_tokens": 1200, "completion_tokens": 197, "total_tokens": 1397,
                                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                                "completion_tokens_details": {"reasoning_tokens": 0}}, choices=False))
    out.append(b"data: [DONE]\n\n")
    return out


def _anthropic_chunks(n: int = 200) -> list[bytes]:
    """An Anthropic Messages stream: message_start, text deltas, message_delta, message_stop."""
    def ev(name: str, data: dict) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()

    out = [ev("message_start", {"type": "message_start", "message": {
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [],
        "model": "claude-sonnet-4-5-20250929", "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 472, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024, "output_tokens": 2}}}),
        ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ev("ping", {"type": "ping"})]
    out += [ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": WORDS[i % len(WORDS)]}}) for i in range(n - 6)]
    out += [ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                 "usage": {"output_tokens": 194}}),
            ev("message_stop", {"type": "message_stop"})]
    return out


def _coalesced(chunks: list[bytes], size: int = 4096) -> list[bytes]:
    """The same bytes re-cut into fixed-size reads: lines split across chunks."""
    raw = b"".join(chunks)
    return [raw[i : i + size] for i in range(0, len(raw), size)]


STREAMS = {
    "openai": ("openai", _openai_chunks(), Usage(1200, 197, 1024, 0, 0, "gpt-4o-mini-2024-07-18", True, final=True, content_events=197)),
    "openai_4k_reads": ("openai", _coalesced(_openai_chunks()),
                        Usage(1200, 197, 1024, 0, 0, "gpt-4o-mini-2024-07-18", True, final=True, content_events=197)),
    "anthropic": ("anthropic", _anthropic_chunks(),
                  Usage(1496, 194, 1024, 0, 0, "claude-sonnet-4-5-20250929", True, final=True, content_events=194)),
}


class _Floor:
    """A scanner that does nothing: the cost of the benchmark loop itself."""

    def __init__(self, fmt: str) -> None:
        pass

    def feed(self, chunk: bytes) -> None:
        pass

    def result(self) -> None:
        return None


def _impl(name: str):
    if name == "py":
        return usage_scan_py.StreamScanner
    if name == "c":
        return importlib.import_module("edge_proxy.metering._usage_scan_c").StreamScanner
    return _Floor


def _scan(cls, fmt: str, chunks: list[bytes]):
    s = cls(fmt)
    feed = s.feed
    for c in chunks:
        feed(c)
    return s.result()


@pytest.mark.parametrize("impl", ["py", "c", "floor"])
@pytest.mark.parametrize("stream", sorted(STREAMS))
def test_stream_scan(benchmark, stream, impl):
    fmt, chunks, want = STREAMS[stream]
    cls = _impl(impl)
    benchmark.group = f"{stream}: {len(chunks)} chunks, {sum(map(len, chunks))} bytes"
    got = benchmark(_scan, cls, fmt, chunks)
    if impl != "floor":
        assert got == want
