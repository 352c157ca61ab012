"""Graceful shutdown: stop accepting, let streams in flight finish, drain the log queue."""
from __future__ import annotations

import signal
import sqlite3
import threading
import time

import httpx2 as httpx

from .gateway_process import GatewayProcess, base_env


def test_a_stream_in_flight_finishes_after_sigterm_and_is_logged(fake, tmp_path):
    fake.slow_seconds = 0.3
    gw = GatewayProcess(base_env(tmp_path / "g.db", fake.url, {"EDGE_PROXY_SHUTDOWN_GRACE": "20"})).start(tmp_path)
    try:
        body = {"model": "fake-slow-stream", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.stream("POST", gw.url + "/providers/openai/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {gw.secret_key}"}, timeout=20) as r:
            request_id = r.headers["x-lava-request-id"]
            chunks = r.iter_raw()
            first = next(chunks)
            threading.Thread(target=gw.proc.send_signal, args=(signal.SIGTERM,)).start()
            time.sleep(0.2)
            refused = True
            try:
                httpx.get(gw.url + "/healthz", timeout=1)
                refused = False
            except httpx.TransportError:
                pass
            rest = b"".join(chunks)
        assert refused, "a gateway that is shutting down accepts no new connections"
        assert (first + rest).rstrip().endswith(b"data: [DONE]")
        assert gw.proc.wait(20) == 0
        with sqlite3.connect(tmp_path / "g.db") as conn:
            row = conn.execute("SELECT outcome FROM requests WHERE request_id = ?", (request_id,)).fetchone()
        assert row == ("completed",)
    finally:
        fake.slow_seconds = 5
        gw.stop()
