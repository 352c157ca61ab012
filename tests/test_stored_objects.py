"""On the operator's managed key no merchant owns a stored file, container, vector store, prompt, skill or cache
(README: "Other stored objects"), so a request naming one by id is refused with a 400 before anything is sent,
on the unified and the forward routes alike; the merchant's own key (BYOK) is not checked. A body the gateway
reads for stored ids may not repeat a key, plainly or `\\u`-escaped. Real request flows through the in-process
gateway in front of the fake provider; "nothing sent" is what the fake received."""
from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from edge_proxy.forward_token import encode_forward_token
from edge_proxy.money import parse_usd
from edge_proxy.request_path import ownership

from .fake_provider import FakeProvider
from .inprocess import Answer, InProcess

RESPONSES = ("/v1/responses", "/providers/openai/v1/responses")
CHAT = ("/v1/chat/completions", "/providers/openai/v1/chat/completions")
MESSAGES = ("/v1/messages", "/providers/anthropic/v1/messages")
GEMINI = "/providers/google/v1beta/models/gemini-2.0-flash:generateContent"

ASK_RESPONSES = {"model": "gpt-4o-mini", "input": "Say hello", "max_output_tokens": 20}
ASK_CHAT = {"model": "gpt-4o-mini", "max_tokens": 20}
ASK_MESSAGES = {"model": "claude-haiku-4-5", "max_tokens": 20}
ASK_GEMINI = {"contents": [{"parts": [{"text": "Say hello"}]}], "generationConfig": {"maxOutputTokens": 20}}


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "Say hello"}, *parts]}]


def responses_user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}, *parts]}]


# (what the request names, routes, body, the refused key path, what the refusal says it names)
REFUSED = [
    ("a code interpreter container by id", RESPONSES,
     {**ASK_RESPONSES, "tools": [{"type": "code_interpreter", "container": "cntr_theirs"}]},
     "tools[].container", "a code interpreter container"),
    ("files put in a new container", RESPONSES,
     {**ASK_RESPONSES, "tools": [{"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file-1"]}}]},
     "tools[].container.file_ids", "stored files"),
    ("a vector store to search", RESPONSES,
     {**ASK_RESPONSES, "tools": [{"type": "file_search", "vector_store_ids": ["vs_theirs"]}]},
     "tools[].vector_store_ids", "vector stores"),
    ("a stored prompt", RESPONSES, {**ASK_RESPONSES, "prompt": {"id": "pmpt_theirs"}}, "prompt.id", "a stored prompt"),
    ("an input file by id", RESPONSES,
     {**ASK_RESPONSES, "input": responses_user({"type": "input_file", "file_id": "file-theirs"})},
     "input[].content[].file_id", "a stored file"),
    ("an input image by file id", RESPONSES,
     {**ASK_RESPONSES, "input": responses_user({"type": "input_image", "file_id": "file-theirs"})},
     "input[].content[].file_id", "a stored file"),
    ("a code interpreter call passed back with its container", RESPONSES,
     {**ASK_RESPONSES, "input": [{"type": "code_interpreter_call", "container_id": "cntr_theirs", "code": "1",
                                  "outputs": None, "status": "completed"}, *responses_user()]},
     "input[].container_id", "a code interpreter container"),
    ("a chat file part by id", CHAT,
     {**ASK_CHAT, "messages": user({"type": "file", "file": {"file_id": "file-theirs"}})},
     "messages[].content[].file.file_id", "a stored file"),
    ("a Mistral file chunk by id", CHAT,
     {**ASK_CHAT, "messages": user({"type": "file", "file_id": "file-theirs"})},
     "messages[].content[].file_id", "a stored file"),
    ("an earlier audio answer by id", CHAT,
     {**ASK_CHAT, "messages": [*user(), {"role": "assistant", "audio": {"id": "audio_theirs"}},
                               {"role": "user", "content": "again"}]},
     "messages[].audio.id", "a stored audio answer"),
    ("an Anthropic container by id", MESSAGES,
     {**ASK_MESSAGES, "container": "container_theirs", "messages": user()}, "container",
     "a code execution container"),
    ("Anthropic skills in a container", MESSAGES,
     {**ASK_MESSAGES, "container": {"skills": [{"type": "custom", "skill_id": "skill_1", "version": "latest"}]},
      "messages": user()}, "container.skills", "skills"),
    ("an Anthropic image by file id", MESSAGES,
     {**ASK_MESSAGES, "messages": user({"type": "image", "source": {"type": "file", "file_id": "file_theirs"}})},
     "messages[].content[].source.file_id", "a stored file"),
    ("an Anthropic file uploaded to the container", MESSAGES,
     {**ASK_MESSAGES, "messages": user({"type": "container_upload", "file_id": "file_theirs"})},
     "messages[].content[].file_id", "a stored file"),
    ("an Anthropic container, counting tokens", ("/v1/messages/count_tokens",
                                                 "/providers/anthropic/v1/messages/count_tokens"),
     {**ASK_MESSAGES, "container": "container_theirs", "messages": user()}, "container",
     "a code execution container"),
    ("an Anthropic container under an escaped key", MESSAGES,
     json.dumps({**ASK_MESSAGES, "container": "container_theirs", "messages": user()}).replace(
         '"container"', '"cont\\u0061iner"').encode(), "container", "a code execution container"),
    ("a Gemini cached context", (GEMINI,), {**ASK_GEMINI, "cachedContent": "cachedContents/theirs"},
     "cachedContent", "a cached context"),
    ("a Gemini file search store", (GEMINI,),
     {**ASK_GEMINI, "tools": [{"file_search": {"file_search_store_names": ["fileSearchStores/theirs"]}}]},
     "tools[].file_search.file_search_store_names", "file search stores"),
]
REFUSED_ROWS = [pytest.param(route, body, param, what, id=f"{name} on {route}")
                for name, routes, body, param, what in REFUSED for route in routes]


def refusal(route: str, message: str, param: str) -> dict[str, Any]:
    """The gateway's 400 in the route's format."""
    if "/messages" in route:
        return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    if "/google/" in route:
        return {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
    return {"error": {"type": "invalid_request_error", "message": message, "param": param, "code": None}}


def run(tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        async with FakeProvider() as fake, InProcess(tmp_path, fake.url) as gw:
            await scenario(gw, fake)
    asyncio.run(main())


async def refused(gw: InProcess, fake: FakeProvider, route: str, body: Any, key: str) -> Answer:
    """The answer to a request that must not reach the provider."""
    before = len(fake.received)
    answer = await gw.call("POST", route, body=body, key=key)
    assert len(fake.received) == before, "a refused request reached the provider"
    return answer


@pytest.mark.parametrize(("route", "body", "param", "what"), REFUSED_ROWS)
def test_a_stored_object_nobody_owns_is_refused_on_the_managed_key(tmp_path, route, body, param, what):
    async def scenario(gw: InProcess, fake: FakeProvider) -> None:
        answer = await refused(gw, fake, route, body, gw.secret_key)
        message = (f"{param}: names {what}, which no merchant owns on the gateway's managed key; for stored "
                   "files, containers, vector stores and prompts send your own key as provider_key (BYOK)")
        assert (answer.status, answer.json()) == (400, refusal(route, message, param))
    run(tmp_path, scenario)


@pytest.mark.parametrize(("route", "body", "param", "what"), REFUSED_ROWS)
def test_the_merchants_own_key_may_name_them(tmp_path, route, body, param, what):
    async def scenario(gw: InProcess, fake: FakeProvider) -> None:
        byok = encode_forward_token(gw.secret_key, provider_key="sk-their-own")
        answer = await gw.call("POST", route, body=body, key=byok)
        assert answer.status == 200, answer.body
        got = fake.last()
        keys = {got.header("authorization"), got.header("x-api-key"), got.header("x-goog-api-key")}
        assert keys & {"Bearer sk-their-own", "sk-their-own"}, got.headers
    run(tmp_path, scenario)


# Bodies the check has nothing to refuse in: names that are a function's parameters, not stored objects, and
# escaped text; a container the provider makes anew.
ALLOWED = [
    ("a function tool with container and vector_store_ids parameters", RESPONSES[1],
     {**ASK_RESPONSES, "tools": [{"type": "function", "name": "open", "parameters": {
         "type": "object", "properties": {"vector_store_ids": {"type": "string"}, "container": {"type": "string"}}}}]}),
    ("a new code interpreter container", RESPONSES[0],
     {**ASK_RESPONSES, "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}),
    ("escaped text", CHAT[1], {**ASK_CHAT, "messages": [{"role": "user", "content": "caf\u00e9"}]}),
    ("an Anthropic tool whose input names a container", MESSAGES[1],
     {**ASK_MESSAGES, "messages": [
         {"role": "user", "content": "Say hello"},
         {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "open",
                                            "input": {"container": "c"}}]},
         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}]}),
]


@pytest.mark.parametrize(("route", "body"), [pytest.param(route, body, id=name) for name, route, body in ALLOWED])
def test_an_ordinary_request_goes_through(tmp_path, route, body):
    async def scenario(gw: InProcess, fake: FakeProvider) -> None:
        answer = await gw.call("POST", route, body=body, key=gw.secret_key)
        assert answer.status == 200, answer.body
        assert fake.last().json()["messages" if "messages" in body else "input"] == body.get("messages",
                                                                                              body.get("input"))
    run(tmp_path, scenario)


def test_a_body_without_the_markers_is_not_parsed(tmp_path, monkeypatch):
    def parse(body: Any) -> None:
        raise AssertionError(f"parsed {body!r}")
    monkeypatch.setattr(ownership, "_parse_unique", parse)
    monkeypatch.setattr(ownership, "named_ids", parse)
    # keys that end in `id` but are none of `id`, `previous_response_id`: a tool's parameters, a call's id
    tool = {"type": "function", "name": "order", "parameters": {"type": "object", "properties": {
        "user_id": {"type": "string"}, "order_id": {"type": "string"}}}}
    calls = [{"role": "user", "content": "Where is my order?"},
             {"type": "function_call_output", "call_id": "call_1", "output": "shipped"}]

    async def scenario(gw: InProcess, fake: FakeProvider) -> None:
        # json.dumps escapes all non-ASCII (and a Go client escapes <, > and &): escapes that spell no key's letter
        escaped = [{"role": "user", "content": "Привет <b>café</b> & 日本"}]
        for route, body in [(CHAT[0], {**ASK_CHAT, "messages": user()}), (RESPONSES[1], ASK_RESPONSES),
                            (MESSAGES[1], {**ASK_MESSAGES, "messages": user()}), (GEMINI, ASK_GEMINI),
                            (CHAT[0], {**ASK_CHAT, "messages": escaped}),
                            (RESPONSES[1], {**ASK_RESPONSES, "input": escaped}),
                            (RESPONSES[1], {**ASK_RESPONSES, "tools": [tool]}),
                            (RESPONSES[0], {**ASK_RESPONSES, "input": calls}),
                            (CHAT[0], json.dumps({**ASK_CHAT, "messages": escaped}).replace("<", "\\u003c").encode())]:
            answer = await gw.call("POST", route, body=body, key=gw.secret_key)
            assert answer.status == 200, answer.body
    run(tmp_path, scenario)


# A key written twice in one object: the gateway's parser keeps the last, OpenAI's may keep the first. Each body
# hides a refused or unowned id first and an allowed one last. (name, body with {own} and {item} for the
# merchant's own response and output item ids, the repeated key)
REPEATED = [
    ("a previous response id", '{"previous_response_id": "resp_theirs", "previous_response_id": "{own}"}',
     "previous_response_id"),
    ("a previous response id, once escaped",
     '{"previous_response_id": "resp_theirs", "previous_\\u0072esponse_id": "{own}"}', "previous_response_id"),
    ("an item reference's id", '{"input": [{"type": "item_reference", "id": "msg_theirs", "id": "{item}"}]}', "id"),
    ("an item reference's id, once escaped",
     '{"input": [{"type": "item_reference", "\\u0069d": "msg_theirs", "id": "{item}"}]}', "id"),
    ("an input image's file id",
     '{"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-theirs", "file_id": null, '
     '"image_url": "https://example.com/a.png"}]}]}', "file_id"),
]


@pytest.mark.parametrize("route", RESPONSES)
@pytest.mark.parametrize(("body", "key"), [pytest.param(body, key, id=name) for name, body, key in REPEATED])
def test_a_repeated_key_is_refused(tmp_path, route, body, key):
    async def scenario(gw: InProcess, fake: FakeProvider) -> None:
        first = await gw.call("POST", route, body=ASK_RESPONSES, key=gw.secret_key)
        own, [item] = first.json()["id"], [i["id"] for i in first.json()["output"]]
        fields = json.dumps(ASK_RESPONSES)[1:-1]
        raw = (body.replace("{own}", own).replace("{item}", item)[:-1] + ", " + fields + "}").encode()
        if b'"input"' in raw:  # the asked input is the body's own
            raw = raw.replace(b', "input": "Say hello"', b"")
        answer = await refused(gw, fake, route, raw, gw.secret_key)
        message = (f"{key}: the key is repeated in one object; providers may read another occurrence than the "
                   "gateway, so it cannot check which stored objects the request names")
        assert (answer.status, answer.json()) == (400, refusal(route, message, key))
        answer = await gw.call("POST", route, body=raw.replace(b"_theirs", b"").replace(b"theirs", b""),
                               key=encode_forward_token(gw.secret_key, provider_key="sk-their-own"))
        assert answer.status == 200, answer.body  # BYOK: not the gateway's to check
    run(tmp_path, scenario)


# Token counts are free, so billing does not parse their bodies: a body the gateway cannot read as JSON (another
# Unicode encoding, which a provider may detect as Python's json.loads does, or a compressed one) would go up with
# the stored objects it names unchecked. (name, route, body, extra headers)
UNREADABLE = [
    ("another merchant's response in UTF-16", "/providers/openai/v1/responses/input_tokens",
     json.dumps({**ASK_RESPONSES, "previous_response_id": "{rid}"}).encode("utf-16"), {}),
    ("another merchant's response in UTF-32", "/providers/openai/v1/responses/input_tokens",
     json.dumps({**ASK_RESPONSES, "previous_response_id": "{rid}"}).encode("utf-32-le"), {}),
    ("an Anthropic container, compressed", "/providers/anthropic/v1/messages/count_tokens",
     gzip.compress(json.dumps({**ASK_MESSAGES, "container": "container_theirs", "messages": user()}).encode()),
     {"content-encoding": "gzip"}),
    ("an Anthropic container in UTF-16", "/providers/anthropic/v1/messages/count_tokens",
     json.dumps({**ASK_MESSAGES, "container": "container_theirs", "messages": user()}).encode("utf-16"), {}),
    ("a Gemini cached context, compressed", GEMINI.replace(":generateContent", ":countTokens"),
     gzip.compress(json.dumps({**ASK_GEMINI, "cachedContent": "cachedContents/theirs"}).encode()),
     {"content-encoding": "gzip"}),
]


@pytest.mark.parametrize(("route", "body", "headers"),
                         [pytest.param(route, body, headers, id=name) for name, route, body, headers in UNREADABLE])
def test_a_token_count_the_gateway_cannot_read_is_refused(tmp_path, route, body, headers):
    async def scenario(gw: InProcess, fake: FakeProvider) -> None:
        rid = (await gw.call("POST", RESPONSES[1], body=ASK_RESPONSES, key=gw.secret_key)).json()["id"]
        other = (await gw.svc.store.create_merchant("other", parse_usd("10", "balance")))[1]
        raw = body.replace("{rid}".encode("utf-16")[2:], rid.encode("utf-16")[2:]).replace(
            "{rid}".encode("utf-32-le"), rid.encode("utf-32-le"))
        before = len(fake.received)
        answer = await gw.call("POST", route, body=raw, key=other,
                               headers={"content-type": "application/json", **headers})
        assert len(fake.received) == before, "a body the gateway could not read reached the provider"
        assert answer.status == 400, answer.body
    run(tmp_path, scenario)
