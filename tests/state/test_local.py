"""LocalStore: windows by its clock, and its counts saved to SQLite (the contract it shares with
RedisStore is in test_redis.py)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar.state import Counts
from sidecar.state.local import SWEEP_SECONDS, LocalStore
from tests.state import ALL, APP, Clock, claim


def rows(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        try:
            return dict(db.execute("SELECT key, spent FROM budgets").fetchall())
        except sqlite3.OperationalError:  # no table yet: the first write is under way
            return {}


def saved(path: Path, expected: dict[str, int]) -> bool:
    return path.exists() and rows(path) == expected


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    pytest.fail("never happened")


async def test_a_window_ends_by_the_clock_and_a_longer_ttl_wins() -> None:
    clock = Clock()
    store = LocalStore(None, clock=clock)
    await store.reserve([claim(APP, 100, ttl=10)], 30)
    await store.reserve([claim(APP, 100, ttl=1)], 30)  # a shorter ttl does not shorten it
    clock.advance(5)
    assert await store.usage([APP]) == {APP: Counts(0, 60)}
    clock.advance(5)
    assert await store.usage([APP]) == {APP: Counts()}


async def test_keys_of_past_windows_are_dropped() -> None:
    clock = Clock()
    store = LocalStore(None, clock=clock)
    await store.reserve([claim(APP, 100, ttl=1)], 30)
    clock.advance(SWEEP_SECONDS + 1)
    await store.reserve([claim(ALL, 100)], 1)  # another key: APP is never asked for again
    assert list(store._entries) == [ALL]


async def test_spend_survives_a_restart_and_reservations_do_not(tmp_path: Path) -> None:
    path = tmp_path / "budgets.sqlite3"
    clock = Clock()
    store = LocalStore(path, clock=clock)
    await store.open()
    claims = [claim(APP, 100), claim(ALL, 1000, ttl=3600)]
    made = (await store.reserve(claims, 50)).granted
    await store.reserve(claims, 30)  # a call still running when the process stops
    assert made is not None
    await store.settle(made, 40)
    await store.close()
    assert rows(path) == {APP: 40, ALL: 40}

    again = LocalStore(path, clock=clock)
    await again.open()
    assert await again.usage([APP, ALL]) == {APP: Counts(spent=40), ALL: Counts(spent=40)}
    assert (await again.reserve(claims, 61)).granted is None
    assert (await again.reserve(claims, 60)).granted is not None
    await again.close()

    clock.advance(3600)  # ALL's window is over, APP's is not
    late = LocalStore(path, clock=clock)
    await late.open()
    assert await late.usage([APP, ALL]) == {APP: Counts(spent=40), ALL: Counts()}
    assert rows(path) == {APP: 40}
    await late.close()


async def test_changes_are_flushed_at_most_every_flush_every_seconds(tmp_path: Path) -> None:
    path = tmp_path / "budgets.sqlite3"
    store = LocalStore(path, flush_every=30)
    await store.open()
    made = (await store.reserve([claim(APP, 1000)], 10)).granted
    assert made is not None
    await store.settle(made, 10)
    await eventually(functools.partial(saved, path, {APP: 10}))  # the first at once
    await store.settle(made, 5)
    await asyncio.sleep(0.2)
    assert rows(path) == {APP: 10}  # the next one waits its turn
    await store.close()  # which writes it
    assert rows(path) == {APP: 15}


async def test_a_short_flush_interval_writes_without_a_close(tmp_path: Path) -> None:
    path = tmp_path / "budgets.sqlite3"
    store = LocalStore(path, flush_every=0.05)
    made = (await store.reserve([claim(APP, 1000)], 10)).granted
    assert made is not None
    for spent in range(1, 6):
        await store.settle(made, 1)
        await eventually(functools.partial(saved, path, {APP: spent}))
    await store.close()


async def test_an_unwritable_file_is_logged_once_and_counting_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "not-a-dir").write_text("")
    store = LocalStore(tmp_path / "not-a-dir" / "budgets.sqlite3", flush_every=0.01)
    await store.open()  # nothing to load
    made = (await store.reserve([claim(APP, 1000)], 10)).granted
    assert made is not None
    with caplog.at_level(logging.WARNING, logger="sidecar"):
        await store.settle(made, 10)
        await eventually(lambda: "not saved" in caplog.text)
        await store.settle(made, 10)
        await asyncio.sleep(0.05)
        await store.close()
    assert caplog.text.count("budget counts not saved") == 1
    assert await store.usage([APP]) == {APP: Counts(spent=20)}


async def test_memory_only_writes_nothing(tmp_path: Path) -> None:
    store = LocalStore(None)
    await store.open()
    made = (await store.reserve([claim(APP, 1000)], 10)).granted
    assert made is not None
    await store.settle(made, 10)
    await store.close()
    assert await store.usage([APP]) == {APP: Counts(spent=10)}
    assert list(tmp_path.iterdir()) == []
