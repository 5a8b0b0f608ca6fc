"""A streaming, symbolic unpickler: reads opcodes like CPython's loader and records what it would do.

Nothing is executed. Imports become `Global` values judged by name, calls become `Call` values that are
reported when they are made (so results dropped from the stack still count), and large payloads are
skipped with only a bounded prefix kept. The reader follows the unpickler's FRAME rules.
"""

from __future__ import annotations

import codecs
import io
import re
import struct
import sys
from array import array
from collections.abc import Callable, Generator, Iterator, Mapping
from types import ModuleType
from typing import Any, BinaryIO, TypeVar

from modelshield.core import native
from modelshield.core.callables import (
    ATTRIBUTE_GETTER,
    GRAPH_MODULE_REBUILDER,
    PICKLE_BYTES_LOADERS,
    SUBSCRIPT,
    TORCH_STORAGE_SIZES,
    WRAPPERS,
)
from modelshield.core.dependencies import call_dependency, named
from modelshield.core.dependency_rules import DEPENDENCY
from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.findings import Finding, truncate
from modelshield.core.handler import Context
from modelshield.core.paths import escape_reason
from modelshield.core.pysource import analyse_generated
from modelshield.core.rules import Rule, Severity
from modelshield.core.source import BytesSource, DecodedSource, SliceSource, Source
from modelshield.formats.pickle.names import Judge, Name, Verdict, resolve, valid_module
from modelshield.formats.pickle.rules import (
    CODE_EXECUTION,
    COMPUTED_CALL,
    DYNAMIC_IMPORT,
    EXTENSION_GLOBAL,
    FOREIGN_MUTATION,
    FRAME_VIOLATION,
    IMPORT_GADGET,
    MODEL_DEPENDENCY,
    PERSISTENT_ID,
    SCAN_BOUND,
    STATE_ON_GLOBAL,
    SYSTEM_ACCESS,
    UNKNOWN_GLOBAL,
)
from modelshield.formats.pickle.values import (
    ITEM_CAP,
    MARKERS,
    SHARED_WEIGHTS,
    Blob,
    Call,
    Fresh,
    Global,
    Plain,
    Unknown,
    plain,
    plain_marker,
    render,
    render_args,
)

_A = TypeVar("_A")
_R = TypeVar("_R")

KEEP = 64 * 1024
"""Bytes of a large constant kept for evidence and nested scans; the rest is skipped, not buffered."""
CHUNK = 1024 * 1024
"""Bytes read at a time: the data loop's batches (`Machine._full_batch`) stop at the end of the buffer."""
MAX_LINE = 1024 * 1024
#: The hottest integer opcodes (BININT, BININT2) read their argument with prebuilt structs.
_INT4 = struct.Struct("<i").unpack_from
_UINT2 = struct.Struct("<H").unpack_from
_UINT4 = struct.Struct("<I").unpack_from
_FLOAT8 = struct.Struct(">d").unpack_from
#: bytes the buffer must hold past `pos` for the data loop (`Machine._hot`) to be worth entering, and
#: the most it reads in one run (the memory bound is checked between runs)
_HOT_MIN = 64
_HOT_SPAN = 64 * 1024
#: the opcodes `Machine._hot` runs (text protocols 0 and 1 use others: they never enter it)
_HOT_CODES = frozenset(b"h\x8c\x94]}K(euG\x86JMjqr\x85\x87N)\x88\x89XasCtIgpVFdl")
_PUT_CODES = frozenset(b"\x94qrp")
_TEXT_CODES = frozenset(b"IgVF")
#: the items of a list `Machine._full_batch` takes whole (BINGET, LONG_BINGET, BININT1, BININT2, BININT)
_ITEM_WIDTHS = {0x68: 2, 0x6A: 5, 0x4B: 2, 0x4D: 3, 0x4A: 5}
_NESTED_KEPT = 100_000
"""Plain containers a pickle's containers keep whole inside them; past it they keep a `Plain` marker (a
state judged from one reads as computed: fail closed), so nested data dictionaries cost what the top
levels need, not what the file holds."""
ENTRY_BYTES = 192
"""What one stack or memo entry costs the analyser with the value it holds (measured: 110 bytes on
opcode-dense pickles, 175 on a 3 M-entry vocabulary dict)."""
MAX_WEIGHT = 1 << 30
"""Elements a container may expand to through shared references ('billion laughs') before we stop."""
MAX_FINDINGS = 200
NOFRAME = 1 << 62
_BOUNDS_EVERY = 0xFFF

_RECONSTRUCTOR_BASES = frozenset(
    f"builtins.{n}" for n in "object dict list set frozenset tuple int float str bytes complex bytearray".split()
)
_JOBLIB_WRAPPERS = frozenset(
    f"{home}.numpy_pickle.NumpyArrayWrapper" for home in ("joblib", "sklearn.externals.joblib")
)
"""joblib's wrapper, after which `NumpyUnpickler` reads the array's raw bytes from the stream, under both
homes joblib has had (scikit-learn vendored it as `sklearn.externals.joblib` until 0.23). The older
`NDArrayWrapper`/`ZNDArrayWrapper` (joblib <= 0.9) keep their arrays in sibling files: nothing inline."""
_NDARRAY_FILES = frozenset(
    f"{home}.{module}.NDArrayWrapper"
    for home in ("joblib", "sklearn.externals.joblib")
    for module in ("numpy_pickle", "numpy_pickle_compat")
)
"""joblib <= 0.9's wrapper: `joblib.load` reads the array from the file its state names, joined to the
pickle's folder, with `numpy.load(..., allow_pickle=True)` (`numpy_pickle_compat.NDArrayWrapper.read`)."""
_DILL_ARRAY = frozenset(["dill._dill._create_array", "dill.dill._create_array"])
_DTYPE_CODE = re.compile(r"[<>|=]?([A-Za-z?])(\d*)")


class Malformed(Exception):
    """The stream breaks here; the loader would raise at this offset."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


#: an arena reference is `offset << _OFF | length << 1 | is_bytes`
_OFF = 23
_ARENA_MAX = 1 << (_OFF - 1)
_SCALAR_DATA = frozenset([str, bytes, int, float, bool, type(None), Blob])
_SCALARS = _SCALAR_DATA | {Plain}
_TUPLE_SLOTS_MAX = 65_536


class Memo:
    """The unpickler's memo, held by what must be kept rather than one Python object per entry.

    Indices filled in order (every pickler fills them so) live in `tags`, one 8-byte integer each: a
    str or bytes constant is its encoded bytes in `arena` (`offset << _OFF | length << 1 | is_bytes`),
    anything else an index into `objs` (`-2 - index`). An index past the end goes to the `far` dict.
    `len()` is the loader's: the number of distinct indices stored, which MEMOIZE uses as the next one.

    A container or tuple of plain data that a parent container takes is replaced in `objs` by a shared
    `Plain` marker (`collapse`), so memory follows what can still matter, not the number of objects: a
    later fetch of it, which no pickler writes for a finished container, gets the marker, judged
    fail-closed wherever its items would matter. A collapsed container that changes (it was still on
    the stack) is held whole again (`restore`).
    """

    __slots__ = ("arena", "dropped", "far", "objs", "tags", "tuples")

    def __init__(self) -> None:
        self.tags = array("q")
        self.objs: list[Any] = []
        self.arena = bytearray()
        self.far: dict[int, Any] = {}
        #: entries of `objs` that are markers or freed: the rest are held whole
        self.dropped = 0
        #: memoised tuples not yet taken by a container: id -> index in objs (checked with `is` when used)
        self.tuples: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.tags) + len(self.far)

    def cost(self) -> int:
        """Bytes the memo holds, as the memory bound counts them (an object held whole at ENTRY_BYTES)."""
        whole = len(self.objs) - self.dropped + len(self.far)
        return 8 * (len(self.tags) + len(self.objs)) + len(self.arena) + ENTRY_BYTES * whole

    def tag(self, value: Any) -> int:
        """Store `value` (arena text or an object) and return the tag that refers to it."""
        kind = type(value)
        if kind is str or kind is bytes:
            data = value.encode("utf-8", "surrogatepass") if kind is str else value
            if len(data) < _ARENA_MAX:
                arena = self.arena
                at = len(arena)
                arena += data
                return at << _OFF | len(data) << 1 | (kind is bytes)
        objs = self.objs
        index = len(objs)
        objs.append(value)
        if kind is Fresh:
            if value.slot == -1:
                value.slot = index
            elif value.slot < -1:
                self.restore(value)
        elif kind is tuple:
            tuples = self.tuples
            if len(tuples) >= _TUPLE_SLOTS_MAX:
                tuples.clear()  # never taken by a container (call arguments): they stay whole
            tuples[id(value)] = index
        elif kind is Plain:
            self.dropped += 1
        return -2 - index

    def text(self, index: int, tag: int) -> str | bytes:
        """The constant behind an arena tag, promoted to an object: a value fetched once is usually
        fetched again (shared names), and decoding it each time would cost more than keeping it."""
        at = tag >> _OFF
        data = self.arena[at : at + ((tag >> 1) & (_ARENA_MAX - 1))]
        value: str | bytes = bytes(data) if tag & 1 else data.decode("utf-8", "surrogatepass")
        objs = self.objs
        self.tags[index] = -2 - len(objs)
        objs.append(value)
        return value

    def get(self, index: int) -> Any:
        tags = self.tags
        if 0 <= index < len(tags):
            tag = tags[index]
            return self.text(index, tag) if tag >= 0 else self.objs[-2 - tag]
        return self.far[index]  # KeyError: the loader's "memo has no entry"

    def put(self, index: int, value: Any) -> None:
        tags = self.tags
        size = len(tags)
        if index < size:
            old = tags[index]
            if old < 0:
                objs = self.objs
                if objs[-2 - old] is not None and type(objs[-2 - old]) is not Plain:
                    self.dropped += 1
                objs[-2 - old] = None
            tags[index] = self.tag(value)
        elif index == size and not self.far:
            tags.append(self.tag(value))
        else:
            self.far[index] = value

    def collapse(self, value: Any) -> bool:
        """A parent container took `value`: a plain one is kept as a marker only (see the class).
        Returns whether `value` is plain data."""
        kind = type(value)
        if kind is Fresh:
            if not value.plain:
                return False
            index = value.slot
            objs = self.objs
            if 0 <= index < len(objs) and objs[index] is value:
                objs[index] = plain_marker(value.kind, value.weight)
                value.slot = -2 - index
                self.dropped += 1
            return True
        if kind is tuple:
            for item in value:
                if type(item) not in _SCALARS:
                    self.tuples.pop(id(value), None)
                    return False
            index = self.tuples.pop(id(value), -1)
            if index >= 0 and self.objs[index] is value:
                self.objs[index] = _TUPLE_MARKER
                self.dropped += 1
            return True
        return kind in _SCALARS

    def restore(self, value: Fresh) -> None:
        """`value` changes after it was collapsed (it was still on the stack): the memo holds it whole again."""
        objs = self.objs
        index = -2 - value.slot
        if 0 <= index < len(objs) and type(objs[index]) is Plain:
            objs[index] = value
            value.slot = index
            self.dropped -= 1


_TUPLE_MARKER = plain_marker("tuple", 0)


def _load_native() -> ModuleType | None:
    """The C data loop (`_hot.c`) if it was built; installed without a compiler, the package runs the
    Python loop, with the same results."""
    loop = native.load("modelshield.formats.pickle._hot")
    if loop is not None:
        loop.setup(
            Fresh,
            Plain,
            Blob,
            _TUPLE_MARKER,
            plain_marker,
            MARKERS,
            SHARED_WEIGHTS,
            LimitExceeded,
            Memo,
            _OFF,
            _ARENA_MAX,
        )
    return loop


_native = _load_native()


class Machine:
    """One file's opcode reader and symbolic unpickler; `run()` analyses one pickle with a fresh memo."""

    def __init__(self, source: Source, ctx: Context, judge: Judge) -> None:
        self.source = source
        self.ctx = ctx
        self.judge = judge
        self.f: BinaryIO = source.stream()
        self.seekable = self.f.seekable()
        # One raw read per call, so a stream that breaks (truncated or bomb-limited) still yields its prefix.
        self._read1: Callable[[int], bytes] = getattr(self.f, "read1", self.f.read)
        self._readinto_stream: Callable[[memoryview], int | None] = getattr(self.f, "readinto")  # noqa: B009
        self.read_error: ScanError | None = None
        self.buf = b""
        self.pos = 0
        self.lim = 0
        self.base = 0
        self.eof = False
        self.fend = NOFRAME
        self.at = 0
        self.chain = ""
        self.found: list[Finding] = []
        self.storages: dict[str, int] = {}
        limits = ctx.engine.limits
        self.max_bytes = limits.pickle_memory_bytes
        #: `find_start` searches for text pickles only before this offset (then for PROTO alone)
        self.text_search_end = 0
        self.text_search_cut = False
        self.trailing_window = limits.pickle_trailing_search_bytes
        self._nested_seen: set[bytes | tuple[int, int]] = set()
        self.reset()

    # ----------------------------------------------------------------- state per pickle
    def reset(self) -> None:
        """Fresh stack, memo and protocol, exactly like a new `pickle.load` call."""
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo = Memo()
        self.proto = 0
        self.fend = NOFRAME
        self.pending: list[Global] = []
        self.seen: set[tuple[str, str]] = set()
        self.seen_rules: set[str] = set()
        self.result: Any = None
        #: plain containers kept whole inside other containers (for evidence and state judgements)
        self.nested = 0

    @property
    def offset(self) -> int:
        return self.base + self.pos

    # ----------------------------------------------------------------- byte reading
    def _fill(self, n: int) -> None:
        """Make `n` bytes available from `pos` if the stream has them; drops consumed bytes."""
        pos = self.pos
        if pos:
            self.buf = self.buf[pos:]
            self.base += pos
            if self.fend != NOFRAME:
                self.fend -= pos
            self.pos = 0
        buf = self.buf
        while len(buf) < n and not self.eof:
            buf += self._read(max(CHUNK, n - len(buf)))
        self.buf = buf
        self.lim = len(buf)

    def _read(self, n: int) -> bytes:
        """Up to `n` bytes; at the end or on a read error, b'' and `eof` (the error is kept for later)."""
        return self._guarded(self._read1, n) or b""

    def _guarded(self, read: Callable[[_A], _R | None], arg: _A) -> _R | None:
        """`read(arg)`; None and `eof` at the end or on a read error (the error is kept for later)."""
        if self.read_error is None:
            try:
                got = read(arg)
            except ScanError as exc:
                self.read_error = exc
            else:
                if got:
                    return got
        self.eof = True
        return None

    def at_eof(self) -> bool:
        if self.pos >= self.lim:
            self._fill(1)
        return self.pos >= self.lim

    def peek(self, n: int) -> bytes:
        if self.lim - self.pos < n:
            self._fill(n)
        return self.buf[self.pos : self.pos + n]

    def read_exact(self, n: int, what: str) -> bytes:
        """`n` bytes (n small), or a Malformed error at end of data."""
        if self.lim - self.pos < n:
            self._fill(n)
            if self.lim - self.pos < n:
                raise Malformed(self.offset, f"data ends inside {what}")
        p = self.pos
        self.pos = p + n
        return self.buf[p : p + n]

    def skip(self, n: int, what: str) -> None:
        """Advance `n` bytes without buffering them."""
        avail = self.lim - self.pos
        if n <= avail:
            self.pos += n
            return
        n -= avail
        self._advance_base(self.lim)
        self.buf, self.pos, self.lim = b"", 0, 0
        if self.seekable:
            here = self.f.tell()
            end = self.f.seek(0, io.SEEK_END)
            if here + n > end:
                self._advance_base(end - here)
                self.eof = True
                raise Malformed(self.base, f"data ends inside {what} ({n} more bytes declared)")
            self.f.seek(here + n)
            self._advance_base(n)
            return
        while n:
            chunk = self._read(min(n, CHUNK))
            if not chunk:
                raise Malformed(self.base, f"data ends inside {what} ({n} more bytes declared)")
            n -= len(chunk)
            self._advance_base(len(chunk))

    def _take(self, n: int) -> bytes | Blob:
        """A length-prefixed argument: the bytes, or a `Blob` prefix when larger than KEEP."""
        p = self.pos
        end = p + n
        if end <= self.lim:
            self.pos = end
            return self.buf[p:end]
        if n <= KEEP:
            return self.read_exact(n, "a string or bytes argument")
        start = self.offset
        self._fill(KEEP)
        prefix = self.buf[self.pos : self.pos + KEEP]
        self.skip(n, "a large bytes argument")
        return Blob(prefix, n, start)

    def _newline(self) -> int | None:
        """Index in `buf` of the newline ending the current text argument; None past MAX_LINE bytes."""
        i = self.buf.find(b"\n", self.pos)
        while i < 0:
            if self.eof:
                raise Malformed(self.offset, "data ends inside a text argument")
            scanned = self.lim - self.pos
            if scanned > MAX_LINE:
                return None
            self._fill(scanned + CHUNK)
            i = self.buf.find(b"\n", self.pos + scanned)
        return i

    def _cut(self, newline: int) -> bytes:
        p = self.pos
        self.pos = newline + 1
        return self.buf[p:newline]

    def _line(self) -> bytes:
        """A newline-terminated argument (protocol 0) that must be short: a name, number or memo index."""
        newline = self._newline()
        if newline is None:
            raise LimitExceeded("pickle-line", f"text argument longer than {MAX_LINE} bytes at {self.offset}")
        return self._cut(newline)

    def _text_line(self) -> bytes | Blob:
        """A protocol-0 STRING/UNICODE argument: a `Blob` prefix when long, the rest skipped unbuffered."""
        newline = self._newline()
        if newline is not None:
            return self._cut(newline)
        start = self.offset
        prefix = self.buf[self.pos : self.pos + KEEP]
        size = self.lim - self.pos
        self._advance_base(self.lim)
        self.buf, self.pos, self.lim = b"", 0, 0
        while True:
            chunk = self._read(CHUNK)
            if not chunk:
                raise Malformed(self.offset, "data ends inside a text argument")
            found = chunk.find(b"\n")
            if found >= 0:
                self.buf, self.pos, self.lim = chunk, found + 1, len(chunk)
                return Blob(prefix, size + found, start)
            size += len(chunk)
            self._advance_base(len(chunk))

    def _advance_base(self, dropped: int) -> None:
        """Account for `dropped` bytes leaving the front of the buffer unbuffered."""
        self.base += dropped
        if self.fend != NOFRAME:
            self.fend -= dropped

    def find_start(self) -> int | None:
        """Advance to the next place a pickle can start (resynchronisation point).

        Text pickles are looked for within `trailing_window` bytes of the first garbage; the regular
        expression for them runs at a tenth of disk speed, so past the window only PROTO is searched, from
        the next 0x80 byte (found at memory speed)."""
        if not self.text_search_end:
            self.text_search_end = self.offset + self.trailing_window
        while True:
            if self.offset >= self.text_search_end:
                self.text_search_cut = True
                return self.offset if self._find_proto() else None
            found = _PICKLE_START.search(self.buf, self.pos)
            if found is not None:
                self.pos = found.start()
                return self.offset
            if self.eof:
                self.pos = self.lim
                return None
            self.pos = max(self.pos, self.lim - 2)
            self._fill(self.lim - self.pos + CHUNK)

    def _find_proto(self) -> bool:
        """Advance to the next PROTO start: from each 0x80 byte (found at memory speed), reading the
        stream into one reused buffer so that searching costs what reading does."""
        first = self.buf.find(b"\x80", self.pos)
        found = None if first < 0 else _PROTO_START.search(self.buf, first)
        if found is not None:
            self.pos = found.start()
            return True
        keep = self.buf[max(self.pos, self.lim - 2) : self.lim]  # a start cut by the end of the chunk
        self._advance_base(self.lim - len(keep))
        scratch = bytearray(CHUNK)
        scratch[: len(keep)] = keep
        view = memoryview(scratch)
        end = len(keep)
        while True:
            got = self._readinto(view[end:])
            if not got:
                self.buf, self.pos, self.lim = bytes(scratch[:end]), end, end
                return False
            end += got
            first = scratch.find(b"\x80", 0, end)
            found = None if first < 0 else _PROTO_START.search(scratch, first, end)
            if found is not None:
                start = found.start()
                self._advance_base(start)
                self.buf, self.pos = bytes(scratch[start:end]), 0
                self.lim = len(self.buf)
                return True
            tail = max(end - 2, 0)
            self._advance_base(tail)
            scratch[: end - tail] = scratch[tail:end]
            end -= tail

    def _readinto(self, view: memoryview) -> int:
        """Like `_read`, into a caller's buffer: 0 at the end or on a read error (kept for later)."""
        return self._guarded(self._readinto_stream, view) or 0

    # ----------------------------------------------------------------- findings
    def add(self, rule: Rule, evidence: str, severity: Severity | None = None, **details: Any) -> None:
        """Record a finding at the current opcode, once per evidence, bounded per pickle."""
        text = self.chain + evidence
        key = (rule.id, text)
        if key in self.seen or (len(self.seen) >= MAX_FINDINGS and rule.id in self.seen_rules):
            return
        self.seen.add(key)
        self.seen_rules.add(rule.id)
        self.found.append(self.ctx.finding(rule, text, offset=self.at, severity=severity, **details))

    def drain(self) -> list[Finding]:
        found = self.found[:]
        self.found.clear()
        return found

    def flush_pending(self) -> None:
        """Report globals imported but never called: importing alone runs module code."""
        for g in self.pending:
            if not g.called and g.verdict.rule is not None:
                self.at = g.offset
                self.add(g.verdict.rule, f"imports {g.text}{g.raw_note}: {g.verdict.reason}", g.verdict.severity)
        self.pending = []

    # ----------------------------------------------------------------- the loop
    def run(self) -> Generator[Finding, None, Any]:
        """Analyse one pickle up to its STOP; returns the value STOP pops (abstract)."""
        table = self._dispatch()  # a local, not an attribute: bound methods held by self would make a cycle
        hot = self._hot
        found = self.found
        budget = 0
        check = _BOUNDS_EVERY
        try:
            while True:
                if self.lim - self.pos > _HOT_MIN and self.buf[self.pos] in _HOT_CODES:
                    budget += hot()
                pos = self.pos
                if self.lim - pos < 16 and not self.eof:
                    self._fill(16)
                    pos = self.pos
                op = self.buf[pos]
                self.at = self.base + pos
                self.pos = pos + 1
                stop = table[op]()
                if self.pos > self.fend:
                    self._left_frame()
                if self.pos > self.lim:
                    raise Malformed(self.at, "data ends inside an opcode argument")
                if found:
                    yield from self.drain()
                if stop:
                    break
                budget += 1
                if budget > check:
                    check = budget + _BOUNDS_EVERY
                    self._check_bounds()
        except IndexError:
            if self.pos >= self.lim and self.eof:
                raise Malformed(self.offset, "pickle ends without a STOP opcode") from None
            raise Malformed(self.at, "stack underflow (opcode needs more values or a MARK)") from None
        except KeyError as exc:
            raise Malformed(self.at, f"memo has no entry {exc}") from None
        except (ValueError, OverflowError, UnicodeDecodeError, struct.error) as exc:
            raise Malformed(self.at, f"invalid opcode argument: {exc}") from None
        finally:
            self.flush_pending()
        yield from self.drain()
        return self.result

    def _hot(self) -> int:
        """The data loop: the C one (`_hot.c`) when it is built and not switched off, else `_hot_python`.
        Both leave the same state; the C loop may hand an opcode to the general loop earlier."""
        if _native is None or native.PURE_PYTHON:
            return self._hot_python()
        read: int = _native.hot(self, ITEM_CAP, _NESTED_KEPT, MAX_WEIGHT, _TUPLE_SLOTS_MAX, _HOT_SPAN, MAX_LINE)
        return read

    def _hot_python(self) -> int:
        """Run the opcodes that only move data (constants, memo, containers the pickle builds) in one
        tight loop over the buffer, with the state in locals; returns the bytes it read. It stops before
        any other opcode, before an argument that could reach the end of the buffer or frame, and
        before a case that needs the general path (a mutation of anything but a fresh container),
        leaving `pos` there: the general loop runs that one, with every check.

        The branches are ordered by how often real data pickles use them, and the pickler's fixed
        sequences are fused (a constant and the memo store after it, a dict entry's number after its
        key, a container and its MARK). A memo store at the next index, an APPEND or SETITEM of
        constants and a fetch of a stored entry are done inline; anything else calls the `Memo` or
        `_absorb` method the general branch calls, so both give the same memo, weights and findings."""
        buf = self.buf
        pos = first = self.pos
        limit = self.lim if self.fend > self.lim else self.fend
        end = limit - 9  # every fixed-size argument of an opcode starting before `end` ends by `limit`
        end = min(end, pos + _HOT_SPAN)  # the memory bound is checked between runs
        stack = self.stack
        metastack = self.metastack
        memo = self.memo
        tags = memo.tags
        objs = memo.objs
        arena = memo.arena
        tuples = memo.tuples
        dense = not memo.far
        try:
            while pos < end:
                op = buf[pos]
                if op == 0x8C:  # SHORT_BINUNICODE, with the MEMOIZE and the dict entry's number after it
                    stop = pos + 2 + buf[pos + 1]
                    if stop >= limit:
                        break
                    raw = buf[pos + 2 : stop]
                    stack.append(raw.decode("utf-8", "surrogatepass"))
                    if buf[stop] == 0x94 and dense:
                        tags.append(len(arena) << _OFF | len(raw) << 1)
                        arena += raw
                        stop += 1
                    pos = stop
                    if pos < end and buf[pos] == 0x4A:  # BININT
                        stack.append(_INT4(buf, pos + 1)[0])
                        pos += 5
                elif op in _PUT_CODES:  # MEMOIZE, BINPUT, LONG_BINPUT, PUT: inline when it stores the next index
                    if op == 0x94:
                        index = len(tags) if dense else len(memo)
                        step = 1
                    elif op == 0x72:
                        index = _UINT4(buf, pos + 1)[0]
                        step = 5
                    elif op == 0x71:
                        index = buf[pos + 1]
                        step = 2
                    else:
                        newline = buf.find(b"\n", pos + 1, limit)
                        if newline < 0 or newline - pos > MAX_LINE:
                            break
                        index = int(buf[pos + 1 : newline])
                        if index < 0:
                            break
                        step = newline + 1 - pos
                    value = stack[-1]
                    pos += step
                    kind = type(value)
                    if not dense or index != len(tags):
                        memo.put(index, value)
                        dense = not memo.far
                    elif kind is str:
                        raw = value.encode("utf-8", "surrogatepass")
                        if len(raw) < _ARENA_MAX:
                            tags.append(len(arena) << _OFF | len(raw) << 1)
                            arena += raw
                        else:
                            tags.append(memo.tag(value))
                    elif kind is Fresh and value.slot == -1:
                        value.slot = index = len(objs)
                        tags.append(-2 - index)
                        objs.append(value)
                    elif kind is tuple and len(tuples) < _TUPLE_SLOTS_MAX:
                        index = len(objs)
                        tags.append(-2 - index)
                        objs.append(value)
                        tuples[id(value)] = index
                    else:
                        tags.append(memo.tag(value))
                elif op == 0x58:  # BINUNICODE, with the BINPUT or LONG_BINPUT of the next index after it
                    size = _UINT4(buf, pos + 1)[0]
                    stop = pos + 5 + size
                    if stop > limit:
                        break
                    raw = buf[pos + 5 : stop]
                    stack.append(raw.decode("utf-8", "surrogatepass"))
                    pos = stop
                    if dense and stop + 5 <= limit and size < _ARENA_MAX:
                        put = buf[stop]
                        if put == 0x72:
                            if _UINT4(buf, stop + 1)[0] == len(tags):
                                tags.append(len(arena) << _OFF | size << 1)
                                arena += raw
                                pos = stop + 5
                        elif put == 0x71 and buf[stop + 1] == len(tags):
                            tags.append(len(arena) << _OFF | size << 1)
                            arena += raw
                            pos = stop + 2
                elif op == 0x4B:  # BININT1
                    stack.append(buf[pos + 1])
                    pos += 2
                elif op == 0x4A:  # BININT
                    stack.append(_INT4(buf, pos + 1)[0])
                    pos += 5
                elif op in {0x5D, 0x7D}:  # EMPTY_LIST, EMPTY_DICT, with the MEMOIZE and MARK after them
                    value = Fresh("list" if op == 0x5D else "dict", [])
                    stack.append(value)
                    pos += 1
                    if buf[pos] == 0x94 and dense:
                        value.slot = index = len(objs)
                        tags.append(-2 - index)
                        objs.append(value)
                        pos += 1
                        if buf[pos] == 0x28:
                            metastack.append(stack)
                            stack = []
                            pos += 1
                            if op == 0x5D:
                                # `BINGET* APPENDS`: a short list of memoised constants (a data pickle's
                                # commonest shape), what the BINGET and APPENDS branches below would do.
                                while pos < end and buf[pos] == 0x68:
                                    try:
                                        tag = tags[buf[pos + 1]]
                                    except IndexError:
                                        tag = 0
                                    stack.append(objs[-2 - tag] if tag < 0 else memo.get(buf[pos + 1]))
                                    pos += 2
                                if pos < end and buf[pos] == 0x65 and len(stack) <= ITEM_CAP:
                                    for item in stack:
                                        if type(item) not in _SCALAR_DATA:
                                            break
                                    else:
                                        value.weight = len(stack)
                                        value.items = stack
                                        stack = metastack.pop()
                                        pos += 1
                elif op in {0x61, 0x73}:  # APPEND, SETITEM
                    width = 2 if op == 0x61 else 3
                    if len(stack) < width:
                        break
                    target = stack[-width]
                    if type(target) is not Fresh or (target.kind == "dict") != (op == 0x73):
                        break
                    item = stack[-1]
                    kept = target.items
                    if (
                        target.slot >= -1
                        and target.weight < MAX_WEIGHT - 1
                        and (op == 0x61 or type(stack[-2]) in _SCALAR_DATA)
                    ):
                        # `_absorb` of one or two items, inline for constants and tuples of them
                        kind = type(item)
                        constant = kind in _SCALAR_DATA
                        if kind is tuple and _SCALARS.issuperset(map(type, item)):
                            constant = True
                            index = tuples.pop(id(item), -1)
                            if index >= 0 and objs[index] is item:
                                objs[index] = _TUPLE_MARKER
                                memo.dropped += 1
                        if constant:
                            value = stack.pop()
                            if op == 0x61:
                                target.weight += 1
                                if len(kept) < ITEM_CAP:
                                    kept.append(value)
                            else:
                                target.weight += 2
                                key = stack.pop()
                                if len(kept) < ITEM_CAP:
                                    kept.append((key, value))
                            pos += 1
                            continue
                    self.at = self.base + pos
                    items = stack[1 - width :]
                    del stack[1 - width :]
                    self._absorb(target, items, op == 0x73)
                    pos += 1
                elif op == 0x68:  # BINGET
                    try:
                        tag = tags[buf[pos + 1]]
                    except IndexError:
                        tag = 0
                    stack.append(objs[-2 - tag] if tag < 0 else memo.get(buf[pos + 1]))
                    pos += 2
                elif op in {0x65, 0x75}:  # APPENDS, SETITEMS
                    below = metastack[-1] if metastack else None
                    if not below:
                        break
                    target = below[-1]
                    if type(target) is not Fresh or (target.kind == "dict") != (op == 0x75) or target.slot < -1:
                        break
                    if not _SCALAR_DATA.issuperset(map(type, stack)):
                        self.at = self.base + pos
                        self._absorb(target, stack, op == 0x75)
                    else:
                        # Only constants: the common case, without the general bookkeeping.
                        size = len(stack)
                        weight = target.weight + size
                        if weight > MAX_WEIGHT:
                            break
                        target.weight = weight
                        kept = target.items
                        if len(kept) + size <= ITEM_CAP:
                            if op == 0x65:
                                kept.extend(stack)
                            else:
                                kept.extend(zip(stack[::2], stack[1::2], strict=False))
                        else:
                            self._absorb(target, stack, op == 0x75, weighed=True)
                    stack = metastack.pop()
                    pos += 1
                elif op == 0x6A:  # LONG_BINGET
                    index = _UINT4(buf, pos + 1)[0]
                    if index < len(tags):
                        tag = tags[index]
                        stack.append(objs[-2 - tag] if tag < 0 else memo.text(index, tag))
                    else:
                        stack.append(memo.get(index))
                    pos += 5
                elif op == 0x28:  # MARK, and the batch of items after it when its container is full
                    if stack and dense:
                        target = stack[-1]
                        if type(target) is Fresh and target.slot >= -1 and len(target.items) >= ITEM_CAP:
                            done = self._full_batch(buf, pos + 1, target)
                            if done:
                                pos = done
                                continue
                    metastack.append(stack)
                    stack = []
                    pos += 1
                elif op in _TEXT_CODES:  # INT, GET, UNICODE, FLOAT: protocol 0 text lines
                    newline = buf.find(b"\n", pos + 1, limit)
                    if newline < 0 or newline - pos > MAX_LINE:
                        break
                    line = buf[pos + 1 : newline]
                    if op == 0x56:
                        stack.append(str(line, "raw-unicode-escape"))
                    elif op == 0x67:
                        stack.append(memo.get(int(line)))
                    elif op == 0x49:
                        stack.append(False if line == b"00" else True if line == b"01" else int(line, 0))
                    else:
                        stack.append(float(line))
                    pos = newline + 1
                elif op in {0x64, 0x6C}:  # DICT, LIST: a container from the items since MARK (protocols 0, 1)
                    items = stack
                    stack = metastack.pop()
                    self.at = self.base + pos
                    kind_name = "dict" if op == 0x64 else "list"
                    stack.append(self._fresh(kind_name, items) if items else Fresh(kind_name, []))
                    pos += 1
                elif op == 0x86:  # TUPLE2
                    second = stack.pop()
                    stack[-1] = (stack[-1], second)
                    pos += 1
                elif op == 0x87:  # TUPLE3
                    third = stack.pop()
                    second = stack.pop()
                    stack[-1] = (stack[-1], second, third)
                    pos += 1
                elif op == 0x4D:  # BININT2
                    stack.append(_UINT2(buf, pos + 1)[0])
                    pos += 3
                elif op == 0x4E:  # NONE
                    stack.append(None)
                    pos += 1
                elif op == 0x47:  # BINFLOAT
                    stack.append(_FLOAT8(buf, pos + 1)[0])
                    pos += 9
                elif op == 0x85:  # TUPLE1
                    stack[-1] = (stack[-1],)
                    pos += 1
                elif op == 0x29:  # EMPTY_TUPLE
                    stack.append(())
                    pos += 1
                elif op in {0x88, 0x89}:  # NEWTRUE, NEWFALSE
                    stack.append(op == 0x88)
                    pos += 1
                elif op == 0x43:  # SHORT_BINBYTES
                    stop = pos + 2 + buf[pos + 1]
                    if stop > limit:
                        break
                    stack.append(buf[pos + 2 : stop])
                    pos = stop
                elif op == 0x74:  # TUPLE
                    items = stack
                    stack = metastack.pop()
                    stack.append(tuple(items))
                    pos += 1
                else:
                    break
        except BaseException:
            self.at = self.base + pos
            self.pos = pos + 1
            self.stack = stack
            raise
        self.pos = pos
        self.stack = stack
        return pos - first

    def _full_batch(self, buf: bytes, pos: int, target: Fresh) -> int:
        """`MARK <items> SETITEMS` (or APPENDS) into a container that already keeps ITEM_CAP items, so
        that the items only count for the memo and the weight: the bytes of memoised strings, the
        marker each small list of memoised constants leaves in the memo once its parent takes it.

        Returns where the batch ends (past SETITEMS), or 0 when it is not one (another opcode, a
        fetch of anything but a constant already held, a string that is not UTF-8, the end of the
        buffer, a frame that does not start where the last one ends, the expansion bound): nothing
        is changed then and the loop runs it opcode by opcode. The items are what pickle writes for
        a dict of names to numbers or to lists of shared names, or a list of names, numbers and pairs
        of numbers (`SHORT_BINUNICODE [MEMOIZE]`, `BININT`, `BININT1`, `BININT2`, two of them and
        `TUPLE2 [MEMOIZE]`, `EMPTY_LIST MEMOIZE MARK BINGET* APPENDS`), in frames."""
        memo = self.memo
        tags = memo.tags
        objs = memo.objs
        close = 0x75 if target.kind == "dict" else 0x65
        #: the memo's new tags, the strings' bytes for its arena, the markers for its object list
        added: list[int] = []
        pieces: list[bytes] = []
        markers: list[Any] = []
        #: memo entries a fetch in the batch promotes from the arena (`Memo.text`): index -> object slot
        promoted: dict[int, int] = {}
        shared: dict[int, Plain] = {}
        texts: list[bytes] = []  # strings not memoised, checked as UTF-8 with the pieces
        at = len(memo.arena)
        slot = len(objs)
        items = 0
        weight = 0
        lists = 0
        pairs = 0
        lim = self.lim
        fend = self.fend
        limit = lim if fend > lim else fend
        while True:
            if pos + 9 >= limit:  # every opcode here ends within 9 bytes, but for a string
                if pos == fend and pos + 9 <= lim and buf[pos] == 0x95:
                    # The frame ends here and the next starts: what the FRAME branch checks, in advance.
                    size = int.from_bytes(buf[pos + 1 : pos + 9], "little")
                    if size > sys.maxsize:
                        return 0
                    pos += 9
                    fend = pos + size
                    limit = lim if fend > lim else fend
                    continue
                if pos >= limit:
                    return 0
            op = buf[pos]
            if op in {0x8C, 0x58}:  # SHORT_BINUNICODE, BINUNICODE
                start = pos + 2 if op == 0x8C else pos + 5
                stop = start + (buf[pos + 1] if op == 0x8C else _UINT4(buf, pos + 1)[0]) if start < limit else limit
                if stop >= limit:
                    return 0
                raw = buf[start:stop]
                put = 1 if buf[stop] == 0x94 else _memo_store(buf, stop, limit, len(tags) + len(added))
                if put < 0:
                    return 0  # a store at another index than the next
                if put:
                    size = stop - start
                    if size >= _ARENA_MAX:
                        return 0
                    added.append(at << _OFF | size << 1)
                    at += size
                    pieces.append(raw)
                    stop += put
                else:
                    texts.append(raw)
                pos = stop
            elif op in {0x4A, 0x4B, 0x4D}:  # BININT, BININT1, BININT2
                pos += 5 if op == 0x4A else 2 if op == 0x4B else 3
                second = buf[pos] if pos + 6 < limit else 0
                if second in {0x4A, 0x4B, 0x4D}:
                    # a pair of numbers (`TUPLE2`), memoised: the memo keeps the shared tuple marker
                    stop = pos + (5 if second == 0x4A else 2 if second == 0x4B else 3)
                    if buf[stop] == 0x86:
                        pos = stop + 1
                        if buf[pos] == 0x94:
                            added.append(-2 - slot)
                            slot += 1
                            markers.append(_TUPLE_MARKER)
                            pairs += 1
                            pos += 1
            elif op == 0x5D:  # EMPTY_LIST, memoised: `MARK item* APPENDS` or `(item APPEND)*`
                put = _memo_store(buf, pos + 1, limit, len(tags) + len(added))
                if put <= 0:
                    return 0
                pos += 1 + put
                added.append(-2 - slot)  # the list's entry comes before what its items' fetches promote
                place = len(markers)
                markers.append(None)
                slot += 1
                count = 0
                fused = pos < limit and buf[pos] == 0x28
                if fused:
                    pos += 1
                while pos < limit:
                    code = buf[pos]
                    if code == 0x68 and pos + 2 <= limit:  # BINGET: a constant held whole, checked inline
                        width = 2
                        index = buf[pos + 1]
                        tag = tags[index] if index < len(tags) else 0
                        if tag >= 0 or type(objs[-2 - tag]) not in _SCALAR_DATA:
                            slot = self._batch_fetch(buf, pos, promoted, markers, slot)
                            if slot < 0:
                                return 0
                    else:
                        width = _ITEM_WIDTHS.get(code, 0)
                        if not width or pos + width > limit:
                            break
                        if code in {0x68, 0x6A}:
                            slot = self._batch_fetch(buf, pos, promoted, markers, slot)
                            if slot < 0:
                                return 0
                    if not fused:
                        if pos + width >= limit or buf[pos + width] != 0x61:
                            break  # not appended: the next item
                        pos += 1
                    count += 1
                    pos += width
                if fused and (pos >= limit or buf[pos] != 0x65):
                    return 0
                if count > ITEM_CAP:
                    return 0
                pos += fused
                marker = shared.get(count)
                if marker is None:
                    marker = shared[count] = plain_marker("list", count)
                markers[place] = marker
                lists += 1
                weight += count
            elif op in {0x68, 0x6A}:  # BINGET, LONG_BINGET of a constant held whole
                if pos + (2 if op == 0x68 else 5) > limit:
                    return 0
                slot = self._batch_fetch(buf, pos, promoted, markers, slot)
                if slot < 0:
                    return 0
                pos += 2 if op == 0x68 else 5
            elif op == close:
                break
            else:
                return 0
            if pos > limit:
                return 0  # a number's bytes run past the frame or buffer
            items += 1
        for strings in (pieces, texts):
            joined = b"\x00".join(strings)  # an ASCII byte ends every UTF-8 sequence: valid iff each one is
            if not joined.isascii():
                try:
                    joined.decode("utf-8", "surrogatepass")
                except UnicodeDecodeError:
                    return 0
        weight += items
        if target.weight + weight > MAX_WEIGHT or len(memo.tuples) + pairs > _TUPLE_SLOTS_MAX:
            return 0  # the bound is reached, or memoised tuples would clear the memo's table of them
        tags.extend(added)
        memo.arena += b"".join(pieces)
        objs.extend(markers)
        for index, held in promoted.items():
            tags[index] = -2 - held
        memo.dropped += lists + pairs
        target.weight += weight
        self.nested = min(self.nested + lists, max(self.nested, _NESTED_KEPT))
        self.fend = fend
        return pos + 1

    def _batch_fetch(self, buf: bytes, pos: int, promoted: dict[int, int], held: list[Any], slot: int) -> int:
        """The BINGET or LONG_BINGET at `pos` inside a full batch: the next free object slot if it fetches
        a constant, else -1. A string still in the arena is promoted as `Memo.text` would (its object
        goes to `held` at `slot`, and later fetches in the batch find it there)."""
        index = buf[pos + 1] if buf[pos] == 0x68 else _UINT4(buf, pos + 1)[0]
        if index in promoted:
            return slot
        tags = self.memo.tags
        if index >= len(tags):
            return -1
        tag = tags[index]
        if tag < 0:
            return slot if type(self.memo.objs[-2 - tag]) in _SCALAR_DATA else -1
        at = tag >> _OFF
        data = self.memo.arena[at : at + ((tag >> 1) & (_ARENA_MAX - 1))]
        held.append(bytes(data) if tag & 1 else data.decode("utf-8", "surrogatepass"))
        promoted[index] = slot
        return slot + 1

    def _check_bounds(self) -> None:
        """The analyser's memory bound (the policy's `pickle-memory-bytes`). Opcodes are not bounded:
        each takes at least one input byte, so time follows the input, and the loader's stack and memo
        grow no faster than the input either: reaching the bound is a limit of the scan, not a bomb."""
        used = ENTRY_BYTES * (len(self.stack) + len(self.metastack)) + self.memo.cost()
        if used > self.max_bytes:
            raise LimitExceeded(
                "pickle-memory-bytes",
                f"not fully analysed: the stack and memo hold more than {self.max_bytes} bytes at offset "
                f"{self.at} (pickle-memory-bytes = {self.max_bytes})",
            )

    def _left_frame(self) -> None:
        """The last opcode ended past the current frame: fine if it began after it, else a crossing."""
        fend = self.fend
        self.fend = NOFRAME
        if self.at - self.base < fend:
            self.add(
                FRAME_VIOLATION,
                f"opcode at {self.at} runs {self.pos - fend} bytes past the end of its frame "
                f"(frame ends at {self.base + fend}); older CPython executes those bytes as opcodes",
            )
            if fend >= 0:
                # Follow the loader that reads past the frame end as opcodes.
                self.pos = fend

    # ----------------------------------------------------------------- helpers
    def _pop_mark(self) -> list[Any]:
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def _int(self, n: int, signed: bool = False) -> int:
        p = self.pos
        self.pos = p + n
        return int.from_bytes(self.buf[p : p + n], "little", signed=signed)

    def _global(self, module: str, name: str) -> Global:
        if not valid_module(module):
            raise Malformed(self.at, f"invalid module name {module[:60]!r} in a global")
        resolved = resolve(module, name, self.proto)
        verdict = self.judge(resolved, self.proto)
        value = Global(resolved, verdict, resolved.dotted, self.at)
        if verdict.rule is not None:
            self.pending.append(value)
        return value

    def _opaque_global(self, rule: Rule, text: str, reason: str) -> Global:
        value = Global(None, Verdict(rule, reason), text, self.at)
        self.pending.append(value)
        return value

    def _call(self, func: Any, args: Any, how: str) -> Call | Global:
        """Record a call the loader makes: judged by its callee, with its constant arguments (a getattr
        of a named attribute gives that attribute as a global of its own)."""
        args = tuple(args) if type(args) is not tuple else args
        if type(func) is not Global:
            self.add(COMPUTED_CALL, f"{how} calls a computed object: {render(func)}({render_args(args)})")
            return Call(func, args, False)
        func.called = True
        verdict = func.verdict
        dotted = func.dotted
        tag = ""
        if dotted in _DILL_ARRAY and len(args) >= 2 and type(args[0]) is Global and type(args[1]) is tuple:
            # dill pickles every ndarray as `_create_array(f, args, state, npdict)`, which calls `f(*args)`
            # and sets the state on the result: judged as that call.
            return self._call(args[0], args[1], f"{how} through {dotted}")
        if dotted == "copyreg._reconstructor":
            verdict = self._reconstructor(args)
            if verdict.rule is None and type(args[0]) is Global and args[0].dotted in _JOBLIB_WRAPPERS:
                tag = "joblib"
            elif verdict.rule is None and type(args[0]) is Global and args[0].dotted in _NDARRAY_FILES:
                args[0].called = True  # judged by the file it names, at BUILD
                tag = "ndarray-file"
        elif dotted in _JOBLIB_WRAPPERS:
            tag = "joblib"
        elif dotted in _NDARRAY_FILES:
            verdict, tag = Verdict(None), "ndarray-file"
        elif dotted == ATTRIBUTE_GETTER:
            fetched = self._attribute(args)
            if fetched is not None:
                return fetched
        elif dotted in WRAPPERS and args and type(args[0]) is Global:
            return self._wrap(func, args, how)
        elif dotted == GRAPH_MODULE_REBUILDER:
            verdict = self._graph_module(args)
        elif verdict.rule is not None and _harmless_shape(dotted, args):
            verdict = Verdict(None)
        rule = verdict.rule
        if rule is not None:
            # A known library's data class is named once per way it is built, not once per argument list.
            low = verdict.severity is Severity.LOW
            shown = "..." if low else "<module body>, <import block>" if dotted == GRAPH_MODULE_REBUILDER else None
            shown = render_args(args) if shown is None else shown
            evidence = f"{func.text}({shown}){func.raw_note} [{how}]: {verdict.reason}"
            if rule is MODEL_DEPENDENCY:
                payloads = [_payload(a) for a in args] if dotted in PICKLE_BYTES_LOADERS else []
                hidden = any(_computed(p) for p in payloads)
                if hidden:
                    evidence += "; the data it loads is computed at load time and cannot be scanned"
                severity = Severity.CRITICAL if hidden else verdict.severity
                arguments = [plain(a) for a in args[:12]]
                # Only a constant string names a file or repository; bytes are a nested pickle, scanned below.
                loads = call_dependency(dotted, arguments) if args and type(args[0]) is str else {}
                self.add(rule, evidence, severity, callable=dotted, args=arguments, **loads)
                self._nested(payloads)
            else:
                self.add(rule, evidence, verdict.severity, callable=dotted)
        return Call(func, args, rule is None, tag)

    def _attribute(self, args: tuple[Any, ...]) -> Global | None:
        """`getattr(<imported global>, '<constant>')` is how pickle stores methods and some functions:
        the attribute is a global of its own, judged by its full name. A computed owner or name, or an
        attribute the catalogue knows to be dangerous or private, stays a gadget call as before."""
        owner, attr = args if len(args) == 2 else (None, None)
        if type(owner) is not Global or type(attr) is not str or not attr.isidentifier():
            return None
        name = owner.name
        if name is None:
            return None
        resolved = Name(name.module, f"{name.qualname}.{attr}", name.module, f"{name.qualname}.{attr}")
        verdict = self.judge.name(resolved.module, resolved.qualname)
        if verdict.rule is not None and verdict.rule is not UNKNOWN_GLOBAL:
            return None
        value = Global(resolved, verdict, f"getattr({owner.text}, {attr!r})", self.at)
        if verdict.rule is not None:
            self.pending.append(value)
        return value

    def _graph_module(self, args: tuple[Any, ...]) -> Verdict:
        """A whole torch.fx GraphModule: torch.load execs the generated forward() source the pickle
        carries (`import_block + body['_code']`), then traces it. The source is parsed and every import
        and call judged: tensor operations only is medium (code still runs at load), anything else
        critical; source that is not a constant cannot be analysed and is critical."""
        body = args[0] if args else None
        fields = dict(body.items) if type(body) is Fresh and body.kind == "dict" else {}
        code = fields.get("_code") or fields.get("code")
        imports = args[1] if len(args) > 1 else None
        if type(code) is not str or type(imports) is not str:
            return Verdict(CODE_EXECUTION, "execs the GraphModule's forward() source, which is not a constant here")
        found = analyse_generated(imports + code, "<GraphModule forward>", self.judge.catalogue)
        if found.problems:
            summary = "the code does more than compute: " + "; ".join(str(p) for p in found.problems[:3])
        else:
            ops = ", ".join(found.operations[:8]) or "no global"
            summary = f"it only calls tensor and arithmetic operations ({ops}): expect a model that carries code"
        reason = f"torch.load execs the GraphModule's generated forward() source and traces it; {summary}"
        return Verdict(CODE_EXECUTION, reason, found.severity)

    def _wrap(self, wrapper: Global, args: tuple[Any, ...], how: str) -> Call:
        """`functools.partial(f, ...)` calls nothing when built: judged as the call of `f` it prepares,
        so a partial of `os.system` is the call of `os.system`, and one of a data function is data."""
        inner = self._call(args[0], args[1:], f"{how} through {wrapper.dotted}")
        return Call(wrapper, args, inner.trusted if isinstance(inner, Call) else inner.verdict.rule is None)

    def _setstate(self, inst: Call, state: Any) -> None:
        """A known class whose `__setstate__` acts on some state keys (patsy formulas, temp files)."""
        cls = _built_class(inst)
        if cls is not None and type(state) is Plain and state.kind in ("list", "dict"):
            # A state fetched from the memo after its items were dropped: judged as if it held anything.
            verdict = self.judge.state(cls, _EVERY_KEY if state.kind == "dict" else "<computed>")
            if verdict is not None and verdict.rule is not None:
                self.add(
                    verdict.rule,
                    f"BUILD gives {cls.dotted} a state fetched from the memo, not kept: {verdict.reason}",
                    verdict.severity,
                    callable=cls.dotted,
                )
            return
        if cls is None or type(state) is not Fresh:
            return
        if state.kind == "list":
            verdict = self.judge.state(cls, _literal(state))
            if verdict is not None and verdict.rule is not None:
                self.add(verdict.rule, f"BUILD gives {cls.dotted} a list state: {verdict.reason}", verdict.severity)
            return
        if state.kind != "dict":
            return
        constants = {k: v for k, v in state.items if type(k) is str and _constant(v)}
        keys = {k: Unknown("computed") for k, _ in state.items if type(k) is str and k not in constants}
        verdict = self.judge.state(cls, {**keys, **constants})
        if verdict is not None and verdict.rule is not None:
            shown = ", ".join(sorted(k for k in (*keys, *constants) if not k.startswith("_") or k.endswith("__")))
            self.add(
                verdict.rule,
                f"BUILD gives {cls.dotted} state with keys ({truncate(shown, 160)}): {verdict.reason}",
                verdict.severity,
                callable=cls.dotted,
            )

    def _reconstructor(self, args: tuple[Any, ...]) -> Verdict:
        """`copyreg._reconstructor(cls, base, state)` is safe only with a builtin base type."""
        if (
            len(args) == 3
            and type(args[0]) is Global
            and type(args[1]) is Global
            and args[1].dotted in _RECONSTRUCTOR_BASES
        ):
            return Verdict(None)
        return Verdict(IMPORT_GADGET, "copyreg._reconstructor outside its (class, builtin type, state) shape")

    def _nested(self, payloads: list[Any]) -> None:
        """Bytes handed to a loader are a pickle (or model) of their own: scan them recursively."""
        name = f"<nested pickle @{self.at}>"
        for data in payloads:
            # A payload loaded again (through the memo, or copied) is the same bytes: scanned once.
            key = data if type(data) is bytes else (data.offset, data.size) if type(data) is Blob else None
            if key is None or key in self._nested_seen:
                continue
            self._nested_seen.add(key)
            if type(data) is bytes and data:
                self.found.extend(self.ctx.scan_member(name, BytesSource(data)))
            elif type(data) is Blob:
                self.found.extend(self.ctx.scan_member(name, SliceSource(self.source, data.offset, data.size)))

    def _persistent(self, pid: Any) -> Any:
        """The ids torch's `persistent_load` hooks accept are expected; others are reported.

        `torch.load` and `torch.package.PackageImporter` take `('storage', StorageType, key, location,
        numel[, view])` with a str key (torch.package writes an int), `('module', cls, file, source)` and
        `('reduce_package', [id,] func, args)`, which calls `func(importer, *args)`; the legacy tar
        format's hook takes a bare storage number.
        """
        kind = pid[0] if type(pid) is tuple and pid else None
        kind = kind.decode("ascii", "replace") if type(kind) is bytes else kind
        if kind == "module" and len(pid) >= 2 and type(pid[1]) is Global:
            return pid[1]  # legacy torch: a module class with its source, resolved by name
        if kind == "storage" and len(pid) in (5, 6) and _storage_id(pid[1], pid[2]):
            if type(pid[2]) is str:
                self.storages[pid[2]] = TORCH_STORAGE_SIZES.get(pid[1].dotted, 1)
            return Unknown(f"storage {pid[2]}")
        if kind == "reduce_package" and len(pid) in (3, 4) and type(pid[-1]) is tuple:
            importer = Unknown("package importer")
            return self._call(pid[-2], (importer, *pid[-1]), "persistent_load reduce_package")
        if (type(pid) is int and pid >= 0) or (type(pid) is str and pid.isdecimal()):
            return Unknown(f"storage {pid}")
        self.add(PERSISTENT_ID, f"persistent id {render(pid)} is not a torch storage reference")
        return Unknown("persistent object")

    def _mutate(self, target: Any, items: list[Any], what: str) -> None:
        """SETITEM(S)/APPEND(S)/ADDITEMS: fine on a fresh container or a trusted instance."""
        kind = type(target)
        if kind is Fresh:
            if target.kind != "dict":
                self._absorb(target, items, False)
            elif what.startswith("SETITEM"):
                self._absorb(target, items, True)
            else:
                # APPEND(S)/ADDITEMS on a dict stop the real loader (a dict has no append/extend/add), and a
                # dict's items stay (key, value) pairs: only the weight counts.
                self._absorb(target, items, True, keep=False)
            return
        if kind is Plain:
            # Only a crafted stream modifies a finished container it fetched from the memo: the marker
            # cannot follow the change, so what the container expands to from here is not counted.
            self.add(
                SCAN_BOUND,
                f"not fully analysed: {what} modifies a container of plain data fetched from the memo after "
                "it was finished; its later expansion is not counted",
            )
            return
        if kind is Call:
            return  # an untrusted call is already reported; a trusted one builds what it fills
        if kind is Global:
            self.add(
                FOREIGN_MUTATION,
                f"{what} on the global {target.text} with ({render_args(items)})",
                severity=Severity.CRITICAL,
            )
        else:
            self.add(FOREIGN_MUTATION, f"{what} on {render(target)} with ({render_args(items)})")

    # ----------------------------------------------------------------- opcodes
    def _dispatch(self) -> list[Callable[[], bool | None]]:
        ops: dict[bytes, Callable[[], bool | None]] = {
            b"(": self._mark, b".": self._stop, b"0": self._pop, b"1": self._pop_mark_op, b"2": self._dup,
            b"F": self._float, b"I": self._int_line, b"J": self._binint, b"K": self._binint1, b"L": self._long,
            b"M": self._binint2, b"N": self._none, b"P": self._persid, b"Q": self._binpersid,
            b"R": self._reduce, b"S": self._string, b"T": self._binstring, b"U": self._short_binstring,
            b"V": self._unicode, b"X": self._binunicode, b"a": self._append, b"b": self._build,
            b"c": self._global_op, b"d": self._dict, b"}": self._empty_dict, b"e": self._appends,
            b"g": self._get, b"h": self._binget, b"i": self._inst, b"j": self._long_binget, b"l": self._list,
            b"]": self._empty_list, b"o": self._obj, b"p": self._put, b"q": self._binput, b"r": self._long_binput,
            b"s": self._setitem, b"t": self._tuple, b")": self._empty_tuple, b"u": self._setitems,
            b"G": self._binfloat, b"\x80": self._proto, b"\x81": self._newobj, b"\x82": self._ext1,
            b"\x83": self._ext2, b"\x84": self._ext4, b"\x85": self._tuple1, b"\x86": self._tuple2,
            b"\x87": self._tuple3, b"\x88": self._true, b"\x89": self._false, b"\x8a": self._long1,
            b"\x8b": self._long4, b"B": self._binbytes, b"C": self._short_binbytes,
            b"\x8c": self._short_binunicode, b"\x8d": self._binunicode8, b"\x8e": self._binbytes8,
            b"\x8f": self._empty_set, b"\x90": self._additems, b"\x91": self._frozenset,
            b"\x92": self._newobj_ex, b"\x93": self._stack_global, b"\x94": self._memoize, b"\x95": self._frame,
            b"\x96": self._bytearray8, b"\x97": self._next_buffer, b"\x98": self._readonly_buffer,
        }  # fmt: skip
        table: list[Callable[[], bool | None]] = [self._invalid] * 256
        for code, handler in ops.items():
            table[code[0]] = handler
        return table

    def _invalid(self) -> None:
        raise Malformed(self.at, f"invalid opcode 0x{self.buf[self.pos - 1]:02x}")

    def _mark(self) -> None:
        self.metastack.append(self.stack)
        self.stack = []

    def _stop(self) -> bool:
        self.result = self.stack.pop()
        return True

    def _pop(self) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark()

    def _pop_mark_op(self) -> None:
        self._pop_mark()

    def _dup(self) -> None:
        self.stack.append(self.stack[-1])

    def _float(self) -> None:
        self.stack.append(float(self._line()))

    def _int_line(self) -> None:
        line = self._line()
        self.stack.append(False if line == b"00" else True if line == b"01" else int(line, 0))

    def _binint(self) -> None:
        p = self.pos
        self.pos = p + 4  # past the buffer end, the loop reports the cut once this returns
        self.stack.append(_INT4(self.buf, p)[0] if p + 4 <= self.lim else 0)

    def _binint1(self) -> None:
        p = self.pos
        self.stack.append(self.buf[p])
        self.pos = p + 1

    def _binint2(self) -> None:
        p = self.pos
        self.pos = p + 2
        self.stack.append(_UINT2(self.buf, p)[0] if p + 2 <= self.lim else 0)

    def _long(self) -> None:
        line = self._line()
        self.stack.append(int(line[:-1] if line.endswith(b"L") else line, 0))

    def _none(self) -> None:
        self.stack.append(None)

    def _true(self) -> None:
        self.stack.append(True)

    def _false(self) -> None:
        self.stack.append(False)

    def _persid(self) -> None:
        self.stack.append(self._persistent(self._line().decode("ascii")))

    def _binpersid(self) -> None:
        self.stack.append(self._persistent(self.stack.pop()))

    def _reduce(self) -> None:
        stack = self.stack
        args = _arguments(stack.pop())
        if type(args) is not tuple:
            raise Malformed(self.at, f"REDUCE arguments are {render(args)}, not a tuple")
        stack[-1] = self._call(stack[-1], args, "REDUCE")

    def _string(self) -> None:
        data = self._text_line()
        if isinstance(data, Blob):
            self.stack.append(data)
            return
        if len(data) < 2 or data[0] != data[-1] or data[0] not in b"\"'":
            raise Malformed(self.at, "the STRING opcode argument must be quoted")
        self.stack.append(codecs.escape_decode(data[1:-1])[0].decode("latin-1"))

    def _text(self, data: bytes | Blob, encoding: str) -> Any:
        return data if isinstance(data, Blob) else data.decode(encoding, "surrogatepass")

    def _binstring(self) -> None:
        n = self._int(4, True)
        if n < 0:
            raise Malformed(self.at, "BINSTRING has a negative length")
        self.stack.append(self._text(self._take(n), "latin-1"))

    def _short_binstring(self) -> None:
        self.stack.append(self._text(self._take(self._int(1)), "latin-1"))

    def _unicode(self) -> None:
        data = self._text_line()
        self.stack.append(data if isinstance(data, Blob) else str(data, "raw-unicode-escape"))

    def _binunicode(self) -> None:
        self.stack.append(self._text(self._take(self._int(4)), "utf-8"))

    def _short_binunicode(self) -> None:
        p = self.pos
        n = self.buf[p]
        end = p + 1 + n
        if end <= self.lim:
            self.pos = end
            self.stack.append(self.buf[p + 1 : end].decode("utf-8", "surrogatepass"))
        else:
            self.pos = p + 1
            self.stack.append(self._text(self._take(n), "utf-8"))

    def _binunicode8(self) -> None:
        self.stack.append(self._text(self._take(self._size8()), "utf-8"))

    def _size8(self) -> int:
        n = self._int(8)
        if n > sys.maxsize:
            raise Malformed(self.at, f"length {n} exceeds the platform's maximum size")
        return n

    def _binbytes(self) -> None:
        self.stack.append(self._take(self._int(4)))

    def _short_binbytes(self) -> None:
        self.stack.append(self._take(self._int(1)))

    def _binbytes8(self) -> None:
        self.stack.append(self._take(self._size8()))

    def _bytearray8(self) -> None:
        self.stack.append(self._take(self._size8()))

    def _next_buffer(self) -> None:
        self.stack.append(Unknown("out-of-band buffer"))

    def _readonly_buffer(self) -> None:
        if not self.stack:
            raise Malformed(self.at, "READONLY_BUFFER on an empty stack")

    def _append(self) -> None:
        value = self.stack.pop()
        self._mutate(self.stack[-1], [value], "APPEND")

    def _appends(self) -> None:
        items = self._pop_mark()
        self._mutate(self.stack[-1], items, "APPENDS")

    def _setitem(self) -> None:
        stack = self.stack
        value = stack.pop()
        key = stack.pop()
        self._mutate(stack[-1], [key, value], "SETITEM")

    def _setitems(self) -> None:
        items = self._pop_mark()
        self._mutate(self.stack[-1], items, "SETITEMS")

    def _additems(self) -> None:
        items = self._pop_mark()
        self._mutate(self.stack[-1], items, "ADDITEMS")

    def _build(self) -> None:
        stack = self.stack
        state = stack.pop()
        inst = stack[-1]
        kind = type(inst)
        if kind is Global:
            self.add(STATE_ON_GLOBAL, f"BUILD sets state {render(state)} on {inst.text}")
        elif kind is Call:
            inst.state = state
            if inst.tag == "joblib":
                stack[-1] = self._joblib_array(state)
            elif inst.tag == "ndarray-file":
                self._ndarray_file(inst, state)
            else:
                self._setstate(inst, state)
        elif kind is Unknown:
            self.add(COMPUTED_CALL, f"BUILD calls __setstate__ on {render(inst)} with {render(state)}")

    def _global_op(self) -> None:
        module = self._line().decode("utf-8")
        name = self._line().decode("utf-8")
        self.stack.append(self._global(module, name))

    def _stack_global(self) -> None:
        stack = self.stack
        name = stack.pop()
        module = stack.pop()
        if type(module) is str and type(name) is str:
            stack.append(self._global(module, name))
        elif type(module) in (Call, Unknown, Global) or type(name) in (Call, Unknown, Global):
            text = f"<dynamic import {render(module)} . {render(name)}>"
            stack.append(self._opaque_global(DYNAMIC_IMPORT, text, "the name is computed at load time"))
        else:
            raise Malformed(self.at, "STACK_GLOBAL requires two strings")

    def _inst(self) -> None:
        module = self._line().decode("ascii")
        name = self._line().decode("ascii")
        cls = self._global(module, name)
        args = self._pop_mark()
        self.stack.append(self._call(cls, args, "INST"))

    def _obj(self) -> None:
        args = self._pop_mark()
        cls = args.pop(0)
        self.stack.append(self._call(cls, args, "OBJ"))

    def _newobj(self) -> None:
        stack = self.stack
        args = _arguments(stack.pop())
        cls = stack.pop()
        if type(args) is not tuple:
            raise Malformed(self.at, "NEWOBJ arguments are not a tuple")
        stack.append(self._call(cls, args, "NEWOBJ"))

    def _newobj_ex(self) -> None:
        stack = self.stack
        kwargs = stack.pop()
        args = _arguments(stack.pop())
        cls = stack.pop()
        if type(args) is not tuple:
            raise Malformed(self.at, "NEWOBJ_EX arguments are not a tuple")
        stack.append(self._call(cls, (*args, kwargs), "NEWOBJ_EX"))

    def _fresh(self, kind: str, flat: list[Any]) -> Fresh:
        """A container built from MARK items; shared references count towards its expansion."""
        value = Fresh(kind, [])
        self._absorb(value, flat, kind == "dict")
        return value

    def _absorb(self, target: Fresh, items: list[Any], pairs: bool, keep: bool = True, weighed: bool = False) -> None:
        """`items` join `target`: its expansion weight (the billion-laughs bound) grows by them and what
        they expand to, it stays plain while they are, and the memo may drop the plain ones it held
        (`weighed`: only constants, already counted)."""
        memo = self.memo
        if target.slot < -1:
            memo.restore(target)
        weight = target.weight
        plain = target.plain
        if not weighed:
            weight += len(items)
            collapse = memo.collapse
            objs = memo.objs
            size = len(objs)
            tuples = memo.tuples
            nested = self.nested
            dropped = 0
            for position, item in enumerate(items):
                kind = type(item)
                if kind in _SCALAR_DATA:
                    continue
                if kind is Fresh:
                    # `Memo.collapse`, inline: a data pickle's top container takes millions of these.
                    weight += item.weight
                    if not item.plain:
                        plain = False
                        continue
                    index = item.slot
                    item_weight = item.weight
                    # `plain_marker`, inline for the shared small markers.
                    table = MARKERS.get(item.kind) if item_weight < SHARED_WEIGHTS else None
                    marker = table[item_weight] if table is not None else None
                    if marker is None:
                        marker = plain_marker(item.kind, item_weight)
                    if 0 <= index < size and objs[index] is item:
                        objs[index] = marker
                        item.slot = -2 - index
                        dropped += 1
                    if nested < _NESTED_KEPT:
                        nested += 1
                    else:
                        items[position] = marker  # past the bound, parents keep what it weighs, not its items
                    continue
                if kind is tuple:
                    index = tuples.pop(id(item), -1)
                    for inner in item:
                        if type(inner) not in _SCALARS:
                            plain = False
                            break
                    else:
                        if index >= 0 and objs[index] is item:
                            objs[index] = _TUPLE_MARKER
                            memo.dropped += 1
                elif kind is Plain:
                    weight += item.weight
                elif not collapse(item):
                    plain = False
            self.nested = nested
            memo.dropped += dropped
        if weight > MAX_WEIGHT:
            raise LimitExceeded(
                "pickle-expansion",
                f"container at {self.at} expands to more than {MAX_WEIGHT} elements through shared references",
            )
        target.weight = weight
        target.plain = plain
        kept = target.items
        room = ITEM_CAP - len(kept)
        if room <= 0 or not keep:
            return
        if pairs:
            kept.extend(zip(items[: room * 2 : 2], items[1 : room * 2 : 2], strict=False))
        else:
            kept.extend(items[:room])

    def _dict(self) -> None:
        items = self._pop_mark()
        self.stack.append(self._fresh("dict", items))

    def _empty_dict(self) -> None:
        self.stack.append(Fresh("dict", []))

    def _list(self) -> None:
        items = self._pop_mark()
        self.stack.append(self._fresh("list", items))

    def _empty_list(self) -> None:
        self.stack.append(Fresh("list", []))

    def _empty_set(self) -> None:
        self.stack.append(Fresh("set", []))

    def _frozenset(self) -> None:
        items = self._pop_mark()
        self.stack.append(self._fresh("frozenset", items))

    def _tuple(self) -> None:
        items = self._pop_mark()
        self.stack.append(tuple(items))

    def _empty_tuple(self) -> None:
        self.stack.append(())

    def _tuple1(self) -> None:
        self.stack[-1] = (self.stack[-1],)

    def _tuple2(self) -> None:
        stack = self.stack
        second = stack.pop()
        stack[-1] = (stack[-1], second)

    def _tuple3(self) -> None:
        stack = self.stack
        third = stack.pop()
        second = stack.pop()
        stack[-1] = (stack[-1], second, third)

    def _binfloat(self) -> None:
        p = self.pos
        self.pos = p + 8
        self.stack.append(struct.unpack(">d", self.buf[p : p + 8])[0])

    def _long1(self) -> None:
        self.stack.append(int.from_bytes(self.read_exact(self._int(1), "LONG1"), "little", signed=True))

    def _long4(self) -> None:
        n = self._int(4, True)
        if n < 0:
            raise Malformed(self.at, "LONG4 has a negative length")
        data = self._take(n)
        if isinstance(data, Blob):
            self.stack.append(Unknown(f"{n}-byte integer"))
        else:
            self.stack.append(int.from_bytes(data, "little", signed=True))

    def _get(self) -> None:
        self.stack.append(self.memo.get(int(self._line())))

    def _binget(self) -> None:
        p = self.pos
        self.stack.append(self.memo.get(self.buf[p]))
        self.pos = p + 1

    def _long_binget(self) -> None:
        self.stack.append(self.memo.get(self._int(4)))

    def _put(self) -> None:
        index = int(self._line())
        if index < 0:
            raise Malformed(self.at, "negative PUT argument")
        self.memo.put(index, self.stack[-1])

    def _binput(self) -> None:
        p = self.pos
        self.memo.put(self.buf[p], self.stack[-1])
        self.pos = p + 1

    def _long_binput(self) -> None:
        self.memo.put(self._int(4), self.stack[-1])

    def _memoize(self) -> None:
        memo = self.memo
        memo.put(len(memo), self.stack[-1])

    def _proto(self) -> None:
        proto = self._int(1)
        if not 0 <= proto <= 5:
            raise Malformed(self.at, f"unsupported pickle protocol {proto}")
        self.proto = proto

    def _frame(self) -> None:
        start = self.pos - 1
        size = self._size8()
        if self.fend != NOFRAME and start < self.fend:
            self.add(FRAME_VIOLATION, f"FRAME at {self.at} starts before the current frame ends")
        self.fend = self.pos + size

    def _ext(self, code: int) -> None:
        if code <= 0:
            raise Malformed(self.at, "EXT specifies code <= 0")
        self.stack.append(
            self._opaque_global(
                EXTENSION_GLOBAL,
                f"<extension code {code}>",
                "resolved through copyreg's extension registry, not named in the file",
            )
        )

    def _ext1(self) -> None:
        self._ext(self._int(1))

    def _ext2(self) -> None:
        self._ext(self._int(2))

    def _ext4(self) -> None:
        self._ext(self._int(4, True))

    # ----------------------------------------------------------------- joblib inline arrays
    def _joblib_array(self, state: Any) -> Any:
        """Emulate joblib's `NumpyUnpickler.load_build`: array bytes (or a nested pickle) follow inline."""
        pairs = state.items if type(state) is Fresh and state.kind == "dict" else []
        fields = {key: value for key, value in pairs if type(key) is str}
        shape = fields.get("shape")
        dtype = fields.get("dtype")
        if type(shape) is not tuple or not all(type(d) is int and d >= 0 for d in shape) or type(dtype) is not Call:
            raise Malformed(self.at, "joblib NumpyArrayWrapper state has no readable shape and dtype")
        if self.fend != NOFRAME and self.pos < self.fend:
            self.add(FRAME_VIOLATION, "joblib array data starts inside a frame")
        self.fend = NOFRAME  # joblib commits the frame before writing the array: the data is outside it
        layout = _dtype_layout(dtype)
        if layout is None:
            raise Malformed(self.at, f"joblib array dtype {render(dtype)} is not understood")
        itemsize, has_object = layout
        if has_object:
            return self._inline_pickle()
        start = self.offset
        if fields.get("numpy_array_alignment_bytes") is not None:
            padding = self.read_exact(1, "joblib array padding")[0]
            self.skip(padding, "joblib array padding")
        count = 1
        for dim in shape:
            count *= dim
        self.skip(count * itemsize, "joblib array data")
        if self.seekable and not isinstance(self.source, DecodedSource):
            self._array_as_opcodes(start, self.offset - start)
        return Unknown("ndarray")

    def _ndarray_file(self, inst: Call, state: Any) -> None:
        """joblib <= 0.9: `joblib.load` replaces the wrapper by `numpy.load(os.path.join(dirname, filename),
        allow_pickle=True)`, which unpickles an object array's pickle. A plain name beside the file is a
        dependency (scanned with it); a name that leaves the folder, or one the pickle computes, is a read
        of a file the model does not hold."""
        pairs = state.items if type(state) is Fresh and state.kind == "dict" else []
        name = next((value for key, value in pairs if key == "filename"), None)
        wrapper = render(inst.func)
        how = "joblib.load reads its array with numpy.load(allow_pickle=True), which unpickles object arrays"
        reason = (escape_reason(name) or None) if type(name) is str and name else "is not a constant name"
        if reason is None:
            dependency = named(name, "joblib array file", hub=False)
            details = dependency.details() if dependency is not None else {}
            self.add(DEPENDENCY, f"{wrapper}: {how}, from {name!r} beside this file", callable=wrapper, **details)
        else:
            shown = render(name) if name is not None else "<no file name>"
            self.add(SYSTEM_ACCESS, f"{wrapper}: {how}, from {shown}, which {reason}", callable=wrapper)

    def _array_as_opcodes(self, start: int, size: int) -> None:
        """`pickle.load` (unlike `joblib.load`) reads the bytes after the wrapper's BUILD as opcodes: calls
        they would make are reported too. Real array data breaks at its first byte (joblib's padding
        length is no opcode), so this costs nothing on real files."""
        first = self.source.read_at(start, 1)
        if not first or self._dispatch()[first[0]] == self._invalid:
            return
        view = Machine(SliceSource(self.source, start, size), self.ctx, self.judge)
        view.base = start
        view.chain = f"{self.chain}[joblib array bytes @{start} as pickle.load reads them] "
        try:
            found = list(view.run())
        except (Malformed, ScanError):
            found = view.drain()
        self.found.extend(f for f in found if f.level >= Severity.HIGH)

    def _inline_pickle(self) -> Any:
        """An object array's nested pickle, read in place with its own stack and memo."""
        saved = (self.stack, self.metastack, self.memo, self.proto, self.pending, self.chain, self.result)
        start = self.offset
        self.stack, self.metastack, self.memo, self.proto, self.pending = [], [], Memo(), 0, []
        self.chain = f"{self.chain}[joblib object array @{start}] "
        try:
            yielded = list(self.run())
        finally:
            self.stack, self.metastack, self.memo, self.proto, self.pending, self.chain, result = saved
            self.result = result
        self.found.extend(yielded)
        return Unknown("object ndarray")


_BYTES_WRAPPERS = frozenset(["io.BytesIO", "builtins.bytearray", "builtins.bytes", "builtins.memoryview"])
_LATIN1 = frozenset(["latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"])


def _memo_store(buf: bytes, pos: int, limit: int, index: int) -> int:
    """The length of the memo store at `pos` if it stores `index` (MEMOIZE, BINPUT, LONG_BINPUT), 0 if
    there is none, -1 if it stores another index (or runs past `limit`)."""
    if pos >= limit:
        return 0
    op = buf[pos]
    if op == 0x94:
        return 1
    if op == 0x71:
        return 2 if pos + 2 <= limit and buf[pos + 1] == index else -1
    if op == 0x72:
        return 5 if pos + 5 <= limit and _UINT4(buf, pos + 1)[0] == index else -1
    return 0


def _payload(value: Any) -> Any:
    """What a loader reads from an argument, through `io.BytesIO(b)`, `bytearray(b)` and the way
    protocol 2 spells bytes, `_codecs.encode(text, 'latin1')`; a wrapper call it cannot see through
    stays as it is."""
    while type(value) is Call and type(value.func) is Global and value.args:
        dotted = value.func.dotted
        inner = value.args[0]
        if dotted == "codecs.encode" and type(inner) is str:
            encoding = value.args[1] if len(value.args) > 1 else "utf-8"
            if type(encoding) is not str or encoding.lower() not in _LATIN1:
                return value
            try:
                return inner.encode("latin-1")
            except UnicodeEncodeError:
                return value
        if dotted not in _BYTES_WRAPPERS:
            return value
        value = inner
    return value


def _arguments(args: Any) -> Any:
    """Call arguments: a tuple of plain data fetched from the memo after it was collapsed (see `Memo`)
    is one argument the scan cannot see, so the callee is still judged and nothing past it is lost."""
    if type(args) is Plain and args.kind == "tuple":
        return (Unknown("tuple fetched from the memo, not kept"),)
    return args


class _EveryKey(Mapping[str, object]):
    """The state of a dict whose items were not kept: any key may be there, none with a known value."""

    def __getitem__(self, key: str) -> object:
        return Unknown("computed")

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_EVERY_KEY = _EveryKey()


def _built_class(inst: Call) -> Name | None:
    """The class an instance was created from: `cls(...)`, `cls.__new__` through NEWOBJ, or
    `copyreg._reconstructor(cls, base, state)`."""
    func = inst.func
    if type(func) is not Global or func.name is None:
        return None
    if func.dotted == "copyreg._reconstructor" and inst.args and type(inst.args[0]) is Global:
        return inst.args[0].name
    return func.name


def _literal(value: Any) -> Any:
    """The value as plain Python data (tuples, lists, constants); what the pickle computes, or what lies
    past the bounds, becomes the text '<computed>', which no catalogue grammar accepts as data."""
    budget = [_LITERAL_NODES]  # memo references can make a small stream a huge tree: bound the walk

    def walk(item: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            return "<computed>"
        if _constant(item) and type(item) is not Blob:
            return item
        if depth < _LITERAL_DEPTH and type(item) is tuple:
            return tuple(walk(v, depth + 1) for v in item)
        if depth < _LITERAL_DEPTH and type(item) is Fresh and item.kind == "list":
            return [walk(v, depth + 1) for v in item.items]
        return "<computed>"

    return walk(value, 0)


#: How deep and how many values `_literal` follows (a CLDR plural rule is about 12 deep, 200 values).
_LITERAL_DEPTH, _LITERAL_NODES = 80, 100_000


def _constant(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float, str, bytes, Blob)


def _harmless_shape(dotted: str, args: tuple[Any, ...]) -> bool:
    """Gadget callables in the one shape serializers use them for data: `type(None)` (how typing
    pickles `Optional`) and `operator.getitem(<typing or abc generic>, <types>)` (`List[int]`)."""
    if dotted == "builtins.type":
        return len(args) == 1 and (args[0] is None or type(args[0]) in (bool, int, float, str, bytes))
    if dotted == SUBSCRIPT and len(args) == 2 and type(args[0]) is Global and args[0].name is not None:
        return args[0].name.module in ("typing", "collections.abc") and args[0].verdict.rule is None
    return False


def _computed(payload: Any) -> bool:
    """Data a loader gets from a load-time computation (an untrusted call, a bytes wrapper around a
    value we cannot read, an out-of-band object): its content is invisible to the scan."""
    if type(payload) is Unknown:
        return True
    if type(payload) is not Call:
        return False
    func = payload.func
    return not payload.trusted or (type(func) is Global and func.dotted in (*_BYTES_WRAPPERS, "codecs.encode"))


_PROTO_START = re.compile(rb"\x80[\x00-\x05][\x28-\x98]")
_PICKLE_START = re.compile(rb"\x80[\x00-\x05][\x28-\x98]|[ci][A-Za-z_][\w.]{0,200}\n[\w.<>]{1,200}\n")
"""Where a pickle can start: PROTO and a plausible first opcode, or the GLOBAL or INST opcode with which
every protocol 0/1 payload imports its callable."""


def _storage_id(storage_type: Any, key: Any) -> bool:
    """A storage reference names a trusted storage class and a str key (int in torch.package)."""
    if type(storage_type) is not Global or storage_type.verdict.rule is not None:
        return False
    return type(key) is str or (type(key) is int and key >= 0)


def _dtype_layout(dtype: Call) -> tuple[int, bool] | None:
    """(itemsize, has objects) of a pickled `numpy.dtype(code, align, copy)` plus its BUILD state."""
    code = dtype.args[0] if dtype.args else None
    if type(code) is not str:
        return None
    state = dtype.state
    elsize = state[5] if type(state) is tuple and len(state) > 7 and type(state[5]) is int else -1
    flags = state[7] if type(state) is tuple and len(state) > 7 and type(state[7]) is int else 0
    match = _DTYPE_CODE.fullmatch(code)
    if match is None:
        return None
    kind, digits = match.groups()
    if kind == "O" or flags & 1:
        return 8, True
    if elsize > 0:
        return elsize, False
    if not digits:
        return (1, False) if kind in "?bB" else (0, False)
    size = int(digits)
    return (size * 4 if kind == "U" else size), False
