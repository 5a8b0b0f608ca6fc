"""joblib's inline arrays under every name joblib has had: scikit-learn vendored it as
`sklearn.externals.joblib` (until 0.23), whose `NumpyArrayWrapper` is followed by the array's raw bytes
exactly like joblib's own. No old scikit-learn installs on this Python, so the dumps are written by the
real joblib with its wrapper class registered under the vendored module path, as the vendored copy
named it; the bytes are otherwise joblib's own layout."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pytest
from joblib import numpy_pickle

from modelshield.core.rules import Severity
from tests.conftest import ScanData
from tests.formats.pickle_build import evidence, rules
from tests.helpers import is_code_execution

VENDORED = "sklearn.externals.joblib.numpy_pickle"
Dump = Callable[[object, int], bytes]


class Evil:
    """Pickles as a call of os.system; only ever dumped here, never loaded."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


@pytest.fixture
def vendored_dump(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Dump:
    """`joblib.dump` as scikit-learn's vendored copy wrote it: the wrapper's module is the vendored one."""
    module = types.ModuleType(VENDORED)
    module.NumpyArrayWrapper = numpy_pickle.NumpyArrayWrapper  # type: ignore[attr-defined]
    for name in ("sklearn", "sklearn.externals", "sklearn.externals.joblib"):
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name) or types.ModuleType(name))
    monkeypatch.setitem(sys.modules, VENDORED, module)
    monkeypatch.setattr(numpy_pickle.NumpyArrayWrapper, "__module__", VENDORED)

    def dump(value: object, protocol: int) -> bytes:
        path = tmp_path / f"model{protocol}.pkl"
        joblib.dump(value, path, protocol=protocol)
        data = path.read_bytes()
        assert VENDORED.encode() in data
        return data

    return dump


ARRAYS = {
    "coef": np.arange(4000.0).reshape(100, 40),  # bytes that would parse as opcodes if not skipped
    "classes": np.array([0, 1, 2], dtype=np.int64),
    "names": np.array(["a", "bb"]),
}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_vendored_wrapper_arrays_are_skipped(protocol: int, vendored_dump: Dump, scan_data: ScanData) -> None:
    result = scan_data(vendored_dump(ARRAYS, protocol), "model.pkl")
    assert "PKL014" not in rules(result)
    assert "PKL015" not in rules(result)
    assert "PKL013" not in rules(result)


@pytest.mark.parametrize("protocol", [2, 4])
def test_payload_after_vendored_arrays_is_found(protocol: int, vendored_dump: Dump, scan_data: ScanData) -> None:
    result = scan_data(vendored_dump([ARRAYS["coef"], Evil()], protocol), "model.pkl")
    assert is_code_execution(result)
    assert any("os.system('echo pwned')" in text for text in evidence(result, "PKL001"))
    assert "PKL014" not in rules(result, Severity.MEDIUM)


def test_array_bytes_that_pickle_load_would_run_are_reported(scan_data: ScanData, tmp_path: Path) -> None:
    """Without the alignment field the array bytes follow BUILD directly: `pickle.load` runs them."""
    hidden = b"cos\nsystem\n(S'echo pwned'\ntR."
    path = tmp_path / "model.pkl"
    joblib.dump({"w": np.frombuffer(hidden, dtype=np.uint8)}, path, protocol=2)
    data = path.read_bytes()
    field = b"numpy_array_alignment_bytes"
    assert field in data
    # The state dict loses the alignment entry (as joblib < 0.12 wrote it) and the padding goes with it.
    key = data.index(field) - 5  # BINUNICODE opcode and length before the key
    value_end = data.index(b"K\x10", key) + 2  # BININT1 16
    build_end = data.index(b"ub", value_end) + 2  # SETITEMS, BUILD; the padding length and padding follow
    stripped = data[:key] + data[value_end:build_end] + data[data.index(hidden) :]
    result = scan_data(stripped, "model.pkl")
    assert any("as pickle.load reads them" in text for text in evidence(result, "PKL001"))
    assert "PKL014" not in rules(result)
