"""The few names this server takes from the official MCP SDK, under both of its major versions.

mcp 2 renamed FastMCP to MCPServer and moved the HTTP host and port from the constructor to `run`; the tools,
Context and ToolError behave the same. Nothing else in edge_proxy.mcp imports from `mcp` directly.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:  # mcp >= 2
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    SDK_MAJOR = 2
except ImportError:  # mcp 1.x. The checker sees mcp 2, where these names are gone (attr-defined) and the ones
    # above already bound (no-redef). Which one runs is decided at import, as pyproject allows both majors.
    from mcp.server.fastmcp import Context  # type: ignore[no-redef, attr-defined]
    from mcp.server.fastmcp import FastMCP as MCPServer  # type: ignore[no-redef, attr-defined]
    from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[no-redef]

    SDK_MAJOR = 1

__all__ = ["Context", "MCPServer", "ToolError", "new_server", "serve_http", "serve_stdio"]


def new_server(name: str, instructions: str) -> MCPServer:
    return MCPServer(name, instructions=instructions)


async def serve_stdio(server: MCPServer) -> None:
    await server.run_stdio_async()


async def serve_http(server: Any, host: str, port: int, wrap: Callable[[Any], Any] | None = None) -> None:
    """Streamable HTTP at http://host:port/mcp; `wrap` puts ASGI middleware (the credential check) in front."""
    import uvicorn

    if SDK_MAJOR >= 2:
        app = server.streamable_http_app(host=host)
    else:
        server.settings.host, server.settings.port = host, port
        app = server.streamable_http_app()
    config = uvicorn.Config(wrap(app) if wrap else app, host=host, port=port, log_level="warning")
    await uvicorn.Server(config).serve()
