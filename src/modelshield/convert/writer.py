"""Tensors copied from a checkpoint's storages into a safetensors file, through a memory map.

A storage record of a PyTorch zip checkpoint is stored uncompressed, so each tensor is a strided view of
the checkpoint's own bytes: contiguous tensors (nearly all of a state dict) are read and written through
in bounded chunks, others are materialised from a memory map of their storage row by row (their cost is
the span of storage the view covers), and big-endian storages are byte-swapped per element. Every view
is checked against its storage's size before anything is read.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from modelshield.convert.rebuild import Refused, Tensor, strides

if TYPE_CHECKING:
    import numpy as np

#: Bytes copied per write: enough to keep the copy near disk speed, small enough to keep memory flat.
CHUNK = 8 << 20
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


@dataclass(frozen=True)
class TensorPlan:
    """One tensor to write: its name, its view, and where its storage's bytes lie in the checkpoint."""

    name: str
    tensor: Tensor
    path: str
    data_offset: int
    storage_bytes: int
    big_endian: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.tensor.size) * self.tensor.dtype.itemsize

    @property
    def contiguous(self) -> bool:
        """Row-major with no gaps: the tensor is one byte range of its storage."""
        size = self.tensor.size
        rows = strides(size, fortran=False)
        return all(s == r or d == 1 for s, r, d in zip(self.tensor.stride, rows, size, strict=True))

    @property
    def copyable(self) -> bool:
        """Copied file to file with no byte of it passing through this process."""
        return self.contiguous and not self.big_endian and self.nbytes > 0


def member_data(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[int, int]:
    """Where a stored member's bytes start in the archive file and how long they are: after its local
    header, whose name and extra lengths may differ from the central directory's."""
    fp = archive.fp
    assert fp is not None
    fp.seek(info.header_offset)
    header = fp.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise Refused(f"member {info.filename} has no local header")
    fields = _LOCAL_HEADER.unpack(header)
    return info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1], info.file_size


def zip_records(archive: zipfile.ZipFile, prefix: str) -> dict[str, tuple[int, int] | None]:
    """Each storage record of a zip checkpoint by key: where it lies, or None if it is compressed."""
    records: dict[str, tuple[int, int] | None] = {}
    for info in archive.infolist():
        if info.filename.startswith(f"{prefix}data/"):
            key = info.filename[len(prefix) + len("data/") :]
            records[key] = member_data(archive, info) if info.compress_type == zipfile.ZIP_STORED else None
    return records


def _check_view(name: str, tensor: Tensor, storage_bytes: int) -> None:
    """The view must lie inside its storage (torch would read past it natively)."""
    itemsize = tensor.dtype.itemsize
    if storage_bytes % itemsize:
        raise Refused(f"{name}: storage of {storage_bytes} bytes is not a whole number of {tensor.dtype.name}")
    elements = storage_bytes // itemsize
    if any(d == 0 for d in tensor.size):
        return
    last = tensor.offset + sum((d - 1) * s for d, s in zip(tensor.size, tensor.stride, strict=True))
    if last >= elements:
        raise Refused(f"{name}: view reaches element {last} of a storage of {elements}")


def plan(
    path: str, records: dict[str, tuple[int, int] | None], tensors: dict[str, Tensor], big_endian: bool
) -> list[TensorPlan]:
    """Locate every tensor's storage (`records`: key -> byte offset and length in the file) and check its
    view; raises `Refused` on any inconsistency."""
    plans = []
    for name, tensor in tensors.items():
        key = tensor.storage.key
        if key not in records:
            raise Refused(f"{name}: storage record {key} is missing")
        record = records[key]
        if record is None:
            raise Refused(f"{name}: storage record {key} is compressed")
        offset, size = record
        declared = tensor.storage.numel * (tensor.storage.dtype.itemsize if tensor.storage.dtype else 1)
        if declared != size:
            raise Refused(f"{name}: storage {key} holds {size} bytes, the pickle says {declared}")
        _check_view(name, tensor, size)
        plans.append(TensorPlan(name, tensor, path, offset, size, big_endian))
    return plans


def _elements(plan: TensorPlan) -> np.ndarray:
    """The storage as a memory-mapped array of whole elements (raw bytes of each)."""
    import numpy as np  # noqa: PLC0415 - only convert needs NumPy

    raw = np.memmap(plan.path, dtype=np.uint8, mode="r", offset=plan.data_offset, shape=(plan.storage_bytes,))
    return raw.view(np.dtype(f"V{plan.tensor.dtype.itemsize}"))


def _swap(chunk: bytes, plan: TensorPlan) -> bytes:
    """A big-endian chunk in little-endian order; complex numbers swap each of their two parts."""
    import numpy as np  # noqa: PLC0415

    itemsize = plan.tensor.dtype.itemsize
    part = itemsize // 2 if plan.tensor.dtype.name.startswith("C") else itemsize
    if part == 1:
        return chunk
    return np.frombuffer(chunk, dtype=f">u{part}").astype(f"<u{part}").tobytes()


def _chunks(plan: TensorPlan) -> Iterator[bytes]:
    """The tensor's bytes in row-major order, in pieces of at most about CHUNK bytes."""
    import numpy as np  # noqa: PLC0415

    tensor = plan.tensor
    itemsize = tensor.dtype.itemsize
    count = math.prod(tensor.size)
    if count == 0:
        return
    if plan.contiguous:
        yield from _copied(plan.path, plan.data_offset + tensor.offset * itemsize, count * itemsize)
        return
    elements = _elements(plan)
    view = np.lib.stride_tricks.as_strided(
        elements[tensor.offset :],
        shape=tensor.size,
        strides=[s * itemsize for s in tensor.stride],
        writeable=False,
    )
    yield from _rows(view)


def _copied(path: str, start: int, length: int) -> Iterator[bytes]:
    """A byte range of the checkpoint read in CHUNK pieces: a contiguous tensor is a plain copy."""
    with open(path, "rb") as handle:
        handle.seek(start)
        while length > 0:
            piece = handle.read(min(CHUNK, length))
            if not piece:
                raise Refused(f"the checkpoint ends inside a storage ({length} bytes short)")
            length -= len(piece)
            yield piece


def _rows(view: np.ndarray) -> Iterator[bytes]:
    """A strided view materialised in blocks of whole rows of about CHUNK bytes (recursing into rows
    larger than that): a block gathers neighbouring elements of each storage row, which keeps a
    transposed view's copy cache-friendly."""
    import numpy as np  # noqa: PLC0415

    if view.ndim <= 1 or view.nbytes <= CHUNK:
        yield np.ascontiguousarray(view).tobytes()
        return
    row = view.nbytes // len(view)
    if row > CHUNK:
        for item in view:
            yield from _rows(item)
        return
    step = CHUNK // row
    for start in range(0, len(view), step):
        yield np.ascontiguousarray(view[start : start + step]).tobytes()


def write(out: IO[bytes], plans: list[TensorPlan], metadata: dict[str, str]) -> int:
    """Write the safetensors file; returns its size."""
    entries: dict[str, object] = {"__metadata__": metadata}
    start = 0
    for p in plans:
        offsets = [start, start + p.nbytes]
        entries[p.name] = {"dtype": p.tensor.dtype.name, "shape": list(p.tensor.size), "data_offsets": offsets}
        start += p.nbytes
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    out.write(struct.pack("<Q", len(header)))
    out.write(header)
    written = 8 + len(header)
    for p in plans:
        if p.copyable:
            out.flush()
            size = _copy_range(p, out.fileno())
        else:
            size = 0
            for chunk in _chunks(p):
                data = _swap(chunk, p) if p.big_endian else chunk
                out.write(data)
                size += len(data)
        if size != p.nbytes:
            raise Refused(f"{p.name}: wrote {size} bytes, expected {p.nbytes}")
        written += size
    return written


def _copy_range(plan: TensorPlan, target: int) -> int:
    """A contiguous little-endian tensor copied file to file by the kernel (`copy_file_range`), or
    through a bounded buffer where the kernel or file system cannot."""
    start = plan.data_offset + plan.tensor.offset * plan.tensor.dtype.itemsize
    left = plan.nbytes
    with open(plan.path, "rb") as handle:
        source = handle.fileno()
        while left > 0:
            try:
                copied = os.copy_file_range(source, target, min(left, 1 << 30), start)
            except (AttributeError, OSError):  # not Linux, or not between these files: plain copies
                break
            if copied == 0:
                raise Refused(f"{plan.name}: the checkpoint ends inside a storage ({left} bytes short)")
            start += copied
            left -= copied
    if left:
        with os.fdopen(os.dup(target), "wb", closefd=True) as out:
            for piece in _copied(plan.path, start, left):
                out.write(piece)
    return plan.nbytes
