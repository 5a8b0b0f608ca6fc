"""NumPy `.npy` and `.npz` files as tensor plans: their headers are read by the scanner's own parser
(`formats/tensors/numpy_array.py`, never `np.load`), and only plain numeric arrays are converted."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import zipfile
from contextlib import ExitStack

from modelshield.convert.rebuild import DTYPES, NUMPY_KINDS, Refused, Storage, Tensor, strides
from modelshield.convert.writer import TensorPlan, member_data, plan
from modelshield.core.source import FileSource, SliceSource
from modelshield.formats.tensors.numpy_array import MAGIC, HeaderError, read_header


def is_npy(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


def _array(path: str, name: str, offset_in_file: int = 0) -> tuple[Tensor, int, bool]:
    """The tensor an `.npy` (at `offset_in_file` of `path`) holds, where its data starts, and whether it is
    big-endian; raises Refused for anything but a plain numeric array."""
    whole = FileSource(path)
    source = SliceSource(whole, offset_in_file, whole.size - offset_in_file) if offset_in_file else whole
    try:
        header = read_header(source)
    except HeaderError as exc:
        raise Refused(f"{name}: {exc}") from None
    descr = header.descr
    if not isinstance(descr, str) or descr[1:] not in NUMPY_KINDS or descr[0] not in "<>|=":
        raise Refused(f"{name}: dtype {descr!r} is not a plain numeric type safetensors can hold")
    dtype = DTYPES[NUMPY_KINDS[descr[1:]]]
    shape = header.shape
    count = math.prod(shape)
    tensor = Tensor(Storage(name, dtype, count), dtype, 0, shape, strides(shape, header.fortran_order))
    return tensor, offset_in_file + header.data_offset, descr[0] == ">"


def npy_plans(path: str) -> tuple[list[TensorPlan], list[str]]:
    """A single `.npy` file: one tensor, named `array`."""
    tensor, start, big = _array(path, "array")
    size = os.path.getsize(path) - start
    nbytes = math.prod(tensor.size) * tensor.dtype.itemsize
    if size != nbytes:
        raise Refused(f"array data is {size} bytes, the header says {nbytes}")
    return plan(path, {"array": (start, size)}, {"array": tensor}, big), []


def npz_plans(archive: zipfile.ZipFile, path: str, stack: ExitStack) -> tuple[list[TensorPlan], list[str]]:
    """An `.npz`: one tensor per `NAME.npy` member. Stored members are read in place; compressed ones
    (`savez_compressed`) are first inflated, in bounded pieces, into a temporary file removed afterwards."""
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="modelshield-npz-"))
    plans: list[TensorPlan] = []
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise Refused(f"{info.filename}: an .npz member that is not an array")
        name = info.filename[: -len(".npy")]
        if info.compress_type == zipfile.ZIP_STORED:
            source_path = path
            offset, length = member_data(archive, info)
        else:
            source_path = os.path.join(folder, f"{len(plans)}.npy")
            with archive.open(info) as member, open(source_path, "wb") as out:
                shutil.copyfileobj(member, out, 8 << 20)
            offset, length = 0, os.path.getsize(source_path)
        tensor, start, big = _array(source_path, name, offset)
        nbytes = math.prod(tensor.size) * tensor.dtype.itemsize
        if offset + length - start != nbytes:
            raise Refused(f"{name}: array data is {offset + length - start} bytes, the header says {nbytes}")
        plans += plan(source_path, {name: (start, nbytes)}, {name: tensor}, big)
    return plans, []
