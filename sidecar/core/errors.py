"""The sidecar's exceptions, and the one place they become OpenAI error responses.

    SidecarError                          500  api_error
      ConfigError                              rules.yaml / catalog invalid: names file, line, key
      ClientRequestError                  400  invalid_request_error   the caller's fault
        BadRequestBodyError               400  code=invalid_json / missing_model / ...
        UnsupportedParameterError         400  param names the field
        UnknownModelError                 404  code=model_not_found
        RequestTooLargeError              413  code=request_too_large
        NoEligibleModelError              400  code=no_eligible_model
        ProxyAuthRequiredError            407  the explicit proxy wants credentials
        BudgetExceededError               429  code=insufficient_quota (names the app and budget)
      NoRouteError                        503  code=no_available_model  (providers down, cooling)
      BudgetStoreUnavailableError         503  code=budget_store_unavailable (state.when_down: refuse)
      UpstreamError                       502  the provider's fault
        UpstreamTimeoutError              504
        UpstreamRateLimitedError          429
        TranslationError                  502  provider answered something we cannot translate
      InternalError                       502  a bug inside the sidecar: fail closed

Every class carries ``status_code``, an OpenAI error ``type`` and an optional ``code``;
``render_openai_error`` turns any of them into ``(status, body, headers)``.
"""

from __future__ import annotations

import json


class SidecarError(Exception):
    status_code = 500
    type = "api_error"
    code: str | None = None
    retryable = False

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class ConfigError(SidecarError):
    """A rules or catalog file that cannot be used. ``str()`` names file, line and key."""

    def __init__(
        self, message: str, *, path: str = "", line: int | None = None, key: str = ""
    ) -> None:
        where = path
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        if key:
            where = f"{where}: {key}" if where else key
        super().__init__(f"{where}: {message}" if where else message)
        self.path, self.line, self.key = path, line, key


class ClientRequestError(SidecarError):
    status_code = 400
    type = "invalid_request_error"


class BadRequestBodyError(ClientRequestError):
    code = "invalid_request"


class UnsupportedParameterError(ClientRequestError):
    code = "unsupported_parameter"


class UnknownModelError(ClientRequestError):
    status_code = 404
    code = "model_not_found"


class RequestTooLargeError(ClientRequestError):
    status_code = 413
    code = "request_too_large"


class ProxyAuthRequiredError(ClientRequestError):
    status_code = 407
    type = "authentication_error"
    code = "proxy_authentication_required"


class NoEligibleModelError(ClientRequestError):
    code = "no_eligible_model"


class BudgetExceededError(ClientRequestError):
    status_code = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class NoRouteError(SidecarError):
    status_code = 503
    type = "service_unavailable"
    code = "no_available_model"
    retryable = True


class BudgetStoreUnavailableError(SidecarError):
    status_code = 503
    type = "service_unavailable"
    code = "budget_store_unavailable"
    retryable = True


class UpstreamError(SidecarError):
    status_code = 502
    type = "api_error"
    code = "upstream_error"
    retryable = True


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamRateLimitedError(UpstreamError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class TranslationError(UpstreamError):
    code = "translation_error"
    retryable = False


class InternalError(SidecarError):
    status_code = 502
    code = "sidecar_internal_error"


def error_body(
    message: str, *, type: str, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def render_openai_error(exc: SidecarError) -> tuple[int, bytes, dict[str, str]]:
    """(status, JSON body, headers) of the OpenAI error object for ``exc``."""
    body = error_body(exc.message, type=exc.type, param=exc.param, code=exc.code)
    headers = {"content-type": "application/json"}
    if not exc.retryable:
        headers["x-should-retry"] = "false"
    return exc.status_code, json.dumps(body).encode(), headers
