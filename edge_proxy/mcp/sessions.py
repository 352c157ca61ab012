"""Per-session state of the MCP server: which secret key the session logged in with, and its spend key.

Over stdio the process serves one client, so it holds one state. Over streamable HTTP each MCP session (its
`mcp-session-id` header) has its own; a request without a session id (stateless HTTP) gets a fresh state that
lives for that request only, so one client's login never serves another. The secret key from the environment
is every state's default.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

MAX_HTTP_SESSIONS = 10_000
_STDIO = "stdio"


@dataclass
class SessionState:
    secret_key: str | None
    merchant_id: str | None = None
    spend_key: str | None = None  # provisioned by `login`; `prompt` pays with it
    spend_key_id: str | None = None


class Sessions:
    def __init__(self, default_secret_key: str | None) -> None:
        self.default_secret_key = default_secret_key
        self._states: OrderedDict[str, SessionState] = OrderedDict()

    def of(self, request: Any) -> SessionState:
        """The state for a tool call; `request` is the HTTP request it came in (None over stdio)."""
        if request is None:
            key = _STDIO
        else:
            session_id = request.headers.get("mcp-session-id")
            if not session_id:
                return SessionState(self.default_secret_key)
            key = "http:" + session_id
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = SessionState(self.default_secret_key)
            if len(self._states) > MAX_HTTP_SESSIONS:
                self._states.popitem(last=False)  # the oldest session: it has to log in again
        else:
            self._states.move_to_end(key)
        return state
