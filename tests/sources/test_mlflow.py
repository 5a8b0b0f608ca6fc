"""MLflow models and run artifacts scanned in place: a real `mlflow server` (SQLite backend, proxied
artifacts) started on loopback, models logged and registered by mlflow itself, read by range requests
through the tracking server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelshield import api
from modelshield.cli import main
from tests.sources.conftest import FIXTURES

mlflow = pytest.importorskip("mlflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts", "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(720):  # mlflow server starts in 10-60 s
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("mlflow server did not start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def registered(tracking: str) -> Iterator[dict[str, Any]]:
    """A run with the malicious fixtures as artifacts, and a registered scikit-learn model with an alias."""
    from sklearn.linear_model import LogisticRegression

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking)
        mlflow.set_tracking_uri(tracking)
        mlflow.set_experiment("modelshield")
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(FIXTURES / "malicious"), artifact_path="payloads")
            model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
            info = mlflow.sklearn.log_model(
                model, name="model", registered_model_name="clf", await_registration_for=0, pip_requirements=[]
            )
        version = str(info.registered_model_version)
        mlflow.MlflowClient().set_registered_model_alias("clf", "champion", version)
        yield {"run": run.info.run_id, "name": "clf", "version": version}


@pytest.fixture
def logged(
    registered: dict[str, Any], tracking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    monkeypatch.setenv("MODELSHIELD_CACHE_DIR", str(tmp_path / "cache"))
    return registered


def _verdicts(results: list[Any], prefix: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        r.path[len(prefix) :].lstrip("/"): sorted((f.rule_id, f.location.members, f.evidence) for f in r.findings)
        for r in results
    }


def test_run_artifacts_verdict_equals_local(logged: dict[str, Any], tmp_path: Path) -> None:
    uri = f"runs:/{logged['run']}/payloads"
    local_dir = tmp_path / "download"
    shutil.copytree(FIXTURES / "malicious", local_dir)
    local = api.scan(str(local_dir), follow_dependencies=False, jobs=1)
    remote = api.scan(uri, follow_dependencies=False)
    assert _verdicts(remote.files, f"runs:/{logged['run']}/payloads") == _verdicts(local.files, str(local_dir))
    assert all(r.remote and 0 < r.remote["bytes_fetched"] <= r.size for r in remote.files)


def test_registered_model_by_version_and_alias(logged: dict[str, Any]) -> None:
    by_version = api.scan(f"models:/{logged['name']}/{logged['version']}", cache=False)
    by_alias = api.scan(f"models:/{logged['name']}@champion", cache=False)
    paths = sorted(r.path for r in by_version.files)
    assert paths == sorted(r.path for r in by_alias.files)
    assert f"models:/{logged['name']}/{logged['version']}/MLmodel" in paths
    assert by_version.remote is not None and by_version.remote["targets"][0]["revision"] == logged["version"]
    weights = [r for r in by_version.files if r.path.rpartition("/")[2].startswith("model.")]
    assert weights and all(r.is_model and r.format != "unknown" for r in weights), paths


def test_unknown_model_and_run_are_usage_errors(logged: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "models:/no-such-model/1"]) == 2
    assert "no such model" in capsys.readouterr().err
    assert main(["scan", f"models:/{logged['name']}@nobody"]) == 2
    assert "cannot list" in capsys.readouterr().err
    assert main(["scan", "models:/x"]) == 2
    assert "malformed MLflow address" in capsys.readouterr().err
