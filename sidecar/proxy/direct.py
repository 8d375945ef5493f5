"""The fast path: mitmproxy itself sends a call to the one model of its plan.

* ``send(flow, call)``: point the flow at the provider with the attempt's exact request;
* ``stream(call, flow, include_usage)``: the transform a streamed answer passes through (usage
  read, a Bedrock event stream transcoded), with headers fit for a body whose length changes;
* ``shape(flow, call)``: a buffered answer as the provider's adapter shapes it -- the same
  answer code as the relay's (``sidecar.forward.answer``);
* ``failure(flow)``: what a flow's error means for the provider that was called: its failure
  (unreachable, hung up, broke the protocol), or None when the app left first.
"""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.connection import ConnectionState

from sidecar.apis.models import with_intent_models
from sidecar.forward import answer as answers
from sidecar.providers import Answer, StreamTransform, UpstreamCall
from sidecar.proxy.flow import LowerHeaders, point

CLIENT_LEFT = "Client disconnected"  # mitmproxy's message when the app hangs up (HTTP/1)


def send(flow: http.HTTPFlow, call: UpstreamCall) -> None:
    headers = call.headers
    if call.stream:  # read (usage, Bedrock frames) as it arrives: no compression
        headers = {**headers, "accept-encoding": "identity"}
    point(flow.request, call.endpoint, call.path, headers, call.body)


def stream(call: UpstreamCall, flow: http.HTTPFlow, include_usage: bool
           ) -> StreamTransform | None:
    """None when the provider compressed the stream anyway (it is then passed through as it
    is, usage unread)."""
    assert flow.response is not None
    headers = flow.response.headers
    if headers.get("content-encoding", "identity").lower() != "identity":
        return None
    transform = answers.stream_transform(call, request_id=headers.get("x-amzn-requestid", ""),
                                         include_usage=include_usage)
    headers.pop("content-length", None)
    if not (flow.request.is_http2 or flow.request.is_http3):  # the app's side; h2 frames itself
        headers["transfer-encoding"] = "chunked"  # whatever the provider spoke (h2 has no TE)
    content_type = answers.stream_content_type(call)
    if content_type is not None:
        headers["content-type"] = content_type
    return transform


def shape(flow: http.HTTPFlow, call: UpstreamCall, *, app_path: str) -> Answer:
    """The buffered answer mitmproxy fetched, shaped by the provider's adapter; the flow's
    response is replaced when the app must get something else (the router's headers kept)."""
    response = flow.response
    assert response is not None
    content = response.get_content(strict=False) or b""
    answer = answers.buffered(call, response.status_code, LowerHeaders(response.headers), content)
    body: bytes | None = answer.body
    if call.api == "other" and answer.verdict == "ok" and flow.request.method == "GET" and (
            app_path.split("?")[0].endswith("/models")):
        body = with_intent_models(content)
    if body is not None and body is not content:
        router = {k: v for k, v in response.headers.items()
                  if k.lower().startswith("x-model-router-")}
        flow.response = http.Response.make(answer.status, body, {**answer.headers, **router})
    return answer


def failure(flow: http.HTTPFlow) -> str | None:
    """Why the provider failed this flow ("connect": never reached; "stream": its answer broke
    off), or None when the app hung up first (a cancelled call, a client-side timeout): that
    says nothing of the provider's health."""
    if flow.server_conn.error:  # mitmproxy could not connect
        return "connect"
    message = flow.error.msg if flow.error else ""
    app_left = message.startswith(CLIENT_LEFT) or not (
        flow.client_conn.state & ConnectionState.CAN_READ)
    if app_left:
        return None
    return "stream" if flow.response is not None else "connect"
