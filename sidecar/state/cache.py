"""Where cached answers live (``sidecar.core.cache`` decides what is cached, under which key).

    CacheStore (Protocol)
      LocalCache   in-process LRU bounded by the bytes of its values, a TTL per entry
      RedisCache   redis-py (asyncio): one cache for every replica; keys ``cache:<key>``

A cache is an optimisation: a store never raises to its caller. ``RedisCache`` answers a miss
(``get``) or drops the entry (``put``) while Redis cannot be reached (refused, reset, timed out
after ``timeout`` seconds, or a Redis error), counts each failure in ``errors``, logs one
WARNING when an outage starts and one INFO line when it ends, and leaves Redis alone for
``retry_after`` seconds after a failure (so a dead or black-holed Redis costs a call nothing
more). The URL's credentials never appear in a log line.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from sidecar.state.redis import MAX_REASON, connect, redact, scrub

log = logging.getLogger("sidecar")

PREFIX = "cache:"


class CacheStore(Protocol):
    name: str  # "local" or "redis"

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl: float) -> None: ...

    async def close(self) -> None: ...

    @property
    def stored_bytes(self) -> int | None: ...  # values held (local); None: not known (redis)

    @property
    def evictions(self) -> int: ...  # entries dropped for room before their TTL ended

    @property
    def errors(self) -> int: ...  # calls that could not reach the store

    @property
    def up(self) -> bool: ...  # the last call reached the store


class LocalCache:
    """At most ``max_bytes`` of values in memory; the least recently used entries make room for
    a new one (``evictions`` counts them; an expired entry dropped is not an eviction). A value
    larger than ``max_bytes``, or a ``ttl`` of 0 or less, is not stored. ``clock`` is in
    seconds (monotonic)."""

    name: str = "local"
    errors: int = 0
    up: bool = True

    def __init__(self, max_bytes: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be above 0: {max_bytes}")
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()  # oldest use first
        self._bytes = 0
        self._evictions = 0

    @property
    def stored_bytes(self) -> int:
        return self._bytes

    @property
    def evictions(self) -> int:
        return self._evictions

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[0]

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        if key in self._entries:
            self._drop(key)
        if ttl <= 0 or len(value) > self.max_bytes:
            return
        now = self._clock()
        while self._bytes + len(value) > self.max_bytes:
            oldest = next(iter(self._entries))
            if self._entries[oldest][1] > now:
                self._evictions += 1
            self._drop(oldest)
        self._entries[key] = (value, now + ttl)
        self._bytes += len(value)

    def _drop(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self._bytes -= len(value)

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0


class RedisCache:
    """Cached answers in Redis at ``url``: ``SET cache:<key> value PX <ttl ms>`` and ``GET``.
    The client is made as the budget store's (``sidecar.state.redis.connect``):
    ``timeout`` bounds connecting and each answer, ``max_connections`` the calls at once."""

    name: str = "redis"
    stored_bytes: None = None  # Redis keeps its own books (INFO memory)
    evictions: int = 0  # Redis evicts by its own maxmemory policy, unseen here

    def __init__(self, url: str, *, timeout: float = 0.25, max_connections: int = 50,
                 retry_after: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis: Redis = connect(url, timeout=timeout, max_connections=max_connections)
        self.url = url
        self.where = redact(url)  # the URL without credentials
        self.retry_after = retry_after
        self._clock = clock
        self._skip_until = float("-inf")
        self.errors = 0
        self.up = True  # as far as the last call tells
        self.reason = ""  # why it is down

    async def get(self, key: str) -> bytes | None:
        if self._skip():
            return None
        try:
            value = await self._redis.get(PREFIX + key)
        except (RedisError, OSError) as e:
            self._failed(e)
            return None
        self._reached()
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        if ttl <= 0 or self._skip():
            return
        try:
            await self._redis.set(PREFIX + key, value, px=max(1, math.ceil(ttl * 1000)))
        except (RedisError, OSError) as e:
            self._failed(e)
            return
        self._reached()

    async def close(self) -> None:
        await self._redis.aclose()

    def _skip(self) -> bool:
        return not self.up and self._clock() < self._skip_until

    def _failed(self, error: BaseException) -> None:
        self.errors += 1
        self._skip_until = self._clock() + self.retry_after
        if not self.up:
            return
        self.up = False
        text = " ".join(str(error).split()) or "no detail"
        self.reason = scrub(f"{type(error).__name__}: {text}", self.url)[:MAX_REASON]
        log.warning("response cache %s (%s) unreachable: %s; calls go to providers meanwhile",
                    self.name, self.where, self.reason)

    def _reached(self) -> None:
        if not self.up:
            log.info("response cache %s (%s) back", self.name, self.where)
        self.up, self.reason = True, ""
