"""Policy files as a CI job uses them: suppressions, overrides, fail-on, and strict keys."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from modelshield.cli import main


def scan_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object], str]:
    code = main(["scan", "--format", "json", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else {}), err


@pytest.fixture
def disguised(tmp_path: Path) -> Path:
    model = tmp_path / "models" / "weights.safetensors"
    model.parent.mkdir()
    model.write_bytes(b"\x00\x01\x02\x03" * 64)
    return model


def test_suppression_by_rule_and_glob(capsys: pytest.CaptureFixture[str], tmp_path: Path, disguised: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[suppress]]\nrule = "SCN004"\npath = "*/models/*"\nreason = "placeholder file"\n')
    code, doc, _ = scan_json(capsys, "--policy", str(policy), str(disguised))
    assert code == 0
    files = doc["files"]
    assert isinstance(files, list)
    assert files[0]["findings"] == []
    assert files[0]["suppressed"][0]["suppressed_by"]["reason"] == "placeholder file"


def test_suppression_glob_that_does_not_match(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, disguised: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[suppress]]\nrule = "SCN004"\npath = "*/other/*"\n')
    code, _, _ = scan_json(capsys, "--policy", str(policy), str(disguised))
    assert code == 1


def test_severity_override_and_fail_on(capsys: pytest.CaptureFixture[str], tmp_path: Path, disguised: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('fail-on = "high"\n[severity]\nSCN004 = "critical"\n')
    code, doc, _ = scan_json(capsys, "--policy", str(policy), str(disguised))
    assert code == 1
    assert doc["summary"]["by_severity"]["critical"] == 1  # type: ignore[index]
    # --fail-on on the command line wins over the policy's fail-on
    code, _, _ = scan_json(capsys, "--policy", str(policy), "--fail-on", "critical", str(disguised))
    assert code == 1


def test_pyproject_table_is_discovered(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, disguised: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.modelshield]\nfail-on = "critical"\n')
    monkeypatch.chdir(tmp_path)
    code, doc, _ = scan_json(capsys, str(disguised))
    assert code == 0
    assert doc["policy"]["fail_on"] == "critical"  # type: ignore[index]


def test_pyproject_given_explicitly(capsys: pytest.CaptureFixture[str], tmp_path: Path, disguised: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.modelshield.severity]\nSCN004 = "low"\n')
    code, _, _ = scan_json(capsys, "--policy", str(pyproject), str(disguised))
    assert code == 0


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('fail_on = "high"\n', "unknown key 'fail_on'"),
        ('fail-on = "severe"\n', "unknown severity"),
        ('[[suppress]]\nrule = "XYZ123"\n', "unknown rule"),
        ('[[suppress]]\nrule = "SCN004"\nglob = "*"\n', "unknown key 'glob'"),
        ('[severity]\nSCN004 = "loud"\n', "unknown severity"),
        ("[limits]\nmax-depth = -1\n", "positive integer"),
        ("[limits]\nmax-dpeth = 3\n", "unknown key 'max-dpeth'"),
        ('[allow]\nnot-a-list = ["x"]\n', "unknown key 'not-a-list'"),
        ("fail-on = [\n", "not valid TOML"),
        # both shapes at once, or a pyproject-like file without the table
        ('fail-on = "high"\n[tool.modelshield]\nfail-on = "low"\n', "has both a [tool.modelshield] table and"),
        ('[project]\nname = "x"\n', "has no [tool.modelshield] table"),
        ("tool = 1\n", "has no [tool.modelshield] table"),
        ("[tool]\nmodelshield = 3\n", "tool.modelshield must be a table"),
    ],
)
def test_invalid_policy_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, disguised: Path, text: str, complaint: str
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(text)
    code = main(["scan", "--policy", str(policy), str(disguised)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and complaint in err


def test_limits_from_policy_apply(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    nested = tmp_path / "deep.gz"
    nested.write_bytes(gzip.compress(gzip.compress(gzip.compress(b"hello"))))
    policy = tmp_path / "policy.toml"
    policy.write_text("[limits]\nmax-depth = 2\n")
    code, doc, _ = scan_json(capsys, "--policy", str(policy), str(nested))
    rules = [f["rule_id"] for f in doc["files"][0]["findings"]]  # type: ignore[index]
    assert rules == ["SCN005"]
    assert code == 1
    code, doc, _ = scan_json(capsys, str(nested))
    assert code == 0
