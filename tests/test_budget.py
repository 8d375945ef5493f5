"""Budgets as rules.yaml states them (sidecar.core.budget): calendar windows in UTC, degrade
steps, and a broken budget named by file, line and key."""

from __future__ import annotations

import calendar

import pytest

from sidecar.core.budget import BudgetSpec, DegradeStep, parse_budget, to_micros, window
from sidecar.core.config.rules import parse_rules_text
from sidecar.core.errors import ConfigError

T = calendar.timegm((2026, 12, 9, 13, 45, 30))  # Wednesday 9 December 2026, 13:45:30 UTC


@pytest.mark.parametrize("per, window_id, left", [
    ("hour", "2026-12-09T13", 14 * 60 + 30),
    ("day", "2026-12-09", 10 * 3600 + 14 * 60 + 30),
    ("week", "2026-12-07/week", 4 * 86400 + 10 * 3600 + 14 * 60 + 30),  # from Monday the 7th
    ("month", "2026-12", 22 * 86400 + 10 * 3600 + 14 * 60 + 30),
])
def test_windows_are_calendar_windows_in_utc(per: str, window_id: str, left: float) -> None:
    assert window(per, T) == (window_id, left)  # type: ignore[arg-type]
    # One second before the window ends it is still the same window; at its end the next one.
    assert window(per, T + left - 1)[0] == window_id  # type: ignore[arg-type]
    assert window(per, T + left)[0] != window_id  # type: ignore[arg-type]


def test_the_step_in_force_is_the_last_one_reached() -> None:
    spec = parse_budget({"usd": 10, "per": "day", "degrade": [
        {"at": "90%", "tier": "economy"}, {"at": 0.5, "prefer": "cheap"}]}, "budget")
    assert spec == BudgetSpec(10.0, "day", (DegradeStep(0.5, prefer="cheap"),
                                             DegradeStep(0.9, tier="economy")))
    assert spec.step(to_micros(4.99)) is None
    assert spec.step(to_micros(5)) == DegradeStep(0.5, prefer="cheap")
    assert spec.step(to_micros(9.5)) == DegradeStep(0.9, tier="economy")


def test_money_is_counted_in_micro_dollars_rounded_up() -> None:
    assert to_micros(0.0000001) == 1 and to_micros(1.5) == 1_500_000


@pytest.mark.parametrize("budget, where", [
    ("{usd: 0}", "apps[0].budget.usd"),
    ("{usd: 5, per: fortnight}", "apps[0].budget.per"),
    ("{usd: 5, limit: 3}", "apps[0].budget.limit"),
    ("{usd: 5, degrade: [{at: 120%, tier: economy}]}", "apps[0].budget.degrade[0].at"),
    ("{usd: 5, degrade: [{at: 80%}]}", "apps[0].budget.degrade[0]"),
    ("{usd: 5, degrade: [{at: 80%, tier: cheapest}]}", "apps[0].budget.degrade[0].tier"),
    ("{usd: 5, at_limit: degrade}", "apps[0].budget.at_limit"),
    ("[50]", "apps[0].budget"),
])
def test_a_broken_budget_names_file_line_and_key(budget: str, where: str) -> None:
    text = f"version: 1\napps:\n  - name: a\n    budget: {budget}\n"
    with pytest.raises(ConfigError) as info:
        parse_rules_text(text, path="r.yaml")
    assert str(info.value).startswith(f"r.yaml:4: {where}:"), str(info.value)


@pytest.mark.parametrize("state, where", [
    ("{redis: 'http://x'}", "state.redis"),
    ("{redis: 'redis://x', when_down: panic}", "state.when_down"),
    ("{redis: 'redis://x', cluster: true}", "state.cluster"),
])
def test_a_broken_state_names_its_key(state: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules_text(f"version: 1\nstate: {state}\n", path="r.yaml")
    assert str(info.value).startswith(f"r.yaml:2: {where}:"), str(info.value)
