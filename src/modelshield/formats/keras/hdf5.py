"""HDF5 files (legacy Keras `.h5` models and weights): the Keras rules applied to the `model_config` and
`training_config` root attributes, read with h5py (attributes only: no dataset is read, no Keras is
imported). Weights-only files have no `model_config` and are not findings. The user block before the
signature is scanned as embedded content.

Beyond the configs, the child walks every group and dataset (bounded in objects and bytes), reading
object headers and attributes only: attribute values PyTables would unpickle (scalar ASCII strings of
fixed or variable length ending in the pickle STOP opcode, `tables/attributeset.py`) and the rows of
PyTables object VLArrays (pandas object columns, one pickle a row) go to the pickle analyser as members
named after the HDF5 object; external links, external raw storage and virtual-dataset sources (files the
C library opens when a loader touches the object) are HDF001; Keras `layer_names` / `weight_names` that
`load_weights` turns into paths are HDF002 when they hold NULs, a leading `/` or `.` / `..` segments.

h5py is a binding to the HDF5 C library, whose file parser has a long record of memory-safety bugs. On
systems with `fork` it therefore reads the attributes in a child process with bounded memory and time:
a hostile file that crashes or hangs the library ends the child, and the file is reported as not
analysed instead of taking the scan down. The child sends back JSON, never a pickle.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
import weakref
from collections.abc import Iterator
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, BinaryIO

from modelshield.core.dependencies import Dependency
from modelshield.core.engine import failure_finding
from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.sniff import TAR_BLOCK, looks_like_tar_header
from modelshield.core.source import BytesSource, DecodedSource, FileSource, SliceSource, Source
from modelshield.formats.keras.config import MAX_PARSE_BYTES, ConfigWalker, parse_config
from modelshield.formats.pickle.rules import MALFORMED

#: How a member names an HDF5 attribute: `/group/dataset@attr:NAME`.
ATTRIBUTE = "@attr:"

if TYPE_CHECKING:  # h5py (and numpy) are imported only when an HDF5 file is read
    import h5py

SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: User block searched through the head; h5py and Keras write none or a small one (larger ones are probed).
MAX_USER_BLOCK = 64 * 1024
#: Root attributes that hold Keras configs (JSON text).
CONFIG_ATTRIBUTES = ("model_config", "training_config")
#: Seconds the child gets to walk one HDF5 file (about 0.3 ms an object: 9,000 groups and datasets take
#: 3 s; fuzzing found a two-bit change that makes the library loop forever reading an attribute).
READ_SECONDS = 15.0
#: Seconds all HDF5 objects inside one scanned file may take together, so that an archive of many
#: such members stays a bounded scan.
FILE_SECONDS = 30.0
#: Child time spent so far, per engine (one engine scans one top-level file).
_SPENT: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()
#: Address space the child may add to what it inherits: room for the library and two bounded attributes.
CHILD_MEMORY = 1024 * 1024 * 1024
#: Links and attributes the child visits before it gives up (SCN005), reached well within READ_SECONDS:
#: real models have a few thousand.
MAX_OBJECTS = 40_000
#: Bytes of attribute values and object-VLArray rows the child reads in all (SCN005 past it).
MAX_READ_BYTES = 64 * 1024 * 1024
#: Attributes holding the names `load_weights` turns into HDF5 paths; Keras splits a long list into
#: `layer_names0`, `layer_names1`... (`load_attributes_from_hdf5_group`).
NAME_ATTRIBUTES = re.compile(r"(layer_names|weight_names)\d*")

EXTERNAL_FILE = Rule(
    id="HDF001",
    title="HDF5 object reads another file (external link, external storage or virtual dataset)",
    severity=Severity.HIGH,
    category=Category.MODEL_DEPENDENCY,
    overview="A link, a dataset's raw storage or a virtual dataset's source names a file outside this "
    "HDF5 file (`h5py.ExternalLink`, `H5Pset_external`, `H5Pset_virtual`).",
    attack="The HDF5 C library opens the named file when a loader touches the object: Keras `load_weights` "
    "and pandas `read_hdf` read it as weights or data, so an absolute path or one that climbs out of the "
    "model folder makes the loader read (and with virtual datasets, expose as model data) any file the "
    "user can read, such as `/etc/passwd` or a key, and a missing file changes what loads.",
    impact="Files outside the model are read into the model's weights or data; the model is not "
    "self-contained (high when the path is absolute or leaves the model folder, medium otherwise).",
    remediation="Do not load the file; ask for a self-contained HDF5 file (h5py `File.copy` with "
    "`expand_external=True`, or re-save the model).",
    example="`f['model_weights/dense'] = h5py.ExternalLink('/home/user/.ssh/id_rsa', '/')`.",
)

WEIGHT_NAME = Rule(
    id="HDF002",
    title="Keras H5 layer or weight name with NULs or path traversal",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="A `layer_names` or `weight_names` attribute, which `load_weights` joins into HDF5 paths, "
    "holds a NUL byte, an absolute path, or a `.` or `..` segment (to HDF5 a leading `/` restarts at the "
    "root and `.` is the group itself; `..` is a plain name no writer produces). Keras iterates the value, "
    "so a scalar string is one name per character.",
    attack="Names are used as paths inside the file: a NUL truncates the name seen by the C library (two "
    "different names reach the same object), and names that climb or restart the path make the loader "
    "read weights from an object other than the layer's, so a reviewer and the loader disagree about "
    "which weights load.",
    impact="The weights that load are not the ones the names show; other tools may fail on the names.",
    remediation="Do not load the weights; re-save them with the standard Keras `save_weights`.",
    example="`layer_names = [b'dense', b'../../other']`.",
)


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
    return BytesSource(ctx.read_whole(source, "HDF5 member")).stream()


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
    rules = (EXTERNAL_FILE, WEIGHT_NAME)

    def detect(self, source: Source) -> bool:
        return superblock_offset(source) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        offset = superblock_offset(source)
        if offset:
            # HDF5 ignores the user block, so anything (a pickle, a zip) can live there.
            yield from ctx.scan_member("<user block>", SliceSource(source, 0, offset))
        target = _target(source, ctx)
        try:
            reply = _read_in_child(target, ctx) if hasattr(os, "fork") else _decode(_answer(target))
        finally:
            if not isinstance(target, str):
                target.close()
        for name, text in reply.configs.items():
            if isinstance(text, (bytes, str)):
                yield from ConfigWalker(ctx, name).walk(parse_config(text))
            else:
                raise ScanError(f"HDF5 attribute {name} is not text")
        for kind, path, filename in reply.refs:
            yield ctx.finding(
                EXTERNAL_FILE,
                f"{kind} at {path} reads {filename!r}",
                severity=Severity.HIGH if _escapes(filename) else Severity.MEDIUM,
                member=path,
                **Dependency("path", filename, role=f"HDF5 {kind}").details(),
            )
        for path, attribute, name in reply.names:
            yield ctx.finding(WEIGHT_NAME, f"{attribute} holds {name!r}", member=f"{path}@attr:{attribute}")
        for member, data in reply.pickles:
            found = _scan_pickle(ctx, member, BytesSource(data))
            if ATTRIBUTE in member:
                # PyTables returns an attribute's raw bytes when unpickling fails (attributeset.py catches
                # every exception): a stream that breaks is no error there, only what ran before it counts.
                found = (f for f in found if f.rule is not MALFORMED)
            yield from found


def _scan_pickle(ctx: Context, member: str, source: BytesSource) -> Iterator[Finding]:
    """A value PyTables unpickles, scanned as a member; one that the pickle sniffer does not recognise (a
    pickle opening with MARK, say) still goes through the pickle analyser, since the loader unpickles it anyway."""
    unpickler = next((h for h in ctx.engine.handlers if h.name == "pickle"), None)
    if unpickler is None or unpickler.detect(source):
        yield from ctx.scan_member(member, source)
        return
    inner = Context(ctx.engine, ctx.location.child(member), ctx.depth + 1)
    try:
        yield from unpickler.scan(source, inner)
    except ScanError as exc:
        yield failure_finding(inner.location, exc)


def _text(value: Any) -> str | None:
    """An attribute as PyTables compares it: fixed or variable-length text alike."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else None


def _escapes(filename: str) -> bool:
    """Whether a referenced file is absolute or climbs out of the model's folder."""
    for path in (PurePosixPath(filename), PureWindowsPath(filename)):
        if path.is_absolute() or path.drive or path.root or ".." in path.parts:
            return True
    return False


class _Walk:
    """The bounded walk the child makes over every group and dataset: object headers and attributes,
    plus the rows of PyTables object VLArrays (each a pickle); never other dataset contents."""

    def __init__(self) -> None:
        self.objects = 0
        self.bytes = 0
        self.seen: set[int] = set()
        self.refs: list[list[str]] = []
        self.names: list[list[str]] = []
        self.pickles: list[list[str]] = []

    def run(self, handle: h5py.File) -> dict[str, Any]:
        import h5py  # noqa: PLC0415 - already imported by the caller

        stack: list[tuple[str, Any]] = [("/", handle)]
        while stack:
            path, group = stack.pop()
            self.attributes(path, group)
            for name in group:
                self.count(0)
                where = f"{path.rstrip('/')}/{name}"
                raw = name.encode()
                kind = group.id.links.get_info(raw).type  # the low-level call: a tenth of `get(getlink=True)`
                if kind == h5py.h5l.TYPE_EXTERNAL:
                    filename = group.id.links.get_val(raw)[0]
                    self.refs.append(["external link", where, filename.decode("latin-1")])
                    continue
                if kind != h5py.h5l.TYPE_HARD:
                    continue  # soft: a path inside this file, reached (once) through its hard link
                item = group[name]
                key = hash(item.id)
                if key in self.seen:
                    continue
                self.seen.add(key)
                if isinstance(item, h5py.Group):
                    stack.append((where, item))
                elif isinstance(item, h5py.Dataset):
                    self.dataset(where, item)
        return {"refs": self.refs, "names": self.names, "pickles": self.pickles}

    def count(self, size: int) -> None:
        self.objects += 1
        self.bytes += size
        if self.objects > MAX_OBJECTS:
            raise LimitExceeded("hdf5_objects", f"more than {MAX_OBJECTS} HDF5 objects")
        if self.bytes > MAX_READ_BYTES:
            raise LimitExceeded("max_buffer_bytes", f"HDF5 attributes and object rows past {MAX_READ_BYTES} bytes")

    def attributes(self, path: str, item: Any) -> None:
        for name in item.attrs:
            attribute = item.attrs.get_id(name)
            if attribute.shape is None:  # a null dataspace (PyTables writes empty TITLEs): no value
                self.count(0)
                continue
            # From the header's shape and type: the library refuses get_storage_size for empty arrays.
            self.count(math.prod(attribute.shape) * attribute.dtype.itemsize)
            pickled = _pickled(item, name, attribute)
            if pickled is not None:
                self.count(len(pickled))
                self.pickles.append([f"{path}{ATTRIBUTE}{name}", pickled.decode("latin-1")])
            elif NAME_ATTRIBUTES.fullmatch(name):
                for text in _names(item.attrs[name]):
                    segments = text.split("/")
                    if "\0" in text or text.startswith("/") or ".." in segments or "." in segments:
                        self.names.append([path, name, text])

    def dataset(self, path: str, item: Any) -> None:
        import h5py  # noqa: PLC0415 - already imported by the caller

        self.attributes(path, item)
        plist = item.id.get_create_plist()
        for index in range(plist.get_external_count()):
            self.refs.append(["external storage", path, plist.get_external(index)[0].decode("latin-1")])
        if plist.get_layout() == h5py.h5d.VIRTUAL:
            for index in range(plist.get_virtual_count()):
                filename = plist.get_virtual_filename(index)
                if filename != ".":
                    self.refs.append(["virtual dataset source", path, filename])
        # PyTables opens any variable-length dataset as a VLArray (CLASS is only a hint) and unpickles its
        # rows when PSEUDOATOM is "object" (FLAVOR "Object" in 1.x files), stored as fixed or vlen text.
        objects = _text(item.attrs.get("PSEUDOATOM")) == "object" or _text(item.attrs.get("FLAVOR")) == "Object"
        if objects and h5py.check_vlen_dtype(item.dtype) is not None:
            for index in range(item.shape[0] if item.shape else 0):
                row = bytes(item[index].tobytes())  # PyTables ObjectAtom: one pickle per row
                self.count(len(row))
                self.pickles.append([f"{path}[{index}]", row.decode("latin-1")])


def _pickled(item: Any, name: str, attribute: Any) -> bytes | None:
    """The bytes PyTables hands to `pickle.loads` for this attribute (`AttributeSet.__getattr__`): a NumPy
    bytes scalar, which it makes of a scalar ASCII string attribute, fixed or variable length (checked
    with PyTables 3.11.1); UTF-8 strings come back as `str_` and arrays as arrays, never unpickled. NumPy
    strips trailing NULs; the value must end in '.' and not be '0' or '0.'."""
    import h5py  # noqa: PLC0415 - already imported by the caller
    import numpy as np  # noqa: PLC0415

    kind = attribute.get_type()
    if attribute.shape != () or not isinstance(kind, h5py.h5t.TypeStringID) or kind.get_cset() != h5py.h5t.CSET_ASCII:
        return None
    if kind.is_variable_str():
        raw = np.zeros((), dtype=h5py.string_dtype("ascii"))
        attribute.read(raw)  # the stored bytes: h5py's own read would decode them to str
        value = bytes(np.bytes_(raw[()]))
    else:
        value = bytes(item.attrs[name])
    return value if value.endswith(b".") and value not in (b"0", b"0.") else None


def _names(value: Any) -> list[str]:
    """The names `load_attributes_from_hdf5_group` makes of a `layer_names` / `weight_names` value: it
    iterates the value, so an array gives its entries and a scalar string its characters."""
    if isinstance(value, str):
        return list(value)
    entries = value.tolist() if hasattr(value, "tolist") else []
    if not isinstance(entries, list):
        return []
    return [entry.decode("latin-1") if isinstance(entry, bytes) else str(entry) for entry in entries]


def _read(target: str | BinaryIO) -> dict[str, Any]:
    try:
        with _open(target) as handle:
            return {"configs": read_configs(handle), **_Walk().run(handle)}
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:  # h5py raises all of these
        raise ScanError(f"HDF5 attributes could not be read: {exc}") from None


def _answer(target: str | BinaryIO) -> bytes:
    """What the reader found, as the JSON the child sends (the same form without `fork`)."""
    try:
        found = _read(target)
        reply: dict[str, Any] = {**found, "configs": {k: _encode(v) for k, v in found["configs"].items()}}
    except LimitExceeded as exc:
        reply = {"limit": [exc.limit, exc.detail]}
    except ScanError as exc:
        reply = {"error": str(exc)}
    return json.dumps(reply).encode()


def _read_in_child(target: str | BinaryIO, ctx: Context) -> _Reply:
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
        data = _answer(target)
    except BaseException as exc:
        data = json.dumps({"error": f"internal error in the HDF5 reader: {type(exc).__name__}: {exc}"}).encode()
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


class _Reply:
    """The child's checked answer: configs, referenced files, suspicious names and pickles to analyse."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.configs: dict[str, Any] = {}
        for name, (kind, value) in reply["configs"].items():
            if kind not in ("str", "bytes", "other") or not isinstance(value, str):
                raise ValueError(name)
            if name in CONFIG_ATTRIBUTES:
                self.configs[name] = value if kind == "str" else value.encode("latin-1") if kind == "bytes" else None
        self.refs = [_strings(entry, 3) for entry in reply.get("refs", [])]
        self.names = [_strings(entry, 3) for entry in reply.get("names", [])]
        self.pickles = [(m, d.encode("latin-1")) for m, d in (_strings(e, 2) for e in reply.get("pickles", []))]


def _strings(entry: Any, count: int) -> list[str]:
    if not isinstance(entry, list) or len(entry) != count or not all(isinstance(item, str) for item in entry):
        raise ValueError("entry")
    return entry


def _decode(data: bytes) -> _Reply:
    """The child's answer; the child may have been taken over by the file, so its answer is checked."""
    try:
        reply = json.loads(data)
        if "limit" in reply:
            limit, detail = reply["limit"]
            raise LimitExceeded(str(limit), str(detail))
        if "error" in reply:
            raise ScanError(str(reply["error"]))
        return _Reply(reply)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeError) as exc:
        raise ScanError(f"the HDF5 reader gave no usable answer ({type(exc).__name__}); not analysed") from None
