"""ResilientStore: Redis first; while it is unreachable, local counts or refusals; one log line
and one ``on_change`` per transition. Mostly with a primary switched off by hand (``Flaky``),
then end to end with a real ``redis-server`` killed and restarted."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from sidecar.state import Claim, Counts, Reservation, Reserved, StoreUnavailable
from sidecar.state.local import LocalStore
from sidecar.state.redis import RedisStore
from sidecar.state.resilient import ResilientStore, WhenDown
from tests.fakes.redis_server import RedisServer
from tests.state import APP, Clock, claim

CLAIMS = [claim(APP, 1000)]


class Flaky:
    """A primary named "redis" (counts of its own) that fails while ``up`` is False."""

    name = "redis"

    def __init__(self) -> None:
        self.counts = LocalStore(None)
        self.up = True
        self.calls = 0

    def _call(self) -> None:
        self.calls += 1
        if not self.up:
            raise StoreUnavailable("ConnectionError: Connection refused.")

    async def reserve(self, claims: Sequence[Claim], amount: int) -> Reserved:
        self._call()
        made = await self.counts.reserve(claims, amount)
        granted = made.granted and dataclasses.replace(made.granted, store=self.name)
        return Reserved(granted, made.counts)

    async def settle(self, reservation: Reservation, actual: int) -> None:
        self._call()
        await self.counts.settle(reservation, actual)

    async def usage(self, keys: Sequence[str]) -> dict[str, Counts]:
        self._call()
        return await self.counts.usage(keys)

    async def close(self) -> None:
        await self.counts.close()


def make(when_down: WhenDown = "local") -> tuple[ResilientStore, Flaky, list[bool], Clock]:
    primary, changes, clock = Flaky(), list[bool](), Clock()
    store = ResilientStore(primary, LocalStore(None), when_down=when_down,
                           on_change=changes.append, clock=clock)
    return store, primary, changes, clock


async def granted(store: ResilientStore, amount: int = 10) -> Reservation:
    made = (await store.reserve(CLAIMS, amount)).granted
    assert made is not None
    return made


async def test_an_outage_counts_locally_until_redis_answers_again(
        caplog: pytest.LogCaptureFixture) -> None:
    store, primary, changes, clock = make("local")
    caplog.set_level(logging.INFO, logger="sidecar")
    on_redis = await granted(store, 10)
    assert on_redis.store == "redis" and store.name == "redis" and changes == []

    primary.up = False
    during = [await granted(store, 20), await granted(store, 30)]
    assert [r.store for r in during] == ["local", "local"]
    assert primary.calls == 2  # the second went straight to the fallback
    assert changes == [False]
    assert await store.usage([APP]) == {APP: Counts(spent=0, reserved=50)}  # the local counts

    primary.up = True
    assert (await granted(store)).store == "local"  # not asked again before retry_after
    clock.advance(1.0)
    after = await granted(store, 5)
    assert after.store == "redis" and changes == [False, True]
    assert await store.usage([APP]) == {APP: Counts(spent=0, reserved=15)}

    await store.settle(during[0], 7)  # made locally: settled locally, even with Redis back
    await store.settle(on_redis, 3)
    assert await store.fallback.usage([APP]) == {APP: Counts(spent=7, reserved=40)}
    assert await primary.counts.usage([APP]) == {APP: Counts(spent=3, reserved=5)}

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "budget store redis unreachable: ConnectionError: Connection refused.; counting locally"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "budget store redis back"]


async def test_refuse_raises_while_redis_is_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    store, primary, changes, clock = make("refuse")
    primary.up = False
    with caplog.at_level(logging.WARNING, logger="sidecar"):
        for _ in range(3):
            with pytest.raises(StoreUnavailable, match="budget store redis unreachable: "
                                                       "ConnectionError"):
                await store.reserve(CLAIMS, 10)
    assert primary.calls == 1 and changes == [False]
    assert caplog.text.count("unreachable") == 1 and "refusing budgeted calls" in caplog.text
    assert await store.fallback.usage([APP]) == {APP: Counts()}  # nothing counted locally
    primary.up = True
    clock.advance(1.0)
    assert (await granted(store)).store == "redis" and changes == [False, True]


async def test_a_settle_redis_cannot_take_is_logged_and_dropped(
        caplog: pytest.LogCaptureFixture) -> None:
    store, primary, changes, clock = make("local")
    made = await granted(store, 10)
    primary.up = False
    with caplog.at_level(logging.WARNING, logger="sidecar"):
        await store.settle(made, 12)  # no exception: the call is over
    assert "was not recorded on budget:nightly" in caplog.text and changes == [False]
    primary.up = True
    clock.advance(1.0)
    assert await store.usage([APP]) == {APP: Counts(spent=0, reserved=10)}  # still reserved
    assert changes == [False, True]


async def test_on_change_is_called_once_per_transition() -> None:
    store, primary, changes, clock = make("local")
    for _ in range(2):
        primary.up = False
        await asyncio.gather(*(store.reserve(CLAIMS, 1) for _ in range(5)))
        clock.advance(1.0)
        await store.reserve(CLAIMS, 1)  # asked again, still down
        primary.up = True
        clock.advance(1.0)
        await asyncio.gather(*(store.reserve(CLAIMS, 1) for _ in range(5)))
    assert changes == [False, True, False, True]


async def test_usage_comes_from_redis_and_else_from_the_local_counts() -> None:
    store, primary, changes, clock = make("local")
    await granted(store, 10)
    assert await store.usage([APP]) == {APP: Counts(reserved=10)}
    primary.up = False
    assert await store.usage([APP]) == {APP: Counts()}
    assert changes == [False]


def test_when_down_is_checked() -> None:
    with pytest.raises(ValueError, match="when_down"):
        ResilientStore(Flaky(), LocalStore(None), when_down="sometimes")  # type: ignore[arg-type]


async def test_open_loads_the_local_counts_and_close_closes_both(tmp_path: Path) -> None:
    path = tmp_path / "budgets.sqlite3"
    first = LocalStore(path)
    made = (await first.reserve(CLAIMS, 10)).granted
    assert made is not None
    await first.settle(made, 9)
    await first.close()
    primary = Flaky()
    store = ResilientStore(primary, LocalStore(path), when_down="local")
    await store.open()
    assert await store.fallback.usage([APP]) == {APP: Counts(spent=9)}
    await store.close()


# ---------------------------------------------------------------------------------------------
# with a real Redis
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("when_down", ["local", "refuse"])
async def test_a_killed_redis_falls_back_and_a_restarted_one_takes_over(
        when_down: WhenDown) -> None:
    with RedisServer() as server:
        changes: list[bool] = []
        clock = Clock()
        store = ResilientStore(RedisStore(server.url), LocalStore(None), when_down=when_down,
                               on_change=changes.append, clock=clock)
        try:
            assert (await granted(store)).store == "redis"
            server.kill()
            if when_down == "local":
                assert (await granted(store)).store == "local"
            else:
                with pytest.raises(StoreUnavailable, match="ConnectionError"):
                    await store.reserve(CLAIMS, 10)
            assert changes == [False]
            server.restart()
            clock.advance(1.0)
            assert (await granted(store)).store == "redis"
            assert changes == [False, True]
            assert await store.usage([APP]) == {APP: Counts(reserved=10)}  # a fresh Redis
        finally:
            await store.close()
