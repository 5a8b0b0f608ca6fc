"""The pickle handler: finds every pickle in a file (stacked, legacy torch, after garbage) and scans each."""

from __future__ import annotations

import gc
import re
from collections.abc import Generator, Iterator
from typing import Any, NamedTuple

from modelshield.core.callables import Trust
from modelshield.core.dependency_rules import DEPENDENCY
from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Severity
from modelshield.core.source import HEAD, DecodedSource, Source
from modelshield.formats.pickle.machine import Machine, Malformed
from modelshield.formats.pickle.names import Judge, valid_module
from modelshield.formats.pickle.rules import MALFORMED, PICKLE_RULES, SCAN_BOUND, TRAILING_DATA
from modelshield.formats.pickle.values import Fresh

#: `torch.save`'s legacy format starts with a pickle of this number (torch.serialization.MAGIC_NUMBER).
TORCH_MAGIC = 0x1950A86A20F9469CFC6C
MAX_RESYNC = 64
"""Candidate pickles tried after garbage before giving up on the rest of the file."""

Parse = Generator[Finding, None, bool]


class PickleHandler(Handler):
    name = "pickle"
    label = "Python pickle (PyTorch, joblib, scikit-learn)"
    extensions = frozenset(
        {".pkl", ".pickle", ".pk", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".dill", ".sav", ".p", ".th"}
    )
    rules = (*PICKLE_RULES, DEPENDENCY)
    allowlists = ("pickle-globals",)

    def detect(self, source: Source) -> bool:
        head = source.head()
        if head[:1] == b"\x80" and head[1:2] not in (b"\x00", b"\x01"):
            return _PROTO.match(head) is not None
        seen = _plausible_old_pickle(head)
        if isinstance(seen, _Cut) and seen.ran_call:
            return True  # the loader imported and called something, wherever the stream breaks
        if isinstance(seen, _Cut) and not _enough(seen) and len(head) >= HEAD:
            # A long first argument (a command string, a big text constant) ran past the head: look
            # further, so padding cannot push a text pickle's evidence out of sight.
            seen = _plausible_old_pickle(source.head(_LONG_WINDOW))
        if not isinstance(seen, _Cut):
            return seen
        if seen.ran_call or _enough(seen):
            return True
        # Still cut: a named global before the cut is what a loader would import and call.
        size = None if isinstance(source, DecodedSource) else source.size
        return seen.named and (seen.end is None or size is None or seen.end <= size)

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        judge = Judge(Trust(ctx.policy.allowed("pickle-globals")))
        # The machine makes no reference cycles (tests/core/test_memory.py), so reference counting frees
        # all it builds; the cyclic collector would only walk its memo again and again (millions of
        # entries in data pickles: more than half the time of a large scan), so it waits until the end.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            yield from _FileScan(Machine(source, ctx, judge), ctx).run()
        finally:
            if paused:
                gc.enable()


class _FileScan:
    """Walks a file pickle by pickle, as a loader calling `pickle.load` in a loop would, to its end."""

    def __init__(self, vm: Machine, ctx: Context) -> None:
        self.vm = vm
        self.ctx = ctx
        self.values: list[Any] = []

    def run(self) -> Iterator[Finding]:
        try:
            yield from self._pickles()
        except LimitExceeded as exc:
            if exc.limit != "pickle-memory-bytes":
                raise
            yield from self.vm.drain()
            yield self._finding(SCAN_BOUND, self.vm.at, exc.detail)
            return
        vm = self.vm
        if vm.text_search_cut:
            yield self._finding(
                SCAN_BOUND,
                vm.text_search_end,
                f"not fully analysed: after offset {vm.text_search_end} only binary pickles (PROTO) were "
                f"searched for (pickle-trailing-search-bytes = {vm.trailing_window})",
            )
        if self.vm.read_error is not None:
            raise self.vm.read_error  # the bytes that could be read were analysed; the rest was not

    def _pickles(self) -> Iterator[Finding]:
        vm = self.vm
        yield from self._first()
        resyncs = 0
        after_stop = bool(self.values)
        while not vm.at_eof():
            if after_stop:
                after_stop = yield from self._next_after_stop()
                if after_stop:
                    if self._is_legacy_torch():
                        walked = yield from self._walk_storages()
                        if not walked:
                            return
                    continue
            resyncs += 1
            if resyncs > MAX_RESYNC:
                yield self._finding(
                    SCAN_BOUND,
                    vm.offset,
                    f"not fully analysed: {MAX_RESYNC} candidate pickles after unreadable bytes were tried; "
                    "the rest of the file was not searched",
                )
                return
            if vm.find_start() is None:
                return
            after_stop = yield from self._resynced()

    def _first(self) -> Iterator[Finding]:
        """The pickle at offset 0: findings stream out as they are made."""
        vm = self.vm
        try:
            self.values.append((yield from vm.run()))
        except Malformed as exc:
            yield from vm.drain()
            yield self._finding(MALFORMED, exc.offset, f"pickle breaks at offset {exc.offset}: {exc.message}")

    def _candidate(self) -> Generator[Finding, None, tuple[list[Finding], Malformed | None]]:
        """Parse one more pickle, holding its findings until we know it is one (bounds still fail)."""
        vm = self.vm
        vm.reset()
        held: list[Finding] = []
        gen = vm.run()
        try:
            while True:
                held.append(next(gen))
        except StopIteration as stop:
            self.values.append(stop.value)
            return held, None
        except Malformed as exc:
            held.extend(vm.drain())
            return held, exc
        except ScanError:
            yield from held
            yield from vm.drain()
            raise

    def _next_after_stop(self) -> Parse:
        """Bytes after a STOP: another stacked pickle, a broken one, or garbage."""
        start = self.vm.offset
        proto = _PROTO.match(self.vm.peek(3)) is not None
        held, error = yield from self._candidate()
        if error is None:
            yield from held
            return True
        if held or proto:
            yield from held
            yield self._finding(MALFORMED, error.offset, f"pickle at {start} breaks at {error.offset}: {error.message}")
        else:
            yield self._finding(
                TRAILING_DATA,
                start,
                f"{error.offset - start}+ bytes after the pickle that ends at {start} "
                f"are not a pickle ({error.message})",
            )
        return False

    def _resynced(self) -> Parse:
        """A pickle found after garbage: reported if complete, or if it already did something dangerous."""
        start = self.vm.offset
        held, error = yield from self._candidate()
        if error is None:
            yield from held
            return True
        serious = [f for f in held if f.level >= Severity.HIGH]
        if serious:
            yield from serious
            yield self._finding(MALFORMED, error.offset, f"pickle at {start} breaks at {error.offset}: {error.message}")
        return False

    def _is_legacy_torch(self) -> bool:
        values = self.values
        return len(values) == 5 and values[0] == TORCH_MAGIC and type(values[0]) is int

    def _walk_storages(self) -> Parse:
        """Legacy `torch.save` writes each storage as an 8-byte count and raw bytes after the key list.

        Returns False when the layout cannot be followed (a key whose storage type is unknown): the rest
        is then taken as tensor data, as `torch.load` would.
        """
        vm = self.vm
        keys = self.values[4]
        if type(keys) is not Fresh or keys.kind != "list":
            return False
        for key in keys.items:
            size = vm.storages.get(key) if type(key) is str else None
            if size is None:
                return False
            start = vm.offset
            try:
                count = int.from_bytes(vm.read_exact(8, "a legacy torch storage header"), "little")
                vm.skip(count * size, f"legacy torch storage {key!r}")
            except Malformed as exc:
                yield self._finding(MALFORMED, start, f"legacy torch storage data is truncated: {exc.message}")
                return False
        return True

    def _finding(self, rule: Any, offset: int, evidence: str) -> Finding:
        return self.ctx.finding(rule, evidence, offset=offset)


# --------------------------------------------------------------------------- detection
_PROTO = re.compile(rb"\x80[\x02-\x05][\x28-\x98]")
_NAME = re.compile(r"[\w<>]+(\.[\w<>]+)*\Z")
_HEAD_MIN_OPS = 8
#: How far detection reads when a long argument hides what follows it.
_LONG_WINDOW = 1024 * 1024
_STRUCTURE = frozenset(b"(tlduesRbio\x85\x86\x87\x81\x90\x92\x93")
#: opcodes that call what is on the stack (REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX, BUILD's __setstate__)
_CALLS = frozenset(b"Rio\x81\x92b")

# opcode -> (argument kind, values popped, values pushed, takes a MARK)
_OPS: dict[int, tuple[str, int, int, bool]] = {
    ord("("): ("", 0, 0, False), ord("."): ("", 1, 0, False), ord("0"): ("", 1, 0, False),
    ord("1"): ("", 0, 0, True), ord("2"): ("", 1, 2, False), ord("F"): ("float", 0, 1, False),
    ord("I"): ("int", 0, 1, False), ord("J"): ("4", 0, 1, False), ord("K"): ("1", 0, 1, False),
    ord("L"): ("long", 0, 1, False), ord("M"): ("2", 0, 1, False), ord("N"): ("", 0, 1, False),
    ord("P"): ("line", 0, 1, False), ord("Q"): ("", 1, 1, False), ord("R"): ("", 2, 1, False),
    ord("S"): ("string", 0, 1, False), ord("T"): ("len4", 0, 1, False), ord("U"): ("len1", 0, 1, False),
    ord("V"): ("line", 0, 1, False), ord("X"): ("len4", 0, 1, False), ord("a"): ("", 2, 1, False),
    ord("b"): ("", 2, 1, False), ord("c"): ("global", 0, 1, False), ord("d"): ("", 0, 1, True),
    ord("}"): ("", 0, 1, False), ord("e"): ("", 1, 1, True), ord("g"): ("int", 0, 1, False),
    ord("h"): ("1", 0, 1, False), ord("i"): ("global", 0, 1, True), ord("j"): ("4", 0, 1, False),
    ord("l"): ("", 0, 1, True), ord("]"): ("", 0, 1, False), ord("o"): ("", 0, 1, True),
    ord("p"): ("int", 1, 1, False), ord("q"): ("1", 1, 1, False), ord("r"): ("4", 1, 1, False),
    ord("s"): ("", 3, 1, False), ord("t"): ("", 0, 1, True), ord(")"): ("", 0, 1, False),
    ord("u"): ("", 1, 1, True), ord("G"): ("8", 0, 1, False), ord("B"): ("len4", 0, 1, False),
    ord("C"): ("len1", 0, 1, False), 0x80: ("1", 0, 0, False), 0x81: ("", 2, 1, False), 0x82: ("1", 0, 1, False),
    0x83: ("2", 0, 1, False), 0x84: ("4", 0, 1, False), 0x85: ("", 1, 1, False), 0x86: ("", 2, 1, False),
    0x87: ("", 3, 1, False), 0x88: ("", 0, 1, False), 0x89: ("", 0, 1, False), 0x8A: ("len1", 0, 1, False),
    0x8B: ("len4", 0, 1, False), 0x8C: ("len1", 0, 1, False), 0x8D: ("len8", 0, 1, False),
    0x8E: ("len8", 0, 1, False), 0x8F: ("", 0, 1, False), 0x90: ("", 1, 1, True), 0x91: ("", 0, 1, True),
    0x92: ("", 3, 1, False), 0x93: ("", 2, 1, False), 0x94: ("", 1, 1, False), 0x95: ("8", 0, 0, False),
    0x96: ("len8", 0, 1, False), 0x97: ("", 0, 1, False), 0x98: ("", 1, 1, False),
}  # fmt: skip
"""Every opcode the loader accepts, whatever the protocol: headless streams may mix them."""


def looks_like_pickle(head: bytes) -> bool:
    """PROTO 2..5 at offset 0, or a protocol 0/1 head (the loader accepts `PROTO 0` and `PROTO 1`
    too, though no pickler writes them) that parses strictly as pickle opcodes."""
    if head[:1] == b"\x80" and head[1:2] not in (b"\x00", b"\x01"):
        return _PROTO.match(head) is not None
    seen = _plausible_old_pickle(head)
    return (seen.ran_call or _enough(seen)) if isinstance(seen, _Cut) else seen


class _Cut(NamedTuple):
    """The window ended before STOP (possibly inside an argument): what was seen up to there."""

    ops: int
    structured: bool
    #: a GLOBAL or INST with importable-looking names was parsed
    named: bool
    #: where a length-prefixed argument that ran past the window ends; None for text lines
    end: int | None
    #: a call on an imported global was parsed: whatever follows (an end, a cut or an opcode the loader
    #: rejects), the loader has made that call, so the bytes are a pickle to analyse up to any break
    ran_call: bool = False


def _enough(seen: _Cut) -> bool:
    return seen.ops >= _HEAD_MIN_OPS and seen.structured


def _plausible_old_pickle(head: bytes) -> bool | _Cut:
    """Simulate stack depth over the head: text, JSON, CSV and source code fail within a few bytes.

    Where the loader would reject an opcode, the head is still a pickle if a call on an imported
    global came before: the loader has run it by then (see `_Cut.ran_call`)."""
    depth = 0
    marks: list[int] = []
    ops = 0
    structured = False
    named = False
    called = False
    pos = 0
    size = len(head)
    while pos < size:
        spec = _OPS.get(head[pos])
        if spec is None:
            return _broken(ops, called)
        kind, pops, pushes, mark = spec
        op = head[pos]
        pos += 1
        if kind:
            end = _skip_arg(head, pos, kind)
            if end is None:
                return _broken(ops, called)
            if end < 0:  # the argument runs past the head: judge what we have
                return _Cut(ops, structured, named, _declared_end(head, pos, kind), called)
            pos = end
            named = named or kind == "global"
        if op == ord("("):
            marks.append(depth)
            depth = 0
        elif mark:
            if not marks:
                return _broken(ops, called)
            depth = marks.pop()
        if depth < pops:
            return _broken(ops, called)
        depth += pushes - pops
        ops += 1
        structured = structured or op in _STRUCTURE or kind == "global"
        called = called or (named and op in _CALLS)
        if op == ord("."):
            return not marks and depth == 0 and ops >= 2
    # The head ends before STOP: the caller judges whether enough valid structure was seen.
    return _Cut(ops, structured, named, None)


def _broken(ops: int, called: bool) -> bool | _Cut:
    """Where the loader rejects an opcode: a pickle only if it made a call before (see `_Cut.ran_call`)."""
    return _Cut(ops, True, True, None, True) if called else False


def _declared_end(head: bytes, pos: int, kind: str) -> int | None:
    """Where a length-prefixed argument ends by its own length field (None for other arguments)."""
    if not kind.startswith("len") or pos + int(kind[3:]) > len(head):
        return None
    width = int(kind[3:])
    return pos + width + int.from_bytes(head[pos : pos + width], "little")


def _skip_arg(head: bytes, pos: int, kind: str) -> int | None:
    """End of an opcode argument; -1 if it runs past the head; None if the loader would reject it."""
    if kind.isdigit():
        end = pos + int(kind)
        return end if end <= len(head) else -1
    if kind.startswith("len"):
        width = int(kind[3:])
        if pos + width > len(head):
            return -1
        end = pos + width + int.from_bytes(head[pos : pos + width], "little")
        return end if end <= len(head) else -1
    lines = 2 if kind == "global" else 1
    end = pos
    parts = []
    for _ in range(lines):
        nl = head.find(b"\n", end)
        if nl < 0:
            return -1 if len(head) >= HEAD else None  # cut by the head, or really unterminated
        parts.append(head[end:nl])
        end = nl + 1
    return end if _valid_line(kind, parts) else None


def _valid_line(kind: str, parts: list[bytes]) -> bool:
    if kind == "line":
        return True  # UNICODE is raw-unicode-escape and PERSID free text: any bytes decode
    try:
        text = [p.decode("utf-8" if kind == "global" else "latin-1") for p in parts]
        if kind == "global":
            return valid_module(text[0]) and _NAME.match(text[1]) is not None
        if kind == "int" and text[0] in ("00", "01"):
            return True  # INT's spelling of False and True
        if kind in ("int", "long"):
            int(text[0][:-1] if kind == "long" and text[0].endswith("L") else text[0], 0)
        elif kind == "float":
            float(text[0])
        elif kind == "string":
            return len(text[0]) >= 2 and text[0][0] == text[0][-1] and text[0][0] in "'\""
    except (UnicodeDecodeError, ValueError):
        return False
    return True
