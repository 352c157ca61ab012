"""`edge-proxy mcp` driven by the official MCP SDK's own client, over stdio and streamable HTTP, against a real
gateway with the fake provider behind it: the five tools, the session's spend key, and errors as tool errors."""
from __future__ import annotations

import datetime as dt

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from edge_proxy.client import Gateway
from edge_proxy.providers import Catalogue

from .gateway_process import ROOT, free_port

TOOLS = {"login", "prompt", "call", "search", "get_provider_docs"}
HELLO = [{"role": "user", "content": "Say hello."}]


def server_env(gateway, secret_key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_PROXY_") and k != "LAVA_SECRET_KEY"}
    env["EDGE_PROXY_BASE_URL"] = gateway.url
    if secret_key:
        env["EDGE_PROXY_SECRET_KEY"] = secret_key
    return env


@contextlib.asynccontextmanager
async def stdio_session(gateway, tmp_path, secret_key: str | None) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "edge_proxy", "mcp"],
                                   env=server_env(gateway, secret_key), cwd=str(ROOT))
    with open(tmp_path / "mcp-server.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


class Tools:
    """Calls tools on one MCP session; a result is (ok, JSON answer or error text)."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def __call__(self, name: str, **arguments: Any) -> tuple[bool, Any]:
        result = await self.session.call_tool(name, arguments)
        is_error = getattr(result, "is_error", None)
        if is_error is None:  # mcp 1.x spells it isError
            is_error = result.isError
        text = "".join(getattr(c, "text", "") for c in result.content)
        return (False, text) if is_error else (True, json.loads(text))

    async def ok(self, name: str, **arguments: Any) -> Any:
        ok, answer = await self(name, **arguments)
        assert ok, f"{name} failed: {answer}"
        return answer

    async def error(self, name: str, **arguments: Any) -> str:
        ok, answer = await self(name, **arguments)
        assert not ok, f"{name} should have failed: {answer}"
        return answer


def run_mcp(gateway, tmp_path, scenario, secret_key: str | None = "") -> Any:
    """Run `scenario(tools)` against a fresh stdio server (secret_key "" means the gateway's own merchant)."""
    key = gateway.secret_key if secret_key == "" else secret_key

    async def go():
        async with stdio_session(gateway, tmp_path, key) as session:
            return await scenario(Tools(session))
    try:
        return asyncio.run(asyncio.wait_for(go(), 60))
    except BaseException:
        log = tmp_path / "mcp-server.log"
        print(log.read_text() if log.exists() else "(no server log)")
        raise


@pytest.fixture
def merchant(gateway) -> str:
    return gateway.create_merchant("mcp-test", "10")["secret_key"]


def spend_keys_of(gateway, key: str) -> list[dict]:
    with Gateway(key, gateway.url) as gw:
        return gw.spend_keys.list(limit=100)["data"]


# -- the tool list ------------------------------------------------------------------------------------------------------
def test_the_server_offers_exactly_the_five_tools_each_described(gateway, tmp_path):
    async def scenario(tools: Tools):
        return (await tools.session.list_tools()).tools
    listed = run_mcp(gateway, tmp_path, scenario)
    assert {t.name for t in listed} == TOOLS and len(listed) == 5
    by_name = {t.name: t for t in listed}
    for tool in listed:
        assert tool.description and len(tool.description) > 40
    schema = getattr(by_name["prompt"], "input_schema", None) or by_name["prompt"].inputSchema
    assert set(schema["required"]) == {"model", "messages"}
    assert {"fallbacks", "max_tokens", "temperature"} <= set(schema["properties"])
    call_schema = getattr(by_name["call"], "input_schema", None) or by_name["call"].inputSchema
    assert call_schema["required"] == ["url"] and {"method", "body", "headers"} <= set(call_schema["properties"])


# -- login ---------------------------------------------------------------------------------------------------------------
def test_login_verifies_the_key_and_provisions_one_spend_key_per_session(gateway, tmp_path, merchant):
    async def scenario(tools: Tools):
        first = await tools.ok("login")
        second = await tools.ok("login")
        return first, second
    first, second = run_mcp(gateway, tmp_path, scenario, merchant)
    assert first["logged_in"] and first["balance"] == "10" and first["merchant_id"].startswith("mer_")
    assert first["spend_key_name"].startswith("mcp-session-") and "key" not in first  # the key stays server-side
    assert second["previous_spend_key"] == first["spend_key_id"]  # logging in again revoked the old key
    assert [k["spend_key_id"] for k in spend_keys_of(gateway, merchant)] == [second["spend_key_id"]]
    # a provisioned key ends by itself, so a session that ends without logging in again leaves none for ever
    [left] = spend_keys_of(gateway, merchant)
    expires = dt.datetime.fromisoformat(left["expires_at"].replace("Z", "+00:00"))
    assert dt.timedelta(hours=23) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=24)


def test_login_takes_a_key_argument_when_the_server_has_none(gateway, tmp_path, merchant):
    async def scenario(tools: Tools):
        not_yet = await tools.error("prompt", model="gpt-4o-mini", messages=HELLO)
        no_key = await tools.error("login")
        bad = await tools.error("login", secret_key="ep_sk_not-a-key")
        good = await tools.ok("login", secret_key=merchant)
        answer = await tools.ok("prompt", model="gpt-4o-mini", messages=HELLO)
        return not_yet, no_key, bad, good, answer
    not_yet, no_key, bad, good, answer = run_mcp(gateway, tmp_path, scenario, secret_key=None)
    assert "not logged in" in not_yet and "EDGE_PROXY_SECRET_KEY" in no_key
    assert "401" in bad and "authentication_error" in bad  # the gateway's own error, and the server lives on
    assert good["logged_in"] and answer["paid_with"] == "spend_key"


# -- prompt --------------------------------------------------------------------------------------------------------------
def test_prompt_answers_the_text_model_and_usage_paid_with_the_session_spend_key(gateway, fake, tmp_path, merchant):
    async def scenario(tools: Tools):
        login = await tools.ok("login")
        answer = await tools.ok("prompt", model="gpt-4o-mini", messages=HELLO, max_tokens=16, temperature=0.2)
        return login, answer
    login, answer = run_mcp(gateway, tmp_path, scenario, merchant)
    assert answer["text"] == fake.reply_text and answer["model"] == "gpt-4o-mini"
    assert answer["usage"]["total_tokens"] > 0 and answer["paid_with"] == "spend_key"
    sent = fake.last().json()
    assert (sent["max_tokens"], sent["temperature"]) == (16, 0.2)
    deadline = time.monotonic() + 5
    while True:  # the spend key's counters are updated when the request is settled
        key = next(k for k in spend_keys_of(gateway, merchant) if k["spend_key_id"] == login["spend_key_id"])
        if key["total_requests"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert key["total_requests"] == 1


def test_prompt_reaches_any_provider_in_openai_format_and_falls_back(gateway, fake, tmp_path):
    async def scenario(tools: Tools):
        claude = await tools.ok("prompt", model="claude-haiku-4-5", messages=HELLO, max_tokens=32)
        fallback = await tools.ok("prompt", model="gpt-4o-mini-fake-error-503", messages=HELLO,
                                  fallbacks=[{"url": "api.anthropic.com/v1/messages", "model": "claude-haiku-4-5"}])
        failed = await tools.error("prompt", model="gpt-4o-mini-fake-error-503", messages=HELLO)
        streamed = await tools.error("prompt", model="gpt-4o-mini", messages=HELLO, extra={"stream": True})
        return claude, fallback, failed, streamed
    claude, fallback, failed, streamed = run_mcp(gateway, tmp_path, scenario)
    assert "leave out stream" in streamed
    assert claude["text"] == fake.reply_text and claude["model"].startswith("claude-haiku-4-5")
    assert claude["paid_with"] == "secret_key"  # not logged in: the server's secret key pays
    assert fallback["text"] == fake.reply_text and fallback["model"].startswith("claude-haiku-4-5")
    assert "503" in failed


# -- call ----------------------------------------------------------------------------------------------------------------
def test_call_sends_any_request_through_the_gateway_with_a_generated_forward_token(gateway, fake, tmp_path):
    async def scenario(tools: Tools):
        chat = await tools.ok("call", url="api.openai.com/v1/chat/completions",
                              body={"model": "gpt-4o-mini", "messages": HELLO})
        chat_seen = fake.last()
        messages = await tools.ok("call", url="https://api.anthropic.com/v1/messages",
                                  headers={"anthropic-version": "2023-06-01"},
                                  body=json.dumps({"model": "claude-haiku-4-5", "max_tokens": 16, "messages": HELLO}))
        models = await tools.ok("call", url="https://api.openai.com/v1/models", method="get")
        return chat, chat_seen, messages, models
    chat, chat_seen, messages, models = run_mcp(gateway, tmp_path, scenario)
    assert chat["status"] == 200 and chat["body"]["choices"][0]["message"]["content"] == fake.reply_text
    assert chat["request_id"].startswith("req_") and "json" in chat["content_type"]
    assert chat_seen.path == "/v1/chat/completions" and chat_seen.header("authorization") == "Bearer sk-managed-openai"
    assert messages["status"] == 200 and messages["body"]["content"][0]["text"] == fake.reply_text
    assert models["status"] == 200 and models["body"]["object"] == "list"


def test_call_bills_a_customer_on_a_meter_and_reports_errors_as_tool_errors(gateway, tmp_path, merchant):
    with Gateway(merchant, gateway.url) as gw:
        gw.meters.create(name="MCP", meter_slug="mcp-meter", rate_type="fixed", tier_type="tokens_1m",
                         tiers=[{"start": "0", "rate": "1"}])
        cid = gw.customers.create(name="Ada", balance="1")["customer_id"]
        broke = gw.customers.create(name="Broke")["customer_id"]

    async def scenario(tools: Tools):
        body = {"model": "gpt-4o-mini", "messages": HELLO}
        url = "https://api.openai.com/v1/chat/completions"
        billed = await tools.ok("call", url=url, body=body, customer_id=cid, meter_slug="mcp-meter")
        return (billed,
                await tools.error("call", url=url, body=body, customer_id=broke, meter_slug="mcp-meter"),
                await tools.error("call", url=url, body=body, customer_id=cid),
                await tools.error("call", url="https://evil.example.com/v1/chat/completions", body=body),
                await tools.error("call", url=url, body={"model": "gpt-4o-mini-fake-error-429", "messages": HELLO}))
    billed, no_funds, no_meter, forbidden, upstream = run_mcp(gateway, tmp_path, scenario, merchant)
    assert billed["status"] == 200
    with Gateway(merchant, gateway.url) as gw:
        deadline = time.monotonic() + 5
        while not gw.requests.list(customer_id=cid)["data"] and time.monotonic() < deadline:
            time.sleep(0.05)  # the log is written within ~0.2 s
        assert gw.requests.list(customer_id=cid)["data"][0]["customer_id"] == cid
    assert "402" in no_funds
    assert "customer_id requires meter_slug" in no_meter
    assert "403" in forbidden and "catalogue" in forbidden
    assert "429" in upstream  # the provider's own error, passed through


# -- search and docs -----------------------------------------------------------------------------------------------------
def test_search_finds_providers_and_models_with_examples_that_work(gateway, fake, tmp_path):
    async def scenario(tools: Tools):
        everything = await tools.ok("search")
        claude = await tools.ok("search", query="claude haiku")
        groq = await tools.ok("search", query="groq")
        provider = next(p for p in claude["providers"] if p["provider"] == "anthropic")
        ran_provider_example = await tools.ok(provider["example"]["tool"], **provider["example"]["arguments"])
        model = claude["models"][0]
        ran_model_example = await tools.ok(model["example"]["tool"], **model["example"]["arguments"])
        return everything, claude, groq, ran_provider_example, ran_model_example
    everything, claude, groq, provider_run, model_run = run_mcp(gateway, tmp_path, scenario)
    assert everything["providers_total"] == len(Catalogue.load().providers) == 28
    assert everything["models_total"] > 0 and "models_error" not in everything
    assert claude["models"] and all("claude" in m["id"] and "haiku" in m["id"] for m in claude["models"])
    assert [p["provider"] for p in claude["providers"]] == ["anthropic"]
    assert [p["provider"] for p in groq["providers"]] == ["groq"]
    assert groq["providers"][0]["forward_url"] == f"{gateway.url}/v1/forward?u=https://api.groq.com/openai/v1"
    assert provider_run["status"] == 200 and provider_run["body"]["content"][0]["text"] == fake.reply_text
    assert model_run["text"] == fake.reply_text


def test_get_provider_docs_explains_a_provider_from_the_catalogue(gateway, tmp_path):
    async def scenario(tools: Tools):
        return (await tools.ok("get_provider_docs", provider="anthropic"),
                await tools.ok("get_provider_docs", provider="googleOpenaiCompatible"),
                await tools.ok("get_provider_docs", provider="generativelanguage.googleapis.com"),
                await tools.error("get_provider_docs", provider="nope"))
    anthropic, google_compat, google, unknown = run_mcp(gateway, tmp_path, scenario)
    assert anthropic["base_url"] == "https://api.anthropic.com/v1"
    assert anthropic["docs"] == Catalogue.load().by_name("anthropic").docs
    assert anthropic["auth"]["provider_header"].startswith("x-api-key")
    assert "EDGE_PROXY_PROVIDER_KEY_ANTHROPIC" in anthropic["auth"]["managed"]
    assert {"POST https://api.anthropic.com/v1/messages"} <= {f"{e['method']} {e['url']}"
                                                              for e in anthropic["endpoints"]}
    assert "input_tokens" in anthropic["usage_format"]
    assert anthropic["gateway_urls"]["forward"].startswith(f"{gateway.url}/v1/forward?u=https://api.anthropic.com/v1")
    assert google_compat["provider"] == "google-openai-compatible" and google["provider"] == "google"
    assert "no provider 'nope'" in unknown and "openai" in unknown


# -- streamable HTTP -----------------------------------------------------------------------------------------------------
def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the MCP server exited early"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the MCP HTTP server did not come up")


@contextlib.contextmanager
def http_server(gateway, tmp_path, env_key: str | None) -> Iterator[int]:
    """`edge-proxy mcp --http` on a free port; `env_key` is the server's own EDGE_PROXY_SECRET_KEY (HTTP must
    never act with it)."""
    port = free_port()
    with open(tmp_path / "mcp-http.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edge_proxy", "mcp", "--http", "--port", str(port)],
                                env=server_env(gateway, env_key), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.asynccontextmanager
async def http_session(port: int, credential: str) -> AsyncIterator[Tools]:
    """An MCP session over streamable HTTP, through the SDK's own client, sending `credential` as the Bearer."""
    headers = {"Authorization": f"Bearer {credential}"}
    try:
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client
        transport = streamable_http_client(f"http://127.0.0.1:{port}/mcp",
                                           http_client=create_mcp_http_client(headers=headers))
    except ImportError:  # mcp 1.x
        from mcp.client.streamable_http import streamablehttp_client
        transport = streamablehttp_client(f"http://127.0.0.1:{port}/mcp", headers=headers)
    async with transport as streams, ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        yield Tools(session)


def test_streamable_http_serves_the_same_tools_and_keeps_the_login_per_session(gateway, fake, tmp_path, merchant):
    with http_server(gateway, tmp_path, None) as port:
        async def go():
            async with http_session(port, merchant) as tools:
                names = {t.name for t in (await tools.session.list_tools()).tools}
                login = await tools.ok("login")
                answer = await tools.ok("prompt", model="gpt-4o-mini", messages=HELLO)
            async with http_session(port, merchant) as tools:   # another session: not logged in
                other = await tools.ok("prompt", model="gpt-4o-mini", messages=HELLO)
            return names, login, answer, other
        names, login, answer, other = asyncio.run(asyncio.wait_for(go(), 30))
    assert names == TOOLS and login["logged_in"]
    assert answer["text"] == fake.reply_text and answer["paid_with"] == "spend_key"
    assert other["paid_with"] == "secret_key"  # one session's login never serves another


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "raw", "version": "0"}}}


def test_streamable_http_answers_401_without_the_callers_own_credential(gateway, tmp_path, merchant):
    import httpx2
    spend = Gateway(merchant, gateway.url).spend_keys.create(name="revoked-later")
    Gateway(merchant, gateway.url).spend_keys.revoke(spend["spend_key_id"])
    # the server has a key of its own in its environment: over HTTP it must never stand in for the caller's
    with http_server(gateway, tmp_path, merchant) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        accept = {"Accept": "application/json, text/event-stream"}
        for auth in [None, "", "Bearer", f"Basic {merchant}", "Bearer not-a-key",
                     "Bearer ep_sk_unknown0000000000000000000000000000000", f"Bearer {spend['key']}"]:
            headers = {**accept, **({"Authorization": auth} if auth is not None else {})}
            r = httpx2.post(url, json=INITIALIZE, headers=headers, timeout=10)
            assert r.status_code == 401, (auth, r.status_code, r.text)
            assert r.json()["error"]["type"] == "authentication_error" and merchant not in r.text
            assert r.headers["www-authenticate"].startswith("Bearer")
        ok = httpx2.post(url, json=INITIALIZE, headers={**accept, "Authorization": f"Bearer {merchant}"}, timeout=10)
        assert ok.status_code == 200 and "mcp-session-id" in ok.headers


def test_over_http_every_call_acts_with_the_callers_credential_only(gateway, fake, tmp_path, merchant):
    other = gateway.create_merchant("mcp-other", "10")
    with Gateway(merchant, gateway.url) as gw:
        spend = gw.spend_keys.create(name="agent")
    with http_server(gateway, tmp_path, merchant) as port:   # the environment's key is the first merchant's
        async def go():
            async with http_session(port, other["secret_key"]) as tools:
                login = await tools.ok("login")
                swap = await tools.error("login", secret_key=merchant)
            async with http_session(port, spend["key"]) as tools:
                spend_login = await tools.ok("login")
                paid = await tools.ok("prompt", model="gpt-4o-mini", messages=HELLO)
                called = await tools.ok("call", url="https://api.openai.com/v1/chat/completions",
                                        body={"model": "gpt-4o-mini", "messages": HELLO})
                needs_secret = await tools.error("call", url="https://api.openai.com/v1/chat/completions",
                                                 body={"model": "gpt-4o-mini", "messages": HELLO},
                                                 customer_id="cus_x", meter_slug="m")
            return login, swap, spend_login, paid, called, needs_secret
        login, swap, spend_login, paid, called, needs_secret = asyncio.run(asyncio.wait_for(go(), 60))
    assert login["merchant_id"] == other["merchant_id"] != gateway.merchant_id
    assert "acts only with the credential in your Authorization header" in swap
    assert spend_login["paid_with"] == "spend_key" and paid["paid_with"] == "spend_key"
    assert paid["text"] == fake.reply_text and called["status"] == 200
    assert "need a merchant secret key" in needs_secret
    with Gateway(merchant, gateway.url) as gw:   # the spend key's own requests were counted on it
        deadline = time.monotonic() + 10  # once the log writer has billed them
        while gw.spend_keys.retrieve(spend["spend_key_id"])["total_requests"] < 2:
            assert time.monotonic() < deadline, "the spend key's requests were never counted"
            time.sleep(0.05)
    assert spend_keys_of(gateway, other["secret_key"])   # login provisioned under the caller's merchant


def test_a_session_id_replayed_with_another_credential_gets_a_state_of_its_own():
    from edge_proxy.mcp.sessions import Sessions

    class Request:
        def __init__(self, credential: str, session: str) -> None:
            self.headers = {"authorization": f"Bearer {credential}", "mcp-session-id": session}
    sessions = Sessions("ep_sk_server_env_key")
    first = sessions.of(Request("ep_sk_alice", "s1"))
    first.spend_key = "ep_spk_alices_session_key"
    assert sessions.of(Request("ep_sk_alice", "s1")) is first
    replayed = sessions.of(Request("ep_sk_mallory", "s1"))
    assert replayed is not first and replayed.spend_key is None and replayed.secret_key == "ep_sk_mallory"
    assert sessions.of(None).secret_key == "ep_sk_server_env_key"   # stdio keeps the environment's key


def test_a_session_id_is_bound_to_the_credential_that_opened_it(gateway, tmp_path, merchant):
    import httpx2
    other = gateway.create_merchant("mcp-hijacker", "10")["secret_key"]
    with Gateway(merchant, gateway.url) as gw:
        own_spend_key = gw.spend_keys.create(name="same-merchant-agent")["key"]
    with http_server(gateway, tmp_path, None) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        accept = {"Accept": "application/json, text/event-stream"}
        opened = httpx2.post(url, json=INITIALIZE, headers={**accept, "Authorization": f"Bearer {merchant}"},
                             timeout=10)
        session = opened.headers["mcp-session-id"]
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        for intruder in (other, own_spend_key):   # another merchant, and a weaker credential of the same one
            headers = {**accept, "Authorization": f"Bearer {intruder}", "mcp-session-id": session,
                       "mcp-protocol-version": "2025-06-18"}
            assert httpx2.post(url, json=listing, headers=headers, timeout=10).status_code == 404
            assert httpx2.delete(url, headers=headers, timeout=10).status_code == 404
        owner = {**accept, "Authorization": f"Bearer {merchant}", "mcp-session-id": session,
                 "mcp-protocol-version": "2025-06-18"}
        httpx2.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=owner, timeout=10)
        still = httpx2.post(url, json=listing, headers=owner, timeout=10)
    assert still.status_code == 200 and "login" in still.text   # the intruders' DELETEs ended nothing


def test_a_revoked_secret_key_stops_its_sessions_prompts_as_the_proxy_path_does(gateway, fake, tmp_path, merchant):
    from edge_proxy.client import AuthenticationError
    with Gateway(merchant, gateway.url) as gw:
        second = gw.secret_keys.create(name="agent-host")
    with http_server(gateway, tmp_path, None) as port:
        async def go():
            async with http_session(port, second["secret_key"]) as tools:
                await tools.ok("login")
                before = await tools.ok("prompt", model="gpt-4o-mini", messages=HELLO)
                with Gateway(merchant, gateway.url) as gw:
                    gw.secret_keys.delete(second["secret_key_id"])
                    deadline = time.monotonic() + 10   # until the gateway itself refuses the key (key events)
                    while True:
                        try:
                            Gateway(second["secret_key"], gateway.url).wallet.retrieve()
                        except AuthenticationError:
                            break
                        assert time.monotonic() < deadline, "the gateway never refused the revoked key"
                        await asyncio.sleep(0.05)
                after = await tools.error("prompt", model="gpt-4o-mini", messages=HELLO)
            return before, after
        before, after = asyncio.run(asyncio.wait_for(go(), 60))
    assert before["paid_with"] == "spend_key"
    assert "401" in after or "no longer accepted" in after   # the session's own spend key does not outlive it


@pytest.mark.parametrize("status", [500, 502, 503, 400])
def test_a_credential_the_gateway_could_not_check_opens_no_session(gateway, tmp_path, status):
    """Only the gateway's own answer to an authenticated caller admits a credential: an error it gives before
    that (or a broken gateway's) is a 503 here, never a session for a key nobody checked."""
    import http.server
    import threading
    import types

    import httpx2

    class Broken(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"error": {"type": "server_error", "message": "down"}}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        broken_gateway = types.SimpleNamespace(url=f"http://127.0.0.1:{stub.server_address[1]}")
        with http_server(broken_gateway, tmp_path, None) as port:
            r = httpx2.post(f"http://127.0.0.1:{port}/mcp", json=INITIALIZE, timeout=10,
                            headers={"Accept": "application/json, text/event-stream",
                                     "Authorization": "Bearer ep_sk_never0checked0by0anyone0000000000000000"})
    finally:
        stub.shutdown()
        stub.server_close()
    assert r.status_code == 503 and "mcp-session-id" not in r.headers, (r.status_code, r.text)


ODD_ANSWERS = [  # (id, what the gateway answered to prompt: an OpenAI-format provider's body passes through)
    ("choices that are an object", {"choices": {"0": {}}}),
    ("a choice that is a string", {"choices": ["hi"]}),
    ("no answer object at all", [1, 2]),
]


@pytest.mark.parametrize("answer", [c[1] for c in ODD_ANSWERS], ids=[c[0] for c in ODD_ANSWERS])
def test_an_answer_without_readable_choices_is_a_tool_error(answer):
    from edge_proxy.mcp._sdk import ToolError
    from edge_proxy.mcp.server import _completion_summary

    with pytest.raises(ToolError, match="no choices"):
        _completion_summary(answer, "spend_key")


def test_content_parts_that_are_not_text_are_left_out_of_the_summary():
    from edge_proxy.mcp.server import _completion_summary

    answer = {"choices": [{"message": {"content": [{"text": "a"}, {"text": 7}, "x", {"type": "image"}]}}]}
    assert _completion_summary(answer, "spend_key")["text"] == "a"
