"""The cues the hand-weighted scorer looks for (``sidecar.core.routing.signals``; the learned
model's are in ``askcues``): vocabularies of words and phrases, ``` fence tags, substrings of tool
names and of the sample.
"""

from __future__ import annotations

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
