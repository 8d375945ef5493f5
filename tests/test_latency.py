"""sidecar/core/routing/latency.py: EWMA of observed latency per deployment, priors, staleness;
clock injected."""

from __future__ import annotations

import random

import pytest

from sidecar.core.config.catalog import ModelSpec
from sidecar.core.routing.latency import (
    ALPHA,
    DEFAULT_TOKENS_PER_SECOND,
    DEFAULT_TTFT,
    STALE_AFTER,
    LatencyEstimate,
    LatencyTracker,
    prior_seconds,
)
from sidecar.core.vocabulary import Deployment


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def spec(name: str = "m", *, ttft: float | None = 0.5, tps: float | None = 100.0) -> ModelSpec:
    return ModelSpec(name=name, provider="p", upstream_id=name, tier="standard", input_price=1.0,
                     output_price=1.0, context=1000, ttft_prior=ttft, tokens_per_second_prior=tps)


def at(name: str = "m") -> Deployment:
    """The deployment of ``spec(name)``."""
    return Deployment("p", name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tracker(clock: Clock) -> LatencyTracker:
    return LatencyTracker(clock=clock)


def test_alpha() -> None:
    assert ALPHA == 0.2  # the numbers below are worked out for this weight


@pytest.mark.parametrize("ttft, tps, stream, seconds", [
    (0.5, 100.0, True, 0.5),
    (0.5, 100.0, False, 0.5 + 200 / 100),
    (None, 100.0, True, DEFAULT_TTFT),
    (None, None, False, DEFAULT_TTFT + 200 / DEFAULT_TOKENS_PER_SECOND),
    (0.5, None, False, 0.5 + 200 / DEFAULT_TOKENS_PER_SECOND),
])
def test_unobserved_models_use_priors_then_defaults(
    tracker: LatencyTracker, ttft: float | None, tps: float | None, stream: bool, seconds: float,
) -> None:
    estimate = tracker.estimate(spec(ttft=ttft, tps=tps), stream=stream, output_tokens=200)
    assert estimate == LatencyEstimate(pytest.approx(seconds), observed=False, samples=0)


@pytest.mark.parametrize("observations, expected", [
    ([1.0], 1.0),
    ([1.0, 2.0], 1.2),
    ([1.0, 2.0, 0.2], 1.0),
    ([3.0, 3.0, 3.0, 3.0], 3.0),
    ([1.0, 6.0, 6.0], 2.8),
])
def test_time_to_first_token_is_an_ewma(tracker: LatencyTracker, observations: list[float],
                                        expected: float) -> None:
    for ttft in observations:
        tracker.record(at("m"), duration=ttft + 1.0, ttft=ttft, output_tokens=10)
    estimate = tracker.estimate(spec(), stream=True, output_tokens=500)
    assert estimate.seconds == pytest.approx(expected)
    assert (estimate.observed, estimate.samples) == (True, len(observations))


def test_non_streamed_calls_measure_total_time_per_output_token(tracker: LatencyTracker) -> None:
    tracker.record(at("m"), duration=10.0, output_tokens=100)  # 0.1 s/token
    assert tracker.estimate(spec(), stream=False, output_tokens=50) == LatencyEstimate(
        pytest.approx(5.0), observed=True, samples=1)
    tracker.record(at("m"), duration=60.0, output_tokens=100)  # 0.6 s/token -> 0.1 + 0.2 * 0.5
    assert tracker.estimate(spec(), stream=False, output_tokens=50).seconds == pytest.approx(10.0)
    # a non-streamed call says nothing about the first token: streams still use the prior
    assert tracker.estimate(spec(), stream=True, output_tokens=50) == LatencyEstimate(
        0.5, observed=False, samples=2)


def test_streams_split_first_token_and_generation(tracker: LatencyTracker) -> None:
    tracker.record(at("m"), duration=5.0, ttft=1.0, output_tokens=100)  # 4 s for 100 tokens
    assert tracker.estimate(spec(), stream=True, output_tokens=100).seconds == pytest.approx(1.0)
    assert tracker.estimate(spec(), stream=False, output_tokens=100).seconds == pytest.approx(5.0)
    assert tracker.estimate(spec(), stream=False, output_tokens=10).seconds == pytest.approx(1.4)


@pytest.mark.parametrize("record", [
    {"duration": 3.0},  # no usage seen
    {"duration": 3.0, "output_tokens": 0},
    {"duration": 0.5, "ttft": 1.0, "output_tokens": 10},  # a clock glitch: negative generation
])
def test_calls_without_usable_token_counts_leave_the_rate_alone(
    tracker: LatencyTracker, record: dict[str, float],
) -> None:
    tracker.record(at("m"), **record)
    estimate = tracker.estimate(spec(ttft=None), stream=False, output_tokens=100)
    assert estimate.observed is False and estimate.samples == 1
    assert tracker.snapshot()[at("m")]["seconds_per_token"] is None


def test_models_are_tracked_separately(tracker: LatencyTracker) -> None:
    tracker.record(at("a"), duration=2.0, ttft=2.0)
    assert tracker.estimate(spec("b"), stream=True, output_tokens=1).observed is False
    assert tracker.estimate(spec("a"), stream=True, output_tokens=1).seconds == 2.0


def test_a_deployment_is_a_provider_and_a_model_id_not_a_name(tracker: LatencyTracker) -> None:
    """The same model id on another provider (a passthrough, a second provider) is another
    deployment; two catalog names for one deployment read the same observations."""
    elsewhere = Deployment("elsewhere", "m")
    tracker.record(elsewhere, duration=9.0, ttft=9.0)
    tracker.penalize(elsewhere)
    assert tracker.estimate(spec("m"), stream=True, output_tokens=1) == LatencyEstimate(
        0.5, observed=False, samples=0)
    assert tracker.is_stale(at("m")) and not tracker.is_stale(elsewhere)
    alias = ModelSpec(name="alias", provider="p", upstream_id="m", tier="standard",
                      input_price=1.0, output_price=1.0, context=1000)
    tracker.record(alias.deployment, duration=3.0, ttft=2.0)
    assert alias.deployment == spec("m").deployment == at("m")
    assert tracker.estimate(spec("m"), stream=True, output_tokens=1).seconds == 2.0
    assert set(tracker.snapshot()) == {elsewhere, at("m")}


def test_staleness(tracker: LatencyTracker, clock: Clock) -> None:
    assert tracker.is_stale(at("m"))  # never observed
    tracker.record(at("m"), duration=1.0)
    assert not tracker.is_stale(at("m"))
    clock.now += STALE_AFTER
    assert not tracker.is_stale(at("m"))
    clock.now += 0.1
    assert tracker.is_stale(at("m"))
    tracker.record(at("m"), duration=1.0)
    assert not tracker.is_stale(at("m"))
    assert tracker.is_stale(at("other"))


def test_snapshot(tracker: LatencyTracker) -> None:
    assert tracker.snapshot() == {}
    tracker.record(at("m"), duration=5.0, ttft=1.0, output_tokens=100)
    tracker.record(at("n"), duration=2.0)
    assert tracker.snapshot() == {
        at("m"): {"ttft_seconds": 1.0, "seconds_per_token": pytest.approx(0.04), "samples": 1},
        at("n"): {"ttft_seconds": None, "seconds_per_token": None, "samples": 1},
    }


def test_seconds_for_a_pool_are_the_estimates_to_the_bit(clock: Clock) -> None:
    """``seconds`` is the per-call scan of prefer=fast: the very floats ``estimate`` gives."""
    rnd = random.Random(4)
    tracker = LatencyTracker(clock=clock)
    specs = [spec(f"m{i}", ttft=rnd.choice((None, 0.0, 0.3, 1.7)),
                  tps=rnd.choice((None, 0.0, 33.3, 120.0))) for i in range(60)]
    for s in specs:
        kind = rnd.randrange(5)
        if kind == 1:
            tracker.record(s.deployment, duration=rnd.uniform(0.1, 9))  # no usage: no rate
        elif kind == 2:
            tracker.record(s.deployment, duration=rnd.uniform(1, 9), output_tokens=rnd.randint(1, 500))
        elif kind == 3:
            tracker.record(s.deployment, duration=rnd.uniform(1, 9), ttft=rnd.uniform(0, 1),
                           output_tokens=rnd.choice((None, 200)))
        elif kind == 4:
            tracker.penalize(s.deployment)
    for stream in (True, False):
        for output in (0, 1, 256, 500):
            expected = [tracker.estimate(s, stream=stream, output_tokens=output).seconds
                        for s in specs]
            assert tracker.seconds(specs, stream=stream, output_tokens=output) == expected
            priors = [prior_seconds(s, stream=stream, output_tokens=output) for s in specs]
            assert tracker.seconds(specs, stream=stream, output_tokens=output,
                                   priors=priors) == expected
            assert priors == [LatencyTracker().estimate(s, stream=stream,
                                                        output_tokens=output).seconds
                              for s in specs]


def test_stale_for_many_models(tracker: LatencyTracker, clock: Clock) -> None:
    tracker.record(at("old"), duration=1.0)
    clock.now += STALE_AFTER + 1
    tracker.record(at("new"), duration=1.0)
    deployments = [at("old"), at("new"), at("never")]
    assert tracker.stale(deployments) == [tracker.is_stale(d) for d in deployments] == [
        True, False, True]
