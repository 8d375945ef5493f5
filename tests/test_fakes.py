"""The test fakes speak the real protocols: checked with the real openai SDK, requests, curl."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
import requests

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.tls_host import TLSHost

ENV_VARS_TO_DROP = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "AWS_CA_BUNDLE",
)
MESSAGES = [{"role": "user", "content": "Hello there, fake!"}]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CA bundle preset on this machine may leak into a test."""
    for name in ENV_VARS_TO_DROP:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def up() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(name="up1") as server:
        yield server
    assert server.errors == []


def sdk(server: FakeOpenAI, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url,
        api_key="sk-test",
        max_retries=0,
        timeout=timeout,
        http_client=httpx2.Client(trust_env=False, timeout=timeout),
    )


@pytest.fixture
def client(up: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with sdk(up) as c:
        yield c


# -- FakeOpenAI through the openai SDK -----------------------------------------------------


def test_chat_completion(up: FakeOpenAI, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.id == "chatcmpl-1"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == "up1 says hi to gpt-4o-mini"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len("Hello there, fake!") // 4 + 1
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 5
    assert completion._request_id == "req_1"


def test_recorded_request_is_what_the_sdk_sent(up: FakeOpenAI, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.5)

    [req] = up.requests
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.url_path == "/v1/chat/completions" and req.query == ""
    assert req.headers.get("Authorization") == "Bearer sk-test"
    assert req.headers["content-type"] == "application/json"
    assert req.json == {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0.5}
    assert json.loads(req.body) == req.json
    assert req.received_at <= time.monotonic()


def test_stream_with_usage(up: FakeOpenAI, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    with stream:
        chunks = list(stream)

    assert {c.id for c in chunks} == {"chatcmpl-1"}
    assert {c.model for c in chunks} == {"gpt-4o-mini"}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    first, *content, finish, usage_chunk = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    pieces = [c.choices[0].delta.content for c in content]
    assert pieces == ["up1", " says", " hi", " to", " gpt-4o-mini"]
    assert "".join(p or "" for p in pieces) == "up1 says hi to gpt-4o-mini"
    assert finish.choices[0].finish_reason == "stop"
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None and usage_chunk.usage.completion_tokens == 5


def test_stream_without_usage_has_no_usage_chunk(up: FakeOpenAI, client: openai.OpenAI) -> None:
    with client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        chunks = list(stream)

    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_stream_is_delivered_incrementally() -> None:
    with FakeOpenAI(name="slow", stream_delay=0.1, stream_chunks=5) as server, sdk(server) as c:
        arrivals: list[float] = []
        with c.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    arrivals.append(time.monotonic())
                    # the request is visible to the test while the answer is still streaming
                    assert len(server.requests) == 1

    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] >= 0.3


def test_path_prefix_and_custom_reply() -> None:
    with FakeOpenAI(name="p", prefix="/proxy/v1", reply="custom text") as server, sdk(server) as c:
        assert server.base_url.endswith("/proxy/v1")
        completion = c.chat.completions.create(model="x", messages=MESSAGES)
        assert completion.choices[0].message.content == "custom text"
        assert server.requests[0].path == "/proxy/v1/chat/completions"


def test_models_and_embeddings(up: FakeOpenAI, client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == up.models
    assert {m.owned_by for m in models.data} == {"up1"}
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"

    emb = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])  # base64
    assert emb.model == "text-embedding-3-small"
    assert [d.index for d in emb.data] == [0, 1]
    assert len(emb.data[0].embedding) == 8
    assert up.requests[-1].json["encoding_format"] == "base64"

    floats = client.embeddings.create(model="e", input="a", encoding_format="float", dimensions=4)
    assert floats.data[0].embedding == pytest.approx(emb.data[0].embedding[:4], abs=1e-6)


def test_unknown_path_is_openai_404(up: FakeOpenAI, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.get("/nope", cast_to=object)

    assert info.value.code == "not_found"
    assert info.value.type == "invalid_request_error"


def test_scripted_errors(up: FakeOpenAI, client: openai.OpenAI) -> None:
    up.script(status=429, headers={"retry-after": "7"})
    boom = {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    up.script(status=500, body=boom)

    with pytest.raises(openai.RateLimitError) as rate:
        client.chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(openai.InternalServerError) as internal:
        client.chat.completions.create(model="m", messages=MESSAGES)
    completion = client.chat.completions.create(model="m", messages=MESSAGES)  # queue empty again

    assert rate.value.status_code == 429
    assert rate.value.code == "rate_limit_exceeded"
    assert rate.value.response.headers["retry-after"] == "7"
    assert internal.value.message.endswith("boom")
    assert completion.choices[0].message.content == "up1 says hi to m"
    assert len({r.conn_id for r in up.requests}) == 1  # keep-alive: one connection for all three


def test_scripted_delay_reset_and_hang(up: FakeOpenAI) -> None:
    up.script(delay=0.2)
    up.script(reset=True)
    up.script(hang=True)
    with sdk(up, timeout=0.5) as c:
        started = time.monotonic()
        c.chat.completions.create(model="m", messages=MESSAGES)
        assert time.monotonic() - started >= 0.2
        with pytest.raises(openai.APIConnectionError):
            c.chat.completions.create(model="m", messages=MESSAGES)
        with pytest.raises(openai.APITimeoutError):
            c.chat.completions.create(model="m", messages=MESSAGES)
    assert len(up.requests) == 3


def test_scripted_mid_stream_reset(up: FakeOpenAI, client: openai.OpenAI) -> None:
    up.script(stream_reset_after=3)
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        with client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
            for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

    assert received == ["", "up1", " says"]


def test_scripted_raw_body(up: FakeOpenAI) -> None:
    up.script(status=200, body=b"not json", headers={"content-type": "text/plain"})
    with httpx2.Client(trust_env=False) as http:
        response = http.get(f"{up.base_url}/models")
    assert (response.status_code, response.content) == (200, b"not json")
    assert response.headers["content-type"] == "text/plain"


# -- FakeOpenAI through curl -----------------------------------------------------------------


def test_curl_streams_incrementally() -> None:
    with FakeOpenAI(name="c", stream_delay=0.1, stream_chunks=4) as server:
        body = json.dumps({"model": "m", "messages": MESSAGES, "stream": True})
        cmd = ["/usr/bin/curl", "-sS", "-N", "-i", "--noproxy", "*", "--max-time", "5",
               "-H", "content-type: application/json", "-d", body,
               f"{server.base_url}/chat/completions"]  # fmt: skip
        lines: list[tuple[float, str]] = []
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, env=dict(os.environ)) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.append((time.monotonic(), raw.decode().rstrip("\r\n")))
        assert proc.returncode == 0

    texts = [text for _, text in lines]
    head = [text.lower() for text in texts[: texts.index("")]]
    assert lines[0][1].startswith("HTTP/1.1 200")
    assert "transfer-encoding: chunked" in head
    assert not any(h.startswith("content-length") for h in head)
    events = [(t, text.removeprefix("data: ")) for t, text in lines if text.startswith("data: ")]
    assert events[-1][1] == "[DONE]"
    content = [(t, json.loads(e)["choices"][0]["delta"].get("content")) for t, e in events[1:-2]]
    assert "".join(c for _, c in content) == "c says hi to m"
    assert content[-1][0] - content[0][0] >= 0.2


# -- TLSHost ---------------------------------------------------------------------------------


@pytest.fixture
def tls_host() -> Iterator[TLSHost]:
    with TLSHost() as host:
        yield host
    assert host.errors == []


def test_tls_host_with_its_ca(tls_host: TLSHost) -> None:
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(f"{tls_host.url}/some/path?q=1", verify=tls_host.ca_path)
        by_name = session.get(f"https://localhost:{tls_host.port}/x", verify=tls_host.ca_path)

    assert response.status_code == 200
    assert response.json() == {"host": "tls-host", "path": "/some/path?q=1"}
    assert by_name.json()["path"] == "/x"
    assert Path(tls_host.ca_path).read_bytes() == tls_host.ca_pem


def test_tls_host_is_not_publicly_trusted(tls_host: TLSHost) -> None:
    with requests.Session() as session:
        session.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            session.get(tls_host.url, verify=True)

    assert tls_host.requests == []  # the client gave up during the handshake


def test_tls_host_presents_its_own_certificate(tls_host: TLSHost) -> None:
    context = tls_host.client_context()
    with socket.create_connection((tls_host.host, tls_host.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            peer = tls.getpeercert(binary_form=True)
            assert tls.selected_alpn_protocol() in (None, "http/1.1")

    assert peer == tls_host.cert_der
    assert len(tls_host.ca_fingerprint) == 64
    assert ssl.DER_cert_to_PEM_cert(tls_host.material.ca_der).encode() == tls_host.ca_pem


def test_tls_host_ca_file_is_removed_on_stop() -> None:
    with TLSHost() as host:
        path = host.ca_path
        assert os.path.exists(path)
    assert not os.path.exists(path)
    assert base64.b64decode(b"".join(host.ca_pem.splitlines()[1:-1]))  # still readable after stop


async def test_async_sdk_streams_from_an_asyncio_test() -> None:
    """The fake's own thread and loop are independent of the test's event loop."""
    with FakeOpenAI(name="a", stream_delay=0.01) as server:
        async with openai.AsyncOpenAI(
            base_url=server.base_url,
            api_key="sk-test",
            max_retries=0,
            http_client=httpx2.AsyncClient(trust_env=False),
        ) as client:
            stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            async with stream:
                text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "a says hi to m"
