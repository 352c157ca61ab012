"""The one guarded client for URLs a tenant chose (webhooks, and anything like them later).

Each POST: check the URL against the operator's policy (policy.check_url), resolve its host now, refuse when
any address it resolves to is not public (unless the operator allow-listed that host and port), then connect
to the very address that was checked (so DNS rebinding cannot move it) while Host, TLS SNI and certificate
verification use the host name. No redirect is followed (a 3xx is a failed delivery); the answer's head is
bounded (16 KiB, 64 headers) and its body is read and discarded up to 64 KiB (past that the delivery fails);
every delivery has one total deadline; at most `concurrency` run at once per worker; connections come from the
client's own small pool, never the providers' (whose route table must not grow per tenant host), and names are
resolved on its own threads, never the loop's default executor.
"""
from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import UnsafeURL
from ..upstream import UpstreamBodyTooLarge, UpstreamError, UpstreamPool
from .addresses import address_of, refusal
from .policy import Destination, OutboundPolicy, check_url

Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_RESPONSE_BYTES = 64 << 10
_MAX_HEAD_BYTES = 16 << 10
_MAX_HEADERS = 64


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one delivery went: `ok` for a 2xx; otherwise `error` says why (for the delivery log)."""

    ok: bool
    status: int | None = None
    error: str | None = None


async def system_resolver(host: str, port: int, executor: Executor | None = None) -> list[str]:
    """The host's addresses, as the system resolver gives them at this moment (on `executor`'s threads, or the
    loop's default executor)."""
    infos = await asyncio.get_running_loop().run_in_executor(
        executor, lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP))
    return [str(info[4][0]) for info in infos]


async def checked_address(dest: Destination, resolve: Resolver) -> str:
    """The address to connect to for a checked destination: resolved now, and refused (UnsafeURL) when any
    address the name has is not public, unless the operator allow-listed this host and port."""
    if dest.literal is not None:
        return str(dest.literal)
    try:
        addresses = await resolve(dest.host, dest.port)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"{dest.host} does not resolve ({exc})") from None
    if not addresses:
        raise UnsafeURL(f"{dest.host} does not resolve")
    if not dest.allow_listed:
        for text in addresses:
            why = refusal(address_of(text))
            if why:
                raise UnsafeURL(f"{dest.host} resolves to {text}, which is not a public address ({why})")
    return addresses[0]


class GuardedClient:
    def __init__(self, policy: OutboundPolicy, *, deadline: float = 10.0, concurrency: int = 8,
                 max_response_bytes: int = MAX_RESPONSE_BYTES, resolver: Resolver | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if concurrency < 1 or deadline <= 0:
            raise ValueError("concurrency must be at least 1 and the deadline positive")
        self.policy = policy
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        # the system resolver holds a thread until the name server gives up, past any deadline: a tenant's name
        # that never resolves ties up these threads only, never the loop's default executor that the rest of the
        # gateway shares (the request journal's fsyncs, the log queue's reads)
        self._dns = ThreadPoolExecutor(concurrency, thread_name_prefix="outbound-dns")
        self._resolve = resolver or functools.partial(system_resolver, executor=self._dns)
        self._slots = asyncio.Semaphore(concurrency)
        self._pool = UpstreamPool(connect_timeout=deadline, read_timeout=deadline, head_timeout=deadline,
                                  max_idle_per_host=2, idle_ttl=30.0, ssl_context=ssl_context,
                                  max_header_bytes=_MAX_HEAD_BYTES, max_headers=_MAX_HEADERS,
                                  max_connections_per_host=concurrency, max_response_bytes=max_response_bytes,
                                  max_routes=64)
        self.in_flight = 0
        self.most_in_flight = 0   # the most deliveries ever in flight at once (a test's witness of the bound)

    async def post(self, url: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Outcome:
        """POST `body` to `url` within the deadline; never raises for anything the receiver or DNS does."""
        async with self._slots:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                async with asyncio.timeout(self.deadline):
                    return await self._post(url, headers, body)
            except TimeoutError:
                return Outcome(False, None, f"no complete answer within {self.deadline:g}s")
            finally:
                self.in_flight -= 1

    async def _post(self, url: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Outcome:
        try:
            dest = check_url(url, self.policy)   # again at delivery: the policy may have changed since
            address = await checked_address(dest, self._resolve)
        except UnsafeURL as exc:
            return Outcome(False, None, f"refused: {exc.reason}")
        status = None
        try:
            response = await self._pool.request("POST", dest.scheme, dest.host, dest.port, dest.target, headers,
                                                 body, connect_to=address)
            status = response.status
            async for _ in response:   # read and discard: only the status matters
                pass
        except UpstreamBodyTooLarge:
            return Outcome(False, status, f"the answer's body is over {self.max_response_bytes} bytes")
        except (UpstreamError, ValueError) as exc:
            return Outcome(False, status, f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return Outcome(True, status)
        if 300 <= status < 400:
            return Outcome(False, status, f"HTTP {status}: redirects are not followed")
        return Outcome(False, status, f"HTTP {status}")

    async def close(self) -> None:
        await self._pool.close()
        self._dns.shutdown(wait=False, cancel_futures=True)
