"""A bug on the request path: the client gets the usual JSON error, the request is still logged once and its
reservation released, and the traceback stays in the server's log."""
from __future__ import annotations

import asyncio
import json

from edge_proxy.app import Gateway
from edge_proxy.settings import Settings

BODY = b'{"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}'


class Scope:
    method = "POST"
    path = "/providers/openai/v1/chat/completions"
    query_string = ""

    def __init__(self, key: str) -> None:
        self.headers = {"authorization": f"Bearer {key}", "content-length": str(len(BODY))}


class Proto:
    answer = None

    async def __call__(self):
        return BODY

    def response_bytes(self, status, headers, body):
        if self.answer is None:
            self.answer = (status, dict(headers), body)


class BrokenUpstream:
    async def request(self, *args):
        raise KeyError("a bug, not an upstream failure")

    async def close(self):
        pass


def test_a_bug_after_the_reservation_is_a_json_500_and_still_logged_once(tmp_path, caplog):
    async def scenario():
        gw = Gateway(Settings.load(env={"EDGE_PROXY_DATABASE_URL": f"sqlite:///{tmp_path}/g.db",
                                        "EDGE_PROXY_SPILL_DIR": str(tmp_path / "spill"),
                                        "EDGE_PROXY_PROVIDER_KEY_OPENAI": "k"}))
        await gw.start()
        _, key = await gw.store.create_merchant("m", 10**12)
        gw.upstream = BrokenUpstream()
        proto = Proto()
        await gw.__rsgi__(Scope(key), proto)
        queued = list(gw.log_queue._queue)
        in_flight = dict(gw.billing.inflight)
        await gw.stop()  # drains the queue: the writer logs the record and releases the reservation
        return proto.answer, queued, in_flight, dict(gw.billing.inflight)

    (status, headers, body), queued, in_flight, after = asyncio.run(scenario())
    assert status == 500 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["type"] == "gateway_error" and "Traceback" not in body.decode()
    assert [(r.outcome, r.error_reason, r.status_code) for r in queued] == [("error", "internal_error", 500)]
    assert queued[0].reserved_nanos > 0 and queued[0].request_id in in_flight and after == {}
    assert "a bug, not an upstream failure" in caplog.text
