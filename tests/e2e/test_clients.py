"""The client matrix: real clients, unmodified, routed by a real sidecar.

Each test is one row of the README's client table. The client's code knows nothing of
model-router: everything it gets is what a user sets in the environment, and those variables come
from the product's own ``model-router env`` output (``app_env``), restricted to the row's
variables, so the table's "what to set" is exactly what was tested. Subprocess clients get an
explicit environment (this machine pre-sets CA variables; a stray one must not make a test pass).

Routing is asserted from both sides: the proxy user ``summarizer`` is the ``summaries`` app, whose
``gpt-4o`` is served by ``cheap-model-v1`` on ``up2`` with the sidecar's key; the app sees that
model (and the ``x-model-router-*`` headers where the client exposes them), and ``up2`` saw the
call with the client's own User-Agent. Streams must concatenate to the upstream's exact reply.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import requests

from sidecar.cli import main as cli
from tests.e2e.harness import APP_KEY, CHEAP_KEY, KEYED_APP_KEY, RunningSidecar
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.e2e

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
NODE_DIR = CLIENTS / "node"
URL = "https://api.openai.com/v1/chat/completions"
HELLO = [{"role": "user", "content": "Say hello."}]
CHEAP_REPLY = "up2 says hi to cheap-model-v1"
TIMEOUT = 30  # seconds, for every subprocess; a call here takes milliseconds

# The rows of the README's client table: the variables each client reads, all printed by
# `model-router env` (OPENAI_API_KEY is the app's own key, which it already has).
ROWS: dict[str, tuple[str, ...]] = {
    "openai-python": ("HTTPS_PROXY", "SSL_CERT_FILE"),
    "httpx": ("HTTPS_PROXY", "SSL_CERT_FILE"),
    "requests": ("HTTPS_PROXY", "REQUESTS_CA_BUNDLE"),
    "curl": ("HTTPS_PROXY", "CURL_CA_BUNDLE"),
    "langchain": ("HTTPS_PROXY", "SSL_CERT_FILE"),
    "openai-node": ("OPENAI_BASE_URL",),
}


# --------------------------------------------------------------------------------------------
# `model-router env`, parsed
# --------------------------------------------------------------------------------------------


def env_output(sidecar: RunningSidecar, confdir: Path, fmt: str = "dotenv",
               app: str | None = "summarizer") -> str:
    """What `model-router env` prints for this sidecar's ports and CA."""
    argv = ["env", "--confdir", str(confdir), "--proxy-port", str(sidecar.port("regular")),
            "--reverse-port", str(sidecar.port("reverse")), "--format", fmt]
    if app:
        argv += ["--app", app]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code in (0, None), out.getvalue()
    return out.getvalue()


def parse_env(text: str, fmt: str) -> tuple[dict[str, str], dict[str, str]]:
    """(variables, suggested): set lines, and `NAME=value` found in comment lines (today the
    base-URL way's OPENAI_BASE_URL is only a comment)."""
    variables: dict[str, str] = {}
    suggested: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        target = variables
        if line.startswith("#"):
            target = suggested
            line = line[1:].strip()
            if ": " in line:  # "# base-URL way instead of HTTPS_PROXY: export NAME=value"
                line = line.partition(": ")[2].strip()
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
        elif line.startswith("set -gx "):
            name, _, value = line[len("set -gx "):].partition(" ")
        else:
            name, _, value = line.partition("=")
        if name.isidentifier() and value:
            target[name.strip()] = _unquote(value.strip())
    return variables, suggested


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("'\\''", "'")
    return value


def app_env(sidecar: RunningSidecar, confdir: Path, row: str, *,
            app: str | None = "summarizer") -> dict[str, str]:
    """The row's variables, taken from `model-router env --format dotenv` for this sidecar."""
    variables, suggested = parse_env(env_output(sidecar, confdir, app=app), "dotenv")
    everything = {**suggested, **variables}
    missing = [name for name in ROWS[row] if name not in everything]
    assert not missing, f"`model-router env` does not print {missing} for {row}"
    return {name: everything[name] for name in ROWS[row]}


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def base_env(tmp_path: Path) -> dict[str, str]:
    """The bare environment of a subprocess client: nothing inherited from this machine."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, f"{argv[0]} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


# --------------------------------------------------------------------------------------------
# What "routed" means here
# --------------------------------------------------------------------------------------------


def assert_summaries_headers(headers: Any) -> None:
    assert headers["x-model-router-app"] == "summaries"
    assert headers["x-model-router-model"] == "m-cheap"
    assert headers["x-model-router-provider"] == "up2"
    assert headers["x-model-router-reason"] == "auto prefer=cheap tier=any"


def assert_up2_served(up1: FakeOpenAI, up2: FakeOpenAI, *, calls: int, user_agent: str,
                      streams: Iterable[bool] | None = None) -> None:
    """Every call reached up2 as `cheap-model-v1`, with the sidecar's key, from this client."""
    assert up1.requests == []
    assert len(up2.requests) == calls, [r.json for r in up2.requests]
    for received in up2.requests:
        assert received.url_path == "/v1/chat/completions"
        assert received.json["model"] == "cheap-model-v1"
        assert received.json["messages"][0]["content"] == "Say hello."
        assert received.headers.get("authorization") == f"Bearer {CHEAP_KEY}"
        assert (received.headers.get("user-agent") or "").startswith(user_agent), received.headers
    if streams is not None:
        assert [bool(r.json.get("stream")) for r in up2.requests] == list(streams)


def sse_deltas(body: Iterable[str]) -> tuple[list[str], set[str]]:
    """Content deltas and models of an OpenAI SSE stream; it must end with [DONE]."""
    deltas: list[str] = []
    models: set[str] = set()
    done = False
    for line in body:
        if not line.startswith("data: "):
            continue
        data = line[len("data: "):].strip()
        if data == "[DONE]":
            done = True
            continue
        event = json.loads(data)
        assert "error" not in event, event
        models.add(event["model"])
        if event["choices"] and event["choices"][0]["delta"].get("content"):
            deltas.append(event["choices"][0]["delta"]["content"])
    assert done, "the stream did not end with data: [DONE]"
    return deltas, models


def assert_stream(deltas: list[str], models: Iterable[str], reply: str, model: str) -> None:
    assert len(deltas) > 1, deltas  # really streamed, not one blob
    assert "".join(deltas) == reply
    assert set(models) == {model}


# --------------------------------------------------------------------------------------------
# `model-router env` covers every row
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["bash", "fish", "dotenv"])
def test_env_prints_every_rows_variables(sidecar, confdir, fmt):
    variables, suggested = parse_env(env_output(sidecar, confdir, fmt), fmt)
    everything = {**suggested, **variables}
    for row, names in ROWS.items():
        assert set(names) <= set(everything), (row, fmt, everything)
    assert variables["HTTPS_PROXY"] == f"http://summarizer:@127.0.0.1:{sidecar.port('regular')}"
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        assert variables[name] == str(sidecar.ca.bundle)
    assert variables["NODE_EXTRA_CA_CERTS"] == str(sidecar.ca.cert)
    assert everything["OPENAI_BASE_URL"] == sidecar.base_url


# --------------------------------------------------------------------------------------------
# openai-python: sync, async, streaming; in-process and as a real subprocess
# --------------------------------------------------------------------------------------------


def test_openai_python_sync(sidecar, confdir, up1, up2, monkeypatch):
    use_env(monkeypatch, app_env(sidecar, confdir, "openai-python"))
    with openai.OpenAI(api_key=APP_KEY, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
    completion = raw.parse()
    assert completion.model == "cheap-model-v1"
    assert completion.choices[0].message.content == CHEAP_REPLY
    assert_summaries_headers(raw.headers)
    assert_up2_served(up1, up2, calls=1, user_agent="OpenAI/Python")


async def test_openai_python_async_and_async_streaming(sidecar, confdir, up1, up2, monkeypatch):
    use_env(monkeypatch, app_env(sidecar, confdir, "openai-python"))
    async with openai.AsyncOpenAI(api_key=APP_KEY, max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o",
                                                                     messages=HELLO)
        completion = raw.parse()
        deltas, models = [], set()
        stream = await client.chat.completions.create(model="gpt-4o", messages=HELLO,
                                                      stream=True)
        async for chunk in stream:
            models.add(chunk.model)
            if chunk.choices and chunk.choices[0].delta.content:
                deltas.append(chunk.choices[0].delta.content)
    assert completion.model == "cheap-model-v1"
    assert completion.choices[0].message.content == CHEAP_REPLY
    assert_summaries_headers(raw.headers)
    assert_stream(deltas, models, CHEAP_REPLY, "cheap-model-v1")
    assert_up2_served(up1, up2, calls=2, user_agent="AsyncOpenAI/Python", streams=[False, True])


def test_openai_python_unmodified_app_in_a_subprocess(sidecar, confdir, up1, up2, tmp_path):
    """tests/clients/openai_chat.py, a plain `openai.OpenAI()` app: only env vars are set."""
    env = {**base_env(tmp_path), **app_env(sidecar, confdir, "openai-python"),
           "OPENAI_API_KEY": APP_KEY}
    out = json.loads(run([sys.executable, str(CLIENTS / "openai_chat.py"), "gpt-4o"], env))
    assert out["completion"]["model"] == "cheap-model-v1"
    assert out["completion"]["content"] == CHEAP_REPLY
    assert_summaries_headers(out["completion"]["headers"])
    assert_stream(out["stream"]["deltas"], out["stream"]["models"], CHEAP_REPLY, "cheap-model-v1")
    assert_up2_served(up1, up2, calls=2, user_agent="OpenAI/Python", streams=[False, True])


# --------------------------------------------------------------------------------------------
# httpx, requests, curl
# --------------------------------------------------------------------------------------------


def test_httpx(sidecar, confdir, up1, up2, monkeypatch):
    use_env(monkeypatch, app_env(sidecar, confdir, "httpx"))
    auth = {"authorization": f"Bearer {APP_KEY}"}
    with httpx.Client(timeout=10) as client:  # trust_env: HTTPS_PROXY and SSL_CERT_FILE
        resp = client.post(URL, headers=auth, json={"model": "gpt-4o", "messages": HELLO})
        with client.stream("POST", URL, headers=auth,
                           json={"model": "gpt-4o", "messages": HELLO, "stream": True}) as streamed:
            assert streamed.status_code == 200
            deltas, models = sse_deltas(streamed.iter_lines())
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "cheap-model-v1"
    assert resp.json()["choices"][0]["message"]["content"] == CHEAP_REPLY
    assert_summaries_headers(resp.headers)
    assert_summaries_headers(streamed.headers)
    assert_stream(deltas, models, CHEAP_REPLY, "cheap-model-v1")
    assert_up2_served(up1, up2, calls=2, user_agent="python-httpx/", streams=[False, True])


def test_requests(sidecar, confdir, up1, up2, monkeypatch):
    """requests needs `http://summarizer:@...` (with the colon), which `env` prints."""
    use_env(monkeypatch, app_env(sidecar, confdir, "requests"))
    auth = {"authorization": f"Bearer {APP_KEY}"}
    resp = requests.post(URL, headers=auth, json={"model": "gpt-4o", "messages": HELLO},
                         timeout=10)
    with requests.post(URL, headers=auth, stream=True, timeout=10,
                       json={"model": "gpt-4o", "messages": HELLO, "stream": True}) as streamed:
        assert streamed.status_code == 200
        deltas, models = sse_deltas(streamed.iter_lines(decode_unicode=True))
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "cheap-model-v1"
    assert resp.json()["choices"][0]["message"]["content"] == CHEAP_REPLY
    assert_summaries_headers(resp.headers)
    assert_stream(deltas, models, CHEAP_REPLY, "cheap-model-v1")
    assert_up2_served(up1, up2, calls=2, user_agent="python-requests/", streams=[False, True])


def _curl(env: dict[str, str], body: dict[str, Any], *extra: str) -> tuple[dict[str, str], str]:
    out = run(["curl", "-sS", "-i", "--fail-with-body", "--max-time", "20", *extra,
               "-H", f"authorization: Bearer {APP_KEY}", "-H", "content-type: application/json",
               "-d", json.dumps(body), URL], env)
    # -i through a proxy: the CONNECT response's head comes first, then the real one.
    head, _, payload = out.replace("\r\n", "\n").partition("\n\n")
    while payload.startswith("HTTP/"):
        head, _, payload = payload.partition("\n\n")
    status, *fields = head.split("\n")
    assert status.split()[1] == "200", out
    headers = {k.lower(): v for k, _, v in (f.partition(": ") for f in fields)}
    return headers, payload


def test_curl(sidecar, confdir, up1, up2, tmp_path):
    env = {**base_env(tmp_path), **app_env(sidecar, confdir, "curl")}
    headers, body = _curl(env, {"model": "gpt-4o", "messages": HELLO})
    completion = json.loads(body)
    assert completion["model"] == "cheap-model-v1"
    assert completion["choices"][0]["message"]["content"] == CHEAP_REPLY
    assert_summaries_headers(headers)

    headers, body = _curl(env, {"model": "gpt-4o", "messages": HELLO, "stream": True}, "-N")
    assert headers["content-type"].startswith("text/event-stream")
    assert_summaries_headers(headers)
    deltas, models = sse_deltas(body.splitlines())
    assert_stream(deltas, models, CHEAP_REPLY, "cheap-model-v1")
    assert_up2_served(up1, up2, calls=2, user_agent="curl/", streams=[False, True])


@pytest.mark.parametrize(("model", "reply", "served_by"), [
    ("gpt-4o", CHEAP_REPLY, "cheap-model-v1"),  # auto with fallbacks: the relay
    ("gpt-4o-mini", "up1 says hi to gpt-4o-mini", "gpt-4o-mini"),  # passthrough: the fast path
])
def test_curl_over_http2_streams(sidecar, confdir, up1, up2, tmp_path, model, reply, served_by):
    """An app speaking HTTP/2 to the sidecar (the provider side is HTTP/1.1): the stream arrives
    whole, as SSE, on both forwarding paths."""
    env = {**base_env(tmp_path), **app_env(sidecar, confdir, "curl")}
    out = run(["curl", "-sS", "-i", "-N", "--http2", "--fail-with-body", "--max-time", "20",
               "-H", f"authorization: Bearer {APP_KEY}", "-H", "content-type: application/json",
               "-d", json.dumps({"model": model, "messages": HELLO, "stream": True}), URL], env)
    responses = out.replace("\r\n", "\n").split("\n\n", 2)  # CONNECT's answer, then the call's
    assert responses[1].startswith("HTTP/2 200"), out
    assert "content-type: text/event-stream" in responses[1].lower()
    deltas, models = sse_deltas(responses[2].splitlines())
    assert_stream(deltas, models, reply, served_by)


# --------------------------------------------------------------------------------------------
# LangChain's ChatOpenAI
# --------------------------------------------------------------------------------------------


def test_langchain_chat_openai_invoke_and_stream(sidecar, confdir, up1, up2, monkeypatch):
    try:
        import langchain_openai
    except ImportError:  # not skipped: a row of the README's table must run in CI
        pytest.fail("langchain-openai is a test dependency: pip install langchain-openai==1.7.4")
    for name in ("OPENAI_PROXY", "LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        monkeypatch.delenv(name, raising=False)  # as this test means it: only the row's variables
    use_env(monkeypatch, app_env(sidecar, confdir, "langchain"))
    monkeypatch.setenv("OPENAI_API_KEY", APP_KEY)
    llm = langchain_openai.ChatOpenAI(model="gpt-4o")  # as an app writes it: nothing else

    message = llm.invoke("Say hello.")
    assert message.content == CHEAP_REPLY
    assert message.response_metadata["model_name"] == "cheap-model-v1"

    chunks = list(llm.stream("Say hello."))
    deltas = [c.content for c in chunks if c.content]
    models = {c.response_metadata["model_name"] for c in chunks
              if c.response_metadata.get("model_name")}
    assert_stream(deltas, models, CHEAP_REPLY, "cheap-model-v1")
    assert_up2_served(up1, up2, calls=2, user_agent="OpenAI/Python", streams=[False, True])


# --------------------------------------------------------------------------------------------
# The openai Node SDK (base-URL way: Node's fetch ignores HTTPS_PROXY)
# --------------------------------------------------------------------------------------------


def test_openai_node_sdk_base_url(sidecar, confdir, up1, up2, tmp_path):
    """tests/clients/node/chat.mjs, a plain `new OpenAI()` app: only env vars are set. Without a
    proxy user, the app is told apart by its key (the `keyed` app: `gpt-4o` -> `m-smart`)."""
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").exists():
        pytest.skip("tests/clients/node/node_modules is missing: "
                    "run `(cd tests/clients/node && npm ci)` (.ci/run does)")
    node = shutil.which("node", path="/usr/local/bin:/usr/bin:/bin")
    assert node, "node is not installed, but tests/clients/node/node_modules is"
    env = {**base_env(tmp_path), **app_env(sidecar, confdir, "openai-node", app=None),
           "OPENAI_API_KEY": KEYED_APP_KEY}
    out = json.loads(run([node, str(NODE_DIR / "chat.mjs"), "gpt-4o"], env, cwd=NODE_DIR))

    reply = "up1 says hi to smart-model"
    assert out["completion"]["model"] == "smart-model"
    assert out["completion"]["content"] == reply
    headers = out["completion"]["headers"]
    assert headers["x-model-router-app"] == "keyed"
    assert headers["x-model-router-model"] == "m-smart"
    assert headers["x-model-router-provider"] == "up1"
    assert_stream(out["stream"]["deltas"], out["stream"]["models"], reply, "smart-model")
    assert up2.requests == []
    assert [bool(r.json.get("stream")) for r in up1.requests] == [False, True]
    for received in up1.requests:
        assert received.json["model"] == "smart-model"
        assert received.headers.get("authorization") == f"Bearer {KEYED_APP_KEY}"
        assert (received.headers.get("user-agent") or "").startswith("OpenAI/JS"), received.headers
