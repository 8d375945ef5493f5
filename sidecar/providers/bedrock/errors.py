"""Bedrock Runtime errors -> OpenAI error responses: the one table (one direction, pure).

API reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
("Errors") and https://docs.aws.amazon.com/bedrock/latest/APIReference/CommonErrors.html.

Two ways Bedrock reports an error, both handled here:

* **before the body**: HTTP status, header ``x-amzn-ErrorType: ThrottlingException:http://...``
  and a JSON body ``{"message": ...}`` (``__type``/``code`` in the body when the header is
  missing) -> ``from_http_error``;
* **inside a ConverseStream**: an event-stream frame ``:message-type: exception`` with
  ``:exception-type: throttlingException`` (lowerCamel) and a JSON ``{"message": ...}``
  payload, or ``:message-type: error`` with ``:error-code``/``:error-message`` headers ->
  ``from_stream_exception``.

Codes are compared case-insensitively. ``retryable`` means *another attempt may succeed*: the
same model later, another model or another provider (fallback-worthy). It does not say whether the
app should retry; the caller decides that (``x-should-retry``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from sidecar.core.errors import (
    ClientRequestError,
    SidecarError,
    UpstreamError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    error_body,
)


class MappedError(NamedTuple):
    status: int
    body: dict[str, dict[str, str | None]]  # {"error": {"message", "type", "param", "code"}}
    retryable: bool


@dataclass(frozen=True, slots=True)
class ErrorRule:
    code: str  # Bedrock error code, lower case
    status: int
    type: str  # OpenAI error type
    openai_code: str | None
    retryable: bool
    message_has: tuple[str, ...] = ()  # match only when the message contains one of these


_CONTEXT_TOO_LONG = ("too long", "too many input tokens", "context length", "context window",
                     "maximum context", "exceeds the maximum")
_CAPABILITY = ("doesn't support", "does not support", "not supported")
_AUTH = ("unrecognizedclientexception", "invalidsignatureexception", "expiredtokenexception",
         "incompletesignatureexception", "missingauthenticationtokenexception",
         "invalidclienttokenid", "signaturedoesnotmatch")

RULES: tuple[ErrorRule, ...] = (
    # Most specific first: ValidationExceptions another model can pass (a bigger context, a
    # capability this model lacks) are fallback-worthy; the rest are the caller's fault.
    ErrorRule("validationexception", 400, "invalid_request_error", "context_length_exceeded",
              True, _CONTEXT_TOO_LONG),
    ErrorRule("validationexception", 400, "invalid_request_error", "unsupported_by_model", True,
              _CAPABILITY),
    ErrorRule("validationexception", 400, "invalid_request_error", None, False),
    ErrorRule("accessdeniedexception", 403, "permission_error", "model_access_denied", True),
    ErrorRule("resourcenotfoundexception", 404, "invalid_request_error", "model_not_found", True),
    ErrorRule("throttlingexception", 429, "rate_limit_error", "rate_limit_exceeded", True),
    ErrorRule("servicequotaexceededexception", 429, "rate_limit_error", "quota_exceeded", True),
    ErrorRule("modelnotreadyexception", 503, "server_error", "model_not_ready", True),
    ErrorRule("modeltimeoutexception", 504, "timeout_error", "model_timeout", True),
    ErrorRule("modelerrorexception", 502, "server_error", "model_error", True),
    ErrorRule("modelstreamerrorexception", 502, "server_error", "model_stream_error", True),
    ErrorRule("internalserverexception", 502, "server_error", "upstream_server_error", True),
    ErrorRule("serviceunavailableexception", 503, "server_error", "service_unavailable", True),
    # The sidecar's AWS credentials are wrong: not the app's fault. Another provider can serve.
    *(ErrorRule(code, 502, "server_error", "upstream_auth_failed", True) for code in _AUTH),
)


def from_http_error(status: int, headers: Mapping[str, str], body: bytes) -> MappedError:
    """A non-2xx Converse/ConverseStream HTTP response -> (status, OpenAI error body, retryable)."""
    payload = _json_object(body)
    lowered = {name.lower(): value for name, value in headers.items()}
    code = _error_code(lowered.get("x-amzn-errortype"), payload)
    message = _message(payload) or f"Bedrock answered HTTP {status}"
    return _mapped(code, message, status)


def from_stream_exception(exception_type: str, payload: Mapping[str, Any]) -> MappedError:
    """An exception/error frame inside a ConverseStream -> (status, body, retryable).

    ``status`` is what the app would have got before the stream started; mid-stream, only the
    body is sent (as an SSE error event).
    """
    message = _message(payload) or f"Bedrock stream failed: {exception_type}"
    return _mapped(exception_type, message, 500)


def match_rule(code: str, message: str) -> ErrorRule | None:
    """The first rule for ``code`` (any case) whose message condition holds."""
    code, text = code.lower(), message.lower()
    for rule in RULES:
        if rule.code == code and (not rule.message_has or any(m in text for m in rule.message_has)):
            return rule
    return None


def as_sidecar_error(mapped: MappedError) -> SidecarError:
    """The same error as a ``SidecarError``, so ``render_openai_error`` reproduces ``mapped``."""
    detail = mapped.body["error"]
    cls: type[SidecarError] = (
        UpstreamRateLimitedError if mapped.status == 429
        else UpstreamTimeoutError if mapped.status == 504
        else ClientRequestError if mapped.status < 500
        else UpstreamError
    )
    error = cls(detail["message"] or "Bedrock error", param=detail["param"], code=detail["code"])
    error.status_code, error.type = mapped.status, str(detail["type"])
    error.retryable = mapped.retryable
    return error


def _mapped(code: str, message: str, status: int) -> MappedError:
    rule = match_rule(code, message) or _by_status(status)
    body = error_body(message, type=rule.type, code=rule.openai_code)
    return MappedError(rule.status, body, rule.retryable)


def _by_status(status: int) -> ErrorRule:
    """Unknown codes: judged by the HTTP status alone."""
    if status == 429:
        return ErrorRule("", 429, "rate_limit_error", "rate_limit_exceeded", True)
    if status in (401, 403):
        return ErrorRule("", 502, "server_error", "upstream_auth_failed", True)
    if 400 <= status < 500:
        return ErrorRule("", status, "invalid_request_error", None, False)
    return ErrorRule("", 502, "server_error", "upstream_error", True)


def _error_code(header: str | None, payload: Mapping[str, Any]) -> str:
    """botocore's rule: the header before ':', else body ``code``/``__type`` (after '#')."""
    if header:
        return header.split(":", 1)[0].strip()
    raw = payload.get("code") or payload.get("__type") or ""
    return str(raw).rsplit("#", 1)[-1].split(":", 1)[0].strip()


def _message(payload: Mapping[str, Any]) -> str:
    value = payload.get("message") or payload.get("Message")
    return value if isinstance(value, str) else ""


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
