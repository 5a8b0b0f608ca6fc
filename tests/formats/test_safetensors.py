"""safetensors validation: quiet on files the real library writes, one finding per kind of defect,
and agreement with the reference parser on what it accepts."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelshield import FileResult, Severity, scan_file
from modelshield.formats.tensors.safetensors import MAX_FINDINGS_PER_RULE
from tests.conftest import ScanData
from tests.helpers import evil_pickle, is_code_execution

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def raw(header: dict[str, Any] | bytes, data: bytes = b"") -> bytes:
    """A safetensors file from a header (JSON-encoded unless given as bytes) and a data section."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def tensor(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def rule_ids(result: FileResult) -> list[str]:
    return [f.rule_id for f in result.findings]


REAL_ARRAYS = {
    "bool": np.array([True, False, True]),
    "u8": np.arange(7, dtype=np.uint8),
    "i8": np.arange(-3, 3, dtype=np.int8),
    "i16": np.arange(6, dtype=np.int16).reshape(2, 3),
    "u16": np.arange(6, dtype=np.uint16),
    "f16": np.ones((2, 2), dtype=np.float16),
    "i32": np.arange(10, dtype=np.int32),
    "u32": np.arange(10, dtype=np.uint32),
    "f32": np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32),
    "f64": np.linspace(0, 1, 9),
    "i64": np.arange(4, dtype=np.int64),
    "u64": np.arange(4, dtype=np.uint64),
    "c64": np.ones(3, dtype=np.complex64),
    "empty": np.zeros((0, 4), dtype=np.float32),
    "scalar": np.array(3.0, dtype=np.float32),
}


def test_real_files_are_clean(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(REAL_ARRAYS, str(path), metadata={"format": "np", "note": "x" * 300})
    result = scan_file(str(path))
    assert result.format == "safetensors"
    assert result.findings == []


@pytest.mark.parametrize("arrays", [{}, {"only": np.zeros(1, dtype=np.uint8)}])
def test_real_small_files_are_clean(tmp_path: Path, arrays: dict[str, Any]) -> None:
    path = tmp_path / "small.safetensors"
    safetensors_numpy.save_file(arrays, str(path))
    assert scan_file(str(path)).findings == []


def test_leading_whitespace_and_null_metadata_are_accepted(scan_data: ScanData) -> None:
    header = b'  {"__metadata__": null, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    result = scan_data(raw(header, b"\0" * 4), "w.safetensors")
    assert result.format == "safetensors"
    assert result.findings == []


@pytest.mark.parametrize(
    ("data", "evidence"),
    [
        (struct.pack("<Q", 1000) + b'{"a": 1}', "only 8 bytes follow"),
        (raw(b'{"w": "\xff"}'), "not valid UTF-8"),
        (raw(b'{"w": }'), "not valid JSON"),
        (raw(b'{"w": NaN}'), "not valid JSON"),
        (raw(b'{"w": 1} trailing'), "not valid JSON"),
        (raw(b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"), "nested too deeply"),
    ],
)
def test_malformed_header(scan_data: ScanData, data: bytes, evidence: str) -> None:
    result = scan_data(data, "model.safetensors")
    assert rule_ids(result) == ["SFT001"]
    assert evidence in result.findings[0].evidence
    assert result.findings[0].level == Severity.MEDIUM


def test_huge_header_claim_is_bounded(scan_data: ScanData) -> None:
    # 100 MB is the reference limit; the scanner must not try to read such a claim from a tiny file.
    result = scan_data(struct.pack("<Q", 99_999_999) + b"{}", "model.safetensors")
    assert rule_ids(result) == ["SFT001"]


def test_duplicate_tensor_names(scan_data: ScanData) -> None:
    text = (
        b'{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, '
        b'"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}'
    )
    result = scan_data(raw(text, b"ab"), "model.safetensors")
    assert "SFT002" in rule_ids(result)
    assert "'w'" in result.findings[0].evidence


def test_duplicate_field_in_entry(scan_data: ScanData) -> None:
    text = b'{"w": {"dtype": "U8", "dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}'
    assert rule_ids(scan_data(raw(text, b"a"), "model.safetensors")) == ["SFT002"]


@pytest.mark.parametrize("metadata", [{"format": "pt", "n": 1}, ["format"], "pt", {"nested": {"a": "b"}}])
def test_bad_metadata(scan_data: ScanData, metadata: Any) -> None:
    result = scan_data(raw({"__metadata__": metadata}), "model.safetensors")
    assert rule_ids(result) == ["SFT003"]


@pytest.mark.parametrize(
    ("entry", "evidence"),
    [
        ({"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}, "unknown dtype"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F32", "shape": 4, "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}, "data_offsets"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}, "data_offsets"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0, 2**64]}, "data_offsets"),
        ({"dtype": "F32", "shape": [1]}, "missing 'data_offsets'"),
        ("F32", "not an object"),
    ],
)
def test_bad_tensor_entry(scan_data: ScanData, entry: Any, evidence: str) -> None:
    result = scan_data(raw({"w": entry}, b"\0" * 16), "model.safetensors")
    assert rule_ids(result) == ["SFT004"]
    assert evidence in result.findings[0].evidence


@pytest.mark.parametrize(
    ("entry", "evidence"),
    [
        (tensor("F32", [2, 2], 0, 8), "needs 16"),
        (tensor("F4", [3], 0, 8), "do not fill whole bytes"),
        (tensor("U8", [2**40, 2**40], 0, 8), "overflows 64 bits"),
        (tensor("U8", [2**63, 4, 0], 0, 8), "overflows 64 bits"),
    ],
)
def test_size_mismatch(scan_data: ScanData, entry: dict[str, Any], evidence: str) -> None:
    result = scan_data(raw({"w": entry}, b"\0" * 8), "model.safetensors")
    assert rule_ids(result) == ["SFT005"]
    assert evidence in result.findings[0].evidence


def test_sub_byte_dtypes_that_fill_bytes_are_clean(scan_data: ScanData) -> None:
    header = {"a": tensor("F4", [4], 0, 2), "b": tensor("F6_E2M3", [4], 2, 5), "c": tensor("F8_E8M0", [1], 5, 6)}
    assert scan_data(raw(header, b"\0" * 6), "model.safetensors").findings == []


@pytest.mark.parametrize(
    ("header", "data_len", "evidence"),
    [
        ({"a": tensor("U8", [4], 0, 4), "b": tensor("U8", [4], 2, 6)}, 6, "overlaps"),
        ({"a": tensor("U8", [4], 0, 4), "b": tensor("U8", [4], 8, 12)}, 12, "unreferenced"),
        ({"a": tensor("U8", [4], 4, 8)}, 8, "unreferenced"),
        ({"a": tensor("U8", [8], 0, 8)}, 4, "runs past"),
        ({"a": tensor("U8", [0], 4, 0)}, 4, "ends before it begins"),
    ],
)
def test_bad_layout(scan_data: ScanData, header: dict[str, Any], data_len: int, evidence: str) -> None:
    result = scan_data(raw(header, b"\0" * data_len), "model.safetensors")
    assert "SFT006" in rule_ids(result)
    assert any(evidence in f.evidence for f in result.findings if f.rule_id == "SFT006")


def test_trailing_bytes(scan_data: ScanData) -> None:
    result = scan_data(raw({"a": tensor("U8", [4], 0, 4)}, b"\0" * 4 + b"hidden"), "model.safetensors")
    assert rule_ids(result) == ["SFT007"]
    assert "6 bytes" in result.findings[0].evidence


def test_trailing_pickle_is_scanned(scan_data: ScanData) -> None:
    result = scan_data(raw({"a": tensor("U8", [4], 0, 4)}, b"\0" * 4 + evil_pickle()), "model.safetensors")
    assert "SFT007" in rule_ids(result)
    assert any(o.location.endswith("!<trailing data>") for o in result.objects)
    if any(o.format == "pickle" for o in result.objects):
        assert is_code_execution(result, "<trailing data>")


def test_findings_per_rule_are_capped(scan_data: ScanData) -> None:
    header = {f"t{i}": {"dtype": "NOPE", "shape": [1], "data_offsets": [0, 1]} for i in range(100)}
    result = scan_data(raw(header), "model.safetensors")
    assert len(result.findings) == MAX_FINDINGS_PER_RULE + 1
    assert "80 more SFT004" in result.findings[-1].evidence


# -- agreement with the reference implementation -------------------------------------------------

DTYPES = ["U8", "F16", "F32", "I64", "F4", "BOOL"]


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    """A header and data section: usually well-formed, with random offset and size perturbations."""
    count = draw(st.integers(0, 4))
    entries: dict[str, Any] = {}
    offset = 0
    for i in range(count):
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        bits = {"U8": 8, "BOOL": 8, "F16": 16, "F32": 32, "I64": 64, "F4": 4}[dtype]
        size = int(np.prod(shape, dtype=np.int64)) * bits // 8
        begin = offset + draw(st.sampled_from([0, 0, 0, 1, -1]))
        end = begin + size + draw(st.sampled_from([0, 0, 0, 1, -1]))
        entries[f"t{i}"] = tensor(dtype, shape, max(begin, 0), max(end, 0))
        offset = max(end, offset)
    data_len = offset + draw(st.sampled_from([0, 0, 1, -1]))
    return raw(entries, b"\0" * max(data_len, 0))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(safetensors_files())
def test_verdict_matches_reference_library(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "case.safetensors"
    path.write_bytes(data)
    try:
        with safetensors_numpy.safe_open(str(path), framework="np") as handle:
            handle.keys()
        accepted = True
    except Exception:  # any refusal by the reference parser
        accepted = False
    findings = [f for f in scan_file(str(path)).findings if f.rule_id.startswith("SFT")]
    assert (not findings) == accepted, [f.evidence for f in findings]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ('{"\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', "SFT001"),  # lone surrogate escape
        ('{"w":{"dtype":"F32","shape":[1],"data_offsets":[-0,4]}}', "SFT004"),  # -0 is not an unsigned integer
        ('{"w":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}}', "SFT004"),
    ],
)
def test_json_that_python_accepts_and_serde_rejects(tmp_path: Path, text: str, rule: str) -> None:
    """Python's json reads these; the reference parser refuses them, so a Python-based reader and the
    library would disagree about the file: reported, as the reference library decides."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(raw(text.encode(), b"\0" * 4))
    assert json.loads(text)  # Python's parser accepts it
    from safetensors import SafetensorError

    with pytest.raises(SafetensorError), safetensors_numpy.safe_open(str(path), framework="np") as handle:
        handle.keys()
    assert rule in rule_ids(scan_file(str(path)))


def test_pickle_under_a_safetensors_name_is_a_misleading_name_and_scanned(scan_data: ScanData) -> None:
    """safetensors refuses it, but torch.load or pickle.load of the same file runs it: the content decides."""
    result = scan_data(evil_pickle(), "model.safetensors")
    assert result.format == "pickle"
    assert "SCN001" in rule_ids(result)
    assert is_code_execution(result)


def test_tensor_bytes_that_are_a_zip_archive_are_a_polyglot(tmp_path: Path) -> None:
    """A valid safetensors file whose only tensor is a zip: `zipfile` (Keras' `.keras` check, joblib,
    anything that finds the directory from the end) opens it as an archive."""
    import io
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("data.pkl", evil_pickle())
    data = archive.getvalue()
    header = json.dumps({"w": {"dtype": "U8", "shape": [len(data)], "data_offsets": [0, len(data)]}}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(raw(header, data))
    assert list(safetensors_numpy.load_file(str(path))) == ["w"]
    assert zipfile.ZipFile(path).namelist() == ["data.pkl"]
    result = scan_file(str(path))
    assert "SCN002" in rule_ids(result)
    assert is_code_execution(result)
