"""What a routing decision is made of: where an attempt goes (``Target``), a model ranked for a
call (``Candidate``), why a model cannot serve it (``Exclusion``, ``exclusion``), what is
unavailable right now (``Health``), and the decision itself (``RouteDecision``), the output of
``sidecar.core.routing.policy.choose_route``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sidecar.core.config.catalog import ModelSpec
from sidecar.core.config.rules import RuleSet
from sidecar.core.facts import RequestFacts
from sidecar.core.routing.autotier import TierScore
from sidecar.core.routing.latency import LatencyEstimate
from sidecar.core.vocabulary import AUTO, Deployment, ExclusionKind, RouteKind

MAX_PLAN = 3  # the serving model and up to two fallbacks
EXPECTED_OUTPUT_TOKENS = 500  # what a call is assumed to generate when max_tokens says no less


@dataclass(frozen=True, slots=True)
class Target:
    """Where one attempt goes. ``spec`` is the catalog entry of this very deployment, or None
    (a passthrough of a model the catalog lacks, or serves elsewhere or under another id)."""

    provider: str
    upstream_model: str
    spec: ModelSpec | None = None

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else self.upstream_model

    @property
    def deployment(self) -> Deployment:
        """What this attempt is tried on: health and latency are recorded against it."""
        return Deployment(self.provider, self.upstream_model)


@dataclass(frozen=True, slots=True)
class Candidate:
    spec: ModelSpec
    cost: float  # expected USD for this call
    latency: LatencyEstimate | None = None  # only computed when ranking by speed


@dataclass(frozen=True, slots=True)
class Exclusion:
    model: str
    reason: str
    kind: ExclusionKind = "request"  # see sidecar.core.vocabulary.ExclusionKind


@dataclass(frozen=True, slots=True)
class Health:
    """What is unavailable right now: provider -> reason, deployment (cooling down) -> reason."""

    providers_down: Mapping[str, str] = field(default_factory=dict)
    deployments_down: Mapping[Deployment, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    app: str
    requested_model: str
    kind: RouteKind
    rule: str  # which rules.yaml entry decided, or why none did
    plan: tuple[Target, ...]
    prefer: str | None = None
    tier: str | None = None
    candidates: tuple[Candidate, ...] = ()  # ranked, best first (auto only); without
    #                                         detail only the leading MAX_PLAN
    excluded: tuple[Exclusion, ...] = ()  # auto: only with detail
    shadow: bool = False
    auto: TierScore | None = None  # tier auto: the conversation's score and the tier it chose
    cooling: bool = False  # every model of the plan is cooling down: nothing else can serve
    degraded: str | None = None  # a budget's degrade step decided tier/prefer ("at 80%: ...")

    @property
    def target(self) -> Target:
        return self.plan[0]

    @property
    def reason(self) -> str:
        """Short, for the x-model-router-reason header."""
        if self.kind == AUTO:
            tier = f"auto:{self.tier}" if self.auto else self.tier or "any"
            return f"auto prefer={self.prefer} tier={tier}" + (
                " budget=degraded" if self.degraded else "")
        return self.kind


def exclusion(
    spec: ModelSpec, facts: RequestFacts, rules: RuleSet, health: Health
) -> Exclusion | None:
    """Why ``spec`` cannot serve this call, or None when it can.

    What the request needs is checked before health: a model that could never serve this call
    is a "request" exclusion (400), not "down" (a retryable 503), even while it is down; and a
    provider down before a deployment cooling down ("cooling": it serves when nothing else can).
    """
    if spec.provider not in rules.providers:
        return Exclusion(spec.name, f"provider {spec.provider!r} is not configured",
                         kind="unconfigured")
    unfit = _unfit(spec, facts)
    if unfit is not None:
        return Exclusion(spec.name, unfit)
    if spec.provider in health.providers_down:
        return Exclusion(spec.name, health.providers_down[spec.provider], kind="down")
    down = health.deployments_down
    if down and spec.deployment in down:
        return Exclusion(spec.name, down[spec.deployment], kind="cooling")
    return None


def _unfit(spec: ModelSpec, facts: RequestFacts) -> str | None:
    """Why ``spec`` could never serve this call (capabilities, context, output limit)."""
    missing = facts.needs - spec.supports if facts.needs else None
    if missing:
        return f"does not support {', '.join(sorted(missing))}"
    needed = facts.prompt_tokens + (facts.max_tokens or 0)
    if needed > spec.context:
        return f"needs ~{needed} tokens; context window is {spec.context}"
    if facts.max_tokens and spec.max_output and facts.max_tokens > spec.max_output:
        return f"max_tokens {facts.max_tokens} exceeds its output limit {spec.max_output}"
    return None


def expected_output_tokens(facts: RequestFacts) -> int:
    if facts.max_tokens is not None:
        return min(facts.max_tokens, EXPECTED_OUTPUT_TOKENS)
    return EXPECTED_OUTPUT_TOKENS
