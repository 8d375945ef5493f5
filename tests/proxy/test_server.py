"""The mitmproxy internals the sidecar patches or reaches into still exist, with the shape it
relies on (sidecar/proxy/server.py, and the request fields sidecar/proxy/addon.py sets directly).

mitmproxy is pinned; these names are not its public API. When an upgrade moves one, the test
that names it fails here, instead of the sidecar answering apps with mitmproxy's HTML error pages,
keeping the accept backlog at 100, or hanging at shutdown on a connection it can no longer find.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.addons import proxyserver
from mitmproxy.certs import CertStore
from mitmproxy.net.http import http1
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.http import _http1, _http2, _http3
from mitmproxy.test import taddons, tflow

from sidecar.proxy import server

# (module, the name the sidecar replaces in it, the replacement)
PATCHED: list[tuple[ModuleType, str, Callable[..., bytes]]] = [
    (_http1, "make_error_response", server.openai_error_response),
    (_http2, "format_error", server.openai_error_page),
    (_http3, "format_error", server.openai_error_page),
]
PATCHED_IDS = [f"{m.__name__.rsplit('.', 1)[1]}.{name}" for m, name, _ in PATCHED]


def shape(fn: Callable[..., Any]) -> list[tuple[str, str, str, str]]:
    """Parameters (name, kind, default, annotation) and the return annotation, resolved."""
    sig = inspect.signature(fn, eval_str=True)
    params = [(p.name, p.kind.name, repr(p.default), repr(p.annotation))
              for p in sig.parameters.values()]
    return [*params, ("return", "", "", repr(sig.return_annotation))]


def unpatched_shapes() -> dict[str, list[list[str]]]:
    """The originals' shapes, from a fresh interpreter: in this one ``serve()`` may already have
    installed the replacements (the e2e tests run it)."""
    code = (
        "from __future__ import annotations\n"
        "import inspect, json\n"
        "from collections.abc import Callable\n"
        "from typing import Any\n"
        "from mitmproxy.proxy.layers.http import _http1, _http2, _http3\n"
        f"{inspect.getsource(shape)}\n"
        "print(json.dumps({'_http1.make_error_response': shape(_http1.make_error_response),"
        " '_http2.format_error': shape(_http2.format_error),"
        " '_http3.format_error': shape(_http3.format_error)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def originals() -> dict[str, list[list[str]]]:
    return unpatched_shapes()


@pytest.mark.parametrize(("module", "name", "ours"), PATCHED, ids=PATCHED_IDS)
def test_a_patched_function_has_the_signature_of_our_replacement(
    originals: dict[str, list[list[str]]], module: ModuleType, name: str,
    ours: Callable[..., bytes],
) -> None:
    key = f"{module.__name__.rsplit('.', 1)[1]}.{name}"
    assert [list(p) for p in shape(ours)] == originals[key]


@pytest.mark.parametrize(("module", "name", "ours"), PATCHED, ids=PATCHED_IDS)
def test_a_patched_function_is_a_module_global_its_module_calls_by_name(
    module: ModuleType, name: str, ours: Callable[..., bytes],
) -> None:
    """Replacing the module attribute only works while the module binds the name at its top
    level and calls it as a bare global (``name(...)``), with positional arguments our
    replacement takes."""
    tree = ast.parse(inspect.getsource(module))
    bound = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)} | {
        alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
        for alias in node.names}
    assert name in bound, f"{module.__name__} no longer defines or imports {name}"
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name) and node.func.id == name]
    assert calls, f"{module.__name__} no longer calls {name}(...) by its global name"
    taken = len(inspect.signature(ours).parameters)
    assert all(len(c.args) <= taken and not c.keywords for c in calls)


def test_install_replaces_all_three(monkeypatch: pytest.MonkeyPatch) -> None:
    for module, name, _ in PATCHED:
        monkeypatch.setattr(module, name, getattr(module, name))  # restored after the test
    server.install_openai_error_pages()
    for module, name, ours in PATCHED:
        assert getattr(module, name) is ours


@pytest.mark.parametrize(("status", "kind", "code"), [
    (413, "invalid_request_error", "request_too_large"),
    (400, "invalid_request_error", "invalid_request"),
    (502, "api_error", "upstream_connect_error"),
])
def test_the_replacement_pages_are_openai_errors(status: int, kind: str, code: str) -> None:
    raw = server.openai_error_response(status, "details")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert b"content-type: application/json" in head.lower()
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == (kind, code) and "details" in error["message"]
    assert json.loads(server.openai_error_page(status, "details")) == {"error": error}


def test_the_helpers_used_to_build_a_page_exist() -> None:
    resp = http.Response.make(502, b"{}", {"content-type": "application/json"})
    assert bytes(http1.assemble_response(resp)).startswith(b"HTTP/1.1 502 ")


def test_cert_store_from_store_and_its_ca_pem(tmp_path: Path) -> None:
    params = list(inspect.signature(CertStore.from_store).parameters)
    assert params[:3] == ["path", "basename", "key_size"]
    files = server.ensure_ca(tmp_path)
    assert files.cert.read_text("ascii").startswith("-----BEGIN CERTIFICATE-----")
    assert (tmp_path / f"{server.CA_BASENAME}-ca.pem").stat().st_mode & 0o077 == 0


def _backlog(sock: socket.socket) -> int:
    """A listening TCP socket's accept-queue length (TCP_INFO: tcpi_sacked)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 28)[0])


async def test_a_real_listener_deepened_then_closed_with_its_connection() -> None:
    """The path serve() takes on a live proxyserver: ``servers`` -> an instance's ``mode``,
    ``is_running``, ``last_exception``, ``listen_addrs`` (_Running) and ``_servers`` (asyncio
    servers: deepen_backlog); ``connections`` -> a handler's ``transports`` -> ``.handler``
    (cancelled by _close), then ``servers.update([])`` (_close and drain)."""
    ps = proxyserver.Proxyserver()
    with taddons.context(ps) as tctx:
        tctx.configure(ps, mode=["regular@127.0.0.1:0"], server=True)
        assert await ps.setup_servers()
        assert tctx.master.addons.get("proxyserver") is ps
        [instance] = list(ps.servers)
        assert instance.is_running and instance.last_exception is None
        assert instance.mode.type_name == "regular" and instance.mode.full_spec
        tcp = [s for s in instance._servers if isinstance(s, asyncio.Server)]
        assert tcp, "no asyncio.Server in the instance's _servers"
        server.deepen_backlog(instance)
        assert all(_backlog(sock) == server.LISTEN_BACKLOG for s in tcp for sock in s.sockets)

        host, port = instance.listen_addrs[0][:2]
        reader, writer = await asyncio.open_connection(host, port)
        try:
            await _until(lambda: bool(ps.connections))
            [handler] = list(ps.connections.values())
            await _until(lambda: any(io.handler is not None
                                     for io in handler.transports.values()))
            await server._close(tctx.master)
            assert not ps.connections and not list(ps.servers)
            assert await reader.read() == b""  # the sidecar's side closed it
        finally:
            writer.close()


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_the_request_fields_the_addon_sets_directly() -> None:
    """``addon.point`` writes ``request.data.host/port/authority`` and ``raw_content``, and
    ``LowerHeaders`` reads ``Headers.fields``: mitmproxy must still connect where they say."""
    flow = tflow.tflow(req=tflow.treq(host="api.openai.com", port=443))
    req = flow.request
    req.data.host, req.data.port = "127.0.0.1", 9999
    req.data.authority = b"127.0.0.1:9999"
    req.raw_content = b"{}"
    assert (req.host, req.port, req.authority, req.content) == ("127.0.0.1", 9999,
                                                                "127.0.0.1:9999", b"{}")
    assert isinstance(req.headers.fields, tuple)
    assert flow.client_conn.proxy_mode.type_name == "regular"
    assert "stream" in http.Response.__annotations__ or hasattr(tflow.tresp(), "stream")
    data = server_hooks.ServerConnectionHookData(server=flow.server_conn, client=flow.client_conn)
    data.server.error = "refused"
    assert flow.server_conn.error == "refused"
