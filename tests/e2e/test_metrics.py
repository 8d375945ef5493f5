"""/metrics after real SDK calls: counters, tokens, cost and savings against what the fakes
reported; the access log; shadow mode in metrics."""

from __future__ import annotations

import json
import logging
import time

import pytest

from tests.e2e.harness import (
    HELLO,
    KEYED_APP_KEY,
    proxied_client,
    scrape,
    scrape_after_stream,
    value,
)

pytestmark = pytest.mark.e2e

# Prices from rules (tests/e2e/conftest.py) and the built-in catalog, written out by hand.
GPT_4O = (2.5, 10.0)  # USD per million input / output tokens
M_CHEAP = (0.01, 0.02)


def test_counters_tokens_cost_and_savings_after_a_routed_call(sidecar, up2, monkeypatch):
    client = proxied_client(sidecar, monkeypatch, user="summarizer")
    completion = client.chat.completions.create(model="gpt-4o", messages=HELLO)
    p, c = completion.usage.prompt_tokens, completion.usage.completion_tokens
    assert p > 0 and c > 0

    m = scrape(sidecar)
    assert value(m, "sidecar_requests_total", app="summaries", requested_model="gpt-4o",
                 served_model="m-cheap", provider="up2", outcome="ok") == 1
    assert value(m, "sidecar_tokens_total", app="summaries", model="m-cheap", kind="prompt") == p
    assert value(m, "sidecar_tokens_total", app="summaries", model="m-cheap",
                 kind="completion") == c
    paid = (p * M_CHEAP[0] + c * M_CHEAP[1]) / 1e6
    would_have = (p * GPT_4O[0] + c * GPT_4O[1]) / 1e6
    assert value(m, "sidecar_cost_usd_total", app="summaries", model="m-cheap") == (
        pytest.approx(paid))
    assert value(m, "sidecar_savings_usd_total", app="summaries", requested_model="gpt-4o",
                 served_model="m-cheap") == pytest.approx(would_have - paid)
    assert value(m, "sidecar_request_duration_seconds_count", app="summaries",
                 model="m-cheap") == 1
    assert value(m, "sidecar_overhead_seconds_count") == 1
    assert value(m, "sidecar_in_flight_requests") == 0


# Two ways a stream is served: a plan with fallbacks goes through the relay; a plan of one model
# is forwarded by mitmproxy itself, its usage read on the way through.
STREAMERS = {
    "relay": ("summaries", {"user": "summarizer"}, "m-cheap", "up2", "cheap-model-v1"),
    "direct": ("keyed", {"key": KEYED_APP_KEY}, "m-smart", "up1", "smart-model"),
}


@pytest.mark.parametrize("path", list(STREAMERS))
def test_streamed_usage_is_the_providers_and_hidden_when_not_asked(sidecar, request, path,
                                                                   monkeypatch):
    app, caller, model, upstream, model_id = STREAMERS[path]
    client = proxied_client(sidecar, monkeypatch, **caller)
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    assert all(ch.usage is None for ch in chunks)  # the app did not ask for usage
    assert all(ch.choices for ch in chunks)  # ... so it gets no usage-only chunk either
    [sent] = request.getfixturevalue(upstream).requests
    assert sent.json["stream_options"] == {"include_usage": True}  # the sidecar asked upstream

    m = scrape_after_stream(sidecar, "sidecar_tokens_total", app=app, model=model,
                            kind="completion")
    reply = f"{upstream} says hi to {model_id}"
    assert value(m, "sidecar_tokens_total", app=app, model=model,
                 kind="completion") == len(reply.split())  # the fake's own count
    assert value(m, "sidecar_time_to_first_token_seconds_count", app=app, model=model) == 1
    assert value(m, "sidecar_requests_total", app=app, requested_model="gpt-4o",
                 served_model=model, provider=upstream, outcome="ok") == 1


@pytest.mark.parametrize("path", list(STREAMERS))
def test_streamed_usage_passes_through_when_asked(sidecar, up1, up2, path, monkeypatch):
    app, caller, model, _, _ = STREAMERS[path]
    client = proxied_client(sidecar, monkeypatch, **caller)
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True,
                                                 stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    m = scrape_after_stream(sidecar, "sidecar_tokens_total", app=app, model=model,
                            kind="prompt")
    assert value(m, "sidecar_tokens_total", app=app, model=model,
                 kind="prompt") == usage.prompt_tokens


@pytest.mark.parametrize("path", list(STREAMERS))
def test_a_stream_the_app_hangs_up_on_at_done_is_a_complete_call(sidecar, request, path,
                                                                  monkeypatch):
    """The sync openai SDK closes the connection as soon as it reads ``data: [DONE]``; when
    the provider's body ends a moment later, mitmproxy sees the app leave mid-body. The app
    had the whole answer: the call is counted as ok, with its usage."""
    app, caller, model, upstream, model_id = STREAMERS[path]
    request.getfixturevalue(upstream).script(end_after=3.0)
    client = proxied_client(sidecar, monkeypatch, **caller)
    started = time.monotonic()
    text = "".join(ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True) if ch.choices)
    assert text.strip() == f"{upstream} says hi to {model_id}"
    assert time.monotonic() - started < 2.5  # the premise: the app left before the body's end

    labels = dict(app=app, requested_model="gpt-4o", served_model=model, provider=upstream)
    m = scrape_after_stream(sidecar, "sidecar_requests_total", **labels, outcome="ok")
    assert value(m, "sidecar_requests_total", **labels, outcome="ok") == 1
    assert value(m, "sidecar_requests_total", **labels, outcome="stream_error") == 0
    assert value(m, "sidecar_tokens_total", app=app, model=model,
                 kind="completion") == len(text.split())


def test_access_log_is_one_json_line_per_call_without_prompts(sidecar, up2, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="sidecar.access")
    client = proxied_client(sidecar, monkeypatch, user="summarizer")
    client.chat.completions.create(model="gpt-4o", messages=HELLO)
    [line] = [r.getMessage() for r in caplog.records if r.name == "sidecar.access"]
    entry = json.loads(line)
    assert entry["app"] == "summaries" and entry["served_model"] == "m-cheap"
    assert entry["requested_model"] == "gpt-4o" and entry["provider"] == "up2"
    assert entry["status"] == 200 and entry["outcome"] == "ok" and entry["fallbacks"] == []
    assert entry["prompt_tokens"] > 0 and entry["cost_usd"] > 0 and entry["savings_usd"] > 0
    assert entry["request_id"] and entry["duration_s"] >= 0
    assert "Say hello" not in line and "sk-" not in line


def test_shadow_mode_records_the_decision_and_what_it_would_save(sidecar, up1, monkeypatch):
    client = proxied_client(sidecar, monkeypatch, default_headers={"x-app": "shadow"})
    completion = client.chat.completions.create(model="gpt-4o", messages=HELLO)
    p, c = completion.usage.prompt_tokens, completion.usage.completion_tokens
    assert completion.model == "gpt-4o"  # forwarded unchanged

    m = scrape(sidecar)
    assert value(m, "sidecar_shadow_decisions_total", app="shadowed", requested_model="gpt-4o",
                 decided_model="m-cheap") == 1
    would_save = ((p * GPT_4O[0] + c * GPT_4O[1]) - (p * M_CHEAP[0] + c * M_CHEAP[1])) / 1e6
    assert value(m, "sidecar_shadow_savings_usd_total", app="shadowed", requested_model="gpt-4o",
                 decided_model="m-cheap") == pytest.approx(would_save)
    assert value(m, "sidecar_requests_total", app="shadowed", requested_model="gpt-4o",
                 served_model="gpt-4o", provider="up1", outcome="ok") == 1


def test_unknown_names_never_become_label_values(sidecar, up1, monkeypatch):
    client = proxied_client(sidecar, monkeypatch)
    client.chat.completions.create(model="ft:gpt-4o:acme:custom:abc123", messages=HELLO)
    m = scrape(sidecar)
    assert value(m, "sidecar_requests_total", app="default", requested_model="other",
                 served_model="other", provider="up1", outcome="ok") == 1
    assert not any("acme" in str(labels) for _, labels in m)
