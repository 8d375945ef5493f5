"""A real ``redis-server`` on a free loopback port, for the budget store's tests.

``RedisServer(tmp_dir)`` starts one (``--save ""`` and no append-only file, unless ``persist``:
then an fsync'ed append-only file in ``dir`` so the counts survive ``stop()``/``restart()``),
and waits until it answers PING. ``stop()`` ends it by its PID (SIGTERM, wait, SIGKILL),
``kill()`` crashes it (SIGKILL), ``restart()`` starts it again on the same port; with a
``password`` it requires one (``url`` carries it). Tests skip
(``pytest.skip``) when ``redis-server`` is not on PATH (``scripts/setup.sh --test`` installs it
as root).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import pytest

START_SECONDS = 10.0


def redis_server_binary() -> str:
    """The path of ``redis-server``, or skip the test."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/sbin")
    if found is None:
        pytest.skip("redis-server is not installed (scripts/setup.sh --test installs it as root)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, dir: Path | None = None, *, persist: bool = False,
                 password: str | None = None) -> None:
        self.binary = redis_server_binary()
        self.dir = dir
        self.persist = persist
        self.password = password
        if persist and dir is None:
            raise ValueError("persist needs a dir")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning"]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            args += ["--dir", str(self.dir)]
        self._log = tempfile.TemporaryFile()  # its output, for the error if it will not start
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_for_ping()

    def _wait_for_ping(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, out = self.process.returncode, self._output()
                self.stop()
                raise RuntimeError(f"redis-server exited with {code}: {out}")
            if self.ping():
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}")

    def ping(self) -> bool:
        """True if the server answers PING (a bare RESP exchange, no client library)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                answer = s.recv(64)
                return answer.startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def stop(self) -> None:
        """End the server by its PID: SIGTERM, then SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()[-2000:]

    def kill(self) -> None:
        """Crash the server (SIGKILL): nothing is saved on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=5)
        self.stop()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
