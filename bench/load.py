"""The load generator: its own process, HTTP/1.1 keep-alive over raw asyncio streams.

    python -m bench.load      (driven by bench.run: one JSON command per stdin line)

Targets are described in ``bench.client``. Commands (each answered by one JSON line):

* ``load``: ``conc`` connections send requests back to back for ``warmup`` + ``seconds``; the
  requests that started after the warm-up are measured (req/s, p50/p99 latency).
* ``stream``: streams one after another; time to the first body byte (the first SSE event) and to
  the terminating chunk.
* ``hold``: open ``count`` streams, ``batch`` every ``interval`` s (the listen backlog is 100),
  each read up to its first event; answer with how many are open, then wait for a ``release``
  line, release the upstream, read every stream to its end and answer with how many completed.

Each measured answer also carries the CPU seconds that ``cpu_pid`` (the proxy) and this process
spent in the measured window, read from ``/proc``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bench.client import TIMEOUT, Conn, Target, Window, close, exchange, now, percentile, read_reply


async def op_load(t: Target, conc: int, seconds: float, warmup: float,
                  cpu_pid: int | None = None, others: list[int] | None = None) -> dict[str, Any]:
    conns: list[Conn | None] = list(await asyncio.gather(*(t.connect() for _ in range(conc))))
    window = Window(cpu_pid, others or [])
    t_start = now()
    warm_end, end = t_start + warmup, t_start + warmup + seconds
    latencies: list[float] = []
    last = [0.0]
    errors = [0]

    async def worker(i: int) -> None:
        while now() < end:
            try:
                conn = conns[i] = conns[i] or await t.connect()
                reply, started = await exchange(conn, t)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                errors[0] += 1
                close(conns[i])
                conns[i] = None
                continue
            if not t.ok(reply):
                errors[0] += 1
            elif started >= warm_end:
                latencies.append(reply.end - started)
                last[0] = max(last[0], reply.end)
            if reply.close:
                close(conns[i])
                conns[i] = None

    async def mark() -> None:
        await asyncio.sleep(max(0.0, warm_end - now()))
        window.start()

    await asyncio.gather(mark(), *(worker(i) for i in range(conc)))
    cpu = window.stop(len(latencies))
    for conn in conns:
        close(conn)
    span = last[0] - window.t0
    ms = [x * 1000 for x in latencies]
    return {"requests": len(ms), "errors": errors[0], "seconds": span,
            "rps": len(ms) / span if span > 0 else None,
            "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), **cpu}


async def op_stream(t: Target, count: int, seconds: float, warmup: int,
                    cpu_pid: int | None = None, others: list[int] | None = None) -> dict[str, Any]:
    conn: Conn | None = None
    window = Window(cpu_pid, others or [])
    ttfb: list[float] = []
    ttlb: list[float] = []
    errors = done = 0
    deadline = None
    while done < warmup + count and (deadline is None or now() < deadline):
        if done == warmup:
            window.start()
            deadline = now() + seconds
        try:
            conn = conn or await t.connect()
            reply, started = await exchange(conn, t)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            errors += 1
            close(conn)
            conn = None
            continue
        done += 1
        if not t.ok(reply):
            errors += 1
        elif done > warmup:
            ttfb.append((reply.first - started) * 1000)
            ttlb.append((reply.end - started) * 1000)
        if reply.close:
            close(conn)
            conn = None
    cpu = window.stop(len(ttfb))
    close(conn)
    return {"streams": len(ttfb), "errors": errors,
            "ttfb_p50_ms": percentile(ttfb, 50), "ttfb_p99_ms": percentile(ttfb, 99),
            "ttlb_p50_ms": percentile(ttlb, 50), "ttlb_p99_ms": percentile(ttlb, 99), **cpu}


async def op_hold(t: Target, count: int, batch: int, interval: float, timeout: float,
                  release: list[Any], answer: Callable[[dict[str, Any]], None],
                  next_line: Callable[[], Awaitable[str]]) -> dict[str, Any]:
    async def open_one() -> Conn:
        conn = await t.connect()
        conn[1].write(t.request)
        head = await conn[0].readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"status {head[9:12]!r}")
        size = int((await conn[0].readuntil(b"\r\n")).split(b";")[0], 16)
        await conn[0].readexactly(size + 2)
        return conn

    started = now()
    tasks = []
    for i in range(0, count, batch):
        tasks += [asyncio.ensure_future(open_one()) for _ in range(min(batch, count - i))]
        await asyncio.sleep(interval)
    try:
        async with asyncio.timeout(timeout):
            results = await asyncio.gather(*tasks, return_exceptions=True)
    except TimeoutError:
        results = [x.result() if x.done() and not x.cancelled() and x.exception() is None
                   else TimeoutError() for x in tasks]
    conns = [r for r in results if isinstance(r, tuple)]
    errors = sorted({type(r).__name__ for r in results if not isinstance(r, tuple)})
    answer({"open": len(conns), "failed": count - len(conns), "error_types": errors,
            "open_seconds": now() - started})
    await next_line()  # the orchestrator has read the proxy's memory
    reader, writer = await asyncio.open_connection(*release)
    writer.write(b"GET /_bench/release HTTP/1.1\r\nhost: bench\r\n\r\n")
    await read_reply(reader, now())
    writer.close()

    async def finish(conn: Conn) -> bool:
        async with asyncio.timeout(TIMEOUT):
            body = b""
            while True:
                size = int((await conn[0].readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    return t.expect in body
                body += (await conn[0].readexactly(size + 2))[:-2]

    done = await asyncio.gather(*(finish(c) for c in conns), return_exceptions=True)
    for conn in conns:
        close(conn)
    return {"completed": sum(1 for d in done if d is True)}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def answer(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def dispatch(cmd: dict[str, Any]) -> dict[str, Any]:
    t = Target(cmd.pop("target"))
    op = cmd.pop("op")
    if op == "load":
        return await op_load(t, **cmd)
    if op == "stream":
        return await op_stream(t, **cmd)
    if op == "hold":
        loop = asyncio.get_running_loop()
        return await op_hold(t, **cmd, answer=answer,
                             next_line=lambda: loop.run_in_executor(None, sys.stdin.readline))
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    raise_fd_limit()
    answer({"pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        try:
            answer(asyncio.run(dispatch(cmd)))
        except Exception as e:  # noqa: BLE001 - reported to the orchestrator
            answer({"error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    main()
