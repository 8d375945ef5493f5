"""Discovery: which model ids each provider's account can call right now.

* ``FakeBedrockControl`` is faithful: boto3's own ``bedrock`` client parses its every answer
  (paged inference profiles, AWS errors into ``ClientError`` with the right code);
* ``BedrockAdapter.discover`` maps foundation models and inference profiles to a ``Listing``
  (legacy models, models callable only through a profile, the region's geography preferred);
* ``OpenAICompatAdapter.discover`` asks ``GET {base_url}/models`` with the sidecar's own key;
* a failure of either is a ``DiscoveryError`` naming the provider, and comes quickly.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sidecar.core.config.offers import Listing
from sidecar.core.config.rules import parse_provider
from sidecar.providers import DiscoveryError
from sidecar.providers.bedrock.adapter import BedrockAdapter
from sidecar.providers.bedrock.discovery import listing
from sidecar.providers.openai_compat import MAX_MODELS_BODY, OpenAICompatAdapter
from tests.fakes.bedrock import TEST_ACCESS_KEY, TEST_REGION, TEST_SECRET_KEY
from tests.fakes.bedrock_control import FakeBedrockControl, foundation_model, inference_profile
from tests.fakes.openai_upstream import FakeOpenAI
from tests.providers.builders import use_test_credentials

SERVICE = botocore.session.get_session().get_service_model("bedrock")
ERRORS = sorted({(op, shape.name) for op in ("ListFoundationModels", "ListInferenceProfiles")
                 for shape in SERVICE.operation_model(op).error_shapes})
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
OWN_KEY = "sk-sidecar-own-key"
FAST = 0.5  # seconds: the timeout of calls meant to fail


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The fakes' static AWS keys through the environment; no host AWS or proxy set-up."""
    for name in list(os.environ):
        if name.upper() in PROXY_VARIABLES:
            monkeypatch.delenv(name)
    use_test_credentials(monkeypatch, tmp_path)


@pytest.fixture
def control() -> Iterator[FakeBedrockControl]:
    with FakeBedrockControl(region=TEST_REGION) as server:
        yield server


@pytest.fixture
def client(control: FakeBedrockControl) -> Iterator[Any]:
    """boto3's own control-plane client pointed at the fake (no retries)."""
    bedrock = boto3.client("bedrock", endpoint_url=control.url, region_name=TEST_REGION,
                           aws_access_key_id=TEST_ACCESS_KEY,
                           aws_secret_access_key=TEST_SECRET_KEY,
                           config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    yield bedrock
    bedrock.close()


def plain(value: Any) -> Any:
    """A parsed answer as the fake scripted it: datetimes back to epoch seconds."""
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def bedrock(control: FakeBedrockControl | None = None, *, region: str = TEST_REGION,
            url: str | None = None, **extra: Any) -> BedrockAdapter:
    raw = {"type": "bedrock", "region": region,
           "control_endpoint_url": url or (control.url if control else None), **extra}
    return BedrockAdapter(parse_provider("bedrock-main", raw), {})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the fake is faithful ----------------------------------------------------------------------

MODELS = [
    foundation_model("anthropic.claude-3-haiku-20240307-v1:0"),
    foundation_model("anthropic.claude-v2:1", status="LEGACY"),
    foundation_model("anthropic.claude-3-7-sonnet-20250219-v1:0",
                     inference_types=["INFERENCE_PROFILE"]),
    foundation_model("amazon.titan-embed-text-v2:0", inference_types=["ON_DEMAND", "PROVISIONED"],
                     provider="Amazon", streaming=False),
]
PROFILES = [inference_profile(f"{geo}.anthropic.claude-3-7-sonnet-20250219-v1:0",
                              ["anthropic.claude-3-7-sonnet-20250219-v1:0"])
            for geo in ("us", "eu", "apac", "global", "us-gov")]


def test_foundation_models_parse_as_scripted(control: FakeBedrockControl, client: Any) -> None:
    control.models = MODELS
    result = client.list_foundation_models()
    assert plain(result) == {"modelSummaries": MODELS}
    assert isinstance(result["modelSummaries"][1]["modelLifecycle"]["legacyTime"],
                      datetime.datetime)
    (request,) = control.requests
    assert (request.method, request.path, request.operation) == (
        "GET", "/foundation-models", "ListFoundationModels")
    assert request.signature_ok


def test_foundation_model_filters(control: FakeBedrockControl, client: Any) -> None:
    control.models = MODELS
    amazon = client.list_foundation_models(byProvider="amazon")["modelSummaries"]
    assert [m["modelId"] for m in amazon] == ["amazon.titan-embed-text-v2:0"]
    provisioned = client.list_foundation_models(byInferenceType="PROVISIONED")
    assert [m["modelId"] for m in provisioned["modelSummaries"]] == ["amazon.titan-embed-text-v2:0"]
    assert control.requests[-1].query == {"byInferenceType": "PROVISIONED"}
    assert all(r.signature_ok for r in control.requests)


@pytest.mark.parametrize("page_size", [None, 1, 2, 5, 7])
def test_inference_profiles_page(control: FakeBedrockControl, client: Any,
                                 page_size: int | None) -> None:
    control.profiles, control.page_size = PROFILES, page_size
    pages = list(client.get_paginator("list_inference_profiles").paginate())
    assert [plain(p) for page in pages for p in page["inferenceProfileSummaries"]] == PROFILES
    assert len(pages) == -(-len(PROFILES) // (page_size or len(PROFILES)))
    assert all(r.signature_ok for r in control.requests)  # the tokens travel URL-encoded
    assert [r.query.get("nextToken") for r in control.requests][1:] == [
        page["nextToken"] for page in pages[:-1]]
    assert "nextToken" not in pages[-1]


def test_max_results_and_type_filter(control: FakeBedrockControl, client: Any) -> None:
    control.profiles = [*PROFILES, inference_profile("app1", ["x.y-v1"], kind="APPLICATION")]
    pages = list(client.get_paginator("list_inference_profiles").paginate(
        typeEquals="SYSTEM_DEFINED", PaginationConfig={"PageSize": 2}))
    assert [len(p["inferenceProfileSummaries"]) for p in pages] == [2, 2, 1]
    assert control.requests[0].query == {"maxResults": "2", "type": "SYSTEM_DEFINED"}
    apps = client.list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"]
    assert [p["inferenceProfileId"] for p in apps] == ["app1"]


@pytest.mark.parametrize(("operation", "code"), ERRORS)
def test_errors_parse_into_client_errors(control: FakeBedrockControl, client: Any,
                                         operation: str, code: str) -> None:
    status = SERVICE.shape_for(code).metadata["error"]["httpStatusCode"]
    control.fail(status, code, "scripted failure")
    method = {"ListFoundationModels": client.list_foundation_models,
              "ListInferenceProfiles": client.list_inference_profiles}[operation]
    with pytest.raises(ClientError) as info:
        method()
    assert info.value.response["Error"] == {"Code": code, "Message": "scripted failure"}
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert isinstance(info.value, getattr(client.exceptions, code))
    assert client.list_foundation_models()["modelSummaries"] == []  # one request only


@pytest.mark.parametrize(("key", "secret", "region", "code"), [
    (TEST_ACCESS_KEY, "not-the-secret", TEST_REGION, "InvalidSignatureException"),
    ("AKIDSOMEONEELSE", "whatever", TEST_REGION, "UnrecognizedClientException"),
    (TEST_ACCESS_KEY, TEST_SECRET_KEY, "eu-west-1", "InvalidSignatureException"),
])
def test_wrongly_signed_requests_get_403(control: FakeBedrockControl, key: str, secret: str,
                                         region: str, code: str) -> None:
    other = boto3.client("bedrock", endpoint_url=control.url, region_name=region,
                         aws_access_key_id=key, aws_secret_access_key=secret,
                         config=Config(retries={"total_max_attempts": 1}))
    try:
        with pytest.raises(ClientError) as info:
            other.list_foundation_models()
    finally:
        other.close()
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert not control.requests[-1].signature_ok


# -- BedrockAdapter.discover ----------------------------------------------------------------

SONNET = "anthropic.claude-3-7-sonnet-20250219-v1:0"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
OLD = "anthropic.claude-v2:1"
PROVISIONED = "anthropic.claude-3-haiku-20240307-v1:0:200k"


def geo_profiles(*geos: str, model: str = SONNET) -> list[dict[str, Any]]:
    return [inference_profile(f"{geo}.{model}", [model]) for geo in geos]


@pytest.mark.parametrize(("region", "models", "profiles", "expected"), [
    pytest.param(TEST_REGION, [foundation_model(HAIKU)], [],
                 Listing("bedrock-main", frozenset({HAIKU})), id="active"),
    pytest.param(TEST_REGION, [foundation_model(OLD, status="LEGACY")], [],
                 Listing("bedrock-main", frozenset({OLD}), legacy=frozenset({OLD})),
                 id="legacy"),
    pytest.param(TEST_REGION, [foundation_model(SONNET, inference_types=["INFERENCE_PROFILE"])],
                 geo_profiles("eu", "us", "global"),
                 Listing("bedrock-main", frozenset({SONNET, f"us.{SONNET}", f"eu.{SONNET}",
                                                    f"global.{SONNET}"}),
                         profiles={SONNET: f"us.{SONNET}"}), id="profile-only-us"),
    pytest.param("eu-central-1", [foundation_model(SONNET, inference_types=[], region="eu-central-1")],
                 geo_profiles("us", "eu"),
                 Listing("bedrock-main", frozenset({SONNET, f"us.{SONNET}", f"eu.{SONNET}"}),
                         profiles={SONNET: f"eu.{SONNET}"}), id="profile-only-eu"),
    pytest.param("ap-northeast-1", [foundation_model(SONNET, inference_types=["PROVISIONED"])],
                 geo_profiles("global", "apac"),
                 Listing("bedrock-main", frozenset({SONNET, f"apac.{SONNET}",
                                                    f"global.{SONNET}"}),
                         profiles={SONNET: f"apac.{SONNET}"}), id="profile-only-apac"),
    pytest.param("ca-central-1", [foundation_model(SONNET, inference_types=[])],
                 geo_profiles("us", "global"),
                 Listing("bedrock-main", frozenset({SONNET, f"us.{SONNET}", f"global.{SONNET}"}),
                         profiles={SONNET: f"global.{SONNET}"}), id="elsewhere-global"),
    pytest.param("sa-east-1", [foundation_model(SONNET, inference_types=[])],
                 geo_profiles("us", "eu"),
                 Listing("bedrock-main", frozenset({SONNET, f"us.{SONNET}", f"eu.{SONNET}"}),
                         profiles={SONNET: f"us.{SONNET}"}), id="elsewhere-first"),
    pytest.param(TEST_REGION, [foundation_model(HAIKU)], geo_profiles("us", model=HAIKU),
                 Listing("bedrock-main", frozenset({HAIKU, f"us.{HAIKU}"})),
                 id="on-demand-with-a-profile-too"),
    pytest.param(TEST_REGION, [foundation_model(PROVISIONED, inference_types=["PROVISIONED"])],
                 [], Listing("bedrock-main", frozenset()), id="provisioned-only-left-out"),
    pytest.param(TEST_REGION, [foundation_model(OLD, status="LEGACY", inference_types=[])],
                 geo_profiles("us", model=OLD),
                 Listing("bedrock-main", frozenset({OLD, f"us.{OLD}"}), legacy=frozenset({OLD}),
                         profiles={OLD: f"us.{OLD}"}), id="legacy-profile-only"),
])
def test_discover_maps_models_and_profiles(region: str, models: list[dict[str, Any]],
                                           profiles: list[dict[str, Any]],
                                           expected: Listing) -> None:
    with FakeBedrockControl(region=region, page_size=1) as control:
        control.models, control.profiles = models, profiles
        assert bedrock(control, region=region).discover(timeout=5) == expected
        assert all(r.signature_ok for r in control.requests)
        assert [r.operation for r in control.requests] == (
            ["ListFoundationModels"] + ["ListInferenceProfiles"] * max(1, len(profiles)))


def test_discover_lists_a_whole_account(control: FakeBedrockControl) -> None:
    control.models = [*MODELS, foundation_model(PROVISIONED, inference_types=["PROVISIONED"])]
    control.profiles, control.page_size = PROFILES, 2
    found = bedrock(control).discover(timeout=5)
    assert found is not None
    assert found.ids == {HAIKU, OLD, SONNET, "amazon.titan-embed-text-v2:0",
                         *(p["inferenceProfileId"] for p in PROFILES)}
    assert found.legacy == {OLD} and found.profiles == {SONNET: f"us.{SONNET}"}


def test_odd_entries_are_skipped() -> None:
    models: list[dict[str, Any]] = [{"modelId": ""}, {"modelArn": "x"}, {"modelId": HAIKU}]
    profiles: list[dict[str, Any]] = [{"models": [{"modelArn": "x"}]},
                                      {"inferenceProfileId": "p", "models": "not a list"}]
    assert listing("b", TEST_REGION, models, profiles) == Listing("b", frozenset({HAIKU, "p"}))


@pytest.mark.parametrize(("status", "code"), [(403, "AccessDeniedException"),
                                              (429, "ThrottlingException"),
                                              (500, "InternalServerException")])
def test_discover_errors(control: FakeBedrockControl, status: int, code: str) -> None:
    control.fail(status, code, "no thanks")
    with pytest.raises(DiscoveryError, match=rf"'bedrock-main'.*{status} {code}: no thanks"):
        bedrock(control).discover(timeout=5)
    assert len(control.requests) == 1  # no retry


def test_a_failed_page_fails_discovery(control: FakeBedrockControl) -> None:
    control.profiles, control.page_size = PROFILES, 2
    control.fail(500, "InternalServerException", operation="ListInferenceProfiles")
    with pytest.raises(DiscoveryError, match="ListInferenceProfiles answered 500"):
        bedrock(control).discover(timeout=5)
    assert [r.operation for r in control.requests] == ["ListFoundationModels",
                                                       "ListInferenceProfiles"]


def test_unreachable_and_silent_control_planes_fail_quickly(control: FakeBedrockControl) -> None:
    started = time.monotonic()
    with pytest.raises(DiscoveryError, match="'bedrock-main'.*cannot reach"):
        bedrock(url=f"http://127.0.0.1:{closed_port()}").discover(timeout=FAST)
    control.hang()
    with pytest.raises(DiscoveryError, match="'bedrock-main'.*timed out after 0.5s"):
        bedrock(control).discover(timeout=FAST)
    assert time.monotonic() - started < 4 * FAST


def test_proxy_variables_are_not_followed(control: FakeBedrockControl, upstream: FakeOpenAI,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Like every call the sidecar sends: HTTPS_PROXY may name the sidecar itself."""
    dead = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    control.models = [foundation_model(HAIKU)]
    assert bedrock(control).discover(timeout=FAST) == Listing("bedrock-main", frozenset({HAIKU}))
    assert openai(upstream).discover(timeout=FAST) is not None


def test_without_credentials_bedrock_is_not_asked(control: FakeBedrockControl,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert bedrock(control).discover(timeout=FAST) is None
    assert control.requests == []


def test_an_unknown_profile_is_a_discovery_error(control: FakeBedrockControl) -> None:
    with pytest.raises(DiscoveryError, match="'bedrock-main'.*profile 'nobody' not found"):
        bedrock(control, profile="nobody").discover(timeout=FAST)


# -- OpenAICompatAdapter.discover ----------------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(name="up", models=["gpt-4o", "gpt-4o-mini", "o3"]) as server:
        yield server


def openai(server: FakeOpenAI | None, api_key: str = "env:UP_KEY",
           environ: dict[str, str] | None = None, base_url: str | None = None
           ) -> OpenAICompatAdapter:
    url = base_url or (server.base_url if server else "http://127.0.0.1:9/v1")
    spec = parse_provider("up", {"type": "openai", "base_url": url, "api_key": api_key})
    return OpenAICompatAdapter(spec, {"UP_KEY": OWN_KEY} if environ is None else environ)


def test_openai_lists_its_models_with_its_own_key(upstream: FakeOpenAI) -> None:
    assert openai(upstream).discover(timeout=5) == Listing(
        "up", frozenset({"gpt-4o", "gpt-4o-mini", "o3"}))
    (request,) = upstream.requests
    assert (request.method, request.url_path) == ("GET", "/v1/models")
    assert request.headers.get("authorization") == f"Bearer {OWN_KEY}"


def test_a_trailing_slash_in_base_url(upstream: FakeOpenAI) -> None:
    assert openai(upstream, base_url=upstream.base_url + "/").discover(timeout=5) is not None
    assert upstream.requests[-1].url_path == "/v1/models"


@pytest.mark.parametrize(("api_key", "environ"), [("from-request", {}), ("none", {}),
                                                  ("env:UP_KEY", {})])
def test_no_key_of_its_own_no_request(upstream: FakeOpenAI, api_key: str,
                                      environ: dict[str, str]) -> None:
    assert openai(upstream, api_key, environ).discover(timeout=5) is None
    assert upstream.requests == []


def test_ids_must_be_non_empty_strings(upstream: FakeOpenAI) -> None:
    upstream.script(200, {"object": "list", "data": [
        {"id": "a"}, {"id": ""}, {"id": 3}, {"object": "model"}, "b", None, {"id": "c"}]})
    assert openai(upstream).discover(timeout=5) == Listing("up", frozenset({"a", "c"}))


def test_a_bare_list_is_accepted(upstream: FakeOpenAI) -> None:
    upstream.script(200, [{"id": "a", "object": "model"}])
    assert openai(upstream).discover(timeout=5) == Listing("up", frozenset({"a"}))


@pytest.mark.parametrize(("status", "body", "message"), [
    (401, None, "answered 401"),
    (500, None, "answered 500"),
    (200, b"not json", "not JSON"),
    (200, b"\xff\xfe", "not JSON"),
    (200, {"object": "list", "data": {"id": "a"}}, "not a model list"),
    (200, {"object": "list"}, "not a model list"),
    (200, "42", "not a model list"),
    (200, b'{"object":"list","data":[' + b'{"id":"m"},' * (MAX_MODELS_BODY // 11 + 100) + b"]}",
     f"over {MAX_MODELS_BODY} bytes"),
], ids=["401", "500", "not-json", "not-utf8", "data-not-list", "no-data", "a-number",
        "over-the-cap"])
def test_openai_discovery_errors(upstream: FakeOpenAI, status: int, body: Any,
                                 message: str) -> None:
    upstream.script(status, body)
    with pytest.raises(DiscoveryError, match=f"provider 'up': GET {upstream.base_url}/models.*"
                                             f"{message}"):
        openai(upstream).discover(timeout=5)


def test_openai_unreachable_or_silent_fails_quickly(upstream: FakeOpenAI) -> None:
    started = time.monotonic()
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(DiscoveryError, match="'up'.*ConnectError"):
        openai(None, base_url=dead).discover(timeout=FAST)
    upstream.script(hang=True)
    with pytest.raises(DiscoveryError, match="'up'.*timed out after 0.5s"):
        openai(upstream).discover(timeout=FAST)
    assert time.monotonic() - started < 4 * FAST
