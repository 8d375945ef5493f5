"""What the auto tier's model reads of a request: the ask, told apart from the material it is about.

``ask_features(body)`` returns the features (``FEATURES``: name -> what it measures) that are
not zero, as plain numbers. Where they come from:
- the *ask*: the user's own words in the last user message -- its leading paragraphs up to the
  first code fence or pasted document (an e-mail header, a transcript, a table, a title in
  capitals...; in a long message, only if one of them asks something), and a short closing
  paragraph after the material that asks ("... What is going on?"); long quotations are removed;
- the *task*: the ask and the sentences of the system prompt's head that give an instruction
  ("Classify...", "Extract the fields...") -- the whole task when the user message is only the
  material (the item to classify, the document to extract from); the head also gives the role;
- the *material*: everything else -- pasted documents and code, the system prompt's policy text,
  the history, tool results -- of which only sizes, counts and a few marks are read;
- the agent loop: tools offered, tool rounds, whether the last message is a tool result to relay;
- what is asked back: a json_schema (small, or nested), max_tokens;
- the borders the labelling standard draws: a bare answer (yes or no, one word), a translation
  with or without demands on style, an extraction with structure to build, a short summary, an
  ask across several documents.

Speed: every scan is bounded whatever the size of the conversation (windows of the last user
message and of the system prompt, a sample for code marks); what grows with the conversation is
one light loop over its messages. bench/autotier_bench.py measures it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from math import log2
from typing import Any

from sidecar.core.routing import askcues as c
from sidecar.core.routing.signals import _count, _ends, _is_map, _normalise, _parts_len

ASK_HEAD = 2400  # the window of the last user message where the ask starts...
ASK_TAIL = 600  # ...and where a closing question is
OWN_MAX = 1500  # at most this much of the head is the user's own words
PARA_MAX = 500  # a longer paragraph is material, unless its head or tail asks something...
HEAD_TAIL = 300  # ...in this many characters (or it is the first of a short message)
SYSTEM_HEAD = 600  # the role and the task
SAMPLE_CHARS = 6000  # the code/notation sample: head of the last user message and tool results
MAX_SCAN = 16_000  # fences and document separators are counted in the first this many characters

_SPEAKER = re.compile(r"^[A-Z][\w.' -]{0,30}: \S", re.MULTILINE)
_QUOTED = re.compile(r'"[^"]{80,}"|“[^”]{80,}”')
_SENTENCE = re.compile(r"[.!?\n:;]+\s*")


def _words(text: str) -> tuple[frozenset[bytes], bytes]:
    b = _normalise(text)
    return frozenset(b.split()), b


def _hits(words: frozenset[bytes], text: bytes, cue: c.Cue) -> int:
    return _count(words, cue[0], text, cue[1])


def _material(para: str) -> bool:
    """Whether a paragraph starts like pasted material rather than the user's own words."""
    low = para[:40].lstrip().lower()
    if low.startswith(c.MATERIAL_STARTS):
        return True
    first = para.split("\n", 1)[0]
    words = [w for w in first.split()[:4] if any(ch.isalpha() for ch in w)]
    if len(words) >= 2 and all(w.isupper() and len(w) > 1 for w in words[:3]):
        return True  # a title in capitals: a document
    if len(_SPEAKER.findall(para)) >= 2:
        return True  # lines of a transcript or chat log ("Name: ...")
    return first.count("|") >= 3 or (len(first) >= 5 and first[:4].isdigit() and first[4] in "-/")


def asks(text: str) -> bool:
    """Whether a text requests something: a question, a request phrase, or a sentence that
    starts with an imperative verb."""
    if "?" in text:
        return True
    words, b = _words(text)
    if _count(words, frozenset(), b, c.REQUESTS):
        return True
    for sentence in _SENTENCE.split(text[:OWN_MAX]):
        first = sentence.split(None, 1)[:1]
        if first and first[0].lower().encode() in c.IMPERATIVES:
            return True
    return False


def _instructions(system: str) -> str:
    """The sentences of a system prompt's head that give an instruction (not the persona)."""
    out = []
    for sentence in _SENTENCE.split(system):
        first = sentence.split(None, 1)[:1]
        if first and first[0].lower().encode() in c.IMPERATIVES:
            out.append(sentence)
    return "\n".join(out)


def split_ask(content: Any) -> tuple[str, bool, int]:
    """(the user's own words, whether they ask something, the message's length)."""
    head, tail, n = _ends(content, ASK_HEAD, ASK_TAIL)
    whole = not tail
    fence = head.find("```")
    lead = head if fence < 0 else head[:fence]
    own: list[str] = []
    room = OWN_MAX
    for para in lead.split("\n\n"):
        s = para.strip()
        if not s:
            continue
        if _material(s) or (len(s) > PARA_MAX and not (asks(s[:HEAD_TAIL]) or asks(s[-HEAD_TAIL:]))
                            and (own or n > OWN_MAX)):
            break
        own.append(s[:room])
        room -= len(s) + 2
        if room <= 0:
            break
    asked = any(asks(p) for p in own)
    if not asked and n > OWN_MAX:
        own = []  # leading paragraphs that ask nothing: the start of the material
    # a closing ask after the material: after the last fence, or a short last paragraph
    end = head if whole else tail
    last = end.rfind("```")
    closing = end[last + 3:] if last >= 0 else end[end.rfind("\n\n") + 2:] if "\n\n" in end else ""
    closing = closing.strip()
    if closing and len(closing) <= PARA_MAX and closing not in own and asks(closing):
        own.append(closing)
        asked = True
    text = "\n".join(own)
    text = _QUOTED.sub('""', text)  # a long quotation is material too
    return text, asked, n


def ask_features(body: Mapping[str, Any]) -> dict[str, float]:
    """The features of a chat.completions body that are not zero (``FEATURES``: what each is)."""
    f: dict[str, float] = {}
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = []

    # Light passes (comprehensions: the per-message work is in C): sizes, turns, the agent loop,
    # the first system prompt, the last user message.
    ms = [m for m in messages if type(m) is dict or isinstance(m, Mapping)]  # type(): fast path
    roles = [m.get("role") for m in ms]
    contents = [m.get("content") for m in ms]
    sizes = [len(x) if type(x) is str else _parts_len(x) if isinstance(x, list) else 0
             for x in contents]
    chars = sum(sizes)
    user_turns = roles.count("user")
    at = len(roles) - 1 - roles[::-1].index("user") if user_turns else -1
    last_user: Any = contents[at] if at >= 0 else None
    firsts = [roles.index(r) for r in ("system", "developer") if r in roles]
    system: Any = contents[min(firsts)] if firsts else None
    results = [i for i, r in enumerate(roles) if r == "tool" or r == "function"] \
        if "tool" in roles or "function" in roles else []
    tool_chars = sum(sizes[i] for i in results)
    recent = [contents[i] for i in results[-3:]]  # the latest tool results, for the code sample
    made = [(i, n) for i, m in enumerate(ms) if ("tool_calls" in m or "function_call" in m)
            and roles[i] == "assistant" and (n := _calls(m))]
    rounds, calls = len(made), sum(n for _, n in made)
    rounds_since_user = sum(i > at for i, _ in made)
    last_role = roles[-1] if roles else None

    # The ask, the system prompt's head and the task (the ask and the system's instructions).
    own, asked, user_len = split_ask(last_user)
    sys_head, _, sys_len = _ends(system, SYSTEM_HEAD, 0)
    sw, sb = _words(sys_head)
    ob = _normalise(own)
    first = ob.split(None, 1)[:1]
    greeting = 0 < len(own) < 120 and bool(first) and (first[0] in c.GREETING or b"thank" in ob)
    if not asked and not greeting and sys_len and (user_len > OWN_MAX or _hits(sw, sb, c.SYS_SIMPLE)):
        f["ask_in_system"] = 1.0  # the user message is only material: the task is the system's
        own, ob, first = "", b"", []
    task = own + "\n" + _instructions(sys_head)
    aw, ab = _words(task)
    for name, cues in c.ASK_CUES:
        f[name] = sum(min(3, _hits(aw, ab, cue)) for cue in cues)
    digits = len(ob) - len(ob.translate(None, b"0123456789"))
    if greeting and not (f["ask_action"] or f["ask_extract"] or digits):
        f["greeting"] = 1.0
    if own and len(own) <= 250 and first and first[0] in c.WH_WORDS:
        f["wh_question"] = 1.0
    if _hits(aw, ab, c.SHORT_ANSWER):
        f["short_answer"] = 1.0
    f["sys_simple_task"] = min(2, _hits(sw, sb, c.SYS_SIMPLE))
    if f["ask_translate"] or (f["sys_simple_task"] and b"translat" in sb):
        styled = _hits(aw, ab, c.STYLE) or _hits(sw, sb, c.STYLE)  # the role may set the style
        f["translate_styled" if styled else "translate_plain"] = 1.0
    f["sys_hard_task"] = min(3, sum(_hits(sw, sb, cue) for cue in c.SYS_HARD))
    f["sys_expert"] = float(bool(sw & c.SYS_EXPERT))

    # Sizes and the shape of the ask: questions, enumerated parts, figures.
    f["ask_length"] = log2(1 + len(own) / 50)
    f["attached_size"] = log2(1 + max(0, user_len - len(own)) / 500)
    f["system_size"] = log2(1 + max(0, sys_len - SYSTEM_HEAD) / 500)
    f["history_size"] = log2(1 + max(0, chars - user_len - sys_len - tool_chars) / 1000)
    f["questions"] = min(6, own.count("?"))
    f["enumerated"] = min(6, sum(own.count(m) for m in c.ENUMERATION_MARKS))
    f["ask_figures"] = log2(1 + digits / 4)

    # Material: documents, code, notation.
    scan = _ends(last_user, MAX_SCAN, 0)[0]
    fences = scan.count("```") // 2
    f["fences"] = min(4, fences)
    docs = fences + scan.count("\n---") + scan.count("\n===") + scan.count("\nFrom:") + \
        scan.count("\n[") // 3
    f["documents"] = log2(1 + docs)
    sample = scan[:SAMPLE_CHARS] + "".join(_ends(r, 1500, 0)[0] for r in recent)
    if not fences and sum(sample.count(m) for m in c.CODE_MARKS) >= 3:
        f["fences"] = 1.0  # code pasted without a fence
    problem = f["ask_debug"] or f["ask_root_cause"] or f["ask_security"] or aw & c.PROBLEM_WORDS
    if f["fences"] and problem:  # a problem in code: how subtle depends on the code
        tags = {part[:16].split("\n", 1)[0].strip().lower() for part in scan.split("```", 8)[1::2]}
        f["systems_code"] = float(bool(tags & c.SYSTEMS_TAGS) or
                                  sum(m in sample for m in c.SYSTEMS_MARKS) >= 2)
        f["concurrency_code"] = min(3, sum(m in sample for m in c.CONCURRENCY_MARKS))
    f["math_notation"] = min(3, sum(m in task for m in c.MATH_MARKS))
    f["hard_cues"] = min(6, sum(f[n] for n in c.HARD_GROUPS))  # pooled: more support per step
    f["simple_cues"] = min(6, sum(f[n] for n in c.SIMPLE_GROUPS))
    if f["ask_summarise"] and f["ask_small"]:
        f["summary_short"] = 1.0
    if docs and _hits(aw, ab, c.SYNTHESIS):
        f["multi_doc"] = 1.0

    # The agent loop.
    n_tools = sum(len(t) for t in (body.get("tools"), body.get("functions")) if isinstance(t, list))
    f["tools_offered"] = log2(1 + n_tools)
    f["tool_rounds"] = log2(1 + rounds)
    f["tool_calls"] = log2(1 + calls)
    if last_role == "tool" or last_role == "function":
        f["relay_result" if rounds_since_user <= 1 else "loop_continues"] = 1.0
    elif rounds and last_role == "user":
        f["user_after_tools"] = 1.0
    f["user_turns"] = log2(user_turns) if user_turns > 1 else 0.0

    # What is asked back.
    fmt = body.get("response_format")
    kind = fmt.get("type") if _is_map(fmt) else None
    if kind == "json_object":
        f["json_object"] = 1.0
    elif kind == "json_schema":
        spec = fmt.get("json_schema") if _is_map(fmt) else None
        nested = _schema_shape(spec.get("schema") if _is_map(spec) else None, 0)[2]
        f["schema_nested" if nested else "schema_small"] = 1.0
    if (f["ask_extract"] or f.get("ask_in_system")) and (
            f.get("schema_nested") or _hits(aw, ab, c.MESSY) or _hits(sw, sb, c.MESSY)):
        f["extract_messy"] = 1.0  # structure to build, not values to read off
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit <= 300:
        f["small_max_tokens"] = 1.0
    return {k: float(v) for k, v in f.items() if v}


def _calls(m: Mapping[str, Any]) -> int:
    """How many tools an assistant message calls."""
    tc = m.get("tool_calls")
    if tc:
        return len(tc) if isinstance(tc, list) else 0
    return 1 if m.get("function_call") else 0


def _schema_shape(schema: Any, depth: int) -> tuple[int, int, bool]:
    """(leaf properties, enum or boolean leaves, nested: an array of objects or depth over 2)."""
    if not _is_map(schema) or depth > 6:
        return 0, 0, False
    props = schema.get("properties")
    if not _is_map(props):
        items = schema.get("items")
        if _is_map(items) and (items.get("type") == "object" or _is_map(items.get("properties"))):
            return 1, 0, True
        return 1, int("enum" in schema or schema.get("type") == "boolean"), False
    leaves = enums = 0
    nested = depth >= 2
    for sub in list(props.values())[:40]:
        a, b, n = _schema_shape(sub, depth + 1)
        leaves, enums, nested = leaves + a, enums + b, nested or n
    return leaves, enums, nested
