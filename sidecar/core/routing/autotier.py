"""Auto tier: pick economy, standard or premium from the request itself.

``score_request(body)`` reads an OpenAI chat.completions request body and returns a 0-100 score,
the tier it falls in, and every feature that moved the score. What it reads is the *ask* -- the
user's own words and the system prompt's instructions, told apart from the documents, code, logs
and tool results they come with -- plus a few facts about the material and the agent loop
(``sidecar.core.routing.ask``; each feature is documented in ``features.FEATURES``).

The weights are learned (``scripts/train_autotier.py`` on the labelled corpus in
``sidecar/data/autotier/``; ``sidecar.core.routing.train``) and shipped as data,
``sidecar/data/autotier_model.json``, loaded once. The model is two additive scores on the 0-100
scale (``sidecar.core.routing.boost``), each a base plus, for every feature, the points of the
interval its value falls in (a step function: a feature can count more at first, then level off):
- the *standard score* says whether the work is more than economy: >= 35 (``Thresholds.standard``);
- the *premium score* says whether it is premium: >= 60 (``Thresholds.premium``).
(Two scores rather than one because some asks -- writing, summarising, ordinary code, nested
extraction -- are evidence for standard against economy but against premium.) The reported score
is the premium score when it reaches the premium threshold, else the standard score, capped just
under the premium threshold. Its contributions are that score's features (``premium_score`` and
``below_premium`` say when the premium score was used or the cap applied), so ``BASE`` plus the
contributions is the score (up to rounding, and clamping to 0..100). The learned cut points are
lowered a little so that, when torn between two tiers, the higher one wins.

Nothing here downloads anything, touches the network or keeps state: the same body always gives
the same score. Pure Python, standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

from sidecar.core import vocabulary
from sidecar.core.routing.ask import ask_features
from sidecar.core.routing.boost import Steps
from sidecar.core.routing.features import FEATURES
from sidecar.core.vocabulary import Tier

TIERS: tuple[str, ...] = vocabulary.TIERS  # re-exported (as plain strings) for cli.autotier_eval
MODEL_FILE = "autotier_model.json"


@dataclass(frozen=True, slots=True)
class Weight:
    """One feature: its points on each score. ``doc`` is what ``explain`` shows."""

    standard: Steps
    premium: Steps
    doc: str


_NO_POINTS = Steps((), (0.0,))


def _steps(part: Mapping[str, Any], name: str) -> Steps:
    term = part["terms"].get(name)
    if term is None:
        return _NO_POINTS
    steps = Steps(tuple(map(float, term["cuts"])), tuple(map(float, term["points"])))
    if len(steps.values) != len(steps.cuts) + 1 or list(steps.cuts) != sorted(set(steps.cuts)):
        raise ValueError(f"{MODEL_FILE}: {name} needs ascending cuts and one more points than cuts")
    if steps.at(0.0):  # a feature that is absent adds nothing: the base holds it
        raise ValueError(f"{MODEL_FILE}: {name} has {steps.at(0.0):+g} points at 0, not 0")
    return steps


def load_model(text: str | None = None) -> Mapping[str, Any]:
    """The model file (the packaged one unless ``text`` is given), checked."""
    if text is None:
        text = resources.files("sidecar.data").joinpath(MODEL_FILE).read_text("utf-8")
    model: dict[str, Any] = json.loads(text)
    names = model["features"]
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ValueError(f"{MODEL_FILE}: unknown features {unknown}")
    for part in ("standard", "premium"):
        stray = sorted(set(model[part]["terms"]) - set(names))
        if stray:
            raise ValueError(f"{MODEL_FILE}: {part} has points for {stray}, not in its features")
        for name in names:
            _steps(model[part], name)
    return model


_MODEL = load_model()
_TERMS: tuple[tuple[str, Steps, Steps], ...] = tuple(
    (n, _steps(_MODEL["standard"], n), _steps(_MODEL["premium"], n)) for n in _MODEL["features"])
BASE: float = _MODEL["standard"]["base"]  # the standard score of a request without features
PREMIUM_BASE: float = _MODEL["premium"]["base"]


def _describe(steps: Steps) -> str:
    """The points of a feature on one score, e.g. "+0 up to 0.5, +2.1 above 0.5, +3 above 1.5"."""
    parts = [f"{steps.values[0]:+g} up to {steps.cuts[0]:.3g}" if steps.cuts else
             f"{steps.values[0]:+g}"]
    parts += [f"{v:+g} above {c:.3g}" for c, v in zip(steps.cuts, steps.values[1:], strict=True)]
    return ", ".join(parts)


WEIGHTS: Mapping[str, Weight] = MappingProxyType({
    **{name: Weight(a, b, f"{FEATURES[name]} Points on the standard score: {_describe(a)}; on "
                          f"the premium score: {_describe(b)}.") for name, a, b in _TERMS},
    "premium_score": Weight(_NO_POINTS, _NO_POINTS,
                            f"the premium score reached the premium threshold, so it is the "
                            f"score: it starts {PREMIUM_BASE - BASE:+.1f} points from the "
                            f"standard score's base."),
    "below_premium": Weight(_NO_POINTS, _NO_POINTS,
                            "the standard score passed the premium threshold but the premium "
                            "score did not: the score is capped just under it."),
})


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where the tiers start on the 0-100 score (``defaults.auto_tier`` in rules.yaml)."""

    standard: float = 35.0  # score >= standard -> "standard"
    premium: float = 60.0  # score >= premium -> "premium"; below standard -> "economy"

    def __post_init__(self) -> None:
        for name in ("standard", "premium"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
                raise ValueError(f"auto_tier.{name} must be a number from 0 to 100, not {value!r}")
        if self.standard > self.premium:
            raise ValueError(f"auto_tier.standard ({self.standard:g}) must not be above "
                             f"auto_tier.premium ({self.premium:g})")

    def tier_for(self, score: float) -> Tier:
        if score >= self.premium:
            return "premium"
        if score >= self.standard:
            return "standard"
        return "economy"


@dataclass(frozen=True, slots=True)
class TierScore:
    score: float  # 0..100, rounded to 1 decimal
    tier: Tier
    contributions: tuple[tuple[str, float], ...]  # (feature, points): every feature that moved it


DEFAULT_THRESHOLDS = Thresholds()


def score_request(body: Mapping[str, Any], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> TierScore:
    """Score one chat.completions request body (see the module docstring and ``WEIGHTS``)."""
    x = ask_features(body)
    standard: list[tuple[str, float]] = []
    premium: list[tuple[str, float]] = []
    for name, a, b in _TERMS:
        v = x.get(name)
        if not v:
            continue  # every term is 0 at 0 (load_model checks)
        if pa := a.at(v):
            standard.append((name, pa))
        if pb := b.at(v):
            premium.append((name, pb))
    s_standard = BASE + sum(p for _, p in standard)
    s_premium = PREMIUM_BASE + sum(p for _, p in premium)
    if s_premium >= thresholds.premium:
        contributions = [("premium_score", round(PREMIUM_BASE - BASE, 2)), *premium]
        total = s_premium
    else:
        contributions = standard
        total = min(s_standard, thresholds.premium - 0.1)
        if total < s_standard:
            contributions.append(("below_premium", round(total - s_standard, 2)))
    score = round(min(100.0, max(0.0, total)), 1)
    return TierScore(score=score, tier=thresholds.tier_for(score), contributions=tuple(contributions))


__all__ = ["BASE", "DEFAULT_THRESHOLDS", "PREMIUM_BASE", "TIERS", "WEIGHTS", "Thresholds",
           "TierScore", "Weight", "load_model", "score_request"]
