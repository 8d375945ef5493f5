"""The router's words, defined once: each vocabulary is a ``Literal`` type, and its values, in
order, the tuple ``typing.get_args`` derives from it (so the two cannot drift apart).

What an attempt is tried on is a ``Deployment``: a provider (its name in rules.yaml) and that
provider's own model id. Health (cooldowns) and observed latency belong to deployments, never to
model names: a catalog name, a passthrough of the same name and the same upstream id on another
provider are different deployments.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple, get_args

Tier = Literal["economy", "standard", "premium"]
AutoTier = Literal["auto"]  # chosen per request from the conversation (routing.autotier)
RequestableTier = Literal[Tier, AutoTier]
Prefer = Literal["cheap", "fast", "balanced", "quality", "coding"]
RouteKind = Literal["pin", "passthrough", "auto"]
# why a model is not in a plan: "request": it cannot serve this call (400); "down": its provider
# is unavailable (503); "cooling": its deployment is cooling down after failures (it serves only
# when nothing else can); "unconfigured": its provider is not in rules.yaml
ExclusionKind = Literal["request", "down", "cooling", "unconfigured"]
Listener = Literal["proxy", "reverse", "transparent"]
# a call's bounded outcome label (metrics, the access log)
Outcome = Literal["ok", "client_error", "rate_limited", "upstream_error", "stream_error",
                  "sidecar_error"]
RouterField = Literal["prefer", "tier"]  # what the sidecar reads and removes from a body

TIERS: Final[tuple[Tier, ...]] = get_args(Tier)
AUTO_TIER: Final[AutoTier] = "auto"
REQUESTABLE_TIERS: Final[tuple[RequestableTier, ...]] = get_args(RequestableTier)
PREFERS: Final[tuple[Prefer, ...]] = get_args(Prefer)
ROUTE_KINDS: Final[tuple[RouteKind, ...]] = get_args(RouteKind)
PIN: Final[RouteKind] = "pin"
PASSTHROUGH: Final[RouteKind] = "passthrough"
AUTO: Final[RouteKind] = "auto"  # also the model name that asks for automatic routing
EXCLUSION_KINDS: Final[tuple[ExclusionKind, ...]] = get_args(ExclusionKind)
LISTENERS: Final[tuple[Listener, ...]] = get_args(Listener)
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
ROUTER_FIELDS: Final[tuple[RouterField, ...]] = get_args(RouterField)
# model names that ask the sidecar to choose: "auto" and each tier name
INTENT_MODELS: Final[tuple[str, ...]] = (AUTO, *TIERS)


class Deployment(NamedTuple):
    """What one attempt is tried on: the unit of health and observed latency."""

    provider: str  # the provider name in rules.yaml
    model: str  # the provider's own model id (ModelSpec.upstream_id / Target.upstream_model)

    def __str__(self) -> str:
        return f"{self.model} on {self.provider}"


__all__ = [
    "AUTO", "AUTO_TIER", "EXCLUSION_KINDS", "INTENT_MODELS", "LISTENERS", "OUTCOMES",
    "PASSTHROUGH", "PIN", "PREFERS", "REQUESTABLE_TIERS", "ROUTER_FIELDS", "ROUTE_KINDS", "TIERS",
    "AutoTier", "Deployment", "ExclusionKind", "Listener", "Outcome", "Prefer", "RequestableTier",
    "RouteKind", "RouterField", "Tier",
]
