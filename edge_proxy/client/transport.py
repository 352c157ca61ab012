"""The HTTP layer under both clients: builds a request, sends it with httpx2, turns the answer into JSON or an error.

`SyncTransport.request()` answers the parsed JSON; `AsyncTransport.request()` answers an awaitable of it. The
resource classes return whatever their transport returns, which is how one resource class serves both clients.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx2 as httpx

from .errors import APIConnectionError, APIError, APITimeoutError, error_for_status

DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
USER_AGENT = "edge-proxy-python"

Query = Mapping[str, Any]


def path_segment(value: str) -> str:
    """An id as one path segment: `/`, `?` and `#` in it cannot change the route."""
    return quote(str(value), safe="")


@contextmanager
def mapped_errors(api_base: str) -> Iterator[None]:
    """httpx2's errors as ours, saying whether the gateway may have acted on the request: after a connect
    failure it was never sent (safe to send again); after that a credit or a proxied call may have happened."""
    try:
        yield
    except httpx.LocalProtocolError:  # h11 quotes the offending header value, which may be a key: never repeat it
        raise APIConnectionError("the request was not sent: a header value is not one HTTP allows (a newline, a "
                                 "control or non-ASCII character)") from None
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        cls = APIConnectionError if isinstance(exc, httpx.ConnectError) else APITimeoutError
        raise cls(f"could not reach the gateway at {api_base}; the request was not sent: {exc}") from exc
    except httpx.RequestError as exc:  # a read or write timeout, a broken answer, a body that does not decode
        cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
        raise cls(f"no whole answer from the gateway at {api_base} after the request was sent; it may have been "
                  f"acted on: {exc}") from exc


class _Transport:
    """What both transports share: the gateway address, the key, and the request and answer rules."""

    def __init__(self, secret_key: str, api_base: str) -> None:
        self.secret_key = secret_key
        self.api_base = api_base  # `<base>/v1/`

    def build(self, client: httpx.Client | httpx.AsyncClient, method: str, path: str, data: Any = None,
              query: Query | None = None, bearer: str | None = None,
              idempotency_key: str | None = None) -> httpx.Request:
        """A management call as the Node SDK's request() sends it: Bearer secret key, JSON body, query strings.

        `idempotency_key` is sent as `Idempotency-Key`, which makes a credit happen once however often it is sent."""
        params = {k: str(v).lower() if isinstance(v, bool) else str(v)
                  for k, v in (query or {}).items() if v is not None}
        headers = {"Authorization": f"Bearer {bearer or self.secret_key}", "Content-Type": "application/json",
                   "User-Agent": USER_AGENT}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        content = None if data is None else json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        return client.build_request(method, self.api_base + path, params=params or None, headers=headers,
                                    content=content)

    @staticmethod
    def parse(response: httpx.Response) -> Any:
        """The answer's JSON, or the typed error for a non-2xx status."""
        if not response.is_success:
            raise error_for_status(response.status_code, response.content, response.headers, response.reason_phrase)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            raise APIError(f"the answer is not JSON ({response.headers.get('content-type', 'no content type')})",
                           status=response.status_code, body=response.text,
                           headers={k.lower(): v for k, v in response.headers.items()}) from None


class SyncTransport(_Transport):
    """Blocking calls over an httpx2.Client."""

    def __init__(self, secret_key: str, api_base: str, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 http_client: httpx.Client | None = None) -> None:
        super().__init__(secret_key, api_base)
        self._owns_client = http_client is None
        self.client = http_client or httpx.Client(timeout=timeout)

    def request(self, method: str, path: str, data: Any = None, query: Query | None = None,
                bearer: str | None = None, idempotency_key: str | None = None) -> Any:
        return self.parse(self.send(self.build(self.client, method, path, data, query, bearer, idempotency_key)))

    def send(self, request: httpx.Request) -> httpx.Response:
        """Send and read the whole answer; transport failures become APIConnectionError / APITimeoutError."""
        with mapped_errors(self.api_base):
            return self.client.send(request)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


class AsyncTransport(_Transport):
    """Awaitable calls over an httpx2.AsyncClient."""

    def __init__(self, secret_key: str, api_base: str, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 http_client: httpx.AsyncClient | None = None) -> None:
        super().__init__(secret_key, api_base)
        self._owns_client = http_client is None
        self.client = http_client or httpx.AsyncClient(timeout=timeout)

    async def request(self, method: str, path: str, data: Any = None, query: Query | None = None,
                      bearer: str | None = None, idempotency_key: str | None = None) -> Any:
        return self.parse(await self.send(self.build(self.client, method, path, data, query, bearer,
                                                     idempotency_key)))

    async def send(self, request: httpx.Request) -> httpx.Response:
        with mapped_errors(self.api_base):
            return await self.client.send(request)

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()
