"""Shared state the sidecar keeps across calls (and, with Redis, across replicas): budget counts.

``BudgetStore`` is the seam; all money is integer micro-dollars (``sidecar.core.budget``).

* ``reserve(claims, amount)``: atomically, for every claim (a budget key and its limit), check
  that spent + reserved + ``amount`` fits under the limit; if all fit, add ``amount`` to each
  claim's reserved count; either way answer the counts seen (``Reserved``).
* ``settle(reservation, actual)``: a finished call: ``actual`` is added to spent and the
  reservation is released, on the store that made it.
* ``usage(keys)``: spent and reserved per key (absent keys count 0).

    BudgetStore (Protocol)
      LocalStore      in-process counts, persisted to SQLite in the confdir (local.py)
      RedisStore      redis-py (asyncio) with Lua scripts: one budget for every replica (redis.py)
      ResilientStore  Redis first; while it is unreachable: local counts, or refuse (resilient.py)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Claim:
    key: str  # sidecar.core.budget.budget_key: app, period and window
    limit: int  # micro-dollars
    ttl: float  # seconds until the window ends (a store may expire the key after it)


@dataclass(frozen=True, slots=True)
class Counts:
    spent: int = 0
    reserved: int = 0

    @property
    def used(self) -> int:
        return self.spent + self.reserved


@dataclass(frozen=True, slots=True)
class Reservation:
    """What a granted ``reserve`` holds, to be settled on the store that made it."""

    claims: tuple[Claim, ...]
    amount: int
    store: str  # "local" or "redis": where it must be settled


@dataclass(frozen=True, slots=True)
class Reserved:
    granted: Reservation | None  # None: some claim would go over its limit
    counts: Mapping[str, Counts] = field(default_factory=dict)  # per key, as seen (after
    #                                                             the reservation when granted)


class StoreUnavailable(Exception):
    """The store cannot be reached (and the configuration says to refuse meanwhile)."""


class BudgetStore(Protocol):
    name: str

    async def reserve(self, claims: Sequence[Claim], amount: int) -> Reserved: ...

    async def settle(self, reservation: Reservation, actual: int) -> None: ...

    async def usage(self, keys: Sequence[str]) -> dict[str, Counts]: ...

    async def close(self) -> None: ...
