"""sidecar/core/routing/autotier.py (the scorer), ask.py (its features: the ask apart from the
material) and train.py (the training). The corpus, the cross-validation and the untouched batch:
tests/test_autotier_eval.py. No timing here: bench/autotier_bench.py measures speed."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sidecar.cli.autotier_corpus import load_training
from sidecar.core.routing import train
from sidecar.core.routing.ask import ask_features, asks, split_ask
from sidecar.core.routing.autotier import (
    BASE,
    DEFAULT_THRESHOLDS,
    PREMIUM_BASE,
    TIERS,
    WEIGHTS,
    Thresholds,
    TierScore,
    load_model,
    score_request,
)
from sidecar.core.routing.boost import boost
from sidecar.core.routing.features import FEATURES


def user(text: Any, *, system: str | None = None, **body: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system is not None else []
    return {"model": "gpt-4o", "messages": [*messages, {"role": "user", "content": text}], **body}


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": f"{name} tool",
                                             "parameters": {"type": "object", "properties": {}}}}


def call(i: int, name: str = "lookup") -> dict[str, Any]:
    return {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": "{}"}}


def features(body: dict[str, Any]) -> dict[str, float]:
    return ask_features(body)


CODE = "```python\n" + "def total(items):\n    return sum(i.price * i.qty for i in items)\n" * 4 + "```"
FILLER = "The quarterly report lists the figures for each region and the notes from the team. "
DOCUMENT = "QUARTERLY REPORT 2024\n\n" + "\n\n".join(FILLER * 6 for _ in range(40))
ENUM_SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {
    "type": "object", "properties": {"intent": {"type": "string", "enum": ["billing", "other"]}},
    "required": ["intent"]}}}
NESTED_SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
    "type": "object", "properties": {"lines": {"type": "array", "items": {
        "type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}}}}}}}


# --- the ask apart from the material --------------------------------------------------------------


def test_the_ask_is_the_users_words_before_a_pasted_document() -> None:
    own, asked, n = split_ask("Quick one: when does this contract end?\n\n" + DOCUMENT)
    assert own == "Quick one: when does this contract end?" and asked and n > 10_000


def test_a_closing_question_after_the_material_is_part_of_the_ask() -> None:
    own, asked, _ = split_ask("Here is the config:\n\n" + DOCUMENT + "\n\nWhat is the root cause of "
                              "the 502s?")
    assert "What is the root cause of the 502s?" in own and asked
    assert "quarterly" not in own.lower()


def test_code_fences_and_long_quotations_are_material() -> None:
    own, _, _ = split_ask(f"Why does this return None?\n{CODE}\nIt used to work.")
    assert "def total" not in own and "Why does this return None?" in own
    own, _, _ = split_ask('Rewrite in plain English: "' + "The Tenant shall not keep any animal. " * 5
                          + '"')
    assert "Tenant" not in own


@pytest.mark.parametrize(("text", "expected"), [
    ("Summarise this.", True), ("can you check the totals", True), ("what is the ETA?", True),
    ("Patient: 78F, 64 kg, INR 2.6 on Tue.", False), ("I need the invoice number", True),
])
def test_asks(text: str, expected: bool) -> None:
    assert asks(text) is expected


def test_a_message_that_is_only_material_leaves_the_task_to_the_system_prompt() -> None:
    body = user(DOCUMENT, system="Extract the report's date and region. Return JSON only.")
    got = features(body)
    assert got["ask_in_system"] == 1.0 and got["ask_extract"] >= 1 and "ask_length" not in got


def test_cue_words_inside_pasted_material_do_not_count_as_the_ask() -> None:
    essay = ("Historians prove the root cause of the decline and design a rigorous architecture. "
             * 40)
    got = features(user("Give this essay a title.\n\n" + essay))
    assert got["ask_small"] == 1.0
    assert not {"ask_prove", "ask_root_cause", "ask_design"} & set(got)


def test_the_agent_loop() -> None:
    relay = {"tools": [tool("get_order")], "messages": [
        {"role": "user", "content": "where is my order 1234?"},
        {"role": "assistant", "content": None, "tool_calls": [call(1)]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "shipped"}'}]}
    assert features(relay)["relay_result"] == 1.0
    loop = copy.deepcopy(relay)
    loop["messages"] += [{"role": "assistant", "content": None, "tool_calls": [call(2), call(3)]},
                         {"role": "tool", "tool_call_id": "c2", "content": "x"},
                         {"role": "tool", "tool_call_id": "c3", "content": "y"}]
    got = features(loop)
    assert got["loop_continues"] == 1.0 and "relay_result" not in got
    assert got["tool_rounds"] == pytest.approx(1.585, abs=0.01)  # log2(1 + 2)
    assert got["tool_calls"] == pytest.approx(2.0)  # log2(1 + 3)
    follow = copy.deepcopy(loop)
    follow["messages"].append({"role": "user", "content": "ok so what now?"})
    assert features(follow)["user_after_tools"] == 1.0


@pytest.mark.parametrize(("fmt", "feature"), [
    (ENUM_SCHEMA, "schema_small"), (NESTED_SCHEMA, "schema_nested"), ({"type": "json_object"}, "json_object"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {
        f"f{i}": {"type": "string"} for i in range(8)}}}}, "schema_small"),
])
def test_what_is_asked_back(fmt: dict[str, Any], feature: str) -> None:
    assert features(user("x", response_format=fmt))[feature] == 1.0


@pytest.mark.parametrize(("body", "feature"), [
    (user("hi there!"), "greeting"),
    (user("Thanks, that fixed it :)"), "greeting"),
    (user("which region had the most orders?"), "wh_question"),
    (user("Translate to French: the shop opens at nine."), "ask_translate"),
    (user("Prove that the square root of 2 is irrational."), "ask_prove"),
    (user("Find the root cause: it deadlocks under load."), "ask_root_cause"),
    (user("Why does this crash sometimes?\n```rust\nunsafe impl Sync for Counter {}\n"
          "fn bump(&self) { self.n.set(self.n.get() + 1) }\n```"), "systems_code"),
    (user("go", tools=[tool("a"), tool("b"), tool("c")]), "tools_offered"),
    (user("Tell me about the printing press.", max_tokens=50), "small_max_tokens"),
    (user("Look at this.", system="You are a senior staff engineer."), "sys_expert"),
    (user("Is the invoice paid? Yes or no.\n\n" + DOCUMENT), "short_answer"),
    (user("Translate to German: the parcel left the depot."), "translate_plain"),
    (user("Translate this slogan into French, keeping the wordplay: fresh beans, no has-beens."),
     "translate_styled"),
    (user(DOCUMENT, system="You are a translator. Translate into Spanish in a formal register."),
     "translate_styled"),
    (user("Extract every line item into a nested JSON array of objects.\n\n" + DOCUMENT),
     "extract_messy"),
    (user("Give me a quick one-line summary of this.\n\n" + DOCUMENT), "summary_short"),
    (user("Compare the two reports and reconcile the figures.\n\n---\n" + DOCUMENT + "\n---\n"
          + DOCUMENT), "multi_doc"),
])
def test_feature_present(body: dict[str, Any], feature: str) -> None:
    assert features(body).get(feature, 0) > 0, features(body)


@pytest.mark.parametrize(("body", "feature"), [
    (user("hello, " + "please review the attached contract for risks. " * 5), "greeting"),
    (user("Summarize this:\n```text\nWe prove the root cause and trade-offs.\n```"), "ask_prove"),
    (user("What does this print?\n```rust\nfn main() { println!(\"hi\"); }\n```"), "systems_code"),
    (user("short question"), "attached_size"),
    (user("one turn"), "user_turns"),
    (user("x", response_format={"type": "text"}), "json_object"),
])
def test_feature_absent(body: dict[str, Any], feature: str) -> None:
    assert feature not in features(body)


def test_every_feature_is_documented_and_in_the_model() -> None:
    produced = {n for e in load_training() for n in features(e.request)}
    assert produced <= set(FEATURES)
    used = set(load_model()["features"])  # the features boosting split on (never seen: no points)
    assert used <= produced and len(used) >= len(produced) // 2
    for name, doc in FEATURES.items():
        assert doc.strip().endswith("."), name


def test_content_parts_score_like_the_same_text() -> None:
    text = "Compare these:\n" + CODE
    as_parts = user([{"type": "text", "text": "Compare these:"}, {"type": "text", "text": CODE},
                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])
    assert score_request(as_parts) == score_request(user(text))


def test_long_content_parts_are_scored_without_error() -> None:
    parts = [{"type": "text", "text": FILLER * 500} for _ in range(5)]
    parts.append({"type": "text", "text": "\n\nWhat are the trade-offs?"})
    got = features(user(parts))
    assert got["ask_design"] == 1.0 and got["attached_size"] > 7


@pytest.mark.parametrize("body", [
    {}, {"messages": None}, {"messages": "hi"}, {"messages": [None, 3, "x"]},
    {"messages": [{"role": "user"}]}, {"messages": [{"role": "user", "content": None}]},
    {"messages": [{"role": "user", "content": [None, {"type": "text"}, {"text": 5}]}]},
    {"messages": [{"role": "assistant", "tool_calls": [None, {"function": None}]}]},
    {"messages": [{"role": "assistant", "function_call": {"name": "f"}}, {"role": "function"}]},
    {"messages": [], "tools": "x", "functions": [None, {"name": 3}], "max_tokens": True,
     "response_format": "json", "reasoning_effort": 3},
    {"messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"schema": {"properties": {"a": {"items": 3}}}}}},
])
def test_malformed_bodies_score_without_error(body: dict[str, Any]) -> None:
    result = score_request(body)
    assert 0 <= result.score <= 100 and result.tier in TIERS


# --- the score ----------------------------------------------------------------------------------


def test_an_empty_request_scores_the_base() -> None:
    base = round(BASE, 1)  # no features: the base decides (with margins it may be standard)
    assert score_request({"messages": []}) == TierScore(base, DEFAULT_THRESHOLDS.tier_for(base), ())


def test_contributions_sum_to_the_score() -> None:
    for entry in load_training():
        result = score_request(entry.request)
        total = BASE + sum(p for _, p in result.contributions)
        assert result.score == pytest.approx(min(100.0, max(0.0, total)), abs=0.06), entry.id
        names = [name for name, _ in result.contributions]
        assert len(names) == len(set(names)) and all(n in WEIGHTS for n in names), entry.id
        assert ("premium_score" in names) == (result.tier == "premium"), entry.id


def test_the_score_follows_the_fitted_model() -> None:
    """With the default thresholds, the tiers are the fitted models' decisions (the probability
    cuts lowered by the margins): the points are the logits, scaled."""
    model = load_model()
    from sidecar.cli.autotier_corpus import training_data

    d = training_data()
    (a, b), = train.additive((model["fit"]["rounds"],))(d.rows, d.labels, d.names)
    margins = (model["fit"]["margins"][0], model["fit"]["margins"][1])
    checked = 0
    for e in d.entries[::5]:
        x = features(e.request)
        za, zb = a.logit(x), b.logit(x)
        if min(abs(za + margins[0]), abs(zb + margins[1])) < 0.01:
            continue  # on a cut: the rounding of the points in the file decides
        assert score_request(e.request).tier == TIERS[train.decide(za, zb, margins)], e.id
        checked += 1
    assert checked > len(d.entries) // 6


def test_every_weight_is_documented() -> None:
    for name, w in WEIGHTS.items():
        assert w.doc.strip(), name
        if name in FEATURES:
            assert FEATURES[name] in w.doc and "premium score" in w.doc
    assert "premium_score" in WEIGHTS and "below_premium" in WEIGHTS
    assert f"{PREMIUM_BASE - BASE:+.1f}" in WEIGHTS["premium_score"].doc


def test_the_premium_score_is_capped_below_the_threshold_when_it_does_not_reach_it() -> None:
    seen = False
    for entry in load_training():
        result = score_request(entry.request)
        names = dict(result.contributions)
        if "below_premium" in names:
            seen = True
            assert result.score == 59.9 and result.tier == "standard" and names["below_premium"] < 0
    assert seen


# --- thresholds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("score", "tier"), [
    (0, "economy"), (34.9, "economy"), (35, "standard"), (59.9, "standard"), (60, "premium"),
    (100, "premium"),
])
def test_default_thresholds(score: float, tier: str) -> None:
    assert DEFAULT_THRESHOLDS == Thresholds(35, 60)
    assert Thresholds().tier_for(score) == tier


def test_thresholds_change_the_tier() -> None:
    body = user("Write a Python function that parses ISO 8601 dates with time zones and add pytest "
                "tests for the edge cases.")  # standard work (below: the labelling standard)
    default = score_request(body)
    assert default.tier == "standard" and 35 <= default.score < 60
    strict = score_request(body, Thresholds(standard=default.score + 1, premium=90))
    loose = score_request(body, Thresholds(standard=0, premium=default.score))
    assert (strict.score, strict.tier) == (default.score, "economy")
    assert loose.tier in ("standard", "premium")
    if loose.tier == "premium":  # the premium score reached the lowered threshold: it is the score
        assert loose.score >= default.score and dict(loose.contributions)["premium_score"]
    else:
        assert loose.score <= default.score
    assert score_request(body, Thresholds(50, 50)).tier in ("economy", "premium")


@pytest.mark.parametrize(("standard", "premium"), [(70, 60), (-1, 60), (35, 101), (True, 60),
                                                   ("35", 60)])
def test_bad_thresholds_are_refused(standard: Any, premium: Any) -> None:
    with pytest.raises(ValueError, match="auto_tier"):
        Thresholds(standard, premium)


# --- whole requests: the labelling standard -------------------------------------------------------


@pytest.mark.parametrize(("body", "tier"), [
    (user("hello! how are you today?", system="You are a helpful assistant."), "economy"),
    (user("What is the report's date?\n\n" + DOCUMENT), "economy"),  # long input, trivial ask
    (user("I was charged twice, please refund me", system="Classify the message's intent. Reply "
          "with JSON only.", response_format=ENUM_SCHEMA), "economy"),  # strict schema, enum
    (user("Translate to French: the shop opens at nine."), "economy"),
    ({"tools": [tool("get_order")], "messages": [
        {"role": "user", "content": "where is my order 1234?"},
        {"role": "assistant", "content": None, "tool_calls": [call(1)]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "shipped", "eta": "Fri"}'}]},
     "economy"),  # relaying a returned tool result
    (user("Summarise this report for the board in 5 paragraphs.\n\n" + DOCUMENT), "standard"),
    (user("Write a Python function that parses ISO 8601 dates with time zones and add pytest "
          "tests for the edge cases."), "standard"),
    (user("Refactor the payments package: split service.py into charges.py, refunds.py and "
          "webhooks.py, update every import across the repo and keep the tests passing.",
          system="You are an autonomous coding agent.",
          tools=[tool("read_file"), tool("write_file"), tool("grep"), tool("run_tests")]), "premium"),
    (user("Our Go service sometimes returns fewer results than ids under load, no error. Why?\n"
          "```go\nfunc fetchAll(ids []string) []Item {\n  var wg sync.WaitGroup\n  var out []Item\n"
          "  for _, id := range ids {\n    wg.Add(1)\n    go func() { defer wg.Done(); out = "
          "append(out, get(id)) }()\n  }\n  wg.Wait()\n  return out\n}\n```"), "premium"),
])
def test_the_tier_follows_the_work_asked_for(body: dict[str, Any], tier: str) -> None:
    assert score_request(body).tier == tier, score_request(body)


def test_scoring_is_deterministic_and_does_not_mutate_the_body() -> None:
    entries = load_training()[::7]
    bodies = [copy.deepcopy(e.request) for e in entries]
    first = [score_request(e.request) for e in entries]
    second = [score_request(e.request) for e in entries]
    assert first == second
    assert [e.request for e in entries] == bodies
    reordered = {k: entries[0].request[k] for k in reversed(list(entries[0].request))}
    assert score_request(reordered) == first[0]


# --- training -------------------------------------------------------------------------------------


def test_fit_is_deterministic_and_separates_a_simple_signal() -> None:
    rows = [{"hard": float(i % 3), "noise": float((i * 7) % 5)} for i in range(90)]
    labels = [i % 3 for i in range(90)]
    a1, b1 = train.fit_pair(rows, labels, ["hard", "noise"], l2=0.01)
    a2, b2 = train.fit_pair(rows, labels, ["hard", "noise"], l2=0.01)
    assert (a1, b1) == (a2, b2)
    assert a1.weights[0] > 1 and b1.weights[0] > 1 and abs(a1.weights[1]) < a1.weights[0] / 5
    assert [train.decide(a1.logit(r), b1.logit(r)) for r in rows] == labels
    # the additive model: steps on "hard" only, 0 at 0, and the same decisions
    (s1, p1), = train.additive((60,))(rows, labels, ["hard", "noise"])
    (s2, p2), = train.additive((60,))(rows, labels, ["hard", "noise"])
    assert (s1, p1) == (s2, p2)
    assert set(s1.terms) == set(p1.terms) == {"hard"}
    assert s1.terms["hard"].at(0.0) == 0.0 < s1.terms["hard"].at(1.0)
    assert [train.decide(s1.logit(r), p1.logit(r)) for r in rows] == labels
    assert s1.contributions({"hard": 2.0, "noise": 4.0}) == {"hard": s1.terms["hard"].at(2.0)}


def test_boosting_checkpoints_are_the_shorter_fits() -> None:
    rows = [{"a": float(i % 4), "b": float((i * 5) % 7)} for i in range(120)]
    labels = [int(r["a"] + r["b"] > 5) for r in rows]
    short, long = boost(rows, labels, ["a", "b"], rounds=40, checkpoints=(10,))
    assert short == boost(rows, labels, ["a", "b"], rounds=10)[0]
    assert short != long


def test_the_model_file_has_its_parts() -> None:
    model = load_model()
    assert set(model) >= {"features", "standard", "premium", "fit", "training"}
    with pytest.raises(ValueError, match="unknown features"):
        load_model(json.dumps({**model, "features": ["nope", *model["features"][1:]]}))
    with pytest.raises(ValueError, match="points"):
        load_model(json.dumps({**model, "features": model["features"][1:]}))
    name = next(iter(model["standard"]["terms"]))
    for term, error in [({"cuts": [1.0, 0.5], "points": [0, 1, 2]}, "ascending cuts"),
                        ({"cuts": [0.5], "points": [0]}, "one more points"),
                        ({"cuts": [0.5], "points": [1.5, 2]}, "points at 0")]:
        broken = {**model, "standard": {**model["standard"],
                                        "terms": {**model["standard"]["terms"], name: term}}}
        with pytest.raises(ValueError, match=error):
            load_model(json.dumps(broken))
