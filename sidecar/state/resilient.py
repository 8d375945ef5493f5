"""Redis first; while it cannot be reached, count locally or refuse budgeted calls.

``ResilientStore`` makes every reservation on the primary (``RedisStore``). When it answers
``StoreUnavailable`` the outage starts: one WARNING (``budget store redis unreachable: ...;
counting locally`` or ``...; refusing budgeted calls``) and ``on_change(False)``; then

* ``when_down="local"``: the call is reserved on the fallback (``LocalStore``; the reservation
  says ``store="local"``), so each replica keeps its own count of the outage's spend against the
  full limit: together the replicas may spend up to (replicas x limit) while Redis is down,
  and Redis never learns of that spend;
* ``when_down="refuse"``: ``StoreUnavailable`` is raised (the caller refuses the call).

After a failure the primary is left alone for ``retry_after`` seconds (reservations go straight
to the outage behaviour), so a dead Redis is not asked on every call. The first call that
succeeds on it again ends the outage: one INFO line (``budget store redis back``) and
``on_change(True)``.

``settle`` goes to the store that made the reservation (a reservation made locally stays local,
even once Redis is back). A settle that cannot reach Redis is logged and dropped: its
reservation stays counted as reserved in Redis until the window ends, so the budget loses the
difference between the call's actual cost and its reservation (more spend than reserved goes
uncounted; less holds the rest of the reservation). ``usage`` asks the primary, else the
fallback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from sidecar.core.config.state import WHEN_DOWN, WhenDown
from sidecar.state import BudgetStore, Claim, Counts, Reservation, Reserved, StoreUnavailable
from sidecar.state.local import LocalStore

log = logging.getLogger("sidecar")


class ResilientStore:
    """``primary`` (Redis) with ``fallback`` (local counts) behind it; see the module
    docstring. ``name`` is the primary's (``"redis"``)."""

    def __init__(self, primary: BudgetStore, fallback: LocalStore, *, when_down: WhenDown,
                 on_change: Callable[[bool], None] | None = None, retry_after: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if when_down not in WHEN_DOWN:
            raise ValueError(f"when_down must be 'local' or 'refuse', not {when_down!r}")
        self.primary = primary
        self.fallback = fallback
        self.name: str = primary.name
        self.when_down = when_down
        self.retry_after = retry_after
        self._on_change = on_change
        self._clock = clock
        self.up = True  # as far as the last call to the primary tells
        self.reason = ""  # why the primary is down
        self._skip_until = float("-inf")

    async def reserve(self, claims: Sequence[Claim], amount: int) -> Reserved:
        if self._primary_due():
            try:
                reserved = await self.primary.reserve(claims, amount)
            except StoreUnavailable as e:
                self._failed(e)
            else:
                self._succeeded()
                return reserved
        if self.when_down == "refuse":
            raise StoreUnavailable(f"budget store {self.name} unreachable: {self.reason}")
        return await self.fallback.reserve(claims, amount)

    async def settle(self, reservation: Reservation, actual: int) -> None:
        """On the store that made ``reservation``. Tried on the primary even while it is
        thought down (only calls it granted are settled there, so this cannot hammer it)."""
        if reservation.store != self.primary.name:
            await self.fallback.settle(reservation, actual)
            return
        try:
            await self.primary.settle(reservation, actual)
        except StoreUnavailable as e:
            self._failed(e)
            log.warning("budget store %s unreachable: a call's cost (%d micro-USD, %d reserved) "
                        "was not recorded on %s", self.name, actual, reservation.amount,
                        ", ".join(c.key for c in reservation.claims))
        else:
            self._succeeded()

    async def usage(self, keys: Sequence[str]) -> dict[str, Counts]:
        if self._primary_due():
            try:
                counts = await self.primary.usage(keys)
            except StoreUnavailable as e:
                self._failed(e)
            else:
                self._succeeded()
                return counts
        return await self.fallback.usage(keys)

    async def open(self) -> None:
        """Load the fallback's saved counts (``LocalStore.open``)."""
        await self.fallback.open()

    async def close(self) -> None:
        try:
            await self.primary.close()
        finally:
            await self.fallback.close()

    def _primary_due(self) -> bool:
        return self.up or self._clock() >= self._skip_until

    def _failed(self, error: StoreUnavailable) -> None:
        self._skip_until = self._clock() + self.retry_after
        self.reason = str(error) or type(error).__name__
        if not self.up:
            return
        self.up = False
        then = "counting locally" if self.when_down == "local" else "refusing budgeted calls"
        log.warning("budget store %s unreachable: %s; %s", self.name, self.reason, then)
        if self._on_change is not None:
            self._on_change(False)

    def _succeeded(self) -> None:
        if self.up:
            return
        self.up = True
        log.info("budget store %s back", self.name)
        if self._on_change is not None:
            self._on_change(True)
