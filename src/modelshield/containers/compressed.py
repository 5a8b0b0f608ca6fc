"""Single-stream compression wrappers (gzip, bzip2, xz, lzma-alone, zlib, lz4, zstd).

`joblib.dump(compress=...)`, `pandas.to_pickle` and `.tar.gz` bundles wrap pickles and archives in these
streams, and their loaders decompress by magic bytes regardless of the file name. Each handler hands the
decoded content, metered against the decompression limits, to the engine as one member.
"""

from __future__ import annotations

import bz2
import lzma
import re
import sys
import zlib
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.sniff import suffix_of
from modelshield.core.source import DecodedSource, Decompressor, SliceSource, Source

GZIP_MAGIC = b"\x1f\x8b"
#: Output allowed while probing a head: enough for any real stream's first 4 KiB to decode in full.
_PROBE_OUTPUT = 1 << 20
_GZIP_WBITS = 31
#: Memory an LZMA decoder may take for its dictionary: twice what `xz -9` uses. A header that claims a
#: larger dictionary (up to 4 GiB) would otherwise make the decoder reserve it, even to probe 4 KiB.
_LZMA_MEMLIMIT = 128 * 1024 * 1024

#: Suffixes that stand for '.tar' plus a compression.
_TAR_ALIASES = frozenset({".tgz", ".tbz", ".tbz2", ".txz", ".tlz"})


def inner_name(name: str) -> str:
    """The decoded member's name: `a.pkl.gz` -> `a.pkl`, `a.tgz` -> `a.tar`, anything else unchanged.

    Any compression suffix is dropped, not only the decoder's own: a zlib stream named `.gz` (old joblib)
    holds a pickle, not a gzip stream.
    """
    suffix = suffix_of(name)
    if suffix not in COMPRESSION_SUFFIXES:
        return name
    stem = name[: -len(suffix)]
    return stem + ".tar" if suffix in _TAR_ALIASES else stem


class _GzipMembers:
    """A gzip decoder that continues across members: `gunzip` and `joblib` read all of them.

    It follows the `Decompressor` protocol as `DecodedSource` drives zlib objects: input that a bounded
    call could not consume yet is offered back as `unconsumed_tail` and returned in the next call.
    """

    def __init__(self, total: Callable[[], int]) -> None:
        self._total = total
        self._dec = zlib.decompressobj(_GZIP_WBITS)
        self._tail = b""
        self._carry = b""
        self._seen = 0
        self.eof = False

    @property
    def unconsumed_tail(self) -> bytes:
        return self._tail

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        if data is not self._tail:  # fresh input rather than our own tail handed back
            self._seen += len(data)
            data = self._carry + data
            self._carry = b""
        out = self._dec.decompress(data, max_length)
        self._tail = self._dec.unconsumed_tail
        if self._dec.eof:
            rest = self._dec.unused_data
            self._tail = b""
            if rest.startswith(GZIP_MAGIC):
                self._dec = zlib.decompressobj(_GZIP_WBITS)
                self._tail = rest
            elif len(rest) < len(GZIP_MAGIC) and self._seen < self._total():
                self._carry = rest  # the next member's magic may be split across reads
            else:
                self.eof = True  # trailing non-gzip bytes are ignored, as most readers do
        return out


class CompressedHandler(Handler):
    """Base for one compression format: detect its magic, scan the decoded stream as the member."""

    transparent = True
    magic: bytes = b""

    def detect(self, source: Source) -> bool:
        return bool(self.magic) and source.head(len(self.magic)) == self.magic

    @abstractmethod
    def decompressor(self, source: Source) -> Callable[[], Decompressor]:
        """How to decode the stream."""

    def payload(self, source: Source) -> Source:
        """The encoded stream itself (formats with a header of their own skip it)."""
        return source

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        name = ctx.location.members[-1] if ctx.location.members else ctx.location.path.replace("\\", "/")
        name = inner_name(name.rsplit("/", 1)[-1])
        decoded = DecodedSource(self.payload(source), self.decompressor(source), ctx.engine.meter, self.label)
        yield from ctx.scan_member(name, decoded)


class GzipHandler(CompressedHandler):
    name = "gzip"
    label = "gzip stream"
    extensions = frozenset({".gz", ".gzip", ".tgz"})
    magic = GZIP_MAGIC + b"\x08"

    def decompressor(self, source: Source) -> Callable[[], Decompressor]:
        return lambda: _GzipMembers(lambda: source.size)


class Bzip2Handler(CompressedHandler):
    name = "bzip2"
    label = "bzip2 stream"
    extensions = frozenset({".bz2", ".tbz", ".tbz2"})

    def detect(self, source: Source) -> bool:
        head = source.head(10)
        return (
            len(head) == 10
            and head.startswith(b"BZh")
            and head[3:4] in b"123456789"
            and head[4:10] in (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")
        )

    def decompressor(self, source: Source) -> Callable[[], Decompressor]:
        return bz2.BZ2Decompressor


class XzHandler(CompressedHandler):
    name = "xz"
    label = "xz stream"
    extensions = frozenset({".xz", ".txz"})
    magic = b"\xfd7zXZ\x00"

    def decompressor(self, source: Source) -> Callable[[], Decompressor]:
        return lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=_LZMA_MEMLIMIT)


def _decodes(make: Callable[[], Decompressor], head: bytes) -> bool:
    """Whether the whole head decodes without error: weak magic numbers need this, since random data
    (MATLAB files, tensors) often passes a header check and the first few decoded bytes."""
    try:
        return bool(make().decompress(head, _PROBE_OUTPUT)) or len(head) < 64
    except (zlib.error, lzma.LZMAError, EOFError, ValueError):
        return False


class LzmaHandler(CompressedHandler):
    """The legacy `.lzma` ('lzma-alone') format: properties byte, dictionary size, 8-byte length."""

    name = "lzma"
    label = "lzma-alone stream"
    extensions = frozenset({".lzma", ".tlz"})

    def detect(self, source: Source) -> bool:
        head = source.head()
        if len(head) < 13 or head[0] >= 9 * 5 * 5:
            return False
        dict_size = int.from_bytes(head[1:5], "little")
        length = int.from_bytes(head[5:13], "little")
        if not 4096 <= dict_size <= 1 << 30 or (length != (1 << 64) - 1 and length > 1 << 48):
            return False
        if dict_size > _LZMA_MEMLIMIT:
            # Too big to probe within the bound: claimed (and then reported as not analysable) when the
            # size has the form 2^n or 2^n + 2^(n-1) that every lzma-alone encoder writes, so that such a
            # stream fails closed instead of passing as unknown bytes.
            low = dict_size & -dict_size
            return dict_size in (low, low * 3)
        return _decodes(self.decompressor(source), head)

    def decompressor(self, source: Source) -> Callable[[], Decompressor]:
        return lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=_LZMA_MEMLIMIT)


class ZlibHandler(CompressedHandler):
    """Raw zlib streams, as written by `joblib.dump(compress='zlib')` (`.z`)."""

    name = "zlib"
    label = "zlib stream"
    extensions = frozenset({".z", ".zlib"})

    def detect(self, source: Source) -> bool:
        head = source.head()
        if len(head) < 2:
            return False
        cmf, flg = head[0], head[1]
        if cmf & 0x0F != 8 or cmf >> 4 > 7 or (cmf << 8 | flg) % 31 or flg & 0x20:
            return False
        return _decodes(self.decompressor(source), head)

    def decompressor(self, source: Source) -> Callable[[], Decompressor]:
        return lambda: zlib.decompressobj(zlib.MAX_WBITS)


class Lz4Handler(CompressedHandler):
    """LZ4 frames, as written by joblib's `compress='lz4'`."""

    name = "lz4"
    label = "lz4 frame"
    extensions = frozenset({".lz4"})
    magic = b"\x04\x22\x4d\x18"

    def decompressor(self, source: Source) -> Callable[[], Decompressor]:
        import lz4.frame  # noqa: PLC0415 - imported once a frame is found: it costs start-up time

        make: Callable[[], Decompressor] = lz4.frame.LZ4FrameDecompressor  # untyped package
        return make


class ZstdHandler(CompressedHandler):
    """Zstandard frames (the standard library's `compression.zstd`, or its backport before 3.14)."""

    name = "zstd"
    label = "zstd frame"
    extensions = frozenset({".zst", ".zstd"})
    magic = b"\x28\xb5\x2f\xfd"

    def decompressor(self, source: Source) -> Callable[[], Decompressor]:
        return _ZstdDecoder


def _zstd() -> Any:
    """The zstd module, imported once a frame is found: it costs start-up time."""
    if sys.version_info >= (3, 14):
        from compression import zstd  # noqa: PLC0415
    else:
        from backports import zstd  # noqa: PLC0415
    return zstd


class _ZstdDecoder:
    """`ZstdDecompressor` with its own error (a frame naming an unknown dictionary, a corrupt block)
    turned into the ValueError every other decoder raises on corrupt input."""

    def __init__(self) -> None:
        self._zstd = _zstd()
        self._dec = self._zstd.ZstdDecompressor()

    @property
    def eof(self) -> bool:
        return bool(self._dec.eof)

    @property
    def needs_input(self) -> bool:
        return bool(self._dec.needs_input)

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        try:
            return bytes(self._dec.decompress(data, max_length))
        except self._zstd.ZstdError as exc:
            raise ValueError(f"zstd: {exc}") from exc


class JoblibZfileHandler(CompressedHandler):
    """joblib's old 'z-file' (joblib < 0.10 with `compress=`): `ZF`, a padded hex length, then zlib.

    `joblib.load` still reads these, so they are model files like any other joblib pickle.
    """

    name = "joblib-zfile"
    label = "joblib z-file"

    def detect(self, source: Source) -> bool:
        found = _ZFILE.match(source.head(64))
        return found is not None and _decodes(self.decompressor(source), source.head()[found.end() :])

    def payload(self, source: Source) -> Source:
        found = _ZFILE.match(source.head(64))
        start = found.end() if found else 0
        return SliceSource(source, start, source.size - start)

    def decompressor(self, source: Source) -> Callable[[], Decompressor]:
        return lambda: zlib.decompressobj(zlib.MAX_WBITS)


_ZFILE = re.compile(rb"ZF0x[0-9a-fA-F]{1,17}L? {0,20}(?=\x78)")

#: Every suffix that names a compressed stream, dropped from the decoded member's name.
COMPRESSION_SUFFIXES = frozenset().union(
    *(h.extensions for h in (GzipHandler, Bzip2Handler, XzHandler, LzmaHandler, ZlibHandler, Lz4Handler, ZstdHandler))
)
