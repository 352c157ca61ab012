"""Per-session state of the MCP server: which credential the session acts with, and its spend key.

Over stdio the process serves one client, so it holds one state, whose default credential is the secret key
from the environment. Over streamable HTTP there is no default: each request carries its caller's own
credential (http_auth.py checks it), and each MCP session (its `mcp-session-id` header) has its own state per
credential, so a session id replayed with another credential finds nothing of the first one's, and one
client's login never serves another. A request without a session id (stateless HTTP) gets a fresh state that
lives for that request only.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .http_auth import MAX_HTTP_SESSIONS, bearer, credential_id, is_spend_key

_STDIO = "stdio"


@dataclass
class SessionState:
    secret_key: str | None   # the credential the session acts with: a merchant secret key or, over HTTP, a spend key
    merchant_id: str | None = None
    spend_key: str | None = None  # provisioned by `login` (or the caller's own spend key); `prompt` pays with it
    spend_key_id: str | None = None
    over_http: bool = False


class Sessions:
    def __init__(self, default_secret_key: str | None) -> None:
        self.default_secret_key = default_secret_key   # stdio only
        self._states: OrderedDict[str, SessionState] = OrderedDict()

    def of(self, request: Any) -> SessionState:
        """The state for a tool call; `request` is the HTTP request it came in (None over stdio)."""
        if request is None:
            key, fresh = _STDIO, SessionState(self.default_secret_key)
        else:
            credential = bearer(request.headers)
            fresh = SessionState(credential, over_http=True,
                                 spend_key=credential if is_spend_key(credential) else None)
            session_id = request.headers.get("mcp-session-id")
            if not session_id or credential is None:
                return fresh
            key = f"http:{session_id}:{credential_id(credential)}"
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = fresh
            if len(self._states) > MAX_HTTP_SESSIONS:
                self._states.popitem(last=False)  # the oldest session: it has to log in again
        else:
            self._states.move_to_end(key)
        return state
