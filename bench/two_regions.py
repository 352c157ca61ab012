"""Two regions on loopback, as issue 15 deploys them: per region a Redis (standalone or a 6-node Cluster), gateway
processes with EDGE_PROXY_REGION, and HAProxy in front; every region on one PostgreSQL database (the ledger).

bench/locust_regions.py drives it. Stopping: `Regions.stop()` (its caller's `finally`, so also on Ctrl-C and on
error) stops the gateways with SIGTERM, so they drain their log queues into the ledger, then HAProxy and Redis.
Should the caller die without it, the servers still stop by themselves: Redis dies with it (tests/processes.py's
`setpriv --pdeathsig`), and the gateways and HAProxy run under `timeout`, bounded by `lifetime` seconds.
"""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness as h

from tests.redis_cluster import LocalRedisCluster
from tests.redis_server import RedisServer

HAPROXY_CFG = """\
global
    maxconn 2000
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend edge
    bind 127.0.0.1:{port}
    default_backend gateways
backend gateways
    # streams last: send new requests where the fewest are open (as deploy/haproxy.cfg does)
    balance leastconn
    option httpchk GET /healthz
    http-check expect status 200
{servers}
"""


def bounded(lifetime: float) -> list[str]:
    """A prefix that ends a command after `lifetime` seconds even if nobody stops it (SIGTERM, then SIGKILL)."""
    return ["timeout", "--kill-after=10", str(int(lifetime))]


@dataclass
class Region:
    """One region: its Redis, its gateway processes and its load balancer."""

    name: str
    redis: RedisServer | LocalRedisCluster
    gateways: list[h.Proc] = field(default_factory=list)
    gateway_ports: list[int] = field(default_factory=list)
    balancer: h.Proc | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{h.HOST}:{self.port}"

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def redis_masters(self) -> list[Any]:
        if isinstance(self.redis, LocalRedisCluster):
            return [self.redis.node(port).client() for port in self.redis.masters()]
        return [self.redis.client()]

    def redis_counts(self, masters: list[Any]) -> collections.Counter[str]:
        """What the region's Redis masters have done so far (replicas only repeat it), from one INFO each:
        calls per command ("cmd:<name>", the commands Lua scripts run included, as INFO commandstats counts them)
        and "round trips": reads from client sockets, so a pipeline or a script is one. The replicas' REPLCONF
        ACKs and this INFO itself are left out of both."""
        counts: collections.Counter[str] = collections.Counter()
        for client in masters:
            info = client.info("all")
            for key, stat in info.items():
                if key.startswith("cmdstat_"):
                    counts["cmd:" + key.removeprefix("cmdstat_")] += int(stat["calls"])
            counts["round trips"] += int(info["total_reads_processed"]) - 1
        counts["round trips"] -= counts.pop("cmd:replconf", 0)
        counts.pop("cmd:info", None)
        return counts


    def lease_counts(self, workers: int) -> dict[str, int]:
        """Reservations the workers admitted from their own leases, and those that called the balance store (Redis,
        and the database when the region's lease must grow), from the gateways' /metrics. Whichever worker answers
        reports the whole gateway (prometheus-client's multiprocess mode); workers publish a few times a second, so
        the scrape waits a moment after the load."""
        time.sleep(0.6)
        hits = calls = 0
        for port in self.gateway_ports:
            with urllib.request.urlopen(f"http://{h.HOST}:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
            hits += _counter(text, "edge_proxy_balance_lease_hits_total")
            calls += _counter(text, "edge_proxy_balance_store_calls_total")
        return {"workers": workers * len(self.gateway_ports), "lease_hits": hits, "store_calls": calls}


def _counter(metrics: str, name: str) -> int:
    """A counter's value summed over its series, from Prometheus text."""
    found = re.findall(rf'^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$', metrics, re.M)
    if not found:
        raise RuntimeError(f"/metrics has no {name}")
    return int(sum(float(v) for v in found))


def gateway_env(region: str, database_url: str, redis_url: str, upstream_port: int, spill: Path) -> dict[str, str]:
    return h.gateway_env(spill.parent / "unused.db", f"http://{h.HOST}:{upstream_port}/v1", {
        "EDGE_PROXY_DATABASE_URL": database_url, "EDGE_PROXY_REDIS_URL": redis_url, "EDGE_PROXY_REGION": region,
        "EDGE_PROXY_SPILL_DIR": str(spill)})


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{h.HOST}:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _wait_healthy(port: int, proc: h.Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _healthy(port):
        if proc.popen is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} /healthz never answered 200:\n{proc.log_text()[-3000:]}")
        time.sleep(0.1)


class Regions:
    """Start with `start()`, always `stop()`. `deployment` is "standalone" or "cluster"."""

    def __init__(self, tmp: Path, deployment: str, database_url: str, upstream_port: int, names: list[str],
                 gateways_per_region: int, workers: int, lifetime: float) -> None:
        self.tmp = tmp
        self.deployment = deployment
        self.database_url = database_url
        self.upstream_port = upstream_port
        self.names = names
        self.gateways_per_region = gateways_per_region
        self.workers = workers
        self.lifetime = lifetime
        self.regions: list[Region] = []

    def start(self) -> Regions:
        haproxy, note = h.ensure_tool("haproxy", ["haproxy"], allow_install=True)
        if haproxy is None:
            raise RuntimeError(note)
        for name in self.names:
            server = LocalRedisCluster() if self.deployment == "cluster" else RedisServer()
            self.regions.append(Region(name, server))
            server.start()
        # Every gateway starts at once, as a fleet does (the caller made the schema first, with the CLI).
        for region in self.regions:
            for i in range(self.gateways_per_region):
                self._start_gateway(region, i)
        for region in self.regions:
            for port, proc in zip(region.gateway_ports, region.gateways):
                _wait_healthy(port, proc)
            self._start_balancer(region, haproxy)
        return self

    def _start_gateway(self, region: Region, i: int) -> None:
        port = h.free_port()
        spill = self.tmp / f"{self.deployment}-{region.name}-{i}" / "spill"
        spill.parent.mkdir(parents=True)
        env = gateway_env(region.name, self.database_url, region.redis_url, self.upstream_port, spill)
        argv = [*bounded(self.lifetime), h.PYTHON, "-m", "edge_proxy", "serve", "--port", str(port),
                "--workers", str(self.workers)]
        region.gateways.append(h.Proc(f"gateway {region.name}-{i}", argv, spill.parent / "gateway.log", env=env).start())
        region.gateway_ports.append(port)

    def _start_balancer(self, region: Region, haproxy: str) -> None:
        region.port = h.free_port()
        servers = "\n".join(f"    server g{i} {h.HOST}:{p} check inter 1s" for i, p in enumerate(region.gateway_ports))
        cfg = self.tmp / f"{self.deployment}-{region.name}-haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=region.port, servers=servers))
        region.balancer = h.Proc(f"haproxy {region.name}", [*bounded(self.lifetime), haproxy, "-f", str(cfg), "-db"],
                                 cfg.with_suffix(".log")).start()
        h.wait_port(region.port, 20, region.balancer.popen, region.balancer.name)
        _wait_healthy(region.port, region.balancer)

    def stop_gateways(self) -> None:
        """SIGTERM every gateway at once and wait: each drains its log queue into the ledger within its grace
        (EDGE_PROXY_SHUTDOWN_GRACE, 30 s); one still running after that is killed."""
        procs = [p for r in self.regions for p in r.gateways if p.popen is not None and p.popen.poll() is None]
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 40
        for p in procs:
            assert p.popen is not None
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.stop(timeout=1)

    def stop(self) -> None:
        try:
            self.stop_gateways()
        finally:  # even when a second Ctrl-C cuts the wait short
            for region in self.regions:
                if region.balancer is not None:
                    region.balancer.stop()
                region.redis.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_text()[-2000:]}" for r in self.regions for p in r.gateways)


def post_json(url: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    """A POST to the gateway's REST API, as a merchant: the answer's JSON, or RuntimeError with its body."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"POST {url}: {exc.code} {exc.read()[:300]!r}") from None
