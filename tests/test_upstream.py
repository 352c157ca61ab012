"""Tests for edge_proxy.upstream against a scripted raw TCP server on 127.0.0.1.

Every case is a pair: a server *script* that reads requests and writes exact bytes (so it can
split heads, send 1xx, close or reset at chosen moments, stall past timeouts), and a client
coroutine that drives an UpstreamPool and asserts.  The table runs under both the stock
asyncio loop and uvloop.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from dataclasses import dataclass, field

import pytest
import uvloop

from edge_proxy.upstream import pool as upstream
from edge_proxy.upstream import (UpstreamBodyError, UpstreamBodyTooLarge, UpstreamConnectError,
                                 UpstreamHeadTooLarge, UpstreamPool, UpstreamResponse, UpstreamTimeout)

from .tls_certs import self_signed

HOST = "127.0.0.1"
CASE_DEADLINE = 5.0


@dataclass
class Request:
    conn: int
    head: bytes
    body: bytes


class Peer:
    """One accepted connection, with the few moves a script needs."""

    def __init__(self, srv: Server, n: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.srv, self.n, self.reader, self.writer = srv, n, reader, writer

    async def request(self) -> Request | None:
        """Read one request (head + Content-Length body); None when the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await self.reader.readexactly(length) if length else b""
        req = Request(self.n, head, body)
        self.srv.requests.append(req)
        return req

    async def send(self, *parts: bytes, pause: float = 0.0) -> None:
        for i, part in enumerate(parts):
            if i and pause:
                await asyncio.sleep(pause)
            self.writer.write(part)
            await self.writer.drain()

    async def client_closed(self) -> bool:
        """Wait (bounded) for the client to close this connection."""
        try:
            return await asyncio.wait_for(self.reader.read(1), 2.0) == b""
        except (TimeoutError, ConnectionError):
            return False

    def close(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


@dataclass
class Server:
    script: object
    tls: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    closed_by_client: list[int] = field(default_factory=list)
    event: asyncio.Event | None = None
    port: int = 0
    open_now: int = 0    # connections open at this moment, and the most ever open at once
    most_open: int = 0

    async def start(self) -> Server:
        self.event = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._server = await asyncio.start_server(self._handle, HOST, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = self.connections
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        peer = Peer(self, n, reader, writer)
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self.script(peer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass   # a stalling script is cancelled by stop(); that is how it ends
        finally:
            self.open_now -= 1
            self._tasks.discard(task)
            writer.close()

    async def stop(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def answer(*responses: bytes):
    """Script: read requests and send the canned responses in order (counted across connections),
    then wait for the client to close the connection and record that it did."""
    async def script(peer: Peer) -> None:
        srv = peer.srv
        while len(srv.requests) < len(responses):
            if await peer.request() is None:
                srv.closed_by_client.append(peer.n)
                return
            await peer.send(responses[len(srv.requests) - 1])
        if await peer.client_closed():
            srv.closed_by_client.append(peer.n)
    return script


def ok(body: bytes = b"hello", *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + b"".join(extra) + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def get(pool: UpstreamPool, srv: Server, method: str = "GET", body: bytes = b"",
              target: str = "/", headers: list | None = None) -> UpstreamResponse:
    return await pool.request(method, "http", HOST, srv.port, target, headers or [], body)


CASES = []


def case(sentence: str, script, **pool_kwargs):
    def register(client):
        CASES.append(pytest.param(script, client, pool_kwargs, id=sentence))
        return client
    return register


# --- bodies ---------------------------------------------------------------------------------

@case("a content-length body is read whole and Host carries the port",
      answer(ok(b"hello", b"X-Thing: A\r\n")))
async def _(pool, srv):
    r = await get(pool, srv, target="/v1/x?a=b", headers=[(b"x-api-key", b"k")])
    assert (r.status, r.content_length) == (200, 5)
    assert (b"x-thing", b"A") in r.headers and (b"content-length", b"5") in r.headers
    with pytest.raises(StopIteration) as done:   # the body came with the head: read() never suspends
        r.read().send(None)
    assert done.value.value == b"hello"
    head = srv.requests[0].head
    assert head.startswith(b"GET /v1/x?a=b HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % srv.port)
    assert b"x-api-key: k\r\n" in head and b"content-length" not in head.lower()


@case("a POST sends its body with Content-Length, and an empty POST sends zero",
      answer(ok(), ok()))
async def _(pool, srv):
    await (await get(pool, srv, "POST", b'{"model":"x"}', headers=[(b"content-type", b"application/json")])).read()
    await (await get(pool, srv, "POST")).read()
    first, second = srv.requests
    assert b"Content-Length: 13\r\n" in first.head and first.body == b'{"model":"x"}'
    assert b"Content-Length: 0\r\n" in second.head


@case("a chunked body with extensions and trailers is de-chunked and the connection reused",
      answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", ok(b"again")))
async def _(pool, srv):
    r = await get(pool, srv)
    assert r.content_length is None
    assert await r.read() == b"hello world"
    assert all(name != b"x-trailer" for name, _ in r.headers)
    assert await (await get(pool, srv)).read() == b"again"
    assert srv.connections == 1


async def _close_delimited(peer: Peer) -> None:
    await peer.request()
    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one,", b" part two", pause=0.02)
    peer.close()


@case("a body without length or chunking is read until the server closes", _close_delimited)
async def _(pool, srv):
    r = await get(pool, srv)
    assert r.content_length is None
    assert await r.read() == b"part one, part two"
    assert pool.reused == 0 and not any(route.idle for route in pool._routes.values())


async def _two_chunks(peer: Peer) -> None:
    await peer.request()
    await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
    await asyncio.wait_for(peer.srv.event.wait(), 2)
    await peer.send(b"6\r\nsecond\r\n0\r\n\r\n")


@case("chunks are yielded as they arrive, before the server sends the next", _two_chunks)
async def _(pool, srv):
    r = await get(pool, srv)
    seen = []
    async for chunk in r:
        seen.append(chunk)
        srv.event.set()   # only now does the server write the second chunk
    assert seen == [b"first", b"second"]


# --- keep-alive, expiry, closing ------------------------------------------------------------

@case("two sequential requests reuse one keep-alive connection", answer(ok(), ok()))
async def _(pool, srv):
    for _ in range(2):
        assert await (await get(pool, srv)).read() == b"hello"
    assert srv.connections == 1 and (pool.opened, pool.reused) == (1, 1)


@case("a connection idle longer than the idle ttl is closed and not reused",
      answer(ok(), ok()), idle_ttl=0.05)
async def _(pool, srv):
    await (await get(pool, srv)).read()
    await asyncio.sleep(0.2)
    assert srv.closed_by_client == [0]   # the reaper closed it without any new request
    await (await get(pool, srv)).read()
    assert srv.connections == 2 and pool.reused == 0


@case("a response with Connection: close is not reused",
      answer(ok(b"hello", b"Connection: close\r\n"), ok()))
async def _(pool, srv):
    await (await get(pool, srv)).read()
    await (await get(pool, srv)).read()
    assert srv.connections == 2 and pool.reused == 0


async def _one_per_connection(peer: Peer) -> None:
    await peer.request()
    await peer.send(ok())
    peer.close()


@case("a pooled connection the server closed while idle is dropped, not used", _one_per_connection)
async def _(pool, srv):
    await (await get(pool, srv, "POST", b"x")).read()
    await asyncio.sleep(0.05)   # the FIN reaches the idle connection
    await (await get(pool, srv, "POST", b"x")).read()
    assert srv.connections == 2 and pool.reused == 0


@case("no more than max_idle_per_host connections are kept idle", answer(ok(), ok()),
      max_idle_per_host=1)
async def _(pool, srv):
    responses = await asyncio.gather(get(pool, srv), get(pool, srv))
    assert [await r.read() for r in responses] == [b"hello", b"hello"]
    await asyncio.sleep(0.05)
    assert srv.connections == 2 and len(srv.closed_by_client) == 1
    assert sum(len(route.idle) for route in pool._routes.values()) == 1


# --- the stale keep-alive race --------------------------------------------------------------

def _stale_after_first(then_response: bytes = ok(b"retried"), first_close=None):
    """Connection 0 answers once, then takes the next request and closes without a byte."""
    async def script(peer: Peer) -> None:
        if peer.n == 0:
            await peer.request()
            await peer.send(ok())
            await peer.request()
            (first_close or Peer.close)(peer)
        else:
            await peer.request()
            await peer.send(then_response)
            await peer.request()
    return script


@case("a stale pooled connection is retried once for GET", _stale_after_first())
async def _(pool, srv):
    await (await get(pool, srv)).read()
    assert await (await get(pool, srv)).read() == b"retried"
    assert srv.connections == 2 and [r.conn for r in srv.requests] == [0, 0, 1]


@case("a stale pooled connection reset by the server is retried once for POST",
      _stale_after_first(first_close=Peer.reset))
async def _(pool, srv):
    await (await get(pool, srv, "POST", b"one")).read()
    assert await (await get(pool, srv, "POST", b"two")).read() == b"retried"
    assert [(r.conn, r.body) for r in srv.requests] == [(0, b"one"), (0, b"two"), (1, b"two")]


async def _close_first_request(peer: Peer) -> None:
    await peer.request()
    peer.close()


@case("a POST on a fresh connection closed before any byte is not retried", _close_first_request)
async def _(pool, srv):
    with pytest.raises(UpstreamConnectError):
        await get(pool, srv, "POST", b"x")
    assert srv.connections == 1


@case("a GET whose retry also fails is retried only once", _close_first_request)
async def _(pool, srv):
    with pytest.raises(UpstreamConnectError):
        await get(pool, srv)
    assert srv.connections == 2


async def _partial_head_on_second(peer: Peer) -> None:
    await peer.request()
    await peer.send(ok())
    await peer.request()
    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Le")
    peer.close()


@case("a request is not retried once response bytes have arrived", _partial_head_on_second)
async def _(pool, srv):
    await (await get(pool, srv)).read()
    with pytest.raises(UpstreamConnectError):
        await get(pool, srv)
    assert srv.connections == 1


async def _slow_close_on_second(peer: Peer) -> None:
    await peer.request()
    await peer.send(ok())
    await peer.request()
    await asyncio.sleep(0.2)   # "working on it", then the connection dies without a byte
    peer.close()


@case("a POST on a reused connection that dies after the stale window is not retried",
      _slow_close_on_second)
async def _(pool, srv):
    saved, upstream._STALE_WINDOW = upstream._STALE_WINDOW, 0.05
    try:
        await (await get(pool, srv, "POST", b"one")).read()
        with pytest.raises(UpstreamConnectError):
            await get(pool, srv, "POST", b"two")
    finally:
        upstream._STALE_WINDOW = saved
    assert srv.connections == 1


# --- response shapes ------------------------------------------------------------------------

@case("100 Continue and 103 Early Hints are skipped for the final response",
      answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
             + ok(b"final", b"X-Final: 1\r\n"), ok()))
async def _(pool, srv):
    r = await get(pool, srv, "POST", b"{}")
    assert r.status == 200 and (b"x-final", b"1") in r.headers
    assert all(name != b"link" for name, _ in r.headers)
    assert await r.read() == b"final"
    assert await (await get(pool, srv)).read() == b"hello" and srv.connections == 1


async def _dribble(peer: Peer) -> None:
    for data in (ok(b"dribbled", b"X-Long-Header-Name: some value here\r\n"),
                 b"HTTP/1.1 200 OK\r\nX-Long-Header-Name: some value here\r\nTransfer-Encoding: chunked\r\n"
                 b"\r\n3;x=y\r\ndri\r\n5\r\nbbled\r\n0\r\n\r\n"):
        await peer.request()
        await peer.send(*(data[i:i + 3] for i in range(0, len(data), 3)), pause=0.001)


@case("a head and a length or chunked body split across many small writes parse correctly", _dribble)
async def _(pool, srv):
    for _ in range(2):
        r = await get(pool, srv)
        assert (b"x-long-header-name", b"some value here") in r.headers
        assert await r.read() == b"dribbled"
    assert srv.connections == 1


@case("a HEAD response has no body and its connection is reused",
      answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
             b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", ok()))
async def _(pool, srv):
    r = await get(pool, srv, "HEAD")
    assert r.content_length == 1234 and await r.read() == b""
    assert await (await get(pool, srv, "HEAD")).read() == b""
    assert await (await get(pool, srv)).read() == b"hello"
    assert srv.connections == 1


@case("204 and 304 responses have no body and keep the connection",
      answer(b"HTTP/1.1 204 No Content\r\n\r\n",
             b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", ok()))
async def _(pool, srv):
    r = await get(pool, srv)
    assert r.status == 204 and await r.read() == b""
    r = await get(pool, srv)
    assert r.status == 304 and await r.read() == b""
    assert await (await get(pool, srv)).read() == b"hello"
    assert srv.connections == 1


@case("a malformed status line is a connect error",
      answer(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n"))
async def _(pool, srv):
    with pytest.raises(UpstreamConnectError):
        await get(pool, srv)


@case("an unrequested 101 Switching Protocols is a connect error",
      answer(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"))
async def _(pool, srv):
    with pytest.raises(UpstreamConnectError):
        await get(pool, srv)


@case("a status under 100 is a connect error, not an interim response to wait past",
      answer(b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 099 Odd\r\n\r\n"), read_timeout=1.0)
async def _(pool, srv):
    for _ in range(2):  # 000, then 099 on a new connection
        with pytest.raises(UpstreamConnectError):
            await get(pool, srv)


# --- failures -------------------------------------------------------------------------------

async def _never(peer: Peer) -> None:
    pass


@case("a refused connection raises UpstreamConnectError", _never)
async def _(pool, srv):
    with socket.socket() as s:
        s.bind((HOST, 0))
        free_port = s.getsockname()[1]
    with pytest.raises(UpstreamConnectError):
        await pool.request("GET", "http", HOST, free_port, "/", [], b"")


async def _reset_on_request(peer: Peer) -> None:
    await peer.request()
    peer.reset()


@case("a reset before the response head raises UpstreamConnectError", _reset_on_request)
async def _(pool, srv):
    with pytest.raises(UpstreamConnectError):
        await get(pool, srv, "POST", b"x")


async def _stall_head(peer: Peer) -> None:
    await peer.request()
    await asyncio.sleep(2)


@case("no response head within the read timeout raises UpstreamTimeout", _stall_head, read_timeout=0.15)
async def _(pool, srv):
    with pytest.raises(UpstreamTimeout):
        await get(pool, srv)
    assert srv.connections == 1   # a timeout is not retried


async def _stall_body(peer: Peer) -> None:
    await peer.request()
    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    await asyncio.sleep(2)


@case("a gap between body chunks longer than the read timeout raises UpstreamTimeout",
      _stall_body, read_timeout=0.15)
async def _(pool, srv):
    r = await get(pool, srv)
    chunks = aiter(r)
    assert await anext(chunks) == b"abc"
    with pytest.raises(UpstreamTimeout):
        await anext(chunks)


async def _drip_body(peer: Peer) -> None:
    await peer.request()
    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
    for _ in range(40):  # a byte well within each read timeout: 2 s for the whole body
        await asyncio.sleep(0.05)
        await peer.send(b"x")


@case("a body read whole that drips past max_body_seconds raises UpstreamTimeout and is not pooled",
      _drip_body, read_timeout=5, max_body_seconds=0.3)
async def _(pool, srv):
    r = await get(pool, srv)
    with pytest.raises(UpstreamTimeout):
        await r.read()
    assert not any(route.idle for route in pool._routes.values())   # an aborted body is never pooled


@case("the same dripping body is read whole when no body deadline is set", _drip_body, read_timeout=5)
async def _(pool, srv):
    r = await get(pool, srv)
    assert await r.read() == b"x" * 40


async def _die_mid_body(peer: Peer) -> None:
    await peer.request()
    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd")
    peer.close()


@case("the connection dying mid-body raises UpstreamBodyError after the data that came",
      _die_mid_body)
async def _(pool, srv):
    r = await get(pool, srv)
    chunks = aiter(r)
    assert await anext(chunks) == b"abcd"
    with pytest.raises(UpstreamBodyError):
        await anext(chunks)
    r2 = await get(pool, srv)   # the same script again on a new connection, via read()
    with pytest.raises(UpstreamBodyError):
        await r2.read()


async def _long_body(peer: Peer) -> None:
    await peer.request()
    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    if await peer.client_closed():
        peer.srv.closed_by_client.append(peer.n)


@case("abort() closes the connection and it is not pooled", _long_body)
async def _(pool, srv):
    r = await get(pool, srv)
    assert await anext(aiter(r)) == b"0123456789"
    r.abort()
    with pytest.raises(UpstreamBodyError):
        await r.read()
    await asyncio.sleep(0.05)
    assert srv.closed_by_client == [0]
    assert not any(route.idle for route in pool._routes.values())


async def _stall_until_closed(peer: Peer) -> None:
    await peer.request()
    if await peer.client_closed():
        peer.srv.closed_by_client.append(peer.n)


@case("a task cancelled while waiting for the head closes its connection", _stall_until_closed)
async def _(pool, srv):
    task = asyncio.create_task(get(pool, srv))
    while not srv.requests:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert srv.closed_by_client == [0]
    assert not any(route.idle for route in pool._routes.values())


async def _big_body(peer: Peer) -> None:
    await peer.request()
    size = 6 << 20
    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
    block = b"x" * (64 << 10)
    for _ in range(size // len(block)):
        peer.writer.write(block)
        await peer.writer.drain()


@case("a slow consumer makes the client pause reading past about 1 MiB", _big_body)
async def _(pool, srv):
    r = await get(pool, srv)
    await asyncio.sleep(0.2)   # the server keeps writing; nobody consumes
    assert r._conn is not None and r._conn._paused
    assert r._buffered < (1 << 20) + (512 << 10)
    assert len(await r.read()) == 6 << 20


@case("a CR or LF inside a header value is refused before anything is sent", _never)
async def _(pool, srv):
    with pytest.raises(ValueError):
        await get(pool, srv, headers=[(b"x-evil", b"a\r\nHost: other")])
    assert pool.opened == 0


# --- bounds: head size and count, head wait, connections per host, body length -------------

async def until(condition, within: float = 3.0) -> None:
    """Wait until condition() holds (polling), failing the case if it never does."""
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def _huge_header(size: int, pieces: int = 1):
    async def script(peer: Peer) -> None:
        await peer.request()
        value = b"v" * size
        step = max(1, len(value) // pieces)
        await peer.send(b"HTTP/1.1 200 OK\r\nX-Big: ", *(value[i:i + step] for i in range(0, len(value), step)))
        await peer.send(b"\r\nContent-Length: 0\r\n\r\n")
        await peer.client_closed()
    return script


@case("a head over max_header_bytes sent in one piece is refused and its connection closed",
      _huge_header(20_000), max_header_bytes=8192)
async def _(pool, srv):
    with pytest.raises(UpstreamHeadTooLarge):
        await get(pool, srv)
    await until(lambda: srv.open_now == 0)   # the client closed it (the server's script may not finish first)


@case("a head over max_header_bytes dribbled in small reads is cut off before it ends",
      _huge_header(200_000, pieces=400), max_header_bytes=8192)
async def _(pool, srv):
    with pytest.raises(UpstreamHeadTooLarge):
        await get(pool, srv)
    await until(lambda: srv.open_now == 0)   # the client closed it (the server's script may not finish first)


async def _endless_headers(peer: Peer) -> None:
    await peer.request()
    await peer.send(b"HTTP/1.1 200 OK\r\n")
    for i in range(100_000):   # a head that never ends: the client must stop it, not wait for it
        peer.writer.write(b"X-Filler-%d: %s\r\n" % (i, b"a" * 50))
        await peer.writer.drain()


@case("a head that never ends is stopped at the size limit", _endless_headers, max_header_bytes=16384,
      max_headers=100_000)
async def _(pool, srv):
    with pytest.raises(UpstreamHeadTooLarge):
        await get(pool, srv)


@case("a head with more headers than max_headers is refused",
      answer(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(60))
             + b"Content-Length: 0\r\n\r\n"), max_headers=50)
async def _(pool, srv):
    with pytest.raises(UpstreamHeadTooLarge):
        await get(pool, srv)


@case("a head just under both limits is accepted",
      answer(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(48)) + ok()[17:]),
      max_headers=50, max_header_bytes=8192)
async def _(pool, srv):
    r = await get(pool, srv)
    assert await r.read() == b"hello" and len(r.headers) == 49


@case("the head timeout bounds the wait for the head even when the read timeout is long", _stall_head,
      head_timeout=0.15, read_timeout=30)
async def _(pool, srv):
    with pytest.raises(UpstreamTimeout, match="head"):
        await get(pool, srv)
    assert srv.connections == 1


async def _slow_body(peer: Peer) -> None:
    await peer.request()
    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
    await asyncio.sleep(0.4)   # longer than the head timeout, shorter than the read timeout
    await peer.send(b"def")


@case("a short head timeout does not apply to the gaps between body chunks", _slow_body,
      head_timeout=0.1, read_timeout=3)
async def _(pool, srv):
    r = await get(pool, srv)
    assert await r.read() == b"abcdef"


def _answer_when_released(n: int):
    """Each connection answers its requests only once the test sets srv.event."""
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.wait_for(peer.srv.event.wait(), 3)
            await peer.send(ok())
    return script


@case("past max_connections_per_host a request queues and then reuses the connection that frees",
      _answer_when_released(2), max_connections_per_host=1)
async def _(pool, srv):
    tasks = [asyncio.create_task(get(pool, srv)) for _ in range(3)]
    while not srv.requests:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)   # time for the queued ones to (wrongly) open connections of their own
    assert srv.connections == 1 and len(srv.requests) == 1
    srv.event.set()
    assert [await (await t).read() for t in tasks] == [b"hello"] * 3
    assert srv.connections == 1 and srv.most_open == 1 and len(srv.requests) == 3


@case("a request queued past max_connections_per_host fails with a timeout after the connect timeout",
      _stall_until_closed, max_connections_per_host=1, connect_timeout=0.2, read_timeout=30)
async def _(pool, srv):
    first = asyncio.create_task(get(pool, srv))
    while not srv.requests:
        await asyncio.sleep(0.005)
    with pytest.raises(UpstreamTimeout, match="busy"):
        await get(pool, srv)
    assert srv.connections == 1
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


async def _close_after_answer(peer: Peer) -> None:
    await peer.request()
    await asyncio.wait_for(peer.srv.event.wait(), 3)
    await peer.send(ok(b"hello", b"Connection: close\r\n"))


@case("a connection closed past the cap frees its slot for a queued request",
      _close_after_answer, max_connections_per_host=1)
async def _(pool, srv):
    tasks = [asyncio.create_task(get(pool, srv)) for _ in range(2)]
    while not srv.requests:
        await asyncio.sleep(0.005)
    srv.event.set()
    assert [await (await t).read() for t in tasks] == [b"hello"] * 2
    assert srv.connections == 2 and srv.most_open == 1


@case("a body over max_response_bytes fails and closes the connection", _big_body,
      max_response_bytes=1 << 20)
async def _(pool, srv):
    r = await get(pool, srv)
    with pytest.raises(UpstreamBodyTooLarge):
        async for _ in r:
            pass
    assert not any(route.idle for route in pool._routes.values())


@case("a body of exactly max_response_bytes is read whole", answer(ok(b"x" * 1000)), max_response_bytes=1000)
async def _(pool, srv):
    assert len(await (await get(pool, srv)).read()) == 1000


@case("connect_to connects to that address while Host carries the name", answer(ok(), ok()))
async def _(pool, srv):
    r = await pool.request("GET", "http", "hooks.example.test", srv.port, "/x", [], b"", connect_to=HOST)
    assert await r.read() == b"hello"
    assert b"Host: hooks.example.test:%d\r\n" % srv.port in srv.requests[0].head


@case("a pool with max_routes forgets routes that have no connection in use", answer(*[ok()] * 4),
      max_routes=2)
async def _(pool, srv):
    for name in ("a.test", "b.test", "c.test", "d.test"):
        r = await pool.request("GET", "http", name, srv.port, "/", [], b"", connect_to=HOST)
        assert await r.read() == b"hello"
    assert len(pool._routes) <= 2
    await asyncio.sleep(0.05)
    assert len(srv.closed_by_client) >= 2   # the forgotten routes' idle connections were closed


LOOPS = [pytest.param(None, id="asyncio"), pytest.param(uvloop.new_event_loop, id="uvloop")]


def run(coro_fn, loop_factory):
    async def bounded():
        await asyncio.wait_for(coro_fn(), CASE_DEADLINE)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(bounded())


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("script, client, pool_kwargs", CASES)
def test_upstream(script, client, pool_kwargs, loop_factory):
    async def scenario():
        srv = await Server(script).start()
        pool = UpstreamPool(**{"connect_timeout": 1.0, "read_timeout": 2.0, **pool_kwargs})
        try:
            await client(pool, srv)
        finally:
            await pool.close()
            await srv.stop()
    run(scenario, loop_factory)


# --- TLS ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"), "127.0.0.1", "IP:127.0.0.1")


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_https_upstream_is_verified_and_reused(tls_pair, loop_factory):
    server_ctx, client_ctx = tls_pair

    async def scenario():
        srv = await Server(answer(ok(b"secure"), ok(b"again")), tls=server_ctx).start()
        pool = UpstreamPool(read_timeout=2.0, ssl_context=client_ctx)
        try:
            for expected in (b"secure", b"again"):
                r = await pool.request("GET", "https", HOST, srv.port, "/", [], b"")
                assert await r.read() == expected
            assert srv.connections == 1 and pool.reused == 1
            assert b"Host: 127.0.0.1:%d\r\n" % srv.port in srv.requests[0].head
            asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: None)  # server-side handshake noise
            strict = UpstreamPool(read_timeout=2.0)   # system trust store: self-signed is refused
            with pytest.raises(UpstreamConnectError):
                await strict.request("GET", "https", HOST, srv.port, "/", [], b"")
            await strict.close()
        finally:
            await pool.close()
            await srv.stop()
    run(scenario, loop_factory)


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("server_close", [Peer.close, Peer.reset], ids=["close_notify", "reset"])
def test_stale_pooled_https_connection_is_retried_for_post(tls_pair, server_close, loop_factory):
    server_ctx, client_ctx = tls_pair

    async def scenario():
        srv = await Server(_stale_after_first(first_close=server_close), tls=server_ctx).start()
        pool = UpstreamPool(read_timeout=2.0, ssl_context=client_ctx)
        try:
            for body, expected in ((b"one", b"hello"), (b"two", b"retried")):
                r = await pool.request("POST", "https", HOST, srv.port, "/", [], body)
                assert await r.read() == expected
            assert [(r.conn, r.body) for r in srv.requests] == [(0, b"one"), (0, b"two"), (1, b"two")]
        finally:
            await pool.close()
            await srv.stop()
    run(scenario, loop_factory)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_tls_handshake_that_never_answers_is_a_connect_timeout(loop_factory):
    async def scenario():
        srv = await Server(_stall_head).start()   # plain TCP: never sends a ServerHello
        pool = UpstreamPool(connect_timeout=0.15)
        try:
            with pytest.raises(UpstreamTimeout):   # not the connection error the server's close at 2 s would be
                await pool.request("GET", "https", HOST, srv.port, "/", [], b"")
        finally:
            await pool.close()
            await srv.stop()
    run(scenario, loop_factory)


@pytest.fixture(scope="module")
def named_tls_pair(tmp_path_factory):
    """A certificate for the name hooks.example.test only (no IP), to show SNI and verification use the name."""
    return self_signed(tmp_path_factory.mktemp("named-tls"), "hooks.example.test", "DNS:hooks.example.test")


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_https_to_a_checked_address_verifies_the_name_and_sends_it_as_sni(named_tls_pair, loop_factory):
    server_ctx, client_ctx = named_tls_pair
    seen_sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)

    async def scenario():
        srv = await Server(answer(ok(b"named")), tls=server_ctx).start()
        pool = UpstreamPool(read_timeout=2.0, ssl_context=client_ctx)
        try:
            r = await pool.request("GET", "https", "hooks.example.test", srv.port, "/", [], b"", connect_to=HOST)
            assert await r.read() == b"named"
            assert seen_sni == ["hooks.example.test"]
            assert b"Host: hooks.example.test:%d\r\n" % srv.port in srv.requests[0].head
            asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: None)  # server-side handshake noise
            with pytest.raises(UpstreamConnectError):   # the same address under another name fails verification
                await pool.request("GET", "https", "other.example.test", srv.port, "/", [], b"", connect_to=HOST)
        finally:
            await pool.close()
            await srv.stop()
    run(scenario, loop_factory)
