"""Train tier auto's model on the labelled corpus and write sidecar/data/autotier_model.json.

    .venv/bin/python scripts/train_autotier.py            # train, print the comparison, write
    .venv/bin/python scripts/train_autotier.py --dry-run  # print only

Deterministic: the same corpus gives the same file (but for ``training.date``). What it does:
1. features of every training entry (``sidecar.core.routing.ask``): the training batches of
   sidecar/data/autotier/ (``TRAINING_BATCHES``; holdout.yaml and round2.yaml, the earlier
   rounds' untouched batches, are among them now) and the older sidecar/data/autotier_eval.yaml
   (always in the training folds, never tested: the set the hand weights were tuned on);
2. leave-one-batch-out cross-validation of the additive model (boosted stumps) for every number
   of rounds and margin of ``train.ROUNDS_GRID`` x ``train.MARGIN_GRID``; ``train.choose`` picks
   one (the best exact accuracy with premium -> economy at most 1.5%);
3. for the record, the same cross-validation of the alternatives: the previous rounds' linear
   model (its best regularisation and margins by the same rule), the hand-weighted scorer of
   issue 8, the model without the surface features (sizes, persona, max_tokens); and leave one
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
LINEAR_L2 = (0.003, 0.01, 0.03, 0.1)  # the linear model's regularisations
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


def linear_model(data: TrainingData) -> dict[str, object]:
    """The previous rounds' linear model, its regularisation and margins chosen by the same rule
    (a trial's ``rounds`` holds the index of its regularisation in ``LINEAR_L2``)."""
    grid = train.cross_validate(data.rows, data.labels, data.groups, data.names,
                                train.linear(LINEAR_L2), always=data.always)
    best = train.choose([train.Trial(i, m, train.pooled(folds, m),
                                     {f.group: train.summary(train.pooled([f], m))[0] for f in folds})
                         for i, folds in enumerate(grid) for m in train.MARGIN_GRID])
    return {"l2": LINEAR_L2[best.rounds], "margins": list(best.margins),
            **_record(best.matrix, best.per_group)}


def without(data: TrainingData, drop: Sequence[str], rounds: int,
            margins: tuple[float, float]) -> dict[str, object]:
    names = [n for n in data.names if n not in drop]
    folds, = train.cross_validate(data.rows, data.labels, data.groups, names,
                                  train.additive((rounds,)), always=data.always)
    return _record(train.pooled(folds, margins),
                   {f.group: train.summary(train.pooled([f], margins))[0] for f in folds})


def by_category(data: TrainingData, rounds: int, margins: tuple[float, float]) -> dict[str, object]:
    """Leave one category out (the old set always trains): each category is routed by a model
    that never saw one of its entries."""
    groups = [e.category for e in data.entries]
    folds, = train.cross_validate(data.rows, data.labels, groups, data.names,
                                  train.additive((rounds,)), always=data.always)
    return _record(train.pooled(folds, margins),
                   {f.group: train.summary(train.pooled([f], margins))[0] for f in folds})


def run() -> dict[str, object]:
    data = training_data()
    results = train.trials(data.rows, data.labels, data.groups, data.names, always=data.always)
    best = train.choose(results)
    model = train.build(data.rows, data.labels, data.names, rounds=best.rounds,
                        margins=best.margins)
    counts = {b: sum(g == b for g in data.groups) for b in [*TRAINING_BATCHES, "old"]}
    model["training"] = {
        "date": datetime.date.today().isoformat(),
        "corpus": {"files": training_files(), "entries": counts, "sha256": corpus_digest(),
                   "note": f"{OLD_SET} is always in the training folds and never tested"},
        "cross_validation": {
            "method": "leave one batch out over " + ", ".join(TRAINING_BATCHES),
            "rule": f"best exact accuracy with premium -> economy at most "
                    f"{train.MAX_PREMIUM_TO_ECONOMY:.1%}; ties: larger margins, then fewer rounds",
            "chosen": {"rounds": best.rounds, "margins": list(best.margins),
                       **_record(best.matrix, best.per_group)},
            "grid": [{"rounds": t.rounds, "margins": list(t.margins), "exact": round(t.exact, 4),
                      "premium_to_economy": round(t.premium_to_economy, 4)} for t in results],
            "linear_model": linear_model(data),
            "hand_scorer": hand_scorer(data),
            "without_surface_features": {"dropped": list(SURFACE),
                                         **without(data, SURFACE, best.rounds, best.margins)},
            "leave_one_category_out": by_category(data, best.rounds, best.margins),
        },
    }
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="print the comparison, write nothing")
    args = p.parse_args(argv)
    model = run()
    cv = model["training"]["cross_validation"]  # type: ignore[index]
    for name in ("chosen", "linear_model", "hand_scorer", "without_surface_features",
                 "leave_one_category_out"):
        r = cv[name]
        print(f"{name:<26} exact {r['exact']:.1%}  premium->economy {r['premium_to_economy']:.1%}  "
              f"confusion {r['confusion']}  by batch "
              + " ".join(f"{b} {a:.0%}" for b, a in r["by_batch"].items()))
    print(f"chosen: {cv['chosen']['rounds']} rounds, margins {cv['chosen']['margins']}")
    if not args.dry_run:
        with open(OUT, "w", encoding="utf-8") as f:
            json.dump(model, f, indent=1)
            f.write("\n")
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
