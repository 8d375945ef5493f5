"""``catalog:`` in rules.yaml: catalog files, and the sources that keep the catalog current.

    catalog: catalog.prices.yaml                   # a file (or a list): merged over the built-in
    catalog:
      files: [catalog.prices.yaml]
      sources:                                     # price maps and model lists, in priority order
        - {name: litellm, format: litellm, url: https://.../model_prices_and_context_window.json}
        - {name: openrouter, format: openrouter, url: https://openrouter.ai/api/v1/models,
           provider: openrouter}                   # its models are served by that provider
        - {name: local, format: litellm, file: prices.json}
      scores: scores.yaml                          # quality/coding/tier by model (file or URL)
      discover: true                               # ask each provider what this account can call
      refresh: 6h                                  # s, m, h or d; at least 1m
      timeout: 10                                  # seconds per source or provider

Paths are relative to the rules file. ``sidecar.proxy.catalog`` fetches and merges them
(``sidecar.core.config.refresh``) off the event loop.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sidecar.core.config.yamlfile import (
    FieldError,
    key_step,
    mapping_of,
    parse_duration,
    unknown_keys,
)

Format = Literal["litellm", "openrouter"]
FORMATS: tuple[Format, ...] = ("litellm", "openrouter")
DEFAULT_REFRESH = 6 * 3600.0
MIN_REFRESH = 60.0
DEFAULT_TIMEOUT = 10.0
_KEYS = {"files", "sources", "scores", "discover", "refresh", "timeout"}
_SOURCE_KEYS = {"name", "format", "url", "file", "provider"}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    name: str  # a label in logs and metrics
    format: Format
    location: str  # an http(s) URL, or an absolute file path
    provider: str | None = None  # the provider that serves every model of this source

    @property
    def remote(self) -> bool:
        return self.location.startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class CatalogSpec:
    files: tuple[str, ...] = ()  # absolute paths of catalog files, merged in order
    sources: tuple[SourceSpec, ...] = ()
    scores: str | None = None  # URL or absolute path
    discover: bool = False
    refresh: float = DEFAULT_REFRESH  # seconds
    timeout: float = DEFAULT_TIMEOUT

    @property
    def refreshes(self) -> bool:
        """Whether anything here changes while running."""
        return bool(self.sources or self.scores or self.discover)


def parse_catalog_spec(raw: Any, *, rules_path: str) -> CatalogSpec:
    """``catalog:`` (None, a file name, a list of them, or the mapping above)."""
    base = Path(rules_path).parent
    if raw is None:
        return CatalogSpec()
    if isinstance(raw, str | list):
        return CatalogSpec(files=_files(raw, base, "catalog"))
    if not isinstance(raw, Mapping):
        raise FieldError("catalog", "must be a file name, a list of file names or a mapping "
                                    "with files/sources/scores/discover/refresh")
    unknown = unknown_keys(raw, _KEYS)
    if unknown:
        raise FieldError(f"catalog{key_step(unknown[0])}",
                         f"unknown key; allowed: {', '.join(sorted(_KEYS))}")
    sources = raw.get("sources") or []
    if not isinstance(sources, list):
        raise FieldError("catalog.sources", "must be a list of sources")
    parsed = tuple(_source(s, i, base) for i, s in enumerate(sources))
    names = [s.name for s in parsed]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise FieldError(f"catalog.sources[{i}].name", f"{name!r} is used twice")
    discover = raw.get("discover", False)
    if not isinstance(discover, bool):
        raise FieldError("catalog.discover", "must be true or false")
    scores = raw.get("scores")
    return CatalogSpec(
        files=_files(raw.get("files") or [], base, "catalog.files"), sources=parsed,
        scores=None if scores is None else _location(scores, base, "catalog.scores"),
        discover=discover, refresh=_refresh(raw.get("refresh")),
        timeout=_timeout(raw.get("timeout")))


def _files(raw: Any, base: Path, key: str) -> tuple[str, ...]:
    files = raw if isinstance(raw, list) else [raw]
    if not all(isinstance(f, str) and f for f in files):
        raise FieldError(key, "must be a file name or a list of file names")
    return tuple(str(base / f) for f in files)


def _source(raw: Any, index: int, base: Path) -> SourceSpec:
    key = f"catalog.sources[{index}]"
    raw = mapping_of(raw, key, _SOURCE_KEYS, "{name: litellm, format: litellm, url: ...}")
    fmt = raw.get("format")
    if fmt not in FORMATS:
        raise FieldError(f"{key}.format", f"{fmt!r} is not one of: {', '.join(FORMATS)}")
    if ("url" in raw) == ("file" in raw):
        raise FieldError(key, "needs exactly one of url or file")
    where = "url" if "url" in raw else "file"
    name = raw.get("name", fmt)
    if not isinstance(name, str) or not _NAME.match(name):
        raise FieldError(f"{key}.name", "letters, digits, '_', '.', '-' (at most 40)")
    provider = raw.get("provider")
    if provider is not None and (not isinstance(provider, str) or not provider):
        raise FieldError(f"{key}.provider", "must be a provider name")
    return SourceSpec(name=name, format=fmt,
                      location=_location(raw[where], base, f"{key}.{where}", url=where == "url"),
                      provider=provider)


def _location(raw: Any, base: Path, key: str, *, url: bool | None = None) -> str:
    if not isinstance(raw, str) or not raw:
        raise FieldError(key, "must be an http(s) URL or a file name")
    is_url = raw.startswith(("http://", "https://"))
    if url is True and not is_url:
        raise FieldError(key, f"{raw!r} is not an http(s) URL")
    return raw if is_url else str(base / raw)


def _refresh(raw: Any) -> float:
    if raw is None:
        return DEFAULT_REFRESH
    return parse_duration(raw, "catalog.refresh", minimum=MIN_REFRESH, maximum=math.inf,
                          limits="at least 1m")


def _timeout(raw: Any) -> float:
    if raw is None:
        return DEFAULT_TIMEOUT
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0.5 <= raw <= 120:
        raise FieldError("catalog.timeout", "must be a number of seconds from 0.5 to 120")
    return float(raw)
