"""A bounded load driver on loopback for fault tests: N concurrent clients, M requests at most, T seconds at most.

Requests go round-robin over a list of gateway URLs (several regions' fleets) and a list of credentials (a
merchant's secret key, a customer's forward token, a spend key), plain and streamed. Each request carries a marker
of its own (`<prefix>-<n>`) in the body the provider receives (`user`) and in the metadata the request log keeps
(`x-lava-metadata: {"marker": ...}`), so tests/audit.py can match what the provider served with what was billed.
Every answer is kept: its status (0 when none came), the request id the gateway gave it, whether the body arrived
whole, and the transport error, if any.

It runs in a thread of its own with its own event loop, so a test breaks things while the load runs
(`with Workload(...) as load: load.wait_for(100); <fault>; load.wait_for(200)`), and it stops by itself: at M
requests, at T seconds, or when told. Nothing here asserts a time.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass

import httpx2 as httpx

CHAT_PATH = "/providers/openai/v1/chat/completions"
MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Credential:
    kind: str   # "merchant" | "customer" | "spend_key": what the audit reports per kind
    value: str


@dataclass
class Answer:
    marker: str
    url: str
    kind: str            # the credential's kind
    stream: bool
    status: int = 0      # 0: no answer (the connection failed or was dropped)
    request_id: str | None = None
    whole: bool = False  # the whole body arrived (a disconnecting client leaves early on purpose)
    error: str | None = None


class Workload:
    """`clients` concurrent clients sending at most `requests` requests for at most `seconds` seconds.

    `disconnect` (0..1) is the share of streamed requests whose client hangs up after the first chunk: a
    disconnect storm. `model` is what the body asks for (a fake provider switch makes streams slow)."""

    def __init__(self, urls: list[str], credentials: list[Credential], *, prefix: str, clients: int = 8,
                 requests: int = 300, seconds: float = 60, model: str = MODEL, disconnect: float = 0.0,
                 timeout: float = 20) -> None:
        self.urls, self.credentials, self.prefix = urls, credentials, prefix
        self.clients, self.limit, self.seconds = clients, requests, seconds
        self.model, self.disconnect, self.timeout = model, disconnect, timeout
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._numbers = itertools.count()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    # -- driving it from a test ----------------------------------------------------------------------------------
    def start(self) -> Workload:
        self._thread = threading.Thread(target=self._main, name=f"workload-{self.prefix}", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> Workload:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def finish(self) -> list[Answer]:
        """Stop sending, wait for the requests in flight (each bounded by `timeout`), return every answer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 30)
            assert not self._thread.is_alive(), "the workload did not stop"
        if self._failure is not None:
            raise self._failure
        return self.answers

    def run(self) -> list[Answer]:
        """Send the whole load and wait for it."""
        self.start()
        if self._thread is not None:
            self._thread.join(self.seconds + self.timeout + 30)
        return self.finish()

    def wait_for(self, answered: int, timeout: float = 60) -> int:
        """Until at least `answered` answers (of any kind) came back in total, or the load ended; returns how
        many did. `timeout` is generous and only keeps a broken run from hanging."""
        deadline = time.monotonic() + timeout
        while (n := len(self.answers)) < answered and time.monotonic() < deadline:
            if self._thread is None or not self._thread.is_alive():
                break
            time.sleep(0.02)
        return n

    def add(self, credential: Credential) -> None:
        """Send with `credential` too, from the next request on (a payer no gateway has seen yet, mid-fault)."""
        with self._lock:
            self.credentials = [*self.credentials, credential]

    # -- the load itself -----------------------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            asyncio.run(self._drive())
        except BaseException as exc:  # noqa: BLE001 - handed to the test by finish()
            self._failure = exc

    async def _drive(self) -> None:
        deadline = time.monotonic() + self.seconds
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits) as client:
            async def one_client() -> None:
                while not self._stop.is_set() and time.monotonic() < deadline:
                    n = next(self._numbers)
                    if n >= self.limit:
                        return
                    answer = await self._one(client, n)
                    with self._lock:
                        self.answers.append(answer)
                    if answer.status == 0:
                        await asyncio.sleep(0.05)  # the gateway is down: don't spin
            await asyncio.gather(*(one_client() for _ in range(self.clients)))

    def _request(self, n: int) -> tuple[str, Credential, bool, dict]:
        credentials = self.credentials
        credential = credentials[n % len(credentials)]
        stream = (n // len(credentials)) % 2 == 1  # every credential kind, plain and streamed
        url = self.urls[(n // (2 * len(credentials))) % len(self.urls)]
        body: dict = {"model": self.model, "max_tokens": 20, "user": f"{self.prefix}-{n}",
                      "messages": [{"role": "user", "content": f"request {n} " + "word " * (n % 20)}]}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return url, credential, stream, body

    async def _one(self, client: httpx.AsyncClient, n: int) -> Answer:
        url, credential, stream, body = self._request(n)
        marker = body["user"]
        answer = Answer(marker, url, credential.kind, stream)
        hang_up = stream and self.disconnect > 0 and (n * 7919 % 1000) < self.disconnect * 1000
        headers = {"Authorization": f"Bearer {credential.value}", "x-lava-metadata": json.dumps({"marker": marker})}
        try:
            async with client.stream("POST", url + CHAT_PATH, json=body, headers=headers) as r:
                answer.status, answer.request_id = r.status_code, r.headers.get("x-lava-request-id")
                async for _ in r.aiter_raw():
                    if hang_up:
                        break  # leaving the block closes the connection mid-body
                else:
                    answer.whole = True
        except httpx.HTTPError as exc:
            answer.error = type(exc).__name__
        return answer
