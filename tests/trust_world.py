"""The world the trust tests run in: one gateway in-process with two merchants and a credential of every kind.

`World` keeps its own event loop, so a module-scoped gateway serves many table rows (and Hypothesis examples)
without starting again; `request_for(route)` builds a request for any route of `routes.ROUTES`, with fresh
resources of the first merchant's for its `{name}` parameters.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from edge_proxy.forward_token import encode_forward_token
from edge_proxy.money import parse_usd
from edge_proxy.routes import Route

from .inprocess import InProcess

T = TypeVar("T")
ADMIN_TOKEN = "operator-token-for-the-route-walk"
CHAT = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}

# the kinds of credential, as the test ids read them
NONE = "no credential"
MALFORMED = "a malformed credential"
OPERATOR = "the operator's admin token"
MERCHANT = "the merchant's secret key"
TOKEN = "the merchant's forward token"
OTHER = "another merchant's secret key"
SPEND = "a spend key"
REVOKED_SPEND = "a revoked spend key"
EXPIRED_SPEND = "an expired spend key"
REVOKED_SECRET = "a revoked secret key"
KINDS = [NONE, MALFORMED, OPERATOR, MERCHANT, TOKEN, OTHER, SPEND, REVOKED_SPEND, EXPIRED_SPEND, REVOKED_SECRET]

# the request each route gets: a concrete path under a prefix route, the method for an ANY route, and a body
PROXIED_PATHS = {
    "/v1/forward": "/v1/forward?u=https%3A%2F%2Fapi.openai.com%2Fv1%2Fchat%2Fcompletions",
    "/providers/": "/providers/openai/v1/chat/completions",
    "/v1/rewrite/": "/v1/rewrite/openai/api.openai.com/v1/chat/completions",
    "/dashboard": "/dashboard/usage",
}
ANY_METHOD = {"/dashboard": "GET"}
QUERIES = {"/v1/usage": lambda: f"?start={dt.date.today() - dt.timedelta(days=7)}"}
_serial = itertools.count()


def body_for(method: str, path: str, world: World) -> Any:
    n = next(_serial)
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/v1/requests"): {"request_id": f"walk-{n}", "provider": "openai", "model": "gpt-4o-mini",
                                   "input_tokens": 10, "output_tokens": 5},
        ("POST", "/v1/customers"): {"name": "walker"},
        ("PATCH", "/v1/customers/{customer_id}"): {"name": "renamed"},
        ("POST", "/v1/customers/{customer_id}/credit"): {"amount": "0.01"},
        ("POST", "/v1/meters"): meter_body(n),
        ("PATCH", "/v1/meters/{meter_id}"): {"name": "renamed"},
        ("POST", "/v1/spend_keys"): {"name": "walker"},
        ("PUT", "/v1/spend_keys/{spend_key_id}"): {"name": "renamed"},
        ("POST", "/v1/secret_keys"): {"name": "walker"},
        ("POST", "/v1/webhooks"): {"name": "walker", "url": f"https://hooks.example.com/{n}"},
        ("PATCH", "/v1/webhooks/{webhook_id}"): {"name": "renamed"},
        ("POST", "/v1/wallet/credit"): {"amount": "1"},
        ("POST", "/admin/merchants"): {"name": f"walker {n}"},
        ("POST", "/admin/merchants/{merchant_id}/credit"): {"amount": "0.01"},
        ("POST", "/admin/transfers"): {"transfer_id": f"walk-{n}", "from": f"merchant:{world.merchant_id}",
                                       "to": "operator:revenue", "amount": "0.01", "kind": "correction"},
    }
    if path in PROXIED_PATHS and path != "/dashboard" or path in ("/v1/chat/completions", "/v1/messages"):
        return CHAT
    return bodies.get((method, path), {} if method in ("POST", "PUT", "PATCH") else None)


def meter_body(n: int) -> dict:
    return {"name": f"walk meter {n}", "rate_type": "fixed", "tier_type": "tokens_1m",
            "tiers": [{"start": "0", "rate": "1"}]}


class World:
    """One gateway in-process with two merchants and a credential of every kind, on an event loop of its own."""

    def __init__(self, tmp: Path, fake_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.gw = InProcess(tmp, fake_url, {"EDGE_PROXY_ADMIN_TOKEN": ADMIN_TOKEN,
                                            "EDGE_PROXY_WEBHOOKS_PER_MERCHANT": "10000"}, balance="1000")
        self.credentials: dict[str, dict[str, str]] = {}
        self.ours: set[str] = set()  # ids of the first merchant's: never in another merchant's answer
        self.merchant_id = ""
        self.request_id = ""
        self.other_key = ""  # the second merchant's secret key

    def run(self, coro: Awaitable[T]) -> T:
        async def bounded() -> T:
            async with asyncio.timeout(30):
                return await coro
        return self.loop.run_until_complete(bounded())

    async def rest(self, method: str, path: str, body: Any = None, key: str | None = None,
                   status: int = 201) -> Any:
        answer = await self.gw.call(method, path, body=body, key=key or self.gw.secret_key)
        assert answer.status == status, (method, path, answer.status, answer.body)
        return answer.json()

    async def start(self) -> None:
        gw = self.gw
        await gw.__aenter__()
        self.merchant_id = gw.merchant_id
        other, self.other_key = await gw.svc.store.create_merchant("other", parse_usd("100", "balance"))
        bearer = lambda key: {"authorization": f"Bearer {key}"}  # noqa: E731
        spend = await self.rest("POST", "/v1/spend_keys", {"name": "agent"})
        revoked_spend = await self.rest("POST", "/v1/spend_keys", {"name": "revoked"})
        revoked_secret = await self.rest("POST", "/v1/secret_keys", {"name": "revoked"})
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        expired = await self.rest("POST", "/v1/spend_keys", {"name": "expiring", "expires_at": expires.isoformat()})
        # each is used (and so cached) before it is revoked or expires: the cache must not outlive either
        for key in (revoked_spend["key"], expired["key"]):
            await self.rest("GET", "/v1/models", key=key, status=200)
        await self.rest("GET", "/v1/wallet", key=revoked_secret["secret_key"], status=200)
        await self.rest("DELETE", f"/v1/spend_keys/{revoked_spend['spend_key_id']}", status=200)
        await self.rest("DELETE", f"/v1/secret_keys/{revoked_secret['secret_key_id']}", status=200)
        answer = await gw.call("POST", "/v1/chat/completions", body=CHAT, key=gw.secret_key)
        assert answer.status == 200, answer.body
        await gw.drain()
        self.request_id = answer.header("x-lava-request-id") or ""
        assert self.request_id
        self.credentials = {
            NONE: {}, MALFORMED: bearer("%%not a credential%%"), OPERATOR: bearer(ADMIN_TOKEN),
            MERCHANT: bearer(gw.secret_key), TOKEN: bearer(encode_forward_token(gw.secret_key)),
            OTHER: bearer(self.other_key), SPEND: bearer(spend["key"]), REVOKED_SPEND: bearer(revoked_spend["key"]),
            EXPIRED_SPEND: bearer(expired["key"]), REVOKED_SECRET: bearer(revoked_secret["secret_key"]),
        }
        self.ours |= {self.merchant_id, self.request_id, spend["spend_key_id"], revoked_spend["spend_key_id"],
                      revoked_secret["secret_key_id"], expired["spend_key_id"]}
        assert other.merchant_id not in self.ours
        await asyncio.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.05)

    async def stop(self) -> None:
        await self.gw.__aexit__(None, None, None)

    # -- one route's request -------------------------------------------------------------------------------------
    async def fresh(self, name: str) -> str:
        """A new resource of the first merchant's for a `{name}` path parameter (a placeholder for one the walk
        does not know: the route is still walked, and a made-up id is a 404 to everyone allowed)."""
        made = {
            "customer_id": lambda: self.rest("POST", "/v1/customers", {"name": "target"}),
            "meter_id": lambda: self.rest("POST", "/v1/meters", meter_body(next(_serial))),
            "spend_key_id": lambda: self.rest("POST", "/v1/spend_keys", {"name": "target"}),
            "secret_key_id": lambda: self.rest("POST", "/v1/secret_keys", {"name": "target"}),
            "webhook_id": lambda: self.rest("POST", "/v1/webhooks", {"name": "target",
                                                                     "url": "https://hooks.example.com/t"}),
        }.get(name)
        if name == "request_id":
            return self.request_id
        if name == "merchant_id":
            return self.merchant_id
        if made is None:
            return f"unknown_{name}"
        value = (await made())[name]
        self.ours.add(value)
        return value

    async def request_for(self, route: Route) -> tuple[str, str, Any, bool]:
        """(method, path, body, whether the path names the first merchant's resources)."""
        method = route.methods[0] if route.methods else ANY_METHOD.get(route.path, "POST")
        path = PROXIED_PATHS.get(route.path, route.path)
        if route.path in QUERIES:
            path += QUERIES[route.path]()
        owned = False
        for name in re.findall(r"\{(\w+)\}", route.path):
            path = path.replace("{" + name + "}", await self.fresh(name))
            owned = True
        return method, path, body_for(method, route.path, self), owned




@pytest.fixture(scope="module")
def trust_world(fake, tmp_path_factory):
    """A World for one test module (registered in conftest.py)."""
    w = World(tmp_path_factory.mktemp("trust"), fake.url)
    w.run(w.start())
    yield w
    w.run(w.stop())
    w.loop.close()


def route_name(route: Route) -> str:
    return f"{' '.join(route.methods) if route.methods else 'ANY'} {route.path}{'...' if route.prefix else ''}"
