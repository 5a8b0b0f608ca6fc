"""Policy paths: suppression globs match paths relative to the policy file's folder (and the member
location), the same however the scanned path was typed and wherever the scan runs from; the policy is
found from the scanned paths upwards; `--policy` accepts both policy shapes in any TOML file."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

import modelshield
from modelshield.cli import main
from modelshield.core.policy import parse_policy
from modelshield.registry import ALLOWLISTS

JUNK = b"\x00\x01\x02\x03" * 64  # not safetensors: SCN004 under a .safetensors name


def scan_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main(["scan", "--format", "json", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else {}), err


def suppressed_at(doc: dict[str, Any]) -> set[str]:
    return {f["location"]["display"] for r in doc["files"] for f in r["suppressed"]}


def found_at(doc: dict[str, Any]) -> set[str]:
    return {f["location"]["display"] for r in doc["files"] for f in r["findings"]}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose pyproject.toml suppresses SCN004 for `d1/w.safetensors` and for one zip member."""
    root = tmp_path / "project"
    (root / "d1" / "sub").mkdir(parents=True)
    (root / "d1" / "w.safetensors").write_bytes(JUNK)
    (root / "d1" / "sub" / "kept.safetensors").write_bytes(JUNK)
    with zipfile.ZipFile(root / "d1" / "bundle.zip", "w") as bundle:
        bundle.writestr("inner/w.safetensors", JUNK)
        bundle.writestr("inner/kept.safetensors", JUNK)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n'
        '[[tool.modelshield.suppress]]\nrule = "SCN004"\npath = "d1/w.safetensors"\nreason = "placeholder"\n\n'
        '[[tool.modelshield.suppress]]\nrule = "SCN004"\npath = "./d1/bundle.zip!inner/w.*"\nreason = "member"\n'
    )
    return root


@pytest.mark.parametrize(
    ("cwd", "typed"),
    [
        (".", "d1"),
        (".", "./d1"),
        (".", "d1/"),
        (".", "."),
        (".", "{root}/d1"),
        ("d1", "."),
        ("d1", "../d1"),
        ("d1/sub", ".."),
        ("{tmp}", "project/d1"),
        ("/", "{root}/d1"),
    ],
)
def test_suppressions_do_not_depend_on_how_the_path_was_typed(
    capsys: pytest.CaptureFixture[str],
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    cwd: str,
    typed: str,
) -> None:
    values = {"root": project, "tmp": project.parent}
    monkeypatch.chdir(project / cwd.format(**values))
    code, doc, err = scan_json(capsys, typed.format(**values))
    assert code == 1, err  # the files the policy does not suppress still fail
    suppressed = {os.path.basename(s.replace("!", "/")) for s in suppressed_at(doc)}
    found = {os.path.basename(s.replace("!", "/")) for s in found_at(doc)}
    assert suppressed == {"w.safetensors"} and len(suppressed_at(doc)) == 2
    assert found == {"kept.safetensors"} and len(found_at(doc)) == 2
    assert doc["policy"]["source"] == f"{project / 'pyproject.toml'} [tool.modelshield]"


def test_policy_is_found_from_the_scanned_path_not_the_working_directory(
    capsys: pytest.CaptureFixture[str], project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "pyproject.toml").write_text('[tool.modelshield]\nfail-on = "critical"\n')
    monkeypatch.chdir(elsewhere)
    code, doc, _ = scan_json(capsys, str(project / "d1" / "w.safetensors"))
    assert doc["policy"]["source"] == f"{project / 'pyproject.toml'} [tool.modelshield]"
    assert (code, found_at(doc)) == (0, set())
    # and the working directory's policy does not reach a path outside its project
    outside = tmp_path / "loose.safetensors"
    outside.write_bytes(JUNK)
    code, doc, _ = scan_json(capsys, str(outside))
    assert (code, doc["policy"]["source"]) == (1, None)


def test_pyproject_without_the_table_is_passed_over(
    capsys: pytest.CaptureFixture[str], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A monorepo package's own pyproject.toml does not switch off the repository's policy."""
    (project / "d1" / "pyproject.toml").write_text('[project]\nname = "package"\n')
    monkeypatch.chdir(project / "d1")
    code, doc, _ = scan_json(capsys, "w.safetensors")
    assert doc["policy"]["source"] == f"{project / 'pyproject.toml'} [tool.modelshield]"
    assert code == 0


def test_paths_under_different_policies_are_an_error(
    capsys: pytest.CaptureFixture[str], project: Path, tmp_path: Path
) -> None:
    loose = tmp_path / "loose.safetensors"
    loose.write_bytes(JUNK)
    code, doc, err = scan_json(capsys, str(project / "d1"), str(loose))
    assert (code, doc) == (2, {})
    assert err.count("\n") == 1
    assert f"{project / 'd1'} and {loose} fall under different policies" in err and "--policy" in err
    # paths of one project share its policy
    code, doc, _ = scan_json(capsys, str(project / "d1" / "w.safetensors"), str(project / "d1" / "sub"))
    assert (code, len(suppressed_at(doc))) == (1, 1)


def test_policy_file_globs_are_relative_to_its_folder(
    capsys: pytest.CaptureFixture[str], project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = project / "ci"
    policies.mkdir()
    policy = policies / "modelshield.toml"
    policy.write_text('[[suppress]]\nrule = "SCN004"\npath = "../d1/sub/*"\n')
    monkeypatch.chdir(tmp_path)
    code, doc, _ = scan_json(capsys, "--policy", str(policy), str(project / "d1" / "sub"))
    assert (code, len(suppressed_at(doc))) == (0, 1)


def test_absolute_globs_still_match(capsys: pytest.CaptureFixture[str], project: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[suppress]]\nrule = "SCN004"\npath = "*/d1/sub/*"\n')
    code, doc, _ = scan_json(capsys, "--policy", str(policy), str(project / "d1" / "sub"))
    assert (code, len(suppressed_at(doc))) == (0, 1)


def test_policy_built_in_code_is_relative_to_the_working_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = parse_policy({"suppress": [{"rule": "SCN004", "path": "sub/*"}]}, ALLOWLISTS)
    monkeypatch.chdir(project / "d1")
    for typed in ("sub", "./sub", str(project / "d1" / "sub")):
        report = modelshield.scan([typed], policy, jobs=1)
        assert (report.findings, report.exit_code) == ([], 0)


@pytest.mark.parametrize("name", ["modelshield.toml", "pyproject.toml"])
def test_readme_snippet_works_in_any_toml_file(
    capsys: pytest.CaptureFixture[str], project: Path, tmp_path: Path, name: str
) -> None:
    policy = tmp_path / name
    policy.write_text('[tool.modelshield]\nfail-on = "high"\n\n[tool.modelshield.severity]\nSCN004 = "low"\n')
    code, doc, err = scan_json(capsys, "--policy", str(policy), str(project / "d1" / "sub"))
    assert (code, err) == (0, "")
    assert doc["policy"] == {"fail_on": "high", "source": f"{policy} [tool.modelshield]"}
    assert {f["severity"] for r in doc["files"] for f in r["findings"]} == {"low"}


def test_bare_keys_in_a_file_named_pyproject(capsys: pytest.CaptureFixture[str], project: Path, tmp_path: Path) -> None:
    policy = tmp_path / "pyproject.toml"
    policy.write_text('fail-on = "critical"\n')
    code, doc, _ = scan_json(capsys, "--policy", str(policy), str(project / "d1" / "sub"))
    assert (code, doc["policy"]["fail_on"]) == (0, "critical")


def test_dot_dot_in_the_typed_path_does_not_borrow_a_suppression(
    capsys: pytest.CaptureFixture[str], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`d1/sub/../w.safetensors` is `d1/w.safetensors`: a glob for `d1/sub/*` must not silence it."""
    (project / "pyproject.toml").write_text('[[tool.modelshield.suppress]]\nrule = "SCN004"\npath = "d1/sub/*"\n')
    monkeypatch.chdir(project)
    code, doc, _ = scan_json(capsys, "d1/sub/../w.safetensors")
    assert (code, suppressed_at(doc)) == (1, set())
