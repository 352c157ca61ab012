"""A realistic mixed load against a local gateway: several merchants and customers, plain and streamed chat
completions, a mix of models, both routes (/providers/openai/... and Lava's /v1/forward?u=...).

Locust comes with the bench and test extras (scripts/bootstrap.sh --bench). The credentials come from
bench/locust_setup.py (LOCUST_TOKENS, default bench/out/locust_tokens.json). One command for everything
(upstream, gateway, setup, 15 s of load, stop): `bash bench/locust_run.sh`. By hand:

    .venv/bin/locust -f bench/locustfile.py --headless -u 20 -r 10 -t 15s --host http://127.0.0.1:PORT

Every user is one customer of one merchant (a forward token with customer_id and meter_slug), or, for one user in
five, a merchant calling with its raw secret key. Tasks, by weight: plain chat 6, streamed chat (SSE, with
stream_options.include_usage) 3, plain chat through /v1/forward 1. A response counts as a failure unless it is 200
and, for a stream, ends with `data: [DONE]`.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser
from locust_checks import judge  # bench/ is on sys.path: locust puts the locustfile's folder there

TOKENS = Path(os.environ.get("LOCUST_TOKENS", Path(__file__).resolve().parent / "out" / "locust_tokens.json"))
MODELS = ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1-nano", "o3-mini"]
PROMPTS = ["Say hello.", "Summarise the plot of Hamlet in one sentence.", "What is 17 * 23?",
           "Write a haiku about the sea.", "Translate 'good morning' into French and German."]
SDK_HEADERS = {"content-type": "application/json", "accept": "application/json", "user-agent": "OpenAI/Python 1.54.3",
               "x-stainless-lang": "python", "x-stainless-package-version": "1.54.3", "x-stainless-os": "Linux",
               "x-stainless-arch": "x64", "x-stainless-runtime": "CPython", "x-stainless-runtime-version": "3.11.7"}
FORWARD = "/v1/forward?u=https%3A%2F%2Fapi.openai.com%2Fv1%2Fchat%2Fcompletions"


def _credentials() -> list[str]:
    if not TOKENS.exists():
        raise SystemExit(f"{TOKENS} not found: run bench/locust_setup.py first (see bench/locust_run.sh)")
    doc = json.loads(TOKENS.read_text())
    creds = []
    for m in doc["merchants"]:
        creds += [c["token"] for c in m["customers"]]
        creds.append(m["secret_key"])
    return creds


CREDENTIALS = _credentials()


class GatewayUser(FastHttpUser):
    wait_time = between(0.02, 0.2)

    def on_start(self) -> None:
        self.headers = dict(SDK_HEADERS, authorization="Bearer " + random.choice(CREDENTIALS))

    def _body(self, model: str, stream: bool) -> str:
        body = {"model": model, "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                             {"role": "user", "content": random.choice(PROMPTS)}]}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return json.dumps(body)

    def _post(self, path: str, name: str, stream: bool) -> None:
        model = random.choice(MODELS)
        with self.client.post(path, data=self._body(model, stream), headers=self.headers, name=name,
                              catch_response=True) as r:
            judge(r, stream)

    @task(6)
    def chat(self) -> None:
        self._post("/providers/openai/v1/chat/completions", "chat (providers route)", False)

    @task(3)
    def chat_stream(self) -> None:
        self._post("/providers/openai/v1/chat/completions", "chat stream SSE (providers route)", True)

    @task(1)
    def chat_forward(self) -> None:
        self._post(FORWARD, "chat (/v1/forward route)", False)
