"""HDF5 objects beyond the Keras configs: PyTables pickled attributes and object rows (written by the real
pandas and PyTables, scripts/make_hdf5_fixtures.py) reach the pickle analyser named by their HDF5 object;
external links, external storage and virtual datasets are HDF001; traversing layer and weight names are
HDF002; the walk is bounded and never reads dataset contents of a Keras file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from modelshield import FileResult, scan_file
from modelshield.core.rules import Severity
from modelshield.formats.keras import hdf5

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def found(result: FileResult) -> list[tuple[str, Severity | None, str]]:
    return [(f.rule_id, f.severity, f.location.display.split("!", 1)[-1]) for f in result.findings]


@pytest.mark.parametrize("name", ["pandas_frame.h5", "pandas_table.h5", "pandas_object_column.h5"])
def test_ordinary_pandas_stores_are_clean(name: str) -> None:
    result = scan_file(str(FIXTURES / "hdf5" / name))
    assert result.format == "hdf5"
    assert result.findings == []


@pytest.mark.parametrize(
    ("name", "member"),
    [
        ("pandas_attribute_os_system.h5", "/df@attr:note"),
        ("pandas_object_column_os_system.h5", "/df/block0_values[0]"),
        ("tables_vlarray_os_system.h5", "/objects[0]"),
    ],
)
def test_pytables_pickles_go_through_the_pickle_analyser(name: str, member: str) -> None:
    result = scan_file(str(FIXTURES / "hdf5" / name))
    assert found(result) == [("PKL001", Severity.CRITICAL, member)]
    assert "os.system" in result.findings[0].evidence


Build = Callable[[h5py.File], None]


@pytest.mark.parametrize(
    ("value", "rule_ids"),
    [
        (b"(cos\nsystem\nS'id'\no.", ["PKL001"]),
        (b"cos\nsystem\n(S'id'\ntR.", ["PKL001"]),
        (b"cos\nsystem\n(S'id'\ntRjunk.", ["PKL001"]),
        # PyTables keeps the raw bytes when unpickling fails: text that is no pickle is no finding (a
        # published sunpy file's descriptive attributes end in '.').
        (b"not a pickle.", []),
    ],
)
def test_every_value_pytables_unpickles_is_analysed_as_a_pickle(
    tmp_path: Path, value: bytes, rule_ids: list[str]
) -> None:
    """PyTables unpickles a byte-string scalar ending in '.', whether or not it looks like a pickle, and
    runs every call before the point where the stream breaks."""

    def build(handle: h5py.File) -> None:
        handle["model_weights"].attrs["note"] = np.bytes_(value)

    assert [f.rule_id for f in scan_file(str(write(tmp_path / "m.h5", build))).findings] == rule_ids


@pytest.mark.parametrize("marker", [{"PSEUDOATOM": "object"}, {"CLASS": b"VLARRAY", "FLAVOR": b"Object"}])
def test_object_rows_are_found_by_what_pytables_reads_not_by_one_spelling(
    tmp_path: Path, marker: dict[str, object]
) -> None:
    """PSEUDOATOM as variable-length text, or the 1.x FLAVOR, still makes PyTables unpickle the rows."""

    def build(handle: h5py.File) -> None:
        rows = handle.create_dataset("objects", shape=(1,), dtype=h5py.vlen_dtype(np.uint8))
        rows[0] = np.frombuffer(b"cos\nsystem\n(S'id'\ntR.", dtype=np.uint8)
        for name, value in marker.items():
            rows.attrs[name] = value

    result = scan_file(str(write(tmp_path / "m.h5", build)))
    assert found(result) == [("PKL001", Severity.CRITICAL, "/objects[0]")]


def write(path: Path, build: Build) -> Path:
    with h5py.File(path, "w") as handle:
        handle["model_weights/dense/kernel"] = np.zeros((2, 2))
        build(handle)
    return path


def external_link(target: str) -> Build:
    def build(handle: h5py.File) -> None:
        handle["model_weights/other"] = h5py.ExternalLink(target, "/")

    return build


def external_storage(target: str) -> Build:
    def build(handle: h5py.File) -> None:
        handle.create_dataset("model_weights/dense/bias", shape=(4,), dtype="f8", external=[(target, 0, 32)])

    return build


def virtual(target: str) -> Build:
    def build(handle: h5py.File) -> None:
        layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
        layout[:] = h5py.VirtualSource(target, "data", shape=(4,))
        handle.create_virtual_dataset("model_weights/dense/bias", layout)

    return build


@pytest.mark.parametrize(
    ("build", "kind", "member"),
    [
        (external_link, "external link", "/model_weights/other"),
        (external_storage, "external storage", "/model_weights/dense/bias"),
        (virtual, "virtual dataset source", "/model_weights/dense/bias"),
    ],
)
@pytest.mark.parametrize(
    ("target", "severity"),
    [("/etc/passwd", Severity.HIGH), ("../../secret.h5", Severity.HIGH), ("sibling.h5", Severity.MEDIUM)],
)
def test_objects_that_read_other_files_are_reported(
    tmp_path: Path, build: Callable[[str], Build], kind: str, member: str, *, target: str, severity: Severity
) -> None:
    result = scan_file(str(write(tmp_path / "m.h5", build(target))))
    assert found(result) == [("HDF001", severity, member)]
    assert result.findings[0].evidence == f"{kind} at {member} reads {target!r}"


def test_soft_links_inside_the_file_are_not_findings(tmp_path: Path) -> None:
    def build(handle: h5py.File) -> None:
        handle["model_weights/alias"] = h5py.SoftLink("/model_weights/dense")
        handle["model_weights/loop"] = handle["model_weights"]  # a hard-link cycle is visited once

    assert scan_file(str(write(tmp_path / "m.h5", build))).findings == []


@pytest.mark.parametrize("name", [b"../../dense", b"/model_weights/dense", b"den\0se", b"./dense", b"."])
@pytest.mark.parametrize("attribute", ["layer_names", "layer_names1"])  # Keras chunks long lists
def test_layer_and_weight_names_that_leave_their_group_are_reported(
    tmp_path: Path, name: bytes, attribute: str
) -> None:
    def build(handle: h5py.File) -> None:
        handle["model_weights"].attrs[attribute] = np.array([b"dense", name], dtype="S20")
        handle["model_weights/dense"].attrs["weight_names"] = np.array([b"dense/kernel:0"], dtype="S20")

    result = scan_file(str(write(tmp_path / "w.h5", build)))
    assert found(result) == [("HDF002", Severity.MEDIUM, f"/model_weights@attr:{attribute}")]


def test_the_walk_is_bounded_in_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hdf5, "MAX_OBJECTS", 3)
    result = scan_file(str(FIXTURES / "keras" / "real" / "k2_cnn.h5"))
    assert [f.rule_id for f in result.findings] == ["SCN005"]


def test_the_walk_is_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hdf5, "MAX_READ_BYTES", 100)
    result = scan_file(str(FIXTURES / "hdf5" / "pandas_object_column.h5"))
    assert [f.rule_id for f in result.findings] == ["SCN005"]


def test_a_keras_file_with_many_weights_has_no_dataset_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attributes and object headers only: a dataset read in the child would fail the scan closed."""
    path = tmp_path / "many.h5"
    with h5py.File(path, "w") as handle:
        group = handle.create_group("model_weights")
        group.attrs["layer_names"] = np.array([f"dense_{i}".encode() for i in range(300)])
        for i in range(300):
            layer = group.create_group(f"dense_{i}")
            layer.attrs["weight_names"] = np.array([f"dense_{i}/kernel:0".encode()])
            layer[f"dense_{i}/kernel:0"] = np.zeros((8, 8))

    def refuse(*args: object) -> None:
        raise AssertionError("dataset contents read")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", refuse)
    monkeypatch.setattr(h5py.Dataset, "read_direct", refuse)
    assert scan_file(str(path)).findings == []


def test_referenced_files_are_dependencies(tmp_path: Path) -> None:
    """A file the C library would open is part of the model: `deps` and `scan_path` resolve and scan it."""
    result = scan_file(str(write(tmp_path / "m.h5", external_link("side.h5"))))
    assert result.findings[0].details["dependency"]["ref"] == "side.h5"
    assert result.findings[0].details["dependency"]["role"] == "HDF5 external link"


PAYLOAD = b"cos\nsystem\n(S'id'\ntR."


@pytest.mark.parametrize(
    ("store", "unpickled"),
    [
        # What PyTables 3.11.1 does with each encoding (scripts/prove_pytables_attributes.py): a NumPy
        # bytes scalar is unpickled, and it makes one of scalar ASCII strings of either length.
        (lambda attrs: attrs.__setitem__("a", np.bytes_(PAYLOAD)), True),
        (lambda attrs: attrs.create("a", PAYLOAD, dtype=h5py.string_dtype("ascii")), True),
        (lambda attrs: attrs.create("a", PAYLOAD, dtype="S40"), True),  # NUL-padded: NumPy strips the padding
        # UTF-8 strings come back as str_, arrays as arrays: never unpickled.
        (lambda attrs: attrs.create("a", PAYLOAD.decode(), dtype=h5py.string_dtype("utf-8")), False),
        (lambda attrs: attrs.create("a", np.bytes_(PAYLOAD), dtype=h5py.string_dtype("utf-8", len(PAYLOAD))), False),
        (lambda attrs: attrs.__setitem__("a", np.array([PAYLOAD])), False),
        (lambda attrs: attrs.create("a", [PAYLOAD, PAYLOAD], dtype=h5py.string_dtype("ascii")), False),
    ],
)
def test_string_attributes_are_pickles_exactly_when_pytables_unpickles_them(
    tmp_path: Path, store: Callable[[h5py.AttributeManager], None], unpickled: bool
) -> None:
    def build(handle: h5py.File) -> None:
        store(handle["model_weights"].attrs)

    result = scan_file(str(write(tmp_path / "m.h5", build)))
    assert found(result) == ([("PKL001", Severity.CRITICAL, "/model_weights@attr:a")] if unpickled else [])


def test_a_scalar_name_attribute_is_iterated_like_keras_does(tmp_path: Path) -> None:
    """`load_attributes_from_hdf5_group` iterates the value: a scalar string gives one name per
    character, and `/` then names the file's root group."""

    def build(handle: h5py.File) -> None:
        handle["model_weights"].attrs.create("layer_names", "d/x", dtype=h5py.string_dtype("utf-8"))

    result = scan_file(str(write(tmp_path / "w.h5", build)))
    assert found(result) == [("HDF002", Severity.MEDIUM, "/model_weights@attr:layer_names")]
    assert "'/'" in result.findings[0].evidence
