"""Budgets: how much an app (or everything) may spend per calendar window, and what happens as it
runs low (pure: the shell holds the counts, ``sidecar.state``).

    apps:
      - name: nightly-summaries
        budget: {usd: 50, per: day, degrade: [{at: 80%, tier: economy, prefer: cheap}],
                 at_limit: refuse}
    budget: {usd: 500, per: month}          # top level: every app together

* **Windows are calendar windows in UTC**: ``hour``, ``day``, ``week`` (from Monday) or
  ``month``; spend starts again at 0 when the next one begins.
* **Checked before each call** with the policy's expected cost of this very request (a
  *reservation*), settled after with the provider's real usage. A reservation is made only if
  spent + reserved + this call's expected cost fits under the limit, atomically (in one process
  or, with a shared store, across replicas), so concurrent calls cannot overspend together.
* **Degrade**: once spent + reserved reaches a step's ``at`` (a share of the limit), calls are
  routed by the normal policy in that step's tier and prefer (the last step reached wins). A
  call whose reservation does not fit is refused with an OpenAI 429 (``at_limit: refuse``, the
  default) naming the app and the budget, or (``at_limit: degrade``) tried once more at the last
  degrade step's expected cost before it is refused.

Money is counted in integer micro-dollars (``to_micros``) so stores add exactly.
"""

from __future__ import annotations

import calendar
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sidecar.core.config.yamlfile import FieldError, mapping_of
from sidecar.core.vocabulary import PREFERS, TIERS, Prefer, Tier

Period = Literal["hour", "day", "week", "month"]
PERIODS: tuple[Period, ...] = get_args(Period)
AtLimit = Literal["refuse", "degrade"]
AT_LIMIT: tuple[AtLimit, ...] = get_args(AtLimit)
GLOBAL = "*"  # the budget of every app together
_KEYS = {"usd", "per", "degrade", "at_limit"}
_STEP_KEYS = {"at", "tier", "prefer"}
MAX_USD = 10_000_000.0


@dataclass(frozen=True, slots=True)
class DegradeStep:
    at: float  # a share of the limit, 0 < at < 1
    tier: Tier | None = None
    prefer: Prefer | None = None

    def describe(self) -> str:
        parts = [p for p in (self.tier and f"tier {self.tier}",
                             self.prefer and f"prefer {self.prefer}") if p]
        return f"at {self.at:.0%}: {', '.join(parts)}"


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    usd: float
    per: Period
    degrade: tuple[DegradeStep, ...] = ()  # by ``at``, lowest first
    at_limit: AtLimit = "refuse"

    @property
    def limit(self) -> int:
        return to_micros(self.usd)

    def step(self, used: int) -> DegradeStep | None:
        """The degrade step in force once ``used`` micro-dollars are spent or reserved."""
        reached = [s for s in self.degrade if used >= s.at * self.limit]
        return reached[-1] if reached else None

    def describe(self) -> str:
        return f"${self.usd:g} per {self.per}"


def to_micros(usd: float) -> int:
    """USD -> whole micro-dollars, rounded up (a reservation never under-counts)."""
    return math.ceil(round(usd * 1_000_000, 6))


def window(per: Period, now: float) -> tuple[str, float]:
    """The calendar window (UTC) ``now`` falls in: its id, and the seconds until it ends."""
    t = time.gmtime(now)
    if per == "hour":
        start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, 0, 0))
        return time.strftime("%Y-%m-%dT%H", t), start + 3600 - now
    if per == "day":
        start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
        return time.strftime("%Y-%m-%d", t), start + 86400 - now
    if per == "week":
        day = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
        start = day - t.tm_wday * 86400  # Monday
        return time.strftime("%Y-%m-%d", time.gmtime(start)) + "/week", start + 7 * 86400 - now
    days = calendar.monthrange(t.tm_year, t.tm_mon)[1]
    start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    return time.strftime("%Y-%m", t), start + days * 86400 - now


def budget_key(app: str, spec: BudgetSpec, now: float) -> tuple[str, float]:
    """The store key of ``app``'s budget in the window of ``now``, and its time to live."""
    window_id, left = window(spec.per, now)
    return f"budget:{app}:{spec.per}:{window_id}", left


def parse_budget(raw: Any, where: str) -> BudgetSpec | None:
    """``budget:`` of an app (``where`` = its key path) or of the whole file."""
    if raw is None:
        return None
    raw = mapping_of(raw, where, _KEYS, "{usd: 50, per: day}")
    usd = raw.get("usd")
    if isinstance(usd, bool) or not isinstance(usd, int | float) or not 0 < usd <= MAX_USD:
        raise FieldError(f"{where}.usd", "required, a number of US dollars above 0")
    per = raw.get("per", "day")
    if per not in PERIODS:
        raise FieldError(f"{where}.per", f"{per!r} is not one of: {', '.join(PERIODS)}")
    at_limit = raw.get("at_limit", "refuse")
    if at_limit not in AT_LIMIT:
        raise FieldError(f"{where}.at_limit", f"{at_limit!r} is not one of: {', '.join(AT_LIMIT)}")
    steps = raw.get("degrade") or []
    if not isinstance(steps, list):
        raise FieldError(f"{where}.degrade", "must be a list of {at: 80%, tier: ..., prefer: ...}")
    degrade = tuple(sorted((_step(s, f"{where}.degrade[{i}]") for i, s in enumerate(steps)),
                           key=lambda s: s.at))
    if at_limit == "degrade" and not degrade:
        raise FieldError(f"{where}.at_limit", "'degrade' needs at least one degrade step")
    return BudgetSpec(usd=float(usd), per=per, degrade=degrade, at_limit=at_limit)


def _step(raw: Any, where: str) -> DegradeStep:
    raw = mapping_of(raw, where, _STEP_KEYS, "{at: 80%, tier: economy, prefer: cheap}")
    tier, prefer = raw.get("tier"), raw.get("prefer")
    if tier is not None and tier not in TIERS:
        raise FieldError(f"{where}.tier", f"{tier!r} is not one of: {', '.join(TIERS)}")
    if prefer is not None and prefer not in PREFERS:
        raise FieldError(f"{where}.prefer", f"{prefer!r} is not one of: {', '.join(PREFERS)}")
    if tier is None and prefer is None:
        raise FieldError(where, "needs a tier, a prefer or both")
    return DegradeStep(at=_share(raw.get("at"), f"{where}.at"), tier=tier, prefer=prefer)


def _share(raw: Any, where: str) -> float:
    """``80%`` or ``0.8`` -> 0.8 (strictly between 0 and 1)."""
    text = str(raw).strip() if raw is not None and not isinstance(raw, bool) else ""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(%?)", text)
    if match is None:
        raise FieldError(where, f"{raw!r} is not a share of the budget like 80% or 0.8")
    value = float(match.group(1)) / (100 if match.group(2) else 1)
    if not 0 < value < 1:
        raise FieldError(where, "must be above 0% and below 100%")
    return value
