"""HDF5 files (legacy Keras `.h5` models and weights): recognised by signature, not yet analysed
(fail closed). The user block before the signature is scanned as embedded content."""

from __future__ import annotations

from collections.abc import Iterator

from modelshield.core.findings import Finding
from modelshield.core.handler import Context
from modelshield.core.source import SliceSource, Source
from modelshield.formats._unanalysed import UnanalysedFormat

SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Largest user block searched for the signature; h5py and Keras write none or a small one.
MAX_USER_BLOCK = 64 * 1024


def superblock_offset(source: Source) -> int | None:
    """Where the HDF5 superblock starts: offset 0, or 512, 1024, 2048... after a user block.

    Only the first MAX_USER_BLOCK bytes are searched, through `head`, so sniffing a compressed
    member never forces it to be decoded in full.
    """
    head = source.head(MAX_USER_BLOCK + len(SIGNATURE))
    offset = 0
    while offset <= MAX_USER_BLOCK:
        if head[offset : offset + len(SIGNATURE)] == SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


class Hdf5Handler(UnanalysedFormat):
    name = "hdf5"
    label = "HDF5 (Keras H5)"
    extensions = frozenset({".h5", ".hdf5"})
    unchecked = "Keras model_config (Lambda layers carry marshalled Python bytecode) and dataset shapes"

    def detect(self, source: Source) -> bool:
        return superblock_offset(source) is not None

    def describe(self, source: Source) -> str:
        offset = superblock_offset(source)
        assert offset is not None
        version = source.head(offset + len(SIGNATURE) + 1)[offset + len(SIGNATURE) :]
        text = f"HDF5 file (superblock version {version[0] if version else '?'}"
        return text + (f", after a {offset}-byte user block)" if offset else ")")

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        yield from super().scan(source, ctx)
        offset = superblock_offset(source)
        if offset:
            # HDF5 ignores the user block, so anything (a pickle, a zip) can live there.
            yield from ctx.scan_member("<user block>", SliceSource(source, 0, offset))
