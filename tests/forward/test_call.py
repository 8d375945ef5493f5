"""``sidecar.forward.call``: the router's fields (``prefer``, ``tier``) are gone from the body
before any translator or provider sees it, and the dispatcher serves a Responses call natively
or as chat."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from sidecar.forward.call import Dispatcher, app_request
from sidecar.providers import Api
from tests.providers.builders import (
    APP_HEADERS,
    BEDROCK_SPEC,
    UPSTREAM_MODEL,
    adapters,
    chat_body,
    responses_body,
    target,
)

ROUTER_FIELD_SETS: dict[str, dict[str, Any]] = {
    "none": {},
    "prefer": {"prefer": "cheap"},
    "tier": {"tier": "premium"},
    "both": {"prefer": "quality", "tier": "auto"},
    "odd-values": {"prefer": None, "tier": {"nested": ["x"]}},
}
APP_FIELDS = {"temperature": 0.3, "user": "u-1", "metadata": {"prefer": "kept: not top-level"}}


def body_for(api: Api, stream: bool, router: dict[str, Any]) -> dict[str, Any]:
    base = chat_body if api == "chat" else responses_body
    # the router's fields in the middle of the body, as an app might place them
    return base(**{**dict(list(APP_FIELDS.items())[:1]), **router,
                   **dict(list(APP_FIELDS.items())[1:]), **({"stream": True} if stream else {})})


@pytest.mark.parametrize(("api", "stream", "router"), [
    pytest.param(a, s, r, id=f"{a}-{'stream' if s else 'once'}-{r}")
    for a, s, r in itertools.product(("chat", "responses"), (False, True), ROUTER_FIELD_SETS)
])
def test_app_request_drops_router_fields(api: Api, stream: bool, router: str) -> None:
    body = body_for(api, stream, ROUTER_FIELD_SETS[router])
    raw = json.dumps(body, indent=1).encode()

    request = app_request(api=api, path=f"/v1/{api}", headers=APP_HEADERS, raw=raw, body=body,
                          stream=stream)

    assert request.body is not None
    assert not {"prefer", "tier"} & set(request.body)
    sent = json.loads(request.raw)
    assert not {"prefer", "tier"} & set(sent)
    expected = {k: v for k, v in body.items() if k not in ("prefer", "tier")}
    assert sent == dict(request.body) == expected
    assert list(sent) == list(expected)  # the app's field order is kept
    if router == "none":
        assert request.raw == raw  # nothing to remove: the app's bytes as they came
    assert (request.api, request.stream, request.headers) == (api, stream, APP_HEADERS)


def test_app_request_without_a_body_passes_raw() -> None:
    request = app_request(api="other", path="/v1/models", headers={}, raw=b"", body=None,
                          stream=False)
    assert (request.body, request.raw) == (None, b"")


@pytest.mark.parametrize(("kind", "api", "native"), [
    ("openai", "chat", False), ("openai", "responses", False), ("openai", "responses", True),
    ("bedrock", "chat", False), ("bedrock", "responses", False),
], ids=["openai-chat", "openai-responses-as-chat", "openai-responses-native", "bedrock-chat",
        "bedrock-responses-as-chat"])
@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
def test_router_fields_never_reach_a_provider(kind: str, api: Api, native: bool,
                                              stream: bool) -> None:
    body = body_for(api, stream, ROUTER_FIELD_SETS["both"])
    request = app_request(api=api, path=f"/v1/{'chat/completions' if api == 'chat' else api}",
                          headers=APP_HEADERS, raw=json.dumps(body).encode(), body=body,
                          stream=stream)
    call = Dispatcher(adapters(responses=native)).prepare(target(kind), request)

    sent = json.loads(call.body)
    assert not {"prefer", "tier"} & set(sent)
    if call.responses is not None:
        assert not {"prefer", "tier"} & set(call.responses)
    via_chat = api == "responses" and not native
    assert (call.responses is not None) == via_chat
    if kind == "bedrock":
        assert call.path.endswith("/converse-stream" if stream else "/converse")
        assert sent["messages"][-1]["content"] == [{"text": "Hi"}]
        assert call.target.spec == BEDROCK_SPEC
    else:
        assert sent["model"] == UPSTREAM_MODEL
        if not via_chat:  # only the top level is the router's; the app's own data is kept
            assert sent["metadata"] == APP_FIELDS["metadata"]
        assert call.path == ("/v1/responses" if api == "responses" and native
                             else "/v1/chat/completions")
