"""AWS credentials and SigV4 signing for requests the sidecar sends to Bedrock Runtime itself.

The only module that touches boto3/botocore credentials and signing. References:
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-create-signed-request.html and
https://boto3.amazonaws.com/v1/documentation/api/latest/guide/credentials.html (the chain: env,
shared files, SSO, process, container, IMDS). The signing name is ``bedrock`` (not
``bedrock-runtime``), as in botocore's service model.

Blocking: resolving or refreshing credentials may read files or call IMDS/STS/SSO. Run
``resolve()`` off the event loop (``asyncio.to_thread``) at start-up and whenever
``needs_refresh()`` says so; ``sign()`` then only computes. ``sign()`` still refreshes by itself
(blocking) rather than sign with stale credentials, if the caller did not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import BotoCoreError, ProfileNotFound

from sidecar.core.errors import ConfigError, UpstreamError

log = logging.getLogger(__name__)

SIGNING_NAME = "bedrock"
DEFAULT_ENDPOINT = "https://bedrock-runtime.{region}.amazonaws.com"


def endpoint(region: str, endpoint_url: str | None = None) -> str:
    """The Bedrock Runtime base URL: ``endpoint_url`` (without a trailing /) or the regional one."""
    return endpoint_url.rstrip("/") if endpoint_url else DEFAULT_ENDPOINT.format(region=region)


class BedrockSigner:
    """Credentials from the standard AWS chain, and SigV4 headers for one region."""

    def __init__(
        self, region: str, *, endpoint_url: str | None = None, profile: str | None = None
    ) -> None:
        self.region = region
        self.profile = profile
        self.base_url = endpoint(region, endpoint_url)
        self._credentials: Credentials | None = None  # maybe refreshable; None: not found (yet)
        self._frozen: ReadOnlyCredentials | None = None
        self._resolved = False

    def url(self, path: str) -> str:
        """The full URL of ``path`` (e.g. from ``request.converse_path``)."""
        return self.base_url + path

    def resolve(self) -> bool:
        """Find (first call, or while none were found) and freeze credentials. Blocking.

        Returns whether credentials are available. Raises ``ConfigError`` for an unknown profile.
        """
        self._resolved = True
        if self._credentials is None:
            self._credentials = self._load()
        try:
            self._frozen = self._credentials.get_frozen_credentials() if self._credentials else None
        except BotoCoreError as exc:  # a refresh failed (expired SSO session, STS down, ...)
            log.warning("refreshing AWS credentials failed: %s", exc)
            self._frozen = None
        return self._frozen is not None

    def has_credentials(self) -> bool:
        """Whether requests can be signed; resolves (blocking) if ``resolve()`` was never called."""
        if not self._resolved:
            self.resolve()
        return self._frozen is not None

    def needs_refresh(self) -> bool:
        """True when ``resolve()`` should run (off the loop) before the next ``sign()``."""
        if self._frozen is None:
            return True
        refresh_needed = getattr(self._credentials, "refresh_needed", None)
        return bool(refresh_needed()) if callable(refresh_needed) else False

    def sign(
        self, *, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        """The headers to set on the request: ``headers`` plus Authorization, X-Amz-Date,
        X-Amz-Security-Token (session credentials), host, content-type and (unsigned)
        ``accept-encoding: identity``, so the response body can be transcoded as it streams.

        The request must then be sent with exactly this method, URL path and body.
        """
        if self.needs_refresh():
            self.resolve()
        if self._frozen is None:
            raise UpstreamError("no AWS credentials for Bedrock", code="upstream_auth_failed")
        given = {k: v for k, v in headers.items() if k.lower() not in ("host", "accept-encoding")}
        request = AWSRequest(method=method, url=url, data=body, headers=given)
        if "content-type" not in {name.lower() for name in given}:
            request.headers["Content-Type"] = "application/json"
        request.headers["host"] = _host(url)
        SigV4Auth(self._frozen, SIGNING_NAME, self.region).add_auth(request)
        signed = {name: str(value) for name, value in request.headers.items()}
        signed["accept-encoding"] = "identity"  # added after signing: not a signed header
        return signed

    def _load(self) -> Credentials | None:
        try:
            session = boto3.Session(profile_name=self.profile, region_name=self.region)
            credentials: Credentials | None = session.get_credentials()
        except ProfileNotFound as exc:
            raise ConfigError(f"AWS profile {self.profile!r} not found", key="profile") from exc
        except BotoCoreError as exc:
            log.warning("no usable AWS credentials: %s", exc)
            return None
        return credentials


def _host(url: str) -> str:
    """The Host header botocore signs for ``url``: the netloc without a default port."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if parts.port is not None and parts.port == {"https": 443, "http": 80}.get(parts.scheme):
        netloc = netloc[: netloc.rfind(":")]
    return netloc
