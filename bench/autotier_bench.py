"""How long ``sidecar.autotier.score_request`` takes, for requests up to a 100k-token conversation.

    .venv/bin/python bench/autotier_bench.py            # or: python -m bench.autotier_bench
    .venv/bin/python bench/autotier_bench.py --quick    # fewer repetitions

The issue's target: scoring one request takes under 1 ms for a 100k-token conversation. Each
shape below is built to about 400,000 characters (100k tokens at 4 characters per token), except
the small baseline. Per shape it prints the per-call time (median and best of several repeats, in
one thread) and, as a same-run baseline, the time of ``facts.estimate_prompt_tokens`` on the same
body (work the sidecar already does for every request). Not a test: nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import timeit
from collections.abc import Callable
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sidecar.core.facts import estimate_prompt_tokens  # noqa: E402
from sidecar.core.routing.autotier import score_request  # noqa: E402

TARGET_CHARS = 400_000  # ~100k tokens
WORDS = ("the service returns a list of orders for each customer and the report groups them by "
         "region so that finance can reconcile revenue against refunds before the month closes "
         "while latency stays under the budget agreed with the platform team").split()
CODE = '''def handle(request, db, cache):
    key = f"user:{request.user_id}"
    if (hit := cache.get(key)) is not None:
        return hit
    rows = db.fetch("SELECT id, total FROM orders WHERE user_id = %s", (request.user_id,))
    result = [{"id": r[0], "total": r[1]} for r in rows]
    cache.set(key, result, ttl=60)
    return result
'''


def prose(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    n = 0
    while n < chars:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))).capitalize() + ". "
        out.append(sentence)
        n += len(sentence)
        if rng.random() < 0.1:
            out.append("\n\n")
    return "".join(out)[:chars]


def long_chat(rng: random.Random) -> dict[str, Any]:
    """200 turns of ~2,000-character messages, a system prompt, a final question."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a senior engineer helping a team with their platform."}]
    while sum(len(m["content"]) for m in messages) < TARGET_CHARS - 2000:
        role = "user" if len(messages) % 2 else "assistant"
        messages.append({"role": role, "content": prose(rng, 2000)})
    messages.append({"role": "user",
                     "content": "Given all that, what is the root cause and the trade-offs of each fix?"})
    return {"model": "gpt-4o", "messages": messages}


def agent_loop(rng: random.Random) -> dict[str, Any]:
    """A coding agent 150 steps in: tool calls with JSON arguments and file-sized tool results."""
    tools = [{"type": "function", "function": {"name": n, "description": f"{n} in the repository",
                                               "parameters": {"type": "object", "properties": {
                                                   "path": {"type": "string"}}}}}
             for n in ("read_file", "write_file", "grep", "run_tests", "list_dir", "edit_file")]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are an autonomous coding agent."},
        {"role": "user",
         "content": "Refactor the payments module into separate files and keep the tests passing."}]
    i = 0
    while sum(len(m.get("content") or "") for m in messages) < TARGET_CHARS:
        i += 1
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": "read_file", "arguments": json.dumps({"path": f"payments/m{i}.py"})}}]})
        messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": CODE * 6})
    return {"model": "gpt-4o", "tools": tools, "messages": messages}


def one_paste(rng: random.Random) -> dict[str, Any]:
    """One user message: a 400k-character pasted document and a question at the end."""
    return {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Summarize this report in one line.\n\n" + prose(rng, TARGET_CHARS)
         + "\n\nWhat is the single most important risk?"}]}


def code_paste(rng: random.Random) -> dict[str, Any]:
    """One user message with 400k characters of fenced code, as content parts."""
    code = "```python\n" + CODE * (TARGET_CHARS // len(CODE)) + "```"
    return {"model": "gpt-4o", "max_tokens": 8000, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Review this module for concurrency bugs:"},
                                     {"type": "text", "text": code}]}]}


def many_short(rng: random.Random) -> dict[str, Any]:
    """The worst case for the per-message loop: 2,000 messages of 200 characters."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a support assistant."}]
    for i in range(TARGET_CHARS // 200):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": prose(rng, 200)})
    return {"model": "gpt-4o", "messages": messages}


def small(rng: random.Random) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi! are you open on saturdays?"}]}


SHAPES: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "small (baseline)": small,
    "long chat, 200 turns": long_chat,
    "agent loop, 150 tool steps": agent_loop,
    "2,000 short messages": many_short,
    "one 400k-char paste": one_paste,
    "400k chars of code (parts)": code_paste,
}


def text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(part.get("text") or "") for part in content)
    return 0


def per_call(fn: Callable[[], object], number: int, repeat: int) -> tuple[float, float]:
    """(median, best) seconds per call over ``repeat`` runs of ``number`` calls."""
    runs = [t / number for t in timeit.repeat(fn, number=number, repeat=repeat)]
    return statistics.median(runs), min(runs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = p.parse_args(argv)
    number, repeat = (50, 5) if args.quick else (200, 15)
    rng = random.Random(8)
    print(f"autotier benchmark: Python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg")
          else f"autotier benchmark: Python {platform.python_version()}")
    print(f"{'shape':<30}{'chars':>9}{'msgs':>6}{'tier':>10}{'score':>7}"
          f"{'median us':>11}{'best us':>9}{'estimate_prompt_tokens us':>27}")
    worst = 0.0
    for name, build in SHAPES.items():
        body = build(rng)
        chars = sum(text_chars(m.get("content")) for m in body["messages"])
        result = score_request(body)
        median, best = per_call(lambda b=body: score_request(b), number, repeat)
        base, _ = per_call(lambda b=body: estimate_prompt_tokens(b), max(1, number // 4), repeat)
        if chars >= TARGET_CHARS * 0.9:
            worst = max(worst, median)
        print(f"{name:<30}{chars:>9}{len(body['messages']):>6}{result.tier:>10}{result.score:>7.1f}"
              f"{median * 1e6:>11.1f}{best * 1e6:>9.1f}{base * 1e6:>27.1f}")
    print(f"\nworst median for a ~100k-token request: {worst * 1e6:.0f} us "
          f"({'under' if worst < 1e-3 else 'OVER'} the 1 ms target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
