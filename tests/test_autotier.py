"""sidecar/autotier.py (the complexity scorer) and sidecar/autotier_eval.py (its evaluation on the
labelled set). No timing here: bench/autotier_bench.py measures speed."""

from __future__ import annotations

import collections
import copy
import json
from typing import Any

import pytest

from sidecar.cli.autotier_eval import (
    CATEGORIES,
    MAX_PREMIUM_TO_ECONOMY,
    MIN_ACCURACY,
    Entry,
    evaluate,
    is_holdout,
    load_entries,
    main,
    tier_prices,
)
from sidecar.core.config.catalog import Catalog, parse_models
from sidecar.core.routing.autotier import (
    BASE,
    DEFAULT_THRESHOLDS,
    TIERS,
    WEIGHTS,
    Thresholds,
    TierScore,
    score_request,
)


def user(text: Any, *, system: str | None = None, **body: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system is not None else []
    return {"model": "gpt-4o", "messages": [*messages, {"role": "user", "content": text}], **body}


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": f"{name} tool",
                                             "parameters": {"type": "object", "properties": {}}}}


def contributions(body: dict[str, Any]) -> dict[str, float]:
    return dict(score_request(body).contributions)


CODE = "```python\n" + "def total(items):\n    return sum(i.price * i.qty for i in items)\n" * 4 + "```"
FILLER = "The quarterly report lists the figures for each region and the notes from the team. "

# (feature, request body, points that feature must contribute)
FEATURES = [
    ("prompt_size", user(FILLER * 48), 13.3),  # ~4,000 chars = 1,000 tokens: 4 * log2(10)
    ("prompt_size", user(FILLER * 2000), 16.0),  # capped
    ("tiny_prompt", user("what time zone is Denver in"), -4.0),
    ("turns", {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                            {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"},
                            {"role": "user", "content": "e"}]}, 4.0),
    ("code_blocks", user(f"Here:\n{CODE}"), 5.0),
    ("code_blocks", user(f"One:\n{CODE}\nTwo:\n{CODE}"), 8.0),
    ("code_blocks", user("Tiny:\n```python\nx = 1\n```"), 2.5),  # a few lines count for half
    ("code_blocks", user("Data:\n```json\n" + json.dumps({"k": list(range(80))}) + "\n```"), 2.5),
    ("systems_code", user("Why does this crash?\n```rust\n" + "let v: Vec<u8> = Vec::new();\n" * 8
                          + "```"), 5.0),
    ("code_task", user("Write a Python function that parses ISO dates."), 7.0),
    ("large_change", user("Refactor the billing module into smaller services."), 6.0),
    ("error_output", user("It fails:\nTraceback (most recent call last):\n  File \"a.py\"\n"
                          "KeyError: 'x'"), 3.0),
    ("tool_definitions", user("go", tools=[tool("get_weather"), tool("get_time"), tool("get_news")]),
     6.0),
    ("tool_definitions", user("go", tools=[tool(f"lookup_{i}") for i in range(9)]), 10.0),
    ("powerful_tools", user("go", tools=[tool("write_file")]), 8.0),
    ("tool_history", {"messages": [
        {"role": "user", "content": "weather in Oslo and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            {"id": "2", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "4C"},
        {"role": "tool", "tool_call_id": "2", "content": "19C"}]}, 6.0),
    ("writing", user("Draft a letter to my landlord about the broken heating."), 4.0),
    ("deep_reasoning", user("Prove that the square root of 2 is irrational."), 14.0),
    ("deep_reasoning", user("Find the root cause and prove the fix is correct."), 28.0),
    ("analysis", user("Compare Postgres and MySQL for us."), 5.0),
    ("analysis", user("Analyze, compare, evaluate and critique these plans; weigh the risks."), 20.0),
    ("hard_domain", user("Our service deadlocks under load; there is a deadlock in the pool."), 5.0),
    ("math", user("Compute the integral of x squared."), 4.0),
    ("math", user("Simplify $\\frac{a}{b} + \\frac{c}{d}$ please"), 4.0),
    ("numbers_heavy", user("Totals:\n" + "2023-01-04 1204.50 880.00 1532.25 310.00\n" * 12), 3.0),
    ("max_tokens", user("Tell me about the history of the printing press.", max_tokens=50), -10.0),
    ("max_tokens", user("Tell me about the history of the printing press.", max_tokens=200), -4.0),
    ("max_tokens", user("Tell me about the history of the printing press.", max_tokens=5000), 5.0),
    ("max_tokens", user("Tell me about the history of the printing press.", max_tokens=20000), 10.0),
    ("max_tokens", user("Tell me about the history of the printing press.", max_tokens=20000,
                        max_completion_tokens=50), -10.0),  # the current name wins
    ("structured_output", user("Extract the fields.", response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(7)}}}}),
     2.0),
    ("reasoning_effort", user("Plan the migration.", reasoning_effort="high"), 10.0),
    ("reasoning_effort", user("Plan the migration.", reasoning_effort="low"), -5.0),
    ("expert_role", user("Look at this.", system="You are a senior staff engineer."), 10.0),
    ("casual_role", user("Look at this.", system="You are a friendly, cheerful assistant."), -6.0),
    ("greeting", user("hi there!"), -12.0),
    ("greeting", user("Thanks, that fixed it :)"), -12.0),
    ("simple_task", user("Translate to French: the shop opens at nine."), -8.0),
    ("simple_task", user("Translate this and classify its sentiment: great food."), -16.0),
    ("brevity", user("Summarize the news in one sentence."), -4.0),
]


@pytest.mark.parametrize(("feature", "body", "points"), FEATURES,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(FEATURES)])
def test_feature_contributes_its_points(feature: str, body: dict[str, Any], points: float) -> None:
    got = contributions(body)
    assert got.get(feature) == pytest.approx(points, abs=0.05), got


@pytest.mark.parametrize(("feature", "body"), [
    ("powerful_tools", user("go", tools=[tool("get_weather")])),
    ("structured_output", user("x", response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}})),
    ("structured_output", user("x", response_format={"type": "json_object"})),
    ("casual_role", user("x", system="You are an expert, friendly consultant.")),  # expert wins
    ("greeting", user("hello, " + "please review the attached contract for risks. " * 5)),
    ("tiny_prompt", user("Prove that there are infinitely many primes.")),  # short, not a lookup
    ("deep_reasoning", user("Summarize this:\n```text\nWe prove the root cause and trade-offs.\n```")),
    ("code_task", user("Summarize this:\n```python\ndef write_tests(): fix_code()\n```")),
    ("prompt_size", user("short question")),
    ("turns", user("one turn")),
], ids=lambda v: v if isinstance(v, str) else "")
def test_feature_absent(feature: str, body: dict[str, Any]) -> None:
    assert feature not in contributions(body)


def test_cue_words_inside_pasted_material_do_not_count_as_the_instruction() -> None:
    essay = ("Historians analyze and compare the evidence and prove the root cause of the decline. "
             * 40)
    body = user("Give this essay a title.\n\n" + essay + "\n\nThanks.")
    got = contributions(body)
    assert "deep_reasoning" not in got and "analysis" not in got
    assert got["simple_task"] == -8.0  # "a title", from the instruction


def test_instruction_at_the_end_of_a_long_message_counts() -> None:
    body = user("Here is the config:\n\n" + FILLER * 60 + "\n\nWhat is the root cause of the 502s?")
    assert contributions(body)["deep_reasoning"] == 14.0


def test_content_parts_score_like_the_same_text() -> None:
    text = "Compare these:\n" + CODE
    as_parts = user([{"type": "text", "text": "Compare these:"}, {"type": "text", "text": CODE},
                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])
    assert score_request(as_parts) == score_request(user(text))


def test_long_content_parts_are_scored_without_error() -> None:
    parts = [{"type": "text", "text": FILLER * 500} for _ in range(5)]
    parts.append({"type": "text", "text": "\n\nWhat are the trade-offs?"})
    got = contributions(user(parts))
    assert got["prompt_size"] == 16.0 and got["deep_reasoning"] == 14.0


@pytest.mark.parametrize("body", [
    {}, {"messages": None}, {"messages": "hi"}, {"messages": [None, 3, "x"]},
    {"messages": [{"role": "user"}]}, {"messages": [{"role": "user", "content": None}]},
    {"messages": [{"role": "user", "content": [None, {"type": "text"}, {"text": 5}]}]},
    {"messages": [{"role": "assistant", "tool_calls": [None, {"function": None}]}]},
    {"messages": [], "tools": "x", "functions": [None, {"name": 3}], "max_tokens": True,
     "response_format": "json", "reasoning_effort": 3},
])
def test_malformed_bodies_score_without_error(body: dict[str, Any]) -> None:
    result = score_request(body)
    assert 0 <= result.score <= 100 and result.tier in TIERS


def test_empty_request_scores_base_minus_tiny() -> None:
    result = score_request({"messages": []})
    assert result == TierScore(BASE + WEIGHTS["tiny_prompt"].points, "economy", (("tiny_prompt", -4.0),))


def test_score_is_base_plus_contributions_clamped() -> None:
    for entry in load_entries():
        result = score_request(entry.request)
        expected = min(100.0, max(0.0, BASE + sum(p for _, p in result.contributions)))
        assert result.score == pytest.approx(expected, abs=0.15), entry.id
        assert all(name in WEIGHTS and points != 0 for name, points in result.contributions)
        names = [name for name, _ in result.contributions]
        assert len(names) == len(set(names)), entry.id


def test_every_weight_is_documented_and_its_cap_has_its_sign() -> None:
    for name, w in WEIGHTS.items():
        assert w.doc.strip(), name
        assert (w.cap >= 0) == (w.points >= 0), name
        assert abs(w.points) <= abs(w.cap), name


def test_score_is_clamped_to_0_100() -> None:
    hard = user("Prove, derive and justify the root cause, trade-offs and threat model. " * 3
                + CODE * 4, system="You are a principal architect.", max_tokens=32000,
                reasoning_effort="high", tools=[tool(f"write_file_{i}") for i in range(8)])
    easy = user("hi, thanks", system="You are a friendly chatbot.", max_tokens=5)
    assert score_request(hard).score == 100.0 and score_request(hard).tier == "premium"
    assert score_request(easy).score >= 0.0 and score_request(easy).tier == "economy"


# --- thresholds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("score", "tier"), [
    (0, "economy"), (34.9, "economy"), (35, "standard"), (59.9, "standard"), (60, "premium"),
    (100, "premium"),
])
def test_default_thresholds(score: float, tier: str) -> None:
    assert DEFAULT_THRESHOLDS == Thresholds(35, 60)
    assert Thresholds().tier_for(score) == tier


def test_thresholds_change_the_tier_not_the_score() -> None:
    body = user("Write a Python function that validates an IBAN.")
    default = score_request(body)
    assert default.tier == "standard"
    strict = score_request(body, Thresholds(standard=default.score + 1, premium=90))
    loose = score_request(body, Thresholds(standard=0, premium=default.score))
    assert (strict.score, strict.tier) == (default.score, "economy")
    assert (loose.score, loose.tier) == (default.score, "premium")
    assert score_request(body, Thresholds(50, 50)).tier in ("economy", "premium")


@pytest.mark.parametrize(("standard", "premium"), [(70, 60), (-1, 60), (35, 101), (True, 60),
                                                   ("35", 60)])
def test_bad_thresholds_are_refused(standard: Any, premium: Any) -> None:
    with pytest.raises(ValueError, match="auto_tier"):
        Thresholds(standard, premium)


# --- whole requests ---------------------------------------------------------------------------------


def test_a_greeting_is_economy_and_a_multi_file_refactor_with_tools_is_premium() -> None:
    greeting = user("hello! how are you today?", system="You are a helpful assistant.")
    refactor = user(
        "Refactor the payments package: split service.py into charges.py, refunds.py and "
        "webhooks.py, update every import across the repo and keep the tests passing.",
        system="You are an autonomous coding agent.",
        tools=[tool("read_file"), tool("write_file"), tool("grep"), tool("run_tests")])
    assert score_request(greeting).tier == "economy"
    assert score_request(refactor).tier == "premium"


def test_scoring_is_deterministic_and_does_not_mutate_the_body() -> None:
    entries = load_entries()
    bodies = [copy.deepcopy(e.request) for e in entries]
    first = [score_request(e.request) for e in entries]
    second = [score_request(e.request) for e in entries]
    assert first == second
    assert [e.request for e in entries] == bodies
    reordered = {k: entries[0].request[k] for k in reversed(list(entries[0].request))}
    assert score_request(reordered) == first[0]


# --- the labelled set -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    return load_entries()


def test_the_set_is_big_balanced_and_explained(entries: list[Entry]) -> None:
    assert len(entries) >= 150
    ids = [e.id for e in entries]
    assert len(ids) == len(set(ids))
    assert {e.category for e in entries} == set(CATEGORIES)
    tiers = collections.Counter(e.tier for e in entries)
    assert set(tiers) == set(TIERS)
    assert all(0.25 <= n / len(entries) <= 0.42 for n in tiers.values()), tiers  # about a third
    for e in entries:
        assert len(e.why.split()) >= 4 and e.why.endswith("."), e.id  # one real sentence
        messages = e.request["messages"]
        assert any(m["role"] == "user" for m in messages), e.id
        if e.category == "agentic":
            assert e.request.get("tools"), e.id
    by_category = collections.Counter(e.category for e in entries)
    assert min(by_category.values()) >= 15, by_category


def test_the_holdout_split_is_fixed_and_about_30_percent(entries: list[Entry]) -> None:
    held = [e.id for e in entries if is_holdout(e.id)]
    assert 0.25 <= len(held) / len(entries) <= 0.35
    assert [is_holdout("chat-01"), is_holdout("code-16"), is_holdout("ag-14")] == \
        [is_holdout("chat-01"), is_holdout("code-16"), is_holdout("ag-14")]  # pure
    assert {e.tier for e in entries if is_holdout(e.id)} == set(TIERS)


def test_evaluation_meets_the_issue_bar(entries: list[Entry]) -> None:
    """The CI gate of issue 8: >= 80% exact tier, < 5% of premium-labelled sent to economy."""
    report = evaluate(entries)
    misses = [(r.id, r.label, r.chosen, r.score) for r in report.misses()]
    assert report.accuracy >= MIN_ACCURACY, misses
    assert report.premium_to_economy < MAX_PREMIUM_TO_ECONOMY, misses


def test_report_arithmetic(entries: list[Entry]) -> None:
    report = evaluate(entries)
    matrix = report.confusion
    assert sum(sum(row.values()) for row in matrix.values()) == report.total == len(entries)
    assert sum(matrix[t][t] for t in TIERS) == report.correct
    assert sum(report.share.values()) == pytest.approx(1.0)
    assert 0 < report.cost("chosen") < report.cost("premium")
    assert report.cost("economy") < report.cost("standard") < report.cost("premium")
    held = report.subset(e.id for e in entries if is_holdout(e.id))
    assert 0 < held.total < report.total


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
    entry = Entry("x", "chat", "economy", "a test entry here", user("hi", max_tokens=100))
    report = evaluate([entry], catalog=catalog)
    r = report.results[0]
    assert r.output_tokens == 100  # min(max_tokens, 500)
    assert report.cost("premium") == pytest.approx((r.input_tokens * 3.0 + 100 * 12.0) / 1e6)


def test_main_prints_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--misses", "--check"]) == 0
    out = capsys.readouterr().out
    for text in ("exact-tier accuracy", "premium -> economy", "confusion", "Held-out part",
                 "all premium", "share routed", "check: ok"):
        assert text in out


def test_main_refuses_bad_thresholds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--standard", "80", "--premium", "60"]) == 2
    assert "auto_tier.standard" in capsys.readouterr().out
