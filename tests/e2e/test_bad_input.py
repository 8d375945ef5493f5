"""Bad input is the app's 400 (or 408), never the sidecar's 502: through a real sidecar.

Bodies Python cannot take (nested too deeply, a number too long to convert) and a ``stream``
that is not a boolean are refused with one OpenAI error naming the problem, one log line and no
traceback; a request that stops arriving (headers or body) is answered 408 once
``sidecar_read_timeout`` is over, and its connection closed. Keep-alive idle time is not a slow
request.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e.harness import APP_KEY, HELLO, RunningSidecar, wait_for

pytestmark = pytest.mark.e2e

SHORT = 0.3  # seconds: the read deadline these tests run with
ANSWER_WITHIN = 10.0  # the client's own timeout: generous, nothing here is timed


def chat_body(**fields: Any) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": HELLO, **fields}).encode()


DEEP = 100_000
TOO_DEEP = b'{"model": "gpt-4o", "messages": ' + b"[" * DEEP + b"]" * DEEP + b"}"
LONG_NUMBER = b'{"model": "gpt-4o", "messages": [], "max_tokens": ' + b"9" * 5_000 + b"}"


@pytest.mark.parametrize(("path", "body", "code", "param", "words"), [
    ("chat/completions", TOO_DEEP, "invalid_json", None, "nested too deeply"),
    ("chat/completions", b"[" * DEEP + b"]" * DEEP, "invalid_json", None, "nested too deeply"),
    ("responses", b'{"model": "gpt-4o", "input": ' + b"[" * DEEP + b"]" * DEEP + b"}",
     "invalid_json", None, "nested too deeply"),
    ("chat/completions", LONG_NUMBER, "invalid_json", None, "more than 4300 digits"),
    ("chat/completions", chat_body(stream="yes"), "invalid_type", "stream", "boolean"),
    ("responses", b'{"model": "gpt-4o", "input": "hi", "stream": "yes"}', "invalid_type",
     "stream", "boolean"),
    ("chat/completions", chat_body(stream=True, stream_options="usage"), "invalid_type",
     "stream_options", "object"),
    ("chat/completions", chat_body(messages="Say hello."), "invalid_type", "messages",
     "array"),
])
def test_bad_input_is_one_400_with_one_log_line(sidecar: RunningSidecar, up1: Any, up2: Any,
                                                caplog: pytest.LogCaptureFixture, path: str,
                                                body: bytes, code: str, param: str | None,
                                                words: str) -> None:
    caplog.set_level(logging.INFO)
    resp = requests.post(f"{sidecar.base_url}/{path}", data=body, timeout=ANSWER_WITHIN,
                         headers={"authorization": f"Bearer {APP_KEY}",
                                  "content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert words in error["message"]
    assert up1.requests == [] and up2.requests == []
    assert wait_for(lambda: sidecar_lines(caplog))  # the access line, written off the hook
    lines = sidecar_lines(caplog)
    assert [r.name for r in lines] == ["sidecar.access"], [r.getMessage() for r in lines]
    assert json.loads(lines[0].getMessage())["status"] == 400
    assert not any(r.exc_info for r in caplog.records)


def sidecar_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What ``model-router run`` writes: the sidecar's lines, mitmproxy's warnings and errors."""
    return [r for r in caplog.records if r.name.startswith("sidecar") and r.levelno >= logging.INFO
            or r.name.startswith("mitmproxy") and r.levelno >= logging.WARNING]


@pytest.fixture
def short_deadline(sidecar: RunningSidecar) -> Iterator[RunningSidecar]:
    async def shorten() -> None:
        sidecar._master.options.update(sidecar_read_timeout=SHORT)

    sidecar.call(shorten())
    yield sidecar


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN)
    sock.settimeout(ANSWER_WITHIN)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the sidecar sends until it closes the connection (or the client's timeout)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def head(path: str = "/v1/chat/completions", length: int = 100) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: api.openai.com\r\n"
            f"Authorization: Bearer {APP_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def assert_408(raw: bytes) -> dict[str, Any]:
    status_line, _, rest = raw.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), raw[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    error: dict[str, Any] = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_timeout")
    assert "sidecar_read_timeout" in error["message"]
    return error


def test_a_body_that_stops_arriving_is_answered_408(short_deadline: RunningSidecar, up1: Any,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with connect(short_deadline.port("reverse")) as sock:
        sock.sendall(head(length=200) + chat_body()[:20])  # then nothing more
        raw = read_all(sock)  # the 408, then the sidecar closes the connection
    error = assert_408(raw)
    assert "body" in error["message"]
    assert up1.requests == []
    # The flow the headers opened is finished: nothing stays in flight.
    assert wait_for(lambda: short_deadline.addon.in_flight == 0)
    assert any("answered 408" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records)


def test_headers_that_stop_arriving_are_answered_408(short_deadline: RunningSidecar,
                                                     up1: Any) -> None:
    with connect(short_deadline.port("reverse")) as sock:
        sock.sendall(head()[:40])  # half a request line and header, then nothing more
        error = assert_408(read_all(sock))
    assert "headers" in error["message"]
    assert up1.requests == []


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_request_through_the_explicit_proxy_tunnel_has_the_deadline_too(
        short_deadline: RunningSidecar, up1: Any, part: str) -> None:
    """CONNECT, TLS with the sidecar's CA, then half a request head (the request line and the
    start of the Host header: mitmproxy must not wait for its end to choose the layer) or half
    a body: the 408 comes encrypted."""
    sock = connect(short_deadline.port("regular"))
    sock.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cafile=str(short_deadline.ca.cert))
    context.set_alpn_protocols(["http/1.1"])
    with context.wrap_socket(sock, server_hostname="api.openai.com") as tls:
        tls.sendall(head()[:40] if part == "headers" else head(length=200) + chat_body()[:20])
        raw = b""
        try:
            while chunk := tls.recv(65536):
                raw += chunk
        except ssl.SSLError:  # a close without close_notify after the answer: still answered
            pass
    assert part in assert_408(raw)["message"]
    assert up1.requests == []


def test_keep_alive_idle_time_is_not_a_slow_request(short_deadline: RunningSidecar,
                                                    up1: Any) -> None:
    body = chat_body()
    with connect(short_deadline.port("reverse")) as sock:
        sock.sendall(head(length=len(body)) + body)
        first = read_response(sock)
        # Idle for several deadlines: the sidecar neither answers nor closes.
        sock.settimeout(4 * SHORT)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.settimeout(ANSWER_WITHIN)
        sock.sendall(head(length=len(body)) + body)
        second = read_response(sock)
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
    assert len(up1.requests) == 2


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a content-length (what the fake upstream answers)."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536)
    headers, _, body = raw.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in headers.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return raw
