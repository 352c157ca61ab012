"""Delivers billing events (autopay) to a merchant's webhooks: signed POSTs, retried with backoff.

Each delivery is a POST of the event as JSON with
  x-edge-proxy-event: <type>
  x-edge-proxy-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the webhook secret>
A receiver recomputes the HMAC with its `webhook_secret` and rejects stale timestamps. Any answer other than
2xx, or no answer, is retried (`attempts` tries, doubling the wait from `backoff` seconds). Deliveries live in
memory: a gateway that stops mid-retry loses the retries that remain, and says so in its log.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from urllib.parse import urlsplit

import msgspec

from ..store.base import new_id

log = logging.getLogger("edge_proxy.webhooks")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class WebhookSender:
    def __init__(self, db, upstream_of, *, attempts: int = 6, backoff: float = 1.0) -> None:
        self.db = db
        self._upstream_of = upstream_of  # () -> UpstreamPool, available once the worker has started
        self.attempts = attempts
        self.backoff = backoff
        self._tasks: set[asyncio.Task] = set()
        self.delivered = 0
        self.failed = 0

    def emit(self, merchant_id: str, event_type: str, data: dict) -> None:
        event = {"id": new_id("evt"), "type": event_type, "created_at": int(time.time()), "data": data}
        task = asyncio.get_running_loop().create_task(self._fan_out(merchant_id, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fan_out(self, merchant_id: str, event: dict) -> None:
        rows = await self.db.fetchall("SELECT url, secret FROM webhooks WHERE merchant_id = ? AND deleted_at IS NULL",
                                      merchant_id)
        body = msgspec.json.encode(event)
        await asyncio.gather(*(self._deliver(url, secret, event["type"], body) for url, secret in rows))

    async def _deliver(self, url: str, secret: str, event_type: str, body: bytes) -> None:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        wait = self.backoff
        for attempt in range(1, self.attempts + 1):
            now = int(time.time())
            headers = [(b"content-type", b"application/json"), (b"x-edge-proxy-event", event_type.encode()),
                       (b"x-edge-proxy-signature", signature(secret, now, body).encode())]
            try:
                response = await self._upstream_of().request("POST", parts.scheme, parts.hostname, port, target,
                                                             headers, body)
                await response.read()
                if 200 <= response.status < 300:
                    self.delivered += 1
                    return
                reason = f"HTTP {response.status}"
            except Exception as exc:  # unreachable, reset, timeout: all are retried the same way
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                log.warning("webhook %s: attempt %d failed (%s); retrying in %.1fs", url, attempt, reason, wait)
                await asyncio.sleep(wait)
                wait *= 2
        self.failed += 1
        log.error("webhook %s: gave up after %d attempts", url, self.attempts)

    async def stop(self, timeout: float = 5.0) -> None:
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("%d webhook deliveries were still retrying at shutdown and are dropped", len(pending))
