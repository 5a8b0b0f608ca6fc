"""HDF5 files (legacy Keras `.h5` models and weights): the Keras rules applied to the `model_config` and
`training_config` root attributes, read with h5py (attributes only: no dataset is read, no Keras is
imported). Weights-only files have no `model_config` and are not findings. The user block before the
signature is scanned as embedded content.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.sniff import TAR_BLOCK, looks_like_tar_header
from modelshield.core.source import BytesSource, FileSource, SliceSource, Source
from modelshield.formats.keras import MAX_PARSE_BYTES, ConfigWalker, parse_config, read_all

if TYPE_CHECKING:  # h5py (and numpy) are imported only when an HDF5 file is read
    import h5py

SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Largest user block searched for the signature; h5py and Keras write none or a small one.
MAX_USER_BLOCK = 64 * 1024
#: Root attributes that hold Keras configs (JSON text).
CONFIG_ATTRIBUTES = ("model_config", "training_config")


def superblock_offset(source: Source) -> int | None:
    """Where the HDF5 superblock starts: offset 0, or 512, 1024, 2048... after a user block.

    Only the first MAX_USER_BLOCK bytes are searched, through `head`, so sniffing a compressed
    member never forces it to be decoded in full.
    """
    head = source.head(MAX_USER_BLOCK + len(SIGNATURE))
    if head[: len(SIGNATURE)] != SIGNATURE and looks_like_tar_header(head[:TAR_BLOCK]):
        return None  # an HDF5 file stored in a tar starts after the 512-byte header: a member, not a user block
    offset = 0
    while offset <= MAX_USER_BLOCK:
        if head[offset : offset + len(SIGNATURE)] == SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def _open(source: Source, ctx: Context) -> h5py.File:
    """h5py on the file itself, a seekable view of a stored member, or decoded bytes within the buffer bound."""
    target: str | BinaryIO
    if isinstance(source, FileSource):
        target = source.path
    else:
        target = source.stream()
        if not target.seekable():
            target = BytesSource(read_all(source, ctx, "HDF5 member")).stream()
    import h5py  # noqa: PLC0415 - heavy (with numpy); needed only when an HDF5 file is read

    try:
        return h5py.File(target, "r")
    except (OSError, ValueError) as exc:
        raise ScanError(f"HDF5 file could not be opened: {exc}") from None


def read_configs(handle: h5py.File) -> dict[str, Any]:
    """The Keras config attributes present at the root, as text, each bounded before it is read."""
    found: dict[str, Any] = {}
    for name in CONFIG_ATTRIBUTES:
        if name not in handle.attrs:
            continue
        size = handle.attrs.get_id(name).get_storage_size()
        if size > MAX_PARSE_BYTES:
            raise LimitExceeded("max_buffer_bytes", f"HDF5 attribute {name} of {size} bytes")
        found[name] = handle.attrs[name]
    return found


class Hdf5Handler(Handler):
    name = "hdf5"
    label = "HDF5 (Keras H5)"
    extensions = frozenset({".h5", ".hdf5"})

    def detect(self, source: Source) -> bool:
        return superblock_offset(source) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        offset = superblock_offset(source)
        if offset:
            # HDF5 ignores the user block, so anything (a pickle, a zip) can live there.
            yield from ctx.scan_member("<user block>", SliceSource(source, 0, offset))
        try:
            with _open(source, ctx) as handle:
                configs = read_configs(handle)
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:  # h5py raises all of these
            raise ScanError(f"HDF5 attributes could not be read: {exc}") from None
        for name, text in configs.items():
            if isinstance(text, (bytes, str)):
                yield from ConfigWalker(ctx, name).walk(parse_config(text))
            else:
                raise ScanError(f"HDF5 attribute {name} is not text")
