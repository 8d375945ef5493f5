"""Auto tier: pick economy, standard or premium from the request itself.

``score_request(body)`` reads an OpenAI chat.completions request body (the system prompt, the last
user message, code blocks, tool definitions and calls, the history, the requested output) and
returns a 0-100 complexity score, the tier it falls in, and every feature that moved the score.

The score is a sum, not a model: ``BASE`` plus the points of each feature in ``WEIGHTS``, clamped
to 0..100. Each weight's ``doc`` says what it measures and how many points it gives, so
``model-router explain`` can show an operator exactly why a request landed where it did. Nothing
here downloads anything, touches the network or keeps state: the same body always gives the same
score. Pure Python, standard library only.

What the score reads of the request -- its signals, and where in the conversation each comes
from -- is ``sidecar.core.routing.signals``; the words and marks it looks for are
``sidecar.core.routing.cues``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import log2
from types import MappingProxyType
from typing import Any

from sidecar.core import vocabulary
from sidecar.core.routing.signals import _signals
from sidecar.core.vocabulary import Tier

TIERS: tuple[str, ...] = vocabulary.TIERS  # re-exported (as plain strings) for cli.autotier_eval

BASE = 33.0  # where a request without any signal starts: just below the standard threshold

SIZE_FROM = 100  # prompt tokens (chars/4) from which size adds points
TINY_PROMPT = 40  # tokens


@dataclass(frozen=True, slots=True)
class Weight:
    """One feature: ``points`` per unit, at most ``cap`` in total (a negative cap for cues that
    pull the score down). ``doc`` is what ``explain`` shows."""

    points: float
    cap: float
    doc: str


WEIGHTS: Mapping[str, Weight] = MappingProxyType({
    # -- size and shape -----------------------------------------------------------------------
    "prompt_size": Weight(4.0, 16.0, "+4 per doubling of the prompt (all message text, system "
                          "included, chars/4) above 100 tokens, at most +16: more material to "
                          "hold in mind. Capped so a long but easy request is not premium by size."),
    "tiny_prompt": Weight(-4.0, -4.0, "-4 when the whole prompt is under 40 tokens and nothing "
                          "else points to difficulty: one-line questions are mostly lookups."),
    "turns": Weight(2.0, 8.0, "+2 per user turn after the first, at most +8: a long dialogue "
                    "must stay consistent with what was said before."),
    # -- code ---------------------------------------------------------------------------------
    "code_blocks": Weight(5.0, 14.0, "+5 for the first code block (``` fence, or code-like lines "
                          "without one), +3 per further block, at most +14; a data block (json, "
                          "yaml, csv...) or a block of a few lines counts for half."),
    "systems_code": Weight(5.0, 5.0, "+5 when the code is in a language where bugs are subtle "
                           "(Rust, C, C++, CUDA, Go, assembly, Haskell...)."),
    "code_task": Weight(7.0, 7.0, "+7 when the user asks to write, implement, fix, review... "
                        "code (a verb and a code noun): working code is at least standard work."),
    "large_change": Weight(6.0, 6.0, "+6 when the change asked for is wide: refactor, migrate, "
                           "port, rewrite, restructure, redesign."),
    "error_output": Weight(3.0, 3.0, "+3 when a stack trace or error output is present "
                           "(debugging); how hard it is comes from the other features."),
    # -- tools and agents ---------------------------------------------------------------------
    "tool_definitions": Weight(2.0, 10.0, "+2 per tool offered, at most +10: more tools, more "
                               "planning about which to call and in what order."),
    "powerful_tools": Weight(8.0, 8.0, "+8 when a tool can change code, infrastructure or money "
                             "or read production (write/edit files, run tests or shells, deploy, "
                             "SQL, orders, payments, metrics, logs): mistakes there are costly."),
    "tool_history": Weight(1.5, 9.0, "+1.5 per tool call or tool result already in the "
                           "conversation, at most +9: a running agent loop."),
    # -- what is asked --------------------------------------------------------------------------
    "writing": Weight(4.0, 4.0, "+4 when the user asks for composed prose or an explanation "
                      "(write, draft, explain, describe, plan, letter, essay...)."),
    "deep_reasoning": Weight(14.0, 28.0, "+14 per distinct deep-reasoning cue (prove, derive, root "
                             "cause, trade-offs, architecture, threat model, justify, rigorous, "
                             "counterexample, invariant, steelman, causal...), at most +28."),
    "analysis": Weight(5.0, 20.0, "+5 per distinct analysis cue (analyze, evaluate, compare, "
                       "critique, assess, why, explain, step by step, recommend, risks, design, "
                       "optimize, edge cases, evidence...), at most +20."),
    "hard_domain": Weight(5.0, 20.0, "+5 per distinct cue of a domain where mistakes are subtle or "
                          "costly (concurrency, distributed systems, security, performance, "
                          "compilers, finance, law, medicine, clinical research...), at most +20."),
    "math": Weight(4.0, 12.0, "+4 per math signal (LaTeX, math symbols, an exponent, math "
                   "vocabulary such as integral, theorem, matrix, probability, prime), at most +12."),
    "numbers_heavy": Weight(3.0, 3.0, "+3 when over 12% of a sizeable sample is digits: tables "
                            "of figures to reason over."),
    # -- what is expected back ------------------------------------------------------------------
    "max_tokens": Weight(1.0, 10.0, "from max_completion_tokens / max_tokens: <=64 gives -10, "
                         "<=300 gives -4, >=4000 gives +5, >=16000 gives +10 (a short answer is "
                         "rarely a hard one; a long one often is)."),
    "structured_output": Weight(2.0, 2.0, "+2 for a response_format json_schema with more than "
                                "six properties: a sizeable schema to fill exactly."),
    "reasoning_effort": Weight(1.0, 10.0, "from the request's reasoning_effort: high +10, medium "
                               "+3, low -5, minimal or none -8."),
    # -- who the model is asked to be -----------------------------------------------------------
    "expert_role": Weight(10.0, 10.0, "+10 when the system prompt casts the model as an expert "
                          "(senior/staff/principal engineer, architect, consultant, researcher, "
                          "lawyer, physician, analyst...)."),
    "casual_role": Weight(-6.0, -6.0, "-6 when the system prompt casts it as a friendly, casual "
                          "or terse assistant (friendly, cheerful, chatbot, concise, 'reply "
                          "with...', 'only the...') and not as an expert."),
    # -- simple-task cues pull the score down ---------------------------------------------------
    "greeting": Weight(-12.0, -12.0, "-12 when the last user message is a short greeting or "
                       "thanks."),
    "simple_task": Weight(-8.0, -16.0, "-8 per distinct simple-task cue (translate, classify, "
                          "categorize, label, sentiment, rename, spelling, grammar, tl;dr, a "
                          "title...), at most -16."),
    "brevity": Weight(-4.0, -8.0, "-4 per distinct cue that the answer is short (one line, one "
                      "sentence, brief, quick, 'just the...', yes or no...), at most -8."),
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


_EFFORT = {"high": 10.0, "medium": 3.0, "low": -5.0, "minimal": -8.0, "none": -8.0}


DEFAULT_THRESHOLDS = Thresholds()


def score_request(body: Mapping[str, Any], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> TierScore:
    """Score one chat.completions request body (see the module docstring and ``WEIGHTS``)."""
    s = _signals(body)
    units: list[tuple[str, float]] = []  # (feature, units) in WEIGHTS order of appearance

    tokens = s.chars / 4
    if tokens > SIZE_FROM:
        units.append(("prompt_size", log2(tokens / SIZE_FROM)))
    units.append(("turns", max(0, s.user_turns - 1)))
    blocks = s.code_blocks + s.data_blocks / 2
    units.append(("code_blocks", blocks if blocks <= 1 else 1 + 0.6 * (blocks - 1)))
    units.append(("systems_code", s.systems_code))
    units.append(("code_task", s.code_task))
    units.append(("large_change", s.large_change))
    units.append(("error_output", s.error_output))
    units.append(("tool_definitions", s.tools))
    units.append(("powerful_tools", s.powerful_tools))
    units.append(("tool_history", s.tool_history))
    units.append(("writing", s.writing))
    units.append(("deep_reasoning", s.deep))
    units.append(("analysis", s.analysis))
    units.append(("hard_domain", s.hard_domain))
    units.append(("math", s.math))
    units.append(("numbers_heavy", s.numbers_heavy))
    units.append(("max_tokens", _max_tokens_points(s.max_tokens)))
    units.append(("structured_output", s.big_schema))
    units.append(("reasoning_effort", _EFFORT.get(s.reasoning_effort or "", 0.0)))
    units.append(("expert_role", s.expert_role))
    units.append(("casual_role", s.casual_role and not s.expert_role))
    units.append(("greeting", s.greeting))
    units.append(("simple_task", s.simple))
    units.append(("brevity", s.brevity))

    raw: list[tuple[str, float]] = []
    for name, n in units:
        if n:
            w = WEIGHTS[name]
            pts = w.points * float(n)
            raw.append((name, min(pts, w.cap) if w.cap >= 0 else max(pts, w.cap)))
    if tokens < TINY_PROMPT and not any(pts > 0 for _, pts in raw):
        raw.append(("tiny_prompt", WEIGHTS["tiny_prompt"].points))

    total = BASE + sum(pts for _, pts in raw)
    score = round(min(100.0, max(0.0, total)), 1)
    contributions = tuple((name, round(pts, 1)) for name, pts in raw if round(pts, 1) != 0)
    return TierScore(score=score, tier=thresholds.tier_for(score), contributions=contributions)


def _max_tokens_points(n: int | None) -> float:
    if n is None:
        return 0.0
    if n <= 64:
        return -10.0
    if n <= 300:
        return -4.0
    if n >= 16_000:
        return 10.0
    if n >= 4_000:
        return 5.0
    return 0.0


__all__ = ["BASE", "DEFAULT_THRESHOLDS", "TIERS", "WEIGHTS", "Thresholds", "TierScore", "Weight",
           "score_request"]
