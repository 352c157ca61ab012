"""The merchant dashboard, served by the gateway itself under /dashboard: server-rendered HTML, a little script,
an SVG chart drawn on the server, and nothing fetched from anywhere else.

One entry point: `await handle(svc, scope, proto)` serves every path under /dashboard (the app mounts the prefix;
the dashboard does its own sign-in, sessions and CSRF checks, so the app's refusal of browser requests must not
apply to it). Pages read through the same data functions as the REST API, with the same merchant scoping.
"""
from __future__ import annotations

from .routes import handle

__all__ = ["handle"]
