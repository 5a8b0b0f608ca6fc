"""Signature checks during `scan`: INT001 for a model that no longer matches its signature, INT002 for a
missing one (high only when the policy requires a signature); `modelshield.scan` without a key is unchanged."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import modelshield
from modelshield.cli import main
from modelshield.core.policy import Policy, PolicyError
from modelshield.integrity.check import SIGNATURE_FORMAT
from modelshield.integrity.signing import SigningInputError, sign_model
from tests.integrity.conftest import KeyPair


def scan_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main(["scan", "--format", "json", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else {}), err


def signature_entry(doc: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in doc["files"] if f["format"] == SIGNATURE_FORMAT)


@pytest.fixture
def signed(model: Path, keys: KeyPair) -> Path:
    sign_model(str(model), str(keys.private))
    return model


def test_good_signature_passes(capsys: pytest.CaptureFixture[str], signed: Path, keys: KeyPair) -> None:
    code, doc, err = scan_json(capsys, "--verbose", "--public-key", str(keys.public), str(signed))
    assert (code, err) == (0, "")
    entry = signature_entry(doc)
    assert entry["findings"] == []
    assert entry["objects"] == [{"location": str(signed / "model.sig"), "format": f"{SIGNATURE_FORMAT} (verified)"}]


def test_tampered_model_is_an_int001_finding_per_file(
    capsys: pytest.CaptureFixture[str], signed: Path, keys: KeyPair
) -> None:
    (signed / "config.json").write_text('{"auto_map": {"AutoModel": "evil.Model"}}\n')
    (signed / "evil.py").write_text("import os\n")
    code, doc, _ = scan_json(capsys, "--public-key", str(keys.public), str(signed))
    assert code == 1
    findings = {f["location"]["path"]: f for f in signature_entry(doc)["findings"]}
    assert set(findings) == {str(signed / "config.json"), str(signed / "evil.py")}
    assert {f["rule_id"] for f in findings.values()} == {"INT001"}
    schema = json.loads(resources.files("modelshield.reports").joinpath("report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert findings[str(signed / "evil.py")]["details"]["change"] == "added"
    assert findings[str(signed / "config.json")]["severity"] == "high"
    assert findings[str(signed / "config.json")]["category"] == "integrity"


def test_wrong_key_is_int001_at_the_signature(
    capsys: pytest.CaptureFixture[str], signed: Path, other_keys: KeyPair
) -> None:
    code, doc, _ = scan_json(capsys, "--public-key", str(other_keys.public), str(signed))
    assert code == 1
    (finding,) = signature_entry(doc)["findings"]
    assert finding["rule_id"] == "INT001"
    assert finding["location"]["path"] == str(signed / "model.sig")


def test_missing_signature_is_information_unless_required(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair
) -> None:
    code, doc, _ = scan_json(capsys, "--public-key", str(keys.public), str(model))
    assert code == 0
    (finding,) = signature_entry(doc)["findings"]
    assert (finding["rule_id"], finding["severity"]) == ("INT002", "info")


def test_policy_requires_a_signature(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, tmp_path: Path
) -> None:
    policy = tmp_path / "keys" / "policy.toml"
    policy.write_text(f'require-signature = true\npublic-key = "{keys.public.name}"\n')  # relative to the policy
    code, doc, _ = scan_json(capsys, "--policy", str(policy), str(model))
    assert code == 1
    (finding,) = signature_entry(doc)["findings"]
    assert (finding["rule_id"], finding["severity"]) == ("INT002", "high")
    sign_model(str(model), str(keys.private))
    code, doc, _ = scan_json(capsys, "--policy", str(policy), "--verbose", str(model))
    assert code == 0
    assert signature_entry(doc)["findings"] == []


def test_int_findings_can_be_suppressed(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('require-signature = true\n[[suppress]]\nrule = "INT002"\nreason = "unsigned in-house model"\n')
    code, doc, _ = scan_json(capsys, "--policy", str(policy), "--public-key", str(keys.public), str(model))
    assert code == 0
    assert signature_entry(doc)["suppressed"][0]["suppressed_by"]["reason"] == "unsigned in-house model"


@pytest.mark.parametrize(
    ("policy_text", "extra", "needle"),
    [
        ("require-signature = true\n", [], "needs a public key"),
        ("require-signature = 1\n", [], "require-signature must be true or false"),
        ("public-key = 3\n", [], "public-key must be"),
        ("", ["--public-key", "{tmp}/nokey.pub"], "public key not found"),
        ("", ["--signature", "{tmp}/model.sig"], "with a public key"),
    ],
)
def test_signature_configuration_errors_exit_two(
    capsys: pytest.CaptureFixture[str], model: Path, policy_text: str, extra: list[str], needle: str
) -> None:
    policy = model.parent / "policy.toml"
    policy.write_text(policy_text)
    argv = ["--policy", str(policy), *(a.format(tmp=model.parent) for a in extra), str(model)]
    code, doc, err = scan_json(capsys, *argv)
    assert code == 2
    assert doc == {}
    assert err.count("\n") == 1 and needle in err


def test_api_without_a_key_is_unchanged(signed: Path) -> None:
    report = modelshield.scan([signed])
    assert all(r.format != SIGNATURE_FORMAT for r in report.files)
    assert report.exit_code == 0


def test_api_with_a_key(signed: Path, keys: KeyPair, tmp_path: Path) -> None:
    (signed / "model.safetensors").write_bytes(b"")
    report = modelshield.scan(signed, public_key=str(keys.public))
    assert sorted((f.rule_id, f.location.path) for f in report.findings) == [
        ("INT001", str(signed / "model.safetensors")),
        ("SCN006", str(signed / "model.safetensors")),  # an empty file is not the model either
    ]
    with pytest.raises(SigningInputError):
        modelshield.scan([signed, tmp_path], public_key=str(keys.public), signature=str(signed / "model.sig"))
    with pytest.raises(PolicyError):
        modelshield.scan(signed, Policy(require_signature=True))


def test_rules_are_in_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "INT001"]) == 0
    page = capsys.readouterr().out
    assert all(part in page for part in ("## Overview", "## How the attack works", "## Impact", "## Remediation"))
    assert main(["rules"]) == 0
    listing = capsys.readouterr().out
    assert "INT001" in listing and "INT002" in listing


def test_sarif_describes_int_rules(capsys: pytest.CaptureFixture[str], signed: Path, other_keys: KeyPair) -> None:
    code = main(["scan", "--format", "sarif", "--public-key", str(other_keys.public), str(signed)])
    assert code == 1
    sarif = json.loads(capsys.readouterr().out)
    run = sarif["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["INT001"]
    assert run["results"][0]["ruleId"] == "INT001"
