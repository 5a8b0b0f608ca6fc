"""Read-only, random-access views of scanned bytes: files, slices of them, and decoded streams.

Scanners read through a `Source` so that cost follows what a format needs: a stored zip member is a
slice of its parent (no copy), a compressed one is decoded as a stream, and only formats that need
random access into decoded data buffer it, within `Limits.max_buffer_bytes`.
"""

from __future__ import annotations

import io
import lzma
import os
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

from modelshield.core import activity
from modelshield.core.errors import LimitExceeded, ScanError, Truncated
from modelshield.core.limits import Meter

CHUNK = 256 * 1024
HEAD = 4096


class Source(ABC):
    """Bytes of one scanned object."""

    _head: bytes | None = None
    #: How many bytes the cached head was read for: a shorter head is the whole content, so every
    #: detector's look at a small object costs no read (or, for a decoded one, no decoding) again.
    _head_asked = 0
    #: An error met while sniffing (a truncated or corrupt stream); the engine reports it.
    error: ScanError | None = None

    @property
    @abstractmethod
    def size(self) -> int:
        """Total length in bytes."""

    @abstractmethod
    def read_at(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes from `offset` (fewer at the end)."""

    def stream(self) -> BinaryIO:
        """A fresh sequential reader from offset 0."""
        return io.BufferedReader(_RangeReader(self), CHUNK)

    def head(self, n: int = HEAD) -> bytes:
        """The first bytes, for content sniffing; cached."""
        if self._head is None or len(self._head) == self._head_asked < n:
            self._head_asked = max(n, HEAD)
            self._head = self.read_at(0, self._head_asked)
        return self._head[:n]

    def length(self) -> int:
        """Total length, for a format that needs it but no random access: decoded sources count it by
        streaming instead of buffering their content."""
        return self.size


class _RangeReader(io.RawIOBase):
    """Sequential reads over a Source's read_at."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._source.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._source.read_at(self._pos, len(buffer))
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class _CountedFile(io.FileIO):
    """A file whose reads the progress display counts (one call per buffer fill of CHUNK bytes, or per
    read to the end)."""

    def readinto(self, buffer: Any) -> int | None:
        n = super().readinto(buffer)
        if n:
            activity.read(n)
        return n

    def readall(self) -> bytes:
        data = super().readall()
        activity.read(len(data))
        return data


class FileSource(Source):
    """A file on disk, read lazily."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._size = self._file.seek(0, io.SEEK_END)

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, n: int) -> bytes:
        if offset >= self._size or n <= 0:
            return b""
        if not hasattr(os, "pread"):  # pragma: no cover - Windows
            self._file.seek(offset)
            return self._file.read(n)
        # Positional reads share no file offset with a forked reader (the HDF5 child reads through
        # this object too), and cost one system call.
        chunks = []
        while n > 0:
            chunk = os.pread(self._file.fileno(), n, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            n -= len(chunk)
        data = b"".join(chunks)
        activity.read(len(data))
        return data

    def stream(self) -> BinaryIO:
        return io.BufferedReader(_CountedFile(self.path), CHUNK)

    def close(self) -> None:
        self._file.close()


class BytesSource(Source):
    """Bytes already in memory (small decoded members, nested payloads)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def read_at(self, offset: int, n: int) -> bytes:
        return self._data[offset : offset + n] if n > 0 else b""

    def stream(self) -> BinaryIO:
        return io.BytesIO(self._data)


class SliceSource(Source):
    """A byte range of another source (a stored archive member): no copy."""

    def __init__(self, parent: Source, start: int, length: int) -> None:
        self._parent = parent
        self._start = start
        self._length = max(0, min(length, parent.size - start))

    @property
    def size(self) -> int:
        return self._length

    def read_at(self, offset: int, n: int) -> bytes:
        n = min(n, self._length - offset)
        if offset < 0 or n <= 0:
            return b""
        return self._parent.read_at(self._start + offset, n)


class Decompressor(Protocol):
    """What the decoders of zlib, bz2 and lzma have in common, as used here."""

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


class _Decoder:
    """One pass of a streaming decompressor with a bounded output per call."""

    def __init__(self, make: Callable[[], Decompressor]) -> None:
        self._dec = make()

    @property
    def eof(self) -> bool:
        return self._dec.eof

    def has_pending(self) -> bool:
        """Whether output is still due without new input (bz2, lzma, lz4 and zstd buffer it inside)."""
        needs_input = getattr(self._dec, "needs_input", None)
        if needs_input is not None:
            return not needs_input
        return bool(getattr(self._dec, "unconsumed_tail", b""))

    def pull(self, data: bytes | None, n: int) -> bytes:
        dec = self._dec
        if data is None:
            data = getattr(dec, "unconsumed_tail", b"") or b""
        try:
            return dec.decompress(data, n)
        except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError, RuntimeError) as exc:
            raise ScanError(f"corrupt compressed data: {exc}") from exc


class _DecodingReader(io.RawIOBase):
    """Streams decoded bytes from an encoded source, metering every byte produced."""

    def __init__(self, encoded: Source, make: Callable[[], Decompressor], meter: Meter, what: str) -> None:
        self._in = encoded.stream()
        self._decoder = _Decoder(make)
        self._meter = meter
        self._what = what
        self._consumed = 0
        self._produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = len(buffer)
        while True:
            if self._decoder.eof:
                return 0
            if self._decoder.has_pending():
                out = self._decoder.pull(None, want)
            else:
                chunk = self._in.read(CHUNK)
                if not chunk:
                    raise Truncated(f"{self._what} stream ends before its end marker")
                self._consumed += len(chunk)
                out = self._decoder.pull(chunk, want)
            if out:
                self._produced += len(out)
                self._meter.add(len(out), self._consumed, self._produced, self._what)
                buffer[: len(out)] = out
                return len(out)


class DecodedSource(Source):
    """The decompressed content of an encoded source, decoded on demand and metered."""

    def __init__(self, encoded: Source, make: Callable[[], Decompressor], meter: Meter, what: str) -> None:
        self._encoded = encoded
        self._make = make
        self._meter = meter
        self._what = what
        self._data: bytes | None = None
        self._length: int | None = None

    def stream(self) -> BinaryIO:
        if self._data is not None:
            return io.BytesIO(self._data)
        raw = _DecodingReader(self._encoded, self._make, self._meter, self._what)
        return io.BufferedReader(raw, CHUNK)

    def head(self, n: int = HEAD) -> bytes:
        if self._data is not None:
            return self._data[:n]
        if self._head is None or len(self._head) == self._head_asked < n:
            self._head_asked = max(n, HEAD)
            try:
                self._head = self.stream().read(self._head_asked)
            except ScanError as exc:
                self.error = exc
                self._head = self._partial_head(self._head_asked)
        return self._head[:n]

    def _partial_head(self, n: int) -> bytes:
        """What a truncated stream yields before it breaks, for sniffing."""
        reader = self.stream()
        got = bytearray()
        try:
            while len(got) < n:
                chunk = reader.read1(n - len(got))  # type: ignore[attr-defined]
                if not chunk:
                    break
                got += chunk
        except ScanError:
            pass
        return bytes(got)

    def _materialize(self) -> bytes:
        if self._data is None:
            limit = self._meter.limits.max_buffer_bytes
            data = self.stream().read(limit + 1)
            if len(data) > limit:
                raise LimitExceeded(
                    "max_buffer_bytes",
                    f"{self._what} needs random access to more than {limit} decoded bytes",
                )
            self._data = data
        return self._data

    @property
    def size(self) -> int:
        return len(self._materialize())

    def length(self) -> int:
        if self._data is not None:
            return len(self._data)
        if self._length is None:
            reader, total = self.stream(), 0
            while chunk := reader.read(CHUNK):
                total += len(chunk)
            self._length = total
        return self._length

    def read_at(self, offset: int, n: int) -> bytes:
        return self._materialize()[offset : offset + n] if n > 0 else b""
