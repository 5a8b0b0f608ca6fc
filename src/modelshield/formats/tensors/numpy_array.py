"""NumPy `.npy` arrays (also the members of `.npz` archives): header validation, size checks, and
the pickle inside object arrays.

The header is parsed here without NumPy: it is a Python dict literal, evaluated with
`ast.literal_eval` (which builds literals only and never calls anything) after its length is
bounded. Object arrays store a pickle as their data; it is handed to the engine as an embedded
object, so the pickle analyser judges what it would run.
"""

from __future__ import annotations

import ast
import re
import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.scan_rules import NOT_ANALYSED
from modelshield.core.source import SliceSource, Source

MAGIC = b"\x93NUMPY"
#: (length field format, text encoding) per format version, as NumPy reads them.
VERSIONS = {(1, 0): ("<H", "latin1"), (2, 0): ("<I", "latin1"), (3, 0): ("<I", "utf8")}
#: NumPy refuses headers over 10,000 characters unless allow_pickle is set; this bound only keeps
#: parsing cheap, far above anything a real dtype needs.
MAX_HEADER_BYTES = 1024 * 1024
EXPECTED_KEYS = frozenset({"descr", "fortran_order", "shape"})
#: Sizes are computed up to this bound: beyond it, no file can hold the data anyway.
SIZE_CAP = 2**64

#: A type string as `dtype.str` writes it: byte order, kind, item size, datetime unit.
_TYPESTR = re.compile(r"([<>|=]?)([biufcOSaUVMm])(\d*)(\[\w+\])?")
#: Valid item sizes for the numeric kinds; S/a/V/U take any size.
_NUMERIC_SIZES = {"b": {1}, "i": {1, 2, 4, 8}, "u": {1, 2, 4, 8}, "f": {2, 4, 8, 12, 16}, "c": {8, 16, 24, 32}}
#: Python 2 wrote long integers in shapes as `3L`; NumPy strips the suffix for format 1.0/2.0.
_PY2_LONG = re.compile(r"\b(\d+)L\b")

MALFORMED = Rule(
    id="NPY001",
    title="Malformed or unsupported .npy header",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="The header of a NumPy `.npy` array could not be validated: an unknown format version, a "
    "header length that runs past the file, a header that is not the dict literal NumPy writes (keys "
    "`descr`, `fortran_order`, `shape`), a negative or non-integer shape, or a dtype descriptor that "
    "`np.save` never writes and modelshield cannot size.",
    attack="`np.save` always writes a canonical header, so a malformed one was made by hand. Attackers "
    "craft headers that one reader rejects and another accepts, or that make a scanner give up while "
    "`np.load` still proceeds; a descriptor spelled unusually (`'object'`, `'i4,O'`) can hide that the "
    "array holds Python objects, whose data is a pickle.",
    impact="The array's contents, and whether loading it runs a pickle, cannot be determined. If the data "
    "section is recognisable content (such as a pickle) it is still scanned.",
    remediation="Do not load the file with `allow_pickle=True`. Ask the publisher for an array written by "
    "`np.save`, or regenerate it from its source data.",
    example="`{'descr': 'i4,O', 'fortran_order': False, 'shape': (2,)}` (a structured dtype with an object "
    "field, written as a comma string instead of a list).",
)

OBJECT_ARRAY = Rule(
    id="NPY002",
    title="Object array: loading runs a pickle (needs allow_pickle=True)",
    severity=Severity.LOW,
    category=Category.LOAD_TIME_CODE,
    overview="The array's dtype holds Python objects (`|O`, possibly inside a structured dtype), so its data "
    "section is not numbers but a pickle stream. `np.load` refuses such arrays unless called with "
    "`allow_pickle=True`, and then unpickles the data. modelshield scans that pickle as "
    "`<object array>`; findings there say what it would run.",
    attack="Unpickling calls whatever callables the stream names. An attacker saves an array holding an "
    "object whose `__reduce__` returns `(os.system, ('...',))` and publishes it as data; the error "
    "message NumPy shows for object arrays tells users to pass `allow_pickle=True`, and many code "
    "snippets pass it by habit (and `.npz` loading in older tools did so by default).",
    impact="With `allow_pickle=True`, loading the file executes the pickle: arbitrary code with the "
    "loading user's rights. Without it, the load fails.",
    remediation="Prefer arrays of numeric, string (`U`/`S`) or fixed-size structured dtypes, which load "
    "without pickle. If an object array is needed, load it only when the `<object array>` pickle has no "
    "findings, and never pass `allow_pickle=True` to files from untrusted sources.",
    example="`{'descr': '|O', 'fortran_order': False, 'shape': (1,), }` followed by "
    "`80 04 95 ... 8c 05 70 6f 73 69 78 8c 06 73 79 73 74 65 6d ...` (`posix.system`).",
)

TRUNCATED = Rule(
    id="NPY003",
    title="Array data shorter than its header declares",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="The shape and dtype in the header require more bytes than the file holds after it.",
    attack="A truncated array is either damaged in transit or edited by hand. Readers differ in how they "
    "fail: memory-mapping readers fault on access, chunked readers return partial arrays, and a "
    "shape far larger than the data is a lever for huge allocations in readers that allocate first.",
    impact="The array does not load with NumPy; other readers may crash, allocate excessively, or load partial data.",
    remediation="Obtain an intact copy and compare its hash with the publisher's.",
    example="`'shape': (1000000, 1000000)` with a few kilobytes of data.",
)

TRAILING = Rule(
    id="NPY004",
    title="Bytes after the end of the array data",
    severity=Severity.LOW,
    category=Category.INTEGRITY,
    overview="The file continues after the bytes the header accounts for. `np.load` ignores them; they "
    "are scanned as `<trailing data>`.",
    attack="Appending a payload to a valid array makes a polyglot: NumPy reads the array and stops, while "
    "another loader, or a later step of an attack chain, reads what follows. Several arrays written "
    "one after another into one file with repeated `np.save` calls also look like this, and are "
    "legitimate.",
    impact="Extra content travels with the array unnoticed by NumPy-based checks.",
    remediation="Check the `<trailing data>` findings. If the extra bytes are another array written by "
    "`np.save`, split the arrays into separate files or an `.npz`; otherwise regenerate the file.",
)

RULES = (MALFORMED, OBJECT_ARRAY, TRUNCATED, TRAILING)


class HeaderError(ValueError):
    """The header is not one NumPy would accept (or not one modelshield can size)."""


class Dtype(NamedTuple):
    """What the scan needs from a dtype descriptor: its item size and whether it holds objects."""

    itemsize: int
    has_object: bool


class Header(NamedTuple):
    version: tuple[int, int]
    dtype: Dtype
    shape: tuple[int, ...]
    data_offset: int
    #: the descriptor as written (`<f4`, a field list...) and the element order, for `convert`
    descr: Any = None
    fortran_order: bool = False

    @property
    def data_size(self) -> int | None:
        """Bytes of array data NumPy reads (capped at SIZE_CAP); None for object arrays, whose
        data is a pickle."""
        if self.dtype.has_object:
            return None
        return min(_product(self.shape) * self.dtype.itemsize, SIZE_CAP)


def _product(dims: tuple[int, ...]) -> int:
    """The product of non-negative `dims`, capped at SIZE_CAP so hostile shapes stay cheap."""
    if 0 in dims:
        return 0
    total = 1
    for dim in dims:
        total *= dim
        if total >= SIZE_CAP:
            return SIZE_CAP
    return total


def parse_typestr(text: str) -> Dtype:
    """Size a type string such as `<f8`, `|b1`, `<U10`, `|O` or `<M8[ns]`."""
    match = _TYPESTR.fullmatch(text)
    if match is None:
        raise HeaderError(f"dtype descriptor {text!r} is not a type string np.save writes")
    _, kind, digits, unit = match.groups()
    if unit and kind not in "Mm":
        raise HeaderError(f"dtype descriptor {text!r} has a unit but is not a datetime")
    if kind == "O":
        if digits not in ("", "4", "8"):
            raise HeaderError(f"object dtype {text!r} has an impossible size")
        return Dtype(8, True)
    if kind in "Mm":
        if digits not in ("", "8"):
            raise HeaderError(f"datetime dtype {text!r} has an impossible size")
        return Dtype(8, False)
    if not digits:
        raise HeaderError(f"dtype descriptor {text!r} has no item size")
    size = int(digits)
    if kind in _NUMERIC_SIZES and size not in _NUMERIC_SIZES[kind]:
        raise HeaderError(f"dtype descriptor {text!r} has an impossible item size")
    return Dtype(size * 4 if kind == "U" else size, False)


def _subarray_count(shape: Any) -> int:
    dims = shape if isinstance(shape, tuple) else (shape,)
    if not all(isinstance(d, int) and d >= 0 for d in dims):
        raise HeaderError(f"sub-array shape {shape!r} is not non-negative integers")
    return _product(dims)


def parse_descr(descr: Any) -> Dtype:
    """Size a `descr` as NumPy's `descr_to_dtype` reads it: a type string, a `(descr, shape)`
    sub-array, or a list of `(name, descr[, shape])` fields (padding fields included)."""
    if isinstance(descr, str):
        return parse_typestr(descr)
    if isinstance(descr, tuple):
        if len(descr) != 2:
            raise HeaderError("sub-array descriptor is not (descr, shape)")
        base = parse_descr(descr[0])
        return Dtype(min(base.itemsize * _subarray_count(descr[1]), SIZE_CAP), base.has_object)
    if not isinstance(descr, list):
        raise HeaderError(f"descr is a {type(descr).__name__}, not a type string or field list")
    itemsize = 0
    has_object = False
    for field in descr:
        if not isinstance(field, (tuple, list)) or len(field) not in (2, 3):
            raise HeaderError(f"structured field {field!r} is not (name, descr[, shape])")
        name = field[0]
        if not (isinstance(name, str) or (isinstance(name, tuple) and all(isinstance(n, str) for n in name))):
            raise HeaderError(f"structured field name {name!r} is not a string")
        sub = parse_descr(field[1])
        count = _subarray_count(field[2]) if len(field) == 3 else 1
        itemsize = min(itemsize + sub.itemsize * count, SIZE_CAP)
        has_object = has_object or sub.has_object
    return Dtype(itemsize, has_object)


def _literal(text: str, version: tuple[int, int]) -> Any:
    try:
        return ast.literal_eval(text)
    except SyntaxError:
        if version == (3, 0):
            raise
        return ast.literal_eval(_PY2_LONG.sub(r"\1", text))


def header_span(source: Source) -> tuple[tuple[int, int], int, int]:
    """The format version, and where the header text starts and how long it is."""
    head = source.head(12)
    if len(head) < 8:
        raise HeaderError("file ends inside the format version")
    version = (head[6], head[7])
    if version not in VERSIONS:
        raise HeaderError(f"unknown .npy format version {version[0]}.{version[1]}")
    length_format, _ = VERSIONS[version]
    start = len(MAGIC) + 2 + struct.calcsize(length_format)
    if len(head) < start:
        raise HeaderError("file ends inside the header length field")
    (length,) = struct.unpack_from(length_format, head, len(MAGIC) + 2)
    return version, start, length


def read_header(source: Source) -> Header:
    """Parse and validate the header as `np.load` does, raising HeaderError where it would fail."""
    version, start, length = header_span(source)
    encoding = VERSIONS[version][1]
    if length > MAX_HEADER_BYTES:
        raise HeaderError(f"header length {length} exceeds the {MAX_HEADER_BYTES}-byte bound")
    raw = source.head(start + length)[start:]  # a header, never the array data: no random access
    if len(raw) < length:
        raise HeaderError(f"header length {length} runs past the end of the file")
    try:
        text = raw.decode(encoding)
        fields = _literal(text, version)
    except UnicodeDecodeError as exc:
        raise HeaderError(f"header is not valid {encoding}") from exc
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
        raise HeaderError(f"header is not a Python literal: {type(exc).__name__}") from exc
    if not isinstance(fields, dict):
        raise HeaderError(f"header is a {type(fields).__name__}, not a dict")
    if set(fields) != EXPECTED_KEYS:
        raise HeaderError(f"header keys are {sorted(map(repr, fields))}, not descr/fortran_order/shape")
    shape = fields["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) for d in shape):
        raise HeaderError(f"shape {shape!r} is not a tuple of integers")
    if any(d < 0 for d in shape):
        raise HeaderError(f"shape {shape!r} has a negative dimension")
    if not isinstance(fields["fortran_order"], bool):
        raise HeaderError(f"fortran_order {fields['fortran_order']!r} is not a bool")
    return Header(
        version, parse_descr(fields["descr"]), shape, start + length, fields["descr"], fields["fortran_order"]
    )


class NpyHandler(Handler):
    name = "npy"
    label = "NumPy array (.npy)"
    extensions = frozenset({".npy"})
    rules = RULES

    def detect(self, source: Source) -> bool:
        return source.head(len(MAGIC)) == MAGIC

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        try:
            header = read_header(source)
        except HeaderError as exc:
            yield ctx.finding(MALFORMED, str(exc), offset=0)
            yield from self._scan_unknown_data(source, ctx)
            return
        available = source.length() - header.data_offset
        if header.data_size is None:
            data = SliceSource(source, header.data_offset, available)
            yield ctx.finding(
                OBJECT_ARRAY,
                f"dtype holds Python objects; the {available}-byte data section is a pickle (scanned as "
                "<object array>)",
                offset=header.data_offset,
            )
            yield from _scan_pickle(ctx, data)
            return
        if available < header.data_size:
            needed = "more than 2**64" if header.data_size >= SIZE_CAP else str(header.data_size)
            yield ctx.finding(
                TRUNCATED,
                f"the header needs {needed} bytes of array data but the file has {available} (shape {header.shape})",
                offset=header.data_offset,
            )
        elif available > header.data_size:
            end = header.data_offset + header.data_size
            yield ctx.finding(
                TRAILING,
                f"{available - header.data_size} bytes follow the array data (scanned as <trailing data>)",
                offset=end,
            )
            yield from ctx.scan_member("<trailing data>", SliceSource(source, end, source.size - end))

    def _scan_unknown_data(self, source: Source, ctx: Context) -> Iterator[Finding]:
        """When the header cannot be trusted, still scan whatever follows a well-delimited header
        (it may be the pickle of an object array whose descriptor was disguised)."""
        try:
            _, start, length = header_span(source)
        except HeaderError:
            return
        end = start + length
        if end < source.size:
            yield from ctx.scan_member("<array data>", SliceSource(source, end, source.size - end))


def _scan_pickle(ctx: Context, data: Source) -> Iterator[Finding]:
    """Scan an object array's pickle; if no analyser recognises it, it is unanalysed (fail closed)."""
    if data.size and not ctx.engine.detect(data):
        yield ctx.finding(
            NOT_ANALYSED, "object array data is not a recognisable pickle stream", member="<object array>"
        )
        return
    yield from ctx.scan_member("<object array>", data)
