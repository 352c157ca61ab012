"""A bug on the request path: the client gets the usual JSON error and never a traceback, which stays in the
server's log. (That the request is still logged once and its reservation released is a row of
test_request_rules.py, on every route.)"""
from __future__ import annotations

import asyncio
from typing import Any

from .fake_provider import FakeProvider
from .inprocess import InProcess

BODY = {"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


class BrokenUpstream:
    async def request(self, *args: Any) -> None:
        raise KeyError("a bug, not an upstream failure")

    async def close(self) -> None:
        pass


def test_the_traceback_goes_to_the_log_not_to_the_client(tmp_path, caplog):
    async def scenario():
        async with FakeProvider() as fake, InProcess(tmp_path, fake.url) as gw:
            gw.svc.upstream = BrokenUpstream()
            return await gw.call("POST", "/providers/openai/v1/chat/completions", body=BODY, key=gw.secret_key)

    answer = asyncio.run(scenario())
    assert answer.status == 500 and answer.json() == {"error": {"type": "gateway_error",
                                                                "message": "internal gateway error"}}
    assert "a bug, not an upstream failure" in caplog.text and "Traceback" in caplog.text
    assert "a bug" not in answer.body.decode()
