"""Who may call a route: the access levels of the route table (routes.py), and the check the router makes.

| access | who may call | a spend key | no or a bad credential |
|---|---|---|---|
| `PUBLIC` | anyone | - | - |
| `PROXY` | a merchant (secret key, or a forward token carrying it) or an active spend key | within its scope | 401 |
| `MERCHANT` | a merchant | 403 | 401 |
| `OPERATOR` | the operator's `EDGE_PROXY_ADMIN_TOKEN` | 401 | 401 (403 while no admin token is set) |
| `DASHBOARD` | per page, `dashboard/routes.py` `PAGES` (below) | cannot sign in (403) | the sign-in page |

On the dashboard a page's access is `PUBLIC` (sign-in, static files) or `MERCHANT`: the merchant signed in with
its secret key, held by the dashboard's session cookie; another merchant's ids read as 404 there too.

A revoked or expired spend key is a 401 everywhere. What a merchant may touch is its own: every management
query is scoped by the caller's merchant id, so another merchant's ids read as 404. The README's trust model
(`edge_proxy/trust_table.py` renders its table from the route tables) says the same per role.
"""
from __future__ import annotations

import enum
import hmac
from typing import TYPE_CHECKING

from .errors import Forbidden, InvalidToken
from .headers import credential

if TYPE_CHECKING:
    from granian.rsgi import Headers

    from .auth import Principal
    from .services import Services


class Access(enum.Enum):
    PUBLIC = "public"
    PROXY = "proxy"
    MERCHANT = "merchant"
    OPERATOR = "operator"
    DASHBOARD = "dashboard"


class SpendKeyForbidden(Forbidden):
    message = ("a spend key may only send requests through the gateway and list its models; management calls "
               "need the merchant's secret key")


async def authorize(svc: Services, headers: Headers, access: Access) -> Principal | None:
    """The caller of a route with this access, or the 401/403 that refuses it. None for public and operator
    routes (their handlers act for nobody's account, or for the operator's) and for the dashboard (its pages
    check their own session)."""
    if access is Access.PUBLIC or access is Access.DASHBOARD:
        return None
    if access is Access.OPERATOR:
        require_operator(svc, headers)
        return None
    given = credential(headers)
    if not given:
        raise InvalidToken()
    auth = svc.auth
    # authenticate, without its await or its call on a hit: the cache is the one `forget` empties (revocation)
    principal = auth.cache.get(given) or await auth.verify(given)
    key = principal.spend_key
    if key is not None:
        if key.status != "active":
            raise InvalidToken(f"this spend key is {key.status}")
        if key.expired():
            raise InvalidToken("this spend key has expired")
        if access is Access.MERCHANT:
            raise SpendKeyForbidden()
    return principal


def require_operator(svc: Services, headers: Headers) -> None:
    token = svc.settings.admin_token
    if not token:
        raise Forbidden("the admin API is disabled: set EDGE_PROXY_ADMIN_TOKEN to enable it")
    got = headers.get("authorization") or ""
    scheme, _, value = got.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise InvalidToken("admin API: send Authorization: Bearer <EDGE_PROXY_ADMIN_TOKEN>")
