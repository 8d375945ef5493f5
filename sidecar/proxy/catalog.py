"""The catalog kept current while running: sources fetched, merged, swapped in like a reload.

``CatalogRefresher.run`` (a task of the addon) first restores the last good merged catalog from
the confdir (so a restart without network routes as before), then refreshes every
``catalog.refresh`` (rules.yaml ``catalog:``, ``sidecar.core.config.catalog_spec``):

1. each source is fetched (httpx, ``timeout``, at most ``MAX_BYTES``) or read (a file), decoded
   and parsed (``sidecar.core.config.sources``: hostile entries rejected there);
2. with ``discover: true`` each provider's adapter says which models this account can call
   (``Adapter.discover``, blocking, in a thread);
3. ``merge_catalog`` builds the new base catalog; rules.yaml is loaded over it (its ``models:``
   always win) and swapped in at once (``LiveConfig.rebase``); it is written to the confdir.

A source that fails (unreachable, too big, not its format) is logged and counted
(``sidecar_catalog_source_up``); what it said last time is used instead, and if it never
answered the merge goes on without it. Nothing here can stop the sidecar from starting or
serving: the catalog it routes by only changes when a refresh succeeds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import yaml

from sidecar.core.config.catalog import Catalog, load_builtin_catalog, parse_catalog_text
from sidecar.core.config.catalog_spec import CatalogSpec, SourceSpec
from sidecar.core.config.offers import Listing, Offer, Scores
from sidecar.core.config.refresh import CatalogUpdate, catalog_entries, merge_catalog
from sidecar.core.config.rules import ProviderSpec, RuleSet, load_rules
from sidecar.core.config.sources import SourceError, read_litellm, read_openrouter, read_scores
from sidecar.core.routing.changes import decision_changes
from sidecar.providers import DiscoveryError
from sidecar.proxy.config import LiveConfig, Loaded
from sidecar.proxy.metrics import Metrics

log = logging.getLogger("sidecar")

MAX_BYTES = 32 * 1024 * 1024  # LiteLLM's price map is ~1.5 MB; OpenRouter's list ~1 MB
LAST_GOOD = "catalog-last-good.yaml"
IDLE_CHECK = 60.0  # seconds between looks at the rules when nothing refreshes
READERS: Mapping[str, Callable[[Any], Any]] = {"litellm": read_litellm,
                                               "openrouter": read_openrouter}


class FetchError(Exception):
    """A source could not be read (network, size, decoding)."""


@dataclass(slots=True)
class CatalogRefresher:
    config: LiveConfig
    metrics: Metrics
    confdir: Path | None = None
    clock: Callable[[], float] = time.time
    # What each source and provider said last, keyed by its whole spec, not its name: a source
    # or provider renamed or pointed elsewhere in rules.yaml starts afresh.
    last: dict[SourceSpec, Mapping[str, Offer]] = field(default_factory=dict)
    last_listings: dict[ProviderSpec, Listing] = field(default_factory=dict)
    last_update: CatalogUpdate | None = None
    refreshes: int = 0  # refreshes tried (applied or not)

    async def run(self) -> None:
        await self.restore()
        while True:
            spec = self._spec()
            if spec is not None and spec.refreshes:
                await self.refresh()
            await asyncio.sleep(spec.refresh if spec is not None and spec.refreshes
                                else IDLE_CHECK)

    def _spec(self) -> CatalogSpec | None:
        return self.config.loaded.rules.catalog_spec if self.config.loaded else None

    # -- the last good catalog on disk ---------------------------------------------------------

    @property
    def path(self) -> Path | None:
        return self.confdir / LAST_GOOD if self.confdir is not None else None

    async def restore(self) -> bool:
        """Route by the last good merged catalog until the first refresh (a restart offline)."""
        path = self.path
        spec = self._spec()
        if path is None or spec is None or not spec.refreshes or not path.exists():
            return False
        try:
            catalog = await asyncio.to_thread(
                lambda: parse_catalog_text(path.read_text("utf-8"), path=str(path)))
        except Exception as e:  # noqa: BLE001 - a damaged file is ignored, never fatal
            log.warning("ignoring the saved catalog %s: %s", path, e)
            return False
        ok = await self.config.rebase(catalog, "the last good catalog")
        if ok:
            log.info("catalog: %d models from the last good refresh (%s)", len(catalog), path)
        return ok

    def _save(self, catalog: Catalog) -> None:
        path = self.path
        if path is None:
            return
        text = yaml.safe_dump({"models": catalog_entries(catalog)}, sort_keys=False)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, "utf-8")
        tmp.replace(path)  # atomic: a crash never leaves half a file

    # -- one refresh ---------------------------------------------------------------------------

    async def refresh(self) -> CatalogUpdate | None:
        """Fetch, merge and swap in; None when nothing could be merged (the catalog stays)."""
        loaded = self.config.loaded
        if loaded is None:
            return None
        try:
            update, missing = await self.compute(loaded)
        finally:
            self.refreshes += 1
        if missing:
            log.warning("catalog refresh incomplete: %s never answered since the start; "
                        "keeping the current catalog", ", ".join(missing))
            return None
        old = loaded.rules
        if not await self.config.rebase(update.catalog, "catalog refresh"):
            return None
        self.last_update = update
        new = self.config.loaded.rules if self.config.loaded else old
        self._report(update, old, new)
        try:
            await asyncio.to_thread(self._save, update.catalog)
        except OSError as e:
            log.warning("could not save the catalog to %s: %s", self.path, e)
        return update

    async def compute(self, loaded: Loaded) -> tuple[CatalogUpdate, list[str]]:
        """What the catalog would be now (``model-router catalog diff`` shows it), and the
        sources that have not answered once (without them the update is incomplete: a model
        only they price would leave the catalog)."""
        spec = loaded.rules.catalog_spec
        async with httpx.AsyncClient(timeout=spec.timeout, trust_env=False,
                                     follow_redirects=True) as client:
            reads = await asyncio.gather(*(self._source(client, s, spec.timeout)
                                           for s in spec.sources))
            scores = await self._scores(client, spec)
        listings = await self._discover(loaded, spec) if spec.discover else {}
        offers = [(s.name, offers) for s, offers in zip(spec.sources, reads, strict=True)
                  if offers is not None]
        bound = {s.name: s.provider for s in spec.sources if s.provider is not None}
        missing = [s.name for s, offers in zip(spec.sources, reads, strict=True) if offers is None]
        update = merge_catalog(load_builtin_catalog(), offers=offers, listings=listings,
                               scores=scores, bound=bound, providers=set(loaded.rules.providers),
                               as_of=time.strftime("%Y-%m-%d", time.gmtime(self.clock())))
        return keep_routed(update, loaded.rules), missing

    async def _source(self, client: httpx.AsyncClient, source: SourceSpec, timeout: float
                      ) -> Mapping[str, Offer] | None:
        try:
            doc = await _document(client, source.location, timeout)
            read = READERS[source.format](doc)
        except (FetchError, SourceError) as e:
            log.warning("catalog source %s failed (%s); %s", source.name, e,
                        "keeping what it said last time" if source in self.last
                        else "going on without it")
            self.metrics.source(source.name, ok=False)
            return self.last.get(source)
        for line in read.rejected[:20]:
            log.warning("catalog source %s: rejected %s", source.name, line)
        if len(read.rejected) > 20:
            log.warning("catalog source %s: %d more entries rejected", source.name,
                        len(read.rejected) - 20)
        # An entry the source stops giving, or now gives badly, keeps its last good price.
        offers = {**self.last.get(source, {}), **read.offers}
        self.last[source] = offers
        self.metrics.source(source.name, ok=True, models=len(read.offers), at=self.clock())
        return offers

    async def _scores(self, client: httpx.AsyncClient, spec: CatalogSpec) -> Scores:
        if spec.scores is None:
            return {}
        try:
            scores = read_scores(await _document(client, spec.scores, spec.timeout))
        except (FetchError, SourceError) as e:
            log.warning("catalog scores %s failed: %s", spec.scores, e)
            self.metrics.source("scores", ok=False)
            return {}
        self.metrics.source("scores", ok=True, models=len(scores), at=self.clock())
        return scores

    async def _discover(self, loaded: Loaded, spec: CatalogSpec) -> dict[str, Listing]:
        adapters = loaded.dispatcher.adapters

        async def ask(name: str) -> tuple[str, Listing | None]:
            label, provider = f"discover:{name}", adapters[name].spec
            try:
                listing = await asyncio.to_thread(adapters[name].discover, timeout=spec.timeout)
            except DiscoveryError as e:
                log.warning("model discovery at %s failed (%s); %s", name, e,
                            "keeping its last list" if provider in self.last_listings
                            else "its models stay as they are")
                self.metrics.source(label, ok=False)
                return name, self.last_listings.get(provider)
            if listing is not None and not listing.ids:  # an account offering nothing at all
                log.warning("model discovery at %s listed no models; ignoring it", name)
                self.metrics.source(label, ok=False)
                return name, self.last_listings.get(provider)
            if listing is not None:
                self.last_listings[provider] = listing
                self.metrics.source(label, ok=True, models=len(listing.ids), at=self.clock())
            return name, listing

        answers = await asyncio.gather(*(ask(name) for name in adapters))
        return {name: listing for name, listing in answers if listing is not None}

    def _report(self, update: CatalogUpdate, old: RuleSet, new: RuleSet) -> None:
        self.metrics.catalog_models.set(len(new.catalog))
        log.info("catalog refreshed: %d models, %d changes, %d entries rejected, %d listed "
                 "without a price", len(new.catalog), len(update.changes), len(update.rejected),
                 len(update.unpriced))
        for line in update.changes[:50]:
            log.info("catalog: %s", line)
        for line in update.unpriced[:20]:
            log.warning("catalog: %s is offered but has no price: not routed", line)
        for line in decision_changes(old, new):
            log.info("routing: %s", line)


def keep_routed(update: CatalogUpdate, rules: RuleSet) -> CatalogUpdate:
    """Models rules.yaml routes to by name (pins, fallbacks) stay in the catalog even when their
    provider stops listing them: the operator named them, and the rules must keep loading."""
    named = {name for app in rules.apps for route in app.routes
             for name in (route.model, *route.fallbacks) if name is not None}
    kept = [spec for name in sorted(named) if update.catalog.find(name) is None
            and (spec := rules.catalog.find(name)) is not None]
    if not kept:
        return update
    for spec in kept:
        log.warning("catalog: %s is not offered by %s any more, but rules.yaml routes to it: "
                    "kept", spec.name, spec.provider)
    return replace(update, catalog=update.catalog.merged(kept))


async def diff_now(rules_path: Path, confdir: Path, *, environ: Mapping[str, str] | None = None
                   ) -> list[str]:
    """``model-router catalog diff``: the changes a refresh would make now, as lines."""
    config = LiveConfig(environ=os.environ if environ is None else environ,
                        on_swap=lambda old, new: None)
    await asyncio.to_thread(config.use, load_rules(rules_path))
    refresher = CatalogRefresher(config=config, metrics=Metrics(), confdir=confdir)
    loaded = config.loaded
    assert loaded is not None
    if not loaded.rules.catalog_spec.refreshes:
        return [f"{rules_path}: catalog: has no sources, scores or discover: nothing refreshes"]
    restored = await refresher.restore()
    loaded = config.loaded
    assert loaded is not None
    current = loaded.rules
    update, missing = await refresher.compute(loaded)
    new = await asyncio.to_thread(load_rules, rules_path, catalog=update.catalog)
    against = f"the last good refresh in {refresher.path}" if restored else "the built-in catalog"
    lines = [f"against {against}: {len(current.catalog)} -> {len(new.catalog)} models"]
    lines += changed_lines(current.catalog, new.catalog)
    lines += [f"rejected: {line}" for line in update.rejected]
    lines += [f"no price, not routed: {line}" for line in update.unpriced]
    lines += [f"routing: {line}" for line in decision_changes(current, new)]
    lines += [f"source {name} failed: a refresh now would keep the current catalog"
              for name in missing]
    return lines


def changed_lines(old: Catalog, new: Catalog) -> list[str]:
    """Models added, removed or changed between two catalogs."""
    out = []
    for spec in new:
        before = old.find(spec.name)
        if before is None:
            out.append(f"+ {spec.name} ({spec.tier}, {spec.provider}, "
                       f"{spec.input_price:g}/{spec.output_price:g} per M)")
        elif before != spec:
            out.append(f"~ {spec.name}: " + ", ".join(_differences(before, spec)))
    out += [f"- {spec.name} ({spec.provider})" for spec in old if new.find(spec.name) is None]
    return out


def _differences(old: Any, new: Any) -> list[str]:
    keys = ("upstream_id", "tier", "input_price", "output_price", "context", "max_output",
            "quality", "coding")
    return [f"{k} {getattr(old, k)} -> {getattr(new, k)}" for k in keys
            if getattr(old, k) != getattr(new, k)]


async def _document(client: httpx.AsyncClient, location: str, timeout: float) -> Any:
    """A source's decoded document: JSON, or YAML for files that are not JSON."""
    if location.startswith(("http://", "https://")):
        raw = await _fetch(client, location)
    else:
        try:
            raw = await asyncio.to_thread(_read_file, location)
        except OSError as e:
            raise FetchError(f"cannot read {location}: {e.strerror}") from None
    return await asyncio.to_thread(_decode, raw, location)


async def _fetch(client: httpx.AsyncClient, url: str) -> bytes:
    try:
        async with client.stream("GET", url, headers={"accept": "application/json"}) as response:
            if response.status_code != 200:
                raise FetchError(f"{url} answered {response.status_code}")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_BYTES:
                    raise FetchError(f"{url} is larger than {MAX_BYTES // 2**20} MB")
                chunks.append(chunk)
    except httpx.HTTPError as e:
        raise FetchError(f"{url}: {type(e).__name__}") from None
    return b"".join(chunks)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise FetchError(f"{path} is larger than {MAX_BYTES // 2**20} MB")
    return raw


def _decode(raw: bytes, location: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        pass
    if location.endswith((".yaml", ".yml")):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise FetchError(f"{location} is not valid YAML: {e}") from None
    raise FetchError(f"{location} is not valid JSON (truncated?)")
