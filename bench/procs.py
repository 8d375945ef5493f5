"""Child processes of the benchmark (each speaks JSON lines) and what /proc tells about them."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from bench.client import machine_busy

REPO = Path(__file__).resolve().parent.parent
TWO_CORES = (os.cpu_count() or 1) >= 2


class BenchError(RuntimeError):
    pass


class Child:
    """``python -m MODULE ARGS`` with JSON lines on stdin/stdout; stderr goes to a log file."""

    def __init__(self, name: str, args: list[str], *, logdir: Path, cpu: int | None = None,
                 env: dict[str, str] | None = None, start_timeout: float = 60.0,
                 wait_port: int | None = None) -> None:
        """``wait_port``: the child prints nothing; it is ready once this port accepts."""
        self.name = name
        self.logpath = logdir / f"{name}.log"
        self._log: IO[bytes] = open(self.logpath, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=REPO, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._buf = b""
        if cpu is not None:
            pin(self.proc.pid, cpu)  # before it starts any thread; its threads inherit this
        if wait_port is None:
            self.hello = self.read(start_timeout)
        else:
            self._wait_for(wait_port, start_timeout)
            self.hello = {"pid": self.proc.pid, "ports": {"regular": wait_port}}
        self.pid: int = self.hello.get("pid", self.proc.pid)

    def _wait_for(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited (code {self.proc.poll()}){self.tail()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"{self.name}: port {port} not listening after {timeout:.0f}s{self.tail()}")

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name}: no answer within {timeout:.0f}s{self.tail()}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    raise BenchError(f"{self.name} exited (code {self.proc.poll()}){self.tail()}")
                self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise BenchError(f"{self.name}: {reply['error']}{self.tail()}")
        return reply

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def call(self, obj: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(obj)
        return self.read(timeout)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.logpath.read_text("utf-8", "replace").splitlines()[-lines:]
        except OSError:
            return ""
        return ("\n  " + "\n  ".join(text)) if text else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self._log.close()


QUIET = 0.15  # cores that other processes may keep busy without disturbing the numbers much


def wait_quiet(limit: float) -> float:
    """The cores other processes keep busy (sampled over 1 s while the bench is idle), after
    waiting up to ``limit`` s for that to drop below ``QUIET``."""
    deadline = time.monotonic() + limit
    while True:
        before, t0 = machine_busy(), time.monotonic()
        time.sleep(1.0)
        busy = (machine_busy() - before) / (time.monotonic() - t0)
        if busy <= QUIET or time.monotonic() >= deadline:
            return busy


def free_port() -> int:
    """A loopback port that was free a moment ago (for a child that needs fixed ports)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(pid: int, cpu: int) -> None:
    """Move ``pid`` to one core (a no-op on a one-core machine)."""
    if TWO_CORES and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, {cpu})


def memory_mb(pid: int) -> dict[str, float]:
    """Resident set size now and at its peak (VmRSS, VmHWM) in MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return {"rss_mb": out.get("VmRSS", 0.0), "peak_rss_mb": out.get("VmHWM", 0.0)}


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def listen_overflows() -> int:
    """The kernel's TcpExt ListenOverflows counter: connections refused by a full backlog."""
    try:
        lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    except OSError:
        return -1
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names and names[0] == "TcpExt:" and "ListenOverflows" in names:
            return int(values[names.index("ListenOverflows")])
    return -1
