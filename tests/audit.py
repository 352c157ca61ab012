"""After a fault: nothing lost, nothing made, nothing billed twice. Reads the shared PostgreSQL ledger directly.

`audit()` checks, for the requests one workload (tests/workload.py) sent, marked `<prefix>-<n>`:
- every request the fake provider received is in the request log, served and billed exactly once, and its
  transfers in the ledger are what its row says it cost (a request the provider never saw costs nothing);
- every answer the client got whole with a 200 has its row, under the request id the client was given;
- no payer's balance (merchant, customer, the operator's revenue) is below zero;
- the sum over all accounts other than the operator's funding account changed by exactly what the funding account
  gave out: money was neither made nor lost;
- `edge-proxy ledger verify` passes.
Records may still be on their way (a region's journal drains when the database returns): the audit waits for
them, bounded by a generous timeout, before it judges.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from .fake_provider import FakeProvider
from .gateway_process import cli
from .workload import Answer


@dataclass(frozen=True)
class Totals:
    others: int    # the sum over every account but the operator's funding account
    funding: int   # the funding account: minus everything funded so far


async def _fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    return asyncio.run(_fetch(url, query, *args))


def totals(url: str) -> Totals:
    [row] = fetch(url, """
        SELECT (SELECT coalesce(sum(balance_nanos), 0) FROM merchants)
             + (SELECT coalesce(sum(balance_nanos), 0) FROM customers)
             + (SELECT coalesce(sum(balance_nanos), 0) FROM ledger_accounts WHERE account_id <> 'funding'),
               (SELECT coalesce(sum(balance_nanos), 0) FROM ledger_accounts WHERE account_id = 'funding')""")
    return Totals(int(row[0]), int(row[1]))


def received(providers: Iterable[FakeProvider], prefix: str) -> Counter[str]:
    """How many times the provider(s) received each marker of this workload."""
    out: Counter[str] = Counter()
    for provider in providers:
        for req in list(provider.received):
            try:
                marker = req.json().get("user", "")
            except ValueError:
                continue
            if isinstance(marker, str) and marker.startswith(prefix + "-"):
                out[marker] += 1
    return out


def _rows(url: str, prefix: str) -> dict[str, list[dict]]:
    """This workload's request-log rows, by marker, each with the transfers posted under its request id."""
    rows = fetch(url, "SELECT request_id, merchant_id, status_code, payer, charge_nanos, operator_nanos, "
                      "uncollected_nanos, metadata, region FROM requests WHERE metadata LIKE $1",
                 f'%"marker":"{prefix}-%')
    legs = fetch(url, "SELECT merchant_id, request_id, kind, amount_nanos FROM transfers WHERE request_id IN "
                      "(SELECT request_id FROM requests WHERE metadata LIKE $1)", f'%"marker":"{prefix}-%')
    by_request: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for leg in legs:
        by_request[(leg["merchant_id"], leg["request_id"])].append((leg["kind"], int(leg["amount_nanos"])))
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        row = dict(r)
        row["legs"] = by_request.get((r["merchant_id"], r["request_id"]), [])
        out[json.loads(r["metadata"])["marker"]].append(row)
    return out


def _served(row: dict) -> bool:
    return 0 < row["status_code"] < 400


def _billed_once(marker: str, rows: list[dict]) -> list[str]:
    served = [r for r in rows if _served(r)]
    if len(served) != 1:
        return [f"{marker}: the provider received it, and the log has {len(served)} served rows for it"]
    row = served[0]
    charged = sum(a for kind, a in row["legs"] if kind == "charge")
    paid = sum(a for kind, a in row["legs"] if kind in ("provider_cost", "fee"))
    problems = []
    if row["charge_nanos"] + row["operator_nanos"] + row["uncollected_nanos"] <= 0:
        problems.append(f"{marker} ({row['request_id']}) was served and is free")
    want_charge = row["charge_nanos"] if row["payer"] == "customer" else 0
    if (charged, paid) != (want_charge, row["operator_nanos"]):
        problems.append(f"{marker} ({row['request_id']}): row says charge {want_charge} / operator "
                        f"{row['operator_nanos']}, transfers say {charged} / {paid}")
    return problems


def _problems(url: str, prefix: str, provider_saw: Counter[str], answers: list[Answer]) -> list[str]:
    by_marker = _rows(url, prefix)
    problems: list[str] = []
    for marker in sorted(provider_saw):
        problems += _billed_once(marker, by_marker.get(marker, []))
    for marker, rows in by_marker.items():
        if marker not in provider_saw and any(r["legs"] or r["charge_nanos"] or r["operator_nanos"] for r in rows):
            problems.append(f"{marker}: the provider never received it, yet it was billed")
    logged = {r["request_id"]: r for rows in by_marker.values() for r in rows}
    for a in answers:
        if a.status == 200 and a.whole and (a.request_id not in logged or not _served(logged[a.request_id])):
            problems.append(f"{a.marker}: answered 200 as {a.request_id}, which the log does not hold as served")
    return problems


def wait_settled(url: str, prefix: str, provider_saw: Counter[str], answers: list[Answer],
                 timeout: float = 90) -> list[str]:
    """The problems left once the records have landed (polled until none are left, or `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        problems = _problems(url, prefix, provider_saw, answers)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.5)


def audit(url: str, env: dict[str, str], providers: Iterable[FakeProvider], prefix: str, answers: list[Answer],
          before: Totals, timeout: float = 90) -> dict[str, int]:
    """Assert everything the module docstring lists; returns counts for the test's own checks."""
    provider_saw = received(providers, prefix)
    problems = wait_settled(url, prefix, provider_saw, answers, timeout)
    assert problems == [], "\n".join(problems[:30])
    [low] = fetch(url, "SELECT least((SELECT min(balance_nanos) FROM merchants), "
                       "(SELECT coalesce(min(balance_nanos), 0) FROM customers), "
                       "(SELECT coalesce(min(balance_nanos), 0) FROM ledger_accounts WHERE account_id <> 'funding'))")
    assert low[0] >= 0, f"a balance is below zero: {low[0]} nanos"
    after = totals(url)
    assert after.others - before.others == before.funding - after.funding, (before, after)
    assert after.others + after.funding == 0, f"the accounts sum to {after.others + after.funding} nanos, not zero"
    report = cli(env, "ledger", "verify", check=False)
    assert report.returncode == 0, report.stdout + report.stderr
    assert json.loads(report.stdout)["ok"] is True, report.stdout
    return {"provider_received": sum(provider_saw.values()), "markers": len(provider_saw)}
