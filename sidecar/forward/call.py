"""One attempt at serving a call: the exact HTTP request a provider gets (``UpstreamCall``).

``Dispatcher.prepare`` is used on both forwarding paths: the fast path applies the call to the
mitmproxy flow, the relay sends it with httpx. It holds what is fixed per rules load (endpoints,
keys, Bedrock signers), so nothing is parsed again per request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sidecar.apis.responses import to_chat_request
from sidecar.core.config.rules import ProviderSpec
from sidecar.core.errors import UnknownModelError
from sidecar.core.routing.policy import Target
from sidecar.providers import openai_compat
from sidecar.providers.bedrock.adapter import BedrockAdapter
from sidecar.providers.openai_compat import Endpoint

# Never forwarded: they describe the app's connection to the sidecar, not the call. The body is
# sent decoded (as it was read), so its content-encoding does not go either.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "content-encoding",
})


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    target: Target
    kind: str  # "openai" | "bedrock"
    endpoint: Endpoint  # scheme, host and port, parsed once per rules load
    path: str  # the request target on that host
    headers: dict[str, str]  # every header to send (lower-case names), Host excluded
    body: bytes
    stream: bool
    responses: Mapping[str, Any] | None = None  # a Responses request served via chat: translate back
    timeout: float | None = None  # the provider's read timeout (None: the relay's default)

    @property
    def url(self) -> str:
        return f"{self.endpoint.scheme}://{self.endpoint.host_header}{self.path}"


class Dispatcher:
    def __init__(
        self, providers: Mapping[str, ProviderSpec], *, keys: Mapping[str, str | None],
        bedrock: Mapping[str, BedrockAdapter],
    ) -> None:
        self.providers = providers
        self.keys = keys  # provider -> the sidecar's own key (env:NAME), if any
        self.bedrock = bedrock
        self.endpoints = {p.name: openai_compat.parse_endpoint(p.base_url)
                          for p in providers.values() if p.base_url}
        self.endpoints.update({name: openai_compat.parse_endpoint(adapter.signer.base_url)
                               for name, adapter in bedrock.items()})

    def prepare(
        self, target: Target, *, path: str, headers: Mapping[str, str], raw: bytes,
        body: dict[str, Any] | None, stream: bool, api: str = "chat",
    ) -> UpstreamCall:
        """The request for ``target``. ``headers`` are the app's (lower-case names); ``body`` is
        the parsed chat or Responses body (None for other endpoints, whose ``raw`` bytes pass
        unchanged). A Responses call goes as it is to a provider that speaks the Responses API,
        and as chat.completions (translated back by the relay) to any other."""
        provider = self.providers[target.provider]
        if api == "responses" and body is not None:
            if provider.type == "openai" and provider.responses:
                return self._native_responses(target, path=path, headers=headers, body=body,
                                              stream=stream)
            chat = to_chat_request(body, model=target.upstream_model)
            chat_path = path.split("?")[0].removesuffix("/responses") + "/chat/completions"
            raw = json.dumps(chat, ensure_ascii=False, separators=(",", ":")).encode()
            call = self.prepare(target, path=chat_path, headers=headers, raw=raw, body=chat,
                                stream=stream)
            return replace(call, responses=body)
        if provider.type == "bedrock":
            return self._bedrock(target, path=path, body=body, stream=stream)
        endpoint = self.endpoints[provider.name]
        drop, add = openai_compat.upstream_headers(headers, provider, self.keys.get(provider.name))
        sent = {k: v for k, v in headers.items() if k not in HOP_BY_HOP and k not in drop}
        sent.update(add)
        if body is not None and (target.upstream_model != body.get("model") or stream
                                 or openai_compat.has_router_fields(body)):
            raw = openai_compat.upstream_body(body, model=target.upstream_model,
                                              usage=stream)
        return UpstreamCall(target, "openai", endpoint, openai_compat.upstream_path(path, endpoint),
                            sent, raw, stream, timeout=provider.timeout)

    def _native_responses(
        self, target: Target, *, path: str, headers: Mapping[str, str], body: dict[str, Any],
        stream: bool,
    ) -> UpstreamCall:
        provider = self.providers[target.provider]
        endpoint = self.endpoints[provider.name]
        drop, add = openai_compat.upstream_headers(headers, provider, self.keys.get(provider.name))
        sent = {k: v for k, v in headers.items() if k not in HOP_BY_HOP and k not in drop}
        sent.update(add)
        raw = openai_compat.upstream_body(body, model=target.upstream_model)
        return UpstreamCall(target, "openai", endpoint, openai_compat.upstream_path(path, endpoint),
                            sent, raw, stream, timeout=provider.timeout)

    def _bedrock(
        self, target: Target, *, path: str, body: dict[str, Any] | None, stream: bool
    ) -> UpstreamCall:
        if body is None or target.spec is None:
            raise UnknownModelError(
                f"Bedrock provider {target.provider!r} serves only chat completions of catalog "
                f"models; {path!r} for model {target.upstream_model!r} cannot go there.",
                param="model",
            )
        prepared = self.bedrock[target.provider].prepare(body, target.spec, stream=stream)
        headers = {k.lower(): v for k, v in prepared.headers.items() if k.lower() != "host"}
        endpoint = self.endpoints[target.provider]
        return UpstreamCall(target, "bedrock", endpoint, endpoint.path_prefix + prepared.path,
                            headers, prepared.body, stream,
                            timeout=self.providers[target.provider].timeout)
