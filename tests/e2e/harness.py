"""A real, in-process model-router sidecar for end-to-end tests.

``RunningSidecar`` runs ``sidecar.cli.serve`` (the same code as ``model-router run``) on its own
thread and event loop, listening on free loopback ports, and stops it cleanly (listeners and
connections closed) so the next test can start another: mitmproxy allows one Master per process
at a time.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from sidecar.cli.main import RunConfig, ensure_ca, serve
from sidecar.proxy.addon import Sidecar

_one_at_a_time = threading.Lock()


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
