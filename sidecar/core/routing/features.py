"""The features of the auto tier's model, with what each measures (``ask.ask_features`` computes
them; the weights are learned, ``sidecar/data/autotier_model.json``). "The ask" is the user's own
words in the last user message, without the documents, code and logs pasted with them; a cue
feature counts the distinct words and phrases of its group found there (at most 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

FEATURES: Mapping[str, str] = MappingProxyType({
    # -- size and shape of the ask and of the material -------------------------------------------
    "ask_length": "length of the ask (log2 of 1 + characters/50): a long, detailed instruction.",
    "ask_in_system": "1 when the last user message is only material (a document, an item to "
                     "classify) and the instruction is the system prompt's.",
    "attached_size": "size of the material pasted in the last user message (log2 of 1 + "
                     "characters/500): a long document is not by itself a hard ask.",
    "system_size": "size of the system prompt beyond its head (log2 of 1 + characters/500): "
                   "policy or reference text to answer from.",
    "history_size": "size of the earlier conversation (log2 of 1 + characters/1000).",
    "questions": "question marks in the ask (at most 6): several questions to answer.",
    "enumerated": "enumerated parts in the ask ((1), a), 1., bullet lines; at most 6).",
    "ask_figures": "digits in the ask (log2 of 1 + digits/4): the facts of a specific case.",
    "documents": "separate documents in the last user message (fences, --- separators, e-mail "
                 "headers, numbered passages; log2 of 1 + count).",
    # -- what the ask wants done: simple work ----------------------------------------------------------
    "ask_extract": "the ask reads values off the material (extract, pull, list, copy, how many, "
                   "what's the...).",
    "ask_classify": "the ask is a classification (classify, label, tag, sentiment, intent, "
                    "priority, which category...).",
    "ask_translate": "the ask is a translation (translate, into English, a language name...).",
    "ask_rewrite": "the ask is a simple rewrite (rephrase, friendlier, shorten, plain English, "
                   "proofread, tone...).",
    "ask_small": "the ask is small work: a short output (a title, a subject line, one line, a "
                 "commit message...), a small code artefact (a regex, a cron line, a formula, a "
                 "docstring, convert to YAML...) or says it is small (quick, just, only, nothing "
                 "else...); up to 3 of each.",
    "greeting": "the ask is a short greeting or thanks.",
    "wh_question": "the ask is a short question (what, which, how many, when, is, does...): "
                   "often a lookup.",
    # -- moderate work ---------------------------------------------------------------------------
    "ask_summarise": "the ask is a summary (summarise, overview, briefing, handover, minutes, "
                     "one-pager, key points...).",
    "ask_write": "the ask is composed writing (write, draft, e-mail, letter, article, README, "
                 "release notes...).",
    "ask_explain": "the ask is an explanation (explain, walk me through, what does, how does, "
                   "difference...).",
    "ask_code": "the ask is ordinary code (implement, function, script, query, SQL, tests, "
                "handler, migration...).",
    "ask_debug": "the ask is about an error (error, fails, exception, traceback, fix, doesn't "
                 "work...).",
    "ask_retrieval": "the ask is answered from given passages (passages, retrieved, cite, "
                     "sources, according to...).",
    "ask_action": "the ask is an action for tools (book, schedule, order, search, file a ticket, "
                  "update, can you...).",
    # -- hard work -------------------------------------------------------------------------------
    "ask_prove": "the ask is a proof or derivation (prove, derive, rigorous, counterexample, "
                 "show that, closed form, optimal, induction...).",
    "ask_design": "the ask is design, architecture or a wide code change (design, trade-offs, "
                  "failover, exactly once, state machine, build vs buy; refactor, port, "
                  "migrate, split into...; up to 3 of each).",
    "ask_root_cause": "the ask is a subtle bug's root cause (root cause, hangs, deadlock, race, "
                      "leak, use after free, intermittently, under load, only in prod...).",
    "ask_security": "the ask is about security (vulnerability, attack, injection, bypass, "
                    "privilege escalation, fraud, threat model...).",
    "ask_case": "the ask applies rules to a specific case and works out the consequences "
                "(entitled, liability, compliance, regulation, eligible, tax, GDPR, dosing, can "
                "we...; refund, owe, compensation, deadline, terminate, how much...; up to 3 of "
                "each).",
    "ask_judgement": "the ask wants a decision or judgement (should, recommend, decide, "
                     "credible, valid, your call, what do we do, who's right...).",
    "ask_reconcile": "the ask is synthesis across sources (reconcile, across, conflicting, "
                     "inconsistencies, audit, verify, proposals, line by line...).",
    "ask_quant": "the ask is quantitative analysis (compute, calculate, quantify, NPV, "
                 "probability, significance, optimise, forecast, do the maths...).",
    "hard_cues": "all the hard-work cues of the ask together (prove, design, root cause, "
                 "security, rules applied to a case, judgement, reconcile, quantitative; at "
                 "most 6): one signal with more evidence behind it than each group's.",
    "simple_cues": "all the simple-work cues of the ask together (extract, classify, translate, "
                   "rewrite, small work; at most 6).",
    # -- the border between tiers, as the labelling standard draws it ---------------------------
    "short_answer": "the ask wants a bare answer (yes or no, one word, just the number, short "
                    "answer...): economy whatever the material.",
    "translate_plain": "a translation with no demand on style: economy at any length.",
    "translate_styled": "a translation with demands on style (tone, register, glossary, idioms, "
                        "localisation, verse...): more than literal work.",
    "extract_messy": "an extraction with structure to build (a nested schema; nested, messy, "
                     "resolve, normalise, for each...): more than reading values off.",
    "summary_short": "a summary asked to be small (one line, brief, quick, just...).",
    "multi_doc": "several documents with an ask to work across them (compare, reconcile, "
                 "across, conflicting, the three...).",
    # -- the system prompt -----------------------------------------------------------------------
    "sys_simple_task": "the system prompt sets a simple task (classify, extract, translate, "
                       "reply with / only the / one of...).",
    "sys_hard_task": "the system prompt sets hard work (prove, design, root cause, decide, "
                     "recompute, reconcile, security...).",
    "sys_expert": "the system prompt casts the model as an expert (senior, staff, lawyer, "
                  "physician, analyst...).",
    # -- code and notation -----------------------------------------------------------------------
    "fences": "code blocks in the last user message (``` fences, or code lines without one; at "
              "most 4).",
    "systems_code": "a problem is asked about code in a language where bugs are subtle (C, C++, "
                    "Rust, Go, Java...).",
    "concurrency_code": "a problem is asked about code with concurrency marks (threads, mutex, "
                        "atomic, goroutine, async/await, volatile...; at most 3).",
    "math_notation": "math notation in the ask (√, ≤, ⌊, λ, LaTeX...; at most 3).",
    # -- the agent loop --------------------------------------------------------------------------
    "tools_offered": "tools offered (log2 of 1 + count).",
    "tool_rounds": "assistant turns that called tools (log2 of 1 + count): a running agent loop.",
    "tool_calls": "tool calls made (log2 of 1 + count).",
    "relay_result": "the last message is the result of the one tool round since the user "
                    "spoke: often only to relay.",
    "loop_continues": "the last message is a tool result after several tool rounds since the "
                      "user spoke: the agent is mid-investigation.",
    "user_after_tools": "the user speaks again after tool rounds: a follow-up in an agent "
                        "conversation.",
    "user_turns": "user turns (log2 of the count): a longer dialogue.",
    # -- what is asked back ----------------------------------------------------------------------
    "json_object": "response_format json_object.",
    "schema_small": "a json_schema that is not nested (a few enum fields or a flat form): a "
                    "classification or a simple extraction.",
    "schema_nested": "a nested json_schema (arrays of objects, depth over two): messy data to "
                     "structure.",
    "small_max_tokens": "max_tokens (or max_completion_tokens) of 300 or less.",
})
