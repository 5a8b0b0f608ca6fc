"""HDF5 files (legacy Keras `.h5` models and weights): the Keras rules applied to the `model_config` and
`training_config` root attributes, read with h5py (attributes only: no dataset is read, no Keras is
imported). Weights-only files have no `model_config` and are not findings. The user block before the
signature is scanned as embedded content.

h5py is a binding to the HDF5 C library, whose file parser has a long record of memory-safety bugs. On
systems with `fork` it therefore reads the attributes in a child process with bounded memory and time:
a hostile file that crashes or hangs the library ends the child, and the file is reported as not
analysed instead of taking the scan down. The child sends back JSON, never a pickle.
"""

from __future__ import annotations

import json
import os
import warnings
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.sniff import TAR_BLOCK, looks_like_tar_header
from modelshield.core.source import BytesSource, DecodedSource, FileSource, SliceSource, Source
from modelshield.formats.keras import MAX_PARSE_BYTES, ConfigWalker, parse_config, read_all

if TYPE_CHECKING:  # h5py (and numpy) are imported only when an HDF5 file is read
    import h5py

SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: User block searched through the head; h5py and Keras write none or a small one (larger ones are probed).
MAX_USER_BLOCK = 64 * 1024
#: Root attributes that hold Keras configs (JSON text).
CONFIG_ATTRIBUTES = ("model_config", "training_config")
#: Seconds the child gets to read one HDF5 object's attributes (real files take milliseconds; fuzzing
#: found a two-bit change that makes the library loop forever reading an attribute).
READ_SECONDS = 5.0
#: Seconds all HDF5 objects inside one scanned file may take together, so that an archive of many
#: such members stays a bounded scan.
FILE_SECONDS = 30.0
#: Child time spent so far, per engine (one engine scans one top-level file).
_SPENT: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()
#: Address space the child may add to what it inherits: room for the library and two bounded attributes.
CHILD_MEMORY = 1024 * 1024 * 1024


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
    # The library looks at every power of two up to the end of the file (H5FD_locate_signature), so
    # a larger user block is still HDF5: probed one read per power, except in a decoded stream (whose
    # size would decode it all; a stored member or a file on disk is probed).
    if isinstance(source, DecodedSource) or len(head) <= MAX_USER_BLOCK:
        return None
    while offset + len(SIGNATURE) <= source.size:
        if source.read_at(offset, len(SIGNATURE)) == SIGNATURE:
            return offset
        offset *= 2
    return None


def _target(source: Source, ctx: Context) -> str | BinaryIO:
    """What h5py opens: the file itself, a seekable view of a stored member, or decoded bytes within
    the buffer bound."""
    if isinstance(source, FileSource):
        return source.path
    stream = source.stream()
    if stream.seekable():
        return stream
    return BytesSource(read_all(source, ctx, "HDF5 member")).stream()


def _open(target: str | BinaryIO) -> h5py.File:
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
        target = _target(source, ctx)
        try:
            configs = _read_in_child(target, ctx) if hasattr(os, "fork") else _read(target)
        finally:
            if not isinstance(target, str):
                target.close()
        for name, text in configs.items():
            if isinstance(text, (bytes, str)):
                yield from ConfigWalker(ctx, name).walk(parse_config(text))
            else:
                raise ScanError(f"HDF5 attribute {name} is not text")


def _read(target: str | BinaryIO) -> dict[str, Any]:
    try:
        with _open(target) as handle:
            return read_configs(handle)
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:  # h5py raises all of these
        raise ScanError(f"HDF5 attributes could not be read: {exc}") from None


def _read_in_child(target: str | BinaryIO, ctx: Context) -> dict[str, Any]:
    """`_read` in a forked child, so that a crash or hang of the C library is a finding, not the end
    of the scan."""
    import select  # noqa: PLC0415 - only HDF5 files need it
    import signal  # noqa: PLC0415
    import time  # noqa: PLC0415

    import h5py  # noqa: F401, PLC0415 - imported before the fork, so that each child starts with it

    spent = _SPENT.get(ctx.engine, 0.0)
    seconds = min(READ_SECONDS, FILE_SECONDS - spent)
    if seconds <= 0:
        raise LimitExceeded("hdf5_seconds", f"HDF5 objects in this file took the whole {FILE_SECONDS:g} s budget")
    reader, writer = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking with threads (the progress bar's); the child runs no Python
        # thread and leaves through os._exit.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (coverage does not follow it)
        os.close(reader)
        _child(target, writer)
    os.close(writer)
    output = bytearray()
    started = time.monotonic()
    deadline = started + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([reader], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise ScanError(f"the HDF5 library did not finish reading the attributes in {seconds:g} s")
            chunk = os.read(reader, 1 << 20)
            if not chunk:
                break
            output += chunk
    finally:
        os.close(reader)
        _, status = os.waitpid(pid, 0)
        _SPENT[ctx.engine] = spent + time.monotonic() - started
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        raise ScanError(f"the HDF5 library crashed reading this file ({signal.Signals(number).name}); not analysed")
    return _decode(bytes(output))


def _child(target: str | BinaryIO, writer: int) -> None:  # pragma: no cover - runs in the child
    """Read, answer in JSON on `writer`, and leave without running the parent's exit handlers."""
    try:
        _limit_memory()
        reply: dict[str, Any] = {"configs": {name: _encode(value) for name, value in _read(target).items()}}
    except LimitExceeded as exc:
        reply = {"limit": [exc.limit, exc.detail]}
    except ScanError as exc:
        reply = {"error": str(exc)}
    except BaseException as exc:
        reply = {"error": f"internal error in the HDF5 reader: {type(exc).__name__}: {exc}"}
    data = json.dumps(reply).encode()
    while data:
        data = data[os.write(writer, data) :]
    os._exit(0)


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    try:
        import resource  # noqa: PLC0415 - POSIX only

        with open("/proc/self/statm", encoding="ascii") as statm:
            inherited = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (inherited + CHILD_MEMORY, inherited + CHILD_MEMORY))
    except (OSError, ValueError, ImportError):
        pass  # no /proc (macOS): the attribute size bounds still apply


def _encode(value: Any) -> list[str]:
    """An attribute value as JSON: text, bytes (as Latin-1, which round-trips), or only its type."""
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, bytes):
        return ["bytes", value.decode("latin-1")]
    return ["other", type(value).__name__]


def _decode(data: bytes) -> dict[str, Any]:
    """The child's answer; the child may have been taken over by the file, so its answer is checked."""
    try:
        reply = json.loads(data)
        if "limit" in reply:
            limit, detail = reply["limit"]
            raise LimitExceeded(str(limit), str(detail))
        if "error" in reply:
            raise ScanError(str(reply["error"]))
        configs: dict[str, Any] = {}
        for name, (kind, value) in reply["configs"].items():
            if kind not in ("str", "bytes", "other") or not isinstance(value, str):
                raise ValueError(name)
            if name in CONFIG_ATTRIBUTES:
                configs[name] = value if kind == "str" else value.encode("latin-1") if kind == "bytes" else None
        return configs
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ScanError(f"the HDF5 reader gave no usable answer ({type(exc).__name__}); not analysed") from None
