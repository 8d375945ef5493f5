"""The benchmark's HTTP/1.1 client pieces (used by ``bench.load``) and what /proc tells.

A ``Target`` is either direct (plain HTTP to a fake provider) or through a proxy the way an app
with ``HTTPS_PROXY`` reaches it: ``CONNECT api.openai.com:443`` (with the app's name as the proxy
user), then TLS with SNI ``api.openai.com`` trusting only the sidecar's CA, then keep-alive
requests on that connection, each with the headers the openai-python SDK sends.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import time
from dataclasses import dataclass
from typing import Any

TIMEOUT = 30.0
now = time.perf_counter
CLK_TCK = os.sysconf("SC_CLK_TCK")

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# What the openai-python SDK sends with every call (an unmodified app's request, as the sidecar
# sees it; header count matters: the proxies look headers up and rewrite them).
SDK_HEADERS = "".join(f"{k}: {v}\r\n" for k, v in {
    "accept-encoding": "gzip, deflate", "connection": "keep-alive", "accept": "application/json",
    "content-type": "application/json", "user-agent": "OpenAI/Python 1.109.1",
    "x-stainless-lang": "python", "x-stainless-package-version": "1.109.1",
    "x-stainless-os": "Linux", "x-stainless-arch": "x64", "x-stainless-runtime": "CPython",
    "x-stainless-runtime-version": "3.12.1", "authorization": "Bearer sk-bench-app-key",
    "x-stainless-async": "false", "x-stainless-retry-count": "0",
    "x-stainless-read-timeout": "600",
}.items())


def proc_cpu(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) that ``pid`` has used so far."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> float:
    """CPU seconds all cores have spent busy (not idle, not waiting for I/O) since boot."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Reply:
    status: int
    first: float  # perf_counter() when the first body byte had arrived
    end: float
    body: bytes
    close: bool


class Target:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.host, self.port = spec["host"], spec["port"]
        self.tunnel: dict[str, Any] | None = spec.get("tunnel")
        self.expect = spec["expect"].encode()
        body = spec["body"].encode()
        self.request = (f"POST {spec['path']} HTTP/1.1\r\nhost: {spec['host_header']}\r\n"
                        f"{SDK_HEADERS}content-length: {len(body)}\r\n\r\n").encode() + body
        self.ssl: ssl.SSLContext | None = None
        if self.tunnel:
            self.ssl = ssl.create_default_context(cafile=self.tunnel["ca"])
            self.ssl.set_alpn_protocols(["http/1.1"])

    async def connect(self) -> Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        if self.tunnel:
            sni, user = self.tunnel["sni"], self.tunnel.get("user")
            auth = ""
            if user:
                auth = f"proxy-authorization: Basic {base64.b64encode(f'{user}:'.encode()).decode()}\r\n"
            writer.write(f"CONNECT {sni}:443 HTTP/1.1\r\nhost: {sni}:443\r\n{auth}\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(f"CONNECT refused: {head[:60]!r}")
            await writer.start_tls(self.ssl, server_hostname=sni)  # type: ignore[arg-type]
        return reader, writer

    def ok(self, reply: Reply) -> bool:
        return reply.status == 200 and self.expect in reply.body


async def read_reply(reader: asyncio.StreamReader, started: float) -> Reply:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    close = b"\r\nconnection: close" in lower
    if b"\r\ntransfer-encoding: chunked" in lower:
        parts: list[bytes] = []
        first = 0.0
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
            first = first or now()
        return Reply(status, first or now(), now(), b"".join(parts), close)
    at = lower.find(b"\r\ncontent-length:")
    length = int(lower[at + 17:].split(b"\r\n", 1)[0]) if at >= 0 else 0
    body = await reader.readexactly(length) if length else b""
    end = now()
    return Reply(status, end, end, body, close)


async def exchange(conn: Conn, target: Target) -> tuple[Reply, float]:
    started = now()
    conn[1].write(target.request)
    async with asyncio.timeout(TIMEOUT):
        return await read_reply(conn[0], started), started


def close(conn: Conn | None) -> None:
    if conn is not None:
        conn[1].transport.abort()


class Window:
    """CPU over the measured window: the proxy's, this process's, and everybody else's (the
    machine's busy time minus the bench's own processes: other work disturbing the numbers)."""

    def __init__(self, pid: int | None, others: list[int]) -> None:
        self.pid, self.others = pid, others
        self.proxy0 = self.own0 = self.t0 = self.busy0 = self.others0 = 0.0

    def start(self) -> None:
        self.proxy0, self.own0, self.t0 = proc_cpu(self.pid), time.process_time(), now()
        self.busy0, self.others0 = machine_busy(), sum(proc_cpu(p) for p in self.others)

    def stop(self, requests: int) -> dict[str, float | None]:
        proxy, own, wall = (proc_cpu(self.pid) - self.proxy0, time.process_time() - self.own0,
                            now() - self.t0)
        ours = proxy + own + sum(proc_cpu(p) for p in self.others) - self.others0
        foreign = machine_busy() - self.busy0 - ours

        def per(seconds: float) -> float | None:
            return seconds * 1000 / requests if requests else None

        return {"proxy_cpu_ms_per_req": per(proxy) if self.pid else None,
                "client_cpu_ms_per_req": per(own), "proxy_cpu_util": proxy / wall if wall else None,
                "client_cpu_util": own / wall if wall else None,
                "foreign_cpu_util": max(0.0, foreign / wall) if wall else None}
