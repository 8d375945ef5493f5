"""``model-router eval-tiers``: how well tier auto routes the labelled corpus.

The corpus (``sidecar.cli.autotier_corpus``): training batches, plus the older
``autotier_eval.yaml`` always used for training (``holdout.yaml`` and ``round2.yaml``, the earlier
rounds' untouched batches, are training batches now), and ``untouched.yaml``, the untouched batch, which
nothing was chosen on. The report gives, for the untouched batch as the shipped model routes it,
and for the training batches under leave-one-batch-out cross-validation (a model trained without
the batch it is tested on, ``sidecar.core.routing.train``): exact-tier accuracy, how many
premium-labelled requests were sent to economy, the confusion matrix, the share routed to each
tier and what serving the requests would cost as routed vs all on premium.

Cost model (stated, simple and honest rather than exact):
- the price of a tier is the median input price and the median output price of the catalog's
  models of that tier served by the ``openai`` or ``bedrock`` providers (the providers of the
  bundled rules.yaml; which model ``prefer`` would pick depends on the request, the median is
  a fair stand-in);
- a request's input tokens are the sidecar's own estimate (``facts.estimate_prompt_tokens``:
  characters / 4 plus a per-message overhead), its output tokens min(max_tokens, 500), or 500.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import yaml

from sidecar.cli.autotier_corpus import (
    CORPUS,
    TRAINING_BATCHES,
    UNTOUCHED,
    Entry,
    TrainingData,
    load_entries,
    load_untouched,
    training_data,
    untouched_available,
)
from sidecar.core.config.catalog import Catalog, load_builtin_catalog
from sidecar.core.facts import estimate_prompt_tokens
from sidecar.core.routing import train
from sidecar.core.routing.autotier import DEFAULT_THRESHOLDS, TIERS, Thresholds, load_model, score_request

CATEGORIES = ("chat", "extraction", "classification", "summarisation", "writing", "translation",
              "coding", "debugging", "agentic", "math", "analysis")
PRICED_PROVIDERS = ("openai", "bedrock")
ASSUMED_OUTPUT_TOKENS = 500
# The bar on the untouched batch, checked by the test suite and by ``main(["--check"])``.
MIN_ACCURACY = 0.75
MAX_PREMIUM_TO_ECONOMY = 0.03


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
        return EvalReport(tuple(r for r in self.results if r.id in keep), self.prices)


# --- evaluation ------------------------------------------------------------------------------------


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


def _result(e: Entry, chosen: str, score: float) -> EntryResult:
    limit = e.request.get("max_completion_tokens") or e.request.get("max_tokens")
    output = min(limit, ASSUMED_OUTPUT_TOKENS) if isinstance(limit, int) else ASSUMED_OUTPUT_TOKENS
    return EntryResult(e.id, e.category, e.tier, chosen, score, estimate_prompt_tokens(e.request),
                       output)


def evaluate(entries: Sequence[Entry], thresholds: Thresholds = DEFAULT_THRESHOLDS,
             catalog: Catalog | None = None) -> EvalReport:
    """The entries as the shipped model routes them."""
    prices = tier_prices(catalog if catalog is not None else load_builtin_catalog())
    results = []
    for e in entries:
        scored = score_request(e.request, thresholds)
        results.append(_result(e, scored.tier, scored.score))
    return EvalReport(tuple(results), prices)


def cross_validated(data: TrainingData | None = None, catalog: Catalog | None = None) -> EvalReport:
    """The training batches as routed by models trained without them (leave one batch out), with
    the shipped model's number of rounds and margins."""
    data = data if data is not None else training_data()
    fit = load_model()["fit"]
    margins = (float(fit["margins"][0]), float(fit["margins"][1]))
    folds, = train.cross_validate(data.rows, data.labels, data.groups, data.names,
                                  train.additive((int(fit["rounds"]),)), always=data.always)
    prices = tier_prices(catalog if catalog is not None else load_builtin_catalog())
    results = []
    k = float(fit["points_per_logit"])
    for fold in folds:
        for i, (a, b), chosen in zip(fold.ids, fold.logits, fold.chosen(margins), strict=True):
            score = b * k + 60 + k * margins[1] if b >= -margins[1] else \
                min(35 + k * (a + margins[0]), 59.9)
            results.append(_result(data.entries[i], TIERS[chosen], round(score, 1)))
    return EvalReport(tuple(results), prices)


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
    routed, premium, labelled = report.cost("chosen"), report.cost("premium"), report.cost("label")
    if premium:
        lines.append(f"  cost as routed {routed:.4f} USD = {routed / premium:.0%} of all-premium "
                     f"({premium:.4f}); as labelled {labelled / premium:.0%}")
    return "\n".join(lines)


def render_prices(prices: Mapping[str, TierPrice]) -> str:
    lines = ["Prices: per tier, the median input/output price (USD per million tokens) of the "
             f"catalog's models of that tier on {' or '.join(PRICED_PROVIDERS)}; tokens: the prompt "
             f"estimate (chars/4) and min(max_tokens, {ASSUMED_OUTPUT_TOKENS}) out"]
    for tier, p in prices.items():
        lines.append(f"    {tier:<9} in {p.input:6.3f}  out {p.output:6.3f}  over {len(p.models)} models")
    return "\n".join(lines)


def render_by(report: EvalReport, groups: Mapping[str, Sequence[str]], *, title: str) -> str:
    lines = [title]
    for name, ids in groups.items():
        sub = report.subset(ids)
        if sub.total:
            lines.append(f"  {name:<14} {sub.accuracy:6.1%}  ({sub.correct}/{sub.total})  "
                         f"premium -> economy {sub.premium_to_economy:.1%}")
    return "\n".join(lines)


def render_misses(report: EvalReport) -> str:
    lines = ["Misrouted entries (id, category, labelled -> chosen, score)"]
    for r in report.misses():
        lines.append(f"  {r.id:<14} {r.category:<14} {r.label:>8} -> {r.chosen:<8} {r.score:5.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="model-router eval-tiers",
        description="Evaluate tier auto: on the untouched batch and under cross-validation.")
    p.add_argument("--set", metavar="FILE", help="evaluate this labelled set (YAML) instead")
    p.add_argument("--standard", type=float, default=DEFAULT_THRESHOLDS.standard,
                   help="score from which a request is standard (default %(default)s)")
    p.add_argument("--premium", type=float, default=DEFAULT_THRESHOLDS.premium,
                   help="score from which a request is premium (default %(default)s)")
    p.add_argument("--no-cv", action="store_true", help="skip the cross-validation")
    p.add_argument("--misses", action="store_true", help="list the misrouted entries")
    p.add_argument("--check", action="store_true",
                   help=f"exit 1 unless, on the untouched batch, accuracy >= {MIN_ACCURACY:.0%}% and "
                        f"premium->economy < {MAX_PREMIUM_TO_ECONOMY:.0%}%")  # %%: argparse's
    args = p.parse_args(argv)
    try:
        thresholds = Thresholds(standard=args.standard, premium=args.premium)
        entries = load_entries(args.set) if args.set else \
            load_untouched() if untouched_available() else []
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"eval-tiers: {e}")
        return 2
    catalog = load_builtin_catalog()
    print(f"Auto-tier evaluation (thresholds: standard >= {thresholds.standard:g}, "
          f"premium >= {thresholds.premium:g})\n")
    report = evaluate(entries, thresholds, catalog)
    title = args.set or f"Untouched batch ({CORPUS}/{UNTOUCHED})"
    print(render(report, title=title) if entries else f"{title}: not found")
    if entries:
        cats = {c: [r.id for r in report.results if r.category == c] for c in CATEGORIES}
        print(render_by(report, cats, title="  by category"))
        if args.misses:
            print(render_misses(report))
    if not args.no_cv:
        data = training_data()
        cv = cross_validated(data, catalog)
        print()
        print(render(cv, title="Cross-validation, leave one batch out over "
                               f"{', '.join(TRAINING_BATCHES)} (holdout and round2, the "
                               "earlier rounds' untouched batches, are now training batches; "
                               "the older set always trains)"))
        batches = {b: [e.id for e in data.entries if e.batch == b] for b in TRAINING_BATCHES}
        print(render_by(cv, batches, title="  by batch"))
        if args.misses:
            print(render_misses(cv))
    print()
    print(render_prices(report.prices))
    if args.check:
        ok = bool(entries) and report.accuracy >= MIN_ACCURACY and \
            report.premium_to_economy < MAX_PREMIUM_TO_ECONOMY
        print(f"\ncheck: {'ok' if ok else 'FAILED'}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
