"""One upstream connection (an asyncio Protocol with httptools parsing) and the response it delivers.

Part of edge_proxy.upstream, which holds the pool and is the public module; see its docstring for ownership and
retries. The pool's limits (head size, header count, body length) are enforced here, as the bytes arrive.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httptools

from .errors import (UpstreamBodyError, UpstreamBodyTooLarge, UpstreamConnectError,
                              UpstreamError, UpstreamHeadTooLarge, UpstreamTimeout, Garbage, OverLimit,
                              StaleConnection)

if TYPE_CHECKING:
    from .upstream import UpstreamPool, _Route

_HIGH_WATER = 1 << 20   # pause reading past ~1 MiB of unconsumed body; resume once drained
_NO_BODY_STATUS = frozenset((204, 304))
# What a peer closing the socket looks like (TLS adds its own EOF flavours).
_RESETS = (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class UpstreamResponse:
    """The final (non-1xx) response; the body streams from ``async for`` or ``read()``."""

    __slots__ = ("status", "headers", "content_length", "_conn", "_chunks", "_buffered",
                 "_done", "_exc", "_close_delimited", "_received")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], content_length: int | None,
                 conn: Connection | None, close_delimited: bool) -> None:
        self.status, self.headers, self.content_length = status, headers, content_length
        self._conn = conn   # None once the body is complete, failed or aborted
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._done = False
        self._exc: UpstreamError | None = None
        self._close_delimited = close_delimited
        self._received = 0   # body bytes so far, for the pool's optional length cap

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
            assert conn is not None  # a response that is not done still owns its connection
            try:
                await conn._wait(conn._pool._read_timeout)
            except BaseException:   # cancelled: nobody will drain this connection any more
                self.abort()
                raise

    async def read(self) -> bytes:
        """The whole body. Each wait for data is bounded by the read timeout, and the whole read by the pool's
        `max_body_seconds`, so a server that sends a byte within each read timeout cannot hold it for ever."""
        if self._done and self._exc is None:   # small body that came with the head: no await
            return self._take() if self._chunks else b""
        conn = self._conn
        try:
            async with asyncio.timeout(conn._pool._max_body_seconds if conn is not None else None):
                parts = [chunk async for chunk in self]   # a timeout here aborts the body (__anext__)
        except TimeoutError:
            raise UpstreamTimeout("the body did not complete within the body deadline") from None
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


class Connection(asyncio.Protocol):
    """One upstream connection: llhttp callbacks feed the response owned by the current exchange."""

    __slots__ = ("_pool", "_route", "_loop", "_transport", "_parser", "_headers", "_resp",
                 "_waiter", "_exc", "_busy", "_is_head", "_interim", "_got_bytes", "_closed",
                 "_paused", "_requests", "_idle_since", "_sent_at", "_head_bytes", "_holds_slot")

    def __init__(self, pool: UpstreamPool, route: _Route, loop: asyncio.AbstractEventLoop) -> None:
        self._pool, self._route, self._loop = pool, route, loop
        self._transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] | None = None   # head being parsed
        self._resp: UpstreamResponse | None = None   # response whose body is still arriving
        self._waiter: asyncio.Future[UpstreamResponse | None] | None = None
        self._exc: UpstreamError | None = None   # why the current exchange failed before its head
        self._busy = self._is_head = self._interim = self._got_bytes = self._closed = self._paused = False
        self._requests = 0
        self._idle_since = self._sent_at = 0.0
        self._head_bytes = 0   # bytes received while waiting for the current response head
        self._holds_slot = False   # counted in its route's open connections until connection_lost

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._holds_slot = True
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
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:   # also Garbage
            self._abort()
            cause = exc.__context__
            self._lost("limit" if isinstance(cause, OverLimit) else "parse", cause or exc)
            return
        if self._resp is None and self._busy:   # the head is still incomplete: bound what it may take
            self._head_bytes += len(data)
            if self._head_bytes > self._pool._max_header_bytes:
                self._abort()
                self._lost("limit", OverLimit(f"response head over {self._pool._max_header_bytes} bytes"))

    def eof_received(self) -> bool:
        self._closed = True   # never hand this one out again; connection_lost follows
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._holds_slot:
            self._holds_slot = False
            self._pool._slot_freed(self._route)
        kind = "eof" if exc is None else "reset" if isinstance(exc, _RESETS) else "error"
        self._lost(kind, exc)

    # -- httptools callbacks -----------------------------------------------------------
    def on_message_begin(self) -> None:
        if not self._busy:
            raise Garbage("bytes from the server while no request was outstanding")
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        if headers is not None:   # None while in a chunked body: trailers are dropped
            headers.append((name.lower(), value))
            if len(headers) > self._pool._max_headers:
                raise OverLimit(f"response head has over {self._pool._max_headers} headers")
            # a head that comes in one read is never counted by data_received: count its headers here
            self._head_bytes += len(name) + len(value)
            if self._head_bytes > self._pool._max_header_bytes:
                raise OverLimit(f"response head over {self._pool._max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        if not self._busy:
            raise Garbage("response head while no request was outstanding")
        status = self._parser.get_status_code()
        if status < 100:   # llhttp takes any three digits: waiting for a final response after one would hang
            raise Garbage(f"response status {status:03d} is not an HTTP status")
        if status < 200:   # 100 Continue, 103 Early Hints...: the final response follows
            self._interim = True
            return
        headers, self._headers = self._headers, None
        assert headers is not None  # on_message_begin started the list
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
            raise Garbage("body bytes while no response was outstanding")
        resp._chunks.append(data)
        resp._buffered += len(data)
        cap = self._pool._max_response_bytes
        if cap is not None:
            resp._received += len(data)
            if resp._received > cap:
                raise OverLimit(f"response body over {cap} bytes")
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
        assert resp is not None  # a message finishes only after its head made the response
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
                self._exc = UpstreamTimeout("no response head within the head timeout")
            elif kind == "limit":
                self._exc = UpstreamHeadTooLarge(str(cause))
            elif not self._got_bytes and kind in ("eof", "reset"):
                self._exc = StaleConnection(
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
            elif kind == "limit":
                resp._chunks.clear()   # what is over the cap is not handed to anyone
                resp._buffered = 0
                resp._exc = UpstreamBodyTooLarge(str(cause))
            else:
                resp._exc = UpstreamBodyError(f"connection failed mid-body: {cause or 'EOF'}")
        self._wake(None)

    def _wake(self, value: UpstreamResponse | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

    async def _wait(self, timeout: float) -> UpstreamResponse | None:
        loop = self._loop
        fut: asyncio.Future[UpstreamResponse | None] = loop.create_future()
        self._waiter = fut
        timer = loop.call_later(timeout, self._on_timeout, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            if self._waiter is fut:   # by now another exchange may own this connection
                self._waiter = None

    def _on_timeout(self, fut: asyncio.Future[UpstreamResponse | None]) -> None:
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
        self._head_bytes = 0
        try:
            self._transport.write(data)
        except Exception as exc:   # uvloop raises on a handle that closed under us: nothing sent
            self._busy = False
            self._abort()
            raise StaleConnection(f"write failed: {exc}", unsent=True, reused=my_turn > 1,
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
