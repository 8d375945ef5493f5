"""The response cache in the request path: answer an identical call without a provider.

Per app, opt-in (``cache: {ttl: 1h}``; ``sidecar.core.cache`` states what may be cached and
the key). After the routing decision, a call that may be cached is looked up under the key of
the deployment that would serve it:

* **hit**: the stored ``chat.completion`` (or Responses object) is the answer, as JSON or
  replayed as the SSE stream the provider would have sent (``sidecar.apis.chat_cache``,
  ``responses_cache``); no
  provider is called, no budget is drawn on; it costs nothing and saves what the served model
  would have cost;
* **miss**: the call goes on; a complete, successful answer of that very deployment (JSON, or a
  stream assembled back into its completion) is stored for ``ttl`` if it is not over the size
  limit. Errors, partial or failed streams and fallback answers are never stored;
* **bypass**: the call may not be cached (``n`` > 1, sampling without ``any: true``...) or the
  app said ``cache-control: no-store``; ``no-cache`` skips the lookup but
  stores the fresh answer (a refresh).

``x-model-router-cache`` says which. The store is the in-process LRU, or Redis with
``state.redis`` (shared by replicas); Redis unreachable is a miss, never an error or a hang.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.apis.chat_cache import StreamAssembler, replay_stream
from sidecar.apis.responses_cache import ResponsesStreamAssembler, replay_responses_stream
from sidecar.core.cache import cache_key, uncacheable
from sidecar.core.config.rules import RuleSet
from sidecar.core.facts import key_sha256
from sidecar.proxy.metrics import Metrics
from sidecar.proxy.routing import Call, Routed
from sidecar.state.cache import CacheStore, LocalCache, RedisCache

log = logging.getLogger("sidecar")
HEADER = "x-model-router-cache"
Assembler = StreamAssembler | ResponsesStreamAssembler


@dataclass(slots=True)
class Lookup:
    """One call's cache entry: where it lives and what may be done with it."""

    key: str
    ttl: float
    max_bytes: int
    read: bool  # look it up (False: cache-control: no-cache, a refresh)
    api: str
    stream: bool
    include_usage: bool
    assembler: Assembler | None = None  # a stream's answer, assembled as it passes


class ResponseCache:
    def __init__(self, *, metrics: Metrics) -> None:
        self.metrics = metrics
        self.store: CacheStore | None = None
        self._config: tuple[str | None, int] | None = None

    def use(self, rules: RuleSet) -> CacheStore:
        """The store for these rules (made again when rules.yaml changes it)."""
        config = (rules.state.redis, rules.cache_store.max_bytes)
        if self.store is None or config != self._config:
            self._config = config
            self.store = (RedisCache(rules.state.redis) if rules.state.redis
                          else LocalCache(rules.cache_store.max_bytes))
        return self.store

    def plan(self, call: Call, routed: Routed, headers: Mapping[str, str]
             ) -> tuple[Lookup | None, str]:
        """The call's lookup, or None and why it bypasses the cache."""
        spec = call.app.cache
        if spec is None or call.body is None or call.api == "other":
            return None, ""
        control = headers.get("cache-control", "").lower()
        why = uncacheable(call.body, spec)
        if why is None and "no-store" in control:
            why = "cache-control: no-store"
        if why is None and (routed.decision.shadow or routed.plan[0].spec is None):
            why = "not a catalog model's answer"
        if why is not None:
            return None, why
        target = routed.plan[0]
        options = call.body.get("stream_options")
        return Lookup(
            key=cache_key(app=call.app.name, key_hash=key_sha256(
                headers.get("authorization", "")) or "", provider=target.provider,
                upstream_model=target.upstream_model, api=call.api, body=call.body),
            ttl=spec.ttl, max_bytes=spec.max_entry_bytes, read="no-cache" not in control,
            api=call.api, stream=call.facts.stream,
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        ), ""

    async def get(self, rules: RuleSet, lookup: Lookup) -> tuple[int, dict[str, str], bytes,
                                                                 dict[str, Any]] | None:
        """The answer for a hit: (status, headers, body, the stored object)."""
        if not lookup.read:
            return None
        raw = await self.use(rules).get(lookup.key)
        self._gauges()
        if raw is None:
            return None
        try:
            stored: dict[str, Any] = json.loads(raw)
        except ValueError:
            return None
        if lookup.stream:
            try:
                events = (replay_responses_stream(stored) if lookup.api == "responses" else
                          replay_stream(stored, include_usage=lookup.include_usage))
                body = b"".join(events)
            except ValueError:  # an entry that cannot be a stream: a miss
                return None
            return 200, {"content-type": "text/event-stream; charset=utf-8",
                         "cache-control": "no-cache"}, body, stored
        return 200, {"content-type": "application/json"}, raw, stored

    async def put(self, rules: RuleSet, lookup: Lookup, answer: Mapping[str, Any]) -> None:
        value = json.dumps(answer, separators=(",", ":")).encode()
        if len(value) > lookup.max_bytes:
            log.info("not cached: the answer is %d bytes, over the entry limit %d", len(value),
                     lookup.max_bytes)
            return
        await self.use(rules).put(lookup.key, value, lookup.ttl)
        self._gauges()

    def _gauges(self) -> None:
        store = self.store
        if store is None:
            return
        if store.stored_bytes is not None:
            self.metrics.cache_bytes.set(store.stored_bytes)
        self.metrics.cache_evictions_seen(store.evictions)
        self.metrics.cache_errors_seen(store.errors)

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
