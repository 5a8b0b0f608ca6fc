"""The public Python API as the README documents it: every documented call, and `scan` at the top
level of a script under the spawn start method (macOS, Windows) without a main guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import modelshield
from modelshield import Policy, PolicyError, Report, Severity, load_policy, scan
from modelshield.cli import main
from tests.helpers import evil_pickle

SRC = str(Path(modelshield.__file__).parent.parent)


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "evil.pkl").write_bytes(evil_pickle())
    (folder / "weights.safetensors").write_bytes(b"\x00\x01\x02\x03" * 64)  # not safetensors: medium
    (folder / "notes.txt").write_text("hello\n")
    return folder


SCRIPT = """
import multiprocessing, sys
multiprocessing.set_start_method(sys.argv[1])
import modelshield

print("top level ran", flush=True)  # once, or once more in every worker that re-ran this script
report = modelshield.scan([sys.argv[2]], jobs=2)
for finding in report.findings:
    print(finding.level.label, finding.rule_id, finding.location, finding.evidence)
print("exit", report.exit_code)
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_readme_snippet_runs_without_a_main_guard(models: Path, tmp_path: Path, method: str) -> None:
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    script = tmp_path / "use_modelshield.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), method, str(models)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines.count("top level ran") == 1
    assert lines[-1] == "exit 1"
    assert any(line.startswith("critical PKL001") for line in lines)


def test_documented_report_fields(models: Path) -> None:
    report = scan([models])
    assert isinstance(report, Report)
    assert report.counts == {s: sum(f.level == s for f in report.findings) for s in sorted(Severity, reverse=True)}
    assert report.counts[Severity.CRITICAL] >= 1
    assert {f.rule_id for f in report.failing} >= {"PKL001", "SCN004"}
    assert all(f.level >= Severity.MEDIUM for f in report.failing)
    assert report.max_severity is Severity.CRITICAL and report.exit_code == 1
    assert report.errors == []
    [evil] = [r for r in report.files if r.path.endswith("evil.pkl")]
    assert evil.is_model and evil.max_severity is Severity.CRITICAL


def test_to_json_is_the_cli_document(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = scan([models])
    doc = json.loads(report.to_json())
    assert main(["scan", "--format", "json", str(models)]) == 1
    cli = json.loads(capsys.readouterr().out)
    schema = json.loads((Path(modelshield.__file__).parent / "reports" / "report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    timing = ("started_at", "duration_seconds")
    for key in timing:
        doc.pop(key), cli.pop(key)
    for entry in doc["files"] + cli["files"]:
        entry.pop("seconds")
    assert doc == cli
    assert len(json.loads(report.to_json(verbose=True))["files"]) == len(doc["files"]) + 1  # notes.txt


def test_load_policy(models: Path, tmp_path: Path) -> None:
    policy_file = tmp_path / "modelshield.toml"
    policy_file.write_text('fail-on = "critical"\n[[suppress]]\nrule = "SCN004"\nreason = "test data"\n')
    policy = load_policy(policy_file)
    assert isinstance(policy, Policy) and policy.fail_on is Severity.CRITICAL
    report = scan([models], policy)
    assert [f.rule_id for f in report.failing] == ["PKL001"]
    assert all(f.rule_id != "SCN004" for f in report.findings)
    assert load_policy(str(policy_file)).fail_on is Severity.CRITICAL
    policy_file.write_text('fail-on = "severe"\n')
    with pytest.raises(PolicyError):
        load_policy(policy_file)


def test_public_names() -> None:
    for name in ("scan", "scan_file", "load_policy", "Policy", "Report", "Severity", "ScanInputError"):
        assert name in modelshield.__all__ and hasattr(modelshield, name)
    with pytest.raises(modelshield.ScanInputError):
        scan(["/definitely/not/here"])
    assert modelshield.scan_file(__file__).format == "text"
