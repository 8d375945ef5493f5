"""Shared fixtures: an explicit AWS environment (no host CA vars, no IMDS) and the fake server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.fakes.bedrock import TEST_ACCESS_KEY, TEST_REGION, TEST_SECRET_KEY, FakeBedrock

_PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS_* or proxy variables from the host; config files that do not exist; IMDS off."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name.upper() in _PROXY_VARS:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake's static test credentials, through the standard chain (env provider)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY)


@pytest.fixture
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock(region=TEST_REGION) as server:
        yield server


@pytest.fixture
def client(fake: FakeBedrock) -> Iterator[Any]:
    """A real boto3 bedrock-runtime client pointed at the fake (no retries)."""
    bedrock = boto3.client(
        "bedrock-runtime",
        endpoint_url=fake.url,
        region_name=TEST_REGION,
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    yield bedrock
    bedrock.close()
