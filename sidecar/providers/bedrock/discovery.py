"""Which Bedrock models this account can call, from Bedrock's control plane (the ``bedrock``
service, not ``bedrock-runtime``).

``list_models(spec, timeout=)`` asks ``ListFoundationModels`` (one call: the API does not page)
and ``ListInferenceProfiles`` (paged) with a boto3 client built like ``signing.py`` builds its
session (the provider's region and profile, the standard credential chain), at
``spec.control_endpoint_url`` (None: AWS's regional endpoint), one attempt per call, no proxy
from the environment. ``listing(...)`` maps the two answers (pure):

* ``ids``: every foundation model that can be called -- on demand, or through an inference
  profile -- and every inference profile id. A model served only by provisioned throughput is
  left out: routing cannot call it by its id.
* ``legacy``: the models whose ``modelLifecycle.status`` is ``LEGACY``;
* ``profiles``: a model without ``ON_DEMAND`` in ``inferenceTypesSupported`` that an inference
  profile serves (its ``models[].modelArn`` ends with ``foundation-model/<modelId>``) -> that
  profile's id; the region's geography (``us.``, ``eu.``, ``apac.``) is preferred, then
  ``global.``, then the first listed.

Blocking (credentials, HTTP): run it in a thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ProfileNotFound,
    ReadTimeoutError,
)

from sidecar.core.config.offers import Listing
from sidecar.core.config.rules import ProviderSpec
from sidecar.providers import DiscoveryError

ON_DEMAND = "ON_DEMAND"
LEGACY = "LEGACY"
# region prefix -> the prefix of its geography's cross-region inference profiles
GEOGRAPHIES = (("us-", "us."), ("eu-", "eu."), ("ap-", "apac."))
GLOBAL = "global."


def list_models(spec: ProviderSpec, *, timeout: float) -> Listing | None:
    """What ``spec``'s account can call now; None without AWS credentials to ask with.
    Raises ``DiscoveryError`` naming the provider when asking failed."""
    assert spec.region is not None  # rules.parse_provider requires it
    where = f"Bedrock provider {spec.name!r} ({spec.region})"
    try:
        session = boto3.Session(profile_name=spec.profile, region_name=spec.region)
        if session.get_credentials() is None:
            return None
        client = session.client(
            "bedrock", region_name=spec.region, endpoint_url=spec.control_endpoint_url,
            # one attempt, no proxy from the environment (like every call the sidecar sends:
            # HTTPS_PROXY may well name the sidecar itself)
            config=Config(connect_timeout=timeout, read_timeout=timeout, proxies={},
                          retries={"mode": "standard", "total_max_attempts": 1}))
        try:
            models = client.list_foundation_models().get("modelSummaries") or []
            profiles = [summary
                        for page in client.get_paginator("list_inference_profiles").paginate()
                        for summary in page.get("inferenceProfileSummaries") or []]
        finally:
            client.close()
    except ProfileNotFound as e:
        raise DiscoveryError(f"{where}: AWS profile {spec.profile!r} not found") from e
    except ClientError as e:
        raise DiscoveryError(f"{where}: {_client_error(e)}") from e
    except (ConnectTimeoutError, ReadTimeoutError) as e:
        raise DiscoveryError(f"{where}: timed out after {timeout:g}s ({e})") from e
    except EndpointConnectionError as e:
        raise DiscoveryError(f"{where}: cannot reach the control plane ({e})") from e
    except (BotoCoreError, ValueError) as e:  # a malformed answer, a bad endpoint URL, ...
        raise DiscoveryError(f"{where}: {type(e).__name__}: {e}") from e
    return listing(spec.name, spec.region, _dicts(models), _dicts(profiles))


def listing(provider: str, region: str, models: Iterable[Mapping[str, Any]],
            profiles: Iterable[Mapping[str, Any]]) -> Listing:
    """The ``Listing`` of ``ListFoundationModels``' summaries and ``ListInferenceProfiles``'."""
    profile_ids: list[str] = []
    serving: dict[str, list[str]] = {}  # foundation model id -> ids of profiles serving it
    for profile in profiles:
        profile_id = profile.get("inferenceProfileId")
        if not isinstance(profile_id, str) or not profile_id:
            continue
        profile_ids.append(profile_id)
        for model in _dicts(profile.get("models")):
            arn = model.get("modelArn")
            if isinstance(arn, str) and "foundation-model/" in arn:
                serving.setdefault(arn.rpartition("foundation-model/")[2], []).append(profile_id)
    ids: set[str] = set(profile_ids)
    legacy: set[str] = set()
    by_profile: dict[str, str] = {}
    for model in models:
        model_id = model.get("modelId")
        if not isinstance(model_id, str) or not model_id:
            continue
        types = model.get("inferenceTypesSupported")
        on_demand = not isinstance(types, list) or ON_DEMAND in types  # not said: assume so
        if not on_demand and model_id in serving:
            by_profile[model_id] = _preferred(serving[model_id], region)
        if on_demand or model_id in by_profile:
            ids.add(model_id)
            lifecycle = model.get("modelLifecycle")
            if isinstance(lifecycle, Mapping) and lifecycle.get("status") == LEGACY:
                legacy.add(model_id)
    return Listing(provider=provider, ids=frozenset(ids), legacy=frozenset(legacy),
                   profiles=by_profile)


def _preferred(profile_ids: list[str], region: str) -> str:
    """The profile to call a model by from ``region``: its geography's, else a global one,
    else the first."""
    prefixes = [geo for start, geo in GEOGRAPHIES if region.startswith(start)] + [GLOBAL]
    for prefix in prefixes:
        for profile_id in profile_ids:
            if profile_id.startswith(prefix):
                return profile_id
    return profile_ids[0]


def _dicts(items: Any) -> list[Mapping[str, Any]]:
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def _client_error(e: ClientError) -> str:
    response: Mapping[str, Any] = e.response
    error = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    operation = getattr(e, "operation_name", "the call")
    return (f"{operation} answered {status} {error.get('Code', '?')}: "
            f"{error.get('Message', '')}").rstrip(": ")
