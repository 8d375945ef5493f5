"""The response cache (issue 16), end to end through a real sidecar with the real openai SDK:
hits and misses for JSON and streams (each replayed as the other), isolation between apps and
keys, TTL expiry, what is never cached (sampling, n > 1, errors, oversize), cache-control, the
Responses API, and a Redis store killed mid-run.

The fake provider records every call it gets: a hit is a call it never saw.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.harness import RunningSidecar, scrape, value, wait_for
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.redis_server import RedisServer

pytestmark = pytest.mark.e2e

KEY_A, KEY_B = "sk-tenant-a", "sk-tenant-b"
RULES = """
version: 1
intercept: [api.openai.com]
providers:
  prov: {{type: openai, base_url: "{base_url}", api_key: from-request}}
models:
  - {{name: m, provider: prov, id: m-v1, tier: standard, context: 128000,
      price: {{input: 2, output: 8}}, supports: [tools]}}
{state}
apps:
  - name: cached
    match: {{header: {{x-app: cached}}}}
    cache: {{ttl: {ttl}, max_entry_bytes: {max_entry}}}
    routes: {{"*": m}}
  - name: other
    match: {{header: {{x-app: other}}}}
    cache: {{ttl: 1h}}
    routes: {{"*": m}}
  - name: sampled
    match: {{header: {{x-app: sampled}}}}
    cache: {{ttl: 1h, any: true}}
    routes: {{"*": m}}
"""
HELLO = [{"role": "user", "content": "Say hello."}]


def write_rules(tmp_path: Path, provider: FakeOpenAI, *, ttl: str = "1h",
                max_entry: int = 1_000_000, redis: str | None = None) -> Path:
    path = tmp_path / "rules.yaml"
    state = f'state: {{redis: "{redis}"}}' if redis else ""
    path.write_text(RULES.format(base_url=provider.base_url, ttl=ttl, max_entry=max_entry,
                                 state=state))
    return path


@pytest.fixture
def provider() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(name="prov", stream_chunks=4) as up:
        yield up


@pytest.fixture
def sidecar(tmp_path: Path, provider: FakeOpenAI) -> Iterator[RunningSidecar]:
    with RunningSidecar(write_rules(tmp_path, provider), tmp_path / "home", environ={}) as s:
        yield s


def client(sidecar: RunningSidecar, app: str = "cached", key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"{sidecar.base_url}/v1", max_retries=0,
                         default_headers={"x-app": app})


def ask(sidecar: RunningSidecar, *, stream: bool = False, app: str = "cached",
        key: str = KEY_A, **body: Any) -> tuple[str, str, Any]:
    """(text, x-model-router-cache, usage) of one call, JSON or streamed."""
    body = {"model": "gpt-4o", "messages": HELLO, "temperature": 0, **body}
    with client(sidecar, app, key) as c:
        if not stream:
            raw = c.chat.completions.with_raw_response.create(**body)
            done = raw.parse()
            return done.choices[0].message.content or "", raw.headers.get(
                "x-model-router-cache", ""), done.usage
        with c.chat.completions.with_streaming_response.create(
                stream=True, stream_options={"include_usage": True}, **body) as raw:
            chunks = list(raw.parse())
            header = raw.headers.get("x-model-router-cache", "")
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    return text, header, chunks[-1].usage


@pytest.mark.parametrize("first, second", [(False, False), (True, True), (False, True),
                                           (True, False)],
                         ids=["json-json", "stream-stream", "json-then-stream",
                              "stream-then-json"])
def test_an_identical_call_is_answered_from_the_cache(sidecar: RunningSidecar,
                                                      provider: FakeOpenAI, first: bool,
                                                      second: bool) -> None:
    text, header, usage = ask(sidecar, stream=first)
    assert header == "miss" and len(provider.requests) == 1
    again, header, usage_again = ask(sidecar, stream=second)
    assert header == "hit" and len(provider.requests) == 1  # the provider never saw it
    assert again == text and usage_again.total_tokens == usage.total_tokens
    m = scrape(sidecar)
    assert value(m, "sidecar_cache_calls_total", app="cached", result="hit") == 1
    assert value(m, "sidecar_cache_calls_total", app="cached", result="miss") == 1
    assert value(m, "sidecar_cache_saved_usd_total", app="cached") > 0
    # A hit costs nothing: all the spend is the miss's.
    spend = value(m, "sidecar_cost_usd_total", app="cached", model="m")
    assert spend == pytest.approx((usage.prompt_tokens * 2 + usage.completion_tokens * 8) / 1e6)


def test_tenants_and_apps_never_share_answers(sidecar: RunningSidecar,
                                              provider: FakeOpenAI) -> None:
    assert ask(sidecar)[1] == "miss"
    assert ask(sidecar, key=KEY_B)[1] == "miss"  # another key: another tenant
    assert ask(sidecar, app="other")[1] == "miss"  # another app
    assert ask(sidecar, messages=[{"role": "user", "content": "Say bye."}])[1] == "miss"
    assert len(provider.requests) == 4
    assert [ask(sidecar, key=k)[1] for k in (KEY_A, KEY_B)] == ["hit", "hit"]


@pytest.mark.parametrize("body, app", [
    ({"temperature": 0.7}, "cached"),  # sampled: a replay would not be what was asked
    ({"n": 2}, "sampled"),  # several answers
], ids=["sampled", "n2"])
def test_calls_that_are_not_safe_to_replay_bypass_the_cache(
        sidecar: RunningSidecar, provider: FakeOpenAI, body: dict[str, Any], app: str) -> None:
    for _ in range(2):
        with client(sidecar, app) as c:
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=HELLO, **{"temperature": 0, **body})
        assert raw.headers["x-model-router-cache"] == "bypass"
    assert len(provider.requests) == 2


def test_an_app_may_opt_in_to_cache_sampled_calls(sidecar: RunningSidecar,
                                                  provider: FakeOpenAI) -> None:
    assert ask(sidecar, app="sampled", temperature=0.9)[1] == "miss"
    assert ask(sidecar, app="sampled", temperature=0.9)[1] == "hit"


def test_errors_are_never_cached(sidecar: RunningSidecar, provider: FakeOpenAI) -> None:
    provider.script(status=400)
    with pytest.raises(openai.BadRequestError):
        ask(sidecar)
    assert ask(sidecar)[1] == "miss"  # the error was not stored: the provider is asked again
    assert len(provider.requests) == 2


def test_a_stream_that_breaks_is_not_cached(sidecar: RunningSidecar,
                                            provider: FakeOpenAI) -> None:
    provider.script(stream_reset_after=2)
    with pytest.raises(Exception):  # noqa: B017, PT011 - the SDK's error for a cut stream
        ask(sidecar, stream=True)
    assert ask(sidecar)[1] == "miss"
    assert len(provider.requests) == 2


def test_cache_control_refreshes_or_bypasses(sidecar: RunningSidecar,
                                             provider: FakeOpenAI) -> None:
    assert ask(sidecar)[1] == "miss"
    with client(sidecar) as c:
        fresh = c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=HELLO, temperature=0,
            extra_headers={"cache-control": "no-cache"})
        skipped = c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=HELLO, temperature=0,
            extra_headers={"cache-control": "no-store"})
    assert fresh.headers["x-model-router-cache"] == "miss"  # asked again, and stored
    assert skipped.headers["x-model-router-cache"] == "bypass"
    assert len(provider.requests) == 3
    assert ask(sidecar)[1] == "hit"


def test_entries_expire_with_their_ttl(tmp_path: Path, provider: FakeOpenAI) -> None:
    with RunningSidecar(write_rules(tmp_path, provider, ttl="1s"), tmp_path / "home",
                        environ={}) as sidecar:
        assert ask(sidecar)[1] == "miss"
        assert ask(sidecar)[1] == "hit"
        assert wait_for(lambda: ask(sidecar)[1] == "miss", 5)  # after about a second


def test_an_answer_over_the_entry_limit_is_not_stored(tmp_path: Path,
                                                      provider: FakeOpenAI) -> None:
    with RunningSidecar(write_rules(tmp_path, provider, max_entry=100), tmp_path / "home",
                        environ={}) as sidecar:
        assert [ask(sidecar)[1] for _ in range(2)] == ["miss", "miss"]
        assert len(provider.requests) == 2


def respond(sidecar: RunningSidecar, *, stream: bool) -> tuple[str, str]:
    """(output text, x-model-router-cache) of one Responses API call, JSON or streamed."""
    with client(sidecar) as c:
        if not stream:
            raw = c.responses.with_raw_response.create(model="gpt-4o", input="Say hello.",
                                                       temperature=0)
            return raw.parse().output_text, raw.headers["x-model-router-cache"]
        with c.responses.with_streaming_response.create(
                model="gpt-4o", input="Say hello.", temperature=0, stream=True) as raw:
            events = list(raw.parse())
            header = raw.headers["x-model-router-cache"]
    [done] = [e for e in events if e.type == "response.completed"]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == done.response.output_text  # the deltas add up to the final text
    return done.response.output_text, header


@pytest.mark.parametrize("first, second", [(False, False), (True, True), (False, True),
                                           (True, False)],
                         ids=["json-json", "stream-stream", "json-then-stream",
                              "stream-then-json"])
def test_a_responses_call_is_cached_in_either_shape(sidecar: RunningSidecar,
                                                   provider: FakeOpenAI, first: bool,
                                                   second: bool) -> None:
    text, header = respond(sidecar, stream=first)
    assert header == "miss"
    again, header = respond(sidecar, stream=second)
    assert (again, header) == (text, "hit")
    assert len(provider.requests) == 1


def test_a_redis_store_killed_mid_run_is_a_miss_never_an_error(
        tmp_path: Path, provider: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with RedisServer(tmp_path / "redis") as redis:
        rules = write_rules(tmp_path, provider, redis=redis.url)
        with RunningSidecar(rules, tmp_path / "home", environ={}) as sidecar:
            assert ask(sidecar)[1] == "miss"
            assert wait_for(lambda: ask(sidecar)[1] == "hit", 15)  # stored in Redis
        # Shared: another sidecar (another replica) gets the answer from Redis.
        with RunningSidecar(rules, tmp_path / "home2", environ={}) as sidecar:
            assert ask(sidecar)[1] == "hit"
            redis.kill()
            text, header, _ = ask(sidecar)  # a miss, answered by the provider
            assert header == "miss" and text
            assert value(scrape(sidecar), "sidecar_cache_store_errors_total") >= 1
            redis.restart()  # empty: what it held was lost with it
            # Stored again, and read back: Redis serves as the shared store once more.
            assert wait_for(lambda: ask(sidecar)[1] == "hit", 15)


def test_a_stream_without_usage_is_stored_with_the_providers_usage(
        sidecar: RunningSidecar, provider: FakeOpenAI) -> None:
    """The sidecar asks the provider for usage and hides it from an app that did not ask; the
    stored answer keeps it, so a later hit is counted (and can show usage) all the same."""
    with client(sidecar) as c:
        chunks = list(c.chat.completions.create(model="gpt-4o", messages=HELLO, temperature=0,
                                                stream=True))
    assert all(ch.usage is None for ch in chunks)
    text, header, usage = ask(sidecar)
    assert header == "hit" and usage is not None and usage.completion_tokens > 0
    assert text == "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert value(scrape(sidecar), "sidecar_cache_saved_usd_total", app="cached") > 0


BEDROCK_RULES = """
version: 1
intercept: [api.openai.com]
providers:
  aws: {{type: bedrock, region: us-east-1, endpoint_url: "{runtime}"}}
models:
  - {{name: b, provider: aws, id: "us.acme.chat-v1:0", tier: standard, context: 128000,
      price: {{input: 2, output: 8}}}}
apps:
  - name: cached
    match: {{header: {{x-app: cached}}}}
    cache: {{ttl: 1h}}
    budget: {{usd: 100, per: day}}
    routes: {{"*": b}}
"""


@pytest.mark.parametrize("first, second", [(True, False), (False, True)],
                         ids=["stream-then-json", "json-then-stream"])
def test_a_bedrock_answer_is_cached_and_budgeted_in_either_shape(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: bool, second: bool) -> None:
    """Cache x Bedrock (an event stream transcoded to SSE, assembled back) x budget: the miss
    is reserved and settled at its real cost; the hit draws nothing from the budget."""
    from tests.fakes import bedrock as fb
    from tests.providers.builders import use_test_credentials

    use_test_credentials(monkeypatch, tmp_path)
    with fb.FakeBedrock() as runtime:
        rules = tmp_path / "rules.yaml"
        rules.write_text(BEDROCK_RULES.format(runtime=runtime.url))
        with RunningSidecar(rules, tmp_path / "home", environ={}) as sidecar:
            text, header, usage = ask(sidecar, stream=first)
            assert header == "miss" and len(runtime.requests) == 1
            m = scrape(sidecar)
            spent = value(m, "sidecar_budget_spent_usd", app="cached", period="day")
            assert spent > 0  # the miss reserved its expected cost
            cost = (usage.prompt_tokens * 2 + usage.completion_tokens * 8) / 1e6
            again, header, usage_again = ask(sidecar, stream=second)
            assert header == "hit" and len(runtime.requests) == 1 and again == text
            assert usage_again.total_tokens == usage.total_tokens
            m = scrape(sidecar)
            assert value(m, "sidecar_cost_usd_total", app="cached", model="b") == (
                pytest.approx(cost))
            # The hit reserved nothing: the gauge still shows what the miss left behind.
            assert value(m, "sidecar_budget_spent_usd", app="cached", period="day") == spent
