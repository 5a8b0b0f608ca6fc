"""S3 objects and prefixes scanned in place with real boto3 against moto's S3 server on loopback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelshield import api
from modelshield.cli import main
from tests.sources.conftest import FIXTURES

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MODELSHIELD_CACHE_DIR", str(tmp_path / "cache"))
    client = boto3.client("s3")
    client.create_bucket(Bucket="models")
    try:
        yield client
    finally:
        server.stop()


def _upload(client: Any, folder: Path, prefix: str) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.upload_file(str(path), "models", f"{prefix}/{path.relative_to(folder).as_posix()}")


@pytest.mark.parametrize("family", ["malicious", "code_in_archives", "keras"])
def test_prefix_verdict_equals_local(s3: Any, family: str) -> None:
    folder = FIXTURES / family
    _upload(s3, folder, f"fixtures/{family}")
    local = api.scan(str(folder), follow_dependencies=False, jobs=1)
    remote = api.scan(f"s3://models/fixtures/{family}", follow_dependencies=False, cache=False)

    def verdicts(results: list[Any], prefix: str) -> dict[str, list[tuple[Any, ...]]]:
        return {
            r.path[len(prefix) :]: sorted((f.rule_id, f.location.members, f.evidence) for f in r.findings)
            for r in results
        }

    assert verdicts(remote.files, f"s3://models/fixtures/{family}") == verdicts(local.files, str(folder))
    assert remote.exit_code == local.exit_code == 1


def test_one_object_is_read_by_ranges_and_cached(s3: Any, tmp_path: Path) -> None:
    s3.upload_file(str(FIXTURES / "malicious" / "torch_payload.pt"), "models", "team/model.pt")
    first = api.scan("s3://models/team/model.pt")
    (result,) = first.files
    assert result.path == "s3://models/team/model.pt"
    assert any(f.location.display == "s3://models/team/model.pt!torch_payload/data.pkl" for f in first.findings)
    assert result.remote is not None and result.remote["digest"].startswith("etag:") and not result.remote["cached"]
    second = api.scan("s3://models/team/model.pt")
    assert second.files[0].remote is not None and second.files[0].remote["cached"]
    assert [f.evidence for f in second.findings] == [f.evidence for f in first.findings]


def test_missing_bucket_and_key_are_usage_errors(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "s3://nobucket/key.pt"]) == 2
    assert "no such bucket or key" in capsys.readouterr().err
    assert main(["scan", "s3://models/none/here"]) == 2
    assert "no object under that prefix" in capsys.readouterr().err


def test_report_of_a_prefix_names_objects(s3: Any, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(FIXTURES / "real" / "model.safetensors", folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    _upload(s3, folder, "clean")
    report = api.scan("s3://models/clean/", cache=False)
    assert sorted(r.path for r in report.files) == [
        "s3://models/clean/config.json",
        "s3://models/clean/model.safetensors",
    ]
    assert report.exit_code == 0
