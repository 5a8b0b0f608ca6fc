"""Scanning a Hugging Face cache (the hub folder, a `models--org--name` folder, or a folder holding one)
gives the verdict that scanning the snapshot folder gives: files keep their real names, each blob is
scanned once, and no link out of the cache is read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modelshield import Report, scan
from modelshield.cli import main
from modelshield.core.rules import Severity
from tests.deps.conftest import AddRepo, adapter_config, llama_files
from tests.deps.test_dependencies import BENIGN_MODELING, EVIL_CONFIGURATION, REMOTE_CONFIG
from tests.helpers import evil_pickle

#: Each family: the repositories of a cache (id -> files) and the one whose snapshot is scanned.
FAMILIES: dict[str, tuple[dict[str, dict[str, bytes]], str]] = {
    "pickle named .safetensors": (
        {"evil-org/disguised": {"config.json": b'{"model_type": "bert"}', "model.safetensors": evil_pickle()}},
        "evil-org/disguised",
    ),
    "remote code running os.system": (
        {
            "evil-org/tiny": {
                "config.json": json.dumps(REMOTE_CONFIG).encode(),
                "configuration_tiny.py": EVIL_CONFIGURATION.encode(),
                "modeling_tiny.py": BENIGN_MODELING.encode(),
            }
        },
        "evil-org/tiny",
    ),
    "adapter on a malicious base": (
        {
            "evil-org/llama-7b-base": llama_files(evil=True),
            "someone/lora": {"adapter_config.json": json.dumps(adapter_config("evil-org/llama-7b-base")).encode()},
        },
        "someone/lora",
    ),
}


def verdict(report: Report) -> tuple[Severity | None, list[tuple[str, str, str, str]]]:
    """The worst severity and each finding as (repository folder, file name inside its snapshot, rule,
    severity)."""
    rows = []
    for finding in report.findings:
        path = finding.location.path
        assert "/blobs/" not in path, f"reported by blob name: {finding}"
        repo, _, inner = path.partition("/snapshots/")
        rows.append((os.path.basename(repo), inner.split("/", 1)[1], finding.rule_id, finding.level.label))
    return report.max_severity, sorted(rows)


def repo_folder(snapshot: Path) -> Path:
    return snapshot.parent.parent


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cache_scans_like_its_snapshot(family: str, hub_cache: AddRepo, tmp_path: Path) -> None:
    repositories, scanned = FAMILIES[family]
    snapshots = {repo_id: hub_cache(repo_id, files) for repo_id, files in repositories.items()}
    direct = verdict(scan(snapshots[scanned]))
    assert direct[0] is not None and direct[0] >= Severity.HIGH, direct
    hub = repo_folder(snapshots[scanned]).parent
    for path in (repo_folder(snapshots[scanned]), hub, tmp_path):  # tmp_path holds the hub folder
        through_cache = verdict(scan(path))
        assert through_cache == direct, path


def test_fail_on_high_fails_the_cache_of_a_repository_with_hostile_remote_code(
    hub_cache: AddRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repositories, scanned = FAMILIES["remote code running os.system"]
    snapshot = hub_cache(scanned, repositories[scanned])
    code = main(["scan", "--fail-on", "high", "--format", "json", str(repo_folder(snapshot))])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    [remote] = [f for file in doc["files"] for f in file["findings"] if f["rule_id"] == "DEP001"]
    assert remote["severity"] == "critical"
    assert remote["location"]["path"] == str(snapshot / "config.json")


def test_each_blob_is_scanned_once_per_name(hub_cache: AddRepo) -> None:
    files = {"config.json": b'{"model_type": "bert"}', "pytorch_model.bin": evil_pickle()}
    hub_cache("evil-org/m", files, revision="main")
    second = hub_cache("evil-org/m", files, revision="v2")  # a second commit sharing both blobs
    (second / "weights.pkl").symlink_to("pytorch_model.bin")  # the same blob under another name
    report = scan(repo_folder(second))
    names = sorted(os.path.basename(r.path) for r in report.files)
    assert names == ["config.json", "pytorch_model.bin", "weights.pkl"]
    assert all("/snapshots/" in r.path for r in report.files)


def test_unreferenced_blobs_are_scanned_by_content(hub_cache: AddRepo) -> None:
    snapshot = hub_cache("evil-org/m", {"config.json": b'{"model_type": "bert"}'})
    stale = repo_folder(snapshot) / "blobs" / ("0" * 64)
    stale.write_bytes(evil_pickle())  # an old revision's weights, which a download can link again
    report = scan(repo_folder(snapshot))
    assert sorted(r.path for r in report.files) == sorted([str(snapshot / "config.json"), str(stale)])
    assert any(f.location.path == str(stale) and f.level >= Severity.HIGH for f in report.findings)


def test_no_exist_markers_are_not_model_files(hub_cache: AddRepo) -> None:
    snapshot = hub_cache("org/m", {"config.json": b'{"model_type": "bert"}'})
    marker = repo_folder(snapshot) / ".no_exist" / snapshot.name / "model.safetensors"
    marker.parent.mkdir(parents=True)
    marker.touch()  # huggingface_hub's record that the repository has no model.safetensors
    report = scan(repo_folder(snapshot))
    assert [r.path for r in report.files] == [str(snapshot / "config.json")]
    assert report.exit_code == 0


def test_snapshot_links_out_of_the_cache_are_never_read(hub_cache: AddRepo, tmp_path: Path) -> None:
    snapshot = hub_cache("evil-org/m", {"config.json": b'{"model_type": "bert"}'})
    secret = tmp_path / "outside.pkl"
    secret.write_bytes(evil_pickle())
    (snapshot / "pytorch_model.bin").symlink_to(secret)
    (snapshot / "extra").symlink_to(tmp_path)
    report = scan(repo_folder(snapshot))
    assert report.exit_code == 2
    assert sorted(os.path.basename(p) for p, _ in report.errors) == ["extra", "pytorch_model.bin"]
    assert all("links out of its Hugging Face cache folder" in message for _, message in report.errors)
    assert not any(r.path == str(secret) or f.location.path == str(secret) for r in report.files for f in r.findings)
    assert [f for f in report.findings if f.rule_id.startswith("PKL")] == []
