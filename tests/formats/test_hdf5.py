"""Keras H5 files: the Keras rules on `model_config` and `training_config`, read as attributes only, from
files on disk and from archive members; real Keras 3 and tf.keras H5 models and weights-only files are clean."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from modelshield import FileResult, scan_file
from modelshield.core.rules import Severity
from tests.conftest import ScanData

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras"


def rules(result: FileResult) -> list[str]:
    return [f.rule_id for f in result.findings]


def h5_bytes(tmp_path: Path, **attributes: Any) -> bytes:
    path = tmp_path / "built.h5"
    with h5py.File(path, "w") as handle:
        for name, value in attributes.items():
            handle.attrs[name] = value
        handle["model_weights/dense/kernel"] = np.zeros((2, 2))
    return path.read_bytes()


@pytest.mark.parametrize("path", sorted((FIXTURES / "real").glob("*.h5")), ids=lambda p: p.name)
def test_real_h5_models_are_clean(path: Path) -> None:
    result = scan_file(str(path))
    assert result.format == "hdf5"
    assert result.findings == []


def test_weights_only_files_are_not_findings(tmp_path: Path, scan_data: ScanData) -> None:
    assert scan_data(h5_bytes(tmp_path, keras_version="3.15.1", backend="jax"), "w.h5").findings == []


@pytest.mark.parametrize(
    ("name", "rule_id", "severity"),
    [
        ("k3_lambda.h5", "KRS001", Severity.CRITICAL),
        ("k2_lambda.h5", "KRS001", Severity.CRITICAL),
        ("k2_lambda_function_module.h5", "KRS002", Severity.CRITICAL),
        ("k2_custom_layer.h5", "KRS003", Severity.HIGH),
        ("k2_lookup_vocabulary_file.h5", "KRS007", Severity.HIGH),
        ("k2_tf_op_read_file.h5", "KRS009", Severity.HIGH),
    ],
)
def test_hostile_h5_files(name: str, rule_id: str, severity: Severity) -> None:
    result = scan_file(str(FIXTURES / "malicious" / name))
    assert [(f.rule_id, f.level) for f in result.findings] == [(rule_id, severity)]
    assert result.findings[0].evidence.startswith("model_config: ")


def test_training_config_is_walked(tmp_path: Path, scan_data: ScanData) -> None:
    loss = {"class_name": "__lambda__", "config": {"value": ["4wEAAA==", None, None]}}
    training = json.dumps({"loss": loss, "optimizer_config": {"class_name": "Custom>Adam", "config": {}}})
    model = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
    result = scan_data(h5_bytes(tmp_path, model_config=model, training_config=training), "m.h5")
    [finding] = result.findings
    assert finding.rule_id == "KRS001" and finding.evidence.startswith("training_config: ")


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_h5_inside_an_archive(method: int, scan_data: ScanData) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.write(FIXTURES / "malicious" / "k2_lambda.h5", "models/k2_lambda.h5")
    result = scan_data(buffer.getvalue(), "bundle.zip")
    assert [(f.rule_id, f.location.members) for f in result.findings] == [("KRS001", ("models/k2_lambda.h5",))]


def test_keras_archive_weights_member_is_clean() -> None:
    result = scan_file(str(FIXTURES / "real" / "k3_cnn.keras"))
    assert any(o.location.endswith("!model.weights.h5") and o.format == "hdf5" for o in result.objects)
    assert result.findings == []


def test_config_attribute_that_is_not_text_fails_closed(tmp_path: Path, scan_data: ScanData) -> None:
    assert rules(scan_data(h5_bytes(tmp_path, model_config=np.arange(3)), "m.h5")) == ["SCN003"]
    assert rules(scan_data(h5_bytes(tmp_path, model_config="{not json"), "m.h5")) == ["SCN003"]


def test_corrupt_hdf5_fails_closed(scan_data: ScanData) -> None:
    data = (FIXTURES / "real" / "k2_sequential.h5").read_bytes()
    result = scan_data(data[:600], "m.h5")
    assert rules(result) == ["SCN003"]
