"""Bad input gets one OpenAI-format error; other hosts are tunnelled; a sidecar bug fails closed."""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl

import openai
import pytest
import requests

from sidecar.proxy import routing as routing_module
from tests.e2e.harness import APP_KEY, CHEAP_KEY, HELLO, proxied_client
from tests.fakes.tls_host import TLSHost

pytestmark = pytest.mark.e2e


def post_raw(sidecar, body: bytes, content_type: str = "application/json") -> requests.Response:
    return requests.post(f"{sidecar.base_url}/chat/completions", data=body, timeout=10,
                         headers={"authorization": f"Bearer {APP_KEY}",
                                  "content-type": content_type})


def assert_openai_error(resp: requests.Response, status: int, code: str, param: str | None):
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["param"] == param
    assert error["message"]
    assert resp.headers["x-request-id"]
    return error


@pytest.mark.parametrize(
    ("body", "code", "param", "words"),
    [
        (b"this is not json", "invalid_json", None, "not valid JSON"),
        (b"", "invalid_json", None, "empty"),
        (b"[1, 2]", "invalid_json", None, "JSON object"),
        (json.dumps({"messages": HELLO}).encode(), "missing_model", "model", "model"),
        (json.dumps({"model": "auto", "prefer": "cheapest", "messages": HELLO}).encode(),
         "invalid_value", "prefer", "cheap, fast, balanced, quality, coding"),
        (json.dumps({"model": "auto", "tier": "gold", "messages": HELLO}).encode(),
         "invalid_value", "tier", "economy, standard, premium, auto"),
        (json.dumps({"model": "auto", "max_tokens": -5, "messages": HELLO}).encode(),
         "invalid_value", "max_tokens", "positive integer"),
    ],
)
def test_bad_request_bodies_get_a_400_naming_the_problem(sidecar, up1, up2, body, code, param,
                                                         words):
    error = assert_openai_error(post_raw(sidecar, body), 400, code, param)
    assert words in error["message"]
    assert error["type"] == "invalid_request_error"
    assert up1.requests == [] and up2.requests == []


def test_unknown_prefer_is_a_bad_request_error_in_the_sdk(sidecar, up1, monkeypatch):
    client = proxied_client(sidecar, monkeypatch)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="auto", messages=HELLO,
                                       extra_body={"prefer": "cheapest"})
    assert info.value.body["param"] == "prefer"
    assert up1.requests == []


def test_a_model_that_does_not_exist_with_intent_is_404(sidecar, up1, monkeypatch):
    client = proxied_client(sidecar, monkeypatch)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="m-nonexistent", messages=HELLO,
                                       extra_body={"prefer": "cheap"})
    assert info.value.code == "model_not_found"
    assert up1.requests == []


def test_no_eligible_model_explains_why(sidecar, up1, up2, monkeypatch):
    """Economy models in the test catalog support no tools, so nothing can serve this."""
    client = proxied_client(sidecar, monkeypatch)
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="economy", messages=HELLO, tools=[tool])
    assert info.value.code == "no_eligible_model"
    assert "m-cheap: does not support tools" in info.value.message
    assert up1.requests == [] and up2.requests == []


def test_context_too_large_for_every_model_in_the_tier(sidecar, up1, up2, monkeypatch):
    client = proxied_client(sidecar, monkeypatch)
    big = [{"role": "user", "content": "word " * 200_000}]  # ~250k tokens > 64k economy windows
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="economy", messages=big)
    assert "context window is 32000" in info.value.message
    assert up1.requests == [] and up2.requests == []


def test_unavailable_provider_is_503_not_a_silent_passthrough(rules_path, confdir, up1, up2,
                                                              monkeypatch):
    """Without CHEAPCO_KEY, up2's models are unavailable: a pin to one of them is a 503."""
    from tests.e2e.harness import RunningSidecar

    with RunningSidecar(rules_path, confdir, environ={}) as sidecar:
        client = proxied_client(sidecar, monkeypatch)
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="m-coder", messages=HELLO)
    assert info.value.status_code == 503
    assert "CHEAPCO_KEY is not set" in info.value.message
    assert up1.requests == [] and up2.requests == []


def test_other_https_hosts_are_tunnelled_with_their_own_certificate(sidecar):
    with TLSHost() as host:
        conn = http.client.HTTPSConnection("127.0.0.1", sidecar.port("regular"), timeout=10,
                                           context=host.client_context())
        conn.set_tunnel("127.0.0.1", host.port)
        conn.request("GET", "/untouched?x=1")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        peer = conn.sock.getpeercert(binary_form=True)
        conn.close()
    assert resp.status == 200
    assert body == {"host": "tls-host", "path": "/untouched?x=1"}
    assert peer == host.cert_der  # the host's own certificate, not one minted by the sidecar
    assert resp.getheader("x-model-router-app") is None


def test_intercepted_host_presents_the_sidecar_ca(sidecar):
    ctx = ssl.create_default_context(cafile=str(sidecar.ca.cert))
    conn = http.client.HTTPSConnection("127.0.0.1", sidecar.port("regular"), timeout=10,
                                       context=ctx)
    conn.set_tunnel("api.openai.com", 443)
    conn.connect()
    issuer = dict(x[0] for x in conn.sock.getpeercert()["issuer"])
    conn.close()
    assert issuer["commonName"] == "mitmproxy"


def test_a_bug_in_routing_fails_closed(sidecar, up1, up2, monkeypatch):
    """An exception inside the sidecar answers 502 and forwards nothing, anywhere."""
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(routing_module, "choose_route", broken)
    client = proxied_client(sidecar, monkeypatch)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert info.value.status_code == 502
    assert info.value.body["code"] == "sidecar_internal_error"
    assert "not forwarded" in info.value.message
    assert up1.requests == [] and up2.requests == []


def test_key_hash_rule_never_needs_the_key(rules_path):
    """rules.yaml holds a SHA-256 prefix, never the key itself."""
    text = rules_path.read_text()
    assert "sk-keyed-app" not in text
    assert hashlib.sha256(b"sk-keyed-app-456").hexdigest()[:12] in text


def test_unreachable_provider_is_an_openai_502_not_an_html_page(rules_path, confdir, up1,
                                                                monkeypatch):
    """A provider that refuses connections: the app gets a JSON error the SDK understands."""
    import socket

    from tests.e2e.harness import RunningSidecar

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    rules_path.write_text(rules_path.read_text().replace(up1.base_url,
                                                         f"http://127.0.0.1:{dead}/v1"))
    with RunningSidecar(rules_path, confdir, environ={}) as sidecar:
        client = proxied_client(sidecar, monkeypatch)
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="gpt-4o", messages=HELLO)
        resp = post_raw(sidecar, json.dumps({"model": "gpt-4o", "messages": HELLO}).encode())
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_connect_error"
    assert_openai_error(resp, 502, "upstream_connect_error", None)


def test_body_over_the_size_limit_is_an_openai_413(rules_path, confdir, up1):
    from tests.e2e.harness import RunningSidecar

    with RunningSidecar(rules_path, confdir, environ={}, body_size_limit="2k") as sidecar:
        big = json.dumps({"model": "gpt-4o", "messages": [{"role": "user",
                                                            "content": "x" * 5000}]})
        resp = post_raw(sidecar, big.encode())
    assert_openai_error(resp, 413, "request_too_large", None)
    assert up1.requests == []


def test_wrong_content_type_is_named_in_the_error(sidecar, up1):
    error = assert_openai_error(post_raw(sidecar, b"model=gpt-4o&messages=hi",
                                         "application/x-www-form-urlencoded"),
                                400, "invalid_json", None)
    assert "application/x-www-form-urlencoded" in error["message"]
    assert "Content-Type: application/json" in error["message"]
    assert up1.requests == []


def test_absurd_max_tokens_is_refused(sidecar, up1):
    body = json.dumps({"model": "gpt-4o", "messages": HELLO, "max_tokens": 10**12}).encode()
    error = assert_openai_error(post_raw(sidecar, body), 400, "invalid_value", "max_tokens")
    assert "no model generates more than" in error["message"]
    assert up1.requests == []


def test_images_for_a_pinned_model_without_vision(sidecar, up1, up2, monkeypatch):
    client = proxied_client(sidecar, monkeypatch)
    image = [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m-coder", messages=image)
    assert "m-coder: does not support vision" in info.value.message
    assert up1.requests == [] and up2.requests == []


def test_an_exception_in_a_hook_never_forwards_the_original_request(sidecar, up1, up2,
                                                                    monkeypatch):
    """Even if a hook itself raises (mitmproxy then forwards the flow as it is), the flow
    points at the fail-closed sentinel: nothing reaches api.openai.com or any provider."""
    from sidecar.proxy.addon import Sidecar

    connects: list[object] = []
    original = Sidecar.server_connect

    async def broken_request(self, flow):
        raise RuntimeError("bug in the request hook")

    def spy(self, data):
        connects.append(data.server.address)
        original(self, data)

    monkeypatch.setattr(Sidecar, "request", broken_request)
    monkeypatch.setattr(Sidecar, "server_connect", spy)
    resp = post_raw(sidecar, json.dumps({"model": "gpt-4o", "messages": HELLO}).encode())
    assert resp.status_code == 502
    assert resp.json()["error"]["type"] == "api_error"
    assert up1.requests == [] and up2.requests == []
    assert connects and all(addr[0] == "fail-closed.model-router.invalid" for addr in connects)


def test_logs_hold_no_keys_and_no_prompt_text(sidecar, up1, up2, monkeypatch, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    secret_prompt = "my secret prompt 7f3a"
    client = proxied_client(sidecar, monkeypatch, user="summarizer")
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user",
                                                               "content": secret_prompt}])
    up2.script(status=500)  # logged as a failed attempt, then served by the fallback
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user",
                                                               "content": secret_prompt}])
    post_raw(sidecar, b"{broken " + secret_prompt.encode())
    # The app (openai SDK, httpx2) logs in this process too; only the sidecar's side counts.
    app_side = ("openai", "httpx2", "httpcore2")
    records = [r for r in caplog.records if not r.name.startswith(app_side)]
    text = "\n".join(r.getMessage() + str(r.exc_info or "") for r in records)
    assert any(r.name == "sidecar" for r in records)  # something was logged
    assert APP_KEY not in text and CHEAP_KEY not in text and secret_prompt not in text


def test_proxy_authentication_can_be_required(rules_path, confdir, tmp_path, up2, monkeypatch):
    from tests.e2e.harness import RunningSidecar

    users = tmp_path / "proxy-users"
    users.write_text("# user:password\nsummarizer:s3cret\n")
    with RunningSidecar(rules_path, confdir, environ={"CHEAPCO_KEY": "k"},
                        proxy_auth=str(users)) as sidecar:
        port = sidecar.port("regular")
        for proxy in (f"http://127.0.0.1:{port}", f"http://summarizer:wrong@127.0.0.1:{port}"):
            monkeypatch.setenv("HTTPS_PROXY", proxy)
            monkeypatch.setenv("SSL_CERT_FILE", str(sidecar.ca.bundle))
            with openai.OpenAI(api_key=APP_KEY, max_retries=0) as client:
                with pytest.raises(openai.APIConnectionError):
                    client.chat.completions.create(model="gpt-4o", messages=HELLO)
        monkeypatch.setenv("HTTPS_PROXY", f"http://summarizer:s3cret@127.0.0.1:{port}")
        with openai.OpenAI(api_key=APP_KEY, max_retries=0) as client:
            raw = client.chat.completions.with_raw_response.create(model="gpt-4o",
                                                                   messages=HELLO)
        resp = requests.get("http://example.invalid/", timeout=5,
                            proxies={"http": f"http://127.0.0.1:{port}"})
    assert raw.headers["x-model-router-app"] == "summaries"
    assert len(up2.requests) == 1
    assert resp.status_code == 407 and "proxy-authenticate" in resp.headers
