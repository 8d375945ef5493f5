"""A real, in-process model-router sidecar for end-to-end tests.

``RunningSidecar`` runs ``sidecar.proxy.server.serve`` (the same code as ``model-router run``) on its own
thread and event loop, listening on free loopback ports, and stops it cleanly (listeners and
connections closed) so the next test can start another: mitmproxy allows one Master per process
at a time.

Beside it, the helpers the e2e modules share (import them from here, never from another test
module): the app keys of the rules in ``conftest.py``, an SDK client as an unmodified app runs it
(``proxied_client``), /metrics samples (``scrape``, ``value``, ``scrape_after_stream``), and
``wait_for`` (poll a condition with a deadline instead of sleeping).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from sidecar.proxy.addon import Sidecar
from sidecar.proxy.server import RunConfig, ensure_ca, serve

_one_at_a_time = threading.Lock()

APP_KEY = "sk-app-own-key-123"
KEYED_APP_KEY = "sk-keyed-app-456"
CHEAP_KEY = "sk-sidecar-cheapco-789"
HELLO = [{"role": "user", "content": "Say hello."}]
OPEN_CLIENTS: list[openai.OpenAI] = []  # closed after each test (tests/e2e/conftest.py)

# Two providers (fixtures `primary`, `backup` in conftest.py) whose `auto, prefer: cheap` plan is
# always [m-primary, m-backup] (tests/e2e/test_faults.py, test_reload_and_load.py).
FAULT_RULES = """
version: 1
intercept: [{{host: api.openai.com, provider: primary}}]
providers:
  primary: {{type: openai, base_url: "{primary}"}}
  backup: {{type: openai, base_url: "{backup}"}}
models:
  - {{name: m-primary, provider: primary, id: primary-model, tier: economy,
      price: {{input: 0.1, output: 0.1}}, context: 100000, quality: 10}}
  - {{name: m-backup, provider: backup, id: backup-model, tier: economy,
      price: {{input: 1.0, output: 1.0}}, context: 100000, quality: 10}}
apps:
  - name: pinned
    match: {{header: {{x-app: pinned}}}}
    routes:
      "*": m-primary
"""


class RunningSidecar:
    def __init__(self, rules: Path, confdir: Path, *, environ: dict[str, str] | None = None,
                 transparent: bool = False, body_size_limit: str = "32m",
                 proxy_auth: str = "", **addon_options: Any) -> None:
        self.config = RunConfig(rules=rules, proxy_port=0, reverse_port=0,
                                transparent_port=0 if transparent else None, confdir=confdir,
                                body_size_limit=body_size_limit, proxy_auth=proxy_auth,
                                metrics_port=0)
        # No exploration: `prefer: fast` must pick the same model every time in a test.
        self.addon = Sidecar(environ=environ if environ is not None else dict(os.environ),
                             explore_rate=0.0, **addon_options)
        self.ca = ensure_ca(confdir)
        self.addrs: dict[str, list[tuple[str, int]]] = {}
        self._ready = threading.Event()
        self._master: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="sidecar", daemon=True)

    def __enter__(self) -> RunningSidecar:
        if not _one_at_a_time.acquire(timeout=30):
            raise RuntimeError("another sidecar is still running in this process")
        self._thread.start()
        if not self._ready.wait(15) or self._error:
            self.stop()
            raise RuntimeError(f"sidecar did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(serve(self.config, addon=self.addon, on_ready=self._on_ready,
                              on_master=self._on_master))
        except BaseException as e:  # noqa: BLE001 - reported to the test thread
            self._error = e
            self._ready.set()

    def _on_master(self, master: Any) -> None:
        self._master = master

    def _on_ready(self, addrs: dict[str, list[tuple[str, int]]]) -> None:
        self.addrs = addrs
        self._ready.set()

    def call(self, coro: Any, timeout: float = 10) -> Any:
        """Run a coroutine on the sidecar's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._master.event_loop).result(timeout)

    def port(self, mode: str) -> int:
        return self.addrs[mode][0][1]

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.addon.metrics_port}/metrics"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port('regular')}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port('reverse')}/v1"

    def stop(self) -> None:
        try:
            if self._master is not None and self._thread.is_alive():
                self._master.event_loop.call_soon_threadsafe(self._master.shutdown)
            self._thread.join(15)
        finally:
            if _one_at_a_time.locked():
                _one_at_a_time.release()


def proxied_client(
    sidecar: RunningSidecar, monkeypatch: pytest.MonkeyPatch, *, user: str = "",
    key: str = APP_KEY, **kwargs: Any,
) -> openai.OpenAI:
    """The app as it runs unmodified: only HTTPS_PROXY and the CA bundle are set."""
    at = f"{user}@" if user else ""
    monkeypatch.setenv("HTTPS_PROXY", f"http://{at}127.0.0.1:{sidecar.port('regular')}")
    monkeypatch.setenv("SSL_CERT_FILE", str(sidecar.ca.bundle))
    client = openai.OpenAI(api_key=key, max_retries=0, **kwargs)
    OPEN_CLIENTS.append(client)
    return client


def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere in the chain (variables, profile and credential files)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(sidecar: RunningSidecar) -> Samples:
    text = requests.get(sidecar.metrics_url, timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_after_stream(sidecar: RunningSidecar, name: str, **labels: str) -> Samples:
    """A stream's call is counted when mitmproxy closes it, a moment after the app has read
    the last chunk: scrape until ``name{labels}`` shows up (at most 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        samples = scrape(sidecar)
        if value(samples, name, **labels) or time.monotonic() > deadline:
            return samples
        time.sleep(0.02)


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Whether ``predicate()`` became true within ``timeout`` seconds (polled every 50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
