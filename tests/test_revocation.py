"""Revocation is prompt: a revoked, rotated or paused key stops working on every worker within a second, while
the principal cache still serves every other credential with a dict lookup; and refused credentials are cheap.

Two real gateway processes share one database (SQLite, or PostgreSQL), each with a principal cache that would
keep a credential for an hour. A key is used on the second (so that it is cached there) and then revoked, rotated
or paused through the first; one second later the second refuses it. With the database poll (store/key_events.py), on SQLite and on
PostgreSQL, and with Redis pub/sub and a poll a minute apart, so only the message can carry the change in time.

In-process: a flood of one unknown key reads the database once; malformed credentials never read it; a key
created after its hash was refused works at once; a revoke that races a lookup is not undone by it; and a worker
that cannot poll the database keeps no cached credential.
"""
from __future__ import annotations

import asyncio
import re
import secrets
import time

import httpx2 as httpx
import pytest

from edge_proxy.forward_token import encode_forward_token
from edge_proxy.lru import TTLCache
from edge_proxy.store import hash_secret, key_events
from edge_proxy.store.db import SQLiteDB

from . import pg
from .billing_helpers import h
from .gateway_process import GatewayProcess, base_env, start_pair
from .inprocess import InProcess
from .redis_server import RedisServer

PROMISE = 1.0  # seconds: the README's promise for every worker
HOUR = "3600"


# -- two gateway processes ------------------------------------------------------------------------------------------
def _pair(tmp_path, extra: dict[str, str]) -> tuple[GatewayProcess, GatewayProcess]:
    return start_pair(base_env(tmp_path / "shared.db", None, {"EDGE_PROXY_PRINCIPAL_CACHE_TTL": HOUR, **extra}),
                      tmp_path)


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["poll", "postgres", "redis"],
                ids=["told by the SQLite poll", "told by the PostgreSQL poll",
                     "told by Redis pub-sub, the poll a minute apart"])
def pair(request, tmp_path_factory):
    extra = {}
    if request.param == "redis":
        extra = {"EDGE_PROXY_REDIS_URL": request.getfixturevalue("redis_server").url,
                 "EDGE_PROXY_REVOCATION_POLL": "60"}
    elif request.param == "postgres":
        extra = {"EDGE_PROXY_DATABASE_URL": asyncio.run(pg.create_database())}
    gateways = _pair(tmp_path_factory.mktemp(f"revocation-{request.param}"), extra)
    yield gateways
    for g in gateways:
        g.stop()
    if request.param == "postgres":
        asyncio.run(pg.drop_database(extra["EDGE_PROXY_DATABASE_URL"]))


def rest(gw: GatewayProcess, method: str, path: str, body: dict | None = None) -> dict:
    r = httpx.request(method, gw.url + path, json=body, headers=h(gw.secret_key), timeout=10)
    assert r.status_code in (200, 201), (method, path, r.status_code, r.text)
    return r.json()


def status(gw: GatewayProcess, key: str, path: str) -> int:
    return httpx.get(gw.url + path, headers=h(key), timeout=10).status_code


def cache_hits(gw: GatewayProcess) -> int:
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    return sum(int(float(v)) for v in re.findall(r"^edge_proxy_principal_cache_hits_total\S* (\S+)$", text, re.M))


def secret_key(gw):
    made = rest(gw, "POST", "/v1/secret_keys", {"name": "to revoke"})
    return made["secret_key"], "/v1/wallet", lambda: rest(gw, "DELETE", f"/v1/secret_keys/{made['secret_key_id']}")


def spend_key(gw, change: str):
    made = rest(gw, "POST", "/v1/spend_keys", {"name": f"to {change}"})
    path = f"/v1/spend_keys/{made['spend_key_id']}"
    changes = {"revoke": lambda: rest(gw, "DELETE", path),
               "rotate": lambda: rest(gw, "POST", path + "/rotate"),
               "pause": lambda: rest(gw, "PUT", path, {"status": "paused"})}
    return made["key"], "/v1/models", changes[change]


def new_meter(gw) -> tuple[str, str]:
    slug = f"m{time.monotonic_ns()}"
    made = rest(gw, "POST", "/v1/meters", {"name": slug, "meter_slug": slug, "rate_type": "percentage",
                                           "tier_type": "tokens_1m", "tiers": [{"start": "0", "rate": "10"}]})
    return slug, made["meter_id"]


def customer_token(gw, with_meter: bool = True):
    slug = new_meter(gw)[0] if with_meter else None
    made = rest(gw, "POST", "/v1/customers", {"name": "to delete"})
    token = encode_forward_token(gw.secret_key, customer_id=made["customer_id"], meter_slug=slug)
    return token, "/v1/models", lambda: rest(gw, "DELETE", f"/v1/customers/{made['customer_id']}")


def meter_token(gw):
    slug, meter_id = new_meter(gw)
    token = encode_forward_token(gw.secret_key, meter_slug=slug)
    return token, "/v1/models", lambda: rest(gw, "DELETE", f"/v1/meters/{meter_id}")


KEYS = {
    "a revoked secret key": secret_key,
    "a deleted customer's forward token": customer_token,
    "a deleted customer's forward token without a meter": lambda gw: customer_token(gw, with_meter=False),
    "a deleted meter's forward token": meter_token,
    "a revoked spend key": lambda gw: spend_key(gw, "revoke"),
    "a rotated spend key's old value": lambda gw: spend_key(gw, "rotate"),
    "a paused spend key": lambda gw: spend_key(gw, "pause"),
}
# the secret key is good; the token names no customer (or no meter): 400, as tests/test_billing.py's unknown ones
REFUSAL = {"a deleted customer's forward token": 400, "a deleted customer's forward token without a meter": 400,
           "a deleted meter's forward token": 400}


@pytest.mark.parametrize("kind", list(KEYS))
def test_a_change_through_one_gateway_is_refused_by_the_other_within_a_second(pair, kind):
    first, second = pair
    key, path, change = KEYS[kind](first)
    keeper, keeper_path, _ = spend_key(first, "revoke")
    # creating these keys is a key event too: let the second gateway hear it before it caches them, or the news
    # could drop the freshly cached entries in the middle of the counting below
    time.sleep(PROMISE)
    for credential, where in ((key, path), (keeper, keeper_path)):
        assert status(second, credential, where) == 200  # cached on the second gateway for an hour
    hits = cache_hits(second)
    assert status(second, key, path) == 200 and cache_hits(second) == hits + 1  # ...and served from that cache
    change()
    time.sleep(PROMISE)
    assert status(second, key, path) == REFUSAL.get(kind, 401), f"{kind} still works on the other gateway {PROMISE} s later"
    assert status(second, keeper, keeper_path) == 200  # the other keys stay cached and working
    assert cache_hits(second) > hits + 1


def test_a_rotated_spend_keys_new_value_works_on_the_other_gateway_at_once(pair):
    first, second = pair
    made = rest(first, "POST", "/v1/spend_keys", {"name": "rotated"})
    assert status(second, made["key"], "/v1/models") == 200
    new = rest(first, "POST", f"/v1/spend_keys/{made['spend_key_id']}/rotate")["key"]
    assert status(second, new, "/v1/models") == 200


# -- in-process: what a refusal costs ------------------------------------------------------------------------------
class Reads:
    """Counts the store's credential reads (the only database reads authentication makes)."""

    def __init__(self, gw: InProcess) -> None:
        self.secret = self.spend = 0
        store = gw.svc.store
        find_secret, find_spend = store.find_secret_key, store.find_spend_key

        async def secret(key_hash: str):
            self.secret += 1
            return await find_secret(key_hash)

        async def spend(key_hash: str):
            self.spend += 1
            return await find_spend(key_hash)
        store.find_secret_key, store.find_spend_key = secret, spend  # type: ignore[method-assign]


def well_formed(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


async def flood(gw: InProcess, credentials: list[str], path: str = "/v1/wallet") -> list[int]:
    answers = await asyncio.gather(*(gw.call("GET", path, key=c) for c in credentials))
    return [a.status for a in answers]


@pytest.mark.parametrize("prefix, counter", [("ep_sk_", "secret"), ("ep_spk_", "spend")],
                         ids=["an unknown secret key", "an unknown spend key"])
def test_a_flood_of_one_unknown_key_reads_the_database_once(tmp_path, prefix, counter):
    async def scenario():
        async with InProcess(tmp_path, None) as gw:
            gw.svc.auth.refused = TTLCache(100, 3600)  # the mechanism, not its 1-second clock, is under test here
            # nor the key-event poll: any event it sees forgets every refusal (rightly), and a poll that lands
            # between the two floods on a loaded machine made a second read (seen once in a full run)
            await gw.svc.key_events.stop()
            reads = Reads(gw)
            bad = well_formed(prefix)
            assert await flood(gw, [bad] * 200) == [401] * 200  # concurrent: one read, shared
            assert await flood(gw, [bad] * 200) == [401] * 200  # after: remembered as refused
            assert getattr(reads, counter) == 1
    asyncio.run(scenario())


def test_malformed_credentials_never_read_the_database(tmp_path):
    junk = ["ep_sk_", "ep_sk_short", "ep_sk_" + "a" * 500, "ep_sk_has spaces in it but is long enough",
            "ep_spk_\x00\x01\x02" + "a" * 40, "ep_sk_" + "é" * 43, "Zm9vYmFy", "eyJzZWNyZXRfa2V5IjogMX0=",
            "eyJzZWNyZXRfa2V5IjogImVwX3NrX3gifQ==",  # {"secret_key": "ep_sk_x"}: a forward token, too short a key
            ] + [secrets.token_urlsafe(n) for n in range(1, 200, 7)]

    async def scenario():
        async with InProcess(tmp_path, None) as gw:
            reads = Reads(gw)
            assert set(await flood(gw, junk)) == {401}
            assert (reads.secret, reads.spend) == (0, 0)
    asyncio.run(scenario())


def test_a_key_created_after_its_hash_was_refused_works_at_once(tmp_path):
    async def scenario():
        async with InProcess(tmp_path, None) as gw:
            gw.svc.auth.refused = TTLCache(100, 3600)
            key = well_formed("ep_sk_")
            assert await flood(gw, [key]) == [401]
            db = gw.svc.store.db
            async with db.transaction() as tx:  # as the store adds a key (sql_store._add_key), with a known value
                await tx.execute("INSERT INTO secret_keys VALUES (?, ?, ?, ?, ?, ?, NULL)", "key_known",
                                 gw.merchant_id, "known", hash_secret(key), "ep_sk_...", "2026-01-01T00:00:00.000Z")
                await key_events.created(tx, "key_known")
            assert await flood(gw, [key]) == [200]
    asyncio.run(scenario())


def test_a_revoke_that_races_a_lookup_is_not_undone_by_it(tmp_path):
    async def scenario():
        async with InProcess(tmp_path, None) as gw:
            made = (await gw.call("POST", "/v1/secret_keys", body={"name": "racing"}, key=gw.secret_key)).json()
            store, reading, revoked = gw.svc.store, asyncio.Event(), asyncio.Event()
            find = store.find_secret_key

            async def slow_find(key_hash: str):
                row = await find(key_hash)  # read before the revoke commits...
                reading.set()
                await revoked.wait()        # ...and answered after it
                return row
            store.find_secret_key = slow_find  # type: ignore[method-assign]
            lookup = asyncio.create_task(gw.call("GET", "/v1/wallet", key=made["secret_key"]))
            await reading.wait()
            store.find_secret_key = find  # type: ignore[method-assign]
            assert await store.revoke_secret_key(gw.merchant_id, made["secret_key_id"])
            revoked.set()
            assert (await lookup).status == 200  # it was read while the key was live
            assert gw.svc.auth.cache.get(made["secret_key"]) is None  # but not kept past the revoke
            assert (await gw.call("GET", "/v1/wallet", key=made["secret_key"])).status == 401
    asyncio.run(scenario())


# -- the watcher ----------------------------------------------------------------------------------------------------
class Heard:
    def __init__(self) -> None:
        self.ids: list[set[str]] = []
        self.everything = 0

    def forget(self, ids: set[str]) -> None:
        self.ids.append(ids)

    def forget_all(self) -> None:
        self.everything += 1


async def _db(tmp_path) -> SQLiteDB:
    db = SQLiteDB(f"sqlite:///{tmp_path / 'events.db'}")
    await db.open()
    await db.executescript(key_events.SCHEMA)
    return db


def test_the_watcher_forgets_exactly_the_ids_that_changed_and_everything_when_far_behind(tmp_path):
    async def scenario():
        db, heard = await _db(tmp_path), Heard()
        watcher = key_events.KeyEventWatcher(db, heard.forget, heard.forget_all)
        await watcher.tick()  # the first poll learns the epoch: nothing to forget yet
        for ids in (["key_a"], ["spk_b", "key_c"]):
            async with db.transaction() as tx:
                await key_events.record(tx, *ids)
        await watcher.tick()
        assert heard.ids == [{"key_a", "spk_b", "key_c"}] and heard.everything == 0
        await db.execute("UPDATE key_epoch SET epoch = epoch + ?", key_events.MAX_CATCH_UP + 1)
        await watcher.tick()
        assert heard.everything == 1
        await db.close()
    asyncio.run(scenario())


def test_the_poll_reads_on_the_loop_without_the_stores_thread_or_lock(tmp_path):
    """On SQLite the poll's counter read is `SQLiteDB.peek`: on the event loop's thread, from a connection of its
    own, so a poll costs no hand-off to the store's thread and back (most of an idle worker's CPU, bench/RESULTS.md)
    and never waits behind a lease's transaction. It sees what other connections committed, not what they hold."""
    import sqlite3
    import threading

    async def scenario():
        db, heard = await _db(tmp_path), Heard()
        watcher = key_events.KeyEventWatcher(db, heard.forget, heard.forget_all)
        await watcher.tick()
        other = sqlite3.connect(tmp_path / "events.db", isolation_level=None)  # another worker's commit
        other.execute("UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1")
        other.execute("INSERT INTO key_events (epoch, subject) VALUES (1, 'key_elsewhere')")
        stuck, release = threading.Event(), threading.Event()
        db._thread.submit(lambda: (stuck.set(), release.wait(10)))  # the store's thread is busy with a long job
        stuck.wait(10)
        try:
            async with db._lock:  # and a transaction holds the store's lock
                await asyncio.wait_for(key_events.current_epoch(db), 5)
                assert await key_events.current_epoch(db) == 1
                other.execute("BEGIN IMMEDIATE")
                other.execute("UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1")  # not committed yet
                other.execute("INSERT INTO key_events (epoch, subject) VALUES (2, 'key_second')")
                assert await key_events.current_epoch(db) == 1
                other.execute("COMMIT")
                assert await key_events.current_epoch(db) == 2
        finally:
            release.set()
        other.close()
        await watcher.tick()  # the events since the last epoch (one read through the store, as before)
        assert heard.ids == [{"key_elsewhere", "key_second"}] and watcher.epoch == 2 and heard.everything == 0
        assert db._peek_conn is not None and db._peek_conn.execute("PRAGMA busy_timeout").fetchone() == (0,)
        with pytest.raises(sqlite3.OperationalError):  # read-only: a bug that writes through it fails
            await db.peek("UPDATE key_epoch SET epoch = 0 RETURNING epoch")
        await db.close()
        assert db._peek_conn is None
    asyncio.run(scenario())


def test_a_watcher_that_cannot_poll_keeps_its_cache_and_catches_up_when_the_database_answers(tmp_path):
    """A region cut off from the store keeps serving its cached credentials until their TTL (issue 15's leases);
    the events written meanwhile (another region's revocations) are applied by the first poll that answers."""
    async def scenario():
        db, heard, now = await _db(tmp_path), Heard(), [100.0]
        watcher = key_events.KeyEventWatcher(db, heard.forget, heard.forget_all, clock=lambda: now[0])
        await watcher.tick()
        watcher.db = SQLiteDB(f"sqlite:///{tmp_path}/never-opened.db")  # this worker's store is unreachable
        async with db.transaction() as tx:  # another region revokes a key meanwhile
            await key_events.record(tx, "key_revoked_elsewhere")
        for _ in range(3):
            now[0] += key_events.STALE_AFTER
            await watcher.tick()
        assert heard.everything == 0 and heard.ids == []  # nothing forgotten: each credential lives out its TTL
        watcher.db = db  # the store answers again
        await watcher.tick()
        assert heard.ids == [{"key_revoked_elsewhere"}] and heard.everything == 0
        await db.close()
    asyncio.run(scenario())


def test_a_poll_that_hangs_counts_as_failed(tmp_path):
    class Hanging:
        commit_listeners: list = []

        async def fetchone(self, *args):
            await asyncio.Event().wait()  # a database that never answers

        peek = fetchone

    async def scenario():
        heard, now = Heard(), [100.0]
        watcher = key_events.KeyEventWatcher(Hanging(), heard.forget, heard.forget_all,  # type: ignore[arg-type]
                                             clock=lambda: now[0])
        now[0] += key_events.STALE_AFTER + 0.01
        await asyncio.wait_for(watcher.tick(), 10 * key_events.STALE_AFTER)  # bounded: STALE_AFTER, then it gives up
        assert watcher.polls == 0 and heard.everything == 0  # a failed poll: nothing learnt, nothing forgotten
    asyncio.run(scenario())


def test_the_watcher_subscribes_on_a_redis_cluster_client_that_has_sent_nothing_yet(tmp_path, redis_cluster,
                                                                                    caplog):
    """redis-py's cluster pub/sub finds its node in the slot map, which the client loads with its first command:
    a gateway's watcher subscribes before anything else talks to Redis, and once failed with KeyError(<slot>),
    falling back to the poll (seen in tests/test_faults.py's logs)."""
    from edge_proxy.store.redis_client import open_redis

    async def scenario():
        db, heard = await _db(tmp_path), Heard()
        client = open_redis(redis_cluster.url, 2)
        watcher = key_events.KeyEventWatcher(db, heard.forget, heard.forget_all, redis=client)
        watcher.start()
        publisher = redis_cluster.nodes[0].client()  # another client: this one must not warm the watcher's
        try:
            for _ in range(200):  # until the watcher's subscription is up and hears one
                await asyncio.to_thread(publisher.publish, key_events.CHANNEL, key_events._encode(["key_heard"]))
                await asyncio.sleep(0.05)
                if {"key_heard"} in heard.ids:
                    break
        finally:
            await watcher.stop()
            await client.aclose()
            await db.close()
        assert {"key_heard"} in heard.ids
        assert "subscription lost" not in caplog.text
    asyncio.run(scenario())
