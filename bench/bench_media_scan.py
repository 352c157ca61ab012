"""Micro-benchmarks of the media scan that every request body goes through before it is reserved for
(billing/bounds.py), pure-Python twin (a regular expression) vs compiled, on a short body and a chat of 4 KB.

Run: .venv/bin/python -m pytest bench/bench_media_scan.py --benchmark-enable
"""
from __future__ import annotations

import importlib

import msgspec
import pytest

from edge_proxy.billing import _media_scan_py

SHORT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello from my agent!"}],"max_tokens":64}'
TURN = ("Please summarize the following text for me and explain what it means, then list three questions a "
        "reader would ask next about the quick brown fox that jumps over the lazy dog. ") * 2
CHAT = msgspec.json.encode({"model": "gpt-4o-mini", "max_tokens": 64, "messages": [
    {"role": "user" if i % 2 == 0 else "assistant", "content": TURN} for i in range(12)]})


def _impl(name: str):
    return _media_scan_py if name == "py" else importlib.import_module("edge_proxy.billing._media_scan_c")


@pytest.mark.parametrize("impl", ["c", "py"])
def test_scan_short_body(benchmark, impl):
    benchmark.group = f"media scan, {len(SHORT)} bytes"
    assert benchmark(_impl(impl).has_media_markers, SHORT) is False


@pytest.mark.parametrize("impl", ["c", "py"])
def test_scan_chat_body(benchmark, impl):
    benchmark.group = f"media scan, {len(CHAT)} bytes"
    assert benchmark(_impl(impl).has_media_markers, CHAT) is False
