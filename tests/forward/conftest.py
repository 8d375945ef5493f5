"""Bedrock calls are signed with static test credentials; nothing of the host's AWS set-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.providers.builders import use_test_credentials


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_test_credentials(monkeypatch, tmp_path)
