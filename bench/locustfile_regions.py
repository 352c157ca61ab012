"""Two regions under locust: merchant, customer and spend-key traffic, plain and streamed, to every region's load
balancer at once. bench/locust_regions.py starts the regions, writes the plan this file reads and runs it:

    LOCUST_REGIONS_PLAN=plan.json LOCUST_REGIONS_REPORT=report.json \
      .venv/bin/locust -f bench/locustfile_regions.py --headless -u 4 -r 4 -t 15s

The plan: {"regions": {"eu": "http://127.0.0.1:PORT", ...}, "credentials": {"merchant": [...], "customer": [...],
"spend_key": [...], "limited_key": [...]}}. Users are dealt to the regions in turn (user 0 to the first region, user 1 to the second,
...), so each region gets the same share. Every request is named "<region> <credential> <plain|stream>", so
locust's table splits by region; at the end the report gathers every name of a region into one line:
    {"regions": {"eu": {"requests", "failures", "rps", "p50_ms", "p99_ms", "by_credential": {kind: requests},
                        "errors": {message: count}}}}
A response counts as a failure unless it is 200 and, for a stream, ends with `data: [DONE]`.
"""
from __future__ import annotations

import itertools
import json
import os
import random
from pathlib import Path
from typing import Any

from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.stats import StatsEntry
from locust_checks import judge  # bench/ is on sys.path: locust puts the locustfile's folder there

PLAN = json.loads(Path(os.environ["LOCUST_REGIONS_PLAN"]).read_text())
REGIONS: dict[str, str] = PLAN["regions"]
CREDENTIALS: dict[str, list[str]] = PLAN["credentials"]
PATH = "/providers/openai/v1/chat/completions"
FORWARD = "/v1/forward?u=https%3A%2F%2Fapi.openai.com%2Fv1%2Fchat%2Fcompletions"
MODELS = ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"]
PROMPTS = ["Say hello.", "What is 17 * 23?", "Write a haiku about the sea."]
_next_region = itertools.cycle(REGIONS)


# (credential, streamed, path, weight): customers (forward tokens on a meter) are most of the traffic, as they are
# for a merchant's app; a "limited_key" is a spend key with a spend limit, which costs its request one Redis call
MIX = [("customer", False, PATH, 8), ("customer", True, PATH, 4), ("customer", False, FORWARD, 2),
       ("merchant", False, PATH, 4), ("merchant", True, PATH, 2),
       ("spend_key", False, PATH, 2), ("spend_key", True, PATH, 1),
       ("limited_key", False, PATH, 2), ("limited_key", True, PATH, 1)]


class RegionUser(FastHttpUser):
    wait_time = between(0.02, 0.2)
    host = next(iter(REGIONS.values()))  # locust wants one; every request names its region's URL in full

    def on_start(self) -> None:
        self.region = next(_next_region)
        self.base = REGIONS[self.region]

    @task
    def one_request(self) -> None:
        kind, stream, path, _ = random.choices(MIX, weights=[m[3] for m in MIX])[0]
        body: dict[str, Any] = {"model": random.choice(MODELS),
                                "messages": [{"role": "user", "content": random.choice(PROMPTS)}]}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        headers = {"content-type": "application/json",
                   "authorization": "Bearer " + random.choice(CREDENTIALS[kind])}
        name = f"{self.region} {kind} {'stream' if stream else 'plain'}"
        with self.client.post(self.base + path, data=json.dumps(body), headers=headers, name=name,
                              catch_response=True) as r:
            judge(r, stream)


def region_summary(entries: list[StatsEntry], errors: dict[str, int]) -> dict[str, Any]:
    """One region's line: its request names merged into one entry, so p50/p99 are over all its requests."""
    total = StatsEntry(entries[0].stats, "total", "", use_response_times_cache=False) if entries else None
    if total is None:
        return {"requests": 0, "failures": 0, "rps": 0.0, "p50_ms": None, "p99_ms": None, "errors": errors}
    for e in entries:
        total.extend(e)
    by_credential: dict[str, int] = {}
    for e in entries:
        kind = e.name.split(" ")[1]
        by_credential[kind] = by_credential.get(kind, 0) + e.num_requests
    return {"requests": total.num_requests, "failures": total.num_failures, "rps": round(total.total_rps, 1),
            "p50_ms": total.get_response_time_percentile(0.5), "p99_ms": total.get_response_time_percentile(0.99),
            "by_credential": by_credential, "errors": errors}


@events.quitting.add_listener
def write_report(environment, **_kwargs) -> None:
    stats = environment.stats
    out = {}
    for region in REGIONS:
        entries = [e for e in stats.entries.values() if e.name.split(" ", 1)[0] == region]
        errors = {f"{e.name}: {e.error}": e.occurrences for e in stats.errors.values()
                  if e.name.split(" ", 1)[0] == region}
        out[region] = region_summary(entries, errors)
    Path(os.environ["LOCUST_REGIONS_REPORT"]).write_text(json.dumps({"regions": out}, indent=2) + "\n")
