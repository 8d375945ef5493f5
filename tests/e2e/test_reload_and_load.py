"""Hot reload of rules.yaml, and a bounded load test while a provider fails and rules change."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from sidecar.core.routing.cooldown import Cooldowns
from tests.e2e.harness import APP_KEY, FAULT_RULES, RunningSidecar, wait_for
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.e2e


@pytest.fixture
def rules_file(tmp_path: Path, primary, backup) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(FAULT_RULES.format(primary=primary.base_url, backup=backup.base_url))
    return path


def post(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/chat/completions", timeout=10, trust_env=False,
                      headers={"authorization": f"Bearer {APP_KEY}"},
                      json={"messages": [{"role": "user", "content": "hi"}], **body})


def test_a_valid_change_applies_to_new_requests_without_restart(rules_file, confdir, primary,
                                                                 backup):
    with RunningSidecar(rules_file, confdir, environ={}) as sidecar:
        assert post(sidecar.base_url, model="gpt-4o").json()["model"] == "gpt-4o"
        rules_file.write_text(rules_file.read_text().replace('"*": m-primary', '"*": m-backup')
                              .replace("x-app: pinned", "x-app: nobody") +
                              "  - name: everyone\n    routes:\n      gpt-4o: m-backup\n")
        assert wait_for(lambda: post(sidecar.base_url, model="gpt-4o").json()["model"]
                        == "backup-model")
        resp = post(sidecar.base_url, model="gpt-4o")
        assert resp.headers["x-model-router-app"] == "everyone"


def test_a_broken_change_is_logged_and_the_old_rules_stay(rules_file, confdir, primary, backup,
                                                          caplog):
    with RunningSidecar(rules_file, confdir, environ={}) as sidecar:
        good = rules_file.read_text()
        rules_file.write_text(good + "  - name: broken\n    routes:\n      gpt-4o: {prefer: x}\n")
        assert wait_for(lambda: "keeping the previous rules" in caplog.text)
        assert f"{rules_file}:" in caplog.text and "prefer" in caplog.text
        resp = post(sidecar.base_url, model="auto", prefer="cheap")
        assert resp.status_code == 200 and resp.json()["model"] == "primary-model"


def test_reload_on_demand_as_sighup_does(rules_file, confdir, primary, backup):
    """SIGHUP calls the same reload; here it is called directly (signals need the main thread)."""
    with RunningSidecar(rules_file, confdir, environ={}) as sidecar:
        stamp = sidecar.addon.config.stamp
        rules_file.write_text(rules_file.read_text().replace("price: {input: 0.1, output: 0.1}",
                                                             "price: {input: 9.0, output: 9.0}"))
        sidecar.addon.config.stamp = stamp  # as if the watcher had not seen it yet
        assert sidecar.call(sidecar.addon.reload("SIGHUP"))
        assert post(sidecar.base_url, model="auto", prefer="cheap").json()["model"] == (
            "backup-model")


async def _load(url: str, n: int, *, stream_every: int = 2) -> list[tuple[int, str, int]]:
    """n concurrent calls; returns (index, outcome, number of answers) for each."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=30, trust_env=False, limits=limits) as client:
        async def one(i: int) -> tuple[int, str, int]:
            stream = i % stream_every == 0
            body = {"model": "auto", "prefer": "cheap", "stream": stream,
                    "messages": [{"role": "user", "content": f"call {i}"}]}
            async with client.stream("POST", f"{url}/chat/completions", json=body,
                                     headers={"authorization": f"Bearer {APP_KEY}"}) as resp:
                data = await resp.aread()
            if resp.status_code != 200:
                return i, f"error {resp.status_code}", 1
            if stream:
                done = data.count(b"data: [DONE]")
                return i, "ok" if done == 1 and b'"error"' not in data else "broken", done
            return i, "ok" if b'"chat.completion"' in data else "broken", 1
        return await asyncio.gather(*(one(i) for i in range(n)))


def test_load_while_a_provider_fails_and_rules_reload(tmp_path, confdir):
    """300 concurrent calls, half streamed; the primary fails 100 of them; rules.yaml is
    rewritten twice meanwhile. Every call gets exactly one complete answer; nothing unrouted."""
    n = 300
    with FakeOpenAI(name="primary", stream_delay=0.05) as primary, \
            FakeOpenAI(name="backup", stream_delay=0.05) as backup:
        rules_file = tmp_path / "rules.yaml"
        rules_file.write_text(FAULT_RULES.format(primary=primary.base_url,
                                                 backup=backup.base_url))
        for _ in range(n // 3):
            primary.script(status=503)
        cooldowns = Cooldowns(threshold=10_000)  # keep both models in play for the whole run
        with RunningSidecar(rules_file, confdir, environ={}, cooldowns=cooldowns) as sidecar:
            def answered() -> int:
                return len(primary.requests) + len(backup.requests)

            async def scenario() -> tuple[list[tuple[int, str, int]], int]:
                load = asyncio.ensure_future(_load(sidecar.base_url, n))
                reloaded_during_load = 0
                for price, calls_under_way in (("0.2", n // 6), ("0.3", n // 2)):
                    # each reload once that many calls have reached the providers: during load
                    assert await asyncio.to_thread(wait_for, lambda k=calls_under_way: answered() >= k,
                                                   30)
                    before = sidecar.addon.rules
                    text = rules_file.read_text().replace("input: 0.1,", f"input: {price},")
                    rules_file.write_text(text.replace("input: 0.2,", f"input: {price},"))
                    await asyncio.to_thread(wait_for, lambda b=before: sidecar.addon.rules is not b)
                    reloaded_during_load += sidecar.addon.rules is not before and not load.done()
                return await asyncio.wait_for(load, 60), reloaded_during_load

            results, reloads = asyncio.run(scenario())
        primary_calls, backup_calls = list(primary.requests), list(backup.requests)
    assert reloads == 2
    outcomes = Counter(outcome for _, outcome, _ in results)
    assert outcomes == {"ok": n}, outcomes
    assert sorted(i for i, _, _ in results) == list(range(n))  # none lost
    assert all(answers == 1 for _, _, answers in results)  # none answered twice
    # Each call: one successful upstream answer; the 100 failures were each followed by a fallback.
    assert (len(primary_calls) - 100) + len(backup_calls) == n
    assert all(r.path == "/v1/chat/completions" for r in primary_calls + backup_calls)
