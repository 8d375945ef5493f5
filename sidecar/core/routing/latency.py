"""Latency as the sidecar observes it, per deployment: the input of ``prefer: fast``.

Observations belong to what was tried -- a ``Deployment``, a provider and its own model id --
never to a model name; a catalog model reads its deployment's (``ModelSpec.deployment``).
Two exponentially weighted averages per deployment: seconds to first token (streams) and seconds per
output token (the whole call for non-streamed requests, the part after the first token for
streams). Deployments not yet observed fall back to the catalog's priors. The clock is injected.

``estimate`` answers for one model, with how the figure was obtained (``explain`` shows it);
``seconds`` and ``stale`` answer for a whole pool at once, without an object per model: that is
the per-call scan of ``prefer: fast`` (``sidecar.policy``), and it computes the very same floats.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sidecar.core.config.catalog import ModelSpec
from sidecar.core.vocabulary import Deployment

ALPHA = 0.2  # weight of a new observation
DEFAULT_TTFT = 1.0  # seconds, for a model with neither observations nor a catalog prior
DEFAULT_TOKENS_PER_SECOND = 50.0
STALE_AFTER = 600.0  # seconds without an observation before a deployment is worth exploring
FAILURE_PENALTY = 30.0  # seconds a failed attempt counts as


@dataclass(slots=True)
class _Observed:
    ttft: float | None = None
    per_token: float | None = None
    samples: int = 0
    last_seen: float = 0.0


@dataclass(frozen=True, slots=True)
class LatencyEstimate:
    seconds: float
    observed: bool  # False: the catalog's prior (or the default) was used
    samples: int


class LatencyTracker:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[Deployment, _Observed] = {}

    def record(
        self, deployment: Deployment, *, duration: float, ttft: float | None = None,
        output_tokens: int | None = None,
    ) -> None:
        """One finished call. ``ttft`` only for streams; ``output_tokens`` when usage was seen."""
        seen = self._seen.setdefault(deployment, _Observed())
        if ttft is not None:
            seen.ttft = _ewma(seen.ttft, ttft)
        generating = duration - (ttft or 0.0)
        if output_tokens and generating >= 0:
            seen.per_token = _ewma(seen.per_token, generating / output_tokens)
        seen.samples += 1
        seen.last_seen = self._clock()

    def seed(
        self, deployment: Deployment, *, ttft: float | None, per_token: float | None
    ) -> None:
        """Adopt another tracker's estimates (a running sidecar's, for ``explain``)."""
        seen = self._seen.setdefault(deployment, _Observed())
        seen.ttft, seen.per_token = ttft, per_token
        seen.samples = max(seen.samples, 1)
        seen.last_seen = self._clock()

    def penalize(self, deployment: Deployment, *, seconds: float = FAILURE_PENALTY) -> None:
        """A failed attempt counts as a very slow one, so ``prefer: fast`` moves away from it."""
        seen = self._seen.setdefault(deployment, _Observed())
        seen.ttft = _ewma(seen.ttft, seconds)
        seen.per_token = _ewma(seen.per_token, seconds / 100)
        seen.samples += 1
        seen.last_seen = self._clock()

    def estimate(self, spec: ModelSpec, *, stream: bool, output_tokens: int) -> LatencyEstimate:
        """Expected seconds to first token (streams) or to the whole answer (otherwise)."""
        seen = self._seen.get(spec.deployment)
        ttft = seen.ttft if seen and seen.ttft is not None else spec.ttft_prior or DEFAULT_TTFT
        if stream:
            return LatencyEstimate(ttft, bool(seen and seen.ttft is not None), _n(seen))
        if seen and seen.per_token is not None:
            base = seen.ttft or 0.0
            return LatencyEstimate(base + seen.per_token * output_tokens, True, seen.samples)
        tps = spec.tokens_per_second_prior or DEFAULT_TOKENS_PER_SECOND
        return LatencyEstimate(ttft + output_tokens / tps, False, _n(seen))

    def seconds(
        self, specs: Sequence[ModelSpec], *, stream: bool, output_tokens: int,
        priors: Sequence[float] | None = None,
    ) -> list[float]:
        """``estimate(spec, ...).seconds`` for each of ``specs``, in order, by the same arithmetic.
        ``priors``: ``prior_seconds`` of each spec for this ``stream``/``output_tokens``, when the
        caller keeps them (they never change)."""
        if priors is None:
            priors = [prior_seconds(s, stream=stream, output_tokens=output_tokens) for s in specs]
        get = self._seen.get
        if stream:
            return [p if (seen := get(s.deployment)) is None or seen.ttft is None else seen.ttft
                    for s, p in zip(specs, priors, strict=True)]
        return [
            p if (seen := get(s.deployment)) is None
            else (seen.ttft or 0.0) + seen.per_token * output_tokens if seen.per_token is not None
            else ((seen.ttft if seen.ttft is not None else s.ttft_prior or DEFAULT_TTFT)
                  + output_tokens / (s.tokens_per_second_prior or DEFAULT_TOKENS_PER_SECOND))
            for s, p in zip(specs, priors, strict=True)]

    def is_stale(self, deployment: Deployment) -> bool:
        seen = self._seen.get(deployment)
        return seen is None or self._clock() - seen.last_seen > STALE_AFTER

    def stale(self, deployments: Iterable[Deployment]) -> list[bool]:
        """``is_stale`` for each of ``deployments``, in order, as of one reading of the clock."""
        get, now = self._seen.get, self._clock()
        return [(seen := get(d)) is None or now - seen.last_seen > STALE_AFTER
                for d in deployments]

    def snapshot(self) -> dict[Deployment, dict[str, float | int | None]]:
        return {
            d: {"ttft_seconds": o.ttft, "seconds_per_token": o.per_token, "samples": o.samples}
            for d, o in self._seen.items()
        }


def prior_seconds(spec: ModelSpec, *, stream: bool, output_tokens: int) -> float:
    """What ``estimate`` says of a deployment never observed: the catalog's priors (or defaults)."""
    ttft = spec.ttft_prior or DEFAULT_TTFT
    if stream:
        return ttft
    return ttft + output_tokens / (spec.tokens_per_second_prior or DEFAULT_TOKENS_PER_SECOND)


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else old + ALPHA * (new - old)


def _n(seen: _Observed | None) -> int:
    return seen.samples if seen else 0
