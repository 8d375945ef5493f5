"""Budget counts of this process alone, kept in memory and saved to a small SQLite file.

``LocalStore`` is the store of a single replica (or of every replica while Redis is down,
``resilient.py``). Its counts live in a dict (key -> spent, reserved, expiry); ``reserve`` checks
every claim and then adds, with no ``await`` in between, so calls on the event loop cannot
overspend together.

Persistence (``path``, e.g. ``<confdir>/budgets.sqlite3``; ``None``: memory only):

* ``await open()`` loads the unexpired rows: spent only, since the reservations of a previous
  process belong to calls that are gone;
* a change (a settled call) schedules a flush of the changed keys (spent and expiry) at most
  every ``flush_every`` seconds, written off the loop (``asyncio.to_thread``); ``close()``
  writes every key once more.

A restart therefore forgets at most the spend of the last ``flush_every`` seconds (~1 s), and
all of it if the process is killed before its first flush. Rows only ever grow (the upsert keeps
the larger spent), so a late write can never undo a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.state import Claim, Counts, Reservation, Reserved

log = logging.getLogger("sidecar")

SWEEP_SECONDS = 10.0  # drop expired keys of past windows at most this often
_SCHEMA = ("CREATE TABLE IF NOT EXISTS budgets (key TEXT PRIMARY KEY, spent INTEGER NOT NULL, "
           "expires_at REAL NOT NULL)")
_UPSERT = ("INSERT INTO budgets (key, spent, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) DO "
           "UPDATE SET spent = max(spent, excluded.spent), "
           "expires_at = max(expires_at, excluded.expires_at)")

Row = tuple[str, int, float]


@dataclass(slots=True)
class _Entry:
    spent: int = 0
    reserved: int = 0
    expires_at: float = 0.0

    def counts(self) -> Counts:
        return Counts(spent=self.spent, reserved=self.reserved)


class LocalStore:
    """In-process budget counts (see the module docstring); ``name`` is ``"local"``."""

    name: str = "local"

    def __init__(self, path: Path | None, *, clock: Callable[[], float] = time.time,
                 flush_every: float = 1.0) -> None:
        self.path = path
        self.flush_every = flush_every
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._dirty: set[str] = set()
        self._next_sweep = 0.0
        self._flusher: asyncio.Task[None] | None = None
        self._last_flush = float("-inf")  # loop time
        self._write_failed = False
        self._closed = False

    # -- the store --------------------------------------------------------------------------

    async def reserve(self, claims: Sequence[Claim], amount: int) -> Reserved:
        if amount < 0:
            raise ValueError(f"a reservation cannot be negative: {amount}")
        now = self._clock()
        self._sweep(now)
        entries = [self._live(claim.key, now) for claim in claims]
        fits = all((e.spent + e.reserved if e else 0) + amount <= c.limit
                   for c, e in zip(claims, entries, strict=True))
        if not fits:
            return Reserved(None, {c.key: e.counts() if e else Counts()
                                   for c, e in zip(claims, entries, strict=True)})
        for claim in claims:
            entry = self._entries.setdefault(claim.key, _Entry())
            entry.reserved += amount
            entry.expires_at = max(entry.expires_at, now + claim.ttl)
        return Reserved(Reservation(tuple(claims), amount, self.name),
                        {c.key: self._entries[c.key].counts() for c in claims})

    async def settle(self, reservation: Reservation, actual: int) -> None:
        """``actual`` joins spent and the reservation is released. A key whose window ended
        since the reservation is gone: its spend counts in no window."""
        if actual < 0:
            raise ValueError(f"a call cannot cost less than nothing: {actual}")
        now = self._clock()
        for claim in reservation.claims:
            entry = self._live(claim.key, now)
            if entry is None:
                continue
            entry.spent += actual
            entry.reserved = max(0, entry.reserved - reservation.amount)
            self._dirty.add(claim.key)
        self._schedule_flush()

    async def usage(self, keys: Sequence[str]) -> dict[str, Counts]:
        now = self._clock()
        out: dict[str, Counts] = {}
        for key in keys:
            entry = self._live(key, now)
            out[key] = entry.counts() if entry else Counts()
        return out

    def _live(self, key: str, now: float) -> _Entry | None:
        """The entry of ``key``, dropped (and ``None``) once its window is over."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= now:
            del self._entries[key]
            self._dirty.discard(key)
            return None
        return entry

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[key]
            self._dirty.discard(key)

    # -- persistence ------------------------------------------------------------------------

    async def open(self) -> None:
        """Load the spend of unexpired windows from ``path`` (nothing without one)."""
        if self.path is None:
            return
        rows = await asyncio.to_thread(_load, self.path, self._clock())
        for key, spent, expires_at in rows:
            self._entries.setdefault(key, _Entry(spent=spent, expires_at=expires_at))

    async def close(self) -> None:
        """Stop the flush schedule and write every key (spent and expiry) once more."""
        self._closed = True
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        if self.path is None:
            return
        now = self._clock()
        rows = [(k, e.spent, e.expires_at) for k, e in self._entries.items()
                if e.expires_at > now and e.spent > 0]
        self._dirty.clear()
        await self._write(rows, now)

    def _schedule_flush(self) -> None:
        if self.path is None or self._closed or not self._dirty:
            return
        if self._flusher is None or self._flusher.done():
            loop = asyncio.get_running_loop()
            self._flusher = loop.create_task(self._flush_loop(), name="budget-flush")  # noqa: TID251

    async def _flush_loop(self) -> None:
        """While keys changed: wait until a flush is due, then write them (the loop re-checks
        after each write, so a change made during one is written by the next)."""
        loop = asyncio.get_running_loop()
        while self._dirty and not self._closed:
            await asyncio.sleep(max(0.0, self._last_flush + self.flush_every - loop.time()))
            await self.flush()

    async def flush(self) -> None:
        """Write the keys changed since the last flush now."""
        if self.path is None or not self._dirty:
            return
        now = self._clock()
        keys, self._dirty = self._dirty, set()
        rows = [(k, e.spent, e.expires_at) for k in keys
                if (e := self._entries.get(k)) is not None]
        self._last_flush = asyncio.get_running_loop().time()
        if not await self._write(rows, now):
            self._dirty |= {k for k in keys if k in self._entries}

    async def _write(self, rows: list[Row], now: float) -> bool:
        assert self.path is not None
        try:
            await asyncio.to_thread(_save, self.path, rows, now)
        except (OSError, sqlite3.Error) as e:
            if not self._write_failed:
                log.warning("budget counts not saved to %s: %s (kept in memory)", self.path, e)
            self._write_failed = True
            return False
        if self._write_failed:
            log.info("budget counts saved to %s again", self.path)
        self._write_failed = False
        return True


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=5.0)
    db.execute(_SCHEMA)
    return db


def _load(path: Path, now: float) -> list[Row]:
    if not path.exists():
        return []
    with contextlib.closing(_connect(path)) as db, db:
        db.execute("DELETE FROM budgets WHERE expires_at <= ?", (now,))
        found: list[Any] = db.execute("SELECT key, spent, expires_at FROM budgets").fetchall()
    return [(str(k), int(s), float(x)) for k, s, x in found]


def _save(path: Path, rows: list[Row], now: float) -> None:
    with contextlib.closing(_connect(path)) as db, db:
        db.executemany(_UPSERT, rows)
        db.execute("DELETE FROM budgets WHERE expires_at <= ?", (now,))
