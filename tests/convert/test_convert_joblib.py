"""`modelshield convert` on joblib files of NumPy arrays, written by joblib itself in every compression:
the arrays' bytes are found where joblib writes them (after each wrapper), never by loading the pickle."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelshield import scan_file
from modelshield.convert import ConversionRefused, convert
from tests.convert.test_convert import tensors_of
from tests.convert.test_convert_numpy import expected

ARRAYS = {
    "w": np.random.default_rng(0).random((30, 40), dtype=np.float32),
    "fortran": np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
    "mask": np.array([True, False, True]),
    "half": np.arange(5, dtype=np.float16),
}


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3), ("lz4", 3)], ids=str)
def test_arrays_in_every_compression(tmp_path: Path, compress: object) -> None:
    source = tmp_path / "arrays.joblib"
    joblib.dump(ARRAYS, source, compress=compress)
    convert(str(source), str(tmp_path / "out.safetensors"))
    written, _ = tensors_of(tmp_path / "out.safetensors")
    assert written == {name: expected(array) for name, array in ARRAYS.items()}


def test_one_array(tmp_path: Path) -> None:
    joblib.dump(ARRAYS["w"], tmp_path / "w.joblib")
    convert(str(tmp_path / "w.joblib"), str(tmp_path / "out.safetensors"))
    written, _ = tensors_of(tmp_path / "out.safetensors")
    assert written == {"array": expected(ARRAYS["w"])}


@pytest.mark.parametrize(
    "obj",
    [LogisticRegression().fit([[0.0], [1.0]], [0, 1]), {"labels": np.array(["a", "b"], dtype=object)}],
    ids=["estimator", "object-array"],
)
def test_anything_but_arrays_is_refused(tmp_path: Path, obj: object) -> None:
    joblib.dump(obj, tmp_path / "m.joblib")
    with pytest.raises(ConversionRefused):
        convert(str(tmp_path / "m.joblib"), str(tmp_path / "out.safetensors"))
    assert not (tmp_path / "out.safetensors").exists()


def test_published_joblib_weights_convert(tmp_path: Path) -> None:
    """mtcnn ships its three networks as LZ4-compressed joblib dumps of NumPy weights."""
    files = [f for f in metadata.files("mtcnn") or [] if str(f).endswith(".lz4")]
    assert len(files) == 3
    for index, file in enumerate(files):
        target = tmp_path / f"{index}.safetensors"
        result = convert(str(file.locate()), str(target))
        assert result.tensors and scan_file(str(target)).findings == []
        written, _ = tensors_of(target)
        digests = {entry["sha256"] for entry in written.values()}
        assert hashlib.sha256(b"").hexdigest() not in digests or len(digests) > 1
