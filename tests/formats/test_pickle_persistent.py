"""Persistent ids: the shapes torch's `persistent_load` hooks accept are expected, the rest is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelshield import scan_file
from modelshield.core.rules import Severity
from tests.conftest import ScanData
from tests.formats.pickle_build import MARK, STOP, TUPLE, binint1, glob, proto, rules, text

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "real"


def _pid(*fields: bytes) -> bytes:
    """A pickle whose only value is BINPERSID of the tuple of `fields`."""
    return proto(2) + MARK + b"".join(fields) + TUPLE + b"Q" + STOP


def test_torch_package_archive_is_clean() -> None:
    # torch.package.PackageExporter writes ('storage', FloatStorage, <int key>, 'cpu', numel).
    result = scan_file(str(FIXTURES / "torch_package.pt"))
    assert result.format == "zip+torch-package"
    assert [f.rule_id for f in result.findings] == []


@pytest.mark.parametrize(
    "fields",
    [
        (text("storage"), glob("torch", "FloatStorage"), binint1(3), text("cpu"), binint1(12)),
        (b"C\x07storage", glob("torch", "UntypedStorage"), text("k0"), b"C\x03cpu", binint1(8)),
        (text("storage"), glob("torch", "HalfStorage"), text("0"), text("cuda:0"), binint1(4), b"N"),
    ],
    ids=["torch.package int key", "bytes typename and location", "legacy with view metadata"],
)
def test_storage_references_torch_accepts(fields: tuple[bytes, ...], scan_data: ScanData) -> None:
    assert not rules(scan_data(_pid(*fields), "model.pkl"))


def test_bare_storage_numbers_of_the_tar_format(scan_data: ScanData) -> None:
    """The legacy tar format's hook looks up `int(saved_id)`: PERSID '12' and BINPERSID 12."""
    assert not rules(scan_data(proto(2) + b"P12\n" + STOP, "model.pkl"))
    assert not rules(scan_data(proto(2) + binint1(12) + b"Q" + STOP, "model.pkl"))


@pytest.mark.parametrize(
    "data",
    [
        _pid(text("storage"), glob("os", "system"), text("0"), text("cpu"), binint1(4)),
        _pid(text("storage"), glob("torch", "FloatStorage"), b"G" + bytes(8), text("cpu"), binint1(4)),
        _pid(text("storage"), glob("torch", "FloatStorage"), text("0")),
        _pid(text("tensor"), text("0")),
        proto(2) + text("/etc/passwd") + b"Q" + STOP,
        proto(2) + b"P../../etc/passwd\n" + STOP,
    ],
    ids=["dangerous storage type", "float key", "too short", "unknown typename", "path", "text path"],
)
def test_ids_the_loaders_reject_stay_reported(data: bytes, scan_data: ScanData) -> None:
    assert "PKL012" in rules(scan_data(data, "model.pkl"))


def test_reduce_package_calls_its_function(scan_data: ScanData) -> None:
    """('reduce_package', id, func, args) makes PackageImporter call func(importer, *args)."""
    evil = _pid(text("reduce_package"), binint1(1), glob("os", "system"), text("id") + b"\x85")
    result = scan_data(evil, "model.pkl")
    assert "PKL001" in rules(result, Severity.CRITICAL)
    assert "PKL012" not in rules(result)
