"""OpenAI-compatible providers: where a routed call goes and what it carries (pure).

The addon applies an ``UpstreamRequest`` to the flow and mitmproxy sends it; the response streams
back unchanged (its ``model`` already names the model that served).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sidecar.core.config.rules import ProviderSpec
from sidecar.core.facts import ROUTER_FIELDS

# Headers that identify the app to OpenAI; they go only where the app's own key goes.
APP_IDENTITY_HEADERS = ("authorization", "openai-organization", "openai-project")
# Never forwarded anywhere: they were meant for the sidecar.
HOP_HEADERS = ("proxy-authorization", "proxy-connection")


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    path_prefix: str  # "" or "/v1" or "/v1beta/openai"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


def parse_endpoint(base_url: str) -> Endpoint:
    parts = urlsplit(base_url)
    assert parts.hostname is not None  # rules.parse_provider validated it
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Endpoint(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def upstream_path(path: str, endpoint: Endpoint) -> str:
    """``/v1/chat/completions?x`` on the app side -> the provider's path under its base URL."""
    route, sep, query = path.partition("?")
    if route == "/v1" or route.startswith("/v1/"):
        route = route[3:]
    return endpoint.path_prefix + route + sep + query


def upstream_headers(
    headers: Mapping[str, str], provider: ProviderSpec, own_key: str | None
) -> tuple[list[str], dict[str, str]]:
    """(header names to remove, headers to set) for a call leaving for ``provider``."""
    remove = list(HOP_HEADERS)
    add: dict[str, str] = {}
    if not provider.forwards_app_key:
        remove.extend(APP_IDENTITY_HEADERS)
        if own_key:
            add["authorization"] = f"Bearer {own_key}"
    return [h for h in remove if h in headers], add


def upstream_body(body: dict[str, Any], *, model: str, usage: bool = False) -> bytes:
    """The request body as the provider gets it: its model id, without the router's fields;
    with ``usage``, a stream also asks for the usage report (the sidecar counts real tokens)."""
    out = {k: v for k, v in body.items() if k not in ROUTER_FIELDS}
    out["model"] = model
    if usage:
        options = out.get("stream_options")
        out["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                 "include_usage": True}
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


def has_router_fields(body: Mapping[str, Any]) -> bool:
    return any(k in body for k in ROUTER_FIELDS)
