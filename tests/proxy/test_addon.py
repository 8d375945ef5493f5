"""The addon's hooks, one at a time, on mitmproxy's own fake flows (``mitmproxy.test``).

No proxy runs and (but for the relay's listener) no socket is opened: each test builds a flow
with ``tflow``/``treq``, calls the hook mitmproxy would call, and reads what the hook did to the
flow, its ``CallState`` (``flow.metadata["sidecar"]``), the books and the metrics.

The rules name two OpenAI-compatible providers on loopback ports nothing listens on (a direct
call is only pointed there, never sent; a relayed one is refused at once): ``own`` gets the
app's own key (``from-request``), ``keyed`` the sidecar's (``env:KEYED_KEY``).
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import connection, http
from mitmproxy.connection import ConnectionState
from mitmproxy.flow import Error
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow, tutils

import sidecar.proxy.addon as addon_module
from sidecar.core.vocabulary import Deployment
from sidecar.forward.relay import RELAY_PATH
from sidecar.proxy.addon import Sidecar
from sidecar.proxy.flow import SENTINEL_HOST, CallState

RULES = """
version: 1
intercept:
  - {host: api.openai.com, provider: own}
providers:
  own: {type: openai, base_url: "http://127.0.0.1:OWN_PORT/v1", api_key: from-request}
  keyed: {type: openai, base_url: "http://127.0.0.1:KEYED_PORT/compat/v1", api_key: "env:KEYED_KEY"}
models:
  - {name: m-own, provider: own, id: own-model-v1, tier: standard,
     price: {input: 1.0, output: 2.0}, context: 128000, quality: 30}
  - {name: m-keyed, provider: keyed, id: keyed-model-v2, tier: standard,
     price: {input: 0.5, output: 1.0}, context: 128000, quality: 20}
apps:
  - name: pinned
    match: {header: {x-app: pinned}}
    routes:
      "*": m-own
  - name: keyed
    match: {header: {x-app: keyed}}
    routes:
      "*": m-keyed
  - name: fallback
    match: {header: {x-app: fallback}}
    routes:
      "*": {model: m-own, fallbacks: [m-keyed]}
  - name: summaries
    match: {proxy_user: summarizer}
    routes:
      "*": m-keyed
"""

APP_KEY = "sk-app-own-key"
SIDECAR_KEY = "sk-sidecar-keyed"
ENVIRON = {"KEYED_KEY": SIDECAR_KEY}
HELLO = [{"role": "user", "content": "Say hello."}]
COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "own-model-v1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}


# -- fixtures and helpers ----------------------------------------------------------------------

def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ports() -> dict[str, int]:
    """The providers' ports: closed, so a call that is really sent is refused at once."""
    return {"own": free_port(), "keyed": free_port()}


@pytest.fixture
def rules_path(tmp_path: Path, ports: dict[str, int]) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.replace("OWN_PORT", str(ports["own"]))
                    .replace("KEYED_PORT", str(ports["keyed"])))
    return path


@pytest.fixture
def sidecar(rules_path: Path) -> Iterator[Sidecar]:
    """The addon as mitmproxy loads it: its options registered, the rules set through them."""
    addon = Sidecar(environ=ENVIRON, explore_rate=0.0)
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sidecar_rules=str(rules_path))
        yield addon


def chat_flow(body: dict[str, Any] | bytes | None = None, *, app: str | None = "pinned",
              host: str = "api.openai.com", port: int = 443,
              path: str = "/v1/chat/completions", **headers: str) -> http.HTTPFlow:
    """An app's chat.completions call as mitmproxy hands it to the addon (decrypted HTTPS)."""
    if body is None:
        body = {"model": "gpt-4o", "messages": HELLO}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    fields = {"host": host, "content-type": "application/json",
              "authorization": f"Bearer {APP_KEY}", **headers}
    if app is not None:
        fields["x-app"] = app
    req = tutils.treq(host=host, port=port, scheme=b"https", method=b"POST",
                      authority=b"", path=path.encode(),
                      headers=http.Headers(**{k.replace("_", "-"): v for k, v in fields.items()}),
                      content=content)
    return tflow.tflow(req=req)


def routed(addon: Sidecar, flow: http.HTTPFlow) -> CallState:
    """requestheaders then request, as mitmproxy calls them. Nothing is awaited: the call goes
    direct, is answered at once, or (a relayed stream) is pointed at the relay."""
    addon.requestheaders(flow)
    assert addon.request(flow) is None
    state = flow.metadata["sidecar"]
    assert isinstance(state, CallState)
    return state


def openai_error(response: http.Response) -> dict[str, Any]:
    """The OpenAI error object of ``response``, checked to have exactly OpenAI's fields."""
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.content or b"")
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


def provider_answer(status: int = 200, body: bytes | None = None,
                    content_type: str = "application/json", **headers: str) -> http.Response:
    content = json.dumps(COMPLETION).encode() if body is None else body
    return tutils.tresp(status_code=status, headers=http.Headers(
        content_type=content_type, content_length=str(len(content)), **headers),
        content=content)


def sample(addon: Sidecar, name: str, **labels: str) -> float:
    value = addon.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def requests_total(addon: Sidecar, **labels: str) -> float:
    return sample(addon, "sidecar_requests_total", **labels)


# -- http_connect and requestheaders: who is intercepted, and fail closed ----------------------

def test_a_host_not_intercepted_is_left_untouched(sidecar: Sidecar) -> None:
    flow = chat_flow(host="api.example.com")
    before = flow.request.get_state()

    sidecar.requestheaders(flow)

    assert "sidecar" not in flow.metadata
    assert flow.response is None
    assert flow.request.get_state() == before  # host, port, path, headers, body
    assert sidecar.in_flight == 0


def test_the_intercepted_host_on_another_port_is_not_intercepted(sidecar: Sidecar) -> None:
    flow = chat_flow(port=8443)
    sidecar.requestheaders(flow)
    assert "sidecar" not in flow.metadata
    assert flow.request.host == "api.openai.com"


def test_an_intercepted_host_points_at_the_sentinel_until_routed(sidecar: Sidecar) -> None:
    flow = chat_flow()

    sidecar.requestheaders(flow)

    state = flow.metadata["sidecar"]
    assert isinstance(state, CallState)
    assert state.phase == "examined" and state.way is None
    assert state.original == ("https", "api.openai.com", 443, "/v1/chat/completions")
    assert flow.request.host == SENTINEL_HOST  # where mitmproxy would connect: refused
    assert flow.response is None
    assert sidecar.in_flight == 1
    assert sample(sidecar, "sidecar_in_flight_requests") == 1


def test_before_rules_are_loaded_nothing_is_intercepted() -> None:
    addon = Sidecar(environ=ENVIRON)
    flow = chat_flow()
    addon.requestheaders(flow)
    assert "sidecar" not in flow.metadata and flow.request.host == "api.openai.com"


def test_an_exception_in_requestheaders_answers_502_and_never_forwards(
        sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(flow: http.HTTPFlow, host: str) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setattr(sidecar, "should_intercept", broken)
    flow = chat_flow()

    sidecar.requestheaders(flow)

    assert flow.response is not None  # mitmproxy answers the app; it does not forward
    assert flow.response.status_code == 502
    error = openai_error(flow.response)
    assert error["code"] == "sidecar_internal_error"
    assert "not forwarded" in error["message"]
    # and the request hook leaves an answered flow alone
    assert sidecar.request(flow) is None
    assert flow.response.status_code == 502


def test_a_flow_already_answered_is_not_examined(sidecar: Sidecar) -> None:
    flow = chat_flow()
    flow.response = provider_answer()
    sidecar.requestheaders(flow)
    assert "sidecar" not in flow.metadata and sidecar.in_flight == 0


def test_the_proxy_user_of_the_connect_matches_the_app_of_the_calls_inside(
        sidecar: Sidecar, ports: dict[str, int]) -> None:
    token = base64.b64encode(b"summarizer:secret").decode()
    connect = tflow.tflow(req=tutils.treq(method=b"CONNECT", host="api.openai.com", port=443,
                                          headers=http.Headers(proxy_authorization=f"Basic {token}")))
    sidecar.http_connect(connect)
    assert connect.response is None  # no proxy auth configured: nothing to refuse

    flow = chat_flow(app=None)
    flow.client_conn = connect.client_conn  # the same tunnel
    state = routed(sidecar, flow)

    assert state.app == "summaries"
    assert (flow.request.host, flow.request.port) == ("127.0.0.1", ports["keyed"])


# -- request: the decision, and the flow pointed at the provider -------------------------------

def test_a_pinned_model_is_sent_to_its_provider_with_the_apps_own_key(
        sidecar: Sidecar, ports: dict[str, int]) -> None:
    flow = chat_flow({"model": "gpt-4o", "messages": HELLO, "prefer": "cheap",
                      "tier": "economy", "temperature": 0.2})

    state = routed(sidecar, flow)

    assert (state.phase, state.way, state.app) == ("routed", "direct", "pinned")
    assert [t.name for t in state.plan] == ["m-own"]
    req = flow.request
    assert (req.scheme, req.host, req.port, req.path) == (
        "http", "127.0.0.1", ports["own"], "/v1/chat/completions")
    assert req.headers["host"] == f"127.0.0.1:{ports['own']}"
    body = json.loads(req.content or b"")
    assert body == {"model": "own-model-v1", "messages": HELLO, "temperature": 0.2}
    assert req.headers["content-length"] == str(len(req.raw_content or b""))
    assert req.headers["authorization"] == f"Bearer {APP_KEY}"  # from-request: the app's key
    assert flow.response is None


def test_an_env_keyed_provider_gets_the_sidecars_key_never_the_apps(
        sidecar: Sidecar, ports: dict[str, int]) -> None:
    flow = chat_flow(app="keyed", openai_organization="org-app")

    routed(sidecar, flow)

    req = flow.request
    assert (req.host, req.port, req.path) == (
        "127.0.0.1", ports["keyed"], "/compat/v1/chat/completions")
    assert json.loads(req.content or b"")["model"] == "keyed-model-v2"
    assert req.headers.get_all("authorization") == [f"Bearer {SIDECAR_KEY}"]
    assert "openai-organization" not in req.headers  # the app's identity stays with its key
    assert APP_KEY not in bytes(req.headers).decode()


@pytest.mark.parametrize(("body", "param"), [
    (b"{not json", None),
    ({"model": "gpt-4o", "messages": HELLO, "stream": "yes"}, "stream"),
    ({"model": "gpt-4o", "messages": HELLO, "prefer": "cheapest"}, "prefer"),
], ids=["invalid-json", "stream-not-boolean", "unknown-prefer"])
def test_a_bad_body_is_answered_400_and_never_forwarded(
        sidecar: Sidecar, body: dict[str, Any] | bytes, param: str | None) -> None:
    flow = chat_flow(body)

    state = routed(sidecar, flow)

    assert flow.response is not None and flow.response.status_code == 400
    error = openai_error(flow.response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if param is None:
        assert error["code"] == "invalid_json"
    assert flow.request.host == SENTINEL_HOST  # still pointed nowhere
    assert (state.way, state.app) == ("answered", "pinned")  # the app that made it, still known


def test_a_bug_inside_routing_answers_502_and_never_forwards(
        sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in routing")

    monkeypatch.setattr(addon_module, "plan_call", broken)
    flow = chat_flow()

    state = routed(sidecar, flow)

    assert flow.response is not None and flow.response.status_code == 502
    error = openai_error(flow.response)
    assert (error["type"], error["code"]) == ("api_error", "sidecar_internal_error")
    assert "a bug in routing" not in error["message"]  # no internals for the app
    assert flow.request.host == SENTINEL_HOST
    assert state.way == "answered"

    sidecar.response(flow)  # booked as the sidecar's own failure, under the app that matched
    assert requests_total(sidecar, app="pinned", requested_model="other", served_model="other",
                          provider="other", outcome="sidecar_error") == 1
    assert sidecar.in_flight == 0


# -- server_connect: the sentinel is never connected to ----------------------------------------

def server_connect(addon: Sidecar, address: tuple[str, int]) -> connection.Server:
    server = connection.Server(address=address)
    addon.server_connect(server_hooks.ServerConnectionHookData(server=server,
                                                               client=tflow.tclient_conn()))
    return server


def test_server_connect_refuses_the_sentinel(sidecar: Sidecar) -> None:
    server = server_connect(sidecar, (SENTINEL_HOST, 443))
    assert server.error and "refusing" in server.error


def test_server_connect_leaves_other_servers_alone(sidecar: Sidecar, ports: dict[str, int]
                                                  ) -> None:
    assert server_connect(sidecar, ("127.0.0.1", ports["own"])).error is None
    assert server_connect(sidecar, ("api.openai.com", 443)).error is None


def test_an_unrouted_flow_would_connect_only_to_the_sentinel(sidecar: Sidecar) -> None:
    """The chain end to end: examined but never routed -> the address mitmproxy would dial is
    the one server_connect refuses."""
    flow = chat_flow()
    sidecar.requestheaders(flow)
    server = server_connect(sidecar, (flow.request.host, flow.request.port))
    assert server.error is not None


# -- response: a direct buffered answer shaped and booked --------------------------------------

def test_a_direct_answer_gets_the_router_headers_and_is_booked(sidecar: Sidecar) -> None:
    flow = chat_flow()
    state = routed(sidecar, flow)
    flow.response = provider_answer(x_request_id="req_from_provider")

    sidecar.responseheaders(flow)
    sidecar.response(flow)

    headers = flow.response.headers
    assert headers["x-model-router-app"] == "pinned"
    assert headers["x-model-router-model"] == "m-own"
    assert headers["x-model-router-provider"] == "own"
    assert headers["x-model-router-reason"] == "pin"
    assert float(headers["x-model-router-overhead-ms"]) >= 0
    assert headers["x-model-router-fallbacks"] == "0"
    assert headers.get_all("x-request-id") == ["req_from_provider"]
    assert json.loads(flow.response.content or b"") == COMPLETION  # the provider's, untouched
    assert state.phase == "finished"
    assert requests_total(sidecar, app="pinned", requested_model="gpt-4o", served_model="m-own",
                          provider="own", outcome="ok") == 1
    assert sample(sidecar, "sidecar_tokens_total", app="pinned", model="m-own",
                  kind="prompt") == 12
    assert sample(sidecar, "sidecar_tokens_total", app="pinned", model="m-own",
                  kind="completion") == 3
    assert sidecar.in_flight == 0
    assert sample(sidecar, "sidecar_in_flight_requests") == 0


def test_a_call_is_booked_once_however_often_response_runs(sidecar: Sidecar) -> None:
    flow = chat_flow()
    routed(sidecar, flow)
    flow.response = provider_answer()
    sidecar.response(flow)
    sidecar.response(flow)
    assert requests_total(sidecar, app="pinned", requested_model="gpt-4o", served_model="m-own",
                          provider="own", outcome="ok") == 1
    assert sidecar.in_flight == 0


def test_a_non_json_success_from_the_provider_becomes_a_502(sidecar: Sidecar) -> None:
    flow = chat_flow()
    routed(sidecar, flow)
    flow.response = provider_answer(body=b"<html>gateway says hi</html>",
                                    content_type="text/html")

    sidecar.responseheaders(flow)
    sidecar.response(flow)

    assert flow.response.status_code == 502
    error = openai_error(flow.response)
    assert error["code"] == "upstream_malformed_response"
    assert "m-own" in error["message"]
    assert flow.response.headers["x-model-router-model"] == "m-own"  # kept on the error
    assert requests_total(sidecar, app="pinned", requested_model="gpt-4o", served_model="m-own",
                          provider="own", outcome="upstream_error") == 1
    assert sidecar.in_flight == 0


def test_a_refused_call_is_booked_under_its_app(sidecar: Sidecar) -> None:
    flow = chat_flow({"model": "gpt-4o", "messages": HELLO, "stream": "yes"})
    routed(sidecar, flow)

    sidecar.response(flow)

    assert flow.response is not None
    assert flow.response.headers["x-model-router-app"] == "pinned"
    assert flow.response.status_code == 400
    assert sidecar.in_flight == 0


def test_response_ignores_flows_the_addon_never_examined(sidecar: Sidecar) -> None:
    flow = tflow.tflow(resp=True)
    sidecar.response(flow)
    assert not any(k.startswith("x-model-router-") for k in flow.response.headers)
    assert requests_total(sidecar, app="other", requested_model="other", served_model="other",
                          provider="other", outcome="ok") == 0


# -- error: a direct call that dies, and a relayed stream that never reached the relay ---------

def test_direct_failures_cool_the_deployment_down(sidecar: Sidecar) -> None:
    own = Deployment("own", "own-model-v1")
    threshold = sidecar.cooldowns.threshold
    assert threshold == 3  # README: "Three failures in a row take a model out ... for 30 s"

    for n in range(1, threshold + 1):
        assert own not in sidecar.cooldowns.down()
        flow = chat_flow()
        state = routed(sidecar, flow)
        assert state.way == "direct"
        flow.error = Error("connection refused")

        sidecar.error(flow)

        assert state.phase == "finished"
        assert sidecar.in_flight == 0
        assert requests_total(sidecar, app="pinned", requested_model="gpt-4o",
                              served_model="m-own", provider="own", outcome="upstream_error") == n

    assert own in sidecar.cooldowns.down()
    assert sample(sidecar, "sidecar_cooldowns_total", model="m-own") == 1
    assert Deployment("keyed", "keyed-model-v2") not in sidecar.cooldowns.down()


def test_a_direct_success_forgets_earlier_failures(sidecar: Sidecar) -> None:
    own = Deployment("own", "own-model-v1")
    for _ in range(sidecar.cooldowns.threshold - 1):
        flow = chat_flow()
        routed(sidecar, flow)
        flow.error = Error("connection refused")
        sidecar.error(flow)
    flow = chat_flow()
    routed(sidecar, flow)
    flow.response = provider_answer()
    sidecar.response(flow)  # a good answer: the failures in a row start again from zero

    flow = chat_flow()
    routed(sidecar, flow)
    flow.error = Error("connection refused")
    sidecar.error(flow)

    assert own not in sidecar.cooldowns.down()


def test_a_refused_call_that_errors_is_no_deployment_failure(sidecar: Sidecar) -> None:
    """An error after the sidecar answered itself (the app hung up) says nothing of a provider."""
    for _ in range(sidecar.cooldowns.threshold):
        flow = chat_flow(b"{not json")
        routed(sidecar, flow)
        flow.error = Error("client disconnected")
        sidecar.error(flow)
        assert sidecar.in_flight == 0
    assert dict(sidecar.cooldowns.down()) == {}


async def test_a_relayed_stream_whose_flow_dies_before_the_relay_is_forgotten(
        rules_path: Path) -> None:
    addon = Sidecar(environ=ENVIRON, explore_rate=0.0)
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sidecar_rules=str(rules_path))
        await addon.running()
        try:
            assert addon.relay is not None
            flow = chat_flow({"model": "gpt-4o", "messages": HELLO, "stream": True},
                             app="fallback")

            state = routed(addon, flow)  # a stream: pointed at the relay, not awaited here

            assert state.way == "relayed"
            assert [t.name for t in state.plan] == ["m-own", "m-keyed"]
            assert state.relay_path is not None and state.relay_path.startswith(RELAY_PATH)
            assert list(addon.relay.jobs.values()) == [state.job]
            req = flow.request
            assert (req.host, req.port, req.path) == (
                "127.0.0.1", addon.relay.port, state.relay_path)
            assert APP_KEY not in bytes(req.headers).decode()  # the job holds the request

            flow.error = Error("client disconnected")  # before mitmproxy reached the relay
            addon.error(flow)

            assert addon.relay.jobs == {}
            assert state.phase == "finished"
            assert addon.in_flight == 0
            # the relay was never asked: no deployment is blamed
            assert dict(addon.cooldowns.down()) == {}
        finally:
            await addon.done()


async def test_a_relayed_call_that_does_not_stream_is_answered_in_the_hook(
        rules_path: Path) -> None:
    """A plan of two answered in the request hook: both providers unreachable (nothing listens
    on their ports), so the app gets the last failure as an OpenAI error, never a forward."""
    addon = Sidecar(environ=ENVIRON, explore_rate=0.0)
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sidecar_rules=str(rules_path))
        await addon.running()
        try:
            assert addon.relay is not None
            flow = chat_flow(app="fallback")
            addon.requestheaders(flow)

            pending = addon.request(flow)

            assert pending is not None
            state = flow.metadata["sidecar"]
            assert state.way == "relayed"
            assert flow.request.host == SENTINEL_HOST  # never pointed anywhere
            assert addon.relay.jobs == {}  # served in the hook, not submitted
            await pending
            assert flow.response is not None and flow.response.status_code == 502
            assert openai_error(flow.response)["code"] == "upstream_connect_error"
            assert flow.response.headers["x-model-router-fallbacks"] == "2"
            assert [(t.name, why) for t, why in state.failures] == [
                ("m-own", "connect"), ("m-keyed", "connect")]

            addon.response(flow)
            assert flow.response.headers["x-model-router-app"] == "fallback"
            assert addon.in_flight == 0
            assert sample(addon, "sidecar_upstream_errors_total", provider="own",
                          reason="connect") == 1
        finally:
            await addon.done()


# -- an error's meaning: whose failure it is, and how the call is booked -----------------------

def test_an_app_hanging_up_is_no_failure_of_its_provider(sidecar: Sidecar) -> None:
    own = Deployment("own", "own-model-v1")
    for _ in range(sidecar.cooldowns.threshold):
        flow = chat_flow()
        routed(sidecar, flow)
        flow.error = Error("Client disconnected.")  # mitmproxy's message (_http1.py)
        sidecar.error(flow)
        assert sidecar.in_flight == 0
    assert own not in sidecar.cooldowns.down()
    assert sample(sidecar, "sidecar_upstream_errors_total", provider="own", reason="connect") == 0
    # Booked as the app's cancelled call (499), under its app and the model it was sent to.
    assert requests_total(sidecar, app="pinned", requested_model="gpt-4o", served_model="m-own",
                          provider="own", outcome="client_error") == sidecar.cooldowns.threshold


def test_an_app_that_closed_its_connection_is_no_failure_of_its_provider(sidecar: Sidecar
                                                                        ) -> None:
    """HTTP/2 and others say it differently: the app's connection no longer reads."""
    flow = chat_flow()
    routed(sidecar, flow)
    flow.client_conn.state = ConnectionState.CAN_WRITE  # the app sent its FIN
    flow.error = Error("Stream reset, error code 8")
    sidecar.error(flow)
    assert sample(sidecar, "sidecar_upstream_errors_total", provider="own", reason="connect") == 0


def test_a_provider_that_cannot_be_reached_fails_even_when_the_app_left(sidecar: Sidecar
                                                                       ) -> None:
    flow = chat_flow()
    routed(sidecar, flow)
    flow.server_conn.error = "Connect call failed"
    flow.client_conn.state = ConnectionState.CLOSED
    flow.error = Error("Connect call failed")
    sidecar.error(flow)
    assert sample(sidecar, "sidecar_upstream_errors_total", provider="own", reason="connect") == 1


def test_a_failed_direct_attempt_is_an_upstream_error(sidecar: Sidecar) -> None:
    flow = chat_flow()
    routed(sidecar, flow)
    flow.error = Error("[Errno 111] Connect call failed ('127.0.0.1', 1)")
    sidecar.error(flow)
    assert sample(sidecar, "sidecar_upstream_errors_total", provider="own",
                  reason="connect") == 1


def test_a_flow_that_dies_before_routing_is_no_sidecar_error(sidecar: Sidecar) -> None:
    flow = chat_flow()
    sidecar.requestheaders(flow)  # mitmproxy calls it before refusing the body
    flow.error = Error("Request body exceeds mitmproxy's body_size_limit.")
    sidecar.error(flow)
    assert sidecar.in_flight == 0
    assert requests_total(sidecar, app="other", requested_model="other", served_model="other",
                          provider="other", outcome="sidecar_error") == 0
    # Booked under the app that sent it, as the 413 mitmproxy answered.
    assert requests_total(sidecar, app="pinned", requested_model="other", served_model="other",
                          provider="other", outcome="client_error") == 1
