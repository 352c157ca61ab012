"""The merchant dashboard, served by the gateway itself under /dashboard: server-rendered HTML, a little script,
an SVG chart drawn on the server, and nothing fetched from anywhere else.

One entry point: `await handle(svc, scope, proto)` serves every path under /dashboard (the app mounts the prefix;
the dashboard does its own sign-in, sessions and CSRF checks, so the app's refusal of browser requests must not
apply to it). Pages read through the same data functions as the REST API, with the same merchant scoping.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..services import Services

__all__ = ["handle"]


async def handle(svc: Services, scope: Scope, proto: HTTPProtocol) -> None:
    # The pages and their templates (jinja2) load on the first dashboard request, not in every worker at start:
    # the store imports this package for its schema, and a worker that never serves a page saves ~10 MB.
    from .routes import handle as serve
    await serve(svc, scope, proto)
