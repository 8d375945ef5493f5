"""Transparent mode for real: iptables sends a network namespace's outbound :443 to the sidecar,
and an unmodified client, with no proxy variable at all, is routed.

Everything happens in a fresh network namespace (root only; skipped otherwise, but in CI, which
runs as root, a missing prerequisite is a failure, not a skip):

- ``/etc/hosts`` inside it (``ip netns exec`` bind-mounts ``/etc/netns/NAME/hosts``) sends
  ``api.openai.com`` to 127.0.0.77 and ``other.test`` to 127.0.0.78;
- a fake OpenAI upstream (plain HTTP on 127.0.0.1, not port 443) and an HTTPS origin for
  ``other.test`` (127.0.0.78:443, with its own CA) listen there;
- the real sidecar (``python -m sidecar run``) runs there as the UID the Kubernetes manifest
  exempts, with the manifest's ``--transparent-port``;
- the iptables rule of ``deploy/kubernetes/deployment.yaml``'s init container is installed
  verbatim, plus a rule without a target that only counts the sidecar's own :443 connections;
- the clients run as root: the stock openai SDK with only ``SSL_CERT_FILE`` set, and urllib
  trusting only other.test's own CA.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.tls_host import make_tls_material
from tests.test_deploy import redirect_rule, rule_option

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
OPENAI_IP, OTHER_HOST, OTHER_IP = "127.0.0.77", "other.test", "127.0.0.78"
HOSTS = f"127.0.0.1 localhost\n::1 localhost\n{OPENAI_IP} api.openai.com\n{OTHER_IP} {OTHER_HOST}\n"
METRICS_PORT = 9464  # a fresh namespace: every port is free
APP_KEY = "sk-transparent-app-key"
START_TIMEOUT = 30.0
RUN_TIMEOUT = 60.0
T = TypeVar("T")

RULES = """
version: 1
intercept:
  - {{host: api.openai.com, provider: fake}}
providers:
  fake: {{type: openai, base_url: "{base_url}", api_key: from-request}}
models:
  - {{name: m-routed, provider: fake, id: routed-model-v1, tier: economy,
      price: {{input: 0.1, output: 0.2}}, context: 128000, quality: 20, coding: 20}}
apps:
  - name: pod-app
    match: {{listen: transparent}}
    routes:
      gpt-4o: m-routed
"""

# The app: stock openai SDK code. No base_url, no http_client, no proxy; the environment it
# runs in holds SSL_CERT_FILE and nothing else of the kind.
OPENAI_CLIENT = f"""
import json, openai
client = openai.OpenAI(api_key={APP_KEY!r}, max_retries=0, timeout=20)
raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o", messages=[{{"role": "user", "content": "hello"}}])
completion = raw.parse()
print(json.dumps({{
    "content": completion.choices[0].message.content,
    "model": completion.model,
    "headers": {{k: v for k, v in raw.headers.items() if k.startswith("x-model-router-")}},
}}))
"""

# Another HTTPS host, trusted through its own CA only: a certificate minted by the sidecar fails.
OTHER_CLIENT = f"""
import json, ssl, sys, urllib.request
context = ssl.create_default_context(cafile=sys.argv[1])
with urllib.request.urlopen("https://{OTHER_HOST}/ping", context=context, timeout=20) as resp:
    print(json.dumps({{"status": resp.status, "body": json.loads(resp.read())}}))
"""


# --------------------------------------------------------------------------------------------
# Prerequisites
# --------------------------------------------------------------------------------------------


def _tool(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def _missing_prerequisite() -> str | None:
    if not sys.platform.startswith("linux"):
        return "transparent mode needs Linux (network namespaces, iptables)"
    if os.geteuid() != 0:
        return "needs root to create a network namespace and iptables rules (CI runs as root)"
    missing = [t for t in ("ip", "iptables", "setpriv") if _tool(t) is None]
    if missing:
        return (f"needs {', '.join(missing)} (apt-get install iproute2 iptables util-linux; "
                ".ci/run installs them)")
    return None


def _unavailable(reason: str) -> None:
    """Skip, except in CI as root, where this test must run: a failure says what is missing."""
    if os.environ.get("CI") == "true" and os.geteuid() == 0:
        pytest.fail(f"transparent-mode test cannot run in CI: {reason}")
    pytest.skip(reason)


# --------------------------------------------------------------------------------------------
# A network namespace and the processes in it
# --------------------------------------------------------------------------------------------


class NetNS:
    """A named network namespace (``ip netns``) with its own /etc/hosts; ``close()`` ends every
    process started through it, then deletes the namespace and the hosts file."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.etc = Path("/etc/netns") / name
        self._made_etc_netns = not self.etc.parent.exists()
        self._procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self._cleanups: list[Callable[[], None]] = []
        self._created = False

    def create(self) -> None:
        self.etc.mkdir(parents=True)
        (self.etc / "hosts").write_text(HOSTS)
        done = subprocess.run([_tool("ip") or "ip", "netns", "add", self.name],
                              capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            _unavailable(f"cannot create a network namespace: {done.stderr.strip()}")
        self._created = True
        self.check(["ip", "link", "set", "lo", "up"])

    def argv(self, argv: list[str]) -> list[str]:
        return [_tool("ip") or "ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], *, env: dict[str, str] | None = None,
            timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(argv), env=env if env is not None else base_env(),
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def check(self, argv: list[str], **kwargs: Any) -> str:
        done = self.run(argv, **kwargs)
        assert done.returncode == 0, (
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self, argv: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(self.argv(argv), env=env, cwd=REPO, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self._procs.append((proc, log))
        return proc

    def inside(self, fn: Callable[[], T], timeout: float = 20.0) -> T:
        """``fn()`` on a thread that joined the namespace: its sockets, and those of any thread
        it starts, live there (setns(2) changes the calling thread only)."""
        result: list[T] = []
        error: list[BaseException] = []

        def target() -> None:
            try:
                fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
                try:
                    os.setns(fd, os.CLONE_NEWNET)
                finally:
                    os.close(fd)
                result.append(fn())
            except BaseException as e:  # noqa: BLE001 - re-raised on the caller's thread
                error.append(e)

        thread = threading.Thread(target=target, name=f"in-{self.name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"call inside {self.name} still running after {timeout}s")
        if error:
            raise error[0]
        return result[0]

    def on_close(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    def close(self) -> None:
        for proc, _ in reversed(self._procs):
            stop_process(proc)
        for fn in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                fn()
        if self._created:
            subprocess.run([_tool("ip") or "ip", "netns", "delete", self.name],
                           capture_output=True, timeout=10)
        shutil.rmtree(self.etc, ignore_errors=True)
        if self._made_etc_netns:
            with contextlib.suppress(OSError):
                self.etc.parent.rmdir()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, then SIGKILL if it has not gone within 10 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def base_env(**extra: str) -> dict[str, str]:
    """An explicit environment: this machine pre-sets CA variables that must not leak in."""
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", **extra}


def log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# The HTTPS origin for other.test
# --------------------------------------------------------------------------------------------


class OtherOrigin:
    """``https://other.test`` on 127.0.0.78:443 with its own CA; records SNI and paths."""

    def __init__(self, folder: Path) -> None:
        material = make_tls_material(hostnames=(OTHER_HOST,), ips=(OTHER_IP,))
        self.ca_path = folder / "other-ca.pem"
        self.ca_path.write_bytes(material.ca_pem)
        (folder / "other.pem").write_bytes(material.cert_pem)
        (folder / "other.key").write_bytes(material.key_pem)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(folder / "other.pem", folder / "other.key")
        self.server_names: list[str | None] = []
        self.paths: list[str] = []
        self.context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self.server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        """Call inside the namespace."""
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                origin.paths.append(self.path)
                body = json.dumps({"host": OTHER_HOST, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        server = http.server.ThreadingHTTPServer((OTHER_IP, 443), Handler)
        server.daemon_threads = True
        server.socket = self.context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, name="other-origin", daemon=True).start()
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# --------------------------------------------------------------------------------------------
# The setup: namespace, upstreams, sidecar, redirect
# --------------------------------------------------------------------------------------------


class Setup:
    def __init__(self, ns: NetNS, upstream: FakeOpenAI, origin: OtherOrigin, home: Path,
                 rule: list[str], log: Path) -> None:
        self.ns, self.upstream, self.origin = ns, upstream, origin
        self.home, self.rule, self.log = home, rule, log
        self.uid = rule_option(rule, "--uid-owner")
        self.port = int(rule_option(rule, "--to-ports"))

    @property
    def bundle(self) -> Path:
        return self.home / "ca-bundle.pem"

    def counters(self) -> dict[str, int]:
        """Connections (first packets in the nat table) redirected / made by the sidecar."""
        out = self.ns.check(["iptables", "-t", "nat", "-S", "OUTPUT", "-v"])
        counts = {}
        for line in out.splitlines():
            m = re.search(r" -c (\d+) \d+", line)
            if not m or "--dport 443" not in line:
                continue
            if "-j REDIRECT" in line:
                counts["redirected"] = int(m[1])
            elif f"--uid-owner {self.uid}" in line and "!" not in line:
                counts["sidecar_own"] = int(m[1])
        assert set(counts) == {"redirected", "sidecar_own"}, out
        return counts


def _http_status(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def _wait_ready(setup: Setup, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    url = f"http://127.0.0.1:{METRICS_PORT}/readyz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the sidecar exited with {proc.returncode}:\n{log_tail(setup.log)}")
        if setup.ns.inside(lambda: _http_status(url)) == 200 and setup.bundle.exists():
            return
        time.sleep(0.2)
    pytest.fail(f"the sidecar was not ready within {START_TIMEOUT}s:\n{log_tail(setup.log)}")


def _start_sidecar(setup: Setup, rules: Path) -> None:
    uid = setup.uid
    os.chown(setup.home, int(uid), int(uid))
    setup.home.chmod(0o700)
    # As the exempted UID, so the owner match is real. CAP_DAC_READ_SEARCH (ambient) only lets
    # it read the interpreter and the repo wherever they are installed (e.g. under a 0700 /root).
    argv = ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups",
            "--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search", "--",
            sys.executable, "-m", "sidecar", "run", "--rules", str(rules),
            "--confdir", str(setup.home), "--listen-host", "127.0.0.1",
            "--proxy-port", "off", "--reverse-port", "off",
            "--transparent-port", str(setup.port), "--metrics-port", str(METRICS_PORT)]
    env = base_env(HOME=str(setup.home), AWS_EC2_METADATA_DISABLED="true")
    proc = setup.ns.start(argv, env=env, log=setup.log)
    _wait_ready(setup, proc)
    # `ip netns exec` and setpriv exec in place: this PID is the sidecar. Sockets belong to the
    # fsuid, the last of real, effective, saved and filesystem UIDs.
    status = Path(f"/proc/{proc.pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", status, re.M)
    assert uids and set(uids.groups()) == {uid}, status


@pytest.fixture(scope="module")
def transparent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    problem = _missing_prerequisite()
    if problem:
        _unavailable(problem)
    tmp = tmp_path_factory.mktemp("transparent")
    ns = NetNS(f"mr-{os.getpid()}-{secrets.token_hex(3)}")
    try:
        ns.create()
        upstream = FakeOpenAI(name="routed-upstream")
        ns.on_close(upstream.stop)
        ns.inside(upstream.start)
        origin = OtherOrigin(tmp)
        ns.on_close(origin.stop)
        ns.inside(origin.start)
        rules = tmp / "rules.yaml"
        rules.write_text(RULES.format(base_url=upstream.base_url))
        home = tmp / "sidecar-home"
        home.mkdir()
        setup = Setup(ns, upstream, origin, home, redirect_rule(), tmp / "sidecar.log")
        _start_sidecar(setup, rules)
        ns.check(setup.rule)
        ns.check(["iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "443",
                  "-m", "owner", "--uid-owner", setup.uid])  # no target: counts only
        yield setup
    finally:
        ns.close()


def run_client(setup: Setup, code: str, *args: str, env: dict[str, str]) -> dict[str, Any]:
    done = setup.ns.run([sys.executable, "-c", code, *args], env=env)
    assert done.returncode == 0, (
        f"client failed ({done.returncode}):\n{done.stderr[-3000:]}\n"
        f"sidecar log:\n{log_tail(setup.log)}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_unmodified_openai_sdk_without_proxy_variables_is_routed(transparent: Setup) -> None:
    setup = transparent
    before = setup.counters()
    env = base_env(HOME=str(setup.home.parent), SSL_CERT_FILE=str(setup.bundle))
    assert not {k for k in env if "PROXY" in k.upper() or k.startswith("OPENAI_")}

    result = run_client(setup, OPENAI_CLIENT, env=env)

    assert result["content"] == "routed-upstream says hi to routed-model-v1"
    assert result["headers"]["x-model-router-app"] == "pod-app"
    assert result["headers"]["x-model-router-model"] == "m-routed"
    assert result["headers"]["x-model-router-provider"] == "fake"
    [seen] = setup.upstream.requests
    assert (seen.method, seen.url_path) == ("POST", "/v1/chat/completions")
    assert seen.json["model"] == "routed-model-v1", "the rules rewrote the model"
    assert seen.headers["authorization"] == f"Bearer {APP_KEY}"  # from-request
    after = setup.counters()
    assert after["redirected"] - before["redirected"] == 1, "the app's connection was redirected"
    assert after["sidecar_own"] == before["sidecar_own"], "the upstream is not on :443"


def test_other_https_hosts_are_tunnelled_untouched_and_the_sidecars_egress_is_exempt(
        transparent: Setup) -> None:
    setup = transparent
    before = setup.counters()

    result = run_client(setup, OTHER_CLIENT, str(setup.origin.ca_path), env=base_env())

    assert result == {"status": 200, "body": {"host": OTHER_HOST, "path": "/ping"}}
    assert setup.origin.paths == ["/ping"]
    assert setup.origin.server_names == [OTHER_HOST], "the client's own TLS reached the origin"
    after = setup.counters()
    assert after["redirected"] - before["redirected"] == 1, "the client went to the sidecar"
    assert after["sidecar_own"] - before["sidecar_own"] == 1, (
        "the sidecar's own :443 connection to the origin was made and not redirected (no loop)")
