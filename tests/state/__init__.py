"""Tests of the budget stores (``sidecar.state``), and what they share: a clock to move by hand
and a claim maker."""

from __future__ import annotations

from sidecar.state import Claim

DAY = 86_400.0
APP = "budget:nightly:day:2026-03-02"
ALL = "budget:*:day:2026-03-02"


class Clock:
    """A clock that moves only when told (``store = LocalStore(..., clock=Clock())``)."""

    def __init__(self, now: float = 1_772_409_600.0) -> None:  # 2026-03-02T00:00:00Z
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def claim(key: str, limit: int, ttl: float = DAY) -> Claim:
    return Claim(key=key, limit=limit, ttl=ttl)
