"""Keras H5 files: the Keras rules on `model_config` and `training_config`, read as attributes only, from
files on disk and from archive members; real Keras 3 and tf.keras H5 models and weights-only files are clean."""

from __future__ import annotations

import faulthandler
import io
import json
import os
import signal
import time
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from modelshield import FileResult, scan_file
from modelshield.core.errors import ScanError
from modelshield.core.rules import Severity
from modelshield.formats.keras import hdf5
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
        ("k2_custom_layer.h5", "KRS003", Severity.LOW),
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


# -- the HDF5 library runs in a child process -----------------------------------------------------------

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="the child process needs fork")


def _evidence(result: FileResult) -> list[tuple[str, str]]:
    return [(f.rule_id, f.evidence) for f in result.findings]


@needs_fork
def test_a_crash_of_the_hdf5_library_is_a_finding_not_the_end_of_the_scan(
    monkeypatch: pytest.MonkeyPatch, scan_data: ScanData
) -> None:
    """A memory-safety bug triggered by a hostile file kills the child; the parent reports the file."""

    def crash(target: object) -> None:
        faulthandler.disable()  # in the child: pytest's handler would print its traceback
        os.kill(os.getpid(), signal.SIGSEGV)

    monkeypatch.setattr(hdf5, "_read", crash)
    data = (FIXTURES / "malicious" / "k2_lambda.h5").read_bytes()
    result = scan_data(data, "m.h5")
    assert _evidence(result) == [("SCN003", "the HDF5 library crashed reading this file (SIGSEGV); not analysed")]


@needs_fork
def test_a_hang_of_the_hdf5_library_is_bounded(monkeypatch: pytest.MonkeyPatch, scan_data: ScanData) -> None:
    monkeypatch.setattr(hdf5, "_read", lambda target: time.sleep(60))
    monkeypatch.setattr(hdf5, "READ_SECONDS", 0.5)
    started = time.monotonic()
    result = scan_data((FIXTURES / "real" / "k2_sequential.h5").read_bytes(), "m.h5")
    assert time.monotonic() - started < 30
    assert _evidence(result) == [("SCN003", "the HDF5 library did not finish reading the attributes in 0.5 s")]


@needs_fork
def test_hdf5_time_is_bounded_per_scanned_file(monkeypatch: pytest.MonkeyPatch, scan_data: ScanData) -> None:
    """An archive of many members that each hang the library costs at most FILE_SECONDS in all."""
    monkeypatch.setattr(hdf5, "_read", lambda target: time.sleep(60))
    monkeypatch.setattr(hdf5, "READ_SECONDS", 0.4)
    monkeypatch.setattr(hdf5, "FILE_SECONDS", 1.0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(4):
            archive.write(FIXTURES / "real" / "k2_sequential.h5", f"m{index}.h5")
    started = time.monotonic()
    result = scan_data(buffer.getvalue(), "bundle.zip")
    assert time.monotonic() - started < 10
    assert [f.rule_id for f in result.findings] == ["SCN003", "SCN003", "SCN003", "SCN005"]
    assert "took the whole 1 s budget" in result.findings[-1].evidence


@needs_fork
def test_the_child_memory_is_bounded(monkeypatch: pytest.MonkeyPatch, scan_data: ScanData) -> None:
    """An allocation beyond the child's budget fails in the child (MemoryError), reported as not analysed."""

    def allocate(target: object) -> None:
        bytearray(hdf5.CHILD_MEMORY * 2)

    monkeypatch.setattr(hdf5, "_read", allocate)
    result = scan_data((FIXTURES / "real" / "k2_sequential.h5").read_bytes(), "m.h5")
    assert _evidence(result) == [("SCN003", "internal error in the HDF5 reader: MemoryError: ")]


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        b"not json",
        b"[]",
        b'{"configs": {"model_config": ["str"]}}',
        b'{"configs": {"model_config": "text"}}',
        b'{"configs": {"model_config": ["bytes", 3]}}',
        b'{"limit": 3}',
        b'{"configs": {}, "refs": [["external link", "/a"]]}',
        b'{"configs": {}, "pickles": [["/a@attr:x", 3]]}',
        b'{"configs": {}, "names": "x"}',
        b'{"configs": {}, "pickles": [["/a@attr:x", "\\u0100"]]}',
    ],
)
def test_an_answer_the_child_could_forge_is_not_trusted(reply: bytes) -> None:
    """A child taken over by the file could answer anything: a malformed answer fails closed."""
    with pytest.raises(ScanError, match="no usable answer"):
        hdf5._decode(reply)


def test_the_childs_answer_keeps_only_config_attributes_and_their_types() -> None:
    configs = {"model_config": ["bytes", "{\u00e9}"], "other": ["str", "x"], "training_config": ["other", "ndarray"]}
    reply = json.dumps({"configs": configs}).encode()
    assert hdf5._decode(reply).configs == {"model_config": "{é}".encode("latin-1"), "training_config": None}


@needs_fork
def test_reading_in_the_child_leaves_the_parents_file_position_alone(scan_data: ScanData) -> None:
    """An H5 member of a stored zip is read by the child through the parent's open file: the parent's
    following members must still read correctly (positional reads share no offset)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.write(FIXTURES / "malicious" / "k2_lambda.h5", "a/k2_lambda.h5")
        archive.write(FIXTURES / "malicious" / "k2_custom_layer.h5", "b/k2_custom_layer.h5")
    result = scan_data(buffer.getvalue(), "bundle.zip")
    assert [(f.rule_id, f.location.members) for f in result.findings] == [
        ("KRS001", ("a/k2_lambda.h5",)),
        ("KRS003", ("b/k2_custom_layer.h5",)),
    ]


def test_a_user_block_larger_than_the_head_is_still_hdf5(tmp_path: Path) -> None:
    """HDF5 looks for its signature at every power of two up to the end of the file."""
    path = tmp_path / "model.h5"
    with h5py.File(path, "w", userblock_size=256 * 1024) as handle:
        layer = {"class_name": "MyLayer", "config": {}}
        handle.attrs["model_config"] = json.dumps(
            {"class_name": "Sequential", "config": {"layers": [layer]}, "keras_version": "2.15.0"}
        )
    result = scan_file(str(path))
    assert result.format == "hdf5"
    assert [f.rule_id for f in result.findings] == ["KRS003"]
