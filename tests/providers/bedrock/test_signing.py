"""BedrockSigner: credentials from the AWS chain, SigV4 headers that Bedrock (the fake) accepts."""

from __future__ import annotations

import json
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from sidecar.core.errors import ConfigError, UpstreamError
from sidecar.providers.bedrock.request import converse_path, to_converse_request
from sidecar.providers.bedrock.signing import BedrockSigner, endpoint
from sidecar.providers.bedrock.stream import ConverseStreamTranslator
from sidecar.providers.bedrock.transcode import EventStreamToSSE
from tests.fakes.bedrock import TEST_ACCESS_KEY, TEST_REGION, TEST_SECRET_KEY, FakeBedrock

from .specs import model_spec

BODY = json.dumps({"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}).encode()
SPEC = model_spec(upstream_id="us.anthropic.claude-haiku-4-5-20251001-v1:0")


def _send(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    with httpx.Client(trust_env=False) as http:
        return http.post(url, headers=headers, content=body)


def _signed(
    fake: FakeBedrock, body: bytes = BODY, *, stream: bool = False
) -> tuple[str, dict[str, str]]:
    signer = BedrockSigner(TEST_REGION, endpoint_url=fake.url)
    url = signer.url(converse_path(SPEC, stream=stream))
    return url, signer.sign(method="POST", url=url, headers={}, body=body)


@pytest.mark.usefixtures("test_credentials")
def test_signed_request_is_accepted(fake: FakeBedrock) -> None:
    url, headers = _signed(fake)
    assert {"Authorization", "X-Amz-Date", "Content-Type", "host"} <= set(headers)
    assert headers["accept-encoding"] == "identity"
    assert "X-Amz-Security-Token" not in headers
    assert "Credential=" + TEST_ACCESS_KEY in headers["Authorization"]
    assert f"/{TEST_REGION}/bedrock/aws4_request" in headers["Authorization"]
    reply = _send(url, headers, BODY)
    assert reply.status_code == 200, reply.text
    assert fake.requests[-1].signature_ok
    assert fake.requests[-1].model_id == SPEC.upstream_id
    assert reply.json()["output"]["message"]["content"] == [{"text": "You said: Hi"}]


@pytest.mark.usefixtures("test_credentials")
def test_session_token_is_sent_and_signed(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-value")
    url, headers = _signed(fake)
    assert headers["X-Amz-Security-Token"] == "session-token-value"
    assert "x-amz-security-token" in headers["Authorization"]
    assert _send(url, headers, BODY).status_code == 200


@pytest.mark.usefixtures("test_credentials")
def test_signature_covers_the_body(fake: FakeBedrock) -> None:
    url, headers = _signed(fake)
    _, other = _signed(fake, BODY.replace(b"Hi", b"Ho"))
    assert headers["Authorization"] != other["Authorization"]
    tampered = _send(url, headers, BODY.replace(b"Hi", b"Ho"))
    assert tampered.status_code == 403
    assert tampered.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException")
    assert not fake.requests[-1].signature_ok


@pytest.mark.usefixtures("test_credentials")
def test_signed_stream_transcodes_end_to_end(fake: FakeBedrock) -> None:
    """Signer + path + translated body -> the fake's real event stream -> SSE, as the addon will."""
    body = json.dumps(
        to_converse_request({"messages": [{"role": "user", "content": "Hey"}]}, SPEC)
    ).encode()
    url, headers = _signed(fake, body, stream=True)
    sse = EventStreamToSSE(
        ConverseStreamTranslator(model="m", created=1, response_id="chatcmpl-x", include_usage=True)
    )
    out: list[bytes] = []
    with (
        httpx.Client(trust_env=False) as http,
        http.stream("POST", url, headers=headers, content=body) as reply,
    ):
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/vnd.amazon.eventstream"
        for raw in reply.iter_raw(chunk_size=7):
            out += sse(raw)
    out += sse(b"")
    assert out[-1] == b"data: [DONE]\n\n"
    chunks = [json.loads(line[6:]) for line in out[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "You said: Hey"
    assert chunks[-1]["usage"]["total_tokens"] > 0


def test_no_credentials(tmp_path: Path) -> None:
    signer = BedrockSigner(TEST_REGION)
    assert signer.has_credentials() is False
    assert signer.resolve() is False and signer.needs_refresh()
    with pytest.raises(UpstreamError, match="no AWS credentials"):
        signer.sign(
            method="POST", url="https://example.test/model/m/converse", headers={}, body=b""
        )


def test_unknown_profile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nope"):
        BedrockSigner(TEST_REGION, profile="nope").resolve()


def test_credentials_from_a_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeBedrock
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[bedrock]\naws_access_key_id = {TEST_ACCESS_KEY}\n"
        f"aws_secret_access_key = {TEST_SECRET_KEY}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    signer = BedrockSigner(TEST_REGION, endpoint_url=fake.url, profile="bedrock")
    assert signer.resolve() and not signer.needs_refresh()
    url = signer.url(converse_path(SPEC, stream=False))
    assert _send(url, signer.sign(method="POST", url=url, headers={}, body=BODY), BODY).is_success


def _process_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expires_in: timedelta
) -> Path:
    """A profile whose credential_process hands out temporary credentials and counts its runs."""
    counter = tmp_path / "runs"
    script = tmp_path / "creds.py"
    expiry = (datetime.now(UTC) + expires_in).strftime("%Y-%m-%dT%H:%M:%SZ")
    script.write_text(
        textwrap.dedent(f"""
        import json, pathlib
        runs = pathlib.Path({str(counter)!r})
        runs.write_text(str(int(runs.read_text() if runs.exists() else 0) + 1))
        print(json.dumps({{"Version": 1, "AccessKeyId": {TEST_ACCESS_KEY!r},
                           "SecretAccessKey": {TEST_SECRET_KEY!r}, "SessionToken": "tok",
                           "Expiration": {expiry!r}}}))
    """)
    )
    config = tmp_path / "config"
    config.write_text(f"[profile temp]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    return counter


def test_refreshable_credentials_are_refreshed_when_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeBedrock
) -> None:
    runs = _process_profile(tmp_path, monkeypatch, timedelta(minutes=12))  # advisory window
    signer = BedrockSigner(TEST_REGION, endpoint_url=fake.url, profile="temp")
    assert signer.resolve()
    before = int(runs.read_text())
    assert signer.needs_refresh()
    url = signer.url(converse_path(SPEC, stream=False))
    headers = signer.sign(method="POST", url=url, headers={}, body=BODY)  # refreshes first
    assert int(runs.read_text()) > before
    assert headers["X-Amz-Security-Token"] == "tok"
    assert _send(url, headers, BODY).is_success


def test_fresh_temporary_credentials_need_no_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _process_profile(tmp_path, monkeypatch, timedelta(hours=2))
    signer = BedrockSigner(TEST_REGION, profile="temp")
    assert signer.resolve() and not signer.needs_refresh()
    signer.sign(method="POST", url="https://bedrock.test/model/m/converse", headers={}, body=b"{}")
    assert runs.read_text() == "1"


@pytest.mark.parametrize(
    ("region", "url", "expected"),
    [
        ("us-east-1", None, "https://bedrock-runtime.us-east-1.amazonaws.com"),
        ("eu-central-1", None, "https://bedrock-runtime.eu-central-1.amazonaws.com"),
        ("us-east-1", "http://127.0.0.1:9999/", "http://127.0.0.1:9999"),
    ],
)
def test_endpoint(region: str, url: str | None, expected: str) -> None:
    assert endpoint(region, url) == expected
    assert (
        BedrockSigner(region, endpoint_url=url).url("/model/x/converse")
        == expected + "/model/x/converse"
    )


@pytest.mark.usefixtures("test_credentials")
@pytest.mark.parametrize(
    ("url", "host"),
    [
        (
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
            "bedrock-runtime.us-east-1.amazonaws.com",
        ),
        (
            "https://bedrock-runtime.us-east-1.amazonaws.com:443/model/m/converse",
            "bedrock-runtime.us-east-1.amazonaws.com",
        ),
        ("http://127.0.0.1:8080/model/m/converse", "127.0.0.1:8080"),
    ],
)
def test_host_header(url: str, host: str) -> None:
    headers = BedrockSigner(TEST_REGION).sign(method="POST", url=url, headers={}, body=b"{}")
    assert headers["host"] == host


@pytest.mark.usefixtures("test_credentials")
def test_given_headers_are_signed_and_host_is_not_doubled(fake: FakeBedrock) -> None:
    signer = BedrockSigner(TEST_REGION, endpoint_url=fake.url)
    url = signer.url(converse_path(SPEC, stream=True))
    given = {
        "Host": "elsewhere",
        "Accept": "application/vnd.amazon.eventstream",
        "Accept-Encoding": "gzip",
        "content-type": "application/json",
    }
    headers = signer.sign(method="POST", url=url, headers=given, body=BODY)
    lowered = [name.lower() for name in headers]
    assert len(lowered) == len(set(lowered))
    assert headers["accept-encoding"] == "identity" and headers["host"] == url.split("/")[2]
    assert "accept;content-type;host;x-amz-date" in headers["Authorization"]
    with (
        httpx.Client(trust_env=False) as http,
        http.stream("POST", url, headers=headers, content=BODY) as reply,
    ):
        assert reply.status_code == 200
        reply.read()
    assert fake.requests[-1].signature_ok
