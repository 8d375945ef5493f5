"""Train tier auto's model on the labelled corpus and write sidecar/data/autotier_model.json.

    .venv/bin/python scripts/train_autotier.py            # train, print the comparison, write
    .venv/bin/python scripts/train_autotier.py --dry-run  # print only

Deterministic: the same corpus gives the same file (but for ``training.date``). What it does:
1. features of every training entry (``sidecar.core.routing.ask``): the six training batches
   of sidecar/data/autotier/ (holdout.yaml, the previous round's untouched batch, is one of them
   now) and the older sidecar/data/autotier_eval.yaml (which is always in the training folds,
   never tested: it was the set the hand weights were tuned on);
2. leave-one-batch-out cross-validation over the six batches for every regularisation and
   margin of ``train.L2_GRID`` x ``train.MARGIN_GRID``; ``train.choose`` picks one (the best exact
   accuracy with premium -> economy at most 2%);
3. for the record, the same cross-validation of the alternatives: the hand-weighted scorer of
   issue 8, an ordinal model (one score sharing the weights), the model without the surface
   features (sizes, persona, max_tokens) and the model without this round's border features
   (the previous round's feature set); and two checks of generalisation: the fold of
   holdout.yaml (no word list was written while looking at its entries) and leave one
   *category* out (a word list that only fits the categories it was written on fails there);
4. the chosen model fitted on everything, written with its metadata.

The untouched batch (untouched.yaml) is never read here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Sequence

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sidecar.cli.autotier_corpus import (  # noqa: E402
    OLD_SET,
    TRAINING_BATCHES,
    TrainingData,
    corpus_digest,
    training_data,
    training_files,
)
from sidecar.core.routing import train  # noqa: E402
from sidecar.core.routing.handscore import hand_tier  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sidecar", "data",
                   "autotier_model.json")
BORDER = ("short_answer", "translate_plain", "translate_styled", "extract_messy", "summary_short",
          "multi_doc")  # this round's features for the borders between tiers
SURFACE = ("ask_length", "attached_size", "system_size", "history_size", "sys_expert",
           "small_max_tokens", "documents", "user_turns")


def _record(matrix: list[list[int]], per_group: dict[str, float]) -> dict[str, object]:
    exact, p2e = train.summary(matrix)
    return {"exact": round(exact, 4), "premium_to_economy": round(p2e, 4), "confusion": matrix,
            "by_batch": {g: round(a, 4) for g, a in per_group.items()}}


def hand_scorer(data: TrainingData) -> dict[str, object]:
    """Today's hand-weighted scorer on the training batches (it is not trained: no folds needed)."""
    tested = [i for i, keep in enumerate(data.always) if not keep]
    chosen = {i: hand_tier(data.entries[i].request) for i in tested}
    matrix = train.confusion([data.labels[i] for i in tested], [chosen[i] for i in tested])
    per = {}
    for b in TRAINING_BATCHES:
        ids = [i for i in tested if data.groups[i] == b]
        per[b] = train.summary(train.confusion([data.labels[i] for i in ids],
                                               [chosen[i] for i in ids]))[0]
    return _record(matrix, per)


def ordinal(data: TrainingData, l2: float) -> dict[str, object]:
    """One score with shared weights and two cut points, leave one batch out."""
    matrix = [[0, 0, 0] for _ in range(3)]
    per = {}
    for b in TRAINING_BATCHES:
        fit_ids = [i for i, g in enumerate(data.groups) if g != b or data.always[i]]
        test = [i for i, g in enumerate(data.groups) if g == b and not data.always[i]]
        m = train.fit([data.rows[i] for i in fit_ids], [data.labels[i] for i in fit_ids],
                      data.names, l2=l2)
        chosen = [2 if (z := m.z(data.rows[i])) >= m.cuts[1] else 1 if z >= m.cuts[0] else 0
                  for i in test]
        sub = train.confusion([data.labels[i] for i in test], chosen)
        per[b] = train.summary(sub)[0]
        matrix = [[x + y for x, y in zip(r, s, strict=True)] for r, s in zip(matrix, sub, strict=True)]
    return _record(matrix, per)


def without(data: TrainingData, drop: Sequence[str], l2: float,
            margins: tuple[float, float]) -> dict[str, object]:
    names = [n for n in data.names if n not in drop]
    folds = train.cross_validate(data.rows, data.labels, data.groups, names, l2=l2,
                                 always=data.always)
    return _record(train.pooled(folds, margins),
                   {f.group: train.summary(train.pooled([f], margins))[0] for f in folds})


def by_category(data: TrainingData, l2: float, margins: tuple[float, float]) -> dict[str, object]:
    """Leave one category out (the old set always trains): each category is routed by a model
    that never saw one of its entries."""
    groups = [e.category for e in data.entries]
    folds = train.cross_validate(data.rows, data.labels, groups, data.names, l2=l2,
                                 always=data.always)
    return _record(train.pooled(folds, margins),
                   {f.group: train.summary(train.pooled([f], margins))[0] for f in folds})


def run() -> dict[str, object]:
    data = training_data()
    results = train.trials(data.rows, data.labels, data.groups, data.names, always=data.always)
    best = train.choose(results)
    model = train.build(data.rows, data.labels, data.names, l2=best.l2, margins=best.margins)
    counts = {b: sum(g == b for g in data.groups) for b in [*TRAINING_BATCHES, "old"]}
    model["training"] = {
        "date": datetime.date.today().isoformat(),
        "corpus": {"files": training_files(), "entries": counts, "sha256": corpus_digest(),
                   "note": f"{OLD_SET} is always in the training folds and never tested"},
        "cross_validation": {
            "method": "leave one batch out over " + ", ".join(TRAINING_BATCHES),
            "rule": f"best exact accuracy with premium -> economy at most "
                    f"{train.MAX_PREMIUM_TO_ECONOMY:.0%}; ties: larger margins, then larger l2",
            "chosen": {"l2": best.l2, "margins": list(best.margins),
                       **_record(best.matrix, best.per_group)},
            "grid": [{"l2": t.l2, "margins": list(t.margins), "exact": round(t.exact, 4),
                      "premium_to_economy": round(t.premium_to_economy, 4)} for t in results],
            "hand_scorer": hand_scorer(data),
            "ordinal_shared_weights": ordinal(data, best.l2),
            "without_surface_features": {"dropped": list(SURFACE),
                                         **without(data, SURFACE, best.l2, best.margins)},
            "without_border_features": {"dropped": list(BORDER),
                                        **without(data, BORDER, best.l2, best.margins)},
            "held_back_check": {
                "holdout_fold": round(best.per_group.get("holdout", 0.0), 4),
                "note": "holdout.yaml's fold: its entries were not read while the word lists "
                        "were written (only its aggregate numbers were)"},
            "leave_one_category_out": by_category(data, best.l2, best.margins),
        },
    }
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="print the comparison, write nothing")
    args = p.parse_args(argv)
    model = run()
    cv = model["training"]["cross_validation"]  # type: ignore[index]
    for name in ("chosen", "hand_scorer", "ordinal_shared_weights", "without_surface_features",
                 "without_border_features", "leave_one_category_out"):
        r = cv[name]
        print(f"{name:<26} exact {r['exact']:.1%}  premium->economy {r['premium_to_economy']:.1%}  "
              f"confusion {r['confusion']}  by batch "
              + " ".join(f"{b} {a:.0%}" for b, a in r["by_batch"].items()))
    print(f"chosen: l2 {cv['chosen']['l2']}, margins {cv['chosen']['margins']}; holdout fold "
          f"{cv['held_back_check']['holdout_fold']:.1%}")
    if not args.dry_run:
        with open(OUT, "w", encoding="utf-8") as f:
            json.dump(model, f, indent=1)
            f.write("\n")
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
