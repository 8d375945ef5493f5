"""Fault injection: what the app receives when a provider misbehaves, and what the sidecar did.

The plan for ``model: auto, prefer: cheap`` is always [m-primary (on `primary`), m-backup (on
`backup`)]. Each fault is injected on the primary; every request must get exactly one complete
answer or one proper OpenAI error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import requests

from sidecar.core.routing.cooldown import Cooldowns
from sidecar.core.vocabulary import Deployment
from tests.e2e.harness import (
    APP_KEY,
    HELLO,
    RunningSidecar,
    proxied_client,
    scrape,
    scrape_after_stream,
    value,
)
from tests.e2e.harness import FAULT_RULES as RULES

PRIMARY = Deployment("primary", "primary-model")  # m-primary, where its health is kept

pytestmark = pytest.mark.e2e

TIMEOUT = 5.0  # the sidecar's upstream timeout in these tests (hangs wait this long)


@pytest.fixture
def faulty(tmp_path: Path, confdir: Path, primary, backup) -> Iterator[RunningSidecar]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(primary=primary.base_url, backup=backup.base_url))
    with RunningSidecar(rules, confdir, environ={}, upstream_timeout=TIMEOUT,
                        cooldowns=Cooldowns(threshold=3, base=60.0)) as running:
        yield running


def ask(sidecar, monkeypatch, *, stream: bool = False, **kwargs):
    """One call as the app makes it; returns (text, model, headers)."""
    client = proxied_client(sidecar, monkeypatch, **kwargs)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, stream=stream, extra_body={"prefer": "cheap"})
    if not stream:
        completion = raw.parse()
        return completion.choices[0].message.content, completion.model, raw.headers
    text, model = "", None
    for chunk in raw.parse():
        model = chunk.model
        text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    return text, model, raw.headers


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "fault",
    [
        {"status": 429},
        {"status": 500},
        {"status": 503},
        {"hang": True},
        {"reset": True},
    ],
    ids=["429", "500", "503", "hang", "reset"],
)
def test_a_failing_first_choice_falls_back_before_the_first_byte(
    faulty, primary, backup, monkeypatch, fault, stream
):
    primary.script(**fault)
    text, model, headers = ask(faulty, monkeypatch, stream=stream)

    assert model == "backup-model"
    assert text.strip() == "backup says hi to backup-model"
    assert headers["x-model-router-model"] == "m-backup"
    assert headers["x-model-router-fallbacks"] == "1"
    assert len(primary.requests) == 1 and len(backup.requests) == 1
    assert backup.requests[0].json["model"] == "backup-model"
    m = scrape_after_stream(faulty, "sidecar_fallbacks_total", app="default", model="m-primary")
    assert value(m, "sidecar_fallbacks_total", app="default", model="m-primary") == 1
    reason = {"hang": "timeout", "reset": "connect"}.get(
        next(iter(fault)), f"status_{str(fault.get('status', 0))[0]}xx")
    if fault.get("status") == 429:
        reason = "status_429"
    assert value(m, "sidecar_upstream_errors_total", provider="primary", reason=reason) == 1
    assert value(m, "sidecar_requests_total", app="default", requested_model="auto",
                 served_model="m-backup", provider="backup", outcome="ok") == 1


def test_malformed_json_from_the_first_choice_falls_back(faulty, primary, backup, monkeypatch):
    primary.script(status=200, body=b"{not json", headers={"content-type": "application/json"})
    text, model, headers = ask(faulty, monkeypatch)
    assert model == "backup-model" and headers["x-model-router-fallbacks"] == "1"


def test_non_retryable_errors_go_back_unchanged(faulty, primary, backup, monkeypatch):
    body = {"error": {"message": "Invalid 'messages'.", "type": "invalid_request_error",
                      "param": "messages", "code": None}}
    primary.script(status=400, body=body)
    with pytest.raises(openai.BadRequestError) as info:
        ask(faulty, monkeypatch)
    assert info.value.body == body["error"]
    assert backup.requests == []


def test_when_every_model_fails_the_app_gets_the_last_error(faulty, primary, backup,
                                                             monkeypatch):
    primary.script(status=503)
    backup.script(status=429)
    with pytest.raises(openai.RateLimitError) as info:
        ask(faulty, monkeypatch)
    assert info.value.response.headers["x-model-router-fallbacks"] == "2"
    assert len(primary.requests) == 1 and len(backup.requests) == 1


def test_a_stream_that_breaks_midway_ends_with_an_error_event(faulty, primary, backup,
                                                              monkeypatch):
    primary.script(stream_reset_after=3)
    client = proxied_client(faulty, monkeypatch)
    received = ""
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model="auto", messages=HELLO, stream=True,
                                                    extra_body={"prefer": "cheap"}):
            received += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert received and "primary says hi to primary-model".startswith(received.strip())
    assert "stream broke" in str(info.value)
    assert backup.requests == []  # the app had seen bytes: no silent switch mid-answer
    labels = dict(app="default", requested_model="auto", served_model="m-primary",
                  provider="primary", outcome="stream_error")
    m = scrape_after_stream(faulty, "sidecar_requests_total", **labels)
    assert value(m, "sidecar_requests_total", **labels) == 1


def test_a_stream_that_breaks_midway_is_an_sse_error_event_on_the_wire(faulty, primary):
    primary.script(stream_reset_after=2)
    resp = requests.post(f"{faulty.base_url}/chat/completions", timeout=10, stream=True,
                         headers={"authorization": f"Bearer {APP_KEY}"},
                         json={"model": "auto", "prefer": "cheap", "messages": HELLO,
                               "stream": True})
    events = [line for line in resp.iter_lines() if line.startswith(b"data: ")]
    assert resp.status_code == 200
    last = json.loads(events[-1][6:])
    assert last["error"]["code"] == "upstream_stream_error"
    assert b"data: [DONE]" not in events


def test_a_pinned_stream_that_breaks_midway_fails_in_the_app_too(faulty, primary, backup,
                                                                 monkeypatch):
    """A plan of one model is streamed by mitmproxy itself (no relay hop): when the provider's
    connection breaks mid-answer, the app's is closed the same way, as if it had been talking
    to the provider directly. It never looks like a complete answer, and the call is counted
    as a stream error."""
    primary.script(stream_reset_after=3)
    client = proxied_client(faulty, monkeypatch, default_headers={"x-app": "pinned"})
    received = ""
    with pytest.raises((openai.APIError, httpx.TransportError)):
        for chunk in client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True):
            received += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert received and "primary says hi to primary-model".startswith(received.strip())
    assert received.strip() != "primary says hi to primary-model"
    assert backup.requests == []
    m = scrape_after_stream(faulty, "sidecar_requests_total", app="pinned",
                            requested_model="gpt-4o", served_model="m-primary",
                            provider="primary", outcome="stream_error")
    assert value(m, "sidecar_requests_total", app="pinned", requested_model="gpt-4o",
                 served_model="m-primary", provider="primary", outcome="stream_error") == 1


def test_a_providers_own_timeout_decides_when_its_attempt_gives_up(tmp_path, confdir, primary,
                                                                   backup, monkeypatch):
    """`timeout:` on a provider: here 1 s, against a sidecar default (60 s) longer than the
    app's own timeout (20 s). The hanging first choice is given up on after its 1 s and the
    backup answers; with the default, the app would time out first."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(primary=primary.base_url, backup=backup.base_url).replace(
        f'primary: {{type: openai, base_url: "{primary.base_url}"}}',
        f'primary: {{type: openai, base_url: "{primary.base_url}", timeout: 1}}'))
    primary.script(hang=True)
    with RunningSidecar(rules, confdir, environ={}, upstream_timeout=60.0) as sidecar:
        text, model, headers = ask(sidecar, monkeypatch, timeout=20)
    assert model == "backup-model" and headers["x-model-router-fallbacks"] == "1"
    assert text.strip() == "backup says hi to backup-model"


def test_repeated_failures_cool_a_model_down(faulty, primary, backup, monkeypatch):
    for _ in range(3):
        primary.script(status=500)
        assert ask(faulty, monkeypatch)[1] == "backup-model"
    assert PRIMARY in faulty.addon.cooldowns.down()
    assert value(scrape(faulty), "sidecar_cooldowns_total", model="m-primary") == 1
    text, model, headers = ask(faulty, monkeypatch)
    assert model == "backup-model" and headers["x-model-router-fallbacks"] == "0"
    assert len(primary.requests) == 3  # taken out of the plan: not even tried


def test_a_cooled_down_model_is_probed_back_in(faulty, primary, backup, monkeypatch):
    clock = [1000.0]
    faulty.addon.cooldowns.clock = lambda: clock[0]
    for _ in range(3):
        primary.script(status=500)
        ask(faulty, monkeypatch)
    assert PRIMARY in faulty.addon.cooldowns.down()
    clock[0] += 61  # the cooldown is over: the next call is a probe
    text, model, _ = ask(faulty, monkeypatch)
    assert model == "primary-model"
    assert faulty.addon.cooldowns.down() == {}


def test_a_pin_without_fallback_reports_the_failure(faulty, primary, backup, monkeypatch):
    primary.script(status=503)
    client = proxied_client(faulty, monkeypatch, default_headers={"x-app": "pinned"})
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert info.value.status_code == 503
    assert backup.requests == []


def test_a_pin_answering_malformed_json_is_a_502(faulty, primary, monkeypatch):
    primary.script(status=200, body=b"<html>oops</html>", headers={"content-type": "text/html"})
    client = proxied_client(faulty, monkeypatch, default_headers={"x-app": "pinned"})
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_malformed_response"


def test_failures_count_as_slow_for_prefer_fast(faulty, primary, monkeypatch):
    primary.script(status=500)
    ask(faulty, monkeypatch)
    estimate = faulty.addon.latency.snapshot()[PRIMARY]
    assert estimate["ttft_seconds"] >= 30  # a failure is recorded as a 30 s wait


def test_explain_and_models_see_the_running_sidecar(faulty, primary, backup, monkeypatch,
                                                    capsys):
    """After the primary cools down, `explain` decides as the running sidecar does."""
    from sidecar.cli.main import main

    for _ in range(3):
        primary.script(status=500)
        ask(faulty, monkeypatch)
    rules = str(faulty.config.rules)

    def run(*argv: str) -> str:
        with pytest.raises(SystemExit) as done:
            main([*argv, "--rules", rules, "--metrics-url", faulty.metrics_url])
        assert done.value.code == 0
        return capsys.readouterr().out

    out = run("explain", "--model", "auto", "--prefer", "cheap")
    assert "plan: m-backup (backup)" in out
    assert "m-primary" in out and "cooling down" in out
    assert f"live state from {faulty.metrics_url}" in out
    models = {line.split()[0]: line for line in run("models").splitlines() if line}
    assert "cooling down" in models["m-primary"]
    header = models["model"].split()
    assert header[9:11] == ["seen(s)", "s/token"] or "s/token" in header
    row = models["m-backup"].split()
    assert row[10] != "-" and float(row[10]) > 0  # its observed seconds per output token
