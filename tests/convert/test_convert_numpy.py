"""`modelshield convert` on NumPy files written by NumPy itself: `.npy` in every layout and `.npz` stored or
compressed become safetensors whose bytes are the arrays' little-endian C-order bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from modelshield.convert import ConversionRefused, convert
from modelshield.convert.rebuild import DTYPES
from tests.convert.test_convert import tensors_of

ARRAYS = {
    "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
    "fortran_i16": np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4)),
    "big_f64": np.arange(6, dtype=">f8").reshape(2, 3),
    "mask": np.array([[True, False], [False, True]]),
    "c64": (np.arange(4) + 1j).astype(np.complex64),
    "scalar": np.array(3.5, dtype=np.float16),
    "empty": np.zeros((0, 3), dtype=np.uint8),
}


def expected(array: np.ndarray) -> dict[str, object]:
    native = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<")))
    return {
        "dtype": DTYPES[native.dtype.name].name,
        "shape": list(array.shape),
        "sha256": hashlib.sha256(native.tobytes()).hexdigest(),
    }


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_npy(tmp_path: Path, name: str) -> None:
    source = tmp_path / f"{name}.npy"
    np.save(source, ARRAYS[name])
    convert(str(source), str(tmp_path / "out.safetensors"))
    written, metadata = tensors_of(tmp_path / "out.safetensors")
    assert written == {"array": expected(ARRAYS[name])} and metadata == {"format": "pt"}


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz(tmp_path: Path, save: object) -> None:
    source = tmp_path / "arrays.npz"
    save(source, **ARRAYS)  # type: ignore[operator]
    convert(str(source), str(tmp_path / "out.safetensors"))
    written, _ = tensors_of(tmp_path / "out.safetensors")
    assert written == {name: expected(array) for name, array in ARRAYS.items()}


@pytest.mark.parametrize(
    "array",
    [np.array(["a", "b"]), np.zeros(2, dtype=[("x", "<f4"), ("y", "<i4")]), np.array(["x", 1], dtype=object)],
    ids=["strings", "structured", "objects"],
)
def test_non_numeric_arrays_are_refused(tmp_path: Path, array: np.ndarray) -> None:
    source = tmp_path / "a.npy"
    np.save(source, array, allow_pickle=True)
    with pytest.raises(ConversionRefused):
        convert(str(source), str(tmp_path / "out.safetensors"))
    assert not (tmp_path / "out.safetensors").exists()
