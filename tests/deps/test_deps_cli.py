"""`modelshield deps`, `scan --no-deps`/`--download`, and the dependency graph in the JSON report."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from modelshield.cli import main
from modelshield.reports.json_report import SCHEMA_VERSION
from tests.deps.conftest import AddRepo, adapter_folder, llama_files


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_deps_prints_the_tree_with_verdicts(
    tmp_path: Path, hub_cache: AddRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = hub_cache("evil-org/llama-7b-base", llama_files(evil=True))
    folder = adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base")
    code, out, _ = run(capsys, "deps", str(folder))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{folder}  [critical]"
    assert lines[1] == (
        f"└── adapter_config.json: base model evil-org/llama-7b-base (hub, cached: {snapshot})  [critical]"
    )
    assert "FAILED" in lines[-1]


def test_deps_json(tmp_path: Path, hub_cache: AddRepo, capsys: pytest.CaptureFixture[str]) -> None:
    folder = adapter_folder(tmp_path / "adapter", "nobody/missing")
    code, out, _ = run(capsys, "deps", "--format", "json", str(folder))
    assert code == 0
    graph = json.loads(out)["dependencies"]
    assert [(n["kind"], n["resolution"], n["verdict"]) for n in graph["nodes"]] == [
        ("root", "root", "low"),
        ("hub", "unresolved", None),
    ]
    [edge] = graph["edges"]
    assert edge["role"] == "base model" and edge["rule_id"] == "DEP002" and not edge["cycle"]
    assert run(capsys, "deps", "--fail-on", "low", str(folder))[0] == 1


def test_policy_keys(tmp_path: Path, hub_cache: AddRepo, capsys: pytest.CaptureFixture[str]) -> None:
    folder = adapter_folder(tmp_path / "adapter", "nobody/missing")
    policy = tmp_path / "policy.toml"
    policy.write_text("fail-on-unresolved-dependencies = true\n")
    assert run(capsys, "scan", "--policy", str(policy), str(folder))[0] == 1
    policy.write_text('trusted-models = ["nobody/*"]\nfail-on-unresolved-dependencies = true\n')
    assert run(capsys, "scan", "--policy", str(policy), str(folder))[0] == 0
    policy.write_text('trusted-models = "nobody/*"\n')
    code, _, err = run(capsys, "scan", "--policy", str(policy), str(folder))
    assert code == 2 and "trusted-models must be a list" in err and len(err.splitlines()) == 1
    policy.write_text("[limits]\nmax-dependency-depth = 0\n")
    assert run(capsys, "scan", "--policy", str(policy), str(folder))[0] == 2


def test_scan_json_report_carries_the_graph(
    tmp_path: Path, hub_cache: AddRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    hub_cache("evil-org/llama-7b-base", llama_files(evil=True))
    folder = adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base")
    code, out, _ = run(capsys, "scan", "--format", "json", str(folder))
    doc = json.loads(out)
    schema = json.loads(resources.files("modelshield.reports").joinpath("report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert code == 1 and doc["schema_version"] == SCHEMA_VERSION
    assert [n["verdict"] for n in doc["dependencies"]["nodes"]] == ["critical", "critical"]
    code, out, _ = run(capsys, "scan", "--no-deps", "--format", "json", str(folder))
    doc = json.loads(out)
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert code == 0 and doc["dependencies"] is None


def test_text_report_has_a_dependency_section(
    tmp_path: Path, hub_cache: AddRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    hub_cache("evil-org/llama-7b-base", llama_files(evil=True))
    code, out, _ = run(capsys, "scan", str(adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base")))
    assert code == 1
    section = out[out.index("\nDependencies\n") :].splitlines()
    assert section[3].startswith("└── adapter_config.json: base model evil-org/llama-7b-base (hub, cached")


def test_download_without_huggingface_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    folder = adapter_folder(tmp_path / "adapter", "nobody/missing")
    for command in ("scan", "deps"):
        code, out, err = run(capsys, command, "--download", str(folder))
        assert code == 2 and out == ""
        assert err == "modelshield: error: --download needs huggingface_hub: pip install 'modelshield[hub]'\n"


def test_download_fetches_into_the_cache(tmp_path: Path, hub_cache: AddRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The download path, with huggingface_hub's snapshot_download replaced (tests have no network)."""
    calls: list[tuple[str, str | None, str]] = []

    def fake_download(repository: str, revision: str | None, cache: str) -> str:
        calls.append((repository, revision, cache))
        return str(hub_cache(repository, llama_files(evil=True)))

    monkeypatch.setattr("modelshield.deps.resolve._download", fake_download)
    monkeypatch.setattr("modelshield.deps.resolve.require_download", lambda: None)
    monkeypatch.setattr("modelshield.api.require_download", lambda: None)
    from modelshield import scan

    report = scan(adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base", "v1"), download=True)
    assert [c[:2] for c in calls] == [("evil-org/llama-7b-base", "v1")]
    assert report.dependencies is not None and report.dependencies.nodes[1].resolution == "downloaded"
    assert report.exit_code == 1
