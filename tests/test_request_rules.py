"""The request path's rules, one table run against every route, in SQL mode and in Redis mode.

Every proxied route tells the same story (request_path/pipeline.py), so a rule that holds on one route holds on
all: spend-key scope and limits, reservations and 402, metadata, bad credentials, and the safety net for bugs.
Each row runs in-process (tests/inprocess.py) against the loopback fake provider.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, NamedTuple

import pytest

from edge_proxy.forward_token import encode_forward_token

from .fake_provider import FakeProvider
from .inprocess import Answer, InProcess, Proto, Scope
from .redis_server import RedisServer

MODEL = "gpt-4o"
EMBEDDING_MODEL = "text-embedding-3-small"
PROMPT = [{"role": "user", "content": "Say hello"}]


def _chat(max_tokens: int) -> dict:  # OpenAI's chat and Anthropic's messages alike
    return {"model": MODEL, "max_tokens": max_tokens, "messages": PROMPT}


def _responses(max_tokens: int) -> dict:
    return {"model": MODEL, "max_output_tokens": max_tokens, "input": "Say hello"}


def _embeddings(size: int) -> dict:
    # an embedding's bound is its input: `size` scales it as max_tokens scales a chat's (4000: over $0.01)
    return {"model": EMBEDDING_MODEL, "input": "Say hello " * (size * 25)}


def _count(size: int) -> dict:
    return {"model": MODEL, "messages": PROMPT}


class Route(NamedTuple):
    path: str
    body: Callable[[int], dict]  # the request body for a given max_tokens
    model: str = MODEL
    free: bool = False  # the endpoint costs nothing (a token count): never reserved, never charged


ROUTES: dict[str, Route] = {
    "forward": Route("/v1/forward?u=https%3A%2F%2Fapi.openai.com%2Fv1%2Fchat%2Fcompletions", _chat),
    "providers": Route("/providers/openai/v1/chat/completions", _chat),
    "chat_completions": Route("/v1/chat/completions", _chat),
    "messages": Route("/v1/messages", _chat),
    "rewrite": Route("/v1/rewrite/openai/api.openai.com/v1/chat/completions", _chat),
    "responses": Route("/v1/responses", _responses),
    "embeddings": Route("/v1/embeddings", _embeddings, EMBEDDING_MODEL),
    "count_tokens": Route("/v1/messages/count_tokens", _count, free=True),
}


class Case:
    """One route of one gateway, with the fake provider it reaches."""

    def __init__(self, gw: InProcess, fake: FakeProvider, route: str) -> None:
        self.gw, self.fake, self.route = gw, fake, route
        self.model, self.free = ROUTES[route].model, ROUTES[route].free

    async def send(self, key: str, max_tokens: int = 100, headers: dict[str, str] | None = None) -> Answer:
        route = ROUTES[self.route]
        return await self.gw.call("POST", route.path, body=route.body(max_tokens), key=key, headers=headers)

    async def free_and_answered(self, answer: Answer, before: int) -> None:
        """A free call: answered from the provider (one request), logged at cost 0 and charged nothing."""
        assert answer.status == 200, answer.body
        assert len(self.fake.received) == before + 1
        [record] = [r for r in await self.records() if r["request_id"] == answer.header("x-lava-request-id")]
        assert Decimal(record["cost"]) == 0 and Decimal(record["charge"]["amount"]) == 0, record

    async def rest(self, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
        answer = await self.gw.call(method, path, body=body, key=key or self.gw.secret_key)
        assert answer.status in (200, 201), (answer.status, answer.body)
        return answer.json()

    async def spend_key(self, **policy: Any) -> dict:
        return await self.rest("POST", "/v1/spend_keys", {"name": "agent", **policy})

    async def records(self) -> list[dict]:
        await self.gw.drain()
        return (await self.rest("GET", "/v1/requests?limit=100"))["data"]


def _message(answer: Answer) -> str:
    return str(answer.json()["error"]["message"])  # OpenAI's and Anthropic's error shapes alike


# --- the rules ------------------------------------------------------------------------------------------------

async def spend_limit_below_the_reservation_is_402_and_nothing_is_sent(c: Case) -> None:
    key = await c.spend_key(spend_limit={"amount": "0.01", "cycle": "daily"})
    before = len(c.fake.received)
    answer = await c.send(key["key"], max_tokens=4000)  # gpt-4o: up to $0.04 of output alone
    if c.free:
        return await c.free_and_answered(answer, before)
    assert answer.status == 402 and answer.json()["error"]["type"] == "spend_limit_reached", answer.body
    assert len(c.fake.received) == before


async def spend_limit_covers_every_choice_a_request_asks_for(c: Case) -> None:
    """OpenAI's `n` asks for that many answers of up to max_tokens each, all billed: the reservation a spend limit is
    checked against is of all of them (it was of one, so `n` spent up to n times past the limit)."""
    if ROUTES[c.route].body is not _chat or c.route == "messages":
        return  # only OpenAI's chat format has `n` (Anthropic's has no such field)
    key = await c.spend_key(spend_limit={"amount": "0.01", "cycle": "daily"})
    route = ROUTES[c.route]
    answer = await c.gw.call("POST", route.path, body={**_chat(400), "n": 1}, key=key["key"])
    assert answer.status == 200, answer.body  # gpt-4o: up to $0.004 of output, within the limit
    before = len(c.fake.received)
    answer = await c.gw.call("POST", route.path, body={**_chat(400), "n": 4}, key=key["key"])  # up to $0.016
    assert answer.status == 402 and answer.json()["error"]["type"] == "spend_limit_reached", answer.body
    assert len(c.fake.received) == before


async def spend_key_within_its_limit_is_admitted_and_its_spend_counted(c: Case) -> None:
    key = await c.spend_key(spend_limit={"amount": "10", "cycle": "daily"})
    answer = await c.send(key["key"])
    assert answer.status == 200, answer.body
    [record] = [r for r in await c.records() if r["request_id"] == answer.header("x-lava-request-id")]
    charged = record["cost"]
    shown = await c.rest("GET", f"/v1/spend_keys/{key['spend_key_id']}")
    assert (Decimal(charged) == 0) is c.free, record  # a token count costs nothing; everything else something
    assert Decimal(shown["current_spend"]) == Decimal(charged) and shown["current_requests"] == 1


async def spend_key_may_use_only_its_models(c: Case) -> None:
    key = await c.spend_key(allowed_models=["gpt-4o-mini"])
    before = len(c.fake.received)
    answer = await c.send(key["key"])
    assert answer.status == 403 and c.model in _message(answer), answer.body
    assert len(c.fake.received) == before


async def spend_key_may_use_only_its_providers(c: Case) -> None:
    key = await c.spend_key(allowed_providers=["anthropic"])
    before = len(c.fake.received)
    answer = await c.send(key["key"])
    assert answer.status == 403 and "openai" in _message(answer), answer.body
    assert len(c.fake.received) == before


async def empty_wallet_is_402_and_nothing_is_sent(c: Case) -> None:
    await c.gw.svc.store.db.execute("UPDATE merchants SET balance_nanos = 0")
    before = len(c.fake.received)
    answer = await c.send(c.gw.secret_key)
    if c.free:
        return await c.free_and_answered(answer, before)
    assert answer.status == 402 and answer.json()["error"]["type"] == "insufficient_balance", answer.body
    assert len(c.fake.received) == before


async def customer_who_cannot_cover_the_reservation_is_402(c: Case) -> None:
    await c.rest("POST", "/v1/meters", {"name": "chat", "meter_slug": "chat", "rate_type": "percentage",
                                        "tier_type": "tokens_1m", "tiers": [{"start": "0", "rate": "20"}]})
    customer = await c.rest("POST", "/v1/customers", {"name": "Ada", "balance": "0.000001"})
    token = encode_forward_token(c.gw.secret_key, customer_id=customer["customer_id"], meter_slug="chat")
    before = len(c.fake.received)
    answer = await c.send(token)
    if c.free:
        return await c.free_and_answered(answer, before)
    assert answer.status == 402 and answer.json()["error"]["type"] == "insufficient_balance", answer.body
    assert len(c.fake.received) == before


async def bad_metadata_is_400_and_nothing_is_sent(c: Case) -> None:
    before = len(c.fake.received)
    answer = await c.send(c.gw.secret_key, headers={"x-lava-metadata": "[1, 2]"})
    assert answer.status == 400 and "x-lava-metadata" in answer.json()["error"]["message"], answer.body
    assert len(c.fake.received) == before


async def metadata_reaches_the_record_and_not_the_provider(c: Case) -> None:
    answer = await c.send(c.gw.secret_key, headers={"x-lava-metadata": '{"team": "search"}'})
    assert answer.status == 200, answer.body
    assert c.fake.last().header("x-lava-metadata") is None
    [record] = await c.records()
    assert record["metadata"] == {"team": "search"}


async def metadata_in_the_query_string_reaches_the_record_and_not_the_provider(c: Case) -> None:
    route = ROUTES[c.route]  # `serve` splits it off only when there is a query string: with and without another
    path = route.path + ("&" if "?" in route.path else "?") + "metadata=%7B%22team%22%3A%22search%22%7D"
    answer = await c.gw.call("POST", path, body=route.body(100), key=c.gw.secret_key)
    assert answer.status == 200, answer.body
    assert "metadata" not in c.fake.last().query
    [record] = await c.records()
    assert record["metadata"] == {"team": "search"}


async def reservation_is_released_once_the_request_is_logged(c: Case) -> None:
    answer = await c.send(c.gw.secret_key)
    assert answer.status == 200, answer.body
    await c.records()
    svc = c.gw.svc
    assert svc.billing.inflight == {}
    assert all(lease.used == 0 for lease in svc.leases._leases.values())


async def crlf_in_provider_key_is_401_and_nothing_is_sent(c: Case) -> None:
    token = encode_forward_token(c.gw.secret_key, provider_key="sk-byok\r\nx-injected: 1")
    before = len(c.fake.received)
    answer = await c.send(token)
    assert answer.status == 401 and answer.json()["error"]["type"] == "authentication_error", answer.body
    assert len(c.fake.received) == before


async def a_bug_is_a_json_500_logged_once_and_its_reservation_released(c: Case) -> None:
    class Broken:
        async def request(self, *args: Any) -> None:
            raise KeyError("a bug, not an upstream failure")

        async def close(self) -> None:
            pass
    c.gw.svc.upstream = Broken()  # type: ignore[assignment]
    answer = await c.send(c.gw.secret_key)
    assert answer.status == 500 and answer.header("content-type") == "application/json", answer.body
    assert "Traceback" not in answer.body.decode() and answer.json()["error"]
    records = await c.records()
    assert [(r["status_code"], r["outcome"], r["error_reason"]) for r in records] == [(500, "error", "internal_error")]
    assert c.gw.svc.billing.inflight == {}


class HangsUpMidBody(Proto):
    """A client that declared its body's length and closed the connection before sending all of it."""

    async def __call__(self) -> bytes:
        from granian.rsgi import ProtocolClosed
        raise ProtocolClosed()


async def a_client_that_hangs_up_mid_body_is_logged_once_and_not_as_a_bug(c: Case) -> None:
    route = ROUTES[c.route]
    path, _, query = route.path.partition("?")
    body = json.dumps(route.body(100)).encode()
    headers = {"authorization": f"Bearer {c.gw.secret_key}", "content-length": str(len(body) + 100)}
    errors: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = errors.append  # type: ignore[method-assign]
    logging.getLogger("edge_proxy").addHandler(handler)
    try:
        before = len(c.fake.received)
        await c.gw.app.__rsgi__(Scope("POST", path, query, headers), HangsUpMidBody(body))  # type: ignore[arg-type]
    finally:
        logging.getLogger("edge_proxy").removeHandler(handler)
    assert [e.getMessage() for e in errors] == [] and len(c.fake.received) == before
    records = await c.records()
    assert [(r["status_code"], r["outcome"], r["error_reason"]) for r in records] == [
        (499, "error", "client_disconnected")]
    assert c.gw.svc.billing.inflight == {}


RULES: list[Callable[[Case], Awaitable[None]]] = [
    spend_limit_below_the_reservation_is_402_and_nothing_is_sent,
    spend_limit_covers_every_choice_a_request_asks_for,
    spend_key_within_its_limit_is_admitted_and_its_spend_counted,
    spend_key_may_use_only_its_models,
    spend_key_may_use_only_its_providers,
    empty_wallet_is_402_and_nothing_is_sent,
    customer_who_cannot_cover_the_reservation_is_402,
    bad_metadata_is_400_and_nothing_is_sent,
    metadata_reaches_the_record_and_not_the_provider,
    metadata_in_the_query_string_reaches_the_record_and_not_the_provider,
    reservation_is_released_once_the_request_is_logged,
    crlf_in_provider_key_is_401_and_nothing_is_sent,
    a_bug_is_a_json_500_logged_once_and_its_reservation_released,
    a_client_that_hangs_up_mid_body_is_logged_once_and_not_as_a_bug,
]


@pytest.fixture(scope="module")
def redis_url():
    server = RedisServer().start()
    yield server.url
    server.stop()


@pytest.mark.parametrize("mode", ["sql", "redis"])
@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("rule", RULES, ids=[r.__name__ for r in RULES])
def test_rule_holds_on_every_route(rule, route, mode, tmp_path, request):
    env = {"EDGE_PROXY_REDIS_URL": request.getfixturevalue("redis_url")} if mode == "redis" else {}

    async def scenario() -> None:
        async with FakeProvider() as fake:
            async with InProcess(tmp_path, fake.url, env) as gw:
                await rule(Case(gw, fake, route))

    asyncio.run(scenario())


# --- the gateway's own errors come in the shape of the route's format ----------------------------------------

ANTHROPIC_401 = {"type": "error", "error": {"type": "authentication_error"}}
OPENAI_401 = {"error": {"type": "authentication_error"}}
GEMINI_401 = {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
SHAPES = [
    ("/v1/chat/completions", OPENAI_401),
    ("/v1/messages", ANTHROPIC_401),
    ("/v1/messages/count_tokens", ANTHROPIC_401),
    ("/v1/responses", OPENAI_401),
    ("/v1/embeddings", OPENAI_401),
    ("/v1/rewrite/anthropic/api.openai.com/v1/chat/completions", ANTHROPIC_401),
    ("/v1/rewrite/google/generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
     GEMINI_401),
    ("/v1/rewrite/openai/api.anthropic.com/v1/messages", OPENAI_401),
    ("/providers/anthropic/v1/messages", ANTHROPIC_401),
    ("/providers/google/v1beta/models/gemini-2.0-flash:generateContent", GEMINI_401),
    ("/providers/openai/v1/chat/completions", OPENAI_401),
    ("/v1/forward?u=https://api.anthropic.com/v1/messages", ANTHROPIC_401),
    ("/v1/forward?u=https://api.openai.com/v1/chat/completions", OPENAI_401),
    ("/v1/customers", OPENAI_401),
]


def _contains(got: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and all(_contains(got.get(k), v) for k, v in want.items())
    return bool(got == want)


@pytest.mark.parametrize("path,shape", SHAPES, ids=[p for p, _ in SHAPES])
def test_errors_take_the_shape_of_the_routes_format(path, shape, tmp_path):
    async def scenario() -> Answer:
        async with InProcess(tmp_path, None) as gw:
            return await gw.call("POST", path, body={"model": MODEL, "messages": PROMPT}, key="ep_sk_wrong")

    answer = asyncio.run(scenario())
    assert answer.status == 401 and _contains(answer.json(), shape), answer.body
    assert "message" in str(answer.json())
