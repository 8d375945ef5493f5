"""Budgets in the request path: check before the call, settle after (``sidecar.core.budget``).

``Budgets.admit`` runs for calls of an app with a budget (or under a global one), before the
call is sent:

1. the counts of the app's and the global budget's current windows are read; the degrade step in
   force (the app's first, else the global one's) decides tier and prefer (``decide(step)``);
2. the policy's expected cost of this very call is reserved on every budget at once
   (``BudgetStore.reserve``: atomic, across replicas with Redis);
3. a reservation that does not fit is tried once more at the last degrade step's cost when the
   budget says ``at_limit: degrade``; otherwise the call is refused with an OpenAI 429 naming
   the app and the budget.

``settle`` adds what the call really cost (the provider's usage at catalog prices; 0 for a
failed call or an unknown price) and releases the reservation. Shadow calls are not budgeted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sidecar.core.budget import GLOBAL, BudgetSpec, DegradeStep, budget_key, to_micros
from sidecar.core.config.apps import AppSpec
from sidecar.core.config.rules import RuleSet
from sidecar.core.config.state import StateSpec
from sidecar.core.errors import BudgetExceededError, BudgetStoreUnavailableError
from sidecar.core.facts import RequestFacts
from sidecar.core.routing.decision import expected_output_tokens
from sidecar.proxy.flow import CallState
from sidecar.proxy.metrics import Metrics
from sidecar.proxy.routing import Routed
from sidecar.state import BudgetStore, Claim, Counts, Reservation, StoreUnavailable
from sidecar.state.local import LocalStore
from sidecar.state.redis import RedisStore
from sidecar.state.resilient import ResilientStore

log = logging.getLogger("sidecar")
SQLITE_FILE = "budgets.sqlite3"


@dataclass(frozen=True, slots=True)
class _Budget:
    owner: str  # the app's name, or GLOBAL
    spec: BudgetSpec
    key: str
    ttl: float

    def claim(self) -> Claim:
        return Claim(self.key, self.spec.limit, self.ttl)


class Budgets:
    def __init__(self, *, metrics: Metrics, confdir: Path | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.metrics, self.confdir, self.clock = metrics, confdir, clock
        self.store: BudgetStore | None = None
        self._state: StateSpec | None = None

    @staticmethod
    def applies(app: AppSpec, rules: RuleSet) -> bool:
        return app.budget is not None or rules.budget is not None

    async def use(self, state: StateSpec) -> BudgetStore:
        """The store for ``state`` (opened the first time, replaced when rules.yaml changes it)."""
        if self.store is not None and state == self._state:
            return self.store
        old, self._state = self.store, state
        local = LocalStore(self.confdir / SQLITE_FILE if self.confdir is not None else None)
        await local.open()
        store: BudgetStore = local
        if state.redis is not None:
            store = ResilientStore(RedisStore(state.redis), local, when_down=state.when_down,
                                   on_change=self.metrics.state_store_up.set)
        self.store = store
        if old is not None:
            await old.close()
        return store

    async def admit(self, state: CallState, app: AppSpec, rules: RuleSet, facts: RequestFacts,
                    decide: Callable[[DegradeStep | None], Routed]) -> Routed:
        budgets = self._budgets(app, rules)
        store = await self.use(rules.state)
        try:
            counts = await store.usage([b.key for b in budgets])
            step = _step(budgets, counts)
            routed = decide(step)
            if routed.decision.shadow:
                return routed
            reserved = await store.reserve([b.claim() for b in budgets], _cost(routed, facts))
            last = _last_step(budgets)
            if reserved.granted is None and last is not None and step != last:
                step, routed = last, decide(last)  # at_limit: degrade, to the cheapest step
                reserved = await store.reserve([b.claim() for b in budgets],
                                               _cost(routed, facts))
        except StoreUnavailable as e:
            raise BudgetStoreUnavailableError(
                f"The budget of app {app.name!r} cannot be checked now ({e}); the call was not "
                "sent.") from None
        self._count(budgets, reserved.counts)
        if reserved.granted is None:
            self.metrics.budget_refusals.labels(self.metrics.app(app.name)).inc()
            over = next(b for b in budgets if reserved.counts.get(b.key, Counts()).used
                        + _cost(routed, facts) > b.spec.limit)
            whose = f"app {app.name!r}" if over.owner != GLOBAL else "all apps together"
            raise BudgetExceededError(
                f"The budget of {whose} ({over.spec.describe()}) has "
                f"${_left(over, reserved.counts):.6f} left: not enough for this call "
                f"(expected ${_cost(routed, facts) / 1e6:.6f}).")
        if step is not None:
            self.metrics.budget_degrades.labels(self.metrics.app(app.name)).inc()
        state.reservation = reserved.granted
        state.budget_remaining = min(_left(b, reserved.counts) for b in budgets)
        return routed

    async def settle(self, reservation: Reservation, cost_usd: float | None) -> None:
        store = self.store
        if store is None:
            return
        try:
            await store.settle(reservation, to_micros(cost_usd or 0.0))
        except StoreUnavailable as e:
            log.warning("a budget settlement was lost: %s", e)

    def _budgets(self, app: AppSpec, rules: RuleSet) -> list[_Budget]:
        now = self.clock()
        owners = [(app.name, app.budget), (GLOBAL, rules.budget)]
        return [_Budget(owner, spec, *budget_key(owner, spec, now))
                for owner, spec in owners if spec is not None]

    def _count(self, budgets: Sequence[_Budget], counts: Mapping[str, Counts]) -> None:
        """The budget gauges, from the counts a store just answered."""
        for b in budgets:
            used = counts.get(b.key, Counts()).used
            label = self.metrics.app(b.owner) if b.owner != GLOBAL else GLOBAL
            self.metrics.budget_limit.labels(label, b.spec.per).set(b.spec.usd)
            self.metrics.budget_used.labels(label, b.spec.per).set(used / 1e6)
            self.metrics.budget_remaining.labels(label, b.spec.per).set(
                max(0.0, (b.spec.limit - used) / 1e6))

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()


def _step(budgets: Sequence[_Budget], counts: Mapping[str, Counts]) -> DegradeStep | None:
    """The degrade step in force: the app's budget first, then the global one."""
    for b in budgets:
        step = b.spec.step(counts.get(b.key, Counts()).used)
        if step is not None:
            return step
    return None


def _last_step(budgets: Sequence[_Budget]) -> DegradeStep | None:
    for b in budgets:
        if b.spec.at_limit == "degrade" and b.spec.degrade:
            return b.spec.degrade[-1]
    return None


def _cost(routed: Routed, facts: RequestFacts) -> int:
    """The policy's expected cost of this call on the model that would serve it (micro-USD;
    0 for a model without a catalog price)."""
    spec = routed.plan[0].spec
    if spec is None:
        return 0
    return to_micros(spec.expected_cost(facts.prompt_tokens, expected_output_tokens(facts)))


def _left(budget: _Budget, counts: Mapping[str, Counts]) -> float:
    """USD left in ``budget`` after what ``counts`` shows spent and reserved."""
    return max(0, budget.spec.limit - counts.get(budget.key, Counts()).used) / 1e6
