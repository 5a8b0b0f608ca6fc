"""joblib files of NumPy arrays as tensor plans: the pickle is read strictly (`rebuild.read` with
joblib's array wrapper allowed), and each array's raw bytes are located where joblib wrote them, right
after their wrapper. Compressed files (zlib, gzip, bz2, xz, lzma, lz4) are inflated, in bounded pieces, into a
temporary file first."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from typing import IO, Any

from modelshield.convert import ConversionInputError
from modelshield.convert.rebuild import JoblibArrays, Refused, Tensor, read, state_dict
from modelshield.convert.writer import TensorPlan, plan


class _Zlib(io.RawIOBase):
    """joblib's zlib files (`compress=N`): one raw zlib stream, inflated in bounded pieces."""

    def __init__(self, path: str, mode: str) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed with this reader
        self._inflater = zlib.decompressobj()
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._inflater.eof:
            chunk = self._file.read(1 << 20)
            if not chunk:
                raise EOFError("the zlib stream ends early")
            self._pending = self._inflater.decompress(chunk, len(buffer))
            while not self._pending and self._inflater.unconsumed_tail:
                self._pending = self._inflater.decompress(self._inflater.unconsumed_tail, len(buffer))
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        if not self._pending and self._inflater.unconsumed_tail:
            self._pending = self._inflater.decompress(self._inflater.unconsumed_tail, len(buffer))
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


def _lz4(path: str, mode: str) -> IO[bytes]:
    import lz4.frame  # noqa: PLC0415 - a dependency of the 7z and joblib walkers

    return lz4.frame.open(path, mode)  # type: ignore[no-any-return]


_OPENERS: dict[bytes, Callable[[str, str], IO[bytes]]] = {
    b"\x1f\x8b": gzip.open,  # type: ignore[dict-item]
    b"BZh": bz2.open,  # type: ignore[dict-item]
    b"\xfd7zXZ\x00": lzma.open,  # type: ignore[dict-item]
    b"\x5d\x00\x00": lzma.open,  # type: ignore[dict-item]
    b"\x04\x22\x4d\x18": _lz4,
    b"\x78": _Zlib,  # type: ignore[dict-item]
}


def _inflated(path: str, stack: ExitStack) -> str:
    """The path of the uncompressed pickle: the file itself, or a temporary copy inflated from it."""
    with open(path, "rb") as handle:
        head = handle.read(6)
    for magic, opener in _OPENERS.items():
        if head.startswith(magic):
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="modelshield-joblib-"))
            target = os.path.join(folder, "inflated.pkl")
            try:
                with opener(path, "rb") as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 8 << 20)
            except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                raise Refused(f"the compressed stream is damaged: {exc}") from None
            return target
    return path


def is_compressed(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(6)
    return any(head.startswith(magic) for magic in _OPENERS)


def joblib_plans(path: str, stack: ExitStack) -> tuple[list[TensorPlan], list[str]]:
    """Plans for the named arrays of a joblib dump (a dictionary of arrays, or one array)."""
    source = _inflated(path, stack)
    with open(source, "rb") as stream:
        if stream.read(1) != b"\x80":  # joblib pickles with protocol 2 and later
            raise ConversionInputError(f"{path}: not a PyTorch, NumPy or joblib file")
        stream.seek(0)
        arrays = JoblibArrays(stream)
        value = read(stream, arrays)
        if stream.tell() > os.path.getsize(source):
            raise Refused("the joblib file ends inside an array")
    if isinstance(value, Tensor):
        value = {"array": value}
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Tensor) for v in value):
        value = {str(index): v for index, v in enumerate(value)}  # a list of weight arrays, named by position
    tensors, skipped = state_dict(value)
    return plan(source, arrays.records, tensors, False), skipped
