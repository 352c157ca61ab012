"""Lean HTTP/1.1 client for the gateway's upstream (provider) hop.

aiohttp's client costs ~0.30 ms per hop; this one is a bare asyncio Protocol with its own
keep-alive pool and httptools (llhttp) doing all parsing, which roughly halves that.  It
speaks exactly what a proxy hop needs: one request at a time per connection (no pipelining),
content-length / chunked / close-delimited response bodies, 1xx interim responses skipped,
keep-alive reuse with an idle TTL, TLS for https, connect and read timeouts, backpressure
towards a slow consumer, and one safe retry for the stale keep-alive race.

Ownership: a response owns its connection until the whole body has been *received*; then the
connection goes back to the pool (or is closed) at once, and whatever the caller has not
consumed yet stays buffered in the response.  The caller must either consume the body or
call ``abort()``.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import AsyncIterator

import httptools

__all__ = ["UpstreamError", "UpstreamConnectError", "UpstreamTimeout", "UpstreamBodyError",
           "UpstreamPool", "UpstreamResponse"]


class UpstreamError(Exception):
    """Base of every failure of the upstream hop."""


class UpstreamConnectError(UpstreamError):
    """Could not connect, or the connection failed before a complete response head (502)."""


class UpstreamTimeout(UpstreamError):
    """Connect timeout, or read timeout waiting for the head or between body chunks (504)."""


class UpstreamBodyError(UpstreamError):
    """The connection died (or sent garbage) after the head had been returned."""


class _StaleConnection(UpstreamConnectError):
    """EOF/reset before any response byte; the pool decides whether a retry is safe."""

    def __init__(self, msg: str, *, unsent: bool, reused: bool, elapsed: float) -> None:
        super().__init__(msg)
        self.unsent, self.reused, self.elapsed = unsent, reused, elapsed


class _Garbage(Exception):
    """Raised from a parser callback to stop llhttp on bytes nobody asked for."""


_IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))
_SENDS_LENGTH = frozenset(("POST", "PUT", "PATCH"))  # Content-Length: 0 even when empty
_DEFAULT_PORT = {"http": 80, "https": 443}
_METHODS = {m: m.encode() for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HIGH_WATER = 1 << 20   # pause reading past ~1 MiB of unconsumed body; resume once drained
# A reused connection that dies this soon after the write, before any response byte, is the
# classic race with the server closing it while idle: it never saw the request.  Later than
# that, the server may have been working on it, so a POST is not replayed.
_STALE_WINDOW = 1.0
_V11_HOST = b" HTTP/1.1\r\nHost: "
_SEP, _CRLF = b": ", b"\r\n"
_NO_BODY_STATUS = frozenset((204, 304))
# What a peer closing the socket looks like (TLS adds its own EOF flavours).
_RESETS = (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class HeaderBlock(bytes):
    """Request header lines already encoded as `name: value\r\n`, and how many there are (so the CR/LF
    injection check below still holds)."""

    lines: int

    def __new__(cls, data: bytes, lines: int) -> HeaderBlock:
        block = super().__new__(cls, data)
        block.lines = lines
        return block


def _encode_request(method: str, target: str, host_header: bytes,
                    headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    m = _METHODS.get(method)
    if m is None:
        if not _TOKEN.fullmatch(method):
            raise ValueError(f"invalid method {method!r}")
        m = method.encode()
    if not target or " " in target:
        raise ValueError(f"invalid request-target {target!r}")
    parts = [m, b" ", target.encode(), _V11_HOST, host_header, _CRLF]
    append = parts.append
    if isinstance(headers, HeaderBlock):  # already "name: value\r\n" lines, encoded once by the caller
        append(headers)
        lines = headers.lines + 3
    else:
        for name, value in headers:
            append(name)
            append(_SEP)
            append(value)
            append(_CRLF)
        lines = len(headers) + 3
    if body or method in _SENDS_LENGTH:
        append(b"Content-Length: %d\r\n\r\n" % len(body))
        lines += 1
    else:
        append(_CRLF)
    head = b"".join(parts)
    # One C-speed scan instead of checking every value: a stray CR or LF anywhere in the
    # target or a header would let a caller inject headers or a second request.
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        raise ValueError("CR/LF inside the request-target or a header")
    return head + body if body else head


class UpstreamResponse:
    """The final (non-1xx) response; the body streams from ``async for`` or ``read()``."""

    __slots__ = ("status", "headers", "content_length", "_conn", "_chunks", "_buffered",
                 "_done", "_exc", "_close_delimited")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], content_length: int | None,
                 conn: _Conn | None, close_delimited: bool) -> None:
        self.status, self.headers, self.content_length = status, headers, content_length
        self._conn = conn   # None once the body is complete, failed or aborted
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._done = False
        self._exc: UpstreamError | None = None
        self._close_delimited = close_delimited

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    def _take(self) -> bytes:
        # Hand over everything buffered at once: fewer downstream writes when the consumer
        # lags, and exactly "one chunk" when it keeps up.
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        conn = self._conn
        if conn is not None and conn._paused:
            conn._resume()
        return data

    async def __anext__(self) -> bytes:
        while True:
            if self._chunks:
                return self._take()
            if self._exc is not None:
                raise self._exc
            if self._done:
                raise StopAsyncIteration
            conn = self._conn
            try:
                await conn._wait(conn._pool._read_timeout)
            except BaseException:   # cancelled: nobody will drain this connection any more
                self.abort()
                raise

    async def read(self) -> bytes:
        if self._done and self._exc is None:   # small body that came with the head: no await
            return self._take() if self._chunks else b""
        parts = [chunk async for chunk in self]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def abort(self) -> None:
        """Give up on the body: close the connection (never pooled) and drop buffered data."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn._resp = None
            conn._busy = False
            conn._abort()
            conn._wake(None)
        if not self._done and self._exc is None:
            self._exc = UpstreamBodyError("response aborted")
        self._chunks.clear()
        self._buffered = 0


class _Conn(asyncio.Protocol):
    """One upstream connection: llhttp callbacks feed the response owned by the current exchange."""

    __slots__ = ("_pool", "_route", "_loop", "_transport", "_parser", "_headers", "_resp",
                 "_waiter", "_exc", "_busy", "_is_head", "_interim", "_got_bytes", "_closed",
                 "_paused", "_requests", "_idle_since", "_sent_at")

    def __init__(self, pool: UpstreamPool, route: _Route, loop: asyncio.AbstractEventLoop) -> None:
        self._pool, self._route, self._loop = pool, route, loop
        self._transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] | None = None   # head being parsed
        self._resp: UpstreamResponse | None = None   # response whose body is still arriving
        self._waiter: asyncio.Future | None = None
        self._exc: UpstreamError | None = None   # why the current exchange failed before its head
        self._busy = self._is_head = self._interim = self._got_bytes = self._closed = self._paused = False
        self._requests = 0
        self._idle_since = self._sent_at = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:   # the request goes out in one write; don't let Nagle hold it
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:   # also _Garbage
            self._abort()
            self._lost("parse", exc)

    def eof_received(self) -> bool:
        self._closed = True   # never hand this one out again; connection_lost follows
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        kind = "eof" if exc is None else "reset" if isinstance(exc, _RESETS) else "error"
        self._lost(kind, exc)

    # -- httptools callbacks -----------------------------------------------------------
    def on_message_begin(self) -> None:
        if not self._busy:
            raise _Garbage("bytes from the server while no request was outstanding")
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        if headers is not None:   # None while in a chunked body: trailers are dropped
            headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if not self._busy:
            raise _Garbage("response head while no request was outstanding")
        status = self._parser.get_status_code()
        if status < 200:   # 100 Continue, 103 Early Hints...: the final response follows
            self._interim = True
            return
        headers, self._headers = self._headers, None
        length = coding = None
        for name, value in headers:
            if name == b"content-length":
                length = int(value)   # llhttp has already rejected non-digits and duplicates
            elif name == b"transfer-encoding":
                coding = value
        chunked = False
        if coding is not None:   # it overrides Content-Length; chunked only as the last coding
            length = None
            chunked = coding.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        resp = self._resp = UpstreamResponse(status, headers, length, self, length is None and not chunked
                                             and not self._is_head and status not in _NO_BODY_STATUS)
        self._wake(resp)
        if self._is_head:
            # httptools cannot tell llhttp "this answers a HEAD", so llhttp would wait for a
            # body that never comes.  The message ends here; a fresh parser takes the next one,
            # and anything the old parser still reports arrives with _busy False (ignored/garbage).
            keep_alive = self._head_keep_alive(headers)
            self._parser = httptools.HttpResponseParser(self)
            self._finish(keep_alive)

    def on_body(self, data: bytes) -> None:
        resp = self._resp
        if resp is None:
            raise _Garbage("body bytes while no response was outstanding")
        resp._chunks.append(data)
        resp._buffered += len(data)
        if resp._buffered > _HIGH_WATER and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        self._wake(None)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        elif self._busy:   # not busy: the abandoned parser of a HEAD exchange finishing
            self._finish(self._parser.should_keep_alive())

    # -- internals ---------------------------------------------------------------------
    def _head_keep_alive(self, headers: list[tuple[bytes, bytes]]) -> bool:
        tokens = b",".join([v for n, v in headers if n == b"connection"]).lower()
        if self._parser.get_http_version() == "1.1":
            return b"close" not in tokens
        return b"keep-alive" in tokens

    def _finish(self, keep_alive: bool) -> None:
        resp = self._resp
        self._resp = None
        self._busy = False
        resp._conn = None
        resp._done = True
        self._wake(None)
        if self._paused:
            self._resume()
        if keep_alive and not self._closed:
            self._pool._release(self)
        else:
            self._close()

    def _lost(self, kind: str, cause: BaseException | None) -> None:
        """The connection is gone (or given up on): fail or finish the current exchange."""
        self._closed = True
        if not self._busy:   # idle in the pool: it is skipped there lazily
            return
        self._busy = False
        resp = self._resp
        if resp is None:   # still waiting for the head
            if kind == "timeout":
                self._exc = UpstreamTimeout("no response head within the read timeout")
            elif not self._got_bytes and kind in ("eof", "reset"):
                self._exc = _StaleConnection(
                    f"connection closed before any response byte ({cause or 'EOF'})", unsent=False,
                    reused=self._requests > 1, elapsed=self._loop.time() - self._sent_at)
            else:
                self._exc = UpstreamConnectError(f"connection failed before the response head: "
                                                 f"{cause or 'EOF'}")
        else:
            self._resp = None
            resp._conn = None
            if kind == "eof" and resp._close_delimited:   # EOF is how this body ends
                resp._done = True
            elif kind == "timeout":
                resp._exc = UpstreamTimeout("no body data within the read timeout")
            else:
                resp._exc = UpstreamBodyError(f"connection failed mid-body: {cause or 'EOF'}")
        self._wake(None)

    def _wake(self, value: UpstreamResponse | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

    async def _wait(self, timeout: float) -> UpstreamResponse | None:
        loop = self._loop
        fut = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, self._on_timeout, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            if self._waiter is fut:   # by now another exchange may own this connection
                self._waiter = None

    def _on_timeout(self, fut: asyncio.Future) -> None:
        if not fut.done() and self._waiter is fut:
            self._abort()   # the stream position is unknown from here on
            self._lost("timeout", None)

    def _resume(self) -> None:
        self._paused = False
        if not self._closed:
            self._transport.resume_reading()

    def _close(self) -> None:
        self._closed = True
        self._transport.close()

    def _abort(self) -> None:
        self._closed = True
        self._transport.abort()

    async def exchange(self, data: bytes, is_head: bool, timeout: float) -> UpstreamResponse:
        self._requests += 1
        my_turn = self._requests
        self._busy, self._is_head, self._got_bytes, self._exc = True, is_head, False, None
        try:
            self._transport.write(data)
        except Exception as exc:   # uvloop raises on a handle that closed under us: nothing sent
            self._busy = False
            self._abort()
            raise _StaleConnection(f"write failed: {exc}", unsent=True, reused=my_turn > 1,
                                   elapsed=0.0) from exc
        self._sent_at = self._loop.time()
        if self._exc is None:
            try:
                resp = await self._wait(timeout)
            except BaseException:   # cancelled mid-exchange: the connection can't be reused
                if self._busy and self._requests == my_turn:
                    self._resp = None
                    self._busy = False
                    self._abort()
                raise
            if resp is not None:
                return resp
        raise self._exc or UpstreamConnectError("connection lost before the response head")


class _Route:
    """Per (scheme, host, port): pre-encoded Host header and the idle stack (oldest first)."""

    __slots__ = ("host", "port", "tls", "host_header", "idle")

    def __init__(self, scheme: str, host: str, port: int) -> None:
        if scheme not in _DEFAULT_PORT:
            raise ValueError(f"unsupported scheme {scheme!r}")
        self.host = host.strip("[]")
        self.port = port
        self.tls = scheme == "https"
        name = f"[{self.host}]" if ":" in self.host else self.host   # IPv6 literal
        if port != _DEFAULT_PORT[scheme]:
            name = f"{name}:{port}"
        try:
            self.host_header = name.encode("ascii")
        except UnicodeEncodeError:   # internationalised name: send its A-label form
            self.host_header = name.encode("idna")
        self.idle: list[_Conn] = []


class UpstreamPool:
    """Keep-alive pool of upstream connections; one exchange per connection at a time.

    Retry rule (``request``): a request is retried at most ONCE, always on a freshly opened
    connection, and only when the failure is EOF or a reset (never a timeout, never a parse
    error) with zero response bytes received, and one of:
      * the write itself failed, so nothing reached the server; or
      * the method is idempotent (GET, HEAD, OPTIONS, PUT, DELETE); or
      * the connection was a reused pooled one and it died within ``_STALE_WINDOW`` seconds
        of the write - the classic stale keep-alive race, where the server closed the idle
        connection as we wrote, so it never processed the request (this covers POST).
    A POST on a fresh connection, or any request once a response byte has arrived, is never
    replayed: the server may have acted on it.
    """

    __slots__ = ("_connect_timeout", "_read_timeout", "_max_idle", "_idle_ttl", "_routes",
                 "_ssl", "_reaper", "_closed", "reused", "opened")

    def __init__(self, *, connect_timeout: float = 10.0, read_timeout: float = 600.0,
                 max_idle_per_host: int = 256, idle_ttl: float = 60.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._max_idle, self._idle_ttl = max_idle_per_host, idle_ttl
        self._routes: dict[tuple[str, str, int], _Route] = {}
        self._ssl = ssl_context   # created lazily: create_default_context() costs milliseconds
        self._reaper: asyncio.TimerHandle | None = None
        self._closed = False
        self.reused = 0   # requests sent on a pooled connection
        self.opened = 0   # connections opened

    async def request(self, method: str, scheme: str, host: str, port: int, target: str,
                      headers: list[tuple[bytes, bytes]] | HeaderBlock, body: bytes) -> UpstreamResponse:
        """Send one request and return once the final response head has arrived.

        target is the request-target (path + '?' + query).  headers are sent as given, plus
        Host and Content-Length, which this client adds; callers never pass Host,
        Content-Length, Transfer-Encoding or Connection.  See the class docstring for retries.
        """
        if self._closed:
            raise RuntimeError("UpstreamPool is closed")
        key = (scheme, host, port)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = _Route(scheme, host, port)
        data = _encode_request(method, target, route.host_header, headers, body)
        loop = asyncio.get_running_loop()
        conn = self._acquire(route, loop.time())
        retried = False
        while True:
            if conn is None:
                conn = await self._connect(route, loop)
            else:
                self.reused += 1
            try:
                return await conn.exchange(data, method == "HEAD", self._read_timeout)
            except _StaleConnection as stale:
                if retried or not (stale.unsent or method in _IDEMPOTENT
                                   or (stale.reused and stale.elapsed <= _STALE_WINDOW)):
                    raise
                retried = True
                conn = None

    async def close(self) -> None:
        """Close every idle connection; busy ones are closed when their exchange ends."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for route in self._routes.values():
            for conn in route.idle:
                if not conn._closed:
                    conn._close()
            route.idle.clear()
        await asyncio.sleep(0)   # let the transports run connection_lost

    async def _connect(self, route: _Route, loop: asyncio.AbstractEventLoop) -> _Conn:
        tls = None
        if route.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: _Conn(self, route, loop), route.host, route.port,
                ssl=tls, server_hostname=route.host if tls else None), self._connect_timeout)
        except TimeoutError:   # before OSError: TimeoutError is one of its subclasses
            raise UpstreamTimeout(f"connect to {route.host}:{route.port} timed out") from None
        except OSError as exc:   # refused, unreachable, DNS, TLS handshake/verification
            raise UpstreamConnectError(f"cannot connect to {route.host}:{route.port}: {exc}") from exc
        self.opened += 1
        return conn

    def _acquire(self, route: _Route, now: float) -> _Conn | None:
        idle = route.idle
        while idle:
            conn = idle.pop()   # newest first: the least likely to have been closed by the server
            if conn._closed:
                continue
            if now - conn._idle_since > self._idle_ttl:
                conn._close()
                for older in idle:   # everything below it has been idle even longer
                    older._close()
                idle.clear()
                return None
            return conn
        return None

    def _release(self, conn: _Conn) -> None:
        if self._closed or self._max_idle <= 0:
            conn._close()
            return
        idle = conn._route.idle
        if len(idle) >= self._max_idle:
            idle[:] = [c for c in idle if not c._closed]
            if len(idle) >= self._max_idle:
                idle.pop(0)._close()
        loop = conn._loop
        conn._idle_since = loop.time()
        idle.append(conn)
        if self._reaper is None:
            self._reaper = loop.call_later(self._idle_ttl, self._reap, loop)

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close connections idle longer than the TTL, so sockets don't linger without traffic."""
        self._reaper = None
        deadline = loop.time() - self._idle_ttl
        oldest = None
        for route in self._routes.values():
            for conn in route.idle:
                if not conn._closed and conn._idle_since <= deadline:
                    conn._close()
            route.idle[:] = [c for c in route.idle if not c._closed]
            if route.idle and (oldest is None or route.idle[0]._idle_since < oldest):
                oldest = route.idle[0]._idle_since   # stacks are in idle-since order
        if oldest is not None:
            self._reaper = loop.call_at(oldest + self._idle_ttl + 0.01, self._reap, loop)
