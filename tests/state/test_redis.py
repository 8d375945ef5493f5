"""RedisStore against a real ``redis-server``, and the contract every budget store keeps (run
the same on LocalStore and RedisStore): reservations fit or change nothing, over every claim at
once; settling moves a reservation to spent; keys end with their window."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from sidecar.state import Counts, Reservation, StoreUnavailable
from sidecar.state.local import LocalStore
from sidecar.state.redis import RedisStore, redact, scrub
from tests.fakes.redis_server import RedisServer
from tests.state import ALL, APP, Clock, claim

OTHER = "budget:other:hour:2026-03-02T00"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client on an emptied server, to look behind the store's back."""
    client = Redis.from_url(server.url)
    await client.flushall()
    yield client
    await client.aclose()


@dataclass
class Subject:
    store: LocalStore | RedisStore
    expire: Callable[[Sequence[str]], Awaitable[None]]  # wait until keys with a ttl of 1 s end


@pytest.fixture(params=["local", "redis"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    if request.param == "local":
        clock = Clock()

        async def advance(keys: Sequence[str]) -> None:
            clock.advance(2.0)

        local = LocalStore(None, clock=clock)
        yield Subject(local, advance)
        await local.close()
        return
    url = request.getfixturevalue("server").url  # a sync fixture: no loop needed
    client = Redis.from_url(url)
    await client.flushall()
    store = RedisStore(url, timeout=5)  # semantics here; the short timeouts are tested below

    async def gone(keys: Sequence[str]) -> None:
        for _ in range(100):
            if not await client.exists(*keys):
                return
            await asyncio.sleep(0.05)
        pytest.fail(f"{keys} did not expire")

    yield Subject(store, gone)
    await store.close()
    await client.aclose()


# -- the contract, on both stores --------------------------------------------------------------


async def test_a_reservation_that_fits_is_granted_and_counted(subject: Subject) -> None:
    store = subject.store
    first = await store.reserve([claim(APP, 100)], 60)
    assert first.granted == Reservation((claim(APP, 100),), 60, store.name)
    assert first.counts == {APP: Counts(spent=0, reserved=60)}
    up_to_the_limit = await store.reserve([claim(APP, 100)], 40)
    assert up_to_the_limit.granted is not None
    assert up_to_the_limit.counts == {APP: Counts(spent=0, reserved=100)}


async def test_a_reservation_over_the_limit_is_refused_and_changes_nothing(
        subject: Subject) -> None:
    store = subject.store
    await store.reserve([claim(APP, 100)], 60)
    refused = await store.reserve([claim(APP, 100)], 41)
    assert refused.granted is None
    assert refused.counts == {APP: Counts(spent=0, reserved=60)}
    too_big = await store.reserve([claim(OTHER, 10)], 11)
    assert too_big.granted is None and too_big.counts == {OTHER: Counts()}
    assert await store.usage([APP, OTHER]) == {APP: Counts(0, 60), OTHER: Counts()}


@pytest.mark.parametrize("over_first", [True, False])
async def test_one_claim_over_its_limit_reserves_nothing_on_any(subject: Subject,
                                                                over_first: bool) -> None:
    store = subject.store
    claims = [claim(APP, 50), claim(ALL, 1000)]
    assert (await store.reserve(claims, 40)).granted is not None
    ordered = list(reversed(claims)) if not over_first else claims
    refused = await store.reserve(ordered, 20)  # fits the 1000 of ALL, not the 50 of APP
    assert refused.granted is None
    assert refused.counts == {APP: Counts(0, 40), ALL: Counts(0, 40)}
    assert await store.usage([APP, ALL]) == {APP: Counts(0, 40), ALL: Counts(0, 40)}


@pytest.mark.parametrize("actual", [70, 20, 0])
async def test_settle_adds_the_actual_cost_and_releases_the_reservation(
        subject: Subject, actual: int) -> None:
    store = subject.store
    claims = [claim(APP, 1000), claim(ALL, 1000)]
    made = (await store.reserve(claims, 50)).granted
    await store.reserve([claim(APP, 1000)], 30)  # another call, still running
    assert made is not None
    await store.settle(made, actual)
    assert await store.usage([APP, ALL]) == {APP: Counts(spent=actual, reserved=30),
                                             ALL: Counts(spent=actual, reserved=0)}
    after = await store.reserve(claims, 1000 - actual - 30)  # exactly what is left
    assert after.granted is not None


async def test_reserved_never_goes_below_zero(subject: Subject) -> None:
    store = subject.store
    made = (await store.reserve([claim(APP, 100)], 40)).granted
    assert made is not None
    await store.settle(made, 10)
    await store.settle(made, 10)  # twice: the second release finds nothing reserved
    assert await store.usage([APP]) == {APP: Counts(spent=20, reserved=0)}


async def test_usage_of_keys_never_seen_is_zero(subject: Subject) -> None:
    assert await subject.store.usage([APP, ALL]) == {APP: Counts(), ALL: Counts()}
    assert await subject.store.usage([]) == {}


async def test_a_key_ends_with_its_window_and_a_late_settle_counts_nowhere(
        subject: Subject) -> None:
    store = subject.store
    made = (await store.reserve([claim(APP, 100, ttl=1)], 100)).granted
    assert made is not None
    assert (await store.reserve([claim(APP, 100, ttl=1)], 1)).granted is None
    await subject.expire([APP])
    assert await store.usage([APP]) == {APP: Counts()}
    await store.settle(made, 100)  # the call ended after its window
    assert await store.usage([APP]) == {APP: Counts()}
    assert (await store.reserve([claim(APP, 100, ttl=1)], 100)).granted is not None


async def test_concurrent_reservations_never_overspend(subject: Subject) -> None:
    results = await asyncio.gather(*(subject.store.reserve([claim(APP, 1000)], 7)
                                     for _ in range(200)))
    assert sum(r.granted is not None for r in results) == 142
    assert await subject.store.usage([APP]) == {APP: Counts(spent=0, reserved=994)}


async def test_negative_amounts_are_refused(subject: Subject) -> None:
    with pytest.raises(ValueError):
        await subject.store.reserve([claim(APP, 100)], -1)
    made = (await subject.store.reserve([claim(APP, 100)], 1)).granted
    assert made is not None
    with pytest.raises(ValueError):
        await subject.store.settle(made, -1)


# -- Redis only ------------------------------------------------------------------------------


async def test_two_replicas_never_overspend_together(server: RedisServer, raw: Redis) -> None:
    one, two = RedisStore(server.url, timeout=5), RedisStore(server.url, timeout=5)
    try:
        results = await asyncio.gather(*((one, two)[i % 2].reserve([claim(APP, 1000)], 7)
                                         for i in range(200)))
        assert sum(r.granted is not None for r in results) == 142
        assert {r.granted.store for r in results if r.granted} == {"redis"}
        assert await one.usage([APP]) == await two.usage([APP]) == {APP: Counts(0, 994)}
    finally:
        await one.close()
        await two.close()


async def test_keys_are_hashes_whose_ttl_only_grows(server: RedisServer, raw: Redis) -> None:
    store = RedisStore(server.url)
    try:
        await store.reserve([claim(APP, 100, ttl=3599.2)], 5)
        assert await raw.hgetall(APP) == {b"reserved": b"5"}
        assert 3590 < await raw.ttl(APP) <= 3600
        await store.reserve([claim(APP, 100, ttl=1)], 5)  # a shorter ttl does not shorten it
        assert await raw.ttl(APP) > 3590
        assert (await store.reserve([claim(OTHER, 1)], 2)).granted is None
        assert not await raw.exists(OTHER)  # a refusal creates nothing
    finally:
        await store.close()


async def test_a_settle_does_not_bring_back_an_ended_key(server: RedisServer,
                                                         raw: Redis) -> None:
    store = RedisStore(server.url)
    try:
        made = (await store.reserve([claim(APP, 100), claim(ALL, 100)], 5)).granted
        assert made is not None
        await raw.delete(APP)  # as if its window ended
        await store.settle(made, 7)
        assert not await raw.exists(APP)
        assert await raw.hgetall(ALL) == {b"spent": b"7", b"reserved": b"0"}
        assert await raw.ttl(ALL) > 0
    finally:
        await store.close()


async def test_a_crashed_redis_is_unavailable_and_a_restarted_one_serves_again() -> None:
    with RedisServer() as server:
        store = RedisStore(server.url)
        try:
            made = (await store.reserve([claim(APP, 100)], 10)).granted
            assert made is not None
            server.kill()
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: store.reserve([claim(APP, 100)], 1),
                lambda: store.settle(made, 5), lambda: store.usage([APP]),
                lambda: store.reserve([claim(APP, 100)], 1), store.ping]
            for call in calls:
                with pytest.raises(StoreUnavailable, match="ConnectionError"):
                    await asyncio.wait_for(call(), 5)  # refused at once; 5 s only against a hang
            server.restart()  # nothing was saved: it starts empty
            assert (await store.reserve([claim(APP, 100)], 100)).granted is not None
            await store.ping()
        finally:
            await store.close()


async def test_counts_survive_a_redis_restart_with_persistence(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", persist=True) as server:
        store = RedisStore(server.url)
        try:
            made = (await store.reserve([claim(APP, 100)], 30)).granted
            assert made is not None
            await store.settle(made, 25)
            server.restart()
            with pytest.raises(StoreUnavailable):  # the pooled connection died with it
                await store.usage([APP])
            assert await store.usage([APP]) == {APP: Counts(spent=25, reserved=0)}
        finally:
            await store.close()


async def test_a_redis_that_does_not_answer_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections are queued, never answered
        store = RedisStore(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout=0.1)
        try:
            with pytest.raises(StoreUnavailable, match="Timeout"):
                await asyncio.wait_for(store.reserve([claim(APP, 100)], 1), 5)
        finally:
            await store.close()


async def test_errors_never_show_the_password() -> None:
    with RedisServer(password="right-one") as server:
        store = RedisStore(server.url)
        try:
            assert (await store.reserve([claim(APP, 100)], 1)).granted is not None
        finally:
            await store.close()
        for url in (f"redis://admin:hunter2@127.0.0.1:{server.port}/0",  # a wrong password
                    server.url.replace("right-one", "hunter2")):
            store = RedisStore(url)
            try:
                with pytest.raises(StoreUnavailable) as refused:
                    await store.reserve([claim(APP, 100)], 1)
                assert "hunter2" not in str(refused.value) and str(refused.value)
                assert "hunter2" not in store.where
            finally:
                await store.close()
        server.kill()
        store = RedisStore(server.url)  # refused, with the right password in the URL
        try:
            with pytest.raises(StoreUnavailable, match="ConnectionError") as refused:
                await store.reserve([claim(APP, 100)], 1)
            assert "right-one" not in str(refused.value)
        finally:
            await store.close()


def test_redact_and_scrub_hide_credentials() -> None:
    assert redact("redis://u:p%40ss@h:6379/0") == "redis://***@h:6379/0"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
    assert redact("unix:///run/redis.sock?db=0&password=secret") == \
        "unix:///run/redis.sock?db=0&password=***"
    url = "redis://u:p%40ss@h:6379/0"
    assert scrub(f"failed at {url}: wrong p@ss and p%40ss", url) == \
        "failed at redis://***@h:6379/0: wrong *** and ***"
