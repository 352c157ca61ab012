"""The README's trust table, rendered from the route tables: what each role may call, route by route.

`python -m edge_proxy.trust_table` prints it; tests/test_trust_routes.py checks that the README holds exactly
this, and that each cell is what the gateway answers. Routes come from `routes.ROUTES` and the dashboard's pages
from `dashboard.routes.PAGES`, so a new route appears here with its access, or the check fails.
"""
from __future__ import annotations

from .access import Access
from .dashboard.routes import PAGES
from .routes import ROUTES, Route

ROLES = ("anonymous", "spend key", "merchant", "operator")
HEADER = ("route", "anonymous (no credential)", "spend key", "merchant (secret key, forward token)",
          "operator (admin token)")
# What each cell means (the README's legend says the same):
#   yes     may call it
#   own     may call it, on its own merchant's data only (another merchant's ids read as 404)
#   scoped  within the spend key's models, providers and limits
#   sign-in a browser is sent to the sign-in page (a GET) or refused with 401
#   401/403 refused with that status
CELLS: dict[Access, tuple[str, str, str, str]] = {
    Access.PUBLIC: ("yes", "yes", "yes", "yes"),
    Access.PROXY: ("401", "scoped", "own", "401"),
    Access.MERCHANT: ("401", "403", "own", "401"),
    Access.OPERATOR: ("401", "401", "401", "yes"),
}
# a dashboard page: the merchant signs in with its secret key; a spend key or the admin token cannot sign in
DASHBOARD_CELLS: dict[Access, tuple[str, str, str, str]] = {
    Access.PUBLIC: ("yes", "yes", "yes", "yes"),
    Access.MERCHANT: ("sign-in", "sign-in", "own", "sign-in"),
}
RETIRED = "403"  # a retired route refuses everyone it admits, and says why


def cells(route: Route) -> tuple[str, str, str, str]:
    """The four role cells of a gateway route (KeyError for an access level this table does not know)."""
    row = CELLS[route.access]
    if route.retired:
        return tuple(RETIRED if c not in ("401", "403") else c for c in row)  # type: ignore[return-value]
    return row


def _methods(methods: tuple[str, ...] | None) -> str:
    return "any" if methods is None else " ".join(methods)


def rows() -> list[tuple[str, ...]]:
    """One row per path and access, its methods merged; the dashboard prefix expands into its pages."""
    merged: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for route in ROUTES:
        if route.access is Access.DASHBOARD:
            for method, path, _, access in PAGES:
                merged.setdefault(("/dashboard" + path.rstrip("/"), DASHBOARD_CELLS[access]), []).append(method)
            continue
        path = route.path + ("..." if route.prefix else "")
        merged.setdefault((path, cells(route)), []).append(_methods(route.methods))
    return [(f"`{' '.join(dict.fromkeys(methods))} {path}`", *row) for (path, row), methods in merged.items()]


def render() -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
