"""The unmodified openai SDK (and curl, requests) through a real sidecar, against fake upstreams.

Each test asserts what a user would check: what the app got back, and what the provider received.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import openai
import pytest
import requests

from sidecar.core.vocabulary import Deployment
from tests.e2e.harness import (
    APP_KEY,
    CHEAP_KEY,
    HELLO,
    KEYED_APP_KEY,
    RunningSidecar,
    proxied_client,
)
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.e2e

def chat(client: openai.OpenAI, **kwargs: Any) -> tuple[Any, Any]:
    raw = client.chat.completions.with_raw_response.create(messages=HELLO, **kwargs)
    return raw.parse(), raw.headers


def test_hardcoded_gpt4o_is_rewritten_for_the_app(sidecar, up1, up2, monkeypatch):
    client = proxied_client(sidecar, monkeypatch, user="summarizer")
    completion, headers = chat(client, model="gpt-4o")

    assert completion.model == "cheap-model-v1"  # the model that really served
    assert completion.choices[0].message.content == "up2 says hi to cheap-model-v1"
    assert headers["x-model-router-app"] == "summaries"
    assert headers["x-model-router-model"] == "m-cheap"
    assert headers["x-model-router-provider"] == "up2"
    assert headers["x-model-router-reason"] == "auto prefer=cheap tier=any"
    assert float(headers["x-model-router-overhead-ms"]) >= 0
    assert headers["x-request-id"]
    [received] = up2.requests
    assert received.path == "/v1/chat/completions"
    assert received.json["model"] == "cheap-model-v1"
    assert received.json["messages"] == HELLO
    # The app's own key never reaches a provider that uses the sidecar's key.
    assert received.headers.get("authorization") == f"Bearer {CHEAP_KEY}"
    assert APP_KEY not in json.dumps(received.headers.items())
    assert "proxy-authorization" not in received.headers
    assert up1.requests == []


def test_passthrough_route_forwards_unchanged_with_the_apps_key(sidecar, up1, up2, monkeypatch):
    client = proxied_client(sidecar, monkeypatch, user="summarizer")
    completion, headers = chat(client, model="gpt-3.5-turbo", temperature=0.3)

    assert completion.model == "gpt-3.5-turbo"
    assert headers["x-model-router-reason"] == "passthrough"
    assert headers["x-model-router-provider"] == "up1"
    [received] = up1.requests
    assert received.json == {"model": "gpt-3.5-turbo", "messages": HELLO, "temperature": 0.3}
    assert received.headers.get("authorization") == f"Bearer {APP_KEY}"
    assert up2.requests == []


@pytest.mark.parametrize(
    ("prefer", "model", "upstream"),
    [
        ("cheap", "cheap-model-v1", "up2"),
        ("fast", "fast-model", "up1"),
        ("quality", "smart-model", "up1"),
        ("coding", "coder-model", "up2"),
        ("balanced", "balanced-model", "up1"),
    ],
)
def test_auto_picks_what_the_catalog_says_for_each_prefer(
    sidecar, up1, up2, monkeypatch, prefer, model, upstream
):
    client = proxied_client(sidecar, monkeypatch)
    completion, headers = chat(client, model="auto", extra_body={"prefer": prefer})

    assert completion.model == model
    served_by = {"up1": up1, "up2": up2}[upstream]
    [received] = served_by.requests
    assert received.json["model"] == model
    assert "prefer" not in received.json and "tier" not in received.json
    assert headers["x-model-router-app"] == "default"


def test_auto_without_intent_uses_the_defaults(sidecar, up1, monkeypatch):
    completion, headers = chat(proxied_client(sidecar, monkeypatch), model="auto")
    assert completion.model == "balanced-model"
    assert headers["x-model-router-reason"] == "auto prefer=balanced tier=standard"


@pytest.mark.parametrize(
    ("body", "model"),
    [
        ({"model": "auto", "extra_body": {"tier": "economy", "prefer": "quality"}}, "eco-good-v2"),
        ({"model": "auto", "extra_body": {"tier": "premium", "prefer": "cheap"}}, "coder-model"),
        ({"model": "premium", "extra_body": {"prefer": "quality"}}, "smart-model"),
        ({"model": "economy", "extra_body": {"prefer": "cheap"}}, "cheap-model-v1"),
        ({"model": "standard", "extra_body": {"prefer": "fast"}}, "fast-model"),
    ],
)
def test_tier_constrains_the_pool(sidecar, up1, up2, monkeypatch, body, model):
    completion, headers = chat(proxied_client(sidecar, monkeypatch), **body)
    assert completion.model == model
    sent = (up1.requests + up2.requests)[0].json
    assert "tier" not in sent and "prefer" not in sent


def test_a_catalog_model_is_pinned_and_prefer_ignored(sidecar, up1, up2, monkeypatch):
    completion, headers = chat(proxied_client(sidecar, monkeypatch), model="m-coder",
                               extra_body={"prefer": "cheap"})
    assert completion.model == "coder-model"
    assert headers["x-model-router-reason"] == "pin"
    assert "prefer" not in up2.requests[0].json


def test_app_told_apart_by_api_key_hash(sidecar, up1, monkeypatch):
    client = proxied_client(sidecar, monkeypatch, key=KEYED_APP_KEY)
    completion, headers = chat(client, model="gpt-4o")
    assert headers["x-model-router-app"] == "keyed"
    assert completion.model == "smart-model"
    assert up1.requests[0].headers.get("authorization") == f"Bearer {KEYED_APP_KEY}"


def test_app_told_apart_by_header(sidecar, up2, monkeypatch):
    client = proxied_client(sidecar, monkeypatch, default_headers={"x-app": "review"})
    completion, headers = chat(client, model="gpt-4o-mini")
    assert headers["x-model-router-app"] == "review"
    assert completion.model == "coder-model"


def test_app_told_apart_by_user_agent_with_pin_fallbacks(sidecar, up1, monkeypatch):
    client = proxied_client(sidecar, monkeypatch, default_headers={"user-agent": "agent-bot/2.1"})
    completion, headers = chat(client, model="gpt-4o")
    assert headers["x-model-router-app"] == "agent"
    assert completion.model == "balanced-model"


def test_app_told_apart_by_client_address_with_curl(sidecar, up1):
    """curl bound to 127.0.0.2 is the `batch` app (match: client 127.0.0.2/32)."""
    out = curl(sidecar, "--interface", "127.0.0.2", "-d",
               json.dumps({"model": "gpt-4o", "messages": HELLO}))
    assert out["status"] == 200
    assert out["headers"]["x-model-router-app"] == "batch"
    assert out["json"]["model"] == "fast-model"


def test_plain_curl_through_the_proxy_passes_through(sidecar, up1):
    out = curl(sidecar, "-d", json.dumps({"model": "gpt-4o", "messages": HELLO}))
    assert out["status"] == 200
    assert out["headers"]["x-model-router-app"] == "default"
    assert out["json"]["model"] == "gpt-4o"
    assert up1.requests[0].headers.get("authorization") == f"Bearer {APP_KEY}"


def curl(sidecar: RunningSidecar, *args: str, url: str = "https://api.openai.com/v1/chat/completions",
         ) -> dict[str, Any]:
    env = {"PATH": "/usr/bin:/bin", "HTTPS_PROXY": sidecar.proxy_url,
           "CURL_CA_BUNDLE": str(sidecar.ca.bundle)}
    proc = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "20", "-H", f"authorization: Bearer {APP_KEY}",
         "-H", "content-type: application/json", *args, url],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.replace("\r\n", "\n").rpartition("\n\n")
    lines = head.split("\n\n")[-1].split("\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return {"status": int(lines[0].split()[1]), "headers": {k.lower(): v for k, v in
                                                            headers.items()},
            "json": json.loads(body) if body.strip().startswith("{") else None, "body": body}


def test_base_url_mode_with_the_sdk(sidecar, up1, up2):
    with openai.OpenAI(base_url=sidecar.base_url, api_key=APP_KEY, max_retries=0) as client:
        completion, headers = chat(client, model="auto", extra_body={"prefer": "cheap"})
    assert completion.model == "cheap-model-v1"
    assert headers["x-model-router-app"] == "default"
    assert up2.requests[0].path == "/v1/chat/completions"


def test_base_url_mode_with_requests(sidecar, up1):
    resp = requests.post(
        f"{sidecar.base_url}/chat/completions", timeout=10,
        headers={"authorization": f"Bearer {APP_KEY}"},
        json={"model": "auto", "prefer": "quality", "messages": HELLO},
    )
    assert resp.status_code == 200
    assert resp.json()["model"] == "smart-model"
    assert resp.headers["x-model-router-model"] == "m-smart"


def test_requests_through_https_proxy(sidecar, up2):
    resp = requests.post(
        "https://api.openai.com/v1/chat/completions", timeout=10,
        headers={"authorization": f"Bearer {APP_KEY}"},
        json={"model": "auto", "prefer": "cheap", "messages": HELLO},
        # requests needs the colon after the user name
        proxies={"https": f"http://summarizer:@127.0.0.1:{sidecar.port('regular')}"},
        verify=str(sidecar.ca.bundle),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "cheap-model-v1"
    assert resp.headers["x-model-router-app"] == "summaries"


def test_streaming_deltas_arrive_incrementally(rules_path, confdir, monkeypatch):
    with FakeOpenAI(name="slow", stream_delay=0.2, stream_chunks=5) as slow:
        rules_path.write_text(rules_path.read_text().replace(
            rules_path.read_text().split('base_url: "')[1].split('"')[0], slow.base_url, 1))
        with RunningSidecar(rules_path, confdir, environ={}) as streaming_sidecar:
            client = proxied_client(streaming_sidecar, monkeypatch)
            arrivals, text = [], ""
            stream = client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True,
                                                    stream_options={"include_usage": True})
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    arrivals.append(time.monotonic())
                    text += chunk.choices[0].delta.content
    assert text.strip() == "slow says hi to gpt-4o"
    assert len(arrivals) == 5
    # 5 chunks 0.2 s apart: buffering would deliver them together at the end.
    assert arrivals[-1] - arrivals[0] >= 0.6
    assert "prefer" not in slow.requests[0].json


def test_streaming_through_routing_reaches_the_routed_model(sidecar, up2, monkeypatch):
    client = proxied_client(sidecar, monkeypatch)
    stream = client.chat.completions.create(model="auto", messages=HELLO, stream=True,
                                            extra_body={"prefer": "cheap"})
    chunks = list(stream)
    assert {c.model for c in chunks} == {"cheap-model-v1"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "up2 says hi to cheap-model-v1")
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_shadow_mode_forwards_unchanged_and_reports_the_decision(sidecar, up1, up2, monkeypatch):
    client = proxied_client(sidecar, monkeypatch, default_headers={"x-app": "shadow"})
    completion, headers = chat(client, model="gpt-4o", extra_body={"tier": "economy"})

    assert completion.model == "gpt-4o"  # served unchanged, by the intercepted host's provider
    [received] = up1.requests
    assert received.json == {"model": "gpt-4o", "messages": HELLO}  # router fields still removed
    assert received.headers.get("authorization") == f"Bearer {APP_KEY}"
    assert up2.requests == []
    assert headers["x-model-router-app"] == "shadowed"
    assert headers["x-model-router-model"] == "gpt-4o"
    assert headers["x-model-router-reason"] == "shadow"
    assert headers["x-model-router-shadow-model"] == "m-cheap"
    assert headers["x-model-router-shadow-provider"] == "up2"
    assert headers["x-model-router-shadow-reason"] == "auto prefer=cheap tier=economy"


def test_transparent_listener_starts_beside_the_others(rules_path, confdir):
    with RunningSidecar(rules_path, confdir, environ={}, transparent=True) as running:
        assert {"regular", "reverse", "transparent"} <= set(running.addrs)
        assert running.port("transparent") > 0


def test_other_endpoints_pass_through_to_the_intercepted_provider(sidecar, up1, monkeypatch):
    client = proxied_client(sidecar, monkeypatch)
    models = client.models.list()
    embedding = client.embeddings.create(model="text-embedding-3-small", input="hi")
    ids = [m.id for m in models.data]
    assert "gpt-4o" in ids  # the provider's own list, unchanged
    assert ids[-4:] == ["auto", "economy", "standard", "premium"]  # and the sidecar's intents
    assert embedding.model == "text-embedding-3-small"
    assert [r.path for r in up1.requests] == ["/v1/models", "/v1/embeddings"]
    assert all(r.headers.get("authorization") == f"Bearer {APP_KEY}" for r in up1.requests)


def test_fast_learns_from_observed_latency(sidecar, up1, monkeypatch):
    """m-fast's prior says fastest; once it is observed to be slow, `fast` picks another."""
    client = proxied_client(sidecar, monkeypatch)
    first, _ = chat(client, model="auto", extra_body={"prefer": "fast"})
    assert first.model == "fast-model"

    up1.script(delay=0.6)  # the next call to up1 (m-fast, pinned) takes 0.6 s for 5 tokens
    chat(client, model="m-fast")
    after, headers = chat(client, model="auto", extra_body={"prefer": "fast"})
    # EWMA of ~0 and 0.12 s/token is ~0.024 s/token: 500 tokens ~12 s, m-balanced's prior ~7 s
    assert after.model == "balanced-model"
    assert sidecar.addon.latency.snapshot()[Deployment("up1", "fast-model")]["samples"] == 2


def test_tier_auto_sends_a_greeting_to_economy(sidecar, up1, up2, monkeypatch):
    client = proxied_client(sidecar, monkeypatch, default_headers={"x-app": "autotier"})
    completion, headers = chat(client, model="gpt-4o")  # HELLO: "Say hello."
    assert headers["x-model-router-auto-tier"] == "economy"
    assert float(headers["x-model-router-auto-score"]) < 35
    assert completion.model == "eco-good-v2"  # the best-quality economy model
    assert headers["x-model-router-reason"] == "auto prefer=quality tier=auto:economy"


def test_tier_auto_keeps_a_multi_file_refactoring_with_tools_on_premium(sidecar, up1,
                                                                        monkeypatch):
    client = proxied_client(sidecar, monkeypatch, default_headers={"x-app": "autotier"})
    tools = [{"type": "function", "function": {
        "name": name, "description": what,
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}
        for name, what in (("read_file", "Read a file from the repository"),
                           ("write_file", "Write a file in the repository"),
                           ("run_tests", "Run the test suite and return failures"))]
    code = "\n".join(f"def handler_{i}(request):\n    return legacy_call(request, {i})"
                     for i in range(40))
    messages = [
        {"role": "system", "content": "You are a senior software architect working in a large "
                                      "Python monorepo."},
        {"role": "user", "content": "Refactor the payment module across billing/api.py, "
                                    "billing/models.py and billing/tasks.py: replace legacy_call "
                                    "with the new async client, keep the public API, update the "
                                    "tests, and explain the trade-offs of the migration.\n"
                                    f"```python\n{code}\n```"}]
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages,
                                                           tools=tools)
    assert raw.headers["x-model-router-auto-tier"] == "premium"
    assert float(raw.headers["x-model-router-auto-score"]) >= 60
    assert raw.parse().model == "smart-model"
