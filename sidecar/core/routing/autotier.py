"""Auto tier: pick economy, standard or premium from the request itself.

``score_request(body)`` reads an OpenAI chat.completions request body (the system prompt, the last
user message, code blocks, tool definitions and calls, the history, the requested output) and
returns a 0-100 complexity score, the tier it falls in, and every feature that moved the score.

The score is a sum, not a model: ``BASE`` plus the points of each feature in ``WEIGHTS``, clamped
to 0..100. Each weight's ``doc`` says what it measures and how many points it gives, so
``model-router explain`` can show an operator exactly why a request landed where it did. Nothing
here downloads anything, touches the network or keeps state: the same body always gives the same
score. Pure Python, standard library only.

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
from math import log2
from types import MappingProxyType
from typing import Any, TypeGuard

from sidecar.core import vocabulary
from sidecar.core.vocabulary import Tier

TIERS: tuple[str, ...] = vocabulary.TIERS  # re-exported (as plain strings) for cli.autotier_eval

BASE = 33.0  # where a request without any signal starts: just below the standard threshold

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
SIZE_FROM = 100  # prompt tokens (chars/4) from which size adds points
TINY_PROMPT = 40  # tokens
SMALL_BLOCK = 200  # a fenced block shorter than this counts for half a block
GREETING_CHARS = 120  # a greeting is a short message


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


# --- vocabularies -------------------------------------------------------------------------------
# Whole words after normalisation (lower case; punctuation and hyphens are spaces), and phrases
# of such words. General English and engineering vocabulary, not phrases of any labelled entry.


def _words(text: str) -> frozenset[bytes]:
    return frozenset(w.encode() for w in text.split())


def _phrases(*phrases: str) -> tuple[tuple[bytes, frozenset[bytes]], ...]:
    """Each phrase with its words: the substring search runs only when all the words occur."""
    return tuple((p.encode(), frozenset(w.encode() for w in p.split())) for p in phrases)


DEEP_WORDS = _words("""
    prove proof proofs derive derivation rigorous rigorously formally formalize justify
    justification counterexample invariant invariants linearizable linearizability tradeoff
    tradeoffs architecture architect steelman causal causality confounder confounders
    confounding soundness
""")
DEEP_PHRASES = _phrases("root cause", "root causes", "trade off", "trade offs", "threat model",
                        "first principles", "failure mode", "failure modes", "your reasoning",
                        "show your work", "show your working")
ANALYSIS_WORDS = _words("""
    analyze analyse analysis analyzing analysing evaluate evaluation critique assess assessment
    compare comparison contrast implications recommend recommendation risks hypothesis
    hypotheses assumptions optimize optimise optimization strategy design diagnose investigate
    reconcile synthesize synthesise weigh pros cons why explain difference differences argue
    argument arguments evidence debate contradict contradictions methodology methodological
    judgement judgment minimize minimise maximize maximise forecast correctness
""")
ANALYSIS_PHRASES = _phrases("step by step", "edge case", "edge cases", "what would change")
HARD_DOMAIN_WORDS = _words("""
    concurrency concurrent atomic atomics deadlock race mutex threads distributed consensus
    partition replication consistency idempotency idempotent latency throughput scalability
    scaling capacity performance leak segfault security vulnerability vulnerabilities exploit
    authentication authorization attack compliance gdpr regulatory legal contract liability
    covenant covenants tax valuation clinical patient dosing diagnosis pharmacology
    interactions kubernetes k8s kafka production outage incident raft paxos compiler gpu simd
    clause clauses obligation obligations indemnity jurisdiction court ruling statute
    arbitration medication medications dose dosage investment portfolio earnings equity
    randomised randomized trial trials cohort bias
""")
HARD_DOMAIN_PHRASES = _phrases("lock free", "thread safe", "memory leak", "memory ordering")
MATH_WORDS = _words("""
    integral integrals derivative derivatives theorem lemma corollary eigenvalue eigenvalues
    eigenvector matrix matrices determinant probability probabilities variance bayes
    polynomial polynomials equation equations inequality converge convergence congruent modulo
    prime primes integer integers divides divisible combinatorics permutations statistically
    regression
""")
MATH_PHRASES = _phrases("expected value", "expected number", "standard deviation",
                        "confidence interval", "p value")
CODE_TASK_VERBS = _words("write implement refactor port migrate review rewrite build create "
                         "generate add fix")
CODE_NOUNS = _words("""
    function functions class classes module modules method script query sql regex hook
    component dockerfile test tests pytest unit endpoint api kernel pass parser code program
    library cli pr diff queue buffer cache service
""")
LARGE_CHANGE_WORDS = _words("refactor refactoring migrate migration port rewrite restructure "
                            "redesign")
WRITING_WORDS = _words("write draft compose explain describe plan itinerary letter essay outline")
SYSTEMS_LANG_WORDS = _words("rust c++ cpp cuda golang assembly haskell zig verilog")
EXPERT_ROLE_WORDS = _words("""
    senior staff principal expert architect consultant specialist researcher scientist analyst
    lawyer counsel attorney physician clinical pharmacology auditor professor mathematician
    investor strategist sre
""")
CASUAL_ROLE_WORDS = _words("friendly cheerful fun funny casual companion chatbot bot playful "
                           "brief concise")
CASUAL_ROLE_PHRASES = _phrases("only the", "reply with", "respond with", "answer with",
                               "keep replies", "keep answers", "one word")
GREETING_WORDS = _words("hi hello hey hiya yo thanks thank thx ty cheers morning evening")
SIMPLE_WORDS = _words("""
    translate translation classify classification categorize categorise categorization label
    sentiment rename spelling grammar typo typos tl tldr proofread hashtags
""")
SIMPLE_PHRASES = _phrases("a title", "short title")
BREVITY_WORDS = _words("brief briefly quick quickly short")
BREVITY_PHRASES = _phrases("one line", "one sentence", "one word", "yes or no", "2 sentences",
                           "two sentences", "few words", "in a sentence", "3 bullets", "just the",
                           "value only", "number only")
# ``` fence tags
DATA_LANGS = frozenset({"json", "yaml", "yml", "csv", "text", "txt", "xml", "html", "ini", "toml",
                        "log", "md", "markdown", "tsv"})
SYSTEMS_LANGS = frozenset({"rust", "rs", "c", "cpp", "c++", "cuda", "cu", "go", "golang", "asm",
                           "haskell", "hs", "zig", "verilog"})
# substrings of tool names
POWERFUL_TOOL_STEMS = ("write", "edit", "patch", "exec", "shell", "bash", "terminal", "run_",
                       "test", "deploy", "kubectl", "sql", "order", "transfer", "payment", "refund",
                       "delete", "commit", "metrics", "logs")
# substrings of the sample
CODE_LINE_MARKS = ("def ", "return ", "import ", "function ", "class ", "const ", "#include",
                   "func ", "=> ", "};", "public ", "SELECT ", "CREATE ")
ERROR_MARKS = ("Traceback (most recent call last)", "Error:", "Exception", "ERR!", "panic:",
               "goroutine ", "Segmentation fault", "FAILED", "error:", "Error ")
MATH_SYMBOLS = ("∫", "∑", "√", "≤", "≥", "≠", "∞", "π", "∂", "∀", "∃")

# bytes -> lower-case ASCII letters, digits, '+' and '_'; everything else becomes a space
_KEEP = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789+_")
_TABLE = bytes((c + 32 if 65 <= c <= 90 else c if c in _KEEP else 32) for c in range(256))
_DIGITS = b"0123456789"
_EFFORT = {"high": 10.0, "medium": 3.0, "low": -5.0, "minimal": -8.0, "none": -8.0}


# --- the scorer ----------------------------------------------------------------------------------


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


__all__ = ["BASE", "DEFAULT_THRESHOLDS", "TIERS", "WEIGHTS", "Thresholds", "TierScore", "Weight",
           "score_request"]
