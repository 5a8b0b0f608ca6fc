"""File layouts around pickles: legacy torch, joblib inline arrays, real ML pickles, detection, bounds."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import joblib
import numpy as np
import pytest

from modelshield.core.rules import Severity
from modelshield.core.source import BytesSource
from modelshield.formats.pickle import looks_like_pickle
from tests.conftest import ScanData
from tests.formats.pickle_build import (
    MARK,
    MEMOIZE,
    STOP,
    binget,
    legacy_torch,
    proto,
    rules,
    tensor_pickle,
)
from tests.helpers import evil_pickle, is_code_execution


class Evil:
    """Pickles as a call of os.system; only ever dumped here, never loaded."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_legacy_torch_storage_data_is_expected(scan_data: ScanData) -> None:
    data = legacy_torch(tensor_pickle("0"), {"0": np.arange(4, dtype="<f4").tobytes()})
    result = scan_data(data, "model.pt")
    assert not rules(result), result.findings


def test_legacy_torch_payload_in_main_pickle(scan_data: ScanData) -> None:
    payload = evil_pickle()[2:-1] + b"0"  # os.system(...) whose result is popped
    data = legacy_torch(tensor_pickle("0", payload), {"0": b"\x80\x02" * 8})
    assert is_code_execution(scan_data(data, "model.pt"))


def test_legacy_torch_trailing_bytes_after_storages(scan_data: ScanData) -> None:
    data = legacy_torch(tensor_pickle("0"), {"0": b"\0" * 16}, trailing=b"\x00extra")
    assert rules(scan_data(data, "model.pt")) == {"PKL015"}


def test_joblib_files_are_clean(scan_data: ScanData, tmp_path: Path) -> None:
    value = {
        "floats": np.arange(1000.0).reshape(10, 100),
        "fortran": np.ones((3, 5), order="F"),
        "text": np.array(["a", "bc"]),
        "records": np.zeros(3, dtype=[("a", "<f4"), ("b", "i8")]),
        "objects": np.array(["x", None, 3], dtype=object),
        "empty": np.zeros((0, 3)),
    }
    for protocol in (2, 3, 4, 5):
        path = tmp_path / f"model{protocol}.joblib"
        joblib.dump(value, path, protocol=protocol)
        assert not rules(scan_data(path.read_bytes(), "model.joblib")), protocol


def test_joblib_object_array_payload_and_globals_after_arrays(scan_data: ScanData, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump([np.arange(64.0), np.array([Evil()], dtype=object), np.arange(8)], path)
    result = scan_data(path.read_bytes(), "model.joblib")
    assert is_code_execution(result)
    assert any("[joblib object array @" in f.evidence for f in result.findings)
    path2 = tmp_path / "after.joblib"
    joblib.dump([np.arange(1000.0), Evil()], path2)  # payload after the inline array bytes
    result = scan_data(path2.read_bytes(), "model.joblib")
    assert is_code_execution(result)
    assert "PKL014" not in rules(result)


def test_ml_pickles_are_quiet(scan_data: ScanData) -> None:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x, y = make_classification(n_samples=40, n_features=4, random_state=0)
    models = [
        RandomForestClassifier(n_estimators=2, random_state=np.random.RandomState(0)).fit(x, y),
        HistGradientBoostingClassifier(max_iter=2).fit(x, y),
        make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
        OneHotEncoder().fit([["a"], ["b"]]),
        [np.arange(6.0).reshape(2, 3), np.float32(1), np.dtype("U5"), np.random.default_rng(0)],
    ]
    for model in models:
        for protocol in range(6):
            result = scan_data(pickle.dumps(model, protocol=protocol), "model.pkl")
            assert not rules(result, Severity.MEDIUM), (type(model), protocol, result.findings)


def test_stacked_pickles_are_all_scanned(scan_data: ScanData) -> None:
    data = pickle.dumps([1], protocol=2) + pickle.dumps("x", protocol=0) + evil_pickle(protocol=4)
    result = scan_data(data)
    assert is_code_execution(result)
    assert not rules(result) - {"PKL001"}


@pytest.mark.parametrize(
    "data",
    [
        b"hello world\nthis is text\n",
        b'{"a": 1, "b": [1, 2]}',
        b"import os\nprint(os.getcwd())\n",
        b"a,b,c\n1,2,3\n",
        b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
        b"PK\x03\x04" + b"\0" * 64,
        b"\x1f\x8b\x08\x00" + b"\0" * 64,
        b"(c) 2024 The Authors\n",
        b"Notes:\n- one\n",
        b"",
    ],
)
def test_detect_refuses_non_pickles(data: bytes) -> None:
    assert not looks_like_pickle(BytesSource(data).head())


@pytest.mark.parametrize("protocol", range(6))
def test_detect_accepts_pickles(protocol: int) -> None:
    data = pickle.dumps({"weights": np.arange(3.0), "name": "x" * 5000}, protocol=protocol)
    assert looks_like_pickle(BytesSource(data).head())
    assert looks_like_pickle(b"N.")


def test_billion_laughs_is_bounded(scan_data: ScanData) -> None:
    data = proto(4) + b"]" + MEMOIZE
    for level in range(10):
        data += MARK + binget(level) * 10 + b"l" + MEMOIZE
    result = scan_data(data + STOP)
    assert "SCN005" in rules(result)


def test_large_payload_is_skipped(scan_data: ScanData) -> None:
    big = proto(4) + b"\x8e" + struct.pack("<Q", 3_000_000) + b"\0" * 3_000_000 + b"0" + evil_pickle()[2:]
    assert is_code_execution(scan_data(big))
    assert "PKL014" in rules(scan_data(big[:1_000_000]))
