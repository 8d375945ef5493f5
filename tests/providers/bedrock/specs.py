"""ModelSpec values for the Bedrock translator tests."""

from __future__ import annotations

from sidecar.core.config.catalog import ModelSpec


def model_spec(
    *supports: str, upstream_id: str = "anthropic.claude-test-v1:0", max_output: int | None = 8192
) -> ModelSpec:
    return ModelSpec(
        name="test-model",
        provider="bedrock",
        upstream_id=upstream_id,
        tier="standard",
        input_price=1.0,
        output_price=5.0,
        context=200_000,
        max_output=max_output,
        supports=frozenset(supports),
    )
