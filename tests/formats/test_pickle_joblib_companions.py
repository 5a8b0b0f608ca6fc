"""joblib <= 0.9 `NDArrayWrapper`: `joblib.load` replaces it by `numpy.load(os.path.join(dirname, filename),
allow_pickle=True)` (`joblib/numpy_pickle_compat.py`), so the file it names is a dependency of the pickle:
followed and scanned with it, and a name that leaves the folder is a read of a file the model does not hold.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest

from modelshield import scan, scan_file
from modelshield.core.rules import Severity
from tests.conftest import ScanData
from tests.formats.pickle_build import BUILD, EMPTY_DICT, EMPTY_TUPLE, MARK, NEWOBJ, STOP, glob, proto, rules, text
from tests.helpers import evil_pickle

#: Old-format files joblib itself ships for its compatibility tests (written by joblib 0.9.2).
JOBLIB_DATA = Path(joblib.__file__).parent / "test" / "data"
OLD_FORMAT = sorted(JOBLIB_DATA.glob("joblib_0.9.2_pickle_py*.pkl"))
SETITEMS, NEWTRUE = b"u", b"\x88"


def wrapper(filename: bytes, home: str = "joblib.numpy_pickle") -> bytes:
    """One array as joblib 0.9 pickled it: NDArrayWrapper.__new__, then BUILD with its three fields."""
    state = text("subclass") + glob("numpy", "ndarray") + text("allow_mmap") + NEWTRUE + text("filename") + filename
    return glob(home, "NDArrayWrapper") + EMPTY_TUPLE + NEWOBJ + EMPTY_DICT + MARK + state + SETITEMS + BUILD


def test_joblib_ships_its_old_format_files() -> None:
    assert len(OLD_FORMAT) >= 4  # the real files the next test reads


@pytest.mark.parametrize("path", OLD_FORMAT, ids=lambda p: p.name)
def test_real_old_format_files_name_their_arrays_as_dependencies(path: Path) -> None:
    result = scan_file(str(path))
    assert not rules(result, Severity.LOW)
    named = sorted(f.details["dependency"]["ref"] for f in result.findings if f.rule_id == "DEP002")
    assert named == sorted(p.name for p in path.parent.glob(path.name + "_*.npy"))


def test_the_companion_files_are_scanned_with_the_pickle(tmp_path: Path) -> None:
    for source in [OLD_FORMAT[0], *OLD_FORMAT[0].parent.glob(OLD_FORMAT[0].name + "_*.npy")]:
        shutil.copy(source, tmp_path / source.name)
    report = scan(tmp_path / OLD_FORMAT[0].name)
    assert report.exit_code == 0
    assert report.dependencies is not None
    followed = [n for n in report.dependencies.nodes if n.kind == "path"]
    assert len(followed) == 4 and all(n.resolution == "local" for n in followed)


def test_a_companion_with_a_payload_is_a_finding_of_the_pickle(tmp_path: Path) -> None:
    """An object array's data section is a pickle that numpy.load(allow_pickle=True) runs."""
    (tmp_path / "model.pkl").write_bytes(proto(2) + wrapper(text("model.pkl_01.npy")) + STOP)
    header = np.lib.format.header_data_from_array_1_0(np.empty(1, dtype=object))
    with (tmp_path / "model.pkl_01.npy").open("wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        out.write(evil_pickle(protocol=2))
    report = scan(tmp_path / "model.pkl")
    chains = [f for f in report.findings if f.rule_id == "DEP004"]
    assert chains and chains[0].level is Severity.CRITICAL
    assert chains[0].location.path.endswith("model.pkl") and "model.pkl_01.npy" in chains[0].evidence


@pytest.mark.parametrize(
    "name", ["../outside.npy", "/etc/model.npy", "sub/../../up.npy", "C:\\\\models\\\\a.npy", "https://x.test/a.npy"]
)
def test_a_companion_name_that_leaves_the_folder_is_a_file_read(scan_data: ScanData, name: str) -> None:
    result = scan_data(proto(2) + wrapper(text(name)) + STOP, "model.pkl")
    assert "PKL005" in rules(result, Severity.HIGH)
    assert not any(f.rule_id == "DEP002" for f in result.findings)


def test_a_computed_companion_name_is_a_file_read(scan_data: ScanData) -> None:
    computed = glob("os", "getcwd") + EMPTY_TUPLE + b"R"
    result = scan_data(proto(2) + wrapper(computed) + STOP, "model.pkl")
    assert "PKL005" in rules(result, Severity.HIGH)


@pytest.mark.parametrize("home", ["joblib.numpy_pickle_compat", "sklearn.externals.joblib.numpy_pickle"])
def test_every_home_of_the_wrapper_is_followed(scan_data: ScanData, home: str) -> None:
    result = scan_data(proto(2) + wrapper(text("a.npy"), home) + STOP, "model.pkl")
    assert not rules(result, Severity.LOW)
    assert [f.details["dependency"]["ref"] for f in result.findings if f.rule_id == "DEP002"] == ["a.npy"]


def test_protocol_0_reconstructor_spelling_is_followed(scan_data: ScanData) -> None:
    """joblib 0.9 under pickle protocol 0/1: `copyreg._reconstructor(NDArrayWrapper, object, None)`."""
    make = glob("copy_reg", "_reconstructor") + MARK + glob("joblib.numpy_pickle", "NDArrayWrapper")
    make += glob("__builtin__", "object") + b"N" + b"tR"
    state = EMPTY_DICT + MARK + text("filename") + text("a.npy") + SETITEMS + BUILD
    result = scan_data(proto(2) + make + state + STOP, "model.pkl")
    assert not rules(result, Severity.LOW), result.findings
    assert any(f.rule_id == "DEP002" for f in result.findings)
