"""What a call cost and what routing saved, from the provider's real usage and catalog prices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sidecar.core.config.catalog import Catalog, ModelSpec


@dataclass(frozen=True, slots=True)
class Usage:
    prompt: int  # includes cached tokens, as OpenAI counts them
    completion: int
    cached: int = 0

    def as_openai(self) -> dict[str, Any]:
        """A chat.completion's ``usage`` object."""
        return {"prompt_tokens": self.prompt, "completion_tokens": self.completion,
                "total_tokens": self.prompt + self.completion,
                "prompt_tokens_details": {"cached_tokens": self.cached}}


def usage_from_openai(answer: Mapping[str, Any] | None) -> Usage | None:
    """The ``usage`` of a chat.completion, a stream's usage chunk, or a Responses object."""
    usage = answer.get("usage") if isinstance(answer, Mapping) else None
    if not isinstance(usage, Mapping):
        return None
    if "input_tokens" in usage:  # the Responses API's names
        details = usage.get("input_tokens_details")
        usage = {"prompt_tokens": usage.get("input_tokens"),
                 "completion_tokens": usage.get("output_tokens"),
                 "prompt_tokens_details": details if isinstance(details, Mapping) else {}}
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else 0
    try:
        return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                     int(cached or 0))
    except (TypeError, ValueError):
        return None


def cost(spec: ModelSpec | None, usage: Usage | None) -> float | None:
    """USD at the catalog's prices; cached prompt tokens at the cache-read price when known."""
    if spec is None or usage is None:
        return None
    cached = min(usage.cached, usage.prompt)
    cached_price = spec.cache_read_price if spec.cache_read_price is not None else spec.input_price
    return ((usage.prompt - cached) * spec.input_price + cached * cached_price
            + usage.completion * spec.output_price) / 1e6


def savings(requested: ModelSpec | None, served: ModelSpec | None, usage: Usage | None
            ) -> float | None:
    """What the requested model would have cost for the same usage, minus what was paid."""
    baseline, paid = cost(requested, usage), cost(served, usage)
    if baseline is None or paid is None:
        return None
    return baseline - paid


OUTCOMES_BY_STATUS = ((200, 300, "ok"), (429, 430, "rate_limited"), (400, 500, "client_error"))


def outcome(status: int, *, stream_ok: bool = True, sidecar: bool = False) -> str:
    """A bounded outcome label: ok, client_error, rate_limited, upstream_error, stream_error,
    sidecar_error."""
    if sidecar and status >= 500:
        return "sidecar_error"
    for low, high, name in OUTCOMES_BY_STATUS:
        if low <= status < high:
            return name if stream_ok or name != "ok" else "stream_error"
    return "upstream_error"


def failure_kind(reason: str) -> str:
    """A bounded label for why an attempt failed (``status 503`` -> ``status_5xx``)."""
    if reason.startswith("status "):
        code = reason.split()[1]
        return "status_429" if code == "429" else f"status_{code[0]}xx"
    head = reason.split(":")[0]
    return head if head in ("timeout", "connect", "read", "malformed", "stream") else "other"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call, as metrics and the access log see it (no prompt text, no keys)."""

    request_id: str
    app: str
    requested_model: str
    served_model: str | None
    provider: str | None
    reason: str
    status: int
    outcome: str
    stream: bool
    duration: float
    ttft: float | None
    overhead: float
    usage: Usage | None
    cost: float | None
    savings: float | None
    failures: tuple[tuple[str, str, str], ...] = ()  # (model, provider, reason) before the answer
    skipped: tuple[tuple[str, str, str], ...] = ()  # targets the sidecar could not send it to
    shadow_model: str | None = None  # shadow mode: what the rules decided
    shadow_savings: float | None = None
    cache: str | None = None  # "hit", "miss" or "bypass" for apps with a cache; None: no cache
    cache_saved: float | None = None  # a hit: what the served model would have cost

    @property
    def cost_unknown(self) -> bool:
        """Served and used tokens, but its model has no catalog price (a passthrough of a model
        the catalog does not know): its cost is unknown -- never counted as $0."""
        return self.cost is None and self.usage is not None and self.served_model is not None

    def log_fields(self) -> dict[str, Any]:
        usage = self.usage
        return {
            "request_id": self.request_id, "app": self.app,
            "requested_model": self.requested_model, "served_model": self.served_model,
            "provider": self.provider, "reason": self.reason, "status": self.status,
            "outcome": self.outcome, "stream": self.stream,
            "prompt_tokens": usage.prompt if usage else None,
            "completion_tokens": usage.completion if usage else None,
            "cached_tokens": usage.cached if usage else None,
            "cost_usd": _round(self.cost), "savings_usd": _round(self.savings),
            **({"cost": "unknown"} if self.cost_unknown else {}),
            **({"cache": self.cache} if self.cache else {}),
            "duration_s": round(self.duration, 4),
            "ttft_s": None if self.ttft is None else round(self.ttft, 4),
            "overhead_ms": round(self.overhead * 1000, 3),
            "fallbacks": [{"model": m, "provider": p, "reason": r} for m, p, r in self.failures],
            **({"skipped": [{"model": m, "provider": p, "reason": r} for m, p, r in self.skipped]}
               if self.skipped else {}),
            **({"shadow_model": self.shadow_model,
                "shadow_savings_usd": _round(self.shadow_savings)} if self.shadow_model else {}),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 8)


class _Target(Protocol):
    @property
    def provider(self) -> str: ...
    @property
    def spec(self) -> ModelSpec | None: ...
    @property
    def name(self) -> str: ...


class _Decision(Protocol):
    @property
    def app(self) -> str: ...
    @property
    def requested_model(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def target(self) -> _Target: ...


class CallState(Protocol):
    """What the addon knows about a finished call (its CallState), read-only."""

    @property
    def app(self) -> str: ...  # the app that matched ("other" when the call never got that far)
    @property
    def decision(self) -> _Decision | None: ...
    @property
    def target(self) -> _Target | None: ...
    @property
    def shadow(self) -> bool: ...
    @property
    def ttft(self) -> float | None: ...
    @property
    def overhead_ms(self) -> float: ...
    @property
    def request_id(self) -> str: ...
    @property
    def stream(self) -> bool: ...
    @property
    def failures(self) -> list[tuple[Any, str]]: ...
    @property
    def skipped(self) -> list[tuple[Any, str]]: ...
    @property
    def cache(self) -> str | None: ...  # "hit", "miss", "bypass"; None: the app has no cache


def call_record(state: CallState, status: int, usage: Usage | None, *, duration: float,
                stream_ok: bool, catalog: Catalog | None) -> CallRecord:
    decision, served = state.decision, state.target
    requested = catalog.find(decision.requested_model) if catalog and decision else None
    served_spec = served.spec if served is not None else None
    decided = decision.target.spec if decision is not None and state.shadow else None
    hit = state.cache == "hit"  # answered from the cache: costs nothing, saves what it would
    paid = 0.0 if hit and usage is not None else cost(served_spec, usage)
    return CallRecord(
        request_id=state.request_id,
        app=decision.app if decision else state.app,
        requested_model=decision.requested_model if decision else "",
        served_model=served.name if served else None,
        provider=served.provider if served else None,
        reason=("shadow" if state.shadow else decision.reason) if decision else "refused",
        status=status, outcome=outcome(status, stream_ok=stream_ok, sidecar=decision is None),
        stream=state.stream, duration=duration, ttft=state.ttft,
        overhead=state.overhead_ms / 1000, usage=usage,
        cost=paid, savings=(_minus(cost(requested or served_spec, usage), paid) if hit
                            else savings(requested, served_spec, usage)),
        failures=tuple((t.name, t.provider, why) for t, why in state.failures),
        skipped=tuple((t.name, t.provider, why) for t, why in state.skipped),
        shadow_model=decision.target.name if decision is not None and state.shadow else None,
        shadow_savings=savings(requested, decided, usage) if state.shadow else None,
        cache=state.cache, cache_saved=cost(served_spec, usage) if hit else None,
    )


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
