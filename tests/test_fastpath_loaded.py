"""Fails when a build that should be compiled silently runs a pure-Python twin (as yarl's test_quoting_c_loaded).

One row per compiled module in setup.py's FASTPATH: the compiled module imports, it is an extension module, and
the selector picked it.
"""
from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import pytest

from edge_proxy.app import COMPILED_MODULES

ROOT = Path(__file__).resolve().parent.parent

SELECTED = [  # (compiled module, the module that selects it, a name the selector must take from it)
    ("edge_proxy._forward_token_c", "edge_proxy.forward_token", "decode_forward_token"),
    ("edge_proxy.metering._usage_scan_c", "edge_proxy.metering.usage", "usage_from_body"),
    ("edge_proxy._headers_c", "edge_proxy.headers", "request_headers"),
    ("edge_proxy.metering._cost_c", "edge_proxy.metering.pricing", "cost_of"),
    ("edge_proxy.billing._media_scan_c", "edge_proxy.billing.bounds", "has_media_markers"),
    ("edge_proxy.billing._media_scan_c", "edge_proxy.billing.bounds", "has_word_escape"),
    ("edge_proxy.observability._tally_c", "edge_proxy.observability.publisher", "tally"),
    ("edge_proxy.log_sinks._rows_c", "edge_proxy.log_sinks.sql", "sqlite_params"),
]


def test_every_compiled_module_has_a_row():
    built = set(re.findall(r'"(edge_proxy\.[\w.]+)":\s*"_fastpath/', (ROOT / "setup.py").read_text()))
    assert built == {compiled for compiled, _, _ in SELECTED}
    assert built == set(COMPILED_MODULES), "the start-up warning (app.py) checks every compiled module"


def test_a_missing_compiled_module_is_named_at_start(monkeypatch, caplog):
    from edge_proxy import app
    from edge_proxy.settings import Settings
    monkeypatch.setattr(app, "COMPILED_MODULES", (*COMPILED_MODULES, "edge_proxy._not_built_c"))
    with caplog.at_level("WARNING", logger="edge_proxy"):
        app._warn_if_not_compiled(Settings.load(env={}))
    assert "(edge_proxy._not_built_c missing)" in caplog.text  # and only it: every real module is built


@pytest.mark.parametrize("compiled,selector,name", SELECTED, ids=[row[0] for row in SELECTED])
def test_compiled_module_is_loaded(compiled, selector, name):
    if os.environ.get("EDGE_PROXY_PURE_PYTHON", "") not in ("", "0"):
        pytest.skip("EDGE_PROXY_PURE_PYTHON forces the twins")
    module = importlib.import_module(compiled)
    assert Path(module.__file__).suffix in (".so", ".pyd"), module.__file__
    assert getattr(importlib.import_module(selector), name) is getattr(module, name)
