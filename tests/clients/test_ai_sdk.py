"""The Vercel AI SDK 6 (`ai` with `@ai-sdk/openai` and `@ai-sdk/anthropic`, pinned in tests/node) on every route.

All scenarios run in one Node process for the module (`ai_results`); each test then checks one scenario's result
and its log row. `openai(model)`, the AI SDK's default, speaks the Responses API; `openai.chat(model)` chat
completions.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ..fake_provider import REPLY_TEXT, fake_embedding
from . import (
    EMBEDDING_MODELS,
    MODELS,
    PERSON_VALUE,
    WEATHER_ARGS,
)
from .ledger import check_estimated_embedding, check_logged, gemini_embedding_estimate, nonce

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "ai").is_dir(),
    reason="node or the AI SDK is not installed (tests/run.sh runs npm ci in tests/node)")

OPENAI_BASES = {"unified": "/v1", "providers": "/providers/openai/v1",
                "forward": "/v1/forward?u=https://api.openai.com/v1"}
ANTHROPIC_BASES = {"unified": "/v1", "providers": "/providers/anthropic/v1",
                   "forward": "/v1/forward?u=https://api.anthropic.com/v1"}


def _scenarios() -> list:
    out = []

    def add(route, sdk, family, op, *marks):
        name = f"{sdk}-{route}-{family}-{op}"
        out.append(pytest.param(name, route, sdk, family, op, id=name, marks=marks))

    for family in ("openai", "anthropic", "gemini"):
        for op in ("text", "stream", "tools", "object"):
            add("unified", "openai.chat", family, op)
            add("unified", "anthropic", family, op)
        for op in ("text", "stream", "tools"):
            add("unified", "openai", family, op)
    for op in ("text", "stream", "tools", "object"):
        add("providers", "openai.chat", "openai", op)
        add("providers", "anthropic", "anthropic", op)
    for op in ("text", "stream", "tools"):
        add("providers", "openai", "openai", op)
    for op in ("text", "stream"):
        add("forward", "openai.chat", "openai", op)
        add("forward", "openai", "openai", op)
        add("forward", "anthropic", "anthropic", op)
    add("unified", "openai", "openai", "embed")
    add("unified", "openai", "gemini", "embed")
    add("providers", "openai", "openai", "embed")
    return out


SCENARIOS = _scenarios()


@pytest.fixture(scope="module")
def ai_results(gateway):
    """Every scenario's result from one Node process, and the nonce each call carried."""
    specs, cases = [], {}
    for p in SCENARIOS:
        name, route, sdk, family, op = p.values
        cases[name] = case = nonce()
        bases = ANTHROPIC_BASES if sdk == "anthropic" else OPENAI_BASES
        model = EMBEDDING_MODELS[family] if op == "embed" else MODELS[family]
        specs.append({"name": name, "provider": sdk, "baseURL": gateway.url + bases[route],
                      "apiKey": gateway.secret_key, "model": model, "op": op, "caseId": case})
    proc = subprocess.run(["node", str(NODE_DIR / "ai_sdk_check.mjs")], input=json.dumps(specs), text=True,
                          capture_output=True, timeout=300, env={**os.environ}, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), cases


@pytest.mark.parametrize("name,route,sdk,family,op", SCENARIOS)
def test_ai_sdk(gateway, fake, ai_results, name, route, sdk, family, op):
    results, cases = ai_results
    result = results[name]
    assert "error" not in result, result
    if op in ("text", "stream"):
        assert result["text"] == REPLY_TEXT and result["finishReason"] == "stop"
    elif op == "tools":
        assert result["toolCalls"] == [{"name": "get_weather", "input": WEATHER_ARGS}]
        assert result["finishReason"] == "tool-calls"
    elif op == "object":
        assert result["object"] == PERSON_VALUE
    elif op == "embed":
        texts = [f"{cases[name]} first", "second text"]
        assert result["embeddings"] == [fake_embedding(t) for t in texts]
        if family == "gemini":  # no token counts in Gemini's answer: billed the estimate, which usage reports
            check_estimated_embedding(gateway, fake, cases[name], texts)
            assert result["usage"]["tokens"] == gemini_embedding_estimate(texts)
            return
    row = check_logged(gateway, fake, cases[name])
    if op != "embed":
        assert result["usage"]["outputTokens"] == row["model_usage"]["output_tokens"]
