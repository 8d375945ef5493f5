"""Exact response cache: which calls may be answered from it, and under which key (pure: the
shell holds the entries, ``sidecar.state.cache``).

    apps:
      - name: nightly-summaries
        cache: {ttl: 1h}                                  # deterministic calls only
      - name: faq-bot
        cache: {ttl: 30m, any: true, max_entry_bytes: 2MB} # sampled answers too
    cache: {max_bytes: 64MB}                # top level: the size of the in-process store

* **Opt-in per app**: only an app with ``cache:`` is answered from (and stored in) the cache.
* **Deterministic calls only** unless ``any: true``: ``temperature`` is 0 (a ``seed`` alone is
  not enough). ``n`` above 1, log probabilities, a Responses ``background`` job or
  ``conversation`` are never cached (``uncacheable``).
* **One tenant never gets another's answer**: the key (``cache_key``) covers the app, the hash
  of its key, the provider and upstream model, the API and the whole body (``user`` and
  ``metadata`` included) except the fields that do not change the answer's content: ``model``
  (the upstream model stands for it), ``stream``/``stream_options`` (a JSON answer is replayed as
  a stream and back) and the sidecar's ``prefer``/``tier`` hints.

Durations are ``30s``, ``30m``, ``1h``, ``1d`` (or a number of seconds); sizes ``512KB``,
``2MB``, ``1GB`` (binary: 1 KB = 1024 bytes; ``KiB``/``MiB``/``GiB`` too) or a number of bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.core.config.yamlfile import FieldError, mapping_of, parse_duration

KEY_VERSION = 1  # bump when the key's ingredients change: old entries are then never hit
NOT_IN_KEY = frozenset({"model", "stream", "stream_options", "prefer", "tier"})
DEFAULT_MAX_ENTRY = 1 << 20  # 1 MiB
DEFAULT_MAX_BYTES = 64 << 20  # 64 MiB
MIN_TTL = 1.0
MAX_TTL = 30 * 86400.0
MAX_SIZE = 1 << 40
_KEYS = {"ttl", "any", "max_entry_bytes"}
_STORE_KEYS = {"max_bytes"}
_SIZES = {"": 1, "b": 1, "kb": 1 << 10, "kib": 1 << 10, "mb": 1 << 20, "mib": 1 << 20,
          "gb": 1 << 30, "gib": 1 << 30}


@dataclass(frozen=True, slots=True)
class CacheSpec:
    ttl: float  # seconds an answer is kept
    any: bool = False  # cache sampled (temperature above 0) answers too
    max_entry_bytes: int = DEFAULT_MAX_ENTRY  # a bigger answer is not stored

    def describe(self) -> str:
        return f"ttl {self.ttl:g}s" + (", any temperature" if self.any else "")


@dataclass(frozen=True, slots=True)
class CacheStoreSpec:
    max_bytes: int = DEFAULT_MAX_BYTES  # the in-process store's size (values' bytes)


def parse_cache(raw: Any, where: str) -> CacheSpec | None:
    """``cache:`` of an app (``where`` = its key path), or None when it has none."""
    if raw is None:
        return None
    raw = mapping_of(raw, where, _KEYS, "{ttl: 1h}")
    if raw.get("ttl") is None:
        raise FieldError(f"{where}.ttl", "required, a duration like 30m, 1h or 1d")
    ttl = _duration(raw["ttl"], f"{where}.ttl")
    any_ = raw.get("any", False)
    if not isinstance(any_, bool):
        raise FieldError(f"{where}.any", "must be true or false")
    max_entry = DEFAULT_MAX_ENTRY
    if raw.get("max_entry_bytes") is not None:
        max_entry = _size(raw["max_entry_bytes"], f"{where}.max_entry_bytes")
    return CacheSpec(ttl=ttl, any=any_, max_entry_bytes=max_entry)


def parse_cache_store(raw: Any, where: str = "cache") -> CacheStoreSpec:
    """The top-level ``cache:`` (the in-process store): ``{max_bytes: 64MB}``; absent: defaults."""
    if raw is None:
        return CacheStoreSpec()
    raw = mapping_of(raw, where, _STORE_KEYS, "{max_bytes: 64MB}")
    if raw.get("max_bytes") is None:
        return CacheStoreSpec()
    return CacheStoreSpec(max_bytes=_size(raw["max_bytes"], f"{where}.max_bytes"))


def _duration(raw: Any, where: str) -> float:
    return parse_duration(raw, where, minimum=MIN_TTL, maximum=MAX_TTL, limits="from 1s to 30d")


def _size(raw: Any, where: str) -> int:
    match = None if isinstance(raw, bool) else re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)",
                                                             str(raw).strip())
    unit = match.group(2).lower() if match is not None else ""
    if match is None or unit not in _SIZES:
        raise FieldError(where, f"{raw!r} is not a size like 512KB, 2MB or a number of bytes")
    size = int(float(match.group(1)) * _SIZES[unit])
    if not 0 < size <= MAX_SIZE:
        raise FieldError(where, "must be above 0 bytes and at most 1TB")
    return size


def uncacheable(body: Mapping[str, Any], spec: CacheSpec) -> str | None:
    """Why the call of ``body`` (chat.completions or Responses) must neither be answered from
    the cache nor stored in it; None: it may be. Short, stable texts (fit for a log or label)."""
    n = body.get("n")
    if n is not None and n != 1:
        return "n>1"
    if body.get("logprobs") or body.get("top_logprobs"):
        return "logprobs"
    include = body.get("include")
    if isinstance(include, list) and any(isinstance(i, str) and "logprobs" in i for i in include):
        return "logprobs"
    if body.get("background"):
        return "background"  # a Responses job, polled later by its id
    if body.get("conversation") is not None:
        return "conversation"  # the provider appends the answer to a stored conversation
    if not spec.any and not _deterministic(body.get("temperature")):
        return "temperature not 0"
    return None


def _deterministic(temperature: Any) -> bool:
    return (not isinstance(temperature, bool) and isinstance(temperature, int | float)
            and temperature == 0)


def cache_key(*, app: str, key_hash: str, provider: str, upstream_model: str, api: str,
              body: Mapping[str, Any]) -> str:
    """The hex SHA-256 naming the answer to ``body`` for this app, key, provider, model and API
    (``key_hash``: ``sidecar.core.facts.key_sha256`` of the app's Authorization header)."""
    kept = {k: v for k, v in body.items() if k not in NOT_IN_KEY}
    canonical = json.dumps([KEY_VERSION, app, key_hash, provider, upstream_model, api, kept],
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
