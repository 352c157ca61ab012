"""Micro-benchmarks of the header filters on the request path, pure-Python twin vs compiled.

Run: .venv/bin/python -m pytest bench/bench_headers.py --benchmark-enable
bench/check.py gates the compiled/pure ratio of each (`test_filter_*_c_over_py`).
"""
from __future__ import annotations

import importlib

import pytest

from edge_proxy import _headers_py

# what the OpenAI Python SDK sends, as Granian hands it over (lowercase names)
CLIENT = [("host", "127.0.0.1:8080"), ("authorization", "Bearer lava_sk"), ("content-type", "application/json"),
          ("content-length", "120"), ("user-agent", "OpenAI/Python 1.0"), ("accept", "application/json"),
          ("x-stainless-lang", "python"), ("x-stainless-os", "Linux"), ("x-stainless-arch", "x64"),
          ("x-stainless-runtime", "CPython"), ("x-stainless-retry-count", "0"), ("accept-encoding", "gzip, deflate")]
PROVIDER = [(b"date", b"Thu, 03 Dec 2026 11:00:00 GMT"), (b"content-type", b"application/json"),
            (b"content-length", b"300"), (b"connection", b"keep-alive"), (b"openai-organization", b"org-op"),
            (b"openai-processing-ms", b"12"), (b"x-request-id", b"req_upstream"), (b"server", b"cloudflare")]


def _impl(name: str):
    return _headers_py if name == "py" else importlib.import_module("edge_proxy._headers_c")


@pytest.mark.parametrize("impl", ["c", "py"])
def test_filter_request_headers(benchmark, impl):
    benchmark.group = "request headers (managed key)"
    block = benchmark(_impl(impl).request_headers, CLIENT, b"authorization", "sk-op", managed=True)
    assert block.lines == 10


@pytest.mark.parametrize("impl", ["c", "py"])
def test_filter_response_headers(benchmark, impl):
    benchmark.group = "response headers (managed answer)"
    assert len(benchmark(_impl(impl).response_headers, PROVIDER, managed=True)) == 5
