"""Key events: how every worker learns, within a second, that a credential it has cached changed.

A change to a credential (a secret key revoked, a spend key revoked, rotated, paused or re-scoped) calls
`record(tx, ids...)` in the transaction that makes it, and a new key `created(tx, id)`: that bumps the one counter
row `key_epoch` and writes the ids it touched to `key_events` under the new epoch. The counter's row lock orders
the writers, so epochs become visible in the order they were taken and none is skipped.

Each worker runs a `KeyEventWatcher`: a few times a second it reads the counter (one primary-key read, through
`Database.peek`: on SQLite on the event loop's own thread, without the hand-off to the store's thread); when the
counter moved it reads the events since the epoch it last saw and tells its principal cache to forget exactly
those ids, or everything when it fell too far behind. With Redis configured, the process that committed a change
also publishes the ids on `CHANNEL`, and every watcher forgets them as soon as the message arrives; the poll stays
the guarantee. A poll that takes longer than `STALE_AFTER` has failed. While the database cannot be polled, no
key can be changed through it either, so a watcher keeps its cache and each credential expires at its TTL
(`EDGE_PROXY_PRINCIPAL_CACHE_TTL`), as before key events: a region cut off from the shared store keeps serving
within its leases (issue 15) instead of refusing every request at once. A change made meanwhile through another
region's connection reaches this one when its poll answers again (the events since its epoch), or at the TTL.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from .db import Database, Tx, note

log = logging.getLogger("edge_proxy")

SCHEMA = """
CREATE TABLE IF NOT EXISTS key_epoch (
    id    INTEGER PRIMARY KEY,
    epoch BIGINT NOT NULL
);
INSERT INTO key_epoch (id, epoch) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS key_events (
    epoch   BIGINT NOT NULL,
    subject TEXT NOT NULL,
    PRIMARY KEY (epoch, subject)
);
"""
CHANNEL = "edge_proxy:key_events"
CREATED = "created:"   # a subject for a new key: it matches no cached principal, and empties the refused cache
KEEP = 10_000          # epochs of events kept; a watcher further behind than MAX_CATCH_UP forgets everything
MAX_CATCH_UP = 1_000   # epochs a watcher reads one by one; past this it forgets its whole cache
STALE_AFTER = 1.0      # seconds a poll may take; longer is a failed poll
STOP_WITHIN = 2.0      # seconds stop() waits for its tasks

Forget = Callable[[set[str]], None]
ForgetAll = Callable[[], None]
_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(list[str])


async def record(tx: Tx, *subjects: str) -> int:
    """Bump the epoch and write `subjects` (key ids) under it, in the caller's transaction; the new epoch."""
    await tx.execute("UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1")
    row = await tx.fetchone("SELECT epoch FROM key_epoch WHERE id = 1")
    if row is None:  # the schema's insert makes this row; without it nothing could be told to the other workers
        raise RuntimeError("key_epoch has no row: the store was not opened")
    epoch = int(row[0])
    await tx.executemany("INSERT INTO key_events (epoch, subject) VALUES (?, ?)",
                         [(epoch, s) for s in dict.fromkeys(subjects)])
    if epoch % 100 == 0:
        await tx.execute("DELETE FROM key_events WHERE epoch <= ?", epoch - KEEP)
    note(tx, *subjects)
    return epoch


async def created(tx: Tx, key_id: str) -> int:
    """A new key: every worker forgets the credentials it refused (one may be this key), and no cached one."""
    return await record(tx, CREATED + key_id)


async def current_epoch(db: Database) -> int:
    """The counter, read the cheap way (`Database.peek`: on SQLite, on this thread, no wait for the store's lock)."""
    row = await db.peek("SELECT epoch FROM key_epoch WHERE id = 1")
    return int(row[0]) if row else 0


class KeyEventWatcher:
    """One worker's view of the key events: it calls `forget(ids)` or `forget_all()` on the principal cache."""

    def __init__(self, db: Database, forget: Forget, forget_all: ForgetAll, *, interval: float = 0.25,
                 redis: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.forget = forget
        self.forget_all = forget_all
        self.interval = interval
        self.redis = redis
        self.clock = clock
        self.epoch: int | None = None
        self.last_poll = clock()
        self.polls = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._publishing: set[asyncio.Task[None]] = set()
        self._stale_logged = False
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.db.commit_listeners.append(self.committed)
        self._tasks.append(asyncio.create_task(self._poll_forever(), name="edge-proxy-key-events"))
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self._listen_forever(), name="edge-proxy-key-events-redis"))

    async def stop(self) -> None:
        if self.committed in self.db.commit_listeners:
            self.db.commit_listeners.remove(self.committed)
        self._stopping = True
        tasks = self._tasks + list(self._publishing)
        for task in tasks:
            task.cancel()
        # redis-py's pubsub read can swallow a cancellation and go on waiting for a message: the stop is bounded
        # (the listener holds nothing that needs a clean end; its connection closes with the client)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_WITHIN)
            if stuck:
                log.warning("key events: %d task(s) did not stop within %.0f s; left behind", len(stuck),
                            STOP_WITHIN)
        self._tasks.clear()

    # -- this process's own commits ----------------------------------------------------------------------------
    def committed(self, subjects: list[str]) -> None:
        """A transaction in this process recorded key events: forget them here at once, and tell the others."""
        self.forget(set(subjects))
        if self.redis is not None:
            task = asyncio.get_running_loop().create_task(self._publish(subjects))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def _publish(self, subjects: list[str]) -> None:
        try:
            await self.redis.publish(CHANNEL, _encode(subjects))
        except Exception as exc:  # the other workers' polls still see the event within a second
            log.warning("could not publish a key event to Redis (%s: %s); the database poll will carry it",
                        type(exc).__name__, exc)

    # -- the poll ----------------------------------------------------------------------------------------------
    async def poll(self) -> None:
        """Read the epoch; forget what changed since the last poll (raises what the database raises)."""
        started = self.clock()
        epoch = await current_epoch(self.db)
        seen = self.epoch
        if seen is not None and epoch != seen:
            if not 0 < epoch - seen <= MAX_CATCH_UP:
                self.forget_all()
            else:
                rows = await self.db.fetchall("SELECT epoch, subject FROM key_events WHERE epoch > ? AND epoch <= ?",
                                              seen, epoch)
                if len({int(r[0]) for r in rows}) < epoch - seen:  # pruned: what changed is no longer known
                    self.forget_all()
                else:
                    self.forget({r[1] for r in rows})
        self.epoch = epoch
        self.last_poll = started
        self.polls += 1

    async def tick(self) -> None:
        """One poll, bounded by STALE_AFTER. A failed one changes nothing: cached credentials expire at their TTL,
        and the next poll that answers reads every event since the last epoch seen."""
        try:
            async with asyncio.timeout(STALE_AFTER):  # a database that does not answer is one that failed
                await self.poll()
        except Exception as exc:
            if not self._stale_logged and self.clock() - self.last_poll > STALE_AFTER:
                log.warning("key events: cannot read the database (%s: %s); cached credentials live out their TTL "
                            "(EDGE_PROXY_PRINCIPAL_CACHE_TTL) until it answers", type(exc).__name__, exc)
                self._stale_logged = True
            return
        if self._stale_logged:
            log.warning("key events: the database answers again; credentials are cached again")
            self._stale_logged = False

    async def _poll_forever(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)

    # -- Redis -------------------------------------------------------------------------------------------------
    async def _listen_forever(self) -> None:
        backoff = 0.1
        while not self._stopping:  # checked too because redis-py's read can swallow a cancellation
            pubsub = None
            try:
                # a cluster client's pub/sub finds its node in the slot map, which the client loads with its first
                # command: subscribing before anything else has talked to Redis raises KeyError(<slot>) (redis-py
                # 8.1). initialize() loads it (a no-op once loaded, and on a plain or Sentinel client).
                await self.redis.initialize()
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(CHANNEL)
                backoff = 0.1
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._heard(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("key events: Redis subscription lost (%s: %s); polling carries the events",
                            type(exc).__name__, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if pubsub is not None:
                    try:
                        await pubsub.aclose()
                    except Exception as exc:
                        log.debug("closing the key-event subscription: %s", exc)

    def _heard(self, data: object) -> None:
        try:
            subjects = _decode.decode(data if isinstance(data, (bytes, str)) else b"")
        except msgspec.DecodeError:  # not ours: what changed is unknown, so everything may have
            log.warning("key events: a message on %s is not a list of ids; forgetting every cached credential",
                        CHANNEL)
            self.forget_all()
            return
        self.forget(set(subjects))
