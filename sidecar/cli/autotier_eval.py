"""Evaluate the auto-tier scorer on the labelled set (``sidecar/data/autotier_eval.yaml``).

``evaluate(entries, thresholds, catalog)`` scores every entry and returns an ``EvalReport``:
exact-tier accuracy, the confusion matrix (labelled tier x chosen tier), the share of requests
routed to each tier, how many premium-labelled requests were sent to economy, and what serving
the set would cost as routed vs. sending all of it to premium.

Cost model (stated, simple and honest rather than exact):
- the price of a tier is the median input price and the median output price of the catalog's
  models of that tier served by the ``openai`` or ``bedrock`` providers (the providers of the
  bundled rules.yaml; which model ``prefer`` would pick depends on the request, the median is
  a fair stand-in);
- a request's input tokens are the sidecar's own estimate (``facts.estimate_prompt_tokens``:
  characters / 4 plus a per-message overhead), its output tokens min(max_tokens, 500), or 500.

``main()`` prints the report for the whole set and separately for its held-out part: about 30% of
the entries, chosen by a hash of the id (``is_holdout``), whose per-entry results were not looked
at while the scorer's weights were chosen.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from sidecar.core.config.catalog import Catalog, load_builtin_catalog
from sidecar.core.facts import estimate_prompt_tokens
from sidecar.core.routing.autotier import DEFAULT_THRESHOLDS, TIERS, Thresholds, score_request

EVAL_SET = "autotier_eval.yaml"
CATEGORIES = ("chat", "extraction", "summarisation", "coding", "debugging", "agentic", "math",
              "analysis")
PRICED_PROVIDERS = ("openai", "bedrock")
ASSUMED_OUTPUT_TOKENS = 500
HOLDOUT_PERCENT = 30
# The bar ("done when"), checked by the test suite and by ``main(["--check"])``.
MIN_ACCURACY = 0.80
MAX_PREMIUM_TO_ECONOMY = 0.05


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    category: str
    tier: str  # the label: what a careful engineer would choose
    why: str
    request: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EntryResult:
    id: str
    category: str
    label: str
    chosen: str
    score: float
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class TierPrice:
    input: float  # USD per million tokens
    output: float
    models: tuple[str, ...]  # the models the median was taken over

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1e6


@dataclass(frozen=True, slots=True)
class EvalReport:
    results: tuple[EntryResult, ...]
    thresholds: Thresholds
    prices: Mapping[str, TierPrice]

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def correct(self) -> int:
        return sum(r.label == r.chosen for r in self.results)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def confusion(self) -> dict[str, dict[str, int]]:
        """``confusion[label][chosen]`` = how many entries."""
        matrix = {label: dict.fromkeys(TIERS, 0) for label in TIERS}
        for r in self.results:
            matrix[r.label][r.chosen] += 1
        return matrix

    @property
    def share(self) -> dict[str, float]:
        """The fraction of entries routed to each tier."""
        return {t: sum(r.chosen == t for r in self.results) / self.total if self.total else 0.0
                for t in TIERS}

    @property
    def premium_to_economy(self) -> float:
        """Of the premium-labelled entries, the fraction sent to economy."""
        premium = [r for r in self.results if r.label == "premium"]
        return sum(r.chosen == "economy" for r in premium) / len(premium) if premium else 0.0

    def cost(self, tier_of: str = "chosen") -> float:
        """USD to serve the set: ``chosen`` (as routed), ``label`` (as labelled), or a tier name
        (everything on that tier)."""
        total = 0.0
        for r in self.results:
            tier = r.chosen if tier_of == "chosen" else r.label if tier_of == "label" else tier_of
            total += self.prices[tier].cost(r.input_tokens, r.output_tokens)
        return total

    def misses(self) -> list[EntryResult]:
        return [r for r in self.results if r.label != r.chosen]

    def subset(self, ids: Iterable[str]) -> EvalReport:
        keep = set(ids)
        return EvalReport(tuple(r for r in self.results if r.id in keep), self.thresholds, self.prices)


def is_holdout(entry_id: str) -> bool:
    """Whether an entry is in the fixed held-out part (about 30%, by a hash of its id)."""
    digest = hashlib.sha256(f"autotier-holdout:{entry_id}".encode()).hexdigest()
    return int(digest[:8], 16) % 100 < HOLDOUT_PERCENT


def load_entries(path: str | None = None) -> list[Entry]:
    """The labelled set: the packaged one, or a YAML file of the same shape."""
    if path is None:
        text = resources.files("sidecar.data").joinpath(EVAL_SET).read_text("utf-8")
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    doc = yaml.safe_load(text)
    entries = doc.get("entries") if isinstance(doc, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("an evaluation set needs a top-level 'entries:' list")
    out: list[Entry] = []
    for i, raw in enumerate(entries):
        if not isinstance(raw, Mapping):
            raise ValueError(f"entries[{i}] must be a mapping")
        missing = [k for k in ("id", "category", "tier", "why", "request") if not raw.get(k)]
        if missing:
            raise ValueError(f"entries[{i}] ({raw.get('id')}): missing {', '.join(missing)}")
        if raw["tier"] not in TIERS:
            raise ValueError(f"entries[{i}] ({raw['id']}): tier {raw['tier']!r} is not one of {TIERS}")
        out.append(Entry(str(raw["id"]), str(raw["category"]), str(raw["tier"]), str(raw["why"]),
                         raw["request"]))
    return out


def tier_prices(catalog: Catalog, providers: Sequence[str] = PRICED_PROVIDERS) -> dict[str, TierPrice]:
    """Per tier: the median input and output price of its models on ``providers``."""
    prices: dict[str, TierPrice] = {}
    for tier in TIERS:
        models = [m for m in catalog if m.tier == tier and m.provider in providers]
        if not models:
            raise ValueError(f"the catalog has no {tier} model on {', '.join(providers)}")
        prices[tier] = TierPrice(
            input=statistics.median(m.input_price for m in models),
            output=statistics.median(m.output_price for m in models),
            models=tuple(sorted(m.name for m in models)),
        )
    return prices


def evaluate(entries: Sequence[Entry], thresholds: Thresholds = DEFAULT_THRESHOLDS,
             catalog: Catalog | None = None) -> EvalReport:
    prices = tier_prices(catalog if catalog is not None else load_builtin_catalog())
    results = []
    for e in entries:
        scored = score_request(e.request, thresholds)
        limit = e.request.get("max_completion_tokens") or e.request.get("max_tokens")
        output = min(limit, ASSUMED_OUTPUT_TOKENS) if isinstance(limit, int) else ASSUMED_OUTPUT_TOKENS
        results.append(EntryResult(e.id, e.category, e.tier, scored.tier, scored.score,
                                   estimate_prompt_tokens(e.request), output))
    return EvalReport(tuple(results), thresholds, prices)


# --- the printed report ----------------------------------------------------------------------------


def render(report: EvalReport, *, title: str) -> str:
    lines = [f"{title}: {report.total} requests",
             f"  exact-tier accuracy  {report.accuracy:6.1%}  ({report.correct}/{report.total})",
             f"  premium -> economy   {report.premium_to_economy:6.1%}  "
             f"({sum(r.label == 'premium' and r.chosen == 'economy' for r in report.results)}"
             f"/{sum(r.label == 'premium' for r in report.results)})"]
    lines.append("  confusion (rows: labelled, columns: chosen)")
    lines.append("    " + " " * 10 + "".join(f"{t:>10}" for t in TIERS))
    for label, row in report.confusion.items():
        lines.append(f"    {label:<10}" + "".join(f"{row[t]:>10}" for t in TIERS))
    lines.append("  share routed to each tier  "
                 + "   ".join(f"{t} {report.share[t]:.0%}" for t in TIERS))
    return "\n".join(lines)


def render_costs(report: EvalReport) -> str:
    routed, premium = report.cost("chosen"), report.cost("premium")
    labelled = report.cost("label")
    lines = ["Cost of serving the set once (USD)",
             f"  as routed by auto-tier   {routed:9.4f}  ({routed / premium:.0%} of all-premium)",
             f"  as labelled              {labelled:9.4f}  ({labelled / premium:.0%} of all-premium)",
             f"  all premium              {premium:9.4f}",
             "  prices: per tier, the median input/output price (USD per million tokens) of the",
             f"  catalog's models of that tier on {' or '.join(PRICED_PROVIDERS)}; tokens: the "
             f"prompt estimate (chars/4) and min(max_tokens, {ASSUMED_OUTPUT_TOKENS}) out"]
    for tier, p in report.prices.items():
        lines.append(f"    {tier:<9} in {p.input:6.3f}  out {p.output:6.3f}  over {len(p.models)} models")
    return "\n".join(lines)


def render_misses(report: EvalReport) -> str:
    lines = ["Misrouted entries (id, category, labelled -> chosen, score)"]
    for r in report.misses():
        lines.append(f"  {r.id:<10} {r.category:<14} {r.label:>8} -> {r.chosen:<8} {r.score:5.1f}"
                     f"{'  (held out)' if is_holdout(r.id) else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="model-router eval-tiers",
        description="Evaluate the auto-tier scorer on the labelled request set.")
    p.add_argument("--set", metavar="FILE", help="a labelled set (YAML); default: the bundled one")
    p.add_argument("--standard", type=float, default=DEFAULT_THRESHOLDS.standard,
                   help="score from which a request is standard (default %(default)s)")
    p.add_argument("--premium", type=float, default=DEFAULT_THRESHOLDS.premium,
                   help="score from which a request is premium (default %(default)s)")
    p.add_argument("--misses", action="store_true", help="list the misrouted entries")
    p.add_argument("--check", action="store_true",
                   help=f"exit 1 unless accuracy >= {MIN_ACCURACY:.0%} and premium->economy < "
                        f"{MAX_PREMIUM_TO_ECONOMY:.0%}")
    args = p.parse_args(argv)
    try:
        thresholds = Thresholds(standard=args.standard, premium=args.premium)
        entries = load_entries(args.set)
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"eval-tiers: {e}")
        return 2
    report = evaluate(entries, thresholds)
    held = report.subset(e.id for e in entries if is_holdout(e.id))
    dev = report.subset(e.id for e in entries if not is_holdout(e.id))
    print(f"Auto-tier evaluation (thresholds: standard >= {thresholds.standard:g}, "
          f"premium >= {thresholds.premium:g})\n")
    print(render(report, title="All"))
    print()
    print(render(dev, title="Development part"))
    print()
    print(render(held, title="Held-out part (by id hash)"))
    print()
    print("By category (accuracy)")
    for cat in CATEGORIES:
        sub = report.subset(r.id for r in report.results if r.category == cat)
        if sub.total:
            print(f"  {cat:<14} {sub.accuracy:6.1%}  ({sub.correct}/{sub.total})")
    print()
    print(render_costs(report))
    if args.misses:
        print()
        print(render_misses(report))
    if args.check:
        ok = report.accuracy >= MIN_ACCURACY and report.premium_to_economy < MAX_PREMIUM_TO_ECONOMY
        print(f"\ncheck: {'ok' if ok else 'FAILED'}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
