"""sidecar/core/routing/cooldown.py: failures in a row cool a deployment down, probes, doubling;
keyed by deployment (provider + upstream model id), never by model name. Clock injected."""

from __future__ import annotations

import pytest

from sidecar.core.routing.cooldown import Cooldowns
from sidecar.core.vocabulary import Deployment

A = Deployment("openai", "gpt-4o")
SAME_ID_ELSEWHERE = Deployment("api.openai.com (direct)", "gpt-4o")  # a passthrough's


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cooldowns(clock: Clock) -> Cooldowns:
    return Cooldowns(threshold=3, base=30.0, longest=100.0, clock=clock)


def test_threshold_failures_in_a_row_cool_it_down(cooldowns: Cooldowns) -> None:
    assert [cooldowns.failure(A) for _ in range(3)] == [False, False, True]
    assert cooldowns.down() == {A: "cooling down after 3 failures in a row"}


def test_a_success_forgets_the_failures(cooldowns: Cooldowns) -> None:
    cooldowns.failure(A)
    cooldowns.failure(A)
    cooldowns.success(A)
    assert not cooldowns.failure(A) and not cooldowns.failure(A)
    assert cooldowns.down() == {}
    assert cooldowns.failure(A)


def test_health_belongs_to_the_deployment(cooldowns: Cooldowns) -> None:
    """Failures of the same model id on another provider never cool this one down."""
    for _ in range(5):
        cooldowns.failure(SAME_ID_ELSEWHERE)
    assert set(cooldowns.down()) == {SAME_ID_ELSEWHERE}
    assert not cooldowns.failure(A)  # A's own count starts at one
    cooldowns.success(A)
    assert set(cooldowns.down()) == {SAME_ID_ELSEWHERE}  # a success of A heals only A


def test_the_cooldown_ends_then_a_failed_probe_doubles_it(cooldowns: Cooldowns,
                                                          clock: Clock) -> None:
    for _ in range(3):
        cooldowns.failure(A)
    clock.now += 29.9
    assert A in cooldowns.down()
    clock.now += 0.1
    assert cooldowns.down() == {}  # over: the next call is a probe
    assert cooldowns.failure(A)  # the probe failed: 60 s now
    clock.now += 59.9
    assert A in cooldowns.down()
    clock.now += 0.1
    assert cooldowns.down() == {}
    assert cooldowns.failure(A)  # 120 s, capped at longest: 100 s
    clock.now += 99.9
    assert A in cooldowns.down()
    clock.now += 0.1
    assert cooldowns.down() == {}


def test_a_successful_probe_ends_it(cooldowns: Cooldowns, clock: Clock) -> None:
    for _ in range(3):
        cooldowns.failure(A)
    clock.now += 30
    cooldowns.success(A)
    assert cooldowns.down() == {}
    assert [cooldowns.failure(A) for _ in range(3)] == [False, False, True]  # from the start


def test_a_success_while_cooling_down_ends_it(cooldowns: Cooldowns) -> None:
    """A cooling deployment still serves plans with nothing else to try; a success heals it."""
    for _ in range(3):
        cooldowns.failure(A)
    cooldowns.success(A)
    assert cooldowns.down() == {}


def test_down_is_the_same_mapping_while_nothing_changes(cooldowns: Cooldowns,
                                                        clock: Clock) -> None:
    for _ in range(3):
        cooldowns.failure(A)
    first = cooldowns.down()
    clock.now += 1
    assert cooldowns.down() is first  # the policy reads it on every call
