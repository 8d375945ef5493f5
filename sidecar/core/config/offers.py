"""What remote sources say about models, before it touches the catalog (pure data).

* ``Offer``: one model id as a price source describes it (LiteLLM's price map, OpenRouter's
  model list): prices per million tokens, limits, capabilities.
* ``Listing``: what one provider says this account can call (``GET {base_url}/models``, Bedrock's
  control plane): the ids, which are legacy, and which must be called by an inference profile.
* ``Scores``: quality and coding scores (and optionally a tier) for models by name, from a scores
  file or URL; price sources carry none.

``sidecar.core.config.refresh`` merges them into a catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sidecar.core.vocabulary import Tier


@dataclass(frozen=True, slots=True)
class Offer:
    id: str  # the key the source uses (e.g. "gpt-4o", "bedrock/anthropic.claude-...", "openai/gpt-4o")
    input_price: float  # USD per million tokens
    output_price: float
    cache_read_price: float | None = None
    cache_write_price: float | None = None
    context: int | None = None  # max input tokens
    max_output: int | None = None
    supports: frozenset[str] = frozenset()  # of catalog.CAPABILITIES


@dataclass(frozen=True, slots=True)
class Listing:
    provider: str  # a provider name from rules.yaml
    ids: frozenset[str]  # model ids this account can call (legacy ones included)
    legacy: frozenset[str] = frozenset()  # listed, but LEGACY (Bedrock): not planned
    profiles: Mapping[str, str] = field(default_factory=dict)  # model id -> the inference
    #                                   profile id it must be called by (Bedrock, on demand off)


@dataclass(frozen=True, slots=True)
class Score:
    quality: float | None = None
    coding: float | None = None
    tier: Tier | None = None


Scores = Mapping[str, Score]  # catalog model name (or provider model id) -> its scores
