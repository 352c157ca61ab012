"""Lean HTTP/1.1 client for the gateway's upstream (provider) hop.

aiohttp's client costs ~0.30 ms per hop; this one is a bare asyncio Protocol with its own
keep-alive pool and httptools (llhttp) doing all parsing, which roughly halves that.  It
speaks exactly what a proxy hop needs: one request at a time per connection (no pipelining),
content-length / chunked / close-delimited response bodies, 1xx interim responses skipped,
keep-alive reuse with an idle TTL, TLS for https, connect and read timeouts, backpressure
towards a slow consumer, and one safe retry for the stale keep-alive race.

Bounds, so a misbehaving server cannot make the gateway hold unbounded memory or sockets: the
response head's size and header count, the wait for the head (apart from the body read timeout),
the connections open to one host (past the cap a request queues for a free one, up to the
connect timeout, then fails as a timeout), and optionally a response body's total length.

Ownership: a response owns its connection until the whole body has been *received*; then the
connection goes back to the pool (or is closed) at once, and whatever the caller has not
consumed yet stays buffered in the response.  The caller must either consume the body or
call ``abort()``.
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl

from .connection import UpstreamResponse, Connection
from .errors import (UpstreamBodyError, UpstreamBodyTooLarge, UpstreamConnectError, UpstreamError,
                              UpstreamHeadTooLarge, UpstreamTimeout, StaleConnection)

__all__ = ["UpstreamError", "UpstreamConnectError", "UpstreamTimeout", "UpstreamBodyError",
           "UpstreamHeadTooLarge", "UpstreamBodyTooLarge", "UpstreamPool", "UpstreamResponse"]

_IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))
_SENDS_LENGTH = frozenset(("POST", "PUT", "PATCH"))  # Content-Length: 0 even when empty
_DEFAULT_PORT = {"http": 80, "https": 443}
_METHODS = {m: m.encode() for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A reused connection that dies this soon after the write, before any response byte, is the
# classic race with the server closing it while idle: it never saw the request.  Later than
# that, the server may have been working on it, so a POST is not replayed.
_STALE_WINDOW = 1.0
_V11_HOST = b" HTTP/1.1\r\nHost: "
_SEP, _CRLF = b": ", b"\r\n"
DEFAULT_MAX_HEADER_BYTES = 64 << 10   # a provider's head is 1-3 KiB; nginx's default large buffers hold 32 KiB
DEFAULT_MAX_HEADERS = 128
DEFAULT_MAX_CONNECTIONS_PER_HOST = 512


class HeaderBlock(bytes):
    """Request header lines already encoded as `name: value\r\n`, and how many there are (so the CR/LF
    injection check below still holds)."""

    lines: int

    def __new__(cls, data: bytes, lines: int) -> HeaderBlock:
        block = super().__new__(cls, data)
        block.lines = lines
        return block


def _encode_request(method: str, target: str, host_header: bytes,
                    headers: list[tuple[bytes, bytes]] | HeaderBlock, body: bytes) -> bytes:
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

class _Route:
    """Per (scheme, host, port, address): pre-encoded Host header, the idle stack (oldest first), and how many
    connections are open (idle, busy or connecting) with the requests queued for one past the cap."""

    __slots__ = ("key", "host", "port", "tls", "host_header", "idle", "address", "active", "waiters")

    def __init__(self, scheme: str, host: str, port: int, address: str | None = None) -> None:
        if scheme not in _DEFAULT_PORT:
            raise ValueError(f"unsupported scheme {scheme!r}")
        self.key = (scheme, host, port, address)
        self.host = host.strip("[]")
        self.port = port
        self.tls = scheme == "https"
        # where to connect: the host itself, or an address the caller already resolved and checked (the Host
        # header, SNI and certificate verification still use the host)
        self.address = address or self.host
        name = f"[{self.host}]" if ":" in self.host else self.host   # IPv6 literal
        if port != _DEFAULT_PORT[scheme]:
            name = f"{name}:{port}"
        try:
            self.host_header = name.encode("ascii")
        except UnicodeEncodeError:   # internationalised name: send its A-label form
            self.host_header = name.encode("idna")
        self.idle: list[Connection] = []
        self.active = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()


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

    Limits: ``head_timeout`` bounds the wait from the write to the whole response head (default:
    ``read_timeout``), ``read_timeout`` each wait for body data, ``max_body_seconds`` (None: unbounded) the whole
    of ``read()`` (a body read whole; a body iterated chunk by chunk is its consumer's to bound); a head over
    ``max_header_bytes`` or ``max_headers`` fails with UpstreamHeadTooLarge; at most ``max_connections_per_host``
    connections are open per route (None: no cap), and a request past it queues for up to
    ``connect_timeout``, then fails with UpstreamTimeout; a body past ``max_response_bytes`` (None:
    unbounded) fails with UpstreamBodyTooLarge.  ``max_routes`` (None: unbounded) drops routes that
    have no open connection once the table is that large, for pools whose hosts are not a fixed set.
    """

    __slots__ = ("_connect_timeout", "_read_timeout", "_head_timeout", "_max_idle", "_idle_ttl", "_routes",
                 "_ssl", "_reaper", "_closed", "reused", "opened", "_max_header_bytes", "_max_headers",
                 "_max_conns", "_max_response_bytes", "_max_routes", "_max_body_seconds")

    def __init__(self, *, connect_timeout: float = 10.0, read_timeout: float = 600.0,
                 max_idle_per_host: int = 256, idle_ttl: float = 60.0,
                 ssl_context: ssl.SSLContext | None = None, head_timeout: float | None = None,
                 max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES, max_headers: int = DEFAULT_MAX_HEADERS,
                 max_connections_per_host: int | None = DEFAULT_MAX_CONNECTIONS_PER_HOST,
                 max_response_bytes: int | None = None, max_routes: int | None = None,
                 max_body_seconds: float | None = None) -> None:
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._head_timeout = read_timeout if head_timeout is None else head_timeout
        self._max_idle, self._idle_ttl = max_idle_per_host, idle_ttl
        self._max_header_bytes, self._max_headers = max_header_bytes, max_headers
        self._max_conns = max_connections_per_host or None
        self._max_response_bytes = max_response_bytes or None
        self._max_routes = max_routes
        self._max_body_seconds = max_body_seconds
        self._routes: dict[tuple[str, str, int, str | None], _Route] = {}
        self._ssl = ssl_context   # created lazily: create_default_context() costs milliseconds
        self._reaper: asyncio.TimerHandle | None = None
        self._closed = False
        self.reused = 0   # requests sent on a pooled connection
        self.opened = 0   # connections opened

    async def request(self, method: str, scheme: str, host: str, port: int, target: str,
                      headers: list[tuple[bytes, bytes]] | HeaderBlock, body: bytes,
                      connect_to: str | None = None) -> UpstreamResponse:
        """Send one request and return once the final response head has arrived.

        target is the request-target (path + '?' + query).  headers are sent as given, plus
        Host and Content-Length, which this client adds; callers never pass Host,
        Content-Length, Transfer-Encoding or Connection.  See the class docstring for retries.
        connect_to: an IP address to connect to instead of resolving host (which still names
        the Host header, the TLS SNI and the certificate to verify).
        """
        if self._closed:
            raise RuntimeError("UpstreamPool is closed")
        key = (scheme, host, port, connect_to)
        route = self._routes.get(key)
        if route is None:
            if self._max_routes is not None and len(self._routes) >= self._max_routes:
                self._drop_unused_routes()
            route = self._routes[key] = _Route(scheme, host, port, connect_to)
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
                return await conn.exchange(data, method == "HEAD", self._head_timeout)
            except StaleConnection as stale:
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

    async def _connect(self, route: _Route, loop: asyncio.AbstractEventLoop) -> Connection:
        if self._max_conns is not None and route.active >= self._max_conns:
            idle = await self._wait_for_slot(route, loop)
            if idle is not None:
                self.reused += 1
                return idle
        tls = None
        if route.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        route.active += 1
        made: list[Connection] = []

        def protocol() -> Connection:
            made.append(Connection(self, route, loop))
            return made[0]
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                protocol, route.address, route.port,
                ssl=tls, server_hostname=route.host if tls else None), self._connect_timeout)
        except BaseException as exc:
            if made and made[0]._holds_slot:   # connected, then gave up: connection_lost frees the slot
                made[0]._abort()
            else:
                self._slot_freed(route)
            if isinstance(exc, TimeoutError):   # before OSError: TimeoutError is one of its subclasses
                raise UpstreamTimeout(f"connect to {route.host}:{route.port} timed out") from None
            if isinstance(exc, OSError):   # refused, unreachable, DNS, TLS handshake/verification
                raise UpstreamConnectError(f"cannot connect to {route.host}:{route.port}: {exc}") from exc
            raise
        self.opened += 1
        return conn

    async def _wait_for_slot(self, route: _Route, loop: asyncio.AbstractEventLoop) -> Connection | None:
        """Past the per-host cap: wait (up to the connect timeout) for an idle connection or a free slot."""
        deadline = loop.time() + self._connect_timeout
        cap = self._max_conns or 0
        while True:
            conn = self._acquire(route, loop.time())
            if conn is not None or route.active < cap:
                return conn
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UpstreamTimeout(f"all {cap} connections to {route.host}:{route.port} "
                                      f"stayed busy for {self._connect_timeout:g}s")
            waiter = loop.create_future()
            route.waiters.append(waiter)
            timer = loop.call_later(remaining, _set_none, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                if not waiter.done():
                    waiter.cancel()
                try:
                    route.waiters.remove(waiter)
                except ValueError:   # already taken off by _wake_one
                    pass

    def _slot_freed(self, route: _Route) -> None:
        """A connection of this route closed (or never opened): one queued request may now connect."""
        route.active -= 1
        _wake_one(route.waiters)

    def _drop_unused_routes(self) -> None:
        """Forget the routes that have no connection open (and close those merely idle), so a pool whose
        hosts come from tenants keeps a bounded table."""
        for key, route in list(self._routes.items()):
            if route.active <= len(route.idle) and not route.waiters:   # nothing busy or connecting
                for conn in route.idle:
                    conn._close()
                route.idle.clear()
                del self._routes[key]

    def _acquire(self, route: _Route, now: float) -> Connection | None:
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

    def _release(self, conn: Connection) -> None:
        route = conn._route
        if self._closed or self._max_idle <= 0 or (self._max_routes is not None
                                                   and self._routes.get(route.key) is not route):
            conn._close()   # closed pool, or a route dropped from the table while this was busy
            return
        idle = route.idle
        if len(idle) >= self._max_idle:
            idle[:] = [c for c in idle if not c._closed]
            if len(idle) >= self._max_idle:
                idle.pop(0)._close()
        loop = conn._loop
        conn._idle_since = loop.time()
        idle.append(conn)
        if route.waiters:
            _wake_one(route.waiters)
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


def _set_none(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _wake_one(waiters: collections.deque[asyncio.Future[None]]) -> None:
    """Wake the oldest request still waiting for a connection of a route (cancelled ones are skipped)."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return
