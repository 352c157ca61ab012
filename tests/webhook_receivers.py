"""Loopback HTTP servers for the webhook tests: a canary that must never be reached, and a scriptable receiver.

Both run in the test's own event loop. The receiver parses just enough HTTP/1.1 (a head, a Content-Length body)
and answers with whatever `respond` returns, so a test can make it redirect, stall, send too much or fail.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Canary:
    """Counts every connection made to it (on 127.0.0.1, and on ::1 when the machine has IPv6 loopback)."""

    connections: int = 0
    port: int = 0
    port6: int | None = None
    _servers: list = field(default_factory=list)

    async def start(self) -> Canary:
        async def seen(reader, writer):
            self.connections += 1
            writer.close()
        server = await asyncio.start_server(seen, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._servers.append(server)
        if socket.has_ipv6:
            try:
                server6 = await asyncio.start_server(seen, "::1", 0)
            except OSError:
                server6 = None
            if server6 is not None:
                self.port6 = server6.sockets[0].getsockname()[1]
                self._servers.append(server6)
        return self

    async def stop(self) -> None:
        for server in self._servers:
            server.close()


Responder = Callable[[Request], Awaitable[bytes]]


def answer(status: int = 204, body: bytes = b"", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\n%sContent-Length: %d\r\n\r\n%s" % (status, extra, len(body), body)


async def no_content(request: Request) -> bytes:
    return answer(204)


@dataclass
class Receiver:
    """A webhook endpoint: records every request; `respond` makes each answer (204 by default)."""

    respond: Responder = no_content
    requests: list[Request] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0   # the most requests being answered at once
    port: int = 0

    async def start(self) -> Receiver:
        self._tasks: set[asyncio.Task] = set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/lava?src=test"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, target, headers, body)
                self.requests.append(request)
                self.open_now += 1
                self.most_open = max(self.most_open, self.open_now)
                try:
                    writer.write(await self.respond(request))
                    await writer.drain()
                finally:
                    self.open_now -= 1
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def stop(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class ThreadedReceiver:
    """A merchant's webhook endpoint on loopback for a gateway in another process: records deliveries and
    answers each attempt with the next of `statuses` (the last one repeats)."""

    def __init__(self, statuses: tuple[int, ...] = (204,)) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.deliveries: list[tuple[dict, bytes]] = []
        self.attempts = 0
        self.statuses = list(statuses)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                status = outer.statuses[min(outer.attempts, len(outer.statuses) - 1)]
                outer.attempts += 1
                if 200 <= status < 300:
                    outer.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hooks/lava"

    def wait(self, n: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < n:
            assert time.monotonic() < deadline, f"expected {n} deliveries, got {len(self.deliveries)}"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ThreadedCanary:
    """A loopback listener that counts connections, for a gateway in another process."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def stop(self) -> None:
        self.sock.close()
