"""Cooldowns: a deployment that keeps failing leaves the plans that have alternatives for a
while, then is probed back in.

Health belongs to what was tried -- a ``Deployment``, a provider and its own model id -- never to
a model name: a failing passthrough of ``gpt-4o`` to one provider says nothing of the catalog's
``gpt-4o`` on another. After ``threshold`` failures in a row a deployment cools down for ``base``
seconds; when that ends it is eligible again (a probe). A success forgets its failures; a failed
probe cools it down again for twice as long, up to ``longest``. Every attempt counts: first
choices, retries, fallbacks. The policy leaves a cooling deployment out of a plan unless
nothing else can serve; tried anyway then, its failure counts as a failed probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sidecar.core.vocabulary import Deployment


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
        self._records: dict[Deployment, _Record] = {}
        self._down: dict[Deployment, str] = {}  # cached view: deployment -> reason
        self._next_expiry = float("inf")

    def failure(self, deployment: Deployment) -> bool:
        """Count a failure; True when the deployment starts cooling down."""
        record = self._records.setdefault(deployment, _Record())
        record.failures += 1
        probing = record.period > 0
        if not probing and record.failures < self.threshold:
            return False
        record.period = min(record.period * 2, self.longest) if probing else self.base
        record.until = self.clock() + record.period
        self._down[deployment] = f"cooling down after {record.failures} failures in a row"
        self._next_expiry = min(self._next_expiry, record.until)
        return True

    def success(self, deployment: Deployment) -> None:
        if deployment in self._records:
            del self._records[deployment]
            self._down.pop(deployment, None)

    def down(self) -> Mapping[Deployment, str]:
        """Deployments cooling down now, with the reason; the same mapping while nothing
        changes (callers must not modify it)."""
        now = self.clock()
        if now >= self._next_expiry:
            for d in [d for d in self._down if self._records[d].until <= now]:
                del self._down[d]  # its cooldown is over: the next call is a probe
            self._next_expiry = min((self._records[d].until for d in self._down),
                                    default=float("inf"))
        return self._down
