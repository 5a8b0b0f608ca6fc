"""Shared by the integration tests: the offline wheelhouse and a fresh git copy of this source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integrations.wheelhouse import build, offline_pip, source_copy


@pytest.fixture(scope="session")
def offline_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """This environment, with pip told to install only from a wheelhouse built once a session."""
    env = {**os.environ, **offline_pip(build(tmp_path_factory.mktemp("wheels")))}
    env.pop("PIP_CONSTRAINT", None)
    return env


@pytest.fixture(scope="session")
def source_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return source_copy(tmp_path_factory.mktemp("source") / "modelshield")
