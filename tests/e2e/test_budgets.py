"""Per-app budgets (issue 15), end to end with the real openai SDK: degrade at the threshold,
refuse at the limit, keep the spend across a restart (local SQLite and Redis), and two sidecar
processes drawing on one Redis budget under concurrent load -- with Redis killed mid-run.

Prices are chosen so the sums are easy: every call of the fake provider reports 2 completion
tokens and a handful of prompt tokens; ``big`` costs $10,000 per million tokens each way, so one
call costs a few cents, and the budgets are dollars.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from tests.e2e.harness import RunningSidecar, scrape, value, wait_for
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.redis_server import RedisServer, free_port

pytestmark = pytest.mark.e2e

APP_KEY = "sk-budget-app"
RULES = """
version: 1
intercept: [api.openai.com]
providers:
  prov: {{type: openai, base_url: "{base_url}", api_key: from-request}}
models:
  - {{name: big, provider: prov, id: big-v1, tier: premium, context: 128000,
      price: {{input: 10000, output: 10000}}, quality: 90}}
  - {{name: small, provider: prov, id: small-v1, tier: economy, context: 128000,
      price: {{input: 1000, output: 1000}}, quality: 10}}
{state}
apps:
  - name: nightly
    match: {{header: {{x-app: nightly}}}}
    budget: {{usd: {usd}, per: day, degrade: [{{at: 50%, tier: economy, prefer: cheap}}]}}
    routes: {{"*": big}}
"""
HELLO = [{"role": "user", "content": "hi"}]


def rules_text(base_url: str, *, usd: float, redis: str | None = None,
               when_down: str = "local") -> str:
    state = f"state: {{redis: \"{redis}\", when_down: {when_down}}}" if redis else ""
    return RULES.format(base_url=base_url, usd=usd, state=state)


@pytest.fixture
def provider() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(name="prov", reply="ok ok") as up:
        yield up


def call(base_url: str, **extra: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    resp = requests.post(f"{base_url}/v1/chat/completions", timeout=10,
                         headers={"authorization": f"Bearer {APP_KEY}", "x-app": "nightly"},
                         json={"model": "gpt-4o", "messages": HELLO, "max_tokens": 5, **extra})
    return resp.status_code, dict(resp.headers), resp.json()


def test_a_budget_degrades_at_its_threshold_then_refuses_naming_app_and_budget(
        tmp_path: Path, provider: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text(provider.base_url, usd=1.0))
    served, remaining = [], []
    with RunningSidecar(rules, tmp_path / "home", environ={}) as sidecar:
        for _ in range(200):
            status, headers, body = call(sidecar.base_url)
            if status != 200:
                break
            served.append(body["model"])
            remaining.append(float(headers["x-model-router-budget-remaining"]))
            assert ("budget=degraded" in headers["x-model-router-reason"]) == (
                body["model"] == "small-v1")
        assert status == 429, body
        error = body["error"]
        assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
        assert "'nightly'" in error["message"] and "$1 per day" in error["message"]
        m = scrape(sidecar)
        assert value(m, "sidecar_budget_refusals_total", app="nightly") == 1
        assert value(m, "sidecar_budget_degrades_total", app="nightly") == served.count(
            "small-v1")
        assert value(m, "sidecar_budget_limit_usd", app="nightly", period="day") == 1.0
    # The pin served until half the budget was used, then the economy model did, to the end.
    first_small = served.index("small-v1")
    assert set(served[:first_small]) == {"big-v1"} and set(served[first_small:]) == {"small-v1"}
    # The step is decided by what was used before the call (< 50%: the pin), the header says
    # what is left after reserving this call's expected cost (one big call: under $0.15).
    assert all(left > 0.5 - 0.15 for left in remaining[:first_small])
    assert all(0 <= left <= 0.5 for left in remaining[first_small:])
    assert remaining[-1] < 0.05  # refused only once too little was left for one more call


def test_a_restart_keeps_what_was_spent_local_store(tmp_path: Path,
                                                     provider: FakeOpenAI) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text(provider.base_url, usd=5.0))
    home = tmp_path / "home"
    with RunningSidecar(rules, home, environ={}) as sidecar:
        for _ in range(5):
            assert call(sidecar.base_url)[0] == 200
        left = float(call(sidecar.base_url)[1]["x-model-router-budget-remaining"])
    with RunningSidecar(rules, home, environ={}) as sidecar:
        after = float(call(sidecar.base_url)[1]["x-model-router-budget-remaining"])
    assert after < left < 5.0  # the second process went on from the first one's spend


# -- two processes, one Redis ---------------------------------------------------------------


class SidecarProcess:
    """``python -m sidecar run`` in its own process (base-URL listener and /metrics)."""

    def __init__(self, rules: Path, confdir: Path, log: Path) -> None:
        self.reverse, self.metrics = free_port(), free_port()
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "run", "--rules", str(rules), "--confdir",
             str(confdir), "--proxy-port", "off", "--reverse-port", str(self.reverse),
             "--metrics-port", str(self.metrics)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"})
        assert wait_for(self.ready, 20), "sidecar process did not start"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.reverse}"

    def ready(self) -> bool:
        assert self.proc.poll() is None, "sidecar process exited"
        try:
            return requests.get(f"http://127.0.0.1:{self.metrics}/readyz", timeout=1).ok
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@contextmanager
def two_sidecars(tmp_path: Path, rules: Path) -> Iterator[tuple[SidecarProcess, ...]]:
    procs = [SidecarProcess(rules, tmp_path / f"home{i}", tmp_path / f"sidecar{i}.log")
             for i in (1, 2)]
    try:
        yield tuple(procs)
    finally:
        for proc in procs:
            proc.stop()


async def load(urls: list[str], n: int) -> list[int]:
    """``n`` concurrent calls, spread over ``urls``; their statuses."""
    async with httpx.AsyncClient(timeout=20, trust_env=False) as client:
        async def one(i: int) -> int:
            resp = await client.post(
                f"{urls[i % len(urls)]}/v1/chat/completions",
                headers={"authorization": f"Bearer {APP_KEY}", "x-app": "nightly"},
                json={"model": "gpt-4o", "messages": HELLO, "max_tokens": 5})
            return resp.status_code
        return list(await asyncio.gather(*(one(i) for i in range(n))))


def spent(redis: RedisServer) -> float:
    """What the Redis budget of app nightly says was spent today, in USD."""
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    try:
        keys = client.keys("budget:nightly:day:*")
        assert len(keys) == 1
        return int(client.hget(keys[0], "spent") or 0) / 1e6
    finally:
        client.close()


def test_two_replicas_share_one_budget_under_concurrent_load(
        tmp_path: Path, provider: FakeOpenAI) -> None:
    with RedisServer(tmp_path / "redis") as redis:
        rules = tmp_path / "rules.yaml"
        rules.write_text(rules_text(provider.base_url, usd=0.5, redis=redis.url))
        with two_sidecars(tmp_path, rules) as (one, two):
            statuses = asyncio.run(load([one.base_url, two.base_url], 240))
            assert statuses.count(200) > 0 and set(statuses) <= {200, 429}
            # Then use up what is left, one call at a time, alternating replicas: both refuse
            # once the one budget they share is used up (whichever used it).
            refused: set[int] = set()
            for i in range(800):
                if call((one, two)[i % 2].base_url)[0] == 429:
                    refused.add(i % 2)
                    if refused == {0, 1}:
                        break
            assert refused == {0, 1}
        total = spent(redis)
        # Used up (what is left is under a few small calls' reservations, ~$0.015 each: the
        # last settlements may land just after the next call reserves), and never more than the
        # limit plus one call's reservation (a big call's is under $0.15).
        assert 0.5 - 0.05 <= total <= 0.5 + 0.15, total


def test_a_restart_keeps_what_was_spent_redis(tmp_path: Path, provider: FakeOpenAI) -> None:
    with RedisServer(tmp_path / "redis") as redis:
        rules = tmp_path / "rules.yaml"
        rules.write_text(rules_text(provider.base_url, usd=5.0, redis=redis.url))
        home = tmp_path / "home"
        with RunningSidecar(rules, home, environ={}) as sidecar:
            for _ in range(5):
                assert call(sidecar.base_url)[0] == 200
        before = spent(redis)
        assert before > 0
        with RunningSidecar(rules, tmp_path / "elsewhere", environ={}) as sidecar:
            left = float(call(sidecar.base_url)[1]["x-model-router-budget-remaining"])
        assert left < 5.0 - before + 1e-6


@pytest.mark.parametrize("when_down", ["local", "refuse"])
def test_redis_killed_mid_run_and_restarted(tmp_path: Path, provider: FakeOpenAI,
                                            when_down: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar")
    with RedisServer(tmp_path / "redis") as redis:
        rules = tmp_path / "rules.yaml"
        rules.write_text(rules_text(provider.base_url, usd=50.0, redis=redis.url,
                                    when_down=when_down))
        with RunningSidecar(rules, tmp_path / "home", environ={}) as sidecar:
            assert call(sidecar.base_url)[0] == 200
            redis.kill()
            started = time.monotonic()
            status, _, body = call(sidecar.base_url)
            if when_down == "local":
                assert status == 200  # counted in the process meanwhile
            else:
                assert status == 503 and body["error"]["code"] == "budget_store_unavailable"
            assert time.monotonic() - started < 5  # answered, not hung on a dead Redis
            assert value(scrape(sidecar), "sidecar_state_store_up") == 0
            assert "unreachable" in caplog.text
            redis.restart()
            assert wait_for(lambda: call(sidecar.base_url)[0] == 200
                            and value(scrape(sidecar), "sidecar_state_store_up") == 1, 10)
        assert spent(redis) > 0  # counted in Redis again once it was back
        assert json.dumps(caplog.text).count("budget store redis") >= 1
