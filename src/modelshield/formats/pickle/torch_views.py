"""Tensor views of torch zip archives: `_rebuild_tensor_v2(storage, offset, size, stride)` judged against the
storage it views.

`torch.save` (and `torch.jit.save`, `torch.package`) write each storage as a zip record and pickle every
tensor as a call of a `torch._utils` rebuild function with the storage's persistent id
`('storage', <Type>Storage, key, location, numel)`, a storage offset, sizes and strides. The loader reads
`numel * element size` bytes from the record and calls `tensor.set_(storage, offset, size, stride)`. A
view whose last element lies past the storage, or with negative strides or offset, is never written by
torch: torch 2.13 refuses it (the storage read from the record is not resizable), but readers that trust
the pickled geometry (older releases, converters, C++ and mobile loaders, tools that map the records
themselves) read or write past the buffer. The pickle analyser judges the calls; this companion reads
the same pickles' opcodes (no unpickling) and compares each view with its record.
"""

from __future__ import annotations

import pickletools
import zipfile
import zlib
from collections.abc import Iterator
from typing import NamedTuple

from modelshield.core.callables import TORCH_STORAGE_SIZES
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import Source
from modelshield.formats._archive import zip_names

VIEW_PAST_STORAGE = Rule(
    id="TEN001",
    title="Tensor view reaches past its storage",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="A pickled tensor of a torch archive views its storage with an offset, sizes and strides whose "
    "last element lies past the storage (its persistent id's element count, or its zip record's size), or "
    "with negative strides or offset. `torch.save` never writes such a view.",
    attack="Hand-edited geometry makes a reader that trusts it read memory past the storage buffer (leaking "
    "heap contents into the model's outputs) or write past it; torch 2.13 refuses the view when it loads the "
    "file, but converters, older releases and native loaders of the same format may not check it.",
    impact="Out-of-bounds memory reads or writes in native code that rebuilds the tensor; at least a file "
    "that does not load.",
    remediation="Do not use the file; re-export the checkpoint from its source with `torch.save` or convert "
    "the weights with a tool that validates shapes.",
    example="A storage of 4 floats viewed as `_rebuild_tensor_v2(storage, 0, (4096,), (1,), ...)`.",
)

MAX_PICKLE = 64 << 20
"""Bytes of one pickle read for its tensor views; larger ones are left to the pickle analyser."""
MAX_FINDINGS = 10
_REBUILDS = frozenset({"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_qtensor"})
_STRINGS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"}
)
_INTS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"})
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}


class _Global(NamedTuple):
    module: str
    name: str


class _Storage(NamedTuple):
    key: str
    element: int
    numel: int


_MARK = object()
_OPAQUE = object()


def _storage(pid: object) -> object:
    """A storage persistent id `('storage', <Type>Storage, key, location, numel)`, or opaque."""
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Global)):
        return _OPAQUE
    element = TORCH_STORAGE_SIZES.get(f"{pid[1].module}.{pid[1].name}")
    # torch.save keys storages by str, torch.package by int
    if element is None or not isinstance(pid[2], (str, int)) or not isinstance(pid[4], int):
        return _OPAQUE
    return _Storage(str(pid[2]), element, pid[4])


def views(data: bytes) -> Iterator[tuple[int, _Storage, int, tuple[int, ...], tuple[int, ...]]]:
    """(opcode offset, storage, offset, size, stride) of every tensor rebuild call in a pickle, read with
    the opcodes' stack effects; stops quietly where the stream is not a plain torch pickle."""
    stack: list[object] = []
    marks: list[int] = []
    memo: dict[object, object] = {}
    try:
        for op, arg, pos in pickletools.genops(data):
            name = op.name
            if name == "MARK":
                marks.append(len(stack))
            elif name == "TUPLE":
                start = marks.pop()
                stack[start:] = [tuple(stack[start:])]
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                if len(stack) < n:
                    return
                stack[len(stack) - n :] = [tuple(stack[len(stack) - n :])]
            elif (name in _INTS and isinstance(arg, int) and not isinstance(arg, bool)) or name in _STRINGS:
                stack.append(arg)
            elif name in _CONSTANTS:
                stack.append(_CONSTANTS[name])
            elif name == "GLOBAL" and isinstance(arg, str):
                stack.append(_Global(*arg.partition(" ")[::2]))
            elif name == "STACK_GLOBAL":
                qual, module = stack.pop(), stack.pop()
                ok = isinstance(module, str) and isinstance(qual, str)
                stack.append(_Global(module, qual) if ok else _OPAQUE)  # type: ignore[arg-type]
            elif name == "BINPERSID":
                stack.append(_storage(stack.pop()))
            elif name == "REDUCE":
                args, func = stack.pop(), stack.pop()
                if isinstance(func, _Global) and func.module == "torch._utils" and func.name in _REBUILDS:
                    view = _view(args)
                    if view is not None:
                        yield (pos or 0, *view)
                stack.append(_OPAQUE)
            elif name in _PUTS:
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in _GETS:
                stack.append(memo.get(arg, _OPAQUE))
            elif name == "STOP":
                return
            else:
                _generic(op, stack, marks)
    except (ValueError, KeyError, TypeError, IndexError):
        return


def _generic(op: pickletools.OpcodeInfo, stack: list[object], marks: list[int]) -> None:
    """Any other opcode by its documented stack effect: what it consumes, opaque values for what it makes."""
    before = op.stack_before
    if pickletools.markobject in before:
        start = marks.pop()
        del stack[start:]
        before = before[: before.index(pickletools.markobject)]
    if len(before) > len(stack):
        raise IndexError(op.name)
    del stack[len(stack) - len(before) :]
    stack += [_OPAQUE] * len(op.stack_after)
    if pickletools.markobject in op.stack_after:  # only MARK itself, handled above
        raise ValueError(op.name)


def _view(args: object) -> tuple[_Storage, int, tuple[int, ...], tuple[int, ...]] | None:
    if not (isinstance(args, tuple) and len(args) >= 4 and isinstance(args[0], _Storage)):
        return None
    _, offset, size, stride = args[:4]
    if not isinstance(offset, int) or not isinstance(size, tuple) or not isinstance(stride, tuple):
        return None
    if not all(isinstance(n, int) for n in (*size, *stride)):
        return None
    return args[0], offset, size, stride


def problem(available: int, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> str:
    """What is wrong with a view of `available` elements, or ''."""
    if len(size) != len(stride):
        return f"{len(size)} sizes but {len(stride)} strides"
    if offset < 0 or any(n < 0 for n in (*size, *stride)):
        return "negative offset, size or stride"
    if 0 in size:
        return ""
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= available:
        return f"its last element is {last}, past the storage's {available} elements"
    return ""


class TensorViewHandler(Handler):
    name = "torch-checkpoint"
    label = "PyTorch zip checkpoint (tensor views)"
    rules = (VIEW_PAST_STORAGE,)
    companion = True

    def detect(self, source: Source) -> bool:
        names = zip_names(source)
        if names is None:
            return False
        # torch.package archives are read by the torch-package handler, which checks their views too
        return not any(n.endswith("/.data/extern_modules") for n in names) and bool(_pickles(list(names)))

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        with zipfile.ZipFile(source.stream()) as archive:
            yield from view_findings(archive, ctx)


def view_findings(archive: zipfile.ZipFile, ctx: Context) -> Iterator[Finding]:
    """TEN001 for every tensor view of the archive's pickles that reaches past its storage record."""
    sizes = {info.filename: info.file_size for info in archive.infolist()}
    found = 0
    for name, record_of in _pickles(list(sizes)).items():
        if sizes[name] > MAX_PICKLE:
            continue
        try:
            with archive.open(name) as member:
                data = member.read(MAX_PICKLE)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, zlib.error):
            continue  # the zip walker reports a member it cannot read
        for pos, storage, offset, shape, stride in views(data):
            record = sizes.get(record_of(storage.key))
            if record is None:
                continue  # the loader fails on a missing record; the zip walker shows what is there
            available = min(storage.numel, record // storage.element)
            what = problem(available, offset, shape, stride)
            if what and found < MAX_FINDINGS:
                found += 1
                evidence = (
                    f"tensor view offset={offset} size={list(shape)} stride={list(stride)} of storage "
                    f"{storage.key!r} ({storage.numel} elements, record of {record} bytes): {what}"
                )
                yield ctx.finding(VIEW_PAST_STORAGE, evidence, offset=pos, member=name)


class _Record(NamedTuple):
    prefix: str
    suffix: str

    def __call__(self, key: str) -> str:
        # a TorchScript module inside a package names its storages `<id>.storage` already
        return f"{self.prefix}{key.removesuffix(self.suffix)}{self.suffix}"


def _pickles(names: list[str]) -> dict[str, _Record]:
    """The pickles whose storages the loader reads from records, with where: `<dir>/data/<key>` beside a
    torch.save or TorchScript `data.pkl`, `<root>/.data/<key>.storage` in a torch.package archive."""
    found: dict[str, _Record] = {}
    folders = {name.rpartition("/data/")[0] for name in names if "/data/" in name or name.startswith("data/")}
    packages = {name[: -len(".data/extern_modules")] for name in names if name.endswith("/.data/extern_modules")}
    for name in names:
        folder, _, base = name.rpartition("/")
        if base == "data.pkl" and folder in folders and not folder.startswith(tuple(packages)):
            found[name] = _Record(f"{folder}/data/" if folder else "data/", "")
        elif name.endswith(".pkl") and (root := next((p for p in packages if name.startswith(p)), None)):
            found[name] = _Record(f"{root}.data/", ".storage")
    return found
