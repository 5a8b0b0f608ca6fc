"""GGUF (llama.cpp) models: header, metadata, tensor table and data layout, checked against the file.

GGUF holds no code, but native loaders parse it with hand-written C, where a hostile count, length or
offset has meant heap overflows (the 2024 Talos advisories on llama.cpp's gguf reader). So every count,
length and offset is checked against the file size before it is used: a 2**60 key count is reported,
never allocated. Chat templates in the metadata are Jinja code that servers render; they go to the
shared template analyser.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

from modelshield.core import native
from modelshield.core.dependencies import Dependency
from modelshield.core.dependency_rules import DEPENDENCY
from modelshield.core.errors import LimitExceeded, ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import Source
from modelshield.formats.llm import templates

MAGIC = b"GGUF"
#: GGUF versions 1-3 exist; version 1 used 32-bit counts, later versions 64-bit ones.
VERSIONS = range(1, 4)
DEFAULT_ALIGNMENT = 32
ALIGNMENT_KEY = "general.alignment"
TEMPLATE_KEY = "tokenizer.chat_template"
#: llama.cpp's split keys (LLM_KV_SPLIT_NO, LLM_KV_SPLIT_COUNT): the first part names how many follow.
SPLIT_NO, SPLIT_COUNT = "split.no", "split.count"
#: `llama_split_path`'s "%s-%05d-of-%05d.gguf"; `llama_split_prefix` accepts only a first part named so.
SPLIT_NAME = re.compile(r"(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf\Z")
#: Parts listed one by one; real split models have a few dozen.
MAX_SPLITS = 1024
#: Strings of an array-typed template key analysed (gguf-py based readers take the first).
MAX_TEMPLATE_STRINGS = 16
#: ggml's GGML_MAX_DIMS and GGML_MAX_NAME (names must be shorter).
MAX_DIMS = 4
MAX_NAME = 64
#: Longest metadata key read (real keys are dotted names of a few dozen bytes).
MAX_KEY = 65536
#: Nesting of arrays inside arrays (llama.cpp itself reads none).
MAX_ARRAY_DEPTH = 4
#: Strings parsed one by one across all metadata arrays; real vocabularies hold a few hundred thousand.
MAX_ARRAY_STRINGS = 20_000_000
#: Findings per rule, so a table of a million broken tensors stays a short report.
MAX_FINDINGS_PER_RULE = 20
_CHUNK = 1 << 20
#: the vocabulary step in C (`_gguf.c`) when it was built; `_step_strings` is its Python twin
_native = native.load("modelshield.formats.llm._gguf")

# Metadata value types: fixed-width ones by struct code, then STRING (8) and ARRAY (9).
STRING, ARRAY = 8, 9
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
UINT32 = 4
#: ggml tensor types that exist (removed ones are absent): id -> (name, block size, bytes per block).
GGML_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}
_INT64_MAX = 2**63 - 1

_REMEDIATION = (
    "Do not load the file. Obtain an intact copy from the publisher and compare hashes, or convert the "
    "model again with llama.cpp's own `convert_hf_to_gguf.py`; keep llama.cpp and its bindings up to date."
)

MALFORMED = Rule(
    id="GGF001",
    title="Malformed GGUF header or metadata",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="A count, string length, array length or value type in the GGUF header or metadata is "
    "impossible: it claims more data than the file holds, names an unknown type, or the metadata ends "
    "early. `general.alignment` that is not a power of two (as a 32-bit unsigned value) is also reported.",
    attack="GGUF readers are hand-written C/C++ that allocate from these counts. Oversized counts and "
    "lengths have produced heap overflows in llama.cpp's reader (Cisco Talos, 2024: "
    "TALOS-2024-1912..1916), and a reader that stops early can miss what follows.",
    impact="Memory corruption, possibly code execution, in native loaders; other tools see different "
    "metadata than the loader does.",
    remediation=_REMEDIATION,
    example="A header declaring `2**60` metadata keys in a 1 MB file.",
)

BAD_TENSOR = Rule(
    id="GGF002",
    title="Invalid GGUF tensor information",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="An entry of the tensor table is invalid: too many dimensions, a zero or overflowing shape, "
    "an unknown ggml type, a row length that is not a whole number of quantisation blocks, a misaligned "
    "offset, or data that overlaps another tensor, leaves an unexplained gap, or runs past the end of "
    "the file.",
    attack="Loaders compute buffer sizes from shapes and types and copy from offsets: inconsistent values "
    "drive out-of-bounds reads and writes in native code. Overlaps and gaps make tools disagree on which "
    "bytes are weights and give a payload a place to hide.",
    impact="Crashes or memory corruption in the loader; weights that differ between tools.",
    remediation=_REMEDIATION,
    example="A tensor with shape `[4096, 2**62]`, or offset 1 with the default 32-byte alignment.",
)

DUPLICATE = Rule(
    id="GGF003",
    title="Duplicate GGUF metadata key or tensor name",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="A metadata key or tensor name appears twice.",
    attack="llama.cpp refuses such files, while readers that build a dictionary keep the first or the "
    "last entry: a reviewer's tool can show a harmless chat template or tensor while another loader uses "
    "the other one.",
    impact="Different tools load different metadata or weights from the same file.",
    remediation=_REMEDIATION,
    example="Two `tokenizer.chat_template` entries, the second one hostile.",
)

SPLIT_PART = Rule(
    id="GGF004",
    title="GGUF split model part missing or misnamed",
    severity=Severity.LOW,
    category=Category.MODEL_DEPENDENCY,
    overview="The file is the first part of a split model (`split.count` greater than 1) and a part that "
    "llama.cpp would open is not next to it, or the file is not named `<prefix>-00001-of-0000N.gguf` as "
    "llama.cpp requires, or `split.no` / `split.count` are missing or impossible. Parts that are present are "
    "linked as dependencies (DEP002) and scanned with the model.",
    attack="llama.cpp loads the other parts by name from the first file's folder (`llama_split_path`): a part "
    "that was not scanned (downloaded later, replaced, planted beside the first) is loaded as the same model, "
    "with its own metadata, tensors and parser surface.",
    impact="Part of the model was not reviewed; a misnamed file is refused by llama.cpp but read by other tools.",
    remediation="Scan the complete model folder with every `-0000N-of-0000M.gguf` part, or merge the parts "
    "with `llama-gguf-split --merge` and scan the result.",
    example="`model-00001-of-00003.gguf` with `split.count = 3`, and `model-00003-of-00003.gguf` absent.",
)

RULES = (MALFORMED, BAD_TENSOR, DUPLICATE, SPLIT_PART)


class GgufHeader(NamedTuple):
    version: int
    byte_order: str
    tensor_count: int
    kv_count: int


def read_header(source: Source) -> GgufHeader | None:
    """The GGUF header, or None if the bytes are not GGUF.

    The version is little-endian normally; big-endian files (for s390x) store it byte-swapped,
    which is how readers tell the two apart.
    """
    head = source.head(24)
    if len(head) < 8 or head[:4] != MAGIC:
        return None
    for order in ("<", ">"):
        (version,) = struct.unpack_from(order + "I", head, 4)
        if version in VERSIONS:
            break
    else:
        return None
    count = "I" if version == 1 else "Q"
    need = 8 + 2 * struct.calcsize(count)
    if len(head) < need:
        return None
    tensors, kvs = struct.unpack_from(order + 2 * count, head, 8)
    return GgufHeader(version, "little" if order == "<" else "big", tensors, kvs)


class Malformed(Exception):
    """The structure is broken at `offset`; parsing cannot continue past it."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


_LENGTHS = {False: struct.Struct("<Q").unpack_from, True: struct.Struct(">Q").unpack_from}


def _step_strings(buf: bytes, at: int, end: int, count: int, big: bool) -> tuple[int, int]:
    """The Python twin of `_gguf.skip_strings`: step over the length-prefixed strings lying wholly in
    `buf[at:end]`; returns where it stopped and how many are left."""
    length = _LENGTHS[big]
    while count and at + 8 <= end:
        after = at + 8 + length(buf, at)[0]
        if after > end:
            break
        at = after
        count -= 1
    return at, count


class _Reader:
    """Sequential reads over a Source through a bounded window; every read is checked against the size."""

    def __init__(self, source: Source, order: str, pos: int) -> None:
        self._source = source
        self.order = order
        self.size = source.size
        self.pos = pos
        self._buf = b""
        self._buf_start = 0

    def take(self, n: int, what: str) -> bytes:
        if n > self.size - self.pos:
            raise Malformed(f"{what} needs {n} bytes but the file ends {self.size - self.pos} bytes later", self.pos)
        start = self.pos - self._buf_start
        if start < 0 or start + n > len(self._buf):
            self._buf = self._source.read_at(self.pos, max(n, _CHUNK))
            self._buf_start, start = self.pos, 0
        self.pos += n
        return self._buf[start : start + n]

    def skip(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise Malformed(f"{what} needs {n} bytes but the file ends {self.size - self.pos} bytes later", self.pos)
        self.pos += n

    def skip_strings(self, count: int, what: str) -> None:
        """Skip `count` length-prefixed strings (a vocabulary holds hundreds of thousands): those lying
        wholly in the window are stepped over by their lengths alone; any other goes through `unpack`
        and `skip`, which refill the window or report the string that runs past the file."""
        step = _step_strings if _native is None or native.PURE_PYTHON else _native.skip_strings
        while count:
            buf, base = self._buf, self._buf_start
            end = min(len(buf), self.size - base)
            at = self.pos - base
            if at >= 0:
                at, count = step(buf, at, end, count, self.order == ">")
                self.pos = base + at
            if count:
                self.skip(self.unpack("Q", f"string length in {what}"), what)
                count -= 1

    def unpack(self, code: str, what: str) -> Any:
        return struct.unpack(self.order + code, self.take(struct.calcsize(code), what))[0]

    def string(self, what: str, limit: int | None = None) -> str | None:
        """A length-prefixed string; None (skipped, not read) if longer than `limit`."""
        length = self.unpack("Q", f"length of {what}")
        if limit is not None and length > limit:
            self.skip(length, what)
            return None
        return self.take(length, what).decode("utf-8", "replace")


class TensorInfo(NamedTuple):
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    at: int


class GgufParser:
    """Walks one file's metadata and tensor table, collecting problems instead of trusting values."""

    def __init__(self, source: Source, header: GgufHeader) -> None:
        self.header = header
        self.reader = _Reader(source, "<" if header.byte_order == "little" else ">", 24)
        self.problems: list[tuple[Rule, str, int | None]] = []
        #: chat templates by key; None for one too large to analyse
        self.templates: list[tuple[str, str | None]] = []
        #: template keys whose value is not a string: (key, value type)
        self.odd_templates: list[tuple[str, int]] = []
        #: integer values of the split keys
        self.split: dict[str, int] = {}
        self.alignment = DEFAULT_ALIGNMENT
        self._strings_left = MAX_ARRAY_STRINGS

    def _check_count(self, count: int, min_bytes: int, what: str) -> None:
        room = (self.reader.size - self.reader.pos) // min_bytes
        if count > room:
            raise Malformed(f"declares {count} {what}, but the rest of the file can hold at most {room}", 8)

    def metadata(self) -> None:
        """Read every key-value pair; raises Malformed where the structure breaks."""
        self._check_count(self.header.kv_count, 8 + 4 + 1, "metadata keys")
        seen: set[str] = set()
        for _ in range(self.header.kv_count):
            at = self.reader.pos
            key = self.reader.string("metadata key", MAX_KEY)
            if key is None:
                self.problems.append((MALFORMED, f"a metadata key is longer than {MAX_KEY} bytes", at))
                key = "<overlong key>"
            if key in seen:
                self.problems.append((DUPLICATE, f"metadata key {key!r} appears more than once", at))
            seen.add(key)
            kind = self.reader.unpack("I", f"type of {key!r}")
            is_template = key == TEMPLATE_KEY or key.startswith(TEMPLATE_KEY + ".")
            if is_template and kind == STRING:
                self.templates.append((key, self.reader.string(key, templates.MAX_TEMPLATE_CHARS)))
            elif is_template:
                self._odd_template(key, kind)
            elif key in (SPLIT_NO, SPLIT_COUNT) and kind in SCALARS and SCALARS[kind] in "BbHhIiQq":
                self.split[key] = self.reader.unpack(SCALARS[kind], key)
            elif key == ALIGNMENT_KEY:
                self._alignment(kind, at)
            else:
                self._skip_value(kind, key, 0)

    def _odd_template(self, key: str, kind: int) -> None:
        """A template key of another type: readers disagree (llama.cpp skips arrays, gguf-py based
        loaders take an array's first string), so its strings are analysed as templates too."""
        self.odd_templates.append((key, kind))
        if kind != ARRAY:
            self._skip_value(kind, key, 0)
            return
        element = self.reader.unpack("I", f"element type of {key}")
        count = self.reader.unpack("Q", f"length of {key}")
        if element != STRING:
            self.reader.pos -= 12
            self._skip_value(ARRAY, key, 0)
            return
        self._check_count(count, 8, f"strings in {key}")
        self._spend(count)
        for index in range(count):
            what = f"{key}[{index}]"
            if index < MAX_TEMPLATE_STRINGS:
                self.templates.append((what, self.reader.string(what, templates.MAX_TEMPLATE_CHARS)))
            else:
                self.reader.skip(self.reader.unpack("Q", f"length of {what}"), what)

    def _alignment(self, kind: int, at: int) -> None:
        if kind != UINT32:
            self._skip_value(kind, ALIGNMENT_KEY, 0)
            self.problems.append((MALFORMED, f"{ALIGNMENT_KEY} has value type {kind}, not UINT32 (4)", at))
            return
        value = self.reader.unpack("I", ALIGNMENT_KEY)
        if value == 0 or value & (value - 1):
            self.problems.append((MALFORMED, f"{ALIGNMENT_KEY} = {value} is not a power of two", at))
        else:
            self.alignment = value

    def _skip_value(self, kind: int, what: str, depth: int) -> None:
        reader = self.reader
        if kind in SCALARS:
            reader.skip(struct.calcsize(SCALARS[kind]), what)
        elif kind == STRING:
            reader.skip(reader.unpack("Q", f"length of {what}"), what)
        elif kind == ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise Malformed(f"{what}: arrays nested more than {MAX_ARRAY_DEPTH} deep", reader.pos)
            element = reader.unpack("I", f"element type of {what}")
            count = reader.unpack("Q", f"length of {what}")
            if element in SCALARS:
                width = struct.calcsize(SCALARS[element])
                self._check_count(count, width, f"elements in {what}")
                reader.skip(count * width, what)
            elif element == STRING:
                self._check_count(count, 8, f"strings in {what}")
                self._spend(count)
                reader.skip_strings(count, what)
            elif element == ARRAY:
                self._check_count(count, 12, f"arrays in {what}")
                self._spend(count)
                for _ in range(count):
                    self._skip_value(ARRAY, what, depth + 1)
            else:
                raise Malformed(f"{what}: unknown array element type {element}", reader.pos - 12)
        else:
            raise Malformed(f"{what}: unknown value type {kind}", reader.pos - 4)

    def _spend(self, count: int) -> None:
        self._strings_left -= count
        if self._strings_left < 0:
            raise LimitExceeded("max_array_strings", f"more than {MAX_ARRAY_STRINGS} metadata array entries")

    def tensors(self) -> list[TensorInfo]:
        """Read the tensor table; per-entry problems are collected, broken structure raises."""
        self._check_count(self.header.tensor_count, 8 + 4 + 4 + 8, "tensors")
        infos: list[TensorInfo] = []
        seen: set[str] = set()
        for _ in range(self.header.tensor_count):
            at = self.reader.pos
            name = self.reader.string("tensor name", 4096)
            if name is None:
                name = "<name over 4096 bytes>"
            n_dims = self.reader.unpack("I", f"dimension count of tensor {name!r}")
            if n_dims > MAX_DIMS:
                raise Malformed(f"tensor {name!r} has {n_dims} dimensions (ggml supports {MAX_DIMS})", at)
            shape = struct.unpack(self.reader.order + "Q" * n_dims, self.reader.take(8 * n_dims, "tensor shape"))
            ggml_type = self.reader.unpack("I", f"type of tensor {name!r}")
            offset = self.reader.unpack("Q", f"offset of tensor {name!r}")
            if name in seen:
                self.problems.append((DUPLICATE, f"tensor name {name!r} appears more than once", at))
            seen.add(name)
            if len(name.encode()) >= MAX_NAME:
                self.problems.append((BAD_TENSOR, f"tensor name {name[:80]!r} is {MAX_NAME} bytes or longer", at))
            infos.append(TensorInfo(name, tuple(shape), ggml_type, offset, at))
        return infos

    def layout(self, infos: list[TensorInfo]) -> None:
        """Check each tensor's size, alignment and place in the data section."""
        data_start = -(-self.reader.pos // self.alignment) * self.alignment
        data_len = self.reader.size - data_start
        if data_len < 0 and infos:
            self.problems.append((BAD_TENSOR, "the file ends before its tensor data section begins", None))
            return
        end = 0
        for info in sorted(infos, key=lambda t: t.offset):
            where = f"tensor {info.name!r}"
            size, why = _byte_size(info)
            if size is None:
                self.problems.append((BAD_TENSOR, f"{where}: {why}", info.at))
                continue
            problem = None
            if info.offset + size > data_len:
                problem = f"{where} [{info.offset}, {info.offset + size}) runs past the {data_len}-byte data section"
            elif info.offset % self.alignment:
                problem = f"{where} at data offset {info.offset} is not {self.alignment}-byte aligned"
            elif info.offset < end:
                problem = f"{where} overlaps earlier tensor data ending at {end}"
            elif info.offset > -(-end // self.alignment) * self.alignment:
                problem = f"{where} leaves {info.offset - end} unreferenced bytes before it"
            if problem is not None:
                self.problems.append((BAD_TENSOR, problem, info.at))
            end = max(end, info.offset + size)


def _byte_size(info: TensorInfo) -> tuple[int | None, str]:
    """The tensor's size in bytes, or None and why it cannot have one."""
    ggml = GGML_TYPES.get(info.ggml_type)
    if ggml is None:
        return None, f"unknown ggml type {info.ggml_type}"
    type_name, block, block_bytes = ggml
    elements = 1
    for dim in info.shape:
        elements *= dim
    if any(d > _INT64_MAX for d in info.shape) or elements > _INT64_MAX:
        return None, f"shape {list(info.shape)} overflows 64-bit element counts"
    row = info.shape[0] if info.shape else 1
    if row % block:
        return None, f"rows of {row} elements are not whole {type_name} blocks of {block}"
    return elements // block * block_bytes, ""


class GgufHandler(Handler):
    name = "gguf"
    label = "GGUF model"
    extensions = frozenset({".gguf"})
    rules = (*RULES, DEPENDENCY)

    def detect(self, source: Source) -> bool:
        return read_header(source) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        header = read_header(source)
        assert header is not None
        if header.version == 1:
            raise ScanError("GGUF version 1 (32-bit counts, dropped by llama.cpp in 2023) is not analysed")
        parser = GgufParser(source, header)
        try:
            parser.metadata()
            infos = parser.tensors()
        except Malformed as exc:
            parser.problems.append((MALFORMED, str(exc), exc.offset))
        else:
            parser.layout(infos)
        counts: dict[str, int] = {}
        for rule, evidence, offset in parser.problems:
            count = counts[rule.id] = counts.get(rule.id, 0) + 1
            if count <= MAX_FINDINGS_PER_RULE:
                yield ctx.finding(rule, evidence, offset=offset)
            elif count == MAX_FINDINGS_PER_RULE + 1:
                yield ctx.finding(rule, f"further {rule.id} problems in this file are not listed")
        yield from _split_findings(ctx, parser.split)
        for key, kind in parser.odd_templates:
            evidence = f"{key} has value type {kind}, not STRING (8): llama.cpp and gguf-py readers disagree on it"
            yield ctx.finding(templates.UNPARSEABLE, evidence, member=key)
        for key, text in parser.templates:
            if text is None:
                evidence = f"{key}: longer than {templates.MAX_TEMPLATE_CHARS} bytes; not analysed"
                yield ctx.finding(templates.UNPARSEABLE, evidence, member=key)
            else:
                yield from templates.template_findings(ctx, text, key, member=key)


def _split_findings(ctx: Context, split: dict[str, int]) -> Iterator[Finding]:
    """The other parts of a split model, as llama.cpp finds them from the first part's name
    (`llama_get_list_splits`): present parts are dependencies, missing ones GGF004."""
    count = split.get(SPLIT_COUNT, 0)
    if count <= 1:
        return
    number = split.get(SPLIT_NO)
    if number is None or count > MAX_SPLITS:
        shown = "no split.no" if number is None else f"{count} parts"
        yield ctx.finding(SPLIT_PART, f"split.count = {count} with {shown}: llama.cpp refuses such a file")
        return
    if number != 0:
        return  # a later part: llama.cpp loads it only through the first, which names it
    path = ctx.location.members[-1] if ctx.location.members else ctx.location.path
    match = SPLIT_NAME.match(os.path.basename(path.replace("\\", "/")))
    if match is None or (int(match["no"]), int(match["count"])) != (1, count):
        evidence = f"first of {count} split parts is not named <prefix>-00001-of-{count:05d}.gguf: llama.cpp refuses it"
        yield ctx.finding(SPLIT_PART, evidence)
        return
    # Parts are only looked for next to a file on disk; inside an archive they are named as dependencies.
    folder = None if ctx.location.members else os.path.dirname(path)
    for index in range(2, count + 1):
        name = f"{match['prefix']}-{index:05d}-of-{count:05d}.gguf"
        if folder is not None and not os.path.lexists(os.path.join(folder, name)):
            yield ctx.finding(SPLIT_PART, f"split part {name!r} ({index} of {count}) is not next to the first part")
            continue
        dependency = Dependency("path", name, role="GGUF split part")
        yield ctx.finding(DEPENDENCY, f"loads split part {name!r} ({index} of {count})", **dependency.details())
