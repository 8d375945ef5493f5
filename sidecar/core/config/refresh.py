"""Merge price sources, provider discovery and scores into a catalog (pure: the shell fetches).

``merge_catalog`` returns the new catalog and one line per change, rejection and unpriced id.

Matching: an offer prices a model id when its key is the id, else when the key ends in
``"/" + id`` (``bedrock/…``, ``openrouter/openai/…``); among several, a key whose prefix holds the
provider's name wins, then the shortest. Sources are tried in the given order (first match
wins); a source *bound* to a provider (its offers are what that provider serves) prices only
that provider's models.

Existing models whose provider is configured:

* availability, when discovery has a ``Listing`` for the provider: a LEGACY id (or a profile of
  one) is removed; an id that must be called through an inference profile becomes the profile
  id; an id neither listed nor a listed id's profile is removed;
* prices, cache prices, context and max output from the first matching offer, its provenance
  recorded in ``source``/``as_of``. Capabilities never change (a source claiming everything
  cannot grant it). An input or output price more than 10x above or below the catalog's is
  rejected: the model keeps all its numbers.

Scores (by model name, else upstream id) set quality, coding and tier of every model.

New models, only on configured providers: (a) each listed, non-legacy id no model on that
provider calls (directly or by its profile), when some offer prices it (an unpriced id is
reported, never added: it cannot be ranked by cost); (b) when the provider has no listing, each
offer of a source bound to it that no model on it calls. A new model is named by its id, or
``<provider>/<id>`` when the id is taken (a catalog name or upstream id, or a routing word
such as ``auto``). Its tier is the score's, else by output price (USD per million tokens):
<= 1.0 economy, <= 6.0 standard, else premium (``tier_by_price``; it agrees with 40 of the 57
shipped entries, whose tiers are curated: Bedrock open-weight models up to 5.4 are economy,
small OpenAI/Gemini ones at 0.4-0.6 standard). Context is the offer's, else a conservative 8192;
capabilities the offer's. Without scores, quality and coding stay None: such a model is eligible
for ``prefer: cheap``/``fast`` and ranks last for ``quality``/``coding``/``balanced`` (the policy's
rule). At most 2,000 models are added per merge.

``catalog_entries`` turns a catalog back into catalog-file entries (``parse_models`` reads them).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sidecar.core.config.catalog import Catalog, ModelSpec
from sidecar.core.config.offers import Listing, Offer, Score, Scores
from sidecar.core.config.sources import is_valid_key
from sidecar.core.vocabulary import INTENT_MODELS, Tier

MAX_RATIO = 10.0
DEFAULT_CONTEXT = 8192
ECONOMY_UP_TO, STANDARD_UP_TO = 1.0, 6.0  # output USD per million tokens
MAX_NEW_MODELS = 2000
_DIFFED = (("id", "upstream_id"), ("input", "input_price"), ("output", "output_price"),
           ("cache_read", "cache_read_price"), ("cache_write", "cache_write_price"),
           ("context", "context"), ("max_output", "max_output"), ("quality", "quality"),
           ("coding", "coding"), ("tier", "tier"))


@dataclass(frozen=True, slots=True)
class CatalogUpdate:
    catalog: Catalog
    changes: list[str]  # "gpt-4o: input 2.5 -> 2", "new model x (economy, from s, served by p)"
    rejected: list[str]  # source numbers not taken, with why
    unpriced: list[str]  # "<id> on <provider>": listed, but no source prices it


@dataclass(frozen=True, slots=True)
class Match:
    source: str
    key: str
    offer: Offer

    def __str__(self) -> str:
        return f"{self.source} key {self.key!r}"


def tier_by_price(output_price: float) -> Tier:
    """The tier of a model no score places: by its output price per million tokens."""
    if output_price <= ECONOMY_UP_TO:
        return "economy"
    return "standard" if output_price <= STANDARD_UP_TO else "premium"


def merge_catalog(base: Catalog, *, offers: Sequence[tuple[str, Mapping[str, Offer]]],
                  listings: Mapping[str, Listing], scores: Scores, bound: Mapping[str, str],
                  providers: Collection[str], as_of: str) -> CatalogUpdate:
    """``base`` refreshed by the sources (the module docstring states the rules)."""
    merge = _Merge(_Prices(offers, bound), listings, scores, frozenset(providers), as_of)
    kept = [s for spec in base if (s := merge.existing(spec)) is not None]
    added = merge.new_models(kept, offers, bound)
    return CatalogUpdate(Catalog.of([*kept, *added]), merge.changes, merge.rejected,
                         merge.unpriced)


class _Prices:
    """The price sources, indexed once by every ``/``-suffix of their keys."""

    def __init__(self, offers: Sequence[tuple[str, Mapping[str, Offer]]],
                 bound: Mapping[str, str]) -> None:
        self._sources = [(name, table, _suffixes(table), bound.get(name)) for name, table in offers]

    def find(self, ids: Sequence[str], provider: str) -> Match | None:
        for name, table, suffixes, owner in self._sources:
            if owner is not None and owner != provider:
                continue
            for uid in ids:
                key = uid if uid in table else _best(suffixes.get(uid, ()), uid, provider)
                if key is not None:
                    return Match(name, key, table[key])
        return None


def _suffixes(table: Mapping[str, Offer]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in table:
        at = key.find("/")
        while at >= 0:
            out.setdefault(key[at + 1:], []).append(key)
            at = key.find("/", at + 1)
    return out


def _best(keys: Sequence[str], uid: str, provider: str) -> str | None:
    name = provider.lower()
    return min(keys, key=lambda k: (name not in k[: -len(uid) - 1].lower(), len(k), k), default=None)


@dataclass(slots=True)
class _Merge:
    prices: _Prices
    listings: Mapping[str, Listing]
    scores: Scores
    providers: frozenset[str]
    as_of: str
    changes: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)

    def existing(self, spec: ModelSpec) -> ModelSpec | None:
        """One catalog model refreshed, or None when its provider no longer offers it."""
        new = spec
        if spec.provider in self.providers:
            listing = self.listings.get(spec.provider)
            available = spec if listing is None else self._available(spec, listing)
            if available is None:
                return None
            bases = [] if listing is None else _bases(listing, available.upstream_id)
            new = self._priced(available, list(dict.fromkeys([available.upstream_id, *bases])))
        new = self._scored(new)
        self.changes += _diff(spec, new)
        return new

    def _available(self, spec: ModelSpec, listing: Listing) -> ModelSpec | None:
        uid, where = spec.upstream_id, f"provider {spec.provider}"
        if uid in listing.legacy or any(b in listing.legacy for b in _bases(listing, uid)):
            self.changes.append(f"{spec.name} removed: {where} lists {uid} as LEGACY")
            return None
        if uid in listing.profiles:
            return replace(spec, upstream_id=listing.profiles[uid])
        if uid in listing.ids or _bases(listing, uid):
            return spec
        self.changes.append(f"{spec.name} removed: {where} does not offer {uid}")
        return None

    def _priced(self, spec: ModelSpec, ids: Sequence[str]) -> ModelSpec:
        match = self.prices.find(ids, spec.provider)
        if match is None:
            return spec
        o = match.offer
        jumps = [f"{what} {old:g} -> {new:g}" for what, old, new in (
            ("input", spec.input_price, o.input_price), ("output", spec.output_price, o.output_price)
        ) if old > 0 and not old / MAX_RATIO <= new <= old * MAX_RATIO]
        if jumps:
            self.rejected.append(f"{spec.name}: {match} says {', '.join(jumps)}: more than "
                                 f"{MAX_RATIO:g}x, kept the catalog's numbers")
            return spec
        return replace(
            spec, input_price=o.input_price, output_price=o.output_price,
            cache_read_price=_given(o.cache_read_price, spec.cache_read_price),
            cache_write_price=_given(o.cache_write_price, spec.cache_write_price),
            context=_given(o.context, spec.context), max_output=_given(o.max_output, spec.max_output),
            source=_stamp(spec.source, f"prices: {match}"),
            as_of=_stamp(spec.as_of, f"prices {self.as_of}"))

    def _scored(self, spec: ModelSpec) -> ModelSpec:
        score = self._score(spec.name, spec.upstream_id)
        new = replace(spec, quality=_given(score.quality, spec.quality),
                      coding=_given(score.coding, spec.coding), tier=score.tier or spec.tier)
        return spec if new == spec else replace(new, as_of=_stamp(spec.as_of, f"scores {self.as_of}"))

    def _score(self, *names: str) -> Score:
        return next((self.scores[n] for n in names if n in self.scores), Score())

    def new_models(self, kept: list[ModelSpec], offers: Sequence[tuple[str, Mapping[str, Offer]]],
                   bound: Mapping[str, str]) -> list[ModelSpec]:
        """The models discovery or a bound source adds (rules (a) and (b) above)."""
        taken = {*INTENT_MODELS, *(m.name for m in kept), *(m.upstream_id for m in kept)}
        calls = {(m.provider, m.upstream_id) for m in kept}
        found: list[tuple[str, str, str, Match]] = []  # provider, listed id, call id, offer
        for provider in sorted(self.providers & set(self.listings)):
            found += self._listed(provider, self.listings[provider], calls)
        for source, table in offers:
            provider = bound.get(source, "")
            if provider in self.providers and provider not in self.listings:
                found += [(provider, key, key, Match(source, key, o)) for key, o in table.items()
                          if (provider, key) not in calls]
        added: list[ModelSpec] = []
        for provider, listed, call, match in found:
            if (provider, call) in calls:
                continue
            if len(added) == MAX_NEW_MODELS:
                self.rejected.append(f"more new models left out: at most {MAX_NEW_MODELS} a merge")
                break
            spec = self._new(provider, listed, call, match, taken)
            if spec is not None:
                added.append(spec)
                calls.add((provider, call))
                taken.update((spec.name, call))
        return added

    def _listed(self, provider: str, listing: Listing, calls: set[tuple[str, str]]
                ) -> list[tuple[str, str, str, Match]]:
        found = []
        for listed in sorted(listing.ids - listing.legacy):
            call = listing.profiles.get(listed, listed)
            if {(provider, listed), (provider, call)} & calls:
                continue
            if not (is_valid_key(listed) and is_valid_key(call)):
                self.rejected.append(f"{listed!r:.80} on {provider}: not a usable model id")
                continue
            match = self.prices.find(list(dict.fromkeys([call, listed])), provider)
            if match is None:
                self.unpriced.append(f"{listed} on {provider}")
            else:
                found.append((provider, listed, call, match))
        return found

    def _new(self, provider: str, listed: str, call: str, match: Match, taken: set[str]
             ) -> ModelSpec | None:
        name = next((n for n in (listed, f"{provider}/{listed}") if n not in taken), None)
        if name is None:
            self.rejected.append(f"{call} on {provider}: the names {listed} and "
                                 f"{provider}/{listed} are both taken")
            return None
        o, score = match.offer, self._score(name, listed, call)
        tier = score.tier or tier_by_price(o.output_price)
        self.changes.append(f"new model {name} ({tier}, from {match.source}, served by {provider})")
        return ModelSpec(
            name=name, provider=provider, upstream_id=call, tier=tier, input_price=o.input_price,
            output_price=o.output_price, context=o.context or DEFAULT_CONTEXT,
            max_output=o.max_output, cache_read_price=o.cache_read_price,
            cache_write_price=o.cache_write_price, quality=score.quality, coding=score.coding,
            supports=o.supports, source=f"prices: {match}", as_of=f"prices {self.as_of}")


def _bases(listing: Listing, uid: str) -> list[str]:
    """The listed ids whose inference profile is ``uid``."""
    return sorted(base for base, profile in listing.profiles.items() if profile == uid)


def _given[T](value: T | None, old: T) -> T:
    return old if value is None else value


def _stamp(text: str | None, part: str) -> str:
    """``part`` first, replacing the parts of ``text`` (``; ``-separated) with its first word."""
    word = part.split(" ", 1)[0].rstrip(":")
    kept = [p for p in (text or "").split("; ") if p and not p.startswith(word)]
    return "; ".join([part, *kept])


def _diff(old: ModelSpec, new: ModelSpec) -> list[str]:
    return [f"{old.name}: {label} {_show(getattr(old, attr))} -> {_show(getattr(new, attr))}"
            for label, attr in _DIFFED if getattr(old, attr) != getattr(new, attr)]


def _show(value: Any) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def catalog_entries(catalog: Catalog) -> list[dict[str, Any]]:
    """Catalog-file entries for every model (``parse_models`` reads them back unchanged)."""
    return [_entry(spec) for spec in catalog]


def _entry(spec: ModelSpec) -> dict[str, Any]:
    price = {"input": spec.input_price, "output": spec.output_price,
             "cache_read": spec.cache_read_price, "cache_write": spec.cache_write_price}
    latency = {"ttft": spec.ttft_prior, "tokens_per_second": spec.tokens_per_second_prior}
    entry: dict[str, Any] = {
        "name": spec.name, "provider": spec.provider, "id": spec.upstream_id, "tier": spec.tier,
        "price": {k: v for k, v in price.items() if v is not None}, "context": spec.context,
        "max_output": spec.max_output, "quality": spec.quality, "coding": spec.coding,
        "supports": sorted(spec.supports),
        "latency": {k: v for k, v in latency.items() if v is not None} or None,
        "source": spec.source, "as_of": spec.as_of,
    }
    return {k: v for k, v in entry.items() if v is not None}
