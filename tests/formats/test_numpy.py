""".npy arrays: quiet on arrays np.save writes, findings for malformed headers, truncation and
trailing bytes, and the pickle inside object arrays handed to the pickle analyser."""

from __future__ import annotations

import gzip
import io
import os
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelshield import FileResult, Policy, Severity
from modelshield.core.limits import Limits
from modelshield.formats.tensors.numpy_array import HeaderError, parse_descr
from modelshield.registry import HANDLERS
from tests.conftest import ScanData
from tests.helpers import evil_pickle, is_code_execution

needs_pickle_analyser = pytest.mark.skipif(
    not any(h.name == "pickle" for h in HANDLERS), reason="the pickle analyser is not registered yet"
)


class Payload:
    """Runs a shell command when unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo x",))


def saved(array: np.ndarray[Any, Any], version: tuple[int, int] | None = None, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    if version is None:
        np.save(buffer, array, allow_pickle=allow_pickle)
    else:
        np.lib.format.write_array(buffer, array, version=version, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy(header: str, data: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy file with a hand-written header text."""
    text = header.encode("latin1" if version < (3, 0) else "utf8")
    length = struct.pack("<H" if version == (1, 0) else "<I", len(text))
    return b"\x93NUMPY" + bytes(version) + length + text + data


def rule_ids(result: FileResult) -> list[str]:
    return [f.rule_id for f in result.findings]


REAL_ARRAYS = [
    np.arange(12.0).reshape(3, 4),
    np.arange(10, dtype=">i2"),
    np.array([True, False]),
    np.array(["a", "longer"]),
    np.array([b"x", b"yz"]),
    np.zeros((2, 3), dtype="M8[ns]"),
    np.ones(4, dtype=np.complex128),
    np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8", (2, 2)), (("title", "c"), "S3")]),
    np.zeros(2, dtype=np.dtype({"names": ["a"], "formats": ["<i4"], "offsets": [4], "itemsize": 12})),
    np.asfortranarray(np.arange(6).reshape(2, 3)),
    np.array(1.5),
    np.zeros((0, 5)),
    np.zeros(3, dtype="V4"),
]


@pytest.mark.parametrize("array", REAL_ARRAYS, ids=lambda a: str(a.dtype))
def test_real_arrays_are_clean(scan_data: ScanData, array: np.ndarray[Any, Any]) -> None:
    result = scan_data(saved(array), "array.npy")
    assert result.format == "npy"
    assert result.findings == []


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_all_format_versions_are_clean(scan_data: ScanData, version: tuple[int, int]) -> None:
    array = np.zeros(3, dtype=[("\u00e9t\u00e9", "<f4")]) if version == (3, 0) else np.arange(5)
    assert scan_data(saved(array, version), "array.npy").findings == []


def test_python2_long_shape_is_accepted(scan_data: ScanData) -> None:
    data = npy("{'descr': '<i8', 'fortran_order': False, 'shape': (2L,), }\n", b"\0" * 16)
    assert scan_data(data, "old.npy").findings == []


@pytest.mark.parametrize(
    ("data", "evidence"),
    [
        (b"\x93NUMPY\x09\x00\x10\x00", "version 9.0"),
        (b"\x93NUMPY\x01\x00\xff", "header length field"),
        (b"\x93NUMPY\x01\x00\x40\x00{'descr'", "runs past the end"),
        (b"\x93NUMPY\x02\x00\xff\xff\xff\x7f{}", "exceeds"),
        (npy("[1, 2, 3]"), "not a dict"),
        (npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,"), "not a Python literal"),
        (npy("{'descr': '<f8', 'shape': (1,)}"), "header keys"),
        (npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'extra': 1}"), "header keys"),
        (npy("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}"), "negative"),
        (npy("{'descr': '<f8', 'fortran_order': False, 'shape': [1]}"), "not a tuple"),
        (npy("{'descr': '<f8', 'fortran_order': 0, 'shape': (1,)}"), "fortran_order"),
        (npy("{'descr': 'float64', 'fortran_order': False, 'shape': (1,)}"), "not a type string"),
        (npy("{'descr': '<i3', 'fortran_order': False, 'shape': (1,)}"), "impossible item size"),
        (npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}", version=(3, 0))[:-2] + b"\xff\xfe", "utf8"),
        (npy("{'descr': " + "[" * 300 + "]" * 300 + ", 'fortran_order': False, 'shape': ()}"), "literal"),
    ],
)
def test_malformed_header(scan_data: ScanData, data: bytes, evidence: str) -> None:
    result = scan_data(data, "array.npy")
    assert rule_ids(result)[:1] == ["NPY001"]
    assert evidence in result.findings[0].evidence
    assert result.findings[0].level == Severity.MEDIUM


def test_disguised_object_descriptor_still_scans_the_data(scan_data: ScanData) -> None:
    data = npy("{'descr': 'i4,O', 'fortran_order': False, 'shape': (1,)}\n", evil_pickle())
    result = scan_data(data, "array.npy")
    assert rule_ids(result)[0] == "NPY001"
    assert any(o.location.endswith("!<array data>") for o in result.objects)


@pytest.mark.parametrize(
    ("descr", "itemsize", "has_object"),
    [
        ("<f8", 8, False),
        ("|O", 8, True),
        ("<U3", 12, False),
        (("<i4", (2, 3)), 24, False),
        ([("a", "<i2"), ("", "|V6"), ("b", "|O", (2,))], 24, True),
        ([("n", [("x", "<f4"), ("o", "|O")])], 12, True),
    ],
)
def test_descriptor_sizes_match_numpy(descr: Any, itemsize: int, has_object: bool) -> None:
    parsed = parse_descr(descr)
    assert (parsed.itemsize, parsed.has_object) == (itemsize, has_object)
    reference = np.lib.format.descr_to_dtype(descr)
    assert (reference.itemsize, reference.hasobject) == (itemsize, has_object)


@pytest.mark.parametrize("descr", [{"a": 1}, [("a",)], [(1, "<f4")], ("<f4", (-1,)), "<M8[ns]x"])
def test_invalid_descriptors(descr: Any) -> None:
    with pytest.raises(HeaderError):
        parse_descr(descr)


def test_object_array_is_reported(scan_data: ScanData) -> None:
    result = scan_data(saved(np.array(["a", 1, None], dtype=object), allow_pickle=True), "labels.npy")
    object_findings = [f for f in result.findings if f.rule_id == "NPY002"]
    assert len(object_findings) == 1
    assert object_findings[0].level == Severity.LOW
    assert not is_code_execution(result)


def test_structured_dtype_with_object_field_is_reported(scan_data: ScanData) -> None:
    array = np.zeros(2, dtype=[("a", "<i4"), ("b", "O", (2,))])
    result = scan_data(saved(array, allow_pickle=True), "rec.npy")
    assert "NPY002" in rule_ids(result)


def test_object_array_without_a_pickle_fails_closed(scan_data: ScanData) -> None:
    data = npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,)}\n", b"not a pickle at all")
    result = scan_data(data, "array.npy")
    assert rule_ids(result) == ["NPY002", "SCN003"]


@needs_pickle_analyser
def test_malicious_object_array_is_code_execution(scan_data: ScanData) -> None:
    result = scan_data(saved(np.array([Payload()], dtype=object), allow_pickle=True), "evil.npy")
    assert "NPY002" in rule_ids(result)
    assert is_code_execution(result, "<object array>")


def test_truncated_data(scan_data: ScanData) -> None:
    data = saved(np.arange(100, dtype=np.int64))[:-8]
    result = scan_data(data, "array.npy")
    assert rule_ids(result) == ["NPY003"]
    assert "needs 800 bytes" in result.findings[0].evidence


def test_huge_shape_claim_is_cheap(scan_data: ScanData) -> None:
    shape = "(" + ", ".join(["99999999999999999999"] * 2000) + ",)"
    result = scan_data(npy(f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}}}\n"), "array.npy")
    assert rule_ids(result) == ["NPY003"]
    assert "more than 2**64" in result.findings[0].evidence


def test_trailing_bytes(scan_data: ScanData) -> None:
    result = scan_data(saved(np.arange(3)) + b"extra", "array.npy")
    assert rule_ids(result) == ["NPY004"]
    assert result.findings[0].level == Severity.LOW


def test_concatenated_arrays_are_each_scanned(scan_data: ScanData) -> None:
    result = scan_data(saved(np.arange(3)) + saved(np.arange(4.0)), "two.npy")
    assert rule_ids(result) == ["NPY004"]
    assert [o.format for o in result.objects] == ["npy", "npy"]


@needs_pickle_analyser
def test_trailing_pickle_is_code_execution(scan_data: ScanData) -> None:
    result = scan_data(saved(np.arange(3)) + evil_pickle(), "array.npy")
    assert is_code_execution(result, "<trailing data>")


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_headers_never_break_the_scanner(scan_data: ScanData, tail: bytes) -> None:
    result = scan_data(b"\x93NUMPY\x01\x00" + tail, "fuzz.npy")
    assert not any("internal error" in f.evidence for f in result.findings)


def test_compressed_array_larger_than_the_buffer_is_checked_by_streaming(scan_data: ScanData) -> None:
    """A large compressible array in a compressed stream (a published boolean land mask inflates 2.4 MB ->
    933 MB in its npz) needs its header and its length, never random access: no max_buffer_bytes bound."""
    policy = Policy(limits=Limits(max_buffer_bytes=1024 * 1024))
    array = saved(np.zeros(4 * 1024 * 1024, dtype=bool))
    assert scan_data(gzip.compress(array), "mask.npy.gz", policy).findings == []
    result = scan_data(gzip.compress(array[:-1]), "cut.npy.gz", policy)
    assert [f.rule_id for f in result.findings] == ["NPY003"], [str(f) for f in result.findings]


# -- .npz archives, as numpy.lib.npyio.NpzFile reads them (NumPy 2.4) -------------------------------


def npz(members: dict[str, bytes], prefix: bytes = b"") -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return prefix + buffer.getvalue()


@needs_pickle_analyser
def test_npz_object_member_written_by_numpy_is_code_execution(scan_data: ScanData) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, weights=np.ones(4), extra=np.array([Payload()], dtype=object))
    result = scan_data(buffer.getvalue(), "arrays.npz")
    assert is_code_execution(result)
    assert [f.location.members for f in result.findings if f.rule_id == "NPY002"] == [("extra.npy",)]


@needs_pickle_analyser
def test_npz_member_under_any_name_is_read_by_content(scan_data: ScanData) -> None:
    """NpzFile maps every member name (with or without `.npy`) to read_array when it starts with the magic."""
    data = npz({"weights.npy": saved(np.ones(2)), "payload": saved(np.array([Payload()], dtype=object), None, True)})
    loaded = np.load(io.BytesIO(data))
    assert "payload" in loaded.files  # the loader reaches it by its plain name
    assert is_code_execution(scan_data(data, "arrays.npz"))


@needs_pickle_analyser
def test_npz_starting_with_an_empty_archive_record_is_walked(scan_data: ScanData) -> None:
    """np.load takes `PK\\x05\\x06` at offset 0 as a zip too; zipfile then finds the real directory at the end."""
    member = saved(np.array([Payload()], dtype=object), None, True)
    data = npz({"w.npy": member}, prefix=b"PK\x05\x06" + bytes(18))
    assert np.load(io.BytesIO(data)).files == ["w"]
    result = scan_data(data, "arrays.npz")
    assert is_code_execution(result)
    assert "ARC009" in rule_ids(result)


def test_object_arrays_are_never_memory_mapped(tmp_path: Any, scan_data: ScanData) -> None:
    """mmap_mode refuses object dtypes (format.open_memmap), so the pickle path needs allow_pickle."""
    data = saved(np.array([1, "a"], dtype=object), None, True)
    (tmp_path / "a.npy").write_bytes(data)
    with pytest.raises(ValueError, match="Python objects"):
        np.load(tmp_path / "a.npy", mmap_mode="r", allow_pickle=True)
    assert "NPY002" in rule_ids(scan_data(data, "a.npy"))


@needs_pickle_analyser
def test_array_bytes_that_are_a_zip_archive_are_a_polyglot(scan_data: ScanData) -> None:
    """np.load reads the array (magic first); `zipfile`, which looks from the end, reads an archive."""
    import zipfile

    data = npz({"data.pkl": evil_pickle()})
    polyglot = saved(np.frombuffer(data, dtype=np.uint8))
    assert zipfile.ZipFile(io.BytesIO(polyglot)).namelist() == ["data.pkl"]
    result = scan_data(polyglot, "array.npy")
    assert "SCN002" in rule_ids(result) and is_code_execution(result)
