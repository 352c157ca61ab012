"""The gateway in-process: a fake RSGI protocol in front of the real app, so request-path cases run as table rows
without starting a gateway process. The provider is the loopback fake (tests/fake_provider.py), the store a real
SQLite file (or PostgreSQL / Redis when a test sets their URLs): only Granian's socket is left out.

    async with InProcess(tmp_path, fake.url) as gw:
        answer = await gw.call("POST", "/v1/chat/completions", body={...}, key=gw.secret_key)
        records = await gw.drain()          # the log writer's batches, committed: records as the API reads them
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_proxy.app import Gateway
from edge_proxy.settings import Settings

from .gateway_process import base_env


class Headers(dict):
    """Granian's request headers as a handler sees them: lowercase names, `get`, `items`, `in`."""


class Scope:
    def __init__(self, method: str, path: str, query: str, headers: dict[str, str]) -> None:
        self.proto = "http"
        self.http_version = "1.1"
        self.scheme = "http"
        self.method = method
        self.path = path
        self.query_string = query
        self.headers = Headers({k.lower(): v for k, v in headers.items()})
        self.server = "127.0.0.1:8080"
        self.client = "127.0.0.1:50000"
        self.authority = None


@dataclass
class Answer:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    streamed: bool = False
    finished: bool = False

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)

    def json(self) -> Any:
        return json.loads(self.body)


class Transport:
    def __init__(self, answer: Answer, leave_after: int | None, left: asyncio.Event) -> None:
        self.answer, self.leave_after, self.left = answer, leave_after, left
        self.sent = 0

    async def send_bytes(self, data: bytes) -> None:
        from granian.rsgi import ProtocolClosed
        if self.left.is_set():
            raise ProtocolClosed()
        self.answer.body += data
        self.sent += 1
        if self.leave_after is not None and self.sent >= self.leave_after:
            self.left.set()

    async def send_str(self, data: str) -> None:
        await self.send_bytes(data.encode())


class Proto:
    """Granian's HTTPProtocol for one request. `leave_after=N` makes the client go away after N stream chunks."""

    def __init__(self, body: bytes, leave_after: int | None = None) -> None:
        self.body = body
        self.answer = Answer()
        self.left = asyncio.Event()
        self.leave_after = leave_after

    async def __call__(self) -> bytes:
        return self.body

    def __aiter__(self):
        async def chunks():
            if self.body:
                yield self.body
        return chunks()

    async def client_disconnect(self) -> None:
        await self.left.wait()

    def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        if self.answer.status:
            raise RuntimeError("a second response for one request")
        self.answer.status, self.answer.headers = status, list(headers)

    def response_empty(self, status: int, headers: list[tuple[str, str]]) -> None:
        self._start(status, headers)
        self.answer.finished = True

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._start(status, headers)
        self.answer.body, self.answer.finished = body, True

    def response_str(self, status: int, headers: list[tuple[str, str]], body: str) -> None:
        self.response_bytes(status, headers, body.encode())

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> Transport:
        self._start(status, headers)
        self.answer.streamed = True
        return Transport(self.answer, self.leave_after, self.left)


class InProcess:
    """A started gateway (its services, router and log writer) in this event loop."""

    def __init__(self, tmp: Path, fake_url: str | None, env: dict[str, str] | None = None,
                 balance: str = "100") -> None:
        # The log writer runs inline, on this loop: a writer process per case would add its start-up (~0.2 s) to
        # every row of the request-path tables; the gateway-process tests run the writer process.
        self.env = base_env(tmp / "edge-proxy.db", fake_url, {"EDGE_PROXY_LOG_FLUSH_SECONDS": "0.01",
                                                              "EDGE_PROXY_LOG_WRITER": "inline", **(env or {})})
        self.balance = balance
        self.app = Gateway(Settings.load(env=self.env))
        self.svc = self.app.svc
        self.secret_key = ""
        self.merchant_id = ""

    async def __aenter__(self) -> InProcess:
        await self.app.start()
        from edge_proxy.money import parse_usd
        merchant, self.secret_key = await self.svc.store.create_merchant("acme", parse_usd(self.balance, "balance"))
        self.merchant_id = merchant.merchant_id
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.app.stop()

    async def call(self, method: str, path: str, *, body: Any = None, key: str | None = None,
                   headers: dict[str, str] | None = None, leave_after: int | None = None) -> Answer:
        """One request through the router, as Granian would hand it over; the body may be bytes or JSON."""
        path, _, query = path.partition("?")
        data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        sent = dict(headers or {})
        if key is not None:
            sent["authorization"] = f"Bearer {key}"
        if data:
            sent.setdefault("content-type", "application/json")
            sent["content-length"] = str(len(data))
        proto = Proto(data, leave_after)
        await self.app.__rsgi__(Scope(method, path, query, sent), proto)
        return proto.answer

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until the log writer has written every queued record (priced, billed, logged)."""
        queue = self.svc.log_queue
        async with asyncio.timeout(timeout):
            while queue.depth:
                queue._wake.set()
                await asyncio.sleep(0.005)
