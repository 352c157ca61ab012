"""On the operator's managed OpenAI key, a merchant may continue only its own stored responses (README: "stored
OpenAI responses"): `previous_response_id`, an input item's id and `conversation` are checked before anything is
sent, on the unified `/v1/responses` and on the forward route alike. Real request flows through the in-process
gateway in front of the fake provider; "nothing sent" is what the fake received."""
from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from edge_proxy.billing import accounts
from edge_proxy.forward_token import encode_forward_token
from edge_proxy.log_sinks import Filters
from edge_proxy.money import parse_usd

from .fake_provider import FakeProvider
from .inprocess import Answer, InProcess, Proto, Scope

ROUTES = {"unified": "/v1/responses", "forward": "/providers/openai/v1/responses"}
ASK = {"model": "gpt-4o-mini", "input": "Say hello", "max_output_tokens": 20}


def first_id(answer: Answer) -> tuple[str, list[str]]:
    """The response id and output item ids of an answer, whole or streamed (its `response.completed` event)."""
    assert answer.status == 200, answer.body
    if answer.streamed:
        data = [json.loads(line[5:]) for line in answer.body.decode().splitlines() if line.startswith("data:")]
        response = next(d["response"] for d in data if d["type"] == "response.completed")
    else:
        response = answer.json()
    return response["id"], [item["id"] for item in response["output"]]


def not_found(message: str, param: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "message": message, "param": param, "code": code}}


class Case:
    def __init__(self, gw: InProcess, fake: FakeProvider, route: str) -> None:
        self.gw, self.fake, self.path = gw, fake, ROUTES[route]

    async def merchant(self, name: str) -> str:
        return (await self.gw.svc.store.create_merchant(name, parse_usd("10", "balance")))[1]

    async def ask(self, key: str, **fields: Any) -> Answer:
        return await self.gw.call("POST", self.path, body={**ASK, **fields}, key=key)

    async def refused(self, key: str, want: dict[str, Any], **fields: Any) -> None:
        """The request is answered `want` with a 404, and the provider never saw it."""
        before = len(self.fake.received)
        answer = await self.ask(key, **fields)
        assert (answer.status, answer.json()) == (404, want)
        assert len(self.fake.received) == before, "a refused request reached the provider"


async def the_same_merchant_continues_at_once(c: Case) -> None:
    rid, _ = first_id(await c.ask(c.gw.secret_key))
    answer = await c.ask(c.gw.secret_key, previous_response_id=rid)  # before its log batch is written
    assert answer.status == 200, answer.body
    assert c.fake.last().json()["previous_response_id"] == rid


async def the_same_merchant_continues_a_streamed_answer_at_once(c: Case) -> None:
    rid, [item] = first_id(await c.ask(c.gw.secret_key, stream=True))
    answer = await c.ask(c.gw.secret_key, previous_response_id=rid,
                         input=[{"type": "item_reference", "id": item}, {"role": "user", "content": "more"}])
    assert answer.status == 200, answer.body


async def the_same_merchant_continues_before_the_stream_has_ended(c: Case) -> None:
    """An SDK stops reading at `response.completed`; the provider's connection may end later."""
    data = json.dumps({**ASK, "model": "gpt-4o-mini+fake-linger", "stream": True}).encode()
    proto = Proto(data)
    headers = {"authorization": f"Bearer {c.gw.secret_key}", "content-type": "application/json",
               "content-length": str(len(data))}
    first = asyncio.ensure_future(c.gw.app.__rsgi__(Scope("POST", c.path, "", headers), proto))
    async with asyncio.timeout(5):
        while b"event: response.completed" not in proto.answer.body:
            await asyncio.sleep(0.005)
    rid, _ = first_id(dataclasses.replace(proto.answer))
    answer = await c.ask(c.gw.secret_key, previous_response_id=rid)
    assert not first.done(), "the first stream ended before the follow-up: the case tests nothing"
    assert answer.status == 200, answer.body
    await first


async def the_same_merchant_passes_output_items_back(c: Case) -> None:
    answer = await c.ask(c.gw.secret_key)
    output = answer.json()["output"]
    answer = await c.ask(c.gw.secret_key, input=[*output, {"role": "user", "content": "and again"}])
    assert answer.status == 200, answer.body


async def another_merchant_cannot_continue_it(c: Case) -> None:
    rid, _ = first_id(await c.ask(c.gw.secret_key))
    other = await c.merchant("other")
    await c.refused(other, not_found(f"Previous response with id '{rid}' not found.", "previous_response_id",
                                     "previous_response_not_found"), previous_response_id=rid)
    await c.gw.drain()  # and once the owner is in the database too
    await c.refused(other, not_found(f"Previous response with id '{rid}' not found.", "previous_response_id",
                                     "previous_response_not_found"), previous_response_id=rid)


async def another_merchants_customer_cannot_continue_it(c: Case) -> None:
    rid, _ = first_id(await c.ask(c.gw.secret_key))
    token = encode_forward_token(await c.merchant("other"))
    await c.refused(token, not_found(f"Previous response with id '{rid}' not found.", "previous_response_id",
                                     "previous_response_not_found"), previous_response_id=rid)


async def each_customer_continues_only_its_own(c: Case) -> None:
    """A customer's forward token names only what that customer made; its merchant may name any of them."""
    db = c.gw.svc.store.db
    merchant_id = (await c.gw.svc.auth.verify(c.gw.secret_key)).merchant_id
    alice, bob = [encode_forward_token(c.gw.secret_key, customer_id=(await accounts.create_customer(
        db, merchant_id, {})).customer_id) for _ in range(2)]
    rid, _ = first_id(await c.ask(alice))
    mine, _ = first_id(await c.ask(c.gw.secret_key))
    for drained in (False, True):  # from this worker's memory, then from the database
        await c.refused(bob, not_found(f"Previous response with id '{rid}' not found.", "previous_response_id",
                                       "previous_response_not_found"), previous_response_id=rid)
        await c.refused(alice, not_found(f"Previous response with id '{mine}' not found.", "previous_response_id",
                                         "previous_response_not_found"), previous_response_id=mine)
        assert (await c.ask(alice, previous_response_id=rid)).status == 200
        assert (await c.ask(c.gw.secret_key, previous_response_id=rid)).status == 200
        if not drained:
            await c.gw.drain()
            c.gw.svc.owners._cache.clear()


async def an_unknown_id_is_refused(c: Case) -> None:
    await c.refused(c.gw.secret_key, not_found("Previous response with id 'resp_nobody' not found.",
                                               "previous_response_id", "previous_response_not_found"),
                    previous_response_id="resp_nobody")


async def an_item_of_another_merchant_is_refused(c: Case) -> None:
    _, [item] = first_id(await c.ask(c.gw.secret_key, stream=True))
    other = await c.merchant("other")
    await c.refused(other, not_found(f"Item with id '{item}' not found.", "input"),
                    input=[{"type": "item_reference", "id": item}])
    # an escaped key is still the key OpenAI reads
    before = len(c.fake.received)
    raw = json.dumps({**ASK, "input": [{"type": "item_reference", "i\\u0064": item}]}).replace("\\\\u", "\\u")
    answer = await c.gw.call("POST", c.path, body=raw.encode(), key=other)
    assert (answer.status, answer.json()) == (404, not_found(f"Item with id '{item}' not found.", "input"))
    assert len(c.fake.received) == before


async def an_id_of_the_wrong_type_or_nan_is_a_400(c: Case) -> None:
    before = len(c.fake.received)
    for fields in ({"previous_response_id": 123}, {"input": [{"type": "item_reference", "id": 5}]},
                   {"conversation": ["conv_1"]}):
        answer = await c.ask(c.gw.secret_key, **fields)
        assert answer.status == 400 and answer.json()["error"]["type"] == "invalid_request_error", answer.body
    raw = json.dumps({**ASK, "previous_response_id": "resp_x", "temperature": 0}).replace("0}", "NaN}").encode()
    answer = await c.gw.call("POST", c.path, body=raw, key=c.gw.secret_key)
    assert answer.status == 400 and answer.json()["error"]["type"] == "invalid_request_error", answer.body
    assert len(c.fake.received) == before


async def a_conversation_is_refused(c: Case) -> None:
    await c.refused(c.gw.secret_key, not_found("Conversation with id 'conv_1' not found.", "conversation"),
                    conversation={"id": "conv_1"})


async def the_merchants_own_key_is_not_checked(c: Case) -> None:
    rid, _ = first_id(await c.ask(c.gw.secret_key))
    byok = encode_forward_token(await c.merchant("other"), provider_key="sk-their-own")
    answer = await c.ask(byok, previous_response_id="resp_nobody")
    assert answer.status == 200, answer.body
    answer = await c.ask(byok, previous_response_id=rid)  # their own project: OpenAI would not know it there
    assert answer.status == 200 and c.fake.last().header("authorization") == "Bearer sk-their-own"


async def a_store_that_does_not_answer_refuses_and_plain_requests_never_ask(c: Case) -> None:
    c.gw.svc.owners._db = DownStore()
    answer = await c.ask(c.gw.secret_key)  # names no stored response: no lookup
    assert answer.status == 200, answer.body
    before = len(c.fake.received)
    answer = await c.ask(c.gw.secret_key, previous_response_id="resp_not_cached")
    assert answer.status == 503 and answer.json()["error"]["type"] == "service_unavailable"
    assert len(c.fake.received) == before


class DownStore:
    async def peek(self, sql: str, *args: Any) -> None:
        raise ConnectionRefusedError("the database is down")


CASES = [the_same_merchant_continues_at_once, the_same_merchant_continues_a_streamed_answer_at_once,
         the_same_merchant_continues_before_the_stream_has_ended,
         the_same_merchant_passes_output_items_back, another_merchant_cannot_continue_it,
         another_merchants_customer_cannot_continue_it, each_customer_continues_only_its_own,
         an_unknown_id_is_refused, an_id_of_the_wrong_type_or_nan_is_a_400,
         an_item_of_another_merchant_is_refused, a_conversation_is_refused, the_merchants_own_key_is_not_checked,
         a_store_that_does_not_answer_refuses_and_plain_requests_never_ask]


def run(tmp_path: Path, scenario: Callable[[InProcess, FakeProvider], Awaitable[None]]) -> None:
    async def main() -> None:
        async with FakeProvider() as fake, InProcess(tmp_path, fake.url) as gw:
            await scenario(gw, fake)
    asyncio.run(main())


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__)
def test_stored_responses_on_the_managed_key(tmp_path, case, route):
    run(tmp_path, lambda gw, fake: case(Case(gw, fake, route)))


def test_input_token_counts_are_checked_too(tmp_path):
    async def scenario(gw: InProcess, fake: FakeProvider) -> None:
        c = Case(gw, fake, "forward")
        rid, _ = first_id(await c.ask(gw.secret_key))
        c.path = "/providers/openai/v1/responses/input_tokens"
        assert (await c.ask(gw.secret_key, previous_response_id=rid)).status == 200
        await c.refused(await c.merchant("other"), not_found(f"Previous response with id '{rid}' not found.",
                                                             "previous_response_id", "previous_response_not_found"),
                        previous_response_id=rid)
    run(tmp_path, scenario)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_owners_outlive_a_restart(tmp_path, store, request):
    """A new gateway over the same database knows who owns what from the log, not from its own memory."""
    env = {}
    if store == "postgres":
        env["EDGE_PROXY_DATABASE_URL"] = request.getfixturevalue("private_postgres").create_database()

    async def main() -> None:
        async with FakeProvider() as fake:
            async with InProcess(tmp_path, fake.url, env) as gw:
                c = Case(gw, fake, "unified")
                owner_key, owner_mid, other = gw.secret_key, gw.merchant_id, await c.merchant("other")
                rid, [item] = first_id(await c.ask(owner_key, stream=True))
            async with InProcess(tmp_path, fake.url, env) as gw:  # stopping drained the log queue
                c = Case(gw, fake, "forward")
                assert len(gw.svc.owners._cache) == 0
                answer = await c.ask(owner_key, previous_response_id=rid, input=[{"type": "item_reference", "id": item}])
                assert answer.status == 200, answer.body
                await c.refused(other, not_found(f"Previous response with id '{rid}' not found.",
                                                 "previous_response_id", "previous_response_not_found"),
                                previous_response_id=rid)
                await gw.drain()
                later, first = await gw.svc.log_sink.list(Filters(owner_mid), None, 10)  # newest first
                assert (first.response_id, first.output_item_ids) == (rid, item)  # the log rows say it too
                assert later.response_id not in (None, rid)
    asyncio.run(main())


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_an_id_the_database_cannot_hold_is_unknown(tmp_path, store, request):
    """PostgreSQL's text holds no NUL: such an id was never anyone's, so it is a 404 like any unknown id, not a
    500 from the lookup."""
    env = {}
    if store == "postgres":
        env["EDGE_PROXY_DATABASE_URL"] = request.getfixturevalue("private_postgres").create_database()

    async def main() -> None:
        async with FakeProvider() as fake, InProcess(tmp_path, fake.url, env) as gw:
            c = Case(gw, fake, "forward")
            await c.refused(gw.secret_key, not_found("Previous response with id 'resp_\x00' not found.",
                                                     "previous_response_id", "previous_response_not_found"),
                            previous_response_id="resp_\x00")
            _, [item] = first_id(await c.ask(gw.secret_key))
            await c.refused(gw.secret_key, not_found("Item with id 'msg_\x00' not found.", "input"),
                            input=[{"type": "item_reference", "id": item}, {"type": "item_reference", "id": "msg_\x00"}])
    asyncio.run(main())


def test_the_first_owner_stays_in_a_workers_memory_as_in_the_database():
    """Ids are OpenAI's and unique; should an answer ever repeat one, the database keeps its first owner
    (`ON CONFLICT DO NOTHING`), and so does the worker's cache: a later answer cannot take it over."""
    from edge_proxy.auth import Principal
    from edge_proxy.request_path.ownership import Owners

    owners = Owners(DownStore())  # type: ignore[arg-type]  # a cache hit never asks the store
    first, second = Principal("mer_a", "sk_a"), Principal("mer_b", "sk_b")
    owners.remember(first, "resp_1", "msg_1")
    owners.remember(second, "resp_1", "msg_1 msg_2")

    async def owns(merchant: str, object_id: str) -> bool:
        return await owners._owns(merchant, None, object_id)
    assert asyncio.run(owns("mer_a", "resp_1")) and asyncio.run(owns("mer_a", "msg_1"))
    assert not asyncio.run(owns("mer_b", "resp_1")) and not asyncio.run(owns("mer_b", "msg_1"))
    assert asyncio.run(owns("mer_b", "msg_2"))  # an id only the second answer had is the second's
