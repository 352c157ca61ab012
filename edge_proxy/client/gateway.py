"""`Gateway` and `AsyncGateway`: the Python twins of the Lava Node SDK's `Lava` class, pointed at edge_proxy.

    gw = Gateway()                                   # EDGE_PROXY_SECRET_KEY / LAVA_SECRET_KEY, EDGE_PROXY_BASE_URL
    gw.customers.create(name="Ada")                  # every management resource, as lava.customers.create(...)
    httpx2.post(gw.providers.openai + "/chat/completions", headers={"Authorization": f"Bearer {token}"}, ...)
    gw.gateway("https://api.openai.com/v1/chat/completions", body={...})   # one proxied call, JSON back

The async client has the same attributes; its calls are awaitables.
"""
from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

import httpx2 as httpx

from .config import is_header_safe, resolve_base_url, resolve_secret_key
from .errors import InvalidSecretKeyError, MissingSecretKeyError
from .forward_tokens import UNSET, Unset, gateway_body, gateway_token, gateway_url, generate_forward_token
from .providers import Providers
from .resources import Customers, Meters, Models, Requests, SecretKeys, SpendKeys, Usage, Wallet, Webhooks
from .transport import DEFAULT_TIMEOUT, USER_AGENT, AsyncTransport, SyncTransport

JSON = dict[str, Any]
Option = Any  # a billing option: a string, None (sent as null) or UNSET (left out)


class _Base:
    """The constructor's rules and everything that needs no I/O: the key, the URLs, forward tokens."""

    def __init__(self, secret_key: str | None, base_url: str | None) -> None:
        key = resolve_secret_key(secret_key)
        if not key:
            raise MissingSecretKeyError(
                "a secret key is required: pass Gateway(secret_key=...) or set EDGE_PROXY_SECRET_KEY "
                "(or LAVA_SECRET_KEY)")
        if not is_header_safe(key):
            raise InvalidSecretKeyError("the secret key has a space, a control character or a non-ASCII character "
                                        "inside it: no Authorization header can carry it")
        self.secret_key: str = key
        self.base_url: str = resolve_base_url(base_url)
        self.api_base: str = self.base_url + "/v1/"
        self.providers = Providers(self.api_base)

    def generate_forward_token(self, *, customer_id: Option = UNSET, meter_slug: Option = UNSET,
                               provider_key: Option = UNSET, disable_billing: bool | None | Unset = UNSET) -> str:
        """A forward token with this client's secret key, as the Node SDK's generateForwardToken() makes it.

        Options not given are left out; None is sent as JSON null.
        """
        return generate_forward_token(self.secret_key, customer_id=customer_id, meter_slug=meter_slug,
                                      provider_key=provider_key, disable_billing=disable_billing)

    def _gateway_request(self, client: httpx.Client | httpx.AsyncClient, url: str, body: Any, method: str,
                         headers: Mapping[str, str] | None, customer_id: Option, meter_slug: Option,
                         provider_key: Option, disable_billing: bool | None | Unset,
                         format: str | None, forward_token: bool) -> httpx.Request:
        if forward_token:
            token = gateway_token(self.secret_key, customer_id=customer_id, meter_slug=meter_slug,
                                  provider_key=provider_key, disable_billing=disable_billing)
        elif any(o is not UNSET for o in (customer_id, meter_slug, provider_key, disable_billing)):
            raise ValueError("customer_id, meter_slug, provider_key and disable_billing travel in a forward token: "
                             "they cannot be sent with forward_token=False")
        else:
            token = self.secret_key  # a spend key is a drop-in credential: nothing wraps it
        content, content_type = gateway_body(body)
        sent = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        sent["Authorization"] = f"Bearer {token}"
        if content_type and not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = content_type
        sent.setdefault("User-Agent", USER_AGENT)
        return client.build_request(method, gateway_url(self.api_base, url, format), headers=sent, content=content)


class Gateway(_Base):
    """The blocking client. Use it as a context manager, or call close(), to release its connections."""

    def __init__(self, secret_key: str | None = None, base_url: str | None = None, *,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, http_client: httpx.Client | None = None) -> None:
        super().__init__(secret_key, base_url)
        self._transport = SyncTransport(self.secret_key, self.api_base, timeout=timeout, http_client=http_client)
        t = self._transport
        self.customers: Customers[JSON] = Customers(t)
        self.meters: Meters[JSON] = Meters(t)
        self.spend_keys: SpendKeys[JSON] = SpendKeys(t)
        self.secret_keys: SecretKeys[JSON] = SecretKeys(t)
        self.webhooks: Webhooks[JSON] = Webhooks(t)
        self.requests: Requests[JSON] = Requests(t)
        self.usage: Usage[JSON] = Usage(t)
        self.models: Models[JSON] = Models(t)
        self.wallet: Wallet[JSON] = Wallet(t)

    def request(self, method: str, path: str, data: Any = None, query: Mapping[str, Any] | None = None) -> Any:
        """Any call under `<base>/v1/` with the secret key (the Node SDK's request()): JSON back, typed errors."""
        return self._transport.request(method, path, data, query)

    def gateway(self, url: str, *, body: Any = None, method: str = "POST", headers: Mapping[str, str] | None = None,
                customer_id: Option = UNSET, meter_slug: Option = UNSET, provider_key: Option = UNSET,
                disable_billing: bool | None | Unset = UNSET, format: str | None = None) -> Any:
        """One call through the gateway, as the Node SDK's gateway(): the provider's JSON back, typed errors.

        `url` is the provider's full URL. Billing: customer_id + meter_slug bill the customer, meter_slug alone
        tracks on the meter, neither bills the merchant; customer_id alone is a ValueError. `format`
        (openai | anthropic | google | bedrock) sends it through `/v1/rewrite/<format>/<url>` instead.
        """
        return self._transport.parse(self.gateway_raw(
            url, body=body, method=method, headers=headers, customer_id=customer_id, meter_slug=meter_slug,
            provider_key=provider_key, disable_billing=disable_billing, format=format))

    def gateway_raw(self, url: str, *, body: Any = None, method: str = "POST", headers: Mapping[str, str] | None = None,
                    customer_id: Option = UNSET, meter_slug: Option = UNSET, provider_key: Option = UNSET,
                    disable_billing: bool | None | Unset = UNSET, format: str | None = None,
                    forward_token: bool = True) -> httpx.Response:
        """gateway()'s call, answering the whole httpx2 response whatever its status (for non-JSON bodies).

        `forward_token=False` sends the client's key itself as the Bearer token, as a spend key is used."""
        return self._transport.send(self._gateway_request(
            self._transport.client, url, body, method, headers, customer_id, meter_slug, provider_key,
            disable_billing, format, forward_token))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGateway(_Base):
    """The asyncio client: the same attributes as Gateway, every call an awaitable. `async with` or aclose()."""

    def __init__(self, secret_key: str | None = None, base_url: str | None = None, *,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 http_client: httpx.AsyncClient | None = None) -> None:
        super().__init__(secret_key, base_url)
        self._transport = AsyncTransport(self.secret_key, self.api_base, timeout=timeout, http_client=http_client)
        t = self._transport
        self.customers: Customers[Awaitable[JSON]] = Customers(t)
        self.meters: Meters[Awaitable[JSON]] = Meters(t)
        self.spend_keys: SpendKeys[Awaitable[JSON]] = SpendKeys(t)
        self.secret_keys: SecretKeys[Awaitable[JSON]] = SecretKeys(t)
        self.webhooks: Webhooks[Awaitable[JSON]] = Webhooks(t)
        self.requests: Requests[Awaitable[JSON]] = Requests(t)
        self.usage: Usage[Awaitable[JSON]] = Usage(t)
        self.models: Models[Awaitable[JSON]] = Models(t)
        self.wallet: Wallet[Awaitable[JSON]] = Wallet(t)

    async def request(self, method: str, path: str, data: Any = None,
                      query: Mapping[str, Any] | None = None) -> Any:
        """Any call under `<base>/v1/` with the secret key (the Node SDK's request()): JSON back, typed errors."""
        return await self._transport.request(method, path, data, query)

    async def gateway(self, url: str, *, body: Any = None, method: str = "POST",
                      headers: Mapping[str, str] | None = None, customer_id: Option = UNSET,
                      meter_slug: Option = UNSET, provider_key: Option = UNSET,
                      disable_billing: bool | None | Unset = UNSET, format: str | None = None) -> Any:
        """One call through the gateway, as the Node SDK's gateway(); see Gateway.gateway()."""
        return self._transport.parse(await self.gateway_raw(
            url, body=body, method=method, headers=headers, customer_id=customer_id, meter_slug=meter_slug,
            provider_key=provider_key, disable_billing=disable_billing, format=format))

    async def gateway_raw(self, url: str, *, body: Any = None, method: str = "POST",
                          headers: Mapping[str, str] | None = None, customer_id: Option = UNSET,
                          meter_slug: Option = UNSET, provider_key: Option = UNSET,
                          disable_billing: bool | None | Unset = UNSET,
                          format: str | None = None, forward_token: bool = True) -> httpx.Response:
        """gateway()'s call, answering the whole httpx2 response whatever its status; see Gateway.gateway_raw()."""
        return await self._transport.send(self._gateway_request(
            self._transport.client, url, body, method, headers, customer_id, meter_slug, provider_key,
            disable_billing, format, forward_token))

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncGateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
