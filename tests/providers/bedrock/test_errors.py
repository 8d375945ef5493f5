"""The Bedrock error table: HTTP errors, stream exception frames, rendering as OpenAI errors."""

from __future__ import annotations

import json

import botocore.session
import httpx
import pytest

from sidecar.core.errors import render_openai_error
from sidecar.providers.bedrock.errors import (
    RULES,
    MappedError,
    as_sidecar_error,
    from_http_error,
    from_stream_exception,
    match_rule,
)
from sidecar.providers.bedrock.signing import BedrockSigner
from tests.fakes.bedrock import TEST_REGION, FakeBedrock

SERVICE = botocore.session.get_session().get_service_model("bedrock-runtime")
TYPE = "x-amzn-ErrorType"

HTTP_ERRORS = [
    # (status, Bedrock code, message) -> (status, OpenAI type, OpenAI code, retryable)
    (
        400,
        "ValidationException",
        "Malformed input request",
        (400, "invalid_request_error", None, False),
    ),
    (
        400,
        "ValidationException",
        "Input is too long for requested model.",
        (400, "invalid_request_error", "context_length_exceeded", True),
    ),
    (
        400,
        "ValidationException",
        "This model doesn't support tool use.",
        (400, "invalid_request_error", "unsupported_by_model", True),
    ),
    (
        403,
        "AccessDeniedException",
        "You don't have access to the model",
        (403, "permission_error", "model_access_denied", True),
    ),
    (
        404,
        "ResourceNotFoundException",
        "Model not found",
        (404, "invalid_request_error", "model_not_found", True),
    ),
    (
        429,
        "ThrottlingException",
        "Too many requests",
        (429, "rate_limit_error", "rate_limit_exceeded", True),
    ),
    (
        400,
        "ServiceQuotaExceededException",
        "quota",
        (429, "rate_limit_error", "quota_exceeded", True),
    ),
    (429, "ModelNotReadyException", "warming up", (503, "server_error", "model_not_ready", True)),
    (408, "ModelTimeoutException", "timed out", (504, "timeout_error", "model_timeout", True)),
    (424, "ModelErrorException", "model failed", (502, "server_error", "model_error", True)),
    (500, "InternalServerException", "oops", (502, "server_error", "upstream_server_error", True)),
    (
        503,
        "ServiceUnavailableException",
        "down",
        (503, "server_error", "service_unavailable", True),
    ),
    (
        403,
        "InvalidSignatureException",
        "bad sig",
        (502, "server_error", "upstream_auth_failed", True),
    ),
    (
        403,
        "UnrecognizedClientException",
        "bad key",
        (502, "server_error", "upstream_auth_failed", True),
    ),
    (403, "ExpiredTokenException", "expired", (502, "server_error", "upstream_auth_failed", True)),
    (418, "SomethingNewException", "new", (418, "invalid_request_error", None, False)),
    (429, "SomethingNewException", "new", (429, "rate_limit_error", "rate_limit_exceeded", True)),
    (502, "SomethingNewException", "new", (502, "server_error", "upstream_error", True)),
]


def _check(mapped: MappedError, message: str, expected: tuple[int, str, str | None, bool]) -> None:
    status, kind, code, retryable = expected
    assert mapped.status == status and mapped.retryable is retryable
    assert mapped.body == {"error": {"message": message, "type": kind, "param": None, "code": code}}


@pytest.mark.parametrize(("status", "code", "message", "expected"), HTTP_ERRORS)
def test_http_error_from_header(
    status: int, code: str, message: str, expected: tuple[int, str, str | None, bool]
) -> None:
    header = {TYPE: f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    body = json.dumps({"message": message}).encode()
    _check(from_http_error(status, header, body), message, expected)


@pytest.mark.parametrize(("status", "code", "message", "expected"), HTTP_ERRORS)
def test_http_error_from_body_type(
    status: int, code: str, message: str, expected: tuple[int, str, str | None, bool]
) -> None:
    body = json.dumps({"__type": f"com.amazon.bedrock#{code}", "Message": message}).encode()
    _check(from_http_error(status, {}, body), message, expected)


def test_codes_are_case_insensitive() -> None:
    upper = from_http_error(429, {"X-AMZN-ERRORTYPE": "THROTTLINGEXCEPTION"}, b"{}")
    lower = from_stream_exception("throttlingException", {"message": "m"})
    assert upper.status == lower.status == 429
    assert upper.body["error"]["code"] == lower.body["error"]["code"] == "rate_limit_exceeded"


def test_unparsable_body() -> None:
    mapped = from_http_error(503, {}, b"<html>Service Unavailable</html>")
    assert mapped.status == 502 and mapped.retryable
    assert mapped.body["error"]["message"] == "Bedrock answered HTTP 503"


def test_every_modelled_error_has_a_rule() -> None:
    shapes = {
        s.name.lower()
        for op in ("Converse", "ConverseStream")
        for s in SERVICE.operation_model(op).error_shapes
    }
    members = SERVICE.operation_model("ConverseStream").output_shape.members["stream"].members
    shapes |= {name.lower() for name, s in members.items() if s.metadata.get("exception")}
    shapes.add("servicequotaexceededexception")
    assert shapes <= {rule.code for rule in RULES}


@pytest.mark.parametrize(
    ("member", "code"),
    [
        ("internalServerException", "upstream_server_error"),
        ("modelStreamErrorException", "model_stream_error"),
        ("validationException", None),
        ("throttlingException", "rate_limit_exceeded"),
        ("serviceUnavailableException", "service_unavailable"),
    ],
)
def test_stream_exceptions(member: str, code: str | None) -> None:
    mapped = from_stream_exception(member, {"message": f"{member}!", "originalStatusCode": 500})
    assert mapped.body["error"]["code"] == code
    assert mapped.body["error"]["message"] == f"{member}!"


def test_stream_exception_without_message() -> None:
    mapped = from_stream_exception("modelStreamErrorException", {})
    assert "modelStreamErrorException" in str(mapped.body["error"]["message"])


def test_most_specific_rule_first() -> None:
    rule = match_rule("ValidationException", "prompt is too long: 300000 tokens > 200000 maximum")
    assert rule is not None and rule.openai_code == "context_length_exceeded"
    plain = match_rule("ValidationException", "messages.0: field required")
    assert plain is not None and plain.openai_code is None and not plain.retryable


@pytest.mark.parametrize(("status", "code", "message", "expected"), HTTP_ERRORS)
def test_as_sidecar_error_renders_the_same(
    status: int, code: str, message: str, expected: tuple[int, str, str | None, bool]
) -> None:
    mapped = from_http_error(status, {TYPE: code}, json.dumps({"message": message}).encode())
    rendered_status, body, headers = render_openai_error(as_sidecar_error(mapped))
    assert rendered_status == mapped.status
    assert json.loads(body) == mapped.body
    assert ("x-should-retry" in headers) is (not mapped.retryable)


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "ValidationException", "ModelErrorException"]
)
def test_errors_as_the_fake_sends_them(
    code: str, fake: FakeBedrock, test_credentials: None
) -> None:
    fake.push_error(code, "scripted")
    signer = BedrockSigner(TEST_REGION, endpoint_url=fake.url)
    url = signer.url("/model/m/converse")
    body = b'{"messages": [{"role": "user", "content": [{"text": "x"}]}]}'
    with httpx.Client(trust_env=False) as http:
        reply = http.post(
            url, headers=signer.sign(method="POST", url=url, headers={}, body=body), content=body
        )
    mapped = from_http_error(reply.status_code, dict(reply.headers), reply.content)
    rule = match_rule(code, "scripted")
    assert rule is not None and mapped.status == rule.status
    assert mapped.body["error"]["code"] == rule.openai_code
