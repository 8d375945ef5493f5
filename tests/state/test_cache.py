"""The response cache's stores (``sidecar.state.cache``): ``LocalCache`` (an LRU bounded by
bytes, a TTL per entry) and ``RedisCache`` against a real ``redis-server``, killed and
restarted: a cache that cannot be reached answers misses and drops entries, never raises."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from sidecar.state.cache import CacheStore, LocalCache, RedisCache
from tests.fakes.redis_server import RedisServer
from tests.state import Clock

HOUR = 3600.0


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds} s")
        await asyncio.sleep(0.01)


# -- LocalCache -------------------------------------------------------------------------------


async def test_local_get_put_and_counters() -> None:
    cache: CacheStore = LocalCache(100)
    assert (cache.name, cache.stored_bytes, cache.evictions, cache.errors, cache.up) == (
        "local", 0, 0, 0, True)
    assert await cache.get("k") is None
    await cache.put("k", b"value", HOUR)
    assert await cache.get("k") == b"value"
    assert cache.stored_bytes == 5
    await cache.put("k", b"longer value", HOUR)  # replaced, counted once
    assert await cache.get("k") == b"longer value" and cache.stored_bytes == 12
    await cache.close()
    assert await cache.get("k") is None and cache.stored_bytes == 0


async def test_local_evicts_the_least_recently_used_by_bytes() -> None:
    cache = LocalCache(10)
    await cache.put("a", b"aaaa", HOUR)
    await cache.put("b", b"bbbb", HOUR)
    assert await cache.get("a") == b"aaaa"  # a is now the most recently used
    await cache.put("c", b"cccc", HOUR)  # 12 bytes > 10: b goes
    assert await cache.get("b") is None
    assert (await cache.get("a"), await cache.get("c")) == (b"aaaa", b"cccc")
    assert (cache.evictions, cache.stored_bytes, len(cache)) == (1, 8, 2)
    await cache.put("d", b"dddddddddd", HOUR)  # exactly max_bytes: everything else goes
    assert (cache.evictions, cache.stored_bytes, len(cache)) == (3, 10, 1)
    assert await cache.get("d") == b"dddddddddd"


async def test_local_does_not_store_an_entry_larger_than_the_cache() -> None:
    cache = LocalCache(10)
    await cache.put("a", b"aaaa", HOUR)
    await cache.put("big", b"x" * 11, HOUR)
    assert await cache.get("big") is None
    assert (await cache.get("a"), cache.evictions, cache.stored_bytes) == (b"aaaa", 0, 4)
    await cache.put("a", b"y" * 11, HOUR)  # a newer answer too big to keep: the old one goes
    assert await cache.get("a") is None and cache.stored_bytes == 0


async def test_local_entries_end_with_their_ttl() -> None:
    clock = Clock()
    cache = LocalCache(100, clock=clock)
    await cache.put("short", b"s", 10)
    await cache.put("long", b"l", 60)
    await cache.put("none", b"n", 0)  # a ttl of 0 keeps nothing
    assert await cache.get("none") is None
    clock.advance(9.9)
    assert await cache.get("short") == b"s"
    clock.advance(0.1)
    assert await cache.get("short") is None
    assert await cache.get("long") == b"l" and cache.stored_bytes == 1
    clock.advance(60)
    assert await cache.get("long") is None and cache.stored_bytes == 0
    assert cache.evictions == 0


async def test_an_expired_entry_dropped_for_room_is_not_an_eviction() -> None:
    clock = Clock()
    cache = LocalCache(8, clock=clock)
    await cache.put("old", b"oooo", 5)
    await cache.put("live", b"llll", 60)
    clock.advance(6)
    await cache.put("new", b"nnnn", 60)  # old (expired) makes room
    assert cache.evictions == 0 and len(cache) == 2
    await cache.put("newer", b"wwww", 60)  # live (not expired) makes room
    assert cache.evictions == 1
    assert (await cache.get("live"), await cache.get("new")) == (None, b"nnnn")


def test_local_needs_some_room() -> None:
    with pytest.raises(ValueError):
        LocalCache(0)


# -- RedisCache -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def redis_cache(server: RedisServer, raw: Redis) -> AsyncIterator[RedisCache]:
    cache = RedisCache(server.url)
    yield cache
    await cache.close()


async def test_redis_get_put_with_a_prefix_and_a_ttl(redis_cache: RedisCache,
                                                     raw: Redis) -> None:
    store: CacheStore = redis_cache
    assert (store.name, store.stored_bytes, store.evictions, store.errors, store.up) == (
        "redis", None, 0, 0, True)
    assert await store.get("k1") is None
    await store.put("k1", b"\x00answer \xff", 90)
    assert await store.get("k1") == b"\x00answer \xff"
    assert await raw.get("cache:k1") == b"\x00answer \xff"
    assert 89_000 < await raw.pttl("cache:k1") <= 90_000
    await store.put("k1", b"again", 0)  # a ttl of 0 stores nothing
    assert await store.get("k1") == b"\x00answer \xff"
    assert redis_cache.errors == 0 and redis_cache.up


async def test_redis_keys_are_kept_apart(redis_cache: RedisCache, raw: Redis) -> None:
    await redis_cache.put("a", b"A", 60)
    await redis_cache.put("b", b"B", 60)
    assert (await redis_cache.get("a"), await redis_cache.get("b")) == (b"A", b"B")
    await raw.set("budget:x", b"not an answer")
    assert await redis_cache.get("budget:x") is None  # only cache: keys are read
    assert await redis_cache.get("cache:a") is None  # the prefix is added once
    assert sorted(await raw.keys("*")) == [b"budget:x", b"cache:a", b"cache:b"]


async def test_redis_entries_expire(redis_cache: RedisCache) -> None:
    await redis_cache.put("brief", b"gone soon", 0.05)
    await redis_cache.put("kept", b"stays", 60)

    async def expired() -> bool:
        return await redis_cache.get("brief") is None

    await eventually(expired, "an entry with a 50 ms ttl expires")
    assert await redis_cache.get("kept") == b"stays"


async def test_redis_killed_then_restarted(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar")
    with RedisServer(tmp_path, password="pw-Secr3t") as own:
        cache = RedisCache(own.url, retry_after=0.0)
        await cache.put("k", b"v", 60)
        assert await cache.get("k") == b"v" and cache.up
        own.kill()
        started = time.monotonic()
        assert await cache.get("k") is None
        await cache.put("k2", b"v2", 60)
        assert await cache.get("k2") is None
        assert time.monotonic() - started < 1.0
        assert not cache.up and cache.errors == 3
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings  # one per outage
        assert "unreachable" in warnings[0].getMessage()
        assert "pw-Secr3t" not in caplog.text and "pw-Secr3t" not in cache.reason
        own.start()  # the same port, empty (no persistence)

        async def back() -> bool:
            await cache.put("k3", b"v3", 60)
            return cache.up

        await eventually(back, "the cache is reached again")
        assert await cache.get("k3") == b"v3" and cache.reason == ""
        assert any(r.levelno == logging.INFO and "back" in r.getMessage()
                   for r in caplog.records)
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        await cache.close()


async def test_redis_is_left_alone_for_a_while_after_a_failure(tmp_path: Path) -> None:
    clock = Clock()
    with RedisServer(tmp_path) as own:
        cache = RedisCache(own.url, retry_after=1.0, clock=clock)
        own.kill()
        assert await cache.get("k") is None and cache.errors == 1
        await cache.put("k", b"v", 60)
        assert await cache.get("k") is None and cache.errors == 1  # not asked meanwhile
        own.start()
        assert await cache.get("k") is None and not cache.up  # still waiting
        clock.advance(1.0)
        await cache.put("k", b"v", 60)
        assert cache.up and await cache.get("k") == b"v" and cache.errors == 1
        await cache.close()


async def test_a_redis_that_never_answers_in_time_costs_at_most_the_timeout() -> None:
    """A listener that accepts and never answers (a hung Redis): ``get`` gives up after
    ``timeout`` seconds."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    hung = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = hung.sockets[0].getsockname()[1]
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", timeout=0.1)
    started = time.monotonic()
    assert await cache.get("k") is None
    assert time.monotonic() - started < 1.0 and not cache.up and cache.errors == 1
    await cache.close()
    hung.close()
    for writer in held:
        writer.close()
    await hung.wait_closed()
