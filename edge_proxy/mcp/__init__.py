"""`edge-proxy mcp`: an MCP server (stdio, or streamable HTTP with --http) in front of an edge_proxy gateway.

It reaches the gateway at EDGE_PROXY_BASE_URL (default http://127.0.0.1:8080) through edge_proxy.client, and
offers Lava's MCP tools: login, prompt, call, search, get_provider_docs. Over stdio, EDGE_PROXY_SECRET_KEY (or
LAVA_SECRET_KEY) is the default login. Over HTTP there is none: every request must carry its caller's own
merchant secret key or spend key as a Bearer token (401 otherwise), and acts with it only.

| module | what |
|---|---|
| `server.py` | the tools |
| `discovery.py` | what `search` and `get_provider_docs` answer, from the provider catalogue (no I/O) |
| `sessions.py` | per-session state: the credential and the session's spend key |
| `http_auth.py` | the HTTP front door: the caller's credential, checked with the gateway, or 401 |
| `_sdk.py` | the names taken from the official `mcp` SDK (1.x and 2.x) |

This module stays light (no `mcp` import) because the CLI builds its parser from it on every command.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

from ..errors import CommandError

DEFAULT_HTTP_PORT = 8000


def add_mcp_command(sub: Any) -> None:
    """Register `mcp` on the CLI's subparsers."""
    p = sub.add_parser("mcp", help="run the MCP server (stdio; --http for streamable HTTP)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--http", action="store_true", help="serve streamable HTTP at http://HOST:PORT/mcp, not stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_HTTP_PORT, help=f"HTTP port (default {DEFAULT_HTTP_PORT})")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until stdin closes (stdio) or the process is stopped (HTTP)."""
    try:
        import anyio
        import httpx2  # noqa: F401
        import mcp  # noqa: F401
    except ImportError as exc:
        raise CommandError(f"the MCP server needs the mcp extra ({exc.name} is missing): "
                           "pip install 'edge-proxy[mcp]'") from None

    from ..client.config import resolve_base_url, resolve_secret_key
    from ._sdk import serve_http, serve_stdio
    from .server import build_server

    # httpx2 logs every request at INFO, and the SDK configures INFO logging: keep stderr for what matters.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    base_url = resolve_base_url(None)
    if args.http:   # never the server's own key: each caller brings theirs
        from .http_auth import RequireCredential, gateway_verifier
        verify = gateway_verifier(base_url)
        anyio.run(serve_http, build_server(base_url, None), args.host, args.port,
                  lambda app: RequireCredential(app, verify))
    else:
        anyio.run(serve_stdio, build_server(base_url, resolve_secret_key(None)))
    return 0
