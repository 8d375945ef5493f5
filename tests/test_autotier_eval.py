"""The labelled corpus (sidecar/cli/autotier_corpus.py), the shipped model against a fresh
training run, and ``model-router eval-tiers`` (sidecar/cli/autotier_eval.py): cross-validation
and the untouched batch."""

from __future__ import annotations

import collections
import json
from typing import Any

import pytest

from sidecar.cli.autotier_corpus import (
    CORPUS,
    OLD_SET,
    TRAINING_BATCHES,
    UNTOUCHED,
    Entry,
    TrainingData,
    corpus_digest,
    load_training,
    load_untouched,
    parse_entries,
    training_data,
    untouched_available,
)
from sidecar.cli.autotier_eval import (
    CATEGORIES,
    MAX_PREMIUM_TO_ECONOMY,
    MIN_ACCURACY,
    EvalReport,
    cross_validated,
    evaluate,
    main,
    tier_prices,
)
from sidecar.cli.main import main as cli_main
from sidecar.core.config.catalog import Catalog, parse_models
from sidecar.core.routing import train
from sidecar.core.routing.autotier import TIERS, load_model

# The untouched batch (untouched.yaml, round 4's) was evaluated once, at the end of the round that
# made round3.yaml a training batch, with the model as shipped: 116 of 150 exact (77.3%), 1 of 50
# premium sent to economy (2.0%). The bar is >= 75% exact (MIN_ACCURACY) and < 3% premium
# -> economy: both reached on this batch (round 3's untouched batch, with the previous model, got
# 70.0% and 6.0%). The floor and ceiling are what was got, so that a change that makes it worse
# fails; nothing was tuned on this batch, and its per-entry results were not looked at.
UNTOUCHED_SIZE = 150
UNTOUCHED_FLOOR_ACCURACY = 116 / 150
UNTOUCHED_CEILING_PREMIUM_TO_ECONOMY = 1 / 50


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return training_data()


@pytest.fixture(scope="module")
def untouched() -> list[Entry]:
    if not untouched_available():
        pytest.skip(f"{CORPUS}/{UNTOUCHED} is not there")
    return load_untouched()


# --- the corpus -------------------------------------------------------------------------------------


def test_every_batch_is_valid_and_ids_are_unique_across_batches(untouched: list[Entry]) -> None:
    entries = load_training() + untouched
    ids = [e.id for e in entries]
    assert len(ids) == len(set(ids)), [i for i, n in collections.Counter(ids).items() if n > 1]
    for e in entries:
        assert e.tier in TIERS and e.category in CATEGORIES, e.id
        assert len(e.why.split()) >= 4, e.id
        # someone gives the task: a user, or the system prompt of an autonomous agent loop
        assert any(m.get("role") in ("user", "system") for m in e.request["messages"]), e.id
    batches = collections.Counter(e.batch for e in entries)
    assert set(batches) == {*TRAINING_BATCHES, "old", "untouched"}
    assert "holdout" in TRAINING_BATCHES  # the previous round's untouched batch, now trained on
    for batch in TRAINING_BATCHES:
        tiers = collections.Counter(e.tier for e in entries if e.batch == batch)
        assert set(tiers) == set(TIERS) and min(tiers.values()) >= 0.25 * sum(tiers.values()), batch


def test_a_family_stays_in_one_batch(untouched: list[Entry]) -> None:
    batches_of: dict[str, set[str]] = collections.defaultdict(set)
    for e in load_training() + untouched:
        if e.family:
            batches_of[e.family].add(e.batch)
    assert batches_of and all(len(b) == 1 for b in batches_of.values()), \
        {f: b for f, b in batches_of.items() if len(b) > 1}


@pytest.mark.parametrize(("text", "error"), [
    ("version: 1", "entries"),
    ("entries: [3]", "mapping"),
    ("entries: [{id: a, category: chat, tier: economy, why: x}]", "missing request"),
    ("entries: [{id: a, category: chat, tier: cheap, why: x, request: {messages: []}}]", "tier"),
    ("entries: [{id: a, category: chat, tier: economy, why: x, request: {model: m}}]", "messages"),
])
def test_bad_sets_are_refused(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_entries(text)


# --- the shipped model and a fresh training run ---------------------------------------------------


def test_the_shipped_model_is_a_fresh_training_run(data: TrainingData) -> None:
    model = load_model()
    fit = model["fit"]
    fresh = train.build(data.rows, data.labels, data.names, rounds=fit["rounds"],
                        margins=(fit["margins"][0], fit["margins"][1]))
    assert fresh["features"] == model["features"]
    for part in ("standard", "premium"):
        assert fresh[part] == model[part]
    again = train.build(data.rows, data.labels, data.names, rounds=fit["rounds"],
                        margins=(fit["margins"][0], fit["margins"][1]))
    assert again == fresh  # deterministic


def test_the_model_was_trained_on_this_corpus(data: TrainingData) -> None:
    training = load_model()["training"]
    corpus = training["corpus"]
    assert corpus["sha256"] == corpus_digest(), "the corpus changed: run scripts/train_autotier.py"
    assert corpus["entries"] == dict(collections.Counter(data.groups))
    assert UNTOUCHED not in json.dumps(corpus["files"]) and OLD_SET in corpus["files"]
    assert corpus["files"] == [f"{CORPUS}/{b}.yaml" for b in TRAINING_BATCHES] + [OLD_SET]
    assert training["cross_validation"]["method"].endswith(", ".join(TRAINING_BATCHES))
    cv = training["cross_validation"]
    assert cv["chosen"]["premium_to_economy"] <= train.MAX_PREMIUM_TO_ECONOMY
    assert cv["chosen"]["exact"] > cv["hand_scorer"]["exact"] + 0.1


def test_cross_validation_reproduces_the_recorded_numbers(data: TrainingData) -> None:
    report = cross_validated(data)
    chosen = load_model()["training"]["cross_validation"]["chosen"]
    assert report.total == sum(not a for a in data.always)
    assert report.accuracy == pytest.approx(chosen["exact"], abs=1e-4)
    assert report.premium_to_economy == pytest.approx(chosen["premium_to_economy"], abs=1e-4)
    matrix = [[report.confusion[a][b] for b in TIERS] for a in TIERS]
    assert matrix == chosen["confusion"]


def test_choose_prefers_accuracy_within_the_premium_to_economy_bound() -> None:
    def trial(rounds: int, margins: tuple[float, float], exact: int, p2e: int) -> train.Trial:
        return train.Trial(rounds, margins, [[10, 0, 0], [0, exact, 10 - exact], [p2e, 0, 10 - p2e]], {})

    unsafe = trial(400, (0.0, 0.0), 10, 5)
    safe = trial(400, (0.5, 0.5), 8, 0)
    tied = trial(200, (0.5, 0.5), 8, 0)  # as good with fewer rounds: the simpler model
    assert train.choose([unsafe, safe]) is safe
    assert train.choose([safe, tied]) is tied


# --- the untouched batch --------------------------------------------------------------------------


def test_the_untouched_batch(untouched: list[Entry]) -> None:
    """On a batch nothing was chosen on: no worse than when it was first evaluated, which meets the
    issue's bar (>= 75% exact, < 3% premium -> economy)."""
    assert UNTOUCHED_CEILING_PREMIUM_TO_ECONOMY < MAX_PREMIUM_TO_ECONOMY
    assert UNTOUCHED_FLOOR_ACCURACY >= MIN_ACCURACY
    report = evaluate(untouched)  # per-entry results are not looked at: numbers only
    assert report.total == UNTOUCHED_SIZE
    assert report.accuracy >= UNTOUCHED_FLOOR_ACCURACY, f"{report.accuracy:.1%}"
    assert report.premium_to_economy <= UNTOUCHED_CEILING_PREMIUM_TO_ECONOMY, \
        f"{report.premium_to_economy:.1%}"


def test_report_arithmetic(untouched: list[Entry]) -> None:
    report = evaluate(untouched)
    matrix = report.confusion
    assert sum(sum(row.values()) for row in matrix.values()) == report.total == len(untouched)
    assert sum(matrix[t][t] for t in TIERS) == report.correct
    assert sum(report.share.values()) == pytest.approx(1.0)
    assert 0 < report.cost("chosen") < report.cost("premium")
    assert report.cost("economy") < report.cost("standard") < report.cost("premium")
    assert 0 < report.subset([untouched[0].id]).total == 1


def test_tier_prices_are_medians_over_openai_and_bedrock() -> None:
    def m(name: str, tier: str, provider: str, price: float) -> dict[str, Any]:
        return {"name": name, "tier": tier, "provider": provider, "context": 1000,
                "price": {"input": price, "output": price * 4}}

    catalog = Catalog.of(parse_models([
        m("e1", "economy", "bedrock", 0.1), m("e2", "economy", "bedrock", 0.3),
        m("e3", "economy", "groq", 0.0),  # another provider: not counted
        m("s1", "standard", "openai", 1.0),
        m("p1", "premium", "openai", 2.0), m("p2", "premium", "bedrock", 3.0),
        m("p3", "premium", "openai", 10.0),
    ]))
    prices = tier_prices(catalog)
    assert (prices["economy"].input, prices["economy"].output) == (pytest.approx(0.2), pytest.approx(0.8))
    assert prices["economy"].models == ("e1", "e2")
    assert prices["premium"].input == 3.0 and prices["standard"].input == 1.0
    entry = Entry("x", "chat", "economy", "a test entry here",
                  {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100})
    report: EvalReport = evaluate([entry], catalog=catalog)
    r = report.results[0]
    assert r.output_tokens == 100  # min(max_tokens, 500)
    assert report.cost("premium") == pytest.approx((r.input_tokens * 3.0 + 100 * 12.0) / 1e6)


def test_main_prints_the_report(untouched: list[Entry], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for text in (f"Untouched batch ({CORPUS}/{UNTOUCHED})", "exact-tier accuracy",
                 "premium -> economy", "confusion", "Cross-validation", "by batch",
                 "of all-premium", "share routed", "Prices", "now training batches"):
        assert text in out
    assert all(f"  {b:<14}" in out for b in TRAINING_BATCHES)  # CV over every training batch
    # --check holds the model to the bar on the untouched batch; a stricter bar fails
    assert main(["--check", "--no-cv"]) == 0
    assert main(["--check", "--no-cv", "--standard", "0", "--premium", "0"]) == 1


def test_main_evaluates_a_given_set_and_refuses_bad_input(tmp_path: Any,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "set.yaml"
    path.write_text("entries:\n- id: a\n  category: chat\n  tier: economy\n  why: a greeting to "
                    "answer.\n  request: {messages: [{role: user, content: hi}]}\n")
    assert main(["--set", str(path), "--no-cv", "--misses"]) == 0
    out = capsys.readouterr().out
    assert "exact-tier accuracy  100.0%" in out and "Misrouted entries" in out
    with pytest.raises(SystemExit) as done:  # the same through the model-router command
        cli_main(["eval-tiers", "--set", str(path), "--no-cv"])
    assert done.value.code == 0 and "exact-tier accuracy  100.0%" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        cli_main(["eval-tiers", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "model-router eval-tiers" in out and ">= 75%" in out and "< 3%" in out
    assert main(["--standard", "80", "--premium", "60"]) == 2
    assert "auto_tier.standard" in capsys.readouterr().out
    path.write_text("entries: nope\n")
    assert main(["--set", str(path)]) == 2
