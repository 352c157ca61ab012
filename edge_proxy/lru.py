"""A bounded, per-worker LRU cache whose entries expire after a TTL."""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    __slots__ = ("_data", "_max", "_ttl", "hits", "misses")

    def __init__(self, maxsize: int, ttl: float) -> None:
        self._data: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._max = max(0, maxsize)
        self._ttl = ttl
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        entry = self._data.get(key)
        if entry is not None:
            if entry[1] > time.monotonic():
                self._data.move_to_end(key)
                self.hits += 1
                return entry[0]
            del self._data[key]
        self.misses += 1
        return None

    def put(self, key: K, value: V) -> None:
        if self._max == 0:
            return
        self._data[key] = (value, time.monotonic() + self._ttl)
        self._data.move_to_end(key)
        if len(self._data) > self._max:
            self._data.popitem(last=False)

    def discard(self, key: K) -> None:
        self._data.pop(key, None)

    def discard_where(self, stale: Callable[[V], bool]) -> int:
        """Drop every entry whose value is `stale`; how many were dropped (a scan: for rare invalidations)."""
        keys = [k for k, (v, _) in self._data.items() if stale(v)]
        for k in keys:
            del self._data[k]
        return len(keys)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
