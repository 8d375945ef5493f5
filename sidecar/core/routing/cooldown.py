"""Cooldowns: a model that keeps failing leaves every plan for a while, then is probed back in.

After ``threshold`` failures in a row a model cools down for ``base`` seconds; when that ends it
is eligible again (a probe). A success forgets its failures; a failed probe cools it down again
for twice as long, up to ``longest``. Every attempt counts: first choices, retries, fallbacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Record:
    failures: int = 0  # in a row
    until: float = 0.0  # cooling down until this clock time
    period: float = 0.0  # the length of the last cooldown (doubles on a failed probe)


class Cooldowns:
    def __init__(
        self, *, threshold: int = 3, base: float = 30.0, longest: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold, self.base, self.longest, self.clock = threshold, base, longest, clock
        self._models: dict[str, _Record] = {}
        self._down: dict[str, str] = {}  # cached view: model -> reason
        self._next_expiry = float("inf")

    def failure(self, model: str) -> bool:
        """Count a failure; True when the model starts cooling down."""
        record = self._models.setdefault(model, _Record())
        record.failures += 1
        probing = record.period > 0
        if not probing and record.failures < self.threshold:
            return False
        record.period = min(record.period * 2, self.longest) if probing else self.base
        record.until = self.clock() + record.period
        self._down[model] = f"cooling down after {record.failures} failures in a row"
        self._next_expiry = min(self._next_expiry, record.until)
        return True

    def success(self, model: str) -> None:
        if model in self._models:
            del self._models[model]
            self._down.pop(model, None)

    def down(self) -> dict[str, str]:
        """Models cooling down now, with the reason; the same dict while nothing changes."""
        now = self.clock()
        if now >= self._next_expiry:
            for model in [m for m in self._down if self._models[m].until <= now]:
                del self._down[model]  # its cooldown is over: the next call is a probe
            self._next_expiry = min((self._models[m].until for m in self._down),
                                    default=float("inf"))
        return self._down
