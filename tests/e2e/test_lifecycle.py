"""Health endpoints, and graceful shutdown: calls in flight (streams too) finish first."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import requests

from sidecar.proxy.server import drain
from tests.e2e.harness import APP_KEY, RunningSidecar, wait_for
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.e2e


def test_healthz_and_readyz(sidecar):
    base = sidecar.metrics_url.removesuffix("/metrics")
    assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
    ready = requests.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.text.strip() == "ready"
    assert requests.get(f"{base}/nope", timeout=5).status_code == 404


async def _listening(sidecar: RunningSidecar) -> list[str]:
    """The mode specs of the listeners mitmproxy still runs (read on its event loop)."""
    return [s.mode.full_spec for s in sidecar._master.addons.get("proxyserver").servers]


def test_sigterm_drain_lets_streams_in_flight_finish(rules_path, confdir):
    with FakeOpenAI(name="slow", stream_delay=0.2, stream_chunks=6) as slow:
        rules_path.write_text(rules_path.read_text().replace(
            rules_path.read_text().split('base_url: "')[1].split('"')[0], slow.base_url, 1))
        sidecar = RunningSidecar(rules_path, confdir, environ={})
        with sidecar:
            base = sidecar.base_url
            health = sidecar.metrics_url.removesuffix("/metrics")
            result: dict[str, object] = {}

            def stream() -> None:
                body = {"model": "gpt-4o", "stream": True,
                        "messages": [{"role": "user", "content": "hi"}]}
                with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=20,
                                  headers={"authorization": f"Bearer {APP_KEY}"},
                                  trust_env=False) as resp:
                    result["status"] = resp.status_code
                    result["body"] = resp.read()

            client = threading.Thread(target=stream)
            client.start()
            assert slow.wait_for_requests(1, timeout=5)
            draining = threading.Thread(
                target=lambda: sidecar.call(drain(sidecar._master, sidecar.addon, 10.0), 15))
            draining.start()
            assert wait_for(lambda: not sidecar.call(_listening(sidecar))), "listeners stay open"
            assert requests.get(f"{health}/readyz", timeout=5).status_code == 503
            with pytest.raises(httpx.ConnectError):  # no new connections while draining
                httpx.get(f"{base}/models", timeout=2, trust_env=False)
            client.join(15)
            draining.join(15)
    assert result["status"] == 200
    body = result["body"]
    assert isinstance(body, bytes) and body.count(b"data: ") >= 8 and b"data: [DONE]" in body


def test_listeners_queue_a_burst_of_new_connections(sidecar):
    """Every TCP listener's accept queue is LISTEN_BACKLOG deep, not asyncio's 100: read back
    from the kernel (TCP_INFO of a listening socket: tcpi_sacked is its backlog)."""
    import asyncio
    import socket
    import struct

    from sidecar.proxy.server import LISTEN_BACKLOG

    servers = sidecar._master.addons.get("proxyserver").servers
    listeners = [sock for s in servers for srv in s._servers if isinstance(srv, asyncio.Server)
                 for sock in srv.sockets]
    assert listeners
    for sock in listeners:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        sacked = struct.unpack_from("I", info, 28)[0]  # after 8 bytes and 5 u32 (tcp_info)
        assert sacked == LISTEN_BACKLOG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_stalled_stderr_does_not_stall_calls(rules_path, confdir, up1, up2):
    """`model-router run` with its stderr a pipe nobody reads (a stuck log collector): far more
    access lines than the pipe holds, and every call is still answered at once; the lines are
    all written once the pipe drains."""
    reverse, metrics = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "run", "--rules", str(rules_path), "--confdir",
         str(confdir), "--proxy-port", "off", "--reverse-port", str(reverse),
         "--metrics-port", str(metrics)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"})
    calls = 400  # ~450 bytes of access line each: about three pipe buffers (64 KiB)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{metrics}/readyz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "sidecar did not start"
            time.sleep(0.1)
        with requests.Session() as app:
            app.trust_env = False
            for _ in range(calls):
                resp = app.post(f"http://127.0.0.1:{reverse}/v1/chat/completions", timeout=5,
                                headers={"authorization": f"Bearer {APP_KEY}"},
                                json={"model": "gpt-4o", "messages": [
                                    {"role": "user", "content": "hi"}]})
                assert resp.status_code == 200
    finally:
        proc.terminate()
        err = proc.communicate(timeout=30)[1].decode()
    assert err.count("sidecar.access: {") == calls
