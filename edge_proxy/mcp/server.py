"""The MCP server's five tools, each a thin layer over edge_proxy.client: login, prompt, call, search, docs.

Every gateway error (a status, a transport failure, a bad argument) is raised as the SDK's ToolError with the
gateway's own message, so the client sees `isError` and a readable text, and the server carries on.
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from ..client import AsyncGateway, GatewayError
from ..client.errors import error_for_status
from ..client.forward_tokens import UNSET, Unset
from ..providers import Catalogue
from . import discovery
from ._sdk import Context, MCPServer, ToolError, new_server
from .http_auth import is_spend_key
from .sessions import SessionState, Sessions

SESSION_KEY_LIFETIME = dt.timedelta(hours=24)  # a provisioned spend key's; `login` again makes a new one

INSTRUCTIONS = """Tools for an edge_proxy AI gateway (Lava Gateway compatible).
1. `login` first: it checks your secret key and provisions a spend key for this session.
2. `prompt` sends a chat completion to any model, in OpenAI format whatever the provider.
3. `call` sends any provider API request through the gateway (native format); auth is added for you.
4. `search` finds providers and models with ready-to-use request examples; `get_provider_docs` explains one
   provider (base URL, key header, endpoints, usage format)."""

MAX_TEXT_BODY = 200_000


@contextlib.contextmanager
def tool_errors() -> Iterator[None]:
    """Turn the client's errors into MCP tool errors carrying the gateway's message."""
    try:
        yield
    except GatewayError as exc:
        suffix = f" (request {exc.request_id})" if exc.request_id else ""
        raise ToolError(f"{exc}{suffix}") from None
    except (ValueError, TypeError) as exc:
        raise ToolError(str(exc)) from None


def build_server(base_url: str, secret_key: str | None, catalogue: Catalogue | None = None) -> MCPServer:
    """The MCP server for the gateway at `base_url`; `secret_key` (from the environment) is the default login."""
    server = new_server("edge-proxy", INSTRUCTIONS)
    sessions = Sessions(secret_key)
    catalogue = catalogue or Catalogue.load()
    api_base = base_url + "/v1/"

    def client(key: str) -> AsyncGateway:
        return AsyncGateway(key, base_url)

    def state_of(ctx: Context) -> SessionState:
        return sessions.of(getattr(ctx.request_context, "request", None))

    def secret_of(state: SessionState) -> str:
        if not state.secret_key:
            raise ToolError("not logged in: call `login` with your secret key, or start the server with "
                            "EDGE_PROXY_SECRET_KEY set")
        return state.secret_key

    async def paying_key(state: SessionState) -> str:
        """The key `prompt` pays with. A spend key `login` provisioned works only while the secret key that made it
        does: it is the session's, so revoking that secret key stops the session as it stops the proxy path."""
        if state.spend_key is None:
            return secret_of(state)
        if state.spend_key != state.secret_key:   # provisioned, not the caller's own spend key
            with tool_errors():
                async with client(secret_of(state)) as gw:
                    await gw.wallet.retrieve()   # a merchant route: 401 once the secret key is revoked
        return state.spend_key

    @server.tool()
    async def login(ctx: Context, secret_key: str | None = None) -> dict[str, Any]:
        """Log in to the gateway with a merchant secret key (or the server's EDGE_PROXY_SECRET_KEY when omitted).

        Verifies the key, then provisions a spend key for this session that `prompt` pays with; it expires after 24
        hours. Logging in again replaces (and revokes) the session's previous spend key.
        """
        state = state_of(ctx)
        if state.over_http:
            if secret_key and secret_key != state.secret_key:
                raise ToolError("over HTTP this server acts only with the credential in your Authorization header: "
                                "leave out secret_key")
            if is_spend_key(state.secret_key):   # already a spend key: there is nothing to provision
                return {"logged_in": True, "gateway": base_url, "paid_with": "spend_key",
                        "note": "your spend key pays for prompt and call, under its own limits"}
        key = secret_key or state.secret_key  # the session's current key, which starts as the server's
        if not key:
            raise ToolError("no secret key: pass secret_key, or start the server with EDGE_PROXY_SECRET_KEY set")
        with tool_errors():
            async with client(key) as gw:
                wallet = await gw.wallet.retrieve()
                now = dt.datetime.now(dt.UTC)
                # it expires by itself: a session that ends without logging in again (or a server that dies)
                # leaves no key that spends for ever
                spend = await gw.spend_keys.create(name=f"mcp-session-{now:%Y%m%dT%H%M%SZ}",
                                                   expires_at=(now + SESSION_KEY_LIFETIME).isoformat())
                previous = _previous_key(state, wallet.get("merchant_id"))
                revoked = None
                if previous:
                    try:
                        await gw.spend_keys.revoke(previous)
                        revoked = previous
                    except GatewayError as exc:
                        revoked = f"not revoked: {exc}"
        state.secret_key, state.merchant_id = key, wallet.get("merchant_id")
        state.spend_key, state.spend_key_id = spend["key"], spend["spend_key_id"]
        result = {"logged_in": True, "gateway": base_url, "merchant_id": state.merchant_id,
                  "balance": wallet.get("balance"), "spend_key_id": spend["spend_key_id"],
                  "spend_key_name": spend.get("name"), "key_preview": spend.get("key_preview")}
        if revoked:
            result["previous_spend_key"] = revoked
        return result

    @server.tool()
    async def prompt(ctx: Context, model: str, messages: list[dict[str, Any]],
                     fallbacks: list[str | dict[str, str]] | None = None, max_tokens: int | None = None,
                     temperature: float | None = None, top_p: float | None = None,
                     stop: str | list[str] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a chat completion to any model, in OpenAI format whatever its provider.

        `model` is a plain name (`gpt-4o-mini`, `claude-haiku-4-5`) or `provider/model`. `messages` are OpenAI
        chat messages. `fallbacks`: models tried in order when the primary fails with a 5xx, a 429 or a network
        error, each a model name or `{url, model}` with a scheme-less provider URL. `extra`: any other OpenAI
        chat-completions parameter. Answers the assistant text, the model that answered and the usage.
        """
        state = state_of(ctx)
        key = await paying_key(state)
        request: dict[str, Any] = {"model": model, "messages": messages}
        for name, value in (("fallbacks", fallbacks), ("max_tokens", max_tokens), ("temperature", temperature),
                            ("top_p", top_p), ("stop", stop)):
            if value is not None:
                request[name] = value
        request.update(extra or {})
        if request.get("stream"):
            raise ToolError("prompt answers whole completions: leave out stream")
        with tool_errors():
            async with client(key) as gw:
                answer = await gw.request("POST", "chat/completions", request)
        return _completion_summary(answer, "spend_key" if state.spend_key else "secret_key")

    @server.tool()
    async def call(ctx: Context, url: str, method: str = "POST", body: Any = None,
                   headers: dict[str, str] | None = None, customer_id: str | None = None,
                   meter_slug: str | None = None, provider_key: str | None = None) -> dict[str, Any]:
        """Send any API request to a provider through the gateway, in the provider's own format.

        `url` is the provider's URL (`https://api.openai.com/v1/chat/completions`; a scheme-less one gets
        https). The forward token is made for you from the session's secret key: with `customer_id` and
        `meter_slug` the customer pays, with `meter_slug` alone usage is tracked on that meter, with
        `provider_key` your own provider key is used. Answers the status and the body.
        """
        state = state_of(ctx)
        key = secret_of(state)
        if "://" not in url:
            url = "https://" + url.lstrip("/")
        headers = dict(headers or {})
        if isinstance(body, str) and not any(k.lower() == "content-type" for k in headers) and _is_json(body):
            headers["Content-Type"] = "application/json"
        if is_spend_key(key) and any(o is not None for o in (customer_id, meter_slug, provider_key)):
            raise ToolError("customer_id, meter_slug and provider_key need a merchant secret key: a spend key "
                            "pays from its merchant's wallet, under its own limits")
        with tool_errors():
            async with client(key) as gw:
                # a spend key is a drop-in credential: no forward token wraps it; None leaves an option out
                response = await gw.gateway_raw(
                    url, body=body, method=method.upper(), headers=headers, forward_token=not is_spend_key(key),
                    customer_id=_option(customer_id), meter_slug=_option(meter_slug),
                    provider_key=_option(provider_key))
            if not response.is_success:
                raise error_for_status(response.status_code, response.content, response.headers,
                                       response.reason_phrase)
        return {"status": response.status_code, "request_id": response.headers.get("x-lava-request-id"),
                "content_type": response.headers.get("content-type"), **_body_of(response.content,
                                                                                 response.headers)}

    @server.tool()
    async def search(ctx: Context, query: str = "", limit: int = 30) -> dict[str, Any]:
        """Find providers and models the gateway can reach, each with a ready request example.

        Every word of `query` must appear in a provider's name, alias, host or API family, or in a model's id or
        owner; an empty query lists everything. Models come from the gateway's GET /v1/models.
        """
        state = state_of(ctx)
        models, problem = await _models(state)
        found = discovery.search(catalogue, api_base, models, query, max(1, limit))
        if problem:
            found["models_error"] = problem
        return found

    @server.tool()
    async def get_provider_docs(provider: str) -> dict[str, Any]:
        """How to call one provider through the gateway: its base URL, how it takes its key, its endpoints, its
        usage format, where its API reference lives, and an example. `provider` is a catalogue name
        (`openai`, `google-openai-compatible`), an alias (`googleOpenaiCompatible`) or an API host."""
        found = discovery.find_provider(catalogue, provider)
        if found is None:
            raise ToolError(f"no provider {provider!r} in the catalogue; known: {', '.join(catalogue.providers)}")
        return discovery.provider_docs(found, base_url)

    async def _models(state: SessionState) -> tuple[list[dict[str, Any]], str | None]:
        key = state.spend_key or state.secret_key
        if not key:
            return [], "not logged in: call `login` to list the gateway's models"
        try:
            async with client(key) as gw:
                listed = await gw.models.list()
        except GatewayError as exc:
            return [], f"GET /v1/models failed: {exc}"
        data = listed.get("data") if isinstance(listed, dict) else None
        return [m for m in data or [] if isinstance(m, dict)], None

    return server


def _option(value: str | None) -> str | Unset:
    """A tool argument as a forward-token option: None (not given) leaves it out of the token."""
    return UNSET if value is None else value


def _previous_key(state: SessionState, merchant_id: str | None) -> str | None:
    """The spend key this session had before, if it belongs to the same merchant (only that one can revoke it)."""
    if state.spend_key_id and state.merchant_id == merchant_id:
        return state.spend_key_id
    return None


def _completion_summary(answer: Any, paid_with: str) -> dict[str, Any]:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ToolError(f"the gateway's answer has no choices: {json.dumps(answer)[:500]}")
    choice = choices[0]
    message = choice["message"] if isinstance(choice.get("message"), dict) else {}
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    summary = {"text": content or "", "model": answer.get("model"), "usage": answer.get("usage"),
               "finish_reason": choice.get("finish_reason"), "id": answer.get("id"), "paid_with": paid_with}
    if message.get("tool_calls"):
        summary["tool_calls"] = message["tool_calls"]
    return summary


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _body_of(content: bytes, headers: Any) -> dict[str, Any]:
    """JSON as JSON, text as text (cut at MAX_TEXT_BODY characters), anything else as base64."""
    kind = (headers.get("content-type") or "").lower()
    if "json" in kind or not kind:
        try:
            return {"body": json.loads(content) if content else None}
        except (ValueError, UnicodeDecodeError):
            pass
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(content).decode("ascii")}
    if len(text) > MAX_TEXT_BODY:
        return {"body": text[:MAX_TEXT_BODY], "truncated": True}
    return {"body": text}
