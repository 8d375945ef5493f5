"""What the hand-weighted scorer of issue 8 (``sidecar.core.routing.handscore``, now only the
baseline the learned model of ``sidecar.core.routing.autotier`` is compared with) reads of a
request: its signals (``_Signals``), counted from bounded windows of the conversation. The
helpers that bound the windows (``_ends``, ``_normalise``, ``_count``) serve ``ask.py`` too.

Where the words come from (all lower-cased ASCII, punctuation and hyphens as spaces):
- the *system* text: the head of the first system/developer message (role cues);
- the *instruction*: the start of the last user message up to its first ``` fence, and its end
  after the last fence or as a paragraph of its own: what is asked (reasoning, analysis,
  simple-task, brevity, writing and code-task cues), so cue words inside pasted material do not
  count;
- a *wide* window of the last user message (head and tail): domain and math vocabulary, which
  pasted material does tell (a clinical note is clinical).
Code blocks, error output, LaTeX and digits are counted in a *sample*: the head and tail of the
most recent messages (tool results included).

Speed: every scan is bounded, whatever the size of the conversation. Sizes come from ``len()``;
each window is tokenised once into a set, so a vocabulary lookup is O(1); content given as parts
is sliced, never joined. What grows with the conversation is one light loop over its messages.
bench/autotier_bench.py measures it on 100k-token conversations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from sidecar.core.routing.cues import (
    ANALYSIS_PHRASES,
    ANALYSIS_WORDS,
    BREVITY_PHRASES,
    BREVITY_WORDS,
    CASUAL_ROLE_PHRASES,
    CASUAL_ROLE_WORDS,
    CODE_LINE_MARKS,
    CODE_NOUNS,
    CODE_TASK_VERBS,
    DATA_LANGS,
    DEEP_PHRASES,
    DEEP_WORDS,
    ERROR_MARKS,
    EXPERT_ROLE_WORDS,
    GREETING_WORDS,
    HARD_DOMAIN_PHRASES,
    HARD_DOMAIN_WORDS,
    LARGE_CHANGE_WORDS,
    MATH_PHRASES,
    MATH_SYMBOLS,
    MATH_WORDS,
    POWERFUL_TOOL_STEMS,
    SIMPLE_PHRASES,
    SIMPLE_WORDS,
    SYSTEMS_LANG_WORDS,
    SYSTEMS_LANGS,
    WRITING_WORDS,
)

# Bounds of what is scanned (characters) and sizes.
SYSTEM_HEAD = 800  # role cues live at the start of the system prompt
INSTR_HEAD = 600  # the instruction: start of the last user message...
INSTR_TAIL = 400  # ...and its end
WIDE_HEAD = 2400  # the wide window of the last user message for domain and math words
WIDE_TAIL = 800
MESSAGE_HEAD = 1500  # per message in the code/math sample
MESSAGE_TAIL = 500
SAMPLE_MESSAGES = 8  # most recent messages in the sample
SAMPLE_CHARS = 12_000
SMALL_BLOCK = 200  # a fenced block shorter than this counts for half a block
GREETING_CHARS = 120  # a greeting is a short message

# bytes -> lower-case ASCII letters, digits, '+' and '_'; everything else becomes a space
_KEEP = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789+_")
_TABLE = bytes((c + 32 if 65 <= c <= 90 else c if c in _KEEP else 32) for c in range(256))
_DIGITS = b"0123456789"


@dataclass(slots=True)
class _Signals:
    chars: int = 0
    user_turns: int = 0
    code_blocks: float = 0.0
    data_blocks: float = 0.0
    systems_code: bool = False
    code_task: bool = False
    large_change: bool = False
    error_output: bool = False
    tools: int = 0
    powerful_tools: bool = False
    tool_history: int = 0
    writing: bool = False
    deep: int = 0
    analysis: int = 0
    hard_domain: int = 0
    math: int = 0
    numbers_heavy: bool = False
    max_tokens: int | None = None
    big_schema: bool = False
    reasoning_effort: str | None = None
    expert_role: bool = False
    casual_role: bool = False
    greeting: bool = False
    simple: int = 0
    brevity: int = 0


def _is_map(x: Any) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(x, dict) or isinstance(x, Mapping)  # dict first: the ABC check is slow


def _signals(body: Mapping[str, Any]) -> _Signals:
    s = _Signals()
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = []

    # One light pass over every message: sizes, turns, tool activity; remember the first system
    # prompt and the last user message (content as sent: a string or a list of parts).
    chars = 0
    system: Any = None
    last_user: Any = None
    tool_history = 0
    for m in messages:
        if not (isinstance(m, dict) or isinstance(m, Mapping)):
            continue
        role = m.get("role")
        content = m.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += _parts_len(content)
        if role == "user":
            s.user_turns += 1
            last_user = content
        elif role == "assistant":
            calls = m.get("tool_calls")
            if isinstance(calls, list):
                tool_history += len(calls)
                for call in calls:
                    fn = call.get("function") if _is_map(call) else None
                    args = fn.get("arguments") if _is_map(fn) else None
                    if isinstance(args, str):
                        chars += len(args)
            elif m.get("function_call"):
                tool_history += 1
        elif role == "tool" or role == "function":
            tool_history += 1
        elif system is None and (role == "system" or role == "developer"):
            system = content
    s.tool_history = tool_history

    # Tools offered (``functions`` is the legacy form).
    names: list[str] = []
    for key in ("tools", "functions"):
        listed = body.get(key)
        for t in listed if isinstance(listed, list) else ():
            fn = t.get("function", t) if _is_map(t) else None
            if _is_map(fn):
                name = fn.get("name")
                names.append(name.lower() if isinstance(name, str) else "")
                desc = fn.get("description")
                chars += (len(desc) if isinstance(desc, str) else 0) + 60  # + name and schema
    s.tools = len(names)
    s.powerful_tools = any(stem in name for name in names for stem in POWERFUL_TOOL_STEMS)
    s.chars = chars

    # What is expected back.
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        s.max_tokens = limit
    fmt = body.get("response_format")
    if _is_map(fmt) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if _is_map(spec) else None
        props = schema.get("properties") if _is_map(schema) else None
        s.big_schema = _is_map(props) and len(props) > 6
    effort = body.get("reasoning_effort")
    s.reasoning_effort = effort if isinstance(effort, str) else None

    # Words. Each window is normalised and split into a set once.
    sys_b = _normalise(_ends(system, SYSTEM_HEAD, 0)[0])
    instr_b = _normalise(_instruction(last_user))
    sys_words = frozenset(sys_b.split())
    instr_words = frozenset(instr_b.split())
    asked_b = sys_b + b" " + instr_b  # system prompt + instruction
    asked = sys_words | instr_words
    head, tail, user_len = _ends(last_user, WIDE_HEAD, WIDE_TAIL)
    wide_b = _normalise(head + "\n" + tail) if user_len > INSTR_HEAD + INSTR_TAIL else instr_b
    wide = asked | frozenset(wide_b.split()) if wide_b is not instr_b else asked
    wide_all_b = asked_b + b" " + wide_b

    s.deep = _count(asked, DEEP_WORDS, asked_b, DEEP_PHRASES)
    s.analysis = _count(asked, ANALYSIS_WORDS, asked_b, ANALYSIS_PHRASES)
    s.hard_domain = _count(wide, HARD_DOMAIN_WORDS, wide_all_b, HARD_DOMAIN_PHRASES)
    s.expert_role = bool(sys_words & EXPERT_ROLE_WORDS)
    s.casual_role = bool(sys_words & CASUAL_ROLE_WORDS) or _count(
        sys_words, frozenset(), sys_b, CASUAL_ROLE_PHRASES) > 0
    s.simple = min(2, _count(asked, SIMPLE_WORDS, asked_b, SIMPLE_PHRASES))
    s.brevity = _count(asked, BREVITY_WORDS, asked_b, BREVITY_PHRASES)
    s.code_task = bool(instr_words & CODE_TASK_VERBS) and bool(instr_words & CODE_NOUNS)
    s.large_change = bool(instr_words & LARGE_CHANGE_WORDS)
    s.writing = bool(instr_words & WRITING_WORDS)
    if 0 < user_len < GREETING_CHARS:
        first = instr_b.split(None, 1)[:1]
        s.greeting = (bool(first) and first[0] in GREETING_WORDS) or b"thank" in instr_b
    math = _count(wide, MATH_WORDS, wide_all_b, MATH_PHRASES)
    systems_lang = bool(wide & SYSTEMS_LANG_WORDS)

    # Code, errors and math notation in the sample.
    sample = _sample(messages, system)
    if "```" in sample:
        for chunk in sample.split("```")[1::2]:
            tag = chunk[:20].split("\n", 1)[0].strip().lower()
            size = 1.0 if len(chunk) >= SMALL_BLOCK else 0.5
            if tag in DATA_LANGS:
                s.data_blocks += size
            else:
                s.code_blocks += size
                systems_lang = systems_lang or tag in SYSTEMS_LANGS
    elif sum(sample.count(mark) for mark in CODE_LINE_MARKS) >= 3:
        s.code_blocks = 1.0
    s.systems_code = systems_lang and (s.code_blocks > 0 or s.code_task)
    s.error_output = any(mark in sample for mark in ERROR_MARKS)
    if "\\" in sample and ("$" in sample or "\\(" in sample or "\\[" in sample):
        math += 1  # LaTeX
    if any(sym in sample for sym in MATH_SYMBOLS):
        math += 1
    if "^" in head and any(d in head for d in "0123456789"):
        math += 1  # an exponent: an equation
    s.math = min(math, 3)
    if len(sample) >= 300:
        raw = sample.encode("utf-8", "ignore")
        digits = len(raw) - len(raw.translate(None, _DIGITS))
        s.numbers_heavy = digits / len(raw) > 0.12
    return s


def _texts(parts: list[Any]) -> list[str]:
    return [t for p in parts if _is_map(p) and isinstance(t := p.get("text"), str)]


def _parts_len(parts: list[Any]) -> int:
    return sum(len(t) for t in _texts(parts))


def _ends(content: Any, head: int, tail: int) -> tuple[str, str, int]:
    """(the first ``head`` characters, the last ``tail`` characters, the length) of a message's
    text, without copying the rest. When the text fits in head + tail, head is all of it and
    tail is empty. Content parts are sliced, not joined."""
    if isinstance(content, str):
        n = len(content)
        if n <= head + tail:
            return content, "", n
        return content[:head], content[n - tail:] if tail else "", n
    if not isinstance(content, list):
        return "", "", 0
    texts = _texts(content)
    n = sum(len(t) for t in texts) + max(0, len(texts) - 1)  # parts joined by newlines
    if n <= head + tail:
        return "\n".join(texts), "", n
    first: list[str] = []
    room = head
    for t in texts:
        if room <= 0:
            break
        first.append(t[:room])
        room -= len(t) + 1
    last: list[str] = []
    room = tail
    for t in reversed(texts):
        if room <= 0:
            break
        last.append(t[len(t) - room:] if len(t) > room else t)
        room -= len(t) + 1
    return "\n".join(first)[:head], "\n".join(reversed(last))[-tail:] if tail else "", n


def _instruction(content: Any) -> str:
    """Where the instruction is, as opposed to pasted material: the start of the message up to
    its first ``` fence, and its end after the last fence. In a long message the start counts as
    the whole paragraphs that fit in INSTR_HEAD ("Summarize this log in one line.\n\n<log>": not
    the first lines of the log) and the end only as a paragraph of its own ("... What is going
    on?"), not the last lines of a pasted document."""
    head, tail, n = _ends(content, INSTR_HEAD, INSTR_TAIL)
    if n <= INSTR_HEAD + INSTR_TAIL:  # short: all of it is in head
        first = head.find("```")
        if first < 0:
            return head
        return head[:first] + "\n" + head[head.rfind("```") + 3:]
    first = head.find("```")
    if first >= 0:
        head = head[:first]
    else:
        para = head.rfind("\n\n")
        if para > 0:
            head = head[:para]
    last = tail.rfind("```")
    if last >= 0:
        tail = tail[last + 3:]
    else:
        para = tail.rfind("\n\n")
        tail = tail[para + 2:] if para >= 0 else ""
    return head + "\n" + tail


def _normalise(text: str) -> bytes:
    """Lower-case ASCII words separated by spaces (other characters become spaces)."""
    return text.encode("utf-8", "ignore").translate(_TABLE)


def _count(words: frozenset[bytes], vocab: frozenset[bytes], text: bytes,
           phrases: tuple[tuple[bytes, frozenset[bytes]], ...]) -> int:
    """Distinct vocabulary words present, plus phrases present."""
    found = len(words & vocab)
    for phrase, parts in phrases:
        if parts <= words and phrase in text:
            found += 1
    return found


def _sample(messages: list[Any], system: Any) -> str:
    """Head and tail of the most recent messages and of the system prompt, at most SAMPLE_CHARS."""
    pieces: list[str] = []
    budget = SAMPLE_CHARS
    taken = 0
    for m in reversed(messages):
        if taken >= SAMPLE_MESSAGES or budget <= 0:
            break
        if not _is_map(m) or m.get("role") in ("system", "developer"):
            continue
        head, tail, n = _ends(m.get("content"), min(MESSAGE_HEAD, budget), MESSAGE_TAIL)
        if not n:
            continue
        taken += 1
        pieces.append(head + "\n" + tail if tail else head)
        budget -= len(head) + len(tail)
    if system is not None:
        pieces.append(_ends(system, SYSTEM_HEAD, 0)[0])
    return "\n".join(pieces)
