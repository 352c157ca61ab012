"""Faults under load across two regions, with real processes, and after each: nothing lost, nothing billed twice.

The world (one per module, and so one per xdist worker that runs these tests): region "eu" is two gateway
processes on a 6-node Redis Cluster (3 masters, 3 replicas), region "us" two gateway processes on a standalone
redis-server, and both regions write one private PostgreSQL database. A fake provider of the module's own serves
them all. tests/workload.py drives all four gateways at once with a merchant's key, a customer's forward token and
a spend key, plain and streamed; tests/audit.py then checks that every request the provider received is billed
exactly once, no balance is below zero, money was neither made nor lost, and `edge-proxy ledger verify` passes.

Each test leaves the world as it found it (a killed node restarted, the provider back), so they run in any order.
Loads are bounded by count; waits are bounded by generous timeouts; nothing asserts how long anything took.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import pytest

from edge_proxy.billing.payer import Payer

from .audit import audit, totals
from .billing_helpers import customer, h, meter, token
from .fake_provider import FakeProvider
from .gateway_process import ROOT, GatewayProcess, base_env, cli
from .redis_cluster import LocalRedisCluster
from .redis_server import RedisServer
from .workload import Credential, Workload

SLOW_MODEL = "gpt-4o-mini+fake-slow-stream"   # a stream that sends an event, then one every slow_seconds
REGIONS = ("eu", "us")                          # eu: Redis Cluster; us: standalone Redis


@dataclass
class World:
    url: str                                    # the shared PostgreSQL database
    cluster: LocalRedisCluster
    standalone: RedisServer
    providers: list[FakeProvider]               # the provider, and each one started after an outage
    gateways: dict[str, list[GatewayProcess]] = field(default_factory=dict)
    credentials: list[Credential] = field(default_factory=list)
    payers: list[Payer] = field(default_factory=list)

    @property
    def provider(self) -> FakeProvider:
        return self.providers[-1]

    @property
    def urls(self) -> list[str]:
        return [g.url for region in REGIONS for g in self.gateways[region]]

    def env(self, region: str = "eu") -> dict[str, str]:
        return self.gateways[region][0].env

    def load(self, prefix: str, **kwargs) -> Workload:
        return Workload(self.urls, self.credentials, prefix=prefix, **kwargs)

    def new_customer(self, on_master: int | None = None) -> tuple[Payer, Credential]:
        """A funded customer no gateway has served yet (so its first requests need Redis and the database), on
        the cluster master `on_master` if given."""
        gw = self.gateways["eu"][0]
        for _ in range(30):
            payer = Payer("customer", customer(gw, gw.secret_key, "5"))
            if on_master is None or self.cluster.master_for_key(payer.redis_key) == on_master:
                return payer, Credential("new_customer", token(gw.secret_key, customer_id=payer.id,
                                                               meter_slug="chat"))
        raise AssertionError(f"no new customer landed on the master at {on_master}")

    def check(self, prefix: str, answers, before) -> dict[str, int]:
        return audit(self.url, self.env(), self.providers, prefix, answers, before)


def _prices(tmp: Path) -> Path:
    prices = tmp / "prices.toml"
    prices.write_text((ROOT / "tests" / "fixtures" / "prices_override.toml").read_text()
                      + f'\n[openai."{SLOW_MODEL}"]\ninput = "0.15"\noutput = "0.60"\nmax_output_tokens = 16384\n')
    return prices


def _gateways(world: World, tmp: Path) -> None:
    prices = _prices(tmp)
    redis_urls = {"eu": world.cluster.url, "us": world.standalone.url}
    merchant: dict | None = None
    for region in REGIONS:
        world.gateways[region] = []
        for i in range(2):
            env = base_env(tmp / "unused.db", world.provider.url, {
                "EDGE_PROXY_DATABASE_URL": world.url, "EDGE_PROXY_REDIS_URL": redis_urls[region],
                "EDGE_PROXY_REGION": region, "EDGE_PROXY_PRICES_FILE": str(prices),
                "EDGE_PROXY_SPILL_DIR": str(tmp / f"spill-{region}-{i}")})
            g = GatewayProcess(env)
            if merchant is not None:  # one merchant, created once, served by every gateway
                g.create_merchant = lambda *a, m=merchant, **k: m  # type: ignore[method-assign]
            world.gateways[region].append(g.start(tmp))
            merchant = merchant or {"secret_key": g.secret_key, "merchant_id": g.merchant_id}


def _payers(world: World) -> None:
    gw = world.gateways["eu"][0]
    key = gw.secret_key
    meter(gw, key, "chat", "fixed", "tokens_1m", [(0, "2.00")])
    cus = customer(gw, key, "20")
    r = httpx.post(f"{gw.url}/v1/spend_keys", json={"name": "faults"}, headers=h(key), timeout=10)
    assert r.status_code == 201, r.text
    world.credentials = [Credential("merchant", key),
                         Credential("customer", token(key, customer_id=cus, meter_slug="chat")),
                         Credential("spend_key", r.json()["key"])]
    world.payers = [Payer("merchant", gw.merchant_id), Payer("customer", cus)]


@pytest.fixture(scope="module")
def world(private_postgres, tmp_path_factory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("faults")
    private_postgres.ensure_running()
    provider = FakeProvider()
    provider.slow_seconds = 0.1
    provider.start_in_thread()
    w = World(private_postgres.create_database(), LocalRedisCluster(), RedisServer(), [provider])
    try:
        w.cluster.start()
        w.standalone.start()
        _gateways(w, tmp)
        _payers(w)
        # every gateway has verified every credential and holds its region's leases before any fault
        answers = w.load("warm", clients=4, requests=4 * len(w.credentials) * 2).run()
        assert {a.status for a in answers} == {200}, [(a.status, a.error) for a in answers]
        yield w
    finally:
        for gateways in w.gateways.values():
            for g in gateways:
                g.stop()
        w.cluster.stop()
        w.standalone.stop()
        w.providers[-1].stop_thread()
        private_postgres.ensure_running()
        private_postgres.drop_database(w.url)


def _answered(answers, allowed: set[int]) -> dict[int, int]:
    """Every request got an answer of an allowed kind; returns the count per status."""
    by_status: dict[int, int] = {}
    for a in answers:
        by_status[a.status] = by_status.get(a.status, 0) + 1
    unexpected = [(a.marker, a.status, a.error) for a in answers if a.status not in allowed]
    assert unexpected == [], unexpected[:20]
    assert by_status.get(200, 0) > 0, by_status
    return by_status


def test_a_cluster_master_killed_with_kill_9_under_load_fails_over_and_loses_nothing(world):
    before = totals(world.url)
    master = world.cluster.master_for_key(world.payers[1].redis_key)  # the customer's master
    _, newcomer = world.new_customer(on_master=master)
    with world.load("kill9", requests=300) as load:
        load.wait_for(80)
        world.cluster.kill(master)
        load.add(newcomer)  # its first requests need the dead master's slots: a 503 until the replica takes over
        try:
            new = world.cluster.wait_for_failover(master)  # the cluster's own failover (node timeout 1 s)
            load.wait_for(300, timeout=120)
        finally:
            world.cluster.restart(master)  # it rejoins as the new master's replica
    world.cluster.wait_ok()
    answers = load.answers
    assert new != master
    by_status = _answered(answers, {200, 503})
    assert sum(by_status.values()) == 300
    assert any(a.kind == "new_customer" and a.status == 200 for a in answers)  # served once the replica took over
    world.check("kill9", answers, before)


def test_a_slot_migration_under_load_moves_the_payers_keys_and_loses_nothing(world):
    before = totals(world.url)
    cluster = world.cluster
    newcomer, credential = world.new_customer()
    payers = [*world.payers, newcomer]
    with world.load("reshard", requests=300) as load:
        load.wait_for(60)
        # the steps `redis-cli --cluster reshard` takes, for every payer's slot at once: importing/migrating,
        # MIGRATE the keys, then hand the slots over; traffic runs through each step
        slots = [cluster.slot_of(p.redis_key) for p in payers]
        moves = {}
        for slot in slots:
            if slot not in moves:
                to = next(p for p in cluster.masters() if p != cluster.owner(slot))
                moves[slot] = (cluster.begin_migration(slot, to), to)
        load.add(credential)  # a payer first seen while its slot is between owners
        load.wait_for(len(load.answers) + 30)
        for slot, (src, dst) in moves.items():
            cluster.move_keys(slot, src, dst)
        load.wait_for(len(load.answers) + 30)
        for slot, (_, dst) in moves.items():
            cluster.finish_migration(slot, dst)
        load.wait_for(300, timeout=120)
    answers = load.answers
    for slot, (_, dst) in moves.items():
        assert cluster.owner(slot) == dst
    _answered(answers, {200, 503})
    assert any(a.kind == "new_customer" and a.status == 200 for a in answers)
    world.check("reshard", answers, before)


def test_redis_frozen_then_thawed_then_flushed_and_rebuilt_from_the_ledger(world):
    before = totals(world.url)
    nodes = [n.port for n in world.cluster.nodes]
    _, newcomer = world.new_customer()
    with world.load("freeze", requests=200) as load:
        load.wait_for(50)
        for port in nodes:  # every node at once, so no replica takes over: the whole cluster stands still
            world.cluster.freeze(port)
        world.standalone.freeze()
        try:
            load.add(newcomer)  # no region holds a lease for it, and no Redis answers: refused, fast
            frozen_from = len(load.answers)
            frozen_to = load.wait_for(frozen_from + 40, timeout=60)  # answers while both regions' Redis is frozen
        finally:
            for port in nodes:
                world.cluster.thaw(port)
            world.standalone.thaw()
        load.wait_for(200, timeout=120)
    world.cluster.wait_ok()
    answers = load.answers
    during = [(a.kind, a.status) for a in answers[frozen_from:frozen_to]]
    assert ("customer", 200) in during, during  # served from the leases the regions hold
    assert {status for kind, status in during if kind == "new_customer"} == {503}, during
    _answered(answers, {200, 503})
    world.check("freeze", answers, before)

    world.cluster.flushall()  # Redis loses everything; the ledger rebuilds it
    world.standalone.client().flushall()
    world.standalone.client().script_flush()
    for region in REGIONS:
        out = json.loads(cli(world.env(region), "balances", "reconcile").stdout)
        assert out["payers"] >= 2, out
    answers_after = world.load("flushed", requests=120).run()
    assert {a.status for a in answers_after} == {200}, [(a.status, a.error) for a in answers_after][:20]
    world.check("flushed", answers_after, before)


def test_postgresql_restarted_under_load_regions_serve_within_leases_and_records_land_after(world,
                                                                                            private_postgres):
    before = totals(world.url)
    _, newcomer = world.new_customer()
    with world.load("pgrestart", requests=300) as load:
        load.wait_for(60)
        private_postgres.stop_server()
        try:
            load.add(newcomer)  # no region holds a lease for it, and none can take one now: refused
            down_from = len(load.answers)
            down_to = load.wait_for(down_from + 60, timeout=60)
        finally:
            private_postgres.start_server()
        load.wait_for(300, timeout=120)
    answers = load.answers
    during = [(a.kind, a.status) for a in answers[down_from:down_to]]
    assert ("customer", 200) in during and ("merchant", 200) in during, during  # served within the leases held
    assert {status for kind, status in during if kind == "new_customer"} == {503}, during
    _answered(answers, {200, 503})
    world.check("pgrestart", answers, before)


def test_a_client_disconnect_storm_across_both_regions_bills_what_was_served(world):
    before = totals(world.url)
    answers = world.load("storm", clients=16, requests=240, model=SLOW_MODEL, disconnect=0.8).run()
    _answered(answers, {200})
    assert sum(1 for a in answers if a.stream and not a.whole) > 50  # a storm: most streams were cut by the client
    world.check("storm", answers, before)


def test_a_provider_outage_in_a_disconnect_storm_across_both_regions_bills_only_what_was_served(world):
    before = totals(world.url)
    port = int(world.provider.url.rsplit(":", 1)[1])
    # clients hang up on streams while the provider goes away under others: both at once, in both regions
    # The outage starts when the provider begins to stop: stopping lets its streams in flight finish, which can
    # take longer than the rest of the load, so the answers to look at are counted from that moment, not from
    # when the stop returned (a fast run once answered all but a few of them while the provider was stopping).
    with world.load("outage", requests=360, model=SLOW_MODEL, disconnect=0.5) as load:
        load.wait_for(60)
        down_from = len(load.answers)
        world.provider.stop_thread()  # the provider is gone for every gateway of both regions at once
        try:
            down_to = load.wait_for(down_from + 60, timeout=60)
        finally:
            back = FakeProvider(port=port)
            back.slow_seconds = 0.1
            back.start_in_thread()
            world.providers.append(back)
        load.wait_for(360, timeout=120)
    answers = load.answers
    during = {a.status for a in answers[down_from:down_to]}
    assert during - {200} and during <= {200, 502, 503, 504}, during
    _answered(answers, {200, 502, 503, 504})
    world.check("outage", answers, before)
