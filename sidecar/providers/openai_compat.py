"""OpenAI-compatible providers: where a routed call goes, what it carries, what comes back.

The request keeps the app's body and headers but for the model id, the router's fields (gone
before any adapter sees the body) and the keys: the app's key goes only to a provider with
``api_key: from-request``; any other gets the sidecar's own key (``env:NAME``) or none. The
answer is the provider's own, already in OpenAI's shape: a success must at least be a JSON
object, or the attempt counts as malformed.

Discovery asks ``GET {base_url}/models`` with the sidecar's own key (``model_ids``); a provider
that has none (``from-request``, ``none``, an unset variable) is not asked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from sidecar.apis.sse import UsageTap
from sidecar.core.accounting import usage_from_openai
from sidecar.core.config.offers import Listing
from sidecar.core.config.rules import ProviderSpec
from sidecar.core.errors import UpstreamError, render_openai_error
from sidecar.core.routing.decision import Target
from sidecar.providers import (
    HOP_BY_HOP,
    Answer,
    AppRequest,
    DiscoveryError,
    Endpoint,
    StreamTransform,
    UpstreamCall,
    malformed,
    pass_headers,
    status_verdict,
)

# Headers that identify the app to OpenAI; they go only where the app's own key goes.
APP_IDENTITY_HEADERS = frozenset({"authorization", "openai-organization", "openai-project"})
AUTH_STATUS = frozenset({401, 403})
MAX_MODELS_BODY = 5 * 1024 * 1024  # bytes of a model list read at most


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


def upstream_headers(headers: Mapping[str, str], provider: ProviderSpec, own_key: str | None
                     ) -> dict[str, str]:
    """Every header a call leaving for ``provider`` carries (lower-case names, no Host)."""
    drop = HOP_BY_HOP if provider.forwards_app_key else HOP_BY_HOP | APP_IDENTITY_HEADERS
    sent = {k: v for k, v in headers.items() if k not in drop}
    if not provider.forwards_app_key and own_key:
        sent["authorization"] = f"Bearer {own_key}"
    return sent


def upstream_body(body: Mapping[str, Any], *, model: str, usage: bool = False) -> bytes:
    """The request body as the provider gets it, with its model id; with ``usage``, a stream
    also asks for the usage report (the sidecar counts real tokens)."""
    out = dict(body)
    out["model"] = model
    if usage:
        options = out.get("stream_options")
        out["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                 "include_usage": True}
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` parsed, when it is a JSON object."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError included
        return None
    return parsed if isinstance(parsed, dict) else None


def model_ids(url: str, key: str, *, timeout: float, provider: str) -> frozenset[str]:
    """The ids of ``GET url`` (an OpenAI model list) asked with ``key``. Blocking; raises
    ``DiscoveryError`` naming ``provider`` for a failed call, a body over ``MAX_MODELS_BODY`` or
    one that is not a model list. Entries without a non-empty string id are skipped."""
    where = f"provider {provider!r}: GET {url}"
    headers = {"authorization": f"Bearer {key}", "accept": "application/json"}
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(trust_env=False, timeout=timeout) as client, client.stream(
                "GET", url, headers=headers) as response:
            if response.status_code != 200:
                raise DiscoveryError(f"{where} answered {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_MODELS_BODY:
                    raise DiscoveryError(f"{where}: the answer is over {MAX_MODELS_BODY} bytes")
                if time.monotonic() > deadline:
                    raise DiscoveryError(f"{where}: the answer took over {timeout:g}s")
    except httpx.TimeoutException as e:
        raise DiscoveryError(f"{where}: timed out after {timeout:g}s ({type(e).__name__})") from e
    except httpx.HTTPError as e:
        raise DiscoveryError(f"{where} failed: {type(e).__name__}: {e}") from e
    try:
        parsed = json.loads(bytes(body))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError included
        raise DiscoveryError(f"{where}: the answer is not JSON") from e
    # {"object": "list", "data": [...]} as OpenAI answers; a bare list as a few providers do
    data = parsed.get("data") if isinstance(parsed, dict) else parsed
    if not isinstance(data, list):
        raise DiscoveryError(f"{where}: the answer is not a model list")
    return frozenset(item["id"] for item in data if isinstance(item, dict)
                     and isinstance(item.get("id"), str) and item["id"])


class OpenAICompatAdapter:
    stream_content_type: str | None = None  # the provider's own SSE goes through as it is

    def __init__(self, spec: ProviderSpec, environ: Mapping[str, str]) -> None:
        assert spec.base_url is not None  # rules.parse_provider requires it
        self.spec = spec
        self.endpoint = parse_endpoint(spec.base_url)
        self.native_responses = spec.responses
        self._key = spec.resolve_key(environ)
        self._key_variable = spec.api_key[4:] if spec.api_key.startswith("env:") else None

    def unavailable(self) -> str | None:
        if self._key_variable is not None and self._key is None:
            return f"its key variable {self._key_variable} is not set"
        return None

    def needs_refresh(self) -> bool:
        return False

    def discover(self, *, timeout: float) -> Listing | None:
        """The ids ``GET {base_url}/models`` lists for the sidecar's own key (None: it has
        none to ask with)."""
        if self._key is None:
            return None
        assert self.spec.base_url is not None
        url = self.spec.base_url.rstrip("/") + "/models"
        ids = model_ids(url, self._key, timeout=timeout, provider=self.spec.name)
        return Listing(provider=self.spec.name, ids=ids)

    def prepare(self, target: Target, request: AppRequest) -> UpstreamCall:
        body, raw = request.body, request.raw
        if body is not None and (target.upstream_model != body.get("model") or (
                request.stream and request.api == "chat")):
            raw = upstream_body(body, model=target.upstream_model,
                                usage=request.stream and request.api == "chat")
        return UpstreamCall(
            target=target, adapter=self, endpoint=self.endpoint,
            path=upstream_path(request.path, self.endpoint),
            headers=upstream_headers(request.headers, self.spec, self._key), body=raw,
            stream=request.stream, api=request.api, timeout=self.spec.timeout)

    def answer(self, call: UpstreamCall, status: int, headers: Mapping[str, str],
               body: bytes) -> Answer:
        passed = pass_headers(headers)
        verdict = status_verdict(status)
        if status in AUTH_STATUS and not self.spec.forwards_app_key:
            return self._refused_key(status, passed)
        if verdict != "ok" or call.api == "other":
            return Answer(status, passed, body, verdict, reason=f"status {status}")
        parsed = json_object(body)
        if parsed is None:  # a success that is not a JSON object: worth the next model
            return malformed(call, status, passed, what="a body that is not a JSON object")
        return Answer(status, passed, body, "ok", usage=usage_from_openai(parsed), parsed=parsed)

    def _refused_key(self, status: int, headers: Mapping[str, str]) -> Answer:
        """The provider refused the sidecar's own key: not the app's fault, and another
        provider may serve (the app gets a 502 when none does)."""
        code, body, error_headers = render_openai_error(UpstreamError(
            f"provider {self.spec.name!r} refused the sidecar's key for it ({status}); check "
            f"{self._key_variable or 'its api_key'}", code="upstream_auth_failed"))
        kept = {k: v for k, v in headers.items() if k.startswith("x-request-id")}
        return Answer(code, {**kept, **error_headers}, body, "retry", reason=f"status {status}")

    def stream(self, call: UpstreamCall, *, request_id: str,
               include_usage: bool) -> StreamTransform:
        # The sidecar asked for usage on the app's behalf: hide it when the app did not.
        return UsageTap(strip=not include_usage)
