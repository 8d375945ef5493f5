"""``type:`` in rules.yaml -> the adapter that serves such a provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sidecar.core.config.rules import ProviderSpec
from sidecar.providers import Adapter
from sidecar.providers.bedrock.adapter import BedrockAdapter
from sidecar.providers.openai_compat import OpenAICompatAdapter

ADAPTERS: Mapping[str, Callable[[ProviderSpec, Mapping[str, str]], Adapter]] = {
    "openai": OpenAICompatAdapter,
    "bedrock": BedrockAdapter,
}


def make_adapters(providers: Mapping[str, ProviderSpec], environ: Mapping[str, str]
                  ) -> dict[str, Adapter]:
    """An adapter per configured provider (nothing blocking happens here: see
    ``Adapter.unavailable``)."""
    return {name: ADAPTERS[spec.type](spec, environ) for name, spec in providers.items()}
