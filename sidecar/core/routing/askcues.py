"""The words and marks the auto tier's ask features look for (``sidecar.core.routing.ask``).

Each group is one feature of the model: the number of its distinct words and phrases found in a
window (the ask, the system prompt's head, a code sample). Words are whole words after
normalisation (lower-case ASCII; punctuation and hyphens become spaces), phrases are runs of such
words. General English and engineering vocabulary, not phrases of any labelled entry.
"""

from __future__ import annotations

from sidecar.core.routing.cues import _phrases, _words

Cue = tuple[frozenset[bytes], tuple[tuple[bytes, frozenset[bytes]], ...]]


def _cue(words: str, *phrases: str) -> Cue:
    return _words(words), _phrases(*phrases)


# --- what the ask wants done: simple work ---------------------------------------------------------
EXTRACT = _cue("""extract extraction pull copy list lists fill parse lookup count fields field
    ids ref reference address email phone dates amount""",
               "give me the", "what s the", "whats the", "what is the", "what was the", "which one",
               "how many", "pull out", "read off", "find the", "just the", "fill in")
CLASSIFY = _cue("""classify classification categorise categorize category categories label labels
    tag tags tagging sentiment intent route routing priority spam triage detect flag""",
                "which category", "which team", "which department", "yes or no", "what language",
                "is this a", "is it a")
TRANSLATE = _cue("""translate translation translated translating english french german spanish
    italian portuguese japanese chinese polish dutch welsh localise localize""",
                 "in english", "into english", "to english")
REWRITE = _cue("""rewrite rephrase reword friendlier polite politer shorten simplify proofread
    grammar spelling typo typos tone stiff formal informal""", "plain english", "more friendly",
               "less stiff", "clean up")
SHORT_OUTPUT = _cue("title titles tagline slogan tl tldr headline hashtags caption", "one line",
                    "one sentence", "one word", "two sentences", "2 sentences", "in a sentence",
                    "commit message", "subject line", "short reply", "few words")
TRIVIAL_CODE = _cue("""regex regexp cron crontab formula sumif vlookup oneliner docstring
    docstrings godoc doxygen""", "one liner", "list comprehension",
                    "convert to", "what does this print", "command to", "git command")
BREVITY = _cue("quick quickly briefly brief only short simply", "that s all", "thats all",
               "nothing else", "no summary", "just need", "just want", "just tell")
GREETING = _words("hi hello hey hiya yo thanks thank thx ty cheers morning evening danke merci "
                  "gracias brilliant perfect great bye goodbye")
# --- moderate work ----------------------------------------------------------------------------------
SUMMARISE = _cue("""summarise summarize summary summaries summarising summarizing overview recap
    digest briefing handover minutes notes cheat onepager highlights themes""",
                 "one page", "one pager", "key points", "main points", "what changed")
WRITE = _cue("""write draft compose email letter reply article page newsletter announcement
    readme documentation docs macros macro paragraphs paragraph blog post ad advert
    description memo message section pack guide faq quiz problems hints""",
             "release notes", "job ad", "action items", "help article")
EXPLAIN = _cue("""explain explanation understand meaning means walk difference differ
    differences""", "walk me through", "what does", "how does", "what happens", "in plain",
               "normal words", "simple terms")
CODE = _cue("""implement function functions script class module query sql test tests pytest
    handler endpoint migration workflow manifest component hooks typescript python bash
    dockerfile cronjob api parser validator unittest""", "write a", "write the", "unit tests")
DEBUG = _cue("""error errors fails failing failed exception traceback broken fix compile
    bug warning crashes 500s 404""", "doesn t work", "not working", "what broke",
             "why the error", "how do i fix")
RETRIEVAL = _cue("passages passage retrieved cite citations citing sources kb",
                 "based on the", "according to")
ACTION = _cue("""book schedule order reschedule cancel find search file ticket log create update
    send buy reserve move change check run""", "can you", "could you", "for me")
# --- hard work ------------------------------------------------------------------------------------
PROVE = _cue("""prove proof proofs disprove derive derivation rigorous rigorously counterexample
    recurrence invariant induction justify bound bounds optimal optimality
    uniqueness amortised amortized""", "show that", "closed form", "show your", "find all",
             "prove or", "is the claim")
DESIGN = _cue("""design architecture architect redesign interfaces boundaries tradeoffs
    tradeoff scalability failover replication residency idempotency idempotent consistency
    orchestrator topology""", "state machine", "trade offs", "trade off", "build vs buy",
              "exactly once", "leader election", "migration plan", "module boundaries",
              "what would you build")
ROOT_CAUSE = _cue("""hang hangs hanging hung deadlock deadlocks race races leak leaks leaking
    segfault segfaults crash corrupted corruption intermittent intermittently occasionally
    sometimes flaky flaking starvation oomkilled undefined stale garbage""", "root cause",
                  "use after free", "data race", "once a day", "once a week", "under load",
                  "only in prod", "in prod", "never on", "memory ordering", "what s going on",
                  "find out why", "no error")
SECURITY = _cue("""security vulnerability vulnerabilities vulnerable attack attacks attacker
    attackers injection bypass exploit exploitable escalation takeover threat xss csrf ssrf
    privilege compromise compromised malicious phishing fraud""", "threat model", "is this safe",
                "safe to")
RULES = _cue("""entitled entitlement liability liable lawful lawfully unlawful legally legal
    comply compliant compliance regulation regulations regulatory reportable eligible
    eligibility obligation obligations exemption exemptions penalty penalties enforceable
    breach tribunal statutory article act clause clauses covered cover coverage claim
    deductible excess tax taxes vat irs hmrc gdpr hipaa fca sox ifrs asc erisa dose dosing
    contraindicated interaction interactions renal allowance relief withholding""",
             "under the", "do we owe", "are we paying", "what can we", "can we", "do we have to",
             "by when", "what do we")
CONSEQUENCE = _cue("""refund refunds refunded recover recoverable owe owed payable reimburse
    reimbursed compensation damages cap caps deadline deadlines notify notification
    terminate termination penalty""", "how much", "what is owed", "per person",
                   "head by head", "final payment")
JUDGEMENT = _cue("""should recommend recommendation recommendations decide decision verdict
    credible valid validity advise advice options sign assess evaluate judge risks risk
    worth""", "your call", "what do we do", "what would you", "what do i tell", "what should",
                 "who s right", "is this fine", "is it fine", "go ahead", "check it",
                 "is that right", "yes or no and", "what do i do")
RECONCILE = _cue("""reconcile reconciliation synthesise synthesize conflicting conflict
    contradict contradicts contradictory inconsistent inconsistencies discrepancies
    discrepancy audit verify proposals""", "what s wrong", "line by line", "is it wrong")
QUANT = _cue("""compute calculate calculation quantify npv irr dcf wacc sensitivity probability
    expected expectation significance significant variance optimise optimize minimise
    minimize maximise maximize forecast decompose allocate""", "do the maths",
             "do the math", "show the calculation", "p value", "confidence interval",
             "break even")
REFACTOR = _cue("""refactor refactoring restructure port porting migrate modularise plugin
    plugins decouple""", "split into", "multi file", "dependency injection", "get rid of",
                "across the codebase", "across the repo", "across the repository", "every module",
                "every import", "every call site", "all call sites")
# --- refinements of the border between tiers (the labelling standard's own distinctions) ---------
# an ask for a bare answer: economy whatever the material
SHORT_ANSWER = _cue("", "yes or no", "one word", "single word", "just the number",
                    "only the number", "just the name", "short answer", "in one word",
                    "just a number", "a number only", "true or false", "just yes", "only yes",
                    "just the date", "just the amount", "just the total", "just the id",
                    "only the id", "only the name", "only the date")
# a translation that is more than literal: style, register, verse, localisation
STYLE = _cue("""tone register formal glossary terminology idiom idioms idiomatic transcreate
    transcreation adapt adapting localise localize localisation localization brand voice literary
    poem poetry verse rhyme lyrics style stylistic nuance puns pun wordplay marketing slogan
    humour humor""", "defined terms", "keep the style", "same tone", "natural sounding",
             "culturally")
# an extraction with structure to build: nested records, messy or ambiguous input
MESSY = _cue("""nested messy normalise normalize resolve resolving deduplicate dedupe inconsistent
    ambiguous overlapping""", "array of", "list of objects", "one record per", "one object per",
             "nested json")
# work across several documents
SYNTHESIS = _cue("""compare comparison across reconcile synthesise synthesize conflicting contradict
    contradictory inconsistent versus vs""", "both documents", "all three", "the three",
                 "the two", "each source", "these reports", "side by side")
# --- the system prompt -------------------------------------------------------------------------
SYS_SIMPLE = _cue("""classify classifier classification label labels tag tags extract extractor
    extraction translate translator translation sentiment intent categorise categorize
    router triage""", "reply with", "respond with", "return only", "output only", "answer with",
                  "only the", "one of")
SYS_EXPERT = _words("""senior staff principal expert architect consultant specialist researcher
    scientist analyst lawyer counsel attorney physician pharmacist auditor professor
    mathematician strategist sre actuary underwriter""")
SYS_AGENT = _words("agent autonomous operator on call oncall investigate investigator")
# --- code and notation ---------------------------------------------------------------------------
SYSTEMS_TAGS = frozenset({"rust", "rs", "c", "cpp", "c++", "cuda", "cu", "go", "golang", "asm",
                          "zig", "java", "kotlin", "scala"})
SYSTEMS_MARKS = ("std::", "#include", "unsafe ", "fn ", "func ", "go func", "malloc", "->",
                 "&mut", "impl ", "synchronized", "volatile")
CONCURRENCY_MARKS = ("thread", "Thread", "mutex", "Mutex", "lock(", "Lock(", "atomic", "Atomic",
                     "goroutine", "go func", "async ", "await ", "volatile", "memory_order",
                     "synchronized", "WaitGroup", "chan ", "Arc<", "spin_lock", "pthread",
                     "Executor", "shared_ptr", "errgroup", "asyncio", "Send", "Sync")
CODE_MARKS = ("def ", "return ", "import ", "function ", "class ", "const ", "#include", "func ",
              "=> ", "};", "public ", "SELECT ", "CREATE ", "fn ", "let ", "var ")
MATH_MARKS = ("∫", "∑", "√", "≤", "≥", "≠", "∞", "π", "∂", "∀", "∃", "⌊", "⌋", "\\frac", "\\sum",
              "\\int", "θ", "λ", "α", "σ", "μ", "Θ", "²", "³", "ⁿ", "mod ")
MATERIAL_STARTS = ("subject:", "from:", "to:", "date:", "re:", "fwd:", "[", "#", "---", "===", "|",
                   "diff --git", "traceback", "<", "{", "```", "--", "transcript", "log ")
# a sentence starting with one of these asks for something
IMPERATIVES = _words("""write draft summarise summarize explain translate classify categorise
    categorize extract list find review check fix convert make create add rewrite compute
    calculate prove derive design propose compare turn identify tag label decide assess evaluate
    tell show give walk determine work recommend produce prepare generate build implement
    refactor port migrate analyse analyze reconcile audit verify return output answer reply
    respond label pull read count parse map fill flag mark sort rank group split rate score
    describe outline plan estimate help diagnose debug solve simplify shorten rephrase reword
    proofread edit update file book schedule send reconstruct recompute quantify pick choose
    select suggest name assign route detect spot""")
# words that say something is wrong (with the code or the system)
PROBLEM_WORDS = _words("""why wrong bug bugs broken crash crashes fails failing hang hangs race
    leak safe unsafe sound correct deadlock panic panics error errors flaky fine ok okay right
    issue issues problem problems""")
# a short question starting with one of these is often a lookup
WH_WORDS = _words("what whats which when who whos where how is are does did do can")
# the cue features of the ask, in order: a feature with several groups is their sum (each group
# counted up to 3), one broad feature rather than several narrow ones
ASK_CUES: tuple[tuple[str, tuple[Cue, ...]], ...] = (
    ("ask_extract", (EXTRACT,)), ("ask_classify", (CLASSIFY,)), ("ask_translate", (TRANSLATE,)),
    ("ask_rewrite", (REWRITE,)), ("ask_small", (SHORT_OUTPUT, TRIVIAL_CODE, BREVITY)),
    ("ask_summarise", (SUMMARISE,)), ("ask_write", (WRITE,)), ("ask_explain", (EXPLAIN,)),
    ("ask_code", (CODE,)), ("ask_debug", (DEBUG,)), ("ask_retrieval", (RETRIEVAL,)),
    ("ask_action", (ACTION,)), ("ask_prove", (PROVE,)), ("ask_design", (DESIGN, REFACTOR)),
    ("ask_root_cause", (ROOT_CAUSE,)), ("ask_security", (SECURITY,)),
    ("ask_case", (RULES, CONSEQUENCE)), ("ask_judgement", (JUDGEMENT,)),
    ("ask_reconcile", (RECONCILE,)), ("ask_quant", (QUANT,)))
# the groups that make a system prompt's task hard
SYS_HARD = (PROVE, DESIGN, ROOT_CAUSE, JUDGEMENT, QUANT, RECONCILE, SECURITY)
ENUMERATION_MARKS = ("(1)", "1)", "(a)", "a)", "\n1.", "\n- ", "(2)", "2)", "(b)", "b)", "\n2.")
# phrases that make a text a request
REQUESTS = _phrases("please", "pls", "can you", "could you", "would you", "can u", "i need",
                    "i want", "we need", "we want", "i d like", "tell me", "give me", "help me",
                    "let me know", "need a", "need the", "need to know", "want to know",
                    "need this", "need your", "need you to", "want a", "want your")
# the groups pooled into hard_cues and simple_cues
HARD_GROUPS = ("ask_prove", "ask_design", "ask_root_cause", "ask_security", "ask_case",
               "ask_judgement", "ask_reconcile", "ask_quant")
SIMPLE_GROUPS = ("ask_extract", "ask_classify", "ask_translate", "ask_rewrite", "ask_small")
