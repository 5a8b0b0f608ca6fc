"""`scan --format cyclonedx`: a CycloneDX 1.6 ML-BOM that the library's own validator accepts."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from modelshield import scan
from modelshield.cli import main
from modelshield.reports import render
from tests.deps.conftest import BERT_CONFIG, AddRepo, adapter_folder, llama_files, weights, write_json
from tests.helpers import evil_pickle

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def bom_of(*paths: Path) -> dict[str, Any]:
    text = render("cyclonedx", scan([str(p) for p in paths]))
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document: dict[str, Any] = json.loads(text)
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    return document


def files_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["bom-ref"]: f for model in document["components"] for f in model.get("components", [])}


def prop(component: dict[str, Any], name: str) -> str | None:
    return next((p["value"] for p in component.get("properties", []) if p["name"] == name), None)


def test_examples_give_a_valid_bom_with_every_finding(tmp_path: Path) -> None:
    report = scan([str(EXAMPLES)])
    document = bom_of(EXAMPLES)
    [model] = document["components"]
    assert model["type"] == "machine-learning-model"
    files = files_of(document)
    models = [r for r in report.files if r.is_model]
    assert len(files) == len(models)
    for result in models:
        entry = files[f"file:{result.path}"]
        digest = hashlib.sha256(Path(result.path).read_bytes()).hexdigest()
        assert entry["hashes"] == [{"alg": "SHA-256", "content": digest}]
        assert prop(entry, "modelshield:format") == result.format
    vulnerabilities = document["vulnerabilities"]
    assert sorted(v["id"] for v in vulnerabilities) == sorted(f.rule_id for f in report.findings)
    for vulnerability in vulnerabilities:
        [target] = vulnerability["affects"]
        assert target["ref"] in files
        [rating] = vulnerability["ratings"]
        assert rating["severity"] in {"critical", "high", "medium", "low", "info"}
        assert vulnerability["recommendation"]
    assert {"critical"} <= {v["ratings"][0]["severity"] for v in vulnerabilities}


def test_clean_model_has_no_vulnerabilities(tmp_path: Path) -> None:
    weights(tmp_path / "model.safetensors", w=(2, 2))
    document = bom_of(tmp_path)
    assert "vulnerabilities" not in document or document["vulnerabilities"] == []
    assert [f["name"] for f in files_of(document).values()] == ["model.safetensors"]


def test_hub_snapshot_names_repository_commit_and_model_card(tmp_path: Path, hub_cache: AddRepo) -> None:
    snapshot = hub_cache("google-bert/bert-tiny", {"config.json": json.dumps(BERT_CONFIG).encode()})
    weights(snapshot / "model.safetensors", w=(2, 2))
    document = bom_of(snapshot)
    [model] = [m for m in document["components"] if m["name"] == "google-bert/bert-tiny"]
    commit = snapshot.name
    assert model["purl"] == f"pkg:huggingface/google-bert/bert-tiny@{commit}"
    assert model["version"] == commit
    assert model["modelCard"] == {
        "modelParameters": {"architectureFamily": "bert", "modelArchitecture": "BertForSequenceClassification"}
    }


def test_dependency_graph_links_adapter_to_its_base(tmp_path: Path, hub_cache: AddRepo) -> None:
    hub_cache("evil-org/llama-7b-base", llama_files(evil=True))
    document = bom_of(adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base"))
    by_ref = {m["bom-ref"]: m for m in document["components"]}
    [base] = [m for m in by_ref.values() if m["name"] == "evil-org/llama-7b-base"]
    assert base["purl"].startswith("pkg:huggingface/evil-org/llama-7b-base")
    assert prop(base, "modelshield:verdict") == "critical"
    depends = {d["ref"]: d.get("dependsOn", []) for d in document["dependencies"]}
    [root] = [ref for ref, targets in depends.items() if base["bom-ref"] in targets]
    assert by_ref[root]["name"] == str(tmp_path / "adapter")
    ids = {v["id"] for v in document["vulnerabilities"]}
    assert {"DEP004", "PKL001"} <= ids


def test_a_file_outside_any_model_still_gets_its_vulnerability(tmp_path: Path) -> None:
    evil = tmp_path / "model.pkl"
    evil.write_bytes(evil_pickle())
    text = render("cyclonedx", scan([str(evil)], follow_dependencies=False))
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    [vulnerability] = [v for v in document["vulnerabilities"] if v["id"] == "PKL001"]
    assert vulnerability["affects"][0]["ref"] in files_of(document)


def test_missing_library_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    weights(tmp_path / "model.safetensors", w=(2, 2))
    monkeypatch.setitem(sys.modules, "cyclonedx", None)
    code = main(["scan", "-f", "cyclonedx", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "pip install 'modelshield[cyclonedx]'" in err


def test_written_with_o(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_json(tmp_path / "m" / "config.json", BERT_CONFIG)
    weights(tmp_path / "m" / "model.safetensors", w=(2, 2))
    out_file = tmp_path / "bom.json"
    assert main(["scan", "-f", "cyclonedx", "-o", str(out_file), str(tmp_path / "m")]) == 0
    assert capsys.readouterr().out == ""
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(out_file.read_text()) is None
