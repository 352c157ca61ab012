"""The MCP server's HTTP front door: every request carries the caller's own credential, or gets a 401.

`edge-proxy mcp --http` never acts with the server's EDGE_PROXY_SECRET_KEY: each request must send
`Authorization: Bearer <merchant secret key or spend key>`, which the gateway must accept (checked with
`GET /v1/models`, remembered for a few seconds so a session's calls do not each cost a check), and every tool
call of that request acts with that credential only (sessions.py keys each session's state by it). An MCP
session id belongs to the credential that opened it: sent with any other credential it is a 404, as an unknown
session is, so a leaked session id lets no one else end the session or read its stream. Anything else is
answered here, before the MCP SDK sees it: 401 with the gateway's JSON error body, 503 when the gateway cannot
be reached to check or answers with an error that says nothing of the credential (a 5xx).
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ..billing.spend_key_store import SPEND_KEY_PREFIX
from ..client import AsyncGateway
from ..client.errors import APIConnectionError, AuthenticationError, GatewayError
from ..lru import TTLCache
from ..store.base import SECRET_KEY_PREFIX

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]
Verify = Callable[[str], Awaitable[bool]]
_CREDENTIAL_PREFIXES = (SECRET_KEY_PREFIX, SPEND_KEY_PREFIX)
_MISSING = ("this MCP server acts only with your own credential: send Authorization: Bearer <your merchant "
            "secret key or spend key>")
_REFUSED = "the gateway does not accept this credential"


def bearer(headers: Any) -> str | None:
    """The Bearer token of a request's Authorization header, or None."""
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def credential_id(credential: str) -> str:
    """A stable, non-secret name for a credential (to key per-credential state without holding the key)."""
    return hashlib.sha256(credential.encode()).hexdigest()[:24]


def is_spend_key(credential: str | None) -> bool:
    return credential is not None and credential.startswith(SPEND_KEY_PREFIX)


MAX_HTTP_SESSIONS = 10_000  # sessions kept (sessions.py) and owners remembered (RequireCredential); the oldest go

# the answers the gateway gives a caller it has authenticated: the credential is one it accepts
_AUTHENTICATED = frozenset({402, 403, 429})


def gateway_verifier(base_url: str) -> Verify:
    """Whether the gateway at base_url accepts a credential (False on its 401); raises APIConnectionError when
    it cannot be asked, or answers what says nothing of the credential (a 5xx, a 400): that is no yes."""
    async def verify(credential: str) -> bool:
        try:
            async with AsyncGateway(credential, base_url) as gw:
                await gw.models.list()
        except AuthenticationError:
            return False
        except APIConnectionError:
            raise
        except GatewayError as exc:
            if exc.status in _AUTHENTICATED:
                return True
            raise APIConnectionError(f"the gateway answered {exc}") from exc
        return True
    return verify


class RequireCredential:
    """ASGI middleware in front of the MCP SDK's streamable-HTTP app."""

    def __init__(self, app: ASGIApp, verify: Verify, *, ttl: float = 10.0, refused_ttl: float = 2.0) -> None:
        self.app = app
        self.verify = verify
        self._accepted: TTLCache[str, bool] = TTLCache(10_000, ttl)
        self._refused: TTLCache[str, bool] = TTLCache(10_000, refused_ttl)   # a flood of bad keys costs no checks
        # session id -> the credential_id that opened it; the oldest past the bound is forgotten, and its session
        # then answers 404 (its client opens a new one), never "anyone's"
        self._owners: OrderedDict[str, str] = OrderedDict()

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":   # lifespan: the SDK's session manager starts and stops there
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        credential = bearer(headers)
        if credential is None or not credential.startswith(_CREDENTIAL_PREFIXES):
            await _deny(send, 401, "authentication_error", _MISSING)
            return
        key = credential_id(credential)
        if self._accepted.get(key) is None:
            if self._refused.get(key) is not None:
                await _deny(send, 401, "authentication_error", _REFUSED)
                return
            try:
                ok = await self.verify(credential)
            except APIConnectionError as exc:
                await _deny(send, 503, "service_unavailable", f"the gateway cannot be reached to check the "
                                                               f"credential: {exc}")
                return
            (self._accepted if ok else self._refused).put(key, True)
            if not ok:
                await _deny(send, 401, "authentication_error", _REFUSED)
                return
        session = headers.get("mcp-session-id")
        if session is not None and self._owners.get(session) != key:
            await _no_session(send)   # unknown, or another credential's: the same answer
            return
        await self.app(scope, receive, self._watching(send, key, session, scope.get("method") == "DELETE"))

    def _watching(self, send: Send, key: str, session: str | None, deleting: bool) -> Send:
        """`send`, noting the session id a new session answers with (its owner is `key`), and forgetting one
        the SDK ended (404: expired) or the owner closed (DELETE)."""
        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if session is None:
                    for name, value in message.get("headers", ()):
                        if name.lower() == b"mcp-session-id":
                            self._owners[value.decode("latin-1")] = key
                            if len(self._owners) > MAX_HTTP_SESSIONS:
                                self._owners.popitem(last=False)
                elif status == 404 or (deleting and status < 300):
                    self._owners.pop(session, None)
                else:
                    self._owners.move_to_end(session)
            await send(message)
        return watched


async def _no_session(send: Send) -> None:
    """What the SDK answers a session id it does not know (a JSON-RPC error without an id)."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Session not found"}})
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body.encode()})


async def _deny(send: Send, status: int, kind: str, message: str) -> None:
    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="edge-proxy-mcp"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
