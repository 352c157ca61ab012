"""A gateway killed with `kill -9` under load loses nothing, and a store that stops taking writes loses nothing:
every request the provider received is in the request log exactly once, charged once, and no balance is below
zero. Real processes: the gateway (2 workers, each with its log writer process), SQLite, the fake provider."""
from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import httpx2 as httpx
import pytest

from .billing_helpers import customer, meter, token
from .fake_provider import FakeProvider
from .gateway_process import ROOT, GatewayProcess, base_env, cli

SLOW_MODEL = "gpt-4o-mini+fake-slow-stream"


@pytest.fixture
def slow_fake():
    """A provider of our own whose slow streams send an event every 0.15 s: some are always in flight."""
    server = FakeProvider()
    server.slow_seconds = 0.15
    server.start_in_thread()
    yield server
    server.stop_thread()


def gateway_env(tmp: Path, fake: FakeProvider, extra: dict[str, str] | None = None) -> dict[str, str]:
    prices = tmp / "prices.toml"
    prices.write_text((ROOT / "tests" / "fixtures" / "prices_override.toml").read_text()
                      + f'\n[openai."{SLOW_MODEL}"]\ninput = "0.15"\noutput = "0.60"\nmax_output_tokens = 16384\n')
    return base_env(tmp / "g.db", fake.url, {"EDGE_PROXY_PRICES_FILE": str(prices), **(extra or {})})


class Load:
    """Threads sending marked requests (plain, streamed, slow streams; merchant and customer) until stopped.
    Each request carries its number in the body the provider receives and in the metadata the log keeps."""

    def __init__(self, gw: GatewayProcess, customer_token: str, threads: int = 6) -> None:
        self.gw, self.customer_token = gw, customer_token
        self.stop = threading.Event()
        self.answered: dict[int, int] = {}  # number -> status, for answers that arrived whole
        self._next = iter(range(1_000_000))
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(30)

    def _one(self, n: int) -> None:
        kind = n % 4
        body: dict = {"model": SLOW_MODEL if kind == 3 else "gpt-4o-mini", "user": f"n-{n}",
                      "messages": [{"role": "user", "content": f"request number {n} " + "word " * (n % 50)}]}
        if kind >= 2:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        key = self.customer_token if kind % 2 else self.gw.secret_key
        headers = {"Authorization": f"Bearer {key}", "x-lava-metadata": json.dumps({"n": str(n)})}
        url = self.gw.url + "/providers/openai/v1/chat/completions"
        with httpx.stream("POST", url, json=body, headers=headers, timeout=10) as r:
            for _ in r.iter_raw():
                pass
            with self._lock:
                self.answered[n] = r.status_code

    def _run(self) -> None:
        while not self.stop.is_set():
            with self._lock:
                n = next(self._next)
            try:
                self._one(n)
            except httpx.HTTPError:
                time.sleep(0.05)  # the gateway is down: try again until told to stop


def received(fake: FakeProvider) -> set[int]:
    """The numbers of the requests the provider received (and so may have served)."""
    out = set()
    for req in list(fake.received):
        user = req.json().get("user", "")
        if user.startswith("n-"):
            out.add(int(user[2:]))
    return out


def logged(db: Path) -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM requests WHERE metadata IS NOT NULL")]


def wait_logged(db: Path, numbers: set[int], timeout: float = 40) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = logged(db)
        have = {int(json.loads(r["metadata"])["n"]) for r in rows}
        if numbers <= have or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def check_ledger(gw: GatewayProcess, db: Path, provider_saw: set[int], answered: dict[int, int]) -> list[dict]:
    """Every request the provider received is logged exactly once; what was charged is what left the balances."""
    rows = wait_logged(db, provider_saw)
    numbers = Counter(int(json.loads(r["metadata"])["n"]) for r in rows)
    assert [n for n, c in numbers.items() if c > 1] == [], "a request logged twice"
    assert provider_saw - set(numbers) == set(), "requests the provider received were never logged"
    assert {n for n, status in answered.items() if status == 200} <= set(numbers)
    served = [r for r in rows if 0 < r["status_code"] < 400]
    assert served and all(r["charge_nanos"] > 0 for r in served), "a served request was free"
    result = json.loads(cli(gw.env, "balances", "reconcile").stdout)
    assert result["repaired"] == 0, "balances differ from credits minus the charges in the log"
    proof = json.loads(cli(gw.env, "ledger", "verify").stdout)
    assert proof["ok"] is True, proof["problems"]
    with sqlite3.connect(db) as conn:
        low = conn.execute("SELECT min(balance_nanos) FROM (SELECT balance_nanos FROM merchants UNION ALL "
                           "SELECT balance_nanos FROM customers)").fetchone()[0]
    assert low >= 0, "a balance went below zero"
    return rows


def setup_payers(gw: GatewayProcess) -> str:
    meter(gw, gw.secret_key, "chat", "fixed", "tokens_1m", [(0, "2.00")])
    cus = customer(gw, gw.secret_key, "20")
    return token(gw.secret_key, customer_id=cus, meter_slug="chat")


def test_kill_9_under_load_loses_nothing_and_bills_each_request_the_provider_received_once(slow_fake, tmp_path):
    env = gateway_env(tmp_path, slow_fake)
    gw = GatewayProcess(env, workers=2).start(tmp_path)
    customer_token = setup_payers(gw)
    with Load(gw, customer_token) as load:
        deadline = time.monotonic() + 20
        while len(load.answered) < 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        gw.stop(signal.SIGKILL)  # the whole process group: both workers and their log writers
        killed_at = len(load.answered)
        time.sleep(0.3)
    assert killed_at >= 150, gw.log()
    journal = list((tmp_path / "spill").glob("journal-*.jnl"))
    assert journal, "the dead workers left their journals"

    again = GatewayProcess(env, workers=2).start(tmp_path)  # the same database and journal directory
    try:
        rows = check_ledger(again, tmp_path / "g.db", received(slow_fake), load.answered)
        cut = [r for r in rows if r["error_reason"] == "gateway_crashed"]
        assert cut, "slow streams were in flight at the kill: they are billed from their opened entries"
        assert all(r["usage_source"] == "estimated" and r["outcome"] == "error" and r["charge_nanos"] > 0
                   for r in cut)
        deadline = time.monotonic() + 10
        while (left := [p for p in journal if p.exists()]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], "replayed segments are deleted"
    finally:
        again.stop()


def test_a_store_that_refuses_writes_for_longer_than_a_flush_loses_nothing_and_bills_nothing_twice(
        slow_fake, tmp_path):
    env = gateway_env(tmp_path, slow_fake, {"EDGE_PROXY_LOG_SPILL_AFTER": "0.5"})
    gw = GatewayProcess(env, workers=2).start(tmp_path)
    try:
        customer_token = setup_payers(gw)
        with Load(gw, customer_token, threads=4) as load:
            time.sleep(1.0)
            blocker = sqlite3.connect(tmp_path / "g.db", isolation_level=None, timeout=5)
            blocker.execute("BEGIN EXCLUSIVE")  # every write waits for it (SQLite's busy timeout is 10 s)
            try:
                time.sleep(12)  # past the writers' busy timeout: their commits fail, records park in the journal
                spilled = sum(float(line.rsplit(" ", 1)[1]) for line in httpx.get(gw.url + "/metrics", timeout=5)
                              .text.splitlines() if line.startswith("edge_proxy_log_records_spilled_total{"))
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            time.sleep(1.0)
        assert spilled > 0, "records left memory for the journal while the store refused them"
        check_ledger(gw, tmp_path / "g.db", received(slow_fake), load.answered)
    finally:
        gw.stop()
