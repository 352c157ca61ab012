"""What a gateway worker imports at start, in the default configuration (SQLite, no Redis, tracing off): only what
serving needs. Features that are off, and parts of a feature that few requests use (the format translators, the
dashboard's pages), load with their first use; each saves every worker's memory (bench/RESULTS.md, "wave/rss").

Each case runs in a fresh interpreter: this test process has imported everything already.
"""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from .gateway_process import ROOT, GatewayProcess, base_env

# `edge-proxy serve` up to Granian's fork (settings, the catalogue, the metrics directory), then what a worker does
# after it (the app built and started on uvloop): a worker is a fork of that process, so it holds both.
WORKER = """
import asyncio, json, sys
import uvloop
from edge_proxy import cli

def worker(settings):
    import edge_proxy.app
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    app = edge_proxy.app.create_app()
    app.__rsgi_init__(loop)
    try:
        print(json.dumps(sorted(sys.modules)))
    finally:
        app.__rsgi_del__(loop)

cli._run_granian = worker
sys.exit(cli.main(["serve", "--port", "1"]))
"""

NOT_AT_START = [
    ("the dashboard's pages", "edge_proxy.dashboard.routes"),
    ("jinja2, the dashboard's templates", "jinja2"),
    ("the Anthropic request translator", "edge_proxy.unified.anthropic"),
    ("the Gemini request translator", "edge_proxy.unified.gemini"),
    ("the Responses request translator", "edge_proxy.unified.responses"),
    ("the answers' translation", "edge_proxy.unified.translation"),
    ("the token-count planner", "edge_proxy.unified.count_tokens_plan"),
    ("the embeddings planner", "edge_proxy.unified.embeddings_plan"),
    ("the MCP server", "edge_proxy.mcp.server"),
    ("the MCP SDK", "mcp"),
    ("the Python client", "edge_proxy.client"),
    ("asyncpg on SQLite", "asyncpg"),
    ("redis-py without a Redis URL", "redis"),
    ("OpenTelemetry with tracing off", "opentelemetry"),
    ("the tracer with tracing off", "edge_proxy.observability.tracing"),
    ("genai-prices, the price-source tooling", "genai_prices"),
    ("pydantic", "pydantic"),
    ("importlib.resources (zipfile with it)", "importlib.resources"),
    ("the Redis URL parser without a Redis URL", "edge_proxy.store.redis_client"),
]


@pytest.fixture(scope="module")
def worker_modules(tmp_path_factory) -> set[str]:
    tmp = tmp_path_factory.mktemp("worker")
    done = subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, env=base_env(tmp / "g.db", None),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    modules = set(json.loads(done.stdout.strip().splitlines()[-1]))
    # the run reached a started worker: what serving needs is there (so an empty list cannot pass the table below)
    assert {"edge_proxy.request_path.pipeline", "edge_proxy.services", "prometheus_client"} <= modules
    return modules


@pytest.mark.parametrize("what, module", NOT_AT_START, ids=[f"a worker starts without {w}" for w, _ in NOT_AT_START])
def test_a_worker_starts_without(worker_modules, what, module):
    assert module not in worker_modules, f"{module} ({what}) is imported at a worker's start"


# On PostgreSQL (a throwaway database on the shared test server, tests/pg.py), SQLite's driver is never used.
NOT_AT_START_ON_POSTGRES = [
    ("sqlite3 on PostgreSQL (store/db.py, store/outage.py, log_sinks)", "sqlite3"),
    ("SQLite's C module on PostgreSQL", "_sqlite3"),
]


@pytest.fixture(scope="module")
def postgres_worker_modules(tmp_path_factory) -> set[str]:
    import asyncio

    from . import pg
    tmp = tmp_path_factory.mktemp("worker-pg")
    url = asyncio.run(pg.create_database())
    try:
        env = base_env(tmp / "g.db", None, {"EDGE_PROXY_DATABASE_URL": url})
        done = subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
    finally:
        asyncio.run(pg.drop_database(url))
    assert done.returncode == 0, done.stderr
    modules = set(json.loads(done.stdout.strip().splitlines()[-1]))
    # a started worker on PostgreSQL: its driver is there, and so is what serving needs
    assert {"asyncpg", "edge_proxy.request_path.pipeline", "edge_proxy.store.db"} <= modules
    return modules


@pytest.mark.parametrize("what, module", NOT_AT_START_ON_POSTGRES,
                         ids=[f"a worker starts without {w}" for w, _ in NOT_AT_START_ON_POSTGRES])
def test_a_worker_on_postgres_starts_without(postgres_worker_modules, what, module):
    assert module not in postgres_worker_modules, f"{module} ({what}) is imported at a worker's start"


# Each worker's log writer process (`python -m edge_proxy.log_sinks.writer_process`), started with its stdin closed:
# it loads its settings, builds its billing step and exits as when its worker closes the pipe.
WRITER = """
import atexit, json, sys
out = sys.argv[1]
def done():
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
atexit.register(done)
from edge_proxy.log_sinks import writer_process
writer_process.main()  # what `python -m edge_proxy.log_sinks.writer_process` runs
"""


def test_a_log_writer_process_on_postgres_starts_without_sqlite3(tmp_path):
    env = base_env(tmp_path / "g.db", None, {"EDGE_PROXY_DATABASE_URL": "postgresql://edge@127.0.0.1:1/unused"})
    done = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path / "modules.json")], cwd=ROOT, env=env,
                          input="", capture_output=True, text=True, timeout=60, check=False)  # stdin: a closed pipe
    assert done.returncode == 0, done.stderr
    modules = set(json.loads((tmp_path / "modules.json").read_text()))
    assert {"edge_proxy.billing.engine", "edge_proxy.log_sinks", "asyncpg"} <= modules  # it reached its step
    assert "sqlite3" not in modules and "_sqlite3" not in modules


# Each lazily loaded part, used once in a fresh gateway (in-process, the fake provider upstream): it was not loaded
# before the request, the request is answered as usual, and the part is loaded after it.
FIRST_USE = """
import asyncio, json, sys, tempfile
from pathlib import Path
from tests.fake_provider import FakeProvider
from tests.inprocess import InProcess

method, path, body, module = json.loads(sys.argv[1])

async def main():
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeProvider() as fake, InProcess(Path(tmp), fake.url) as gw:
            before = module in sys.modules
            answer = await gw.call(method, path, body=body, key=gw.secret_key)
            print(json.dumps({"before": before, "after": module in sys.modules, "status": answer.status,
                              "body": answer.body.decode("utf-8", "replace")}))

asyncio.run(main())
"""

ASK = [{"role": "user", "content": "Say hello"}]
FIRST_USES = [
    ("an Anthropic-format request to an OpenAI model loads the translators",
     "POST", "/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 20, "messages": ASK},
     "edge_proxy.unified.translation", "content"),
    ("an OpenAI-format request to a Claude model loads the Anthropic translator",
     "POST", "/v1/chat/completions", {"model": "claude-haiku-4-5", "messages": ASK},
     "edge_proxy.unified.anthropic", "choices"),
    ("a token count loads its planner", "POST", "/v1/messages/count_tokens",
     {"model": "claude-haiku-4-5", "messages": ASK}, "edge_proxy.unified.count_tokens_plan", "input_tokens"),
    ("an embeddings request loads its planner", "POST", "/v1/embeddings",
     {"model": "text-embedding-3-small", "input": "hello"}, "edge_proxy.unified.embeddings_plan", "embedding"),
    ("the dashboard's sign-in page loads the pages", "GET", "/dashboard/login", None,
     "edge_proxy.dashboard.routes", "<form"),
]


@pytest.mark.parametrize("why, method, path, body, module, needle", FIRST_USES, ids=[c[0] for c in FIRST_USES])
def test_a_lazily_loaded_part_works_on_first_use(tmp_path, why, method, path, body, module, needle):
    done = subprocess.run([sys.executable, "-c", FIRST_USE, json.dumps([method, path, body, module])], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert not seen["before"], f"{module} was loaded before its first use"
    assert seen["status"] == 200, seen["body"][:500]
    assert needle in seen["body"], seen["body"][:500]
    assert seen["after"], f"{module} did not load on first use"


def _children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def test_a_log_writer_process_commits_a_batch_without_hashlib(fake, tmp_path):
    """The log writer process hashes and signs nothing: hashlib (OpenSSL's digests set up at its import, ~1 MB) and
    hmac stay out of it, also after it has written a request's record (SQLite, the default)."""
    gw = GatewayProcess(base_env(tmp_path / "g.db", fake.url)).start(tmp_path)
    try:
        r = httpx.post(gw.url + "/providers/openai/v1/chat/completions", timeout=10,
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                       headers={"Authorization": f"Bearer {gw.secret_key}"})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 20
        while True:  # the record is written by the worker's log writer process
            with sqlite3.connect(tmp_path / "g.db") as conn:
                if conn.execute("SELECT count(*) FROM requests").fetchone()[0]:
                    break
            assert time.monotonic() < deadline, gw.log()
            time.sleep(0.1)
        (worker,) = _children(gw.proc.pid)
        (writer,) = _children(worker)
        maps = Path(f"/proc/{writer}/maps").read_text()
        assert "/_sqlite3." in maps  # its database's driver: this is the writer process, at work
        assert "/_hashlib." not in maps, "the log writer process imported hashlib"
    finally:
        gw.stop()


def test_ids_keys_and_hashes_made_without_module_level_hashlib_and_secrets():
    import re

    from edge_proxy.store.base import hash_secret, new_id, new_secret_key
    assert hash_secret("ep_sk_example") == "e69c482da9af594ae095992c802500061e63885ba35c48fd2cc79a38f6a8ea7d"  # SHA-256, hex
    assert re.fullmatch(r"evt_[0-9a-f]{20}", new_id("evt"))  # 10 random bytes in hex, as secrets.token_hex(10)
    assert len({new_id("x") for _ in range(1000)}) == 1000
    key, key_hash, hint = new_secret_key()
    assert re.fullmatch(r"ep_sk_[A-Za-z0-9_-]{43}", key) and key_hash == hash_secret(key)
    assert hint == key[:10] + "..." + key[-4:]
