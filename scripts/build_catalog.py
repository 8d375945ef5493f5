#!/usr/bin/env python3
"""Build the built-in model catalog (``sidecar/data/catalog.yaml``) from the research notes.

Usage: ``python scripts/build_catalog.py FACTS.yaml [-o sidecar/data/catalog.yaml]`` (stdout by
default). Pure stdlib + pyyaml. The output depends only on the facts file's content (not its
path or the clock), so re-running on the same facts reproduces the committed file exactly.

Mapping decisions, facts field -> catalog key:

* ``name``: from the explicit ``NAMES`` table (facts ``id`` -> name), never derived by string
  munging. OpenAI and Gemini ids are kept as names (``gpt-4o``, ``gemini-2.5-flash``); Bedrock
  models get short lowercase family-version names without vendor prefixes, region prefixes or
  date/version suffixes (``claude-haiku-4.5``, ``qwen3-235b``). Entries served by other providers
  that duplicate a model get a provider suffix (``gpt-oss-120b-groq``). The table must cover
  exactly the facts' ids: a new or removed facts entry fails the build until the table is edited.
* ``provider``, ``id``, ``tier`` (facts ``suggested_tier``), ``context`` (``context_window``),
  ``max_output`` (``max_output_tokens``), ``quality`` (``quality_index``) are copied as-is.
* ``price``: ``input``/``output`` from ``*_usd_per_mtok`` (USD per 1M tokens, on-demand base tier).
  ``cache_read``/``cache_write`` are mapped from ``cache_read_usd_per_mtok`` /
  ``cache_write_usd_per_mtok`` when present; the current facts carry no cache prices (their header
  says prices are "no cache"), so catalog entries have none - add them via rules.yaml.
  ``also_available_as`` alternatives (e.g. ``global.`` Claude profiles, 10% cheaper) are not
  catalogued.
* ``supports``: only flags the facts mark ``true``: ``tools``, ``vision``, ``json_mode`` (renamed
  ``json_schema``) and the top-level ``reasoning``. ``null`` and ``false`` both mean absent.
  ``streaming`` and ``system_prompt`` are not catalog capabilities.
* ``latency``: ``ttft`` = ``aa_median_ttft_s``, ``tokens_per_second`` =
  ``aa_median_output_tokens_per_s`` (cross-provider medians: priors only); null keys are omitted.
* ``coding`` (DESIGN: SWE-bench Verified blended with a coding index), on the SWE-bench Verified
  percent scale. A least-squares line ``swe ~ a*aa + b`` is fitted over the models that have both
  ``swe_bench_verified`` and ``aa_coding_index``, one point per model: facts entries sharing an AA
  slug (``quality_index_config``, e.g. gpt-oss-120b on Bedrock and on Groq) count once. Then
  coding = mean(swe, a*aa + b) with both, swe with only swe, a*aa + b with only aa, and no
  ``coding`` key with neither; rounded to 1 decimal. a, b, n and r go in the output header.
* ``source``: a short per-entry summary of the facts' ``sources`` (LiteLLM key, AA slug, which
  coding inputs were used); ``as_of``: "prices <date>; quality <date>" from the facts' ``as_of``.

Aliases: ``ALIASES`` adds a few family names users type (``claude-sonnet``) as full copies of the
latest versioned entry, appended after the facts entries so lookup by provider id still finds the
versioned name first. The target's facts ``family`` must equal the alias name.
"""

from __future__ import annotations

import argparse
import copy
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Entry = Mapping[str, Any]

# facts id -> catalog name (one row per facts entry; the build fails if they drift apart).
NAMES: dict[str, str] = {
    # Bedrock: Qwen
    "qwen.qwen3-235b-a22b-2507-v1:0": "qwen3-235b",
    "qwen.qwen3-coder-480b-a35b-v1:0": "qwen3-coder-480b",
    "qwen.qwen3-coder-next": "qwen3-coder-next",
    "qwen.qwen3-coder-30b-a3b-v1:0": "qwen3-coder-30b",
    "qwen.qwen3-32b-v1:0": "qwen3-32b",
    # Bedrock: DeepSeek (deepseek.v3-v1:0 is DeepSeek-V3.1 per the facts)
    "deepseek.v3.2": "deepseek-v3.2",
    "deepseek.v3-v1:0": "deepseek-v3.1",
    "us.deepseek.r1-v1:0": "deepseek-r1",
    # Bedrock: Mistral, Z.ai, MiniMax, Moonshot
    "mistral.mistral-large-3-675b-instruct": "mistral-large-3",
    "mistral.devstral-2-123b": "devstral-2",
    "zai.glm-4.7": "glm-4.7",
    "zai.glm-5": "glm-5",
    "zai.glm-4.7-flash": "glm-4.7-flash",
    "minimax.minimax-m2.1": "minimax-m2.1",
    "minimax.minimax-m2.5": "minimax-m2.5",
    "moonshotai.kimi-k2.5": "kimi-k2.5",
    "moonshot.kimi-k2-thinking": "kimi-k2-thinking",
    # Bedrock: Meta, OpenAI open weights, Amazon
    "us.meta.llama3-3-70b-instruct-v1:0": "llama-3.3-70b",
    "us.meta.llama4-maverick-17b-instruct-v1:0": "llama-4-maverick",
    "us.meta.llama4-scout-17b-instruct-v1:0": "llama-4-scout",
    "openai.gpt-oss-120b-1:0": "gpt-oss-120b",
    "openai.gpt-oss-20b-1:0": "gpt-oss-20b",
    "us.amazon.nova-micro-v1:0": "nova-micro",
    "us.amazon.nova-lite-v1:0": "nova-lite",
    "us.amazon.nova-pro-v1:0": "nova-pro",
    "global.amazon.nova-2-lite-v1:0": "nova-2-lite",
    # Bedrock: Anthropic
    "us.anthropic.claude-haiku-4-5-20251001-v1:0": "claude-haiku-4.5",
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0": "claude-sonnet-4.5",
    "us.anthropic.claude-sonnet-4-6": "claude-sonnet-4.6",
    "us.anthropic.claude-opus-4-5-20251101-v1:0": "claude-opus-4.5",
    "us.anthropic.claude-opus-4-6-v1": "claude-opus-4.6",
    "us.anthropic.claude-opus-4-7": "claude-opus-4.7",
    # OpenAI (name = id)
    "gpt-4o-mini": "gpt-4o-mini",
    "gpt-4o": "gpt-4o",
    "gpt-4.1-mini": "gpt-4.1-mini",
    "gpt-4.1-nano": "gpt-4.1-nano",
    "gpt-4.1": "gpt-4.1",
    "gpt-5-mini": "gpt-5-mini",
    "gpt-5-nano": "gpt-5-nano",
    "gpt-5": "gpt-5",
    "gpt-5.1": "gpt-5.1",
    "gpt-5.2": "gpt-5.2",
    "gpt-5.4-mini": "gpt-5.4-mini",
    "gpt-5.4": "gpt-5.4",
    "gpt-5.5": "gpt-5.5",
    "o3": "o3",
    "o4-mini": "o4-mini",
    # Gemini (name = id)
    "gemini-2.5-flash": "gemini-2.5-flash",
    "gemini-2.5-flash-lite": "gemini-2.5-flash-lite",
    "gemini-2.5-pro": "gemini-2.5-pro",
    "gemini-3-flash-preview": "gemini-3-flash-preview",
    "gemini-3.1-pro-preview": "gemini-3.1-pro-preview",
    # Other providers
    "openai/gpt-oss-120b": "gpt-oss-120b-groq",
    "deepseek-chat": "deepseek-chat",
}

# alias name -> versioned catalog name it copies (the latest of that family in the facts).
ALIASES: dict[str, str] = {
    "claude-haiku": "claude-haiku-4.5",
    "claude-sonnet": "claude-sonnet-4.6",
    "claude-opus": "claude-opus-4.7",
}

PRICE_FIELDS = (  # catalog price key, facts field, required
    ("input", "input_usd_per_mtok", True),
    ("output", "output_usd_per_mtok", True),
    ("cache_read", "cache_read_usd_per_mtok", False),
    ("cache_write", "cache_write_usd_per_mtok", False),
)
SUPPORT_FLAGS = (("tools", "tools"), ("vision", "vision"), ("json_mode", "json_schema"))
LATENCY_FIELDS = (
    ("ttft", "aa_median_ttft_s"), ("tokens_per_second", "aa_median_output_tokens_per_s"),
)
CODING_LABELS = (
    ("swe_bench_verified", "SWE-bench Verified (vendor)"), ("aa_coding_index", "AA coding index"),
)


class FactsError(ValueError):
    """The facts file does not match what this script expects."""


@dataclass(frozen=True, slots=True)
class CodingFit:
    """swe ~ a * aa + b, fitted over ``n`` models; ``r`` is the Pearson correlation."""

    a: float
    b: float
    n: int
    r: float

    def predict(self, aa: float) -> float:
        return self.a * aa + self.b


def load_facts(path: Path) -> list[Entry]:
    doc = yaml.safe_load(path.read_text("utf-8"))
    if not isinstance(doc, Mapping) or not isinstance(doc.get("models"), list):
        raise FactsError(f"{path}: expected a top-level 'models:' list")
    return list(doc["models"])


def check_names(facts: Sequence[Entry]) -> None:
    """The name table covers exactly the facts' ids; names and aliases are unique."""
    ids = [f["id"] for f in facts]
    missing = sorted(set(ids) - set(NAMES))
    stale = sorted(set(NAMES) - set(ids))
    if missing or stale:
        raise FactsError(f"NAMES out of date: missing {missing}, not in facts {stale}")
    names = [NAMES[i] for i in ids] + list(ALIASES)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if len(ids) != len(set(ids)) or dupes:
        raise FactsError(f"duplicate ids or names: {dupes}")
    family = {NAMES[f["id"]]: f.get("family") for f in facts}
    for alias, target in ALIASES.items():
        if family.get(target) != alias:
            raise FactsError(f"alias {alias!r} -> {target!r}: family is {family.get(target)!r}")


def fit_coding(facts: Iterable[Entry]) -> CodingFit:
    """Least-squares swe ~ a*aa + b over models with both scores, one point per AA slug."""
    points: dict[str, tuple[float, float]] = {}
    for f in facts:
        aa, swe = f.get("aa_coding_index"), f.get("swe_bench_verified")
        if aa is not None and swe is not None:
            points.setdefault(f.get("quality_index_config") or f["id"], (float(aa), float(swe)))
    xs, ys = [p[0] for p in points.values()], [p[1] for p in points.values()]
    n = len(xs)
    if n < 3:
        raise FactsError(f"need at least 3 models with both coding scores, have {n}")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    a = sxy / sxx
    return CodingFit(a=a, b=my - a * mx, n=n, r=sxy / math.sqrt(sxx * syy))


def blend_coding(swe: float | None, aa: float | None, fit: CodingFit) -> float | None:
    """mean(swe, fitted aa) with both; whichever exists otherwise; None with neither."""
    scores = [float(swe)] if swe is not None else []
    if aa is not None:
        scores.append(fit.predict(float(aa)))
    return round(sum(scores) / len(scores), 1) if scores else None


def price(f: Entry) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, field, required in PRICE_FIELDS:
        value = f.get(field)
        if value is None and required:
            raise FactsError(f"{f['id']}: {field} is required")
        if value is not None:
            out[key] = float(value)
    return out


def supports(f: Entry) -> list[str]:
    flags = f.get("supports") or {}
    out = [name for field, name in SUPPORT_FLAGS if flags.get(field) is True]
    return [*out, "reasoning"] if f.get("reasoning") is True else out


def latency(f: Entry) -> dict[str, float]:
    return {key: float(f[field]) for key, field in LATENCY_FIELDS if f.get(field) is not None}


def source(f: Entry) -> str:
    """'prices/limits: LiteLLM key K; quality: AA index slug S; coding: <inputs used>'."""
    sources = f.get("sources") or {}
    litellm = str(sources.get("price_and_limits") or "")
    key = re.search(r"key '([^']+)'", litellm)
    if "litellm" not in litellm.lower() or key is None:
        raise FactsError(f"{f['id']}: prices are not from a LiteLLM key: {litellm!r}")
    parts = [f"prices/limits: LiteLLM key {key.group(1)}"]
    if not str(sources.get("context_window") or "").startswith("LiteLLM"):
        parts.append("context: curated override (see facts notes)")
    if f.get("quality_index") is not None:
        parts.append(f"quality: Artificial Analysis index, slug {f.get('quality_index_config')}")
    coding = [label for field, label in CODING_LABELS if f.get(field) is not None]
    if coding:
        parts.append("coding: " + " + ".join(coding))
    return "; ".join(parts)


def as_of(f: Entry) -> str:
    dates = f.get("as_of") or {}
    return f"prices {dates['price']}; quality {dates['quality_index']}"


def catalog_entry(f: Entry, fit: CodingFit) -> dict[str, Any]:
    """One facts entry -> one catalog entry (keys in the catalog's documented order)."""
    optional = {
        "max_output": f.get("max_output_tokens"),
        "quality": None if f.get("quality_index") is None else float(f["quality_index"]),
        "coding": blend_coding(f.get("swe_bench_verified"), f.get("aa_coding_index"), fit),
    }
    entry: dict[str, Any] = {
        "name": NAMES[f["id"]], "provider": f["provider"], "id": f["id"],
        "tier": f["suggested_tier"], "price": price(f), "context": int(f["context_window"]),
    }
    entry.update({k: v for k, v in optional.items() if v is not None})
    entry["supports"] = supports(f)
    if lat := latency(f):
        entry["latency"] = lat
    entry["source"] = source(f)
    entry["as_of"] = as_of(f)
    return entry


def alias_entries(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Full copies of the ``ALIASES`` targets under the alias name."""
    by_name = {e["name"]: e for e in entries}
    out = []
    for alias, target in ALIASES.items():
        entry = {**copy.deepcopy(by_name[target]), "name": alias}
        entry["source"] = f"alias of {target}; {entry['source']}"
        out.append(entry)
    return out


def vintage(facts: Sequence[Entry], field: str) -> str:
    return ", ".join(sorted({str((f.get("as_of") or {}).get(field)) for f in facts}))


HEADER = """\
sidecar/data/catalog.yaml - the built-in model catalog. GENERATED: do not edit by hand.
Generated by scripts/build_catalog.py from {facts_file} (research notes; sources and
caveats in models-facts.md). Regenerate from the repo root with:
  python scripts/build_catalog.py ../shared/reference/models-facts.yaml \\
      -o sidecar/data/catalog.yaml

Data vintage: prices {price}; quality index <= {quality};
SWE-bench = vendor launch dates; facts compiled {compiled}.
Re-pull before trusting any single number. Prices are USD per 1M tokens, on-demand base
tier; the facts carry no cache prices.

rules.yaml `models:` can override entries: an entry whose name is listed here changes only
the keys it gives; a new name adds a model. Catalog.find() also matches provider ids.

{n_facts} entries, one per facts entry, then {n_aliases} aliases: full copies of the
latest version of a family under the family name:
{aliases}

coding is on the SWE-bench Verified % scale. The AA coding index is mapped onto it by a
least-squares fit swe = a*aa + b: a = {a:.4f}, b = {b:.4f}, n = {n} models
with both scores (one point per AA slug), r = {r:.3f}. coding = mean(swe, a*aa + b)
when both exist, else whichever exists; absent when neither. Vendor SWE-bench harnesses
differ, so treat coding as a rough signal.
"""


def header(facts_file: str, facts: Sequence[Entry], fit: CodingFit) -> str:
    """The comment block at the top of catalog.yaml."""
    text = HEADER.format(
        facts_file=facts_file, price=vintage(facts, "price"),
        quality=vintage(facts, "quality_index"), compiled=vintage(facts, "compiled"),
        n_facts=len(facts), n_aliases=len(ALIASES), a=fit.a, b=fit.b, n=fit.n, r=fit.r,
        aliases="\n".join(f"  {alias} -> {target}" for alias, target in ALIASES.items()),
    )
    return "".join(f"# {line}\n" if line else "#\n" for line in text.splitlines())


def dump_entry(entry: Mapping[str, Any]) -> str:
    return yaml.safe_dump([dict(entry)], sort_keys=False, default_flow_style=None,
                          width=1000, allow_unicode=True)


def render(facts_path: Path) -> str:
    """The complete catalog.yaml text for the facts file at ``facts_path``."""
    facts = load_facts(facts_path)
    check_names(facts)
    fit = fit_coding(facts)
    entries = [catalog_entry(f, fit) for f in facts]
    body = "\n".join(dump_entry(e) for e in entries)
    aliases = "\n".join(dump_entry(e) for e in alias_entries(entries))
    alias_note = "# Aliases: family names -> the latest version (same fields, different name).\n"
    return f"{header(facts_path.name, facts, fit)}\nmodels:\n{body}\n{alias_note}{aliases}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("facts", type=Path, help="models-facts.yaml")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        text = render(args.facts)
    except (FactsError, OSError, KeyError, yaml.YAMLError) as e:
        print(f"build_catalog: {e}", file=sys.stderr)
        return 1
    if args.output:
        args.output.write_text(text, "utf-8", newline="\n")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
