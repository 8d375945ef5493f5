"""From the app's call to one attempt's HTTP request (``UpstreamCall``), on both forwarding paths.

``app_request`` removes the router's own fields (``prefer``, ``tier``) once, before any
translator (Responses -> chat, chat -> Converse) or provider sees the body. ``Dispatcher``
holds what is fixed per rules load (one adapter per provider) and prepares an attempt for a
target: a Responses call goes as it is to a provider that speaks the Responses API, and as
chat.completions (translated back on the way out: ``sidecar.forward.answer``) to any other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sidecar.apis.responses import to_chat_request
from sidecar.core.routing.decision import Target
from sidecar.core.vocabulary import ROUTER_FIELDS
from sidecar.providers import Adapter, Api, AppRequest, UpstreamCall


def app_request(*, api: Api, path: str, headers: Mapping[str, str], raw: bytes,
                body: Mapping[str, Any] | None, stream: bool) -> AppRequest:
    """The app's call as attempts start from it, without the router's fields."""
    if body is not None and any(k in body for k in ROUTER_FIELDS):
        body = {k: v for k, v in body.items() if k not in ROUTER_FIELDS}
        raw = _encode(body)
    return AppRequest(api=api, path=path, headers=headers, raw=raw, body=body, stream=stream)


class Dispatcher:
    def __init__(self, adapters: Mapping[str, Adapter]) -> None:
        self.adapters = adapters

    def prepare(self, target: Target, request: AppRequest) -> UpstreamCall:
        """The request for ``target``; raises a ``SidecarError`` when it cannot take it."""
        adapter = self.adapters[target.provider]
        if request.api != "responses" or request.body is None or adapter.native_responses:
            return adapter.prepare(target, request)
        chat = to_chat_request(request.body, model=target.upstream_model)
        path = request.path.split("?")[0].removesuffix("/responses") + "/chat/completions"
        call = adapter.prepare(target, AppRequest(api="chat", path=path, headers=request.headers,
                                                  raw=_encode(chat), body=chat,
                                                  stream=request.stream))
        return replace(call, responses=request.body)


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
