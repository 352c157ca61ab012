"""The RSGI application: routes, and the state a worker holds from start-up to shutdown.

Granian calls `__rsgi_init__` when a worker starts (open the store, the upstream pool, background tasks) and
`__rsgi_del__` when it stops (drain and close). Nothing here runs at import.
"""
from __future__ import annotations

import asyncio
import logging

import msgspec

from . import proxy
from .auth import Authenticator
from .errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound
from .providers import Catalogue
from .providers.catalogue import decode_forward_url
from .settings import Settings
from .store import Store, open_store
from .upstream import UpstreamPool

log = logging.getLogger("edge_proxy")
_JSON = [("content-type", "application/json")]
_HEALTHY = msgspec.json.encode({"status": "ok"})


class Metrics:
    __slots__ = ("requests", "errors")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalogue = Catalogue.load(settings.upstreams, settings.provider_keys)
        self.store: Store = open_store(settings.database_url)
        self.auth = Authenticator(self.store, settings.principal_cache_size, settings.principal_cache_ttl)
        self.request_ids = proxy.RequestIds()
        self.metrics = Metrics()
        self.upstream: UpstreamPool | None = None

    # -- lifecycle (Granian RSGI hooks) --------------------------------------------------------------------
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.start())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.stop())

    async def start(self) -> None:
        await self.store.open()
        self.upstream = UpstreamPool(connect_timeout=self.settings.connect_timeout,
                                     read_timeout=self.settings.read_timeout)

    async def stop(self) -> None:
        if self.upstream is not None:
            await self.upstream.close()
        await self.store.close()

    # -- routing -------------------------------------------------------------------------------------------
    async def __rsgi__(self, scope, proto) -> None:
        self.metrics.requests += 1
        path = scope.path
        try:
            if path == "/v1/forward" or path.startswith("/v1/forward/"):
                await proxy.forward(self, scope, proto, lambda: self._forward_target(scope.query_string, path[11:]))
            elif path.startswith("/providers/"):
                name, _, rest = path[len("/providers/"):].partition("/")
                await proxy.forward(self, scope, proto,
                                    lambda: self.catalogue.resolve_provider_path(name, "/" + rest, scope.query_string))
            elif path == "/healthz":
                if scope.method not in ("GET", "HEAD"):
                    raise MethodNotAllowed()
                proto.response_bytes(200, _JSON, _HEALTHY)
            else:
                raise NotFound(f"no route for {path}")
        except GatewayError as exc:
            self.metrics.errors += 1
            proxy.send_error(proto, exc)

    def _forward_target(self, query: str, suffix: str):
        """`/v1/forward?u=<url>[&more]`: `u` percent-encoded or raw; the other parameters go upstream.

        A path after `/v1/forward/` is appended to `u`'s path, which is what HTTP clients that treat
        `<gateway>/v1/forward?u=<base>` as a base URL send."""
        url, rest = None, []
        for part in query.split("&") if query else ():
            if url is None and part.startswith("u="):
                url = decode_forward_url(part[2:])
            elif part:
                rest.append(part)
        if not url:
            raise InvalidRequest("missing the `u` query parameter: /v1/forward?u=<provider URL>")
        if suffix.strip("/"):
            head, sep, tail = url.partition("?")
            url = head.rstrip("/") + "/" + suffix.lstrip("/") + sep + tail
        return self.catalogue.resolve_url(url, "&".join(rest))


def create_app() -> Gateway:
    """Granian's factory: each worker builds its own app from the environment."""
    return Gateway(Settings.load())
