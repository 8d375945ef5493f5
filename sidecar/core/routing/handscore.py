"""The hand-weighted auto-tier scorer of issue 8, kept only as the baseline the learned model is
compared with (``model-router eval-tiers``, ``scripts/train_autotier.py``); routing does not use it.

A sum: 33 plus the points of each signal of ``sidecar.core.routing.signals`` (per unit, capped),
clamped to 0..100; standard from 35, premium from 60.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import log2
from typing import Any

from sidecar.core.routing.signals import _signals

BASE = 33.0
STANDARD_AT, PREMIUM_AT = 35.0, 60.0
# feature: (points per unit, cap); a negative cap for cues that pull the score down
POINTS: Mapping[str, tuple[float, float]] = {
    "prompt_size": (4.0, 16.0), "tiny_prompt": (-4.0, -4.0), "turns": (2.0, 8.0),
    "code_blocks": (5.0, 14.0), "systems_code": (5.0, 5.0), "code_task": (7.0, 7.0),
    "large_change": (6.0, 6.0), "error_output": (3.0, 3.0), "tool_definitions": (2.0, 10.0),
    "powerful_tools": (8.0, 8.0), "tool_history": (1.5, 9.0), "writing": (4.0, 4.0),
    "deep_reasoning": (14.0, 28.0), "analysis": (5.0, 20.0), "hard_domain": (5.0, 20.0),
    "math": (4.0, 12.0), "numbers_heavy": (3.0, 3.0), "max_tokens": (1.0, 10.0),
    "structured_output": (2.0, 2.0), "reasoning_effort": (1.0, 10.0), "expert_role": (10.0, 10.0),
    "casual_role": (-6.0, -6.0), "greeting": (-12.0, -12.0), "simple_task": (-8.0, -16.0),
    "brevity": (-4.0, -8.0),
}
_EFFORT = {"high": 10.0, "medium": 3.0, "low": -5.0, "minimal": -8.0, "none": -8.0}


def hand_score(body: Mapping[str, Any]) -> float:
    s = _signals(body)
    tokens = s.chars / 4
    blocks = s.code_blocks + s.data_blocks / 2
    units = {
        "prompt_size": log2(tokens / 100) if tokens > 100 else 0.0,
        "turns": max(0, s.user_turns - 1),
        "code_blocks": blocks if blocks <= 1 else 1 + 0.6 * (blocks - 1),
        "systems_code": s.systems_code, "code_task": s.code_task, "large_change": s.large_change,
        "error_output": s.error_output, "tool_definitions": s.tools,
        "powerful_tools": s.powerful_tools, "tool_history": s.tool_history, "writing": s.writing,
        "deep_reasoning": s.deep, "analysis": s.analysis, "hard_domain": s.hard_domain,
        "math": s.math, "numbers_heavy": s.numbers_heavy,
        "max_tokens": _max_tokens_points(s.max_tokens), "structured_output": s.big_schema,
        "reasoning_effort": _EFFORT.get(s.reasoning_effort or "", 0.0),
        "expert_role": s.expert_role, "casual_role": s.casual_role and not s.expert_role,
        "greeting": s.greeting, "simple_task": s.simple, "brevity": s.brevity,
    }
    raw = []
    for name, n in units.items():
        if n:
            points, cap = POINTS[name]
            raw.append(min(points * float(n), cap) if cap >= 0 else max(points * float(n), cap))
    if tokens < 40 and not any(p > 0 for p in raw):
        raw.append(POINTS["tiny_prompt"][0])
    return round(min(100.0, max(0.0, BASE + sum(raw))), 1)


def hand_tier(body: Mapping[str, Any]) -> int:
    """0, 1 or 2: economy, standard, premium."""
    score = hand_score(body)
    return 2 if score >= PREMIUM_AT else 1 if score >= STANDARD_AT else 0


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
