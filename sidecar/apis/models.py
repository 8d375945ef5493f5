"""``GET /v1/models``: the provider's list, with the names the sidecar routes by added (pure)."""

from __future__ import annotations

import json

from sidecar.core.vocabulary import INTENT_MODELS


def with_intent_models(listing: bytes) -> bytes | None:
    """The listing with ``auto`` and the tier names beside the provider's own models (None when
    it is not a model list)."""
    try:
        parsed = json.loads(listing)
    except (ValueError, RecursionError):
        return None
    data = parsed.get("data") if isinstance(parsed, dict) else None
    if not isinstance(data, list):
        return None
    known = {m.get("id") for m in data if isinstance(m, dict)}
    data.extend({"id": name, "object": "model", "created": 0, "owned_by": "model-router"}
                for name in INTENT_MODELS if name not in known)
    return json.dumps(parsed).encode()
