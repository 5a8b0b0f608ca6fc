"""safetensors: full structural validation of the header against the rules of the reference
(Rust) implementation, without reading tensor data.

safetensors cannot run code, so what is left to attack is the parsers: a header that one loader
rejects and another reads differently (duplicate names, overlapping tensors, extra bytes) lets a
file pass review with one tool and behave differently in another, and bytes that no tensor covers
are a free hiding place. Every deviation from what the `safetensors` library itself would accept
is a finding; files it writes produce none.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import SliceSource, Source
from modelshield.formats.configs.header_configs import metadata_findings

#: The reference implementation's `MAX_HEADER_SIZE`.
MAX_HEADER_BYTES = 100_000_000
#: Element sizes in bits, for every dtype the reference implementation (0.8) knows.
DTYPE_BITS = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
METADATA_KEY = "__metadata__"
#: Offsets and sizes are `usize` in the reference implementation.
_MAX_USIZE = 2**64 - 1
_JSON_SPACE = b" \t\r\n"
#: Per-rule cap on findings, so a header listing a million broken tensors stays a short report.
MAX_FINDINGS_PER_RULE = 20

_REMEDIATION = (
    "Do not load the file. Ask the publisher for an intact copy written by the `safetensors` "
    "library (`save_file`), or re-export it from a trusted checkpoint, and compare hashes."
)
_DIVERGENCE = (
    "The `safetensors` library rejects such a file, but other readers (hand-written parsers in "
    "inference servers, converters, hub viewers, other languages) are more lenient and each "
    "resolve the contradiction their own way."
)

MALFORMED_HEADER = Rule(
    id="SFT001",
    title="Malformed safetensors header",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="The 8-byte length prefix or the JSON header of a safetensors file is broken: the header "
    "runs past the end of the file, is not UTF-8, is not a single JSON object, or uses JSON the "
    "reference parser refuses (NaN, Infinity, excessive nesting).",
    attack="A header that the reference loader refuses but a lenient one accepts is the simplest "
    "parser differential: a scanner or reviewer relying on the strict parser sees an unreadable file "
    "and moves on, while the lenient loader reads tensors the attacker chose. Truncation also hides "
    "what the file was meant to contain. " + _DIVERGENCE,
    impact="The file's contents cannot be validated; different tools will disagree on what it holds.",
    remediation=_REMEDIATION,
    example="`ff ff ff ff 00 00 00 00` as the length prefix of a 1 MB file (a 4 GB header claim), or a "
    "header that ends in `NaN}`.",
)

DUPLICATE_KEY = Rule(
    id="SFT002",
    title="Duplicate key in safetensors header",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="A name appears twice in the same JSON object of the header: two tensors with one name, "
    "or a tensor entry with two `dtype` or `data_offsets` keys.",
    attack="JSON leaves duplicate keys undefined. Python's `json` and serde keep the last value, other "
    "parsers keep the first or fail, so a reviewer's tool can show one tensor (benign weights) while "
    "the loader maps the other (backdoored weights) under the same name.",
    impact="Different tools load different weights from the same file; integrity checks that inspect "
    "the header with another parser are bypassed.",
    remediation=_REMEDIATION,
    example='`{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
    '"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}`',
)

BAD_METADATA = Rule(
    id="SFT003",
    title="Invalid safetensors `__metadata__`",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="The optional `__metadata__` entry must map strings to strings; here it is another type or "
    "holds non-string values.",
    attack="Nested objects or numbers in `__metadata__` are rejected by the reference library but "
    "passed through by lenient readers into tooling that trusts metadata (format hints, conversion "
    "scripts, model cards), which is a way to smuggle structured data past validation.",
    impact="Loaders disagree on whether the file is valid; downstream tools may act on unvalidated metadata.",
    remediation=_REMEDIATION,
    example='`"__metadata__": {"format": "pt", "config": {"nested": true}}`',
)

BAD_TENSOR_ENTRY = Rule(
    id="SFT004",
    title="Invalid safetensors tensor entry",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="A tensor entry lacks `dtype`, `shape` or `data_offsets`, names a dtype the format does not "
    "define, or has a shape or offsets that are not lists of non-negative integers (offsets: exactly "
    "two).",
    attack="Readers handle such entries differently: some skip the tensor, some coerce values (floats "
    "to ints, negative numbers to huge unsigned ones), some crash. Coerced offsets point readers at "
    "bytes the header never honestly described, and parser crashes on hostile headers have been "
    "memory-safety bugs in native loaders.",
    impact="The tensor cannot be located consistently; native readers may misbehave on it.",
    remediation=_REMEDIATION,
    example='`"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}`',
)

SIZE_MISMATCH = Rule(
    id="SFT005",
    title="safetensors tensor size does not match its dtype and shape",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="The byte range a tensor claims (`end - begin`) differs from what its dtype and shape "
    "require (elements x element size), the element count overflows 64 bits, or a sub-byte dtype "
    "does not end on a byte boundary.",
    attack="Readers that trust the shape read past the tensor's range into the next tensor or past the "
    "buffer; readers that trust the offsets reinterpret the bytes with a different shape. Oversized "
    "shapes are also a classic way to drive an allocation-size overflow in native code.",
    impact="Out-of-bounds reads, silently corrupted weights, or crashes, depending on the loader.",
    remediation=_REMEDIATION,
    example='`"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 32]}` (64 bytes needed).',
)

BAD_LAYOUT = Rule(
    id="SFT006",
    title="safetensors tensors overlap, leave gaps, or run past the data",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="Sorted by offset, the tensors must tile the data section: each starts where the previous "
    "ends, starting at 0, and none extends beyond the end of the file. Here two tensors overlap, bytes "
    "between tensors belong to none, or a tensor ends after the data section does.",
    attack="Overlapping tensors make one write visible through two names and let a small edit change "
    "several weights; gaps are unreferenced bytes where a payload can sit unseen by every tensor-level "
    "check; ranges past the end make lenient mmap-based readers fault or read adjacent memory. " + _DIVERGENCE,
    impact="Weights differ between loaders; hidden bytes travel with the model; loaders may crash.",
    remediation=_REMEDIATION,
    example='`"a": {..., "data_offsets": [0, 16]}, "b": {..., "data_offsets": [8, 24]}` (overlap).',
)

UNCOVERED_DATA = Rule(
    id="SFT007",
    title="Bytes after the last safetensors tensor",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="The file continues after the end of the last tensor. The format requires the tensors to "
    "cover the data section exactly, and the reference library refuses such files "
    "(`MetadataIncompleteBuffer`). modelshield scans the extra bytes as embedded content.",
    attack="Appending a second file (a pickle, a zip, a script) to valid safetensors makes a polyglot: "
    "safetensors tools that skip the check see clean weights, while another loader or a later stage "
    "of the attacker's chain reads the appended payload.",
    impact="An arbitrary payload is distributed inside a file believed to be inert.",
    remediation=_REMEDIATION + " Findings on `<trailing data>` show what the extra bytes contain.",
    example="A valid safetensors file followed by `80 02 63 6f 73 ...` (a pickle calling `os.system`).",
)

RULES = (MALFORMED_HEADER, DUPLICATE_KEY, BAD_METADATA, BAD_TENSOR_ENTRY, SIZE_MISMATCH, BAD_LAYOUT, UNCOVERED_DATA)


def header_length(source: Source) -> int | None:
    """The declared header length if the bytes look like safetensors, else None.

    A sane length prefix (2 bytes up to the reference limit) followed by a JSON object opening:
    `{` then a string or `}`, with JSON whitespace allowed around it. The length is not checked
    against the file size here, so a truncated file is still recognised and reported.
    """
    head = source.head()
    if len(head) < 10:
        return None
    (length,) = struct.unpack_from("<Q", head)
    if not 2 <= length <= MAX_HEADER_BYTES:
        return None
    body = head[8 : 8 + length].lstrip(_JSON_SPACE)
    if not body.startswith(b"{"):
        return None
    rest = body[1:].lstrip(_JSON_SPACE)
    return length if rest[:1] in (b'"', b"}") else None


class Problem(NamedTuple):
    """One deviation from the format, before it becomes a finding."""

    rule: Rule
    evidence: str
    offset: int | None = None


class TensorInfo(NamedTuple):
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_USIZE


def _signed_int(text: str) -> int | float:
    """JSON integers as Python ints, except negative ones, kept as floats so no unsigned check passes `-0`."""
    return float(text) if text.startswith("-") else int(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_header(raw: bytes) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The header as a JSON object (None if it is not one) and the problems met parsing it.

    Python's `json` is more lenient than the reference parser (serde_json) in ways that matter here:
    it accepts NaN/Infinity, lone surrogate escapes (`"\\ud800"`) and `-0` where an unsigned integer
    belongs, and silently keeps the last of duplicate keys. All are made visible.
    """
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                duplicates.append(key)
            seen.add(key)
        return dict(items)

    try:
        text = raw.decode("utf-8")
        # Negative integers (including -0, which int() would make 0) are never unsigned: keep them apart.
        header = json.loads(text, object_pairs_hook=pairs, parse_constant=_reject_constant, parse_int=_signed_int)
        json.dumps(header, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate, as serde_json does
    except UnicodeEncodeError:
        return None, [Problem(MALFORMED_HEADER, "header has a lone surrogate escape (\\ud800-\\udfff)", 8)]
    except UnicodeDecodeError as exc:
        return None, [Problem(MALFORMED_HEADER, f"header is not valid UTF-8 (byte {exc.start})", 8 + exc.start)]
    except RecursionError:
        return None, [Problem(MALFORMED_HEADER, "header JSON is nested too deeply to parse", 8)]
    except ValueError as exc:
        return None, [Problem(MALFORMED_HEADER, f"header is not valid JSON: {exc}", 8)]
    problems = [
        Problem(DUPLICATE_KEY, f"key {key!r} appears more than once in one header object", 8) for key in duplicates
    ]
    if not isinstance(header, dict):
        problems.append(Problem(MALFORMED_HEADER, f"header is a JSON {type(header).__name__}, not an object", 8))
        return None, problems
    return header, problems


def _entry_problems(entry: Any) -> list[str]:
    """Why a tensor entry is not a valid TensorInfo (empty if it is)."""
    if not isinstance(entry, dict):
        return [f"entry is a JSON {type(entry).__name__}, not an object"]
    problems = [f"missing '{key}'" for key in ("dtype", "shape", "data_offsets") if key not in entry]
    dtype = entry.get("dtype")
    if "dtype" in entry and (not isinstance(dtype, str) or dtype not in DTYPE_BITS):
        problems.append(f"unknown dtype {json.dumps(dtype)[:80]}")
    shape = entry.get("shape")
    if "shape" in entry and not (isinstance(shape, list) and all(_is_uint(d) for d in shape)):
        problems.append(f"shape {json.dumps(shape)[:80]} is not a list of non-negative integers")
    offsets = entry.get("data_offsets")
    if "data_offsets" in entry and not (
        isinstance(offsets, list) and len(offsets) == 2 and all(_is_uint(o) for o in offsets)
    ):
        problems.append(f"data_offsets {json.dumps(offsets)[:80]} is not a pair of non-negative integers")
    return problems


def check_entries(header: dict[str, Any]) -> tuple[list[TensorInfo], list[Problem]]:
    """The well-formed tensor entries, and problems with `__metadata__` and the other entries."""
    problems: list[Problem] = []
    tensors: list[TensorInfo] = []
    for name, entry in header.items():
        if name == METADATA_KEY:
            if entry is not None and not (isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())):
                what = (
                    "an object with non-string values" if isinstance(entry, dict) else f"a JSON {type(entry).__name__}"
                )
                problems.append(Problem(BAD_METADATA, f"__metadata__ is {what}; it must map strings to strings", 8))
            continue
        reasons = _entry_problems(entry)
        if reasons:
            problems.append(Problem(BAD_TENSOR_ENTRY, f"tensor {name!r}: " + "; ".join(reasons), 8))
        else:
            begin, end = entry["data_offsets"]
            tensors.append(TensorInfo(name, entry["dtype"], tuple(entry["shape"]), begin, end))
    return tensors, problems


def _byte_size(tensor: TensorInfo) -> tuple[int | None, str]:
    """The tensor's size in bytes from dtype and shape, or None and why it has none."""
    elements = 1
    for dim in tensor.shape:
        elements *= dim
        if elements > _MAX_USIZE:  # checked like the reference, which fails even if a later dim is 0
            return None, "the element count overflows 64 bits"
    bits = elements * DTYPE_BITS[tensor.dtype]
    if bits > _MAX_USIZE:
        return None, f"{elements} elements of {tensor.dtype} overflow 64 bits"
    if bits % 8:
        return None, f"{elements} elements of {DTYPE_BITS[tensor.dtype]}-bit {tensor.dtype} do not fill whole bytes"
    return bits // 8, ""


def check_layout(tensors: list[TensorInfo], data_len: int) -> tuple[int, list[Problem]]:
    """How far the tensors cover the data section, and every size, overlap, gap and bounds problem.

    Follows the reference validation: sort by offsets, then each tensor must begin where the
    previous one ended (the first at 0), have `end >= begin`, and span exactly its dtype x shape.
    """
    problems: list[Problem] = []
    covered = 0
    for tensor in sorted(tensors, key=lambda t: (t.begin, t.end)):
        where = f"tensor {tensor.name!r} [{tensor.begin}, {tensor.end})"
        if tensor.end < tensor.begin:
            problems.append(Problem(BAD_LAYOUT, f"{where} ends before it begins"))
            continue
        if tensor.begin > covered:
            problems.append(
                Problem(BAD_LAYOUT, f"{where} leaves {tensor.begin - covered} unreferenced bytes before it")
            )
        elif tensor.begin < covered:
            problems.append(Problem(BAD_LAYOUT, f"{where} overlaps earlier tensor data ending at {covered}"))
        if tensor.end > data_len:
            problems.append(Problem(BAD_LAYOUT, f"{where} runs past the {data_len}-byte data section"))
        size, why = _byte_size(tensor)
        if size is None:
            problems.append(Problem(SIZE_MISMATCH, f"{where}: {why}"))
        elif size != tensor.end - tensor.begin:
            shape = list(tensor.shape)
            problems.append(
                Problem(
                    SIZE_MISMATCH,
                    f"{where} spans {tensor.end - tensor.begin} bytes; {tensor.dtype} {shape} needs {size}",
                )
            )
        covered = max(covered, tensor.end)
    return covered, problems


class SafetensorsHandler(Handler):
    name = "safetensors"
    label = "safetensors"
    extensions = frozenset({".safetensors"})
    rules = RULES

    def detect(self, source: Source) -> bool:
        return header_length(source) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        length = header_length(source)
        assert length is not None
        data_start = 8 + length
        if data_start > source.size:
            yield ctx.finding(
                MALFORMED_HEADER,
                f"length prefix declares a {length}-byte header but only {source.size - 8} bytes follow",
                offset=0,
            )
            return
        header, problems = parse_header(source.read_at(8, length))
        covered = None
        if header is not None:
            tensors, entry_problems = check_entries(header)
            problems += entry_problems
            # Offsets of malformed entries are unknown, so coverage is only judged when all are sound.
            if not any(p.rule is BAD_TENSOR_ENTRY for p in entry_problems):
                covered, layout_problems = check_layout(tensors, source.size - data_start)
                problems += layout_problems
        yield from _capped(ctx, problems)
        if header is not None and isinstance(header.get(METADATA_KEY), dict):
            yield from metadata_findings(ctx, header[METADATA_KEY])  # configs some projects instantiate
        if covered is not None and data_start + covered < source.size:
            extra = source.size - data_start - covered
            yield ctx.finding(
                UNCOVERED_DATA,
                f"{extra} bytes follow the end of the last tensor (data offset {covered}); scanned as <trailing data>",
                offset=data_start + covered,
            )
            yield from ctx.scan_member("<trailing data>", SliceSource(source, data_start + covered, extra))


def _capped(ctx: Context, problems: list[Problem]) -> Iterator[Finding]:
    """Findings for `problems`, at most MAX_FINDINGS_PER_RULE per rule plus a count of the rest."""
    counts: dict[str, int] = {}
    for problem in problems:
        count = counts[problem.rule.id] = counts.get(problem.rule.id, 0) + 1
        if count <= MAX_FINDINGS_PER_RULE:
            yield ctx.finding(problem.rule, problem.evidence, offset=problem.offset)
    for rule in RULES:
        extra = counts.get(rule.id, 0) - MAX_FINDINGS_PER_RULE
        if extra > 0:
            yield ctx.finding(rule, f"{extra} more {rule.id} problems in this header are not listed")
