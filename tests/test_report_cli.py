"""sidecar/report.py through sidecar/cli.py: check, explain, models and env, as a user runs them."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import certifi
import pytest

from sidecar.cli import main as cli
from sidecar.cli.report import render_env, render_explain, render_models, table
from sidecar.core.config.rules import load_rules
from sidecar.core.live import View, view_of
from sidecar.core.routing.latency import LatencyTracker
from sidecar.proxy.metrics import parse_live_state

BUNDLED = str(Path(__file__).resolve().parents[1] / "rules.yaml")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing a test runs may write to ~/.model-router."""
    monkeypatch.setenv("MODEL_ROUTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODEL_ROUTER_RULES", raising=False)
    return tmp_path / "home"


NO_SIDECAR = "http://127.0.0.1:9/metrics"  # nothing listens on the discard port


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Bedrock counts as available (dummy static credentials), never this machine's own."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = list(argv)
    if args[0] in ("explain", "models") and "--metrics-url" not in args:
        args += ["--metrics-url", NO_SIDECAR]  # never a sidecar that happens to run here
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_check_prints_the_resolved_setup(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "--rules", BUNDLED)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{BUNDLED}: OK"
    assert "  api.openai.com:443  passthrough -> openai" in lines
    assert re.search(r"^  openai +openai +https://api\.openai\.com/v1  key: from-request  \[ok\]$",
                     out, re.M)
    assert re.search(r"^  bedrock +bedrock +bedrock us-east-1  key: none  \[ok\]$", out, re.M)
    assert "Defaults: tier=standard prefer=balanced" in lines
    apps = lines[lines.index("Apps (first match wins):") + 1:]
    assert apps[:6] == [
        "  nightly-summaries  match: proxy_user=summarizer",
        "    'gpt-4o'           -> auto prefer=cheap tier=(request/default)",
        "    '*'                -> passthrough",
        "  code-review  match: header=x-app=review",
        "    '*'                -> auto prefer=coding tier=premium",
        "  default  match: everything",
    ]
    assert re.search(r"^Catalog: \d+ models, \d+ on available providers$", out, re.M)
    assert "WARNING" not in out  # the bundled rules serve api.openai.com by its provider


def test_check_reports_a_provider_without_its_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("providers:\n  openai: {type: openai, base_url: https://api.openai.com/v1}\n"
                    "  gemini: {type: openai, base_url: https://g.example/v1, "
                    "api_key: env:MR_TEST_GEMINI_KEY}\nshadow: true\n")
    out = run(capsys, "check", "--rules", str(path))[1]
    assert "[UNAVAILABLE: its key variable MR_TEST_GEMINI_KEY is not set]" in out
    assert "(global shadow mode ON)" in out
    monkeypatch.setenv("MR_TEST_GEMINI_KEY", "sk-gem-secret")
    out = run(capsys, "check", "--rules", str(path))[1]
    assert "UNAVAILABLE" not in out and "key: env:MR_TEST_GEMINI_KEY  [ok]" in out
    assert "sk-gem-secret" not in out


def test_check_warns_when_an_intercepted_host_skips_a_provider_of_its_type(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    """defect 3 of issue 13: `intercept: [api.openai.com]` beside an `openai` provider elsewhere
    sends passthrough to api.openai.com itself; the user probably meant that provider."""
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\nintercept: [api.openai.com]\nproviders:\n"
                    "  openai: {type: openai, base_url: https://llm.internal.example/v1}\n")
    code, out, err = run(capsys, "check", "--rules", str(path))
    assert (code, err) == (0, "")
    assert "  api.openai.com:443  passthrough -> api.openai.com (direct)" in out.splitlines()
    assert section(out, "Warnings:") == [
        "  WARNING: api.openai.com:443 is served directly (passthrough -> api.openai.com "
        "(direct), https://api.openai.com/v1, with the app's own key) although provider "
        "'openai' (type openai) is configured: passthrough calls to this host never go to it. "
        "If they should, write `intercept: [{host: api.openai.com, provider: openai}]`."]


def test_check_names_every_provider_of_the_type_and_each_direct_host(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\nintercept: [api.openai.com, 'llm.example:8443']\nproviders:\n"
                    "  a: {type: openai, base_url: https://a.example/v1}\n"
                    "  b: {type: openai, base_url: https://b.example/v1}\n"
                    "  aws: {type: bedrock, region: us-east-1}\n")
    warnings = section(run(capsys, "check", "--rules", str(path))[1], "Warnings:")
    assert [w.split(" is served directly")[0] for w in warnings] == [
        "  WARNING: api.openai.com:443", "  WARNING: llm.example:8443"]
    assert all("providers 'a', 'b' (type openai) are configured" in w
               and w.endswith(" (NAME one of: a, b).") for w in warnings)
    assert "`intercept: [{host: llm.example:8443, provider: NAME}]`" in warnings[1]
    assert "'aws'" not in warnings[0] and "llm.example (direct)'" not in warnings[0]


@pytest.mark.parametrize("text", [
    # the host is a configured provider's: passthrough goes to it
    "providers:\n  openai: {type: openai, base_url: https://api.openai.com/v1}\n",
    # named explicitly
    "intercept: [{host: api.openai.com, provider: corp}]\n"
    "providers:\n  corp: {type: openai, base_url: https://corp.example/v1}\n",
    # served directly, but no other provider of its type exists
    "providers:\n  aws: {type: bedrock, region: us-east-1}\n",
])
def test_check_does_not_warn_about_a_host_served_as_meant(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\n" + text)
    code, out, err = run(capsys, "check", "--rules", str(path))
    assert (code, err) == (0, "") and out.startswith(f"{path}: OK")
    assert "WARNING" not in out and "Warnings:" not in out


def test_check_warns_that_discovery_cannot_ask_a_provider_given_the_apps_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\nintercept: [{host: api.openai.com, provider: own}]\n"
                    "providers:\n  own: {type: openai, base_url: https://api.openai.com/v1}\n"
                    "  keyed: {type: openai, base_url: https://k.example/v1, api_key: env:K}\n"
                    "catalog: {discover: true}\n")
    warnings = section(run(capsys, "check", "--rules", str(path))[1], "Warnings:")
    assert len(warnings) == 1
    assert warnings[0].startswith("  WARNING: catalog.discover: provider 'own' gets the app's key")


@pytest.mark.parametrize("text, where", [
    ("version: 1\napps:\n  - name: a\n    routes:\n      gpt-4o: {prefer: cheapest}\n",
     ":5: apps[0].routes.gpt-4o.prefer: 'cheapest' is not one of: cheap, fast"),
    ("version: 1\nproviders:\n  x: {type: openai\n", ":4: not valid YAML"),
])
def test_check_refuses_a_broken_file(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     text: str, where: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    code, out, err = run(capsys, "check", "--rules", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"model-router: {path}{where}")


def test_check_a_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "check", "--rules", str(tmp_path / "nope.yaml"))
    assert code == 1 and "nope.yaml: cannot read the rules file" in err


def section(out: str, title: str) -> list[str]:
    lines = out.splitlines()
    start = lines.index(title) + 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def test_explain_shows_plan_candidates_and_exclusions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "--rules", BUNDLED, "--app", "nightly-summaries",
                       "--model", "gpt-4o")
    assert code == 0
    assert out.startswith("(no running sidecar reached: catalog priors)\n"
                          "app: nightly-summaries    requested model: gpt-4o\n"
                          "rule: apps[0].routes.gpt-4o\ndecision: auto prefer=cheap tier=any\n"
                          "request: ~504 prompt tokens, ~500 expected output tokens, "
                          "needs: nothing special\nplan: ")
    candidates = section(out, "candidates (ranked by cheap):")
    assert candidates[0].split() == ["#", "model", "tier", "provider", "cost", "$", "latency",
                                     "s", "quality", "coding"]
    rows = [line.split() for line in candidates[2:]]
    assert [r[0] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    costs = [float(r[4]) for r in rows]
    assert costs == sorted(costs) and len(rows) > 10
    plan = re.search(r"^plan: (.*)$", out, re.M)
    assert plan is not None
    assert plan.group(1) == " -> ".join(f"{r[1]} ({r[3]})" for r in rows[:3])
    excluded = section(out, "excluded:")
    assert excluded[0].split() == ["model", "why"]
    assert any(re.fullmatch(r"gemini-2\.5-flash +provider 'gemini' is not configured", e)
               for e in excluded)


def test_explain_a_request_file_shows_capability_exclusions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"model": "auto", "prefer": "quality", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}))
    out = run(capsys, "explain", "--rules", BUNDLED, "--request", str(request), "--tier",
              "economy")[1]
    assert "decision: auto prefer=quality tier=economy" in out
    assert "needs: vision" in out
    assert re.search(r"^qwen3-235b +does not support vision$", out, re.M)
    assert "plan: kimi-k2.5 (bedrock)" in out


@pytest.mark.parametrize("argv, expected", [
    (["--app", "nightly-summaries", "--model", "gpt-3.5-turbo"],
     ["decision: passthrough", "plan: gpt-3.5-turbo (openai)"]),
    (["--model", "claude-haiku"], ["app: default", "rule: no route: a catalog model",
                                   "plan: claude-haiku (bedrock)"]),
    (["--prefer", "cheapest"], ["The request would be refused: 400 Invalid value for 'prefer'"]),
    (["--model", "my-finetune", "--prefer", "cheap"], ["The request would be refused: 404"]),
])
def test_explain_outcomes(capsys: pytest.CaptureFixture[str], argv: list[str],
                          expected: list[str]) -> None:
    out = run(capsys, "explain", "--rules", BUNDLED, *argv)[1]
    for text in expected:
        assert text in out


def test_explain_an_unknown_app_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "explain", "--rules", BUNDLED, "--app", "nope")[1]
    assert out.strip() == (f"No app named 'nope' in {BUNDLED}; apps: nightly-summaries, "
                           "code-review")


def test_explain_an_unknown_app_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "explain", "--rules", BUNDLED, "--app", "nope")[0] != 0


def test_explain_a_missing_request_file(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    code, _, err = run(capsys, "explain", "--rules", BUNDLED, "--request",
                       str(tmp_path / "nope.json"))
    assert code == 1 and "nope.json" in err


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\udcff"])
def test_explain_a_request_file_that_is_not_a_json_object(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str,
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    code, out, err = run(capsys, "explain", "--rules", BUNDLED, "--request", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"model-router: {path}: ") and "Traceback" not in err


def test_models_lists_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "--rules", BUNDLED, "--metrics-url", NO_SIDECAR)
    table, _, footer = out.rpartition("\n\n")
    assert footer.strip() == "(no running sidecar reached: catalog priors)"
    lines = table.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["model", "tier", "provider"]
    assert lines[0].split()[-1] == "status"
    rows = {line.split()[0]: line for line in lines[2:]}
    assert re.match(r"gpt-4o-mini +standard +openai +0\.15 +0\.6 .* ok$", rows["gpt-4o-mini"])
    assert rows["claude-haiku"].split()[1:3] == ["standard", "bedrock"]
    assert rows["gemini-2.5-flash"].endswith("provider not configured")
    tiers = [line.split()[1] for line in lines[2:]]
    assert tiers == sorted(tiers, key=["economy", "standard", "premium"].index)
    assert set(tiers) == {"economy", "standard", "premium"}


ENV_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def test_env_prints_the_app_side_variables_and_creates_the_ca(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    confdir = tmp_path / "conf"
    code, out, _ = run(capsys, "env", "--confdir", str(confdir), "--app", "summarizer")
    bundle, cert = confdir / "ca-bundle.pem", confdir / "mitmproxy-ca-cert.pem"
    assert code == 0
    assert out.splitlines() == [
        "export HTTPS_PROXY=http://summarizer:@127.0.0.1:8080",
        *(f"export {name}={bundle}" for name in ENV_VARS),
        f"export NODE_EXTRA_CA_CERTS={cert}",
        "# base-URL way instead of HTTPS_PROXY: export OPENAI_BASE_URL=http://127.0.0.1:8081/v1",
    ]
    key = confdir / "mitmproxy-ca.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in key.read_text()
    text = bundle.read_text()
    assert Path(certifi.where()).read_text().strip() in text
    assert cert.read_text().strip() in text and "PRIVATE KEY" not in text
    assert text.count("BEGIN CERTIFICATE") == Path(certifi.where()).read_text().count(
        "BEGIN CERTIFICATE") + 1


def test_env_reuses_the_ca(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run(capsys, "env", "--confdir", str(tmp_path))
    first = (tmp_path / "mitmproxy-ca-cert.pem").read_text()
    run(capsys, "env", "--confdir", str(tmp_path))
    assert (tmp_path / "mitmproxy-ca-cert.pem").read_text() == first


def test_env_locks_a_ca_key_that_was_left_readable(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    run(capsys, "env", "--confdir", str(tmp_path))
    (tmp_path / "mitmproxy-ca.pem").chmod(0o644)
    run(capsys, "env", "--confdir", str(tmp_path))
    assert stat.S_IMODE((tmp_path / "mitmproxy-ca.pem").stat().st_mode) == 0o600


def test_env_uses_an_operators_own_ca(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run(capsys, "env", "--confdir", str(tmp_path / "elsewhere"))
    own = (tmp_path / "elsewhere" / "mitmproxy-ca.pem").read_text()
    confdir = tmp_path / "conf"
    confdir.mkdir()
    (confdir / "mitmproxy-ca.pem").write_text(own)
    code, out, _ = run(capsys, "env", "--confdir", str(confdir))
    assert code == 0 and f"NODE_EXTRA_CA_CERTS={confdir / 'mitmproxy-ca-cert.pem'}" in out
    cert = (confdir / "mitmproxy-ca-cert.pem").read_text()
    assert cert.strip() in own and cert.strip() in (confdir / "ca-bundle.pem").read_text()


@pytest.mark.parametrize("argv, first, last", [
    (["--format", "fish", "--app", "summarizer"],
     "set -gx HTTPS_PROXY http://summarizer:@127.0.0.1:8080",
     "# base-URL way instead of HTTPS_PROXY: set -gx OPENAI_BASE_URL http://127.0.0.1:8081/v1"),
    (["--format", "dotenv"], "HTTPS_PROXY=http://127.0.0.1:8080",
     "# OPENAI_BASE_URL=http://127.0.0.1:8081/v1"),
    (["--host", "10.0.0.5", "--proxy-port", "3128", "--reverse-port", "3129"],
     "export HTTPS_PROXY=http://10.0.0.5:3128",
     "# base-URL way instead of HTTPS_PROXY: export OPENAI_BASE_URL=http://10.0.0.5:3129/v1"),
])
def test_env_formats(capsys: pytest.CaptureFixture[str], home: Path, argv: list[str],
                     first: str, last: str) -> None:
    lines = run(capsys, "env", *argv)[1].splitlines()
    assert (lines[0], lines[-1]) == (first, last)
    assert str(home / "ca-bundle.pem") in lines[1]  # the default confdir is $MODEL_ROUTER_HOME
    assert len(lines) == 6


@pytest.mark.parametrize("fmt, line", [
    ("bash", "export SSL_CERT_FILE='/my certs/it'\\''s.pem'"),
    ("fish", "set -gx SSL_CERT_FILE '/my certs/it'\\''s.pem'"),
    ("dotenv", "SSL_CERT_FILE=/my certs/it's.pem"),
])
def test_render_env_quotes_for_the_shell(fmt: str, line: str) -> None:
    out = render_env({"SSL_CERT_FILE": "/my certs/it's.pem"}, fmt=fmt, base_url="http://h/v1")
    assert out.splitlines()[0] == line


def test_table() -> None:
    assert table(["a", "bb"], [[1, None], ["xyz", 0.5]]).splitlines() == [
        "a    bb", "---  ---", "1    -", "xyz  0.5"]


def test_check_and_models_show_bedrock_without_credentials(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    _, out, _ = run(capsys, "check", "--rules", BUNDLED)
    assert "bedrock" in out and "UNAVAILABLE: no AWS credentials found" in out
    _, out, _ = run(capsys, "models", "--rules", BUNDLED)
    haiku = next(line for line in out.splitlines() if line.startswith("claude-haiku "))
    assert "unavailable: no AWS credentials found" in haiku

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    _, out, _ = run(capsys, "check", "--rules", BUNDLED)
    assert "UNAVAILABLE" not in out.split("bedrock", 1)[1].split("\n")[0]


@pytest.mark.parametrize("way, fmt, expected", [
    ("base-url", "bash", ["export OPENAI_BASE_URL=http://127.0.0.1:8081/v1"]),
    ("base-url", "dotenv", ["OPENAI_BASE_URL=http://127.0.0.1:8081/v1"]),
    ("transparent", "dotenv", ["SSL_CERT_FILE=", "REQUESTS_CA_BUNDLE=", "CURL_CA_BUNDLE=",
                               "NODE_EXTRA_CA_CERTS="]),
])
def test_env_for_each_way_in(capsys: pytest.CaptureFixture[str], tmp_path: Path, way: str,
                             fmt: str, expected: list[str]) -> None:
    code, out, _ = run(capsys, "env", "--confdir", str(tmp_path), "--way", way, "--format", fmt)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == len(expected)
    assert all(line.startswith(prefix) for line, prefix in zip(lines, expected, strict=True))
    assert "HTTPS_PROXY" not in out


def test_explain_and_models_show_a_deployment_cooling_down() -> None:
    """A plan made only of models cooling down is tried, and explain says so; models shows the
    deployment's cooldown on every catalog name it serves."""
    rules = load_rules(BUNDLED)
    haiku = rules.catalog.models["claude-haiku"]
    why = "cooling down after 3 failures in a row"
    view = View(providers_down={}, deployments_down={haiku.deployment: why},
                latency=LatencyTracker(), source="test")
    body = {"model": "claude-haiku", "messages": [{"role": "user", "content": "hi"}]}
    out = render_explain(rules, body, app=None, view=view)
    assert "plan: claude-haiku (bedrock)\n  (cooling down: every model of this plan" in out
    healthy = render_explain(rules, body, app=None, view=View({}, {}, LatencyTracker(), "test"))
    assert "plan: claude-haiku (bedrock)" in healthy and "(cooling down" not in healthy
    rows = {line.split()[0]: line for line in render_models(rules, view).splitlines()[2:] if line}
    assert rows["claude-haiku"].endswith(why)
    assert not any(r.endswith(why) for name, r in rows.items()
                   if rules.catalog.models.get(name, haiku).deployment != haiku.deployment)


def test_explain_shows_the_budget_step_from_the_live_spend(tmp_path: Path) -> None:
    """The budget step: what the running sidecar saw spent decides the degrade step in force,
    and the plan explain shows is the degraded one; the spend is read back from /metrics."""
    path = tmp_path / "rules.yaml"
    path.write_text(Path(BUNDLED).read_text() + (
        "  - name: nightly\n    match: {header: {x-app: nightly}}\n"
        "    budget: {usd: 10, per: day, degrade: [{at: 80%, tier: economy, prefer: cheap}]}\n"
        "    routes: {'*': gpt-4o}\n"))
    rules = load_rules(path)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    metrics = 'sidecar_budget_spent_usd{app="nightly",period="day"} 8.5\n'
    view = view_of({}, parse_live_state(metrics), source="test", catalog=rules.catalog)
    out = render_explain(rules, body, app="nightly", view=view)
    assert "budget (app nightly): $10 per day, $8.500000 used; degraded at 80%: tier economy, " \
           "prefer cheap" in out
    assert "plan: gpt-4o" not in out and "budget=degraded" in out
    calm = view_of({}, parse_live_state(metrics.replace("8.5", "1.0")), source="test",
                   catalog=rules.catalog)
    out = render_explain(rules, body, app="nightly", view=calm)
    assert "$1.000000 used; not degraded" in out and "plan: gpt-4o (openai)" in out


def test_check_shows_budgets_cache_state_and_catalog_sources_without_the_redis_password(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nstate: {redis: 'redis://user:s3cret@redis.internal:6379/0'}\n"
        "budget: {usd: 500, per: month}\n"
        "catalog: {sources: [{name: prices, format: litellm, url: 'https://x.example/p.json'}]}\n"
        "apps:\n  - name: nightly\n    match: {proxy_user: summarizer}\n"
        "    budget: {usd: 50, per: day, degrade: [{at: 80%, tier: economy}]}\n"
        "    cache: {ttl: 1h}\n")
    code, out, err = run(capsys, "check", "--rules", str(path))
    assert (code, err) == (0, "")
    assert "    budget: $50 per day; degrade at 80%: tier economy; at the limit: refuse" in out
    assert "    cache: ttl 3600s" in out
    assert "Budget of all apps together: $500 per month" in out
    assert "redis.internal" in out and "s3cret" not in out
    assert "refreshed every 21600 s from: prices (litellm)" in out
