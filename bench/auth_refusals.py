"""What a refused credential costs: database reads and time per request, in-process (no sockets).

    .venv/bin/python bench/auth_refusals.py

Three floods against `GET /v1/wallet`: one well-formed unknown secret key sent 2,000 times in a row; the same sent
200 times at once (a fresh key, so nothing is remembered yet); 2,000 distinct malformed credentials. The store's
`find_secret_key` is counted: each call is one database read.
"""
from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.inprocess import InProcess  # noqa: E402


async def main() -> None:
    async with InProcess(Path(tempfile.mkdtemp()), None) as gw:
        store, reads = gw.svc.store, [0]
        find = store.find_secret_key

        async def counted(key_hash: str):
            reads[0] += 1
            return await find(key_hash)
        store.find_secret_key = counted  # type: ignore[method-assign]

        async def sequential(keys: list[str]) -> None:
            for key in keys:
                await gw.call("GET", "/v1/wallet", key=key)

        async def at_once(keys: list[str]) -> None:
            await asyncio.gather(*(gw.call("GET", "/v1/wallet", key=key) for key in keys))

        def unknown() -> str:
            return "ep_sk_" + secrets.token_urlsafe(32)
        floods = [
            ("one unknown secret key, 2,000 in a row", sequential, [unknown()] * 2000),
            ("one unknown secret key, 200 at once", at_once, [unknown()] * 200),
            ("2,000 distinct malformed credentials", sequential, [f"junk-{i}" for i in range(2000)]),
        ]
        for label, run, keys in floods:
            reads[0] = 0
            started = time.perf_counter()
            await run(keys)
            took = time.perf_counter() - started
            print(f"{label}: {reads[0]} database reads, {took * 1e6 / len(keys):.0f} us per request")


if __name__ == "__main__":
    asyncio.run(main())
