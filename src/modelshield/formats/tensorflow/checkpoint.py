"""TensorFlow checkpoint tensor bundles: the `.index` table beside `.data-NNNNN-of-NNNNN` shards
(`variables/variables.index` of every SavedModel, `model.ckpt.index`, `ckpt-1.index`).

Restoring a checkpoint runs no code from it: `BundleReader` (tensorflow/core/util/tensor_bundle)
reads this sorted string table, whose entry "" is a BundleHeaderProto (shard count, endianness)
and every other entry a BundleEntryProto (dtype, shape, shard, offset, size, checksum) naming a
tensor by its checkpoint key, then copies bytes out of the shards. What the loader does with it is
decided by the program and the SavedModel's object graph, which the SavedModel analyser judges.
What is left is native-parser surface: the table and its entries are read by C++ code, so they
are checked against each other here (a file TensorFlow wrote is always consistent).

The data shards are raw tensor bytes with no header, so they cannot be recognised by content; only
the index says which shards exist. The table format is LevelDB's (tsl/lib/io/table_format.txt):
blocks of prefix-compressed entries, an index block, and a 48-byte footer ending in a magic number.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from modelshield.core.errors import ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import BytesSource, DecodedSource, Source
from modelshield.formats._protobuf import LEN, VARINT, Field, WireError, fields, read_varint

MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")
FOOTER = 48
#: Each block is followed by a compression byte and a CRC32C (tsl/lib/io/format.h kBlockTrailerSize).
TRAILER = 5
#: Fixed-size dtypes by DataType number (types.proto): an entry's size must be elements x width.
_WIDTHS = {1: 4, 2: 8, 3: 4, 4: 1, 5: 2, 6: 1, 8: 8, 9: 8, 10: 1, 11: 1, 12: 1, 13: 4, 14: 2, 15: 2, 16: 2,
           17: 2, 18: 16, 19: 2, 22: 4, 23: 8, 24: 1, 25: 1, 26: 1, 27: 1, 28: 1}  # fmt: skip
#: Variable-size dtypes a checkpoint can hold (string, resource, variant) and the packed sub-byte ones.
_OTHER_DTYPES = frozenset({7, 20, 21, 29, 30, 31, 32})
#: Inconsistencies shown per finding; the count is complete.
_SHOWN = 5

INCONSISTENT = Rule(
    id="TFC001",
    title="TensorFlow checkpoint index is inconsistent with itself",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="A checkpoint's `.index` table (the tensor bundle every SavedModel carries as "
    "`variables/variables.index`) has entries that contradict each other or the header: a shard number "
    "past the shard count, an unknown dtype, a negative dimension, or a byte size that does not match "
    "the shape and dtype.",
    attack="TensorFlow's writer always produces a consistent table, so these were edited by hand. The "
    "table is parsed by native code when the model loads (`BundleReader`), a component with a history "
    "of crashes and out-of-bounds reads on crafted checkpoints; inconsistent entries are how such "
    "inputs are built, and they also make a reader and a scanner disagree about what is restored.",
    impact="A crash or memory-safety bug in the loading process, or variables restored with other "
    "values than a reviewer expects.",
    remediation="Do not load the checkpoint. Ask for one written by TensorFlow, or restore only from "
    "checkpoints you produced.",
    example="`{key: 'dense/kernel/.ATTRIBUTES/VARIABLE_VALUE', dtype: DT_FLOAT, shape: [4, 1], size: 4096}`",
)


class Malformed(ScanError):
    """The table's structure points outside itself."""


class BlockHandle(NamedTuple):
    offset: int
    size: int


def _handle(data: bytes, pos: int) -> tuple[BlockHandle, int]:
    offset, pos = read_varint(data, pos)
    size, pos = read_varint(data, pos)
    return BlockHandle(offset, size), pos


def footer(source: Source) -> BlockHandle | None:
    """The index block's handle, or None if the bytes are not a table: an entry with no shared key
    prefix first (the header's key is empty), the magic number last, and the footer's handles
    pointing at blocks that end before it. A compressed stream is not decoded to look (TensorFlow
    reads no compressed index either)."""
    if isinstance(source, DecodedSource) or source.head(2) != b"\x00\x00":
        return None
    size = source.size
    if size < FOOTER + TRAILER:
        return None
    tail = source.read_at(size - FOOTER, FOOTER)
    if tail[-8:] != MAGIC:
        return None
    try:
        meta, pos = _handle(tail, 0)
        index, _ = _handle(tail, pos)
    except WireError:
        return None
    limit = size - FOOTER
    if any(h.offset + h.size + TRAILER > limit for h in (meta, index)):
        return None
    return index


def _block(data: bytes, handle: BlockHandle) -> bytes:
    end = handle.offset + handle.size
    if end + TRAILER > len(data) - FOOTER:
        raise Malformed(f"block at offset {handle.offset} runs past the table")
    if data[end] != 0:  # TensorFlow's writer never compresses (kNoCompression)
        raise ScanError(f"block at offset {handle.offset} is compressed (type {data[end]}): not analysed")
    return data[handle.offset : end]


def _entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """A block's (key, value) pairs: keys share a prefix with the previous one, restarts at the end."""
    if len(block) < 4:
        raise Malformed("block shorter than its restart count")
    restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise Malformed("block's restart array is longer than the block")
    key = b""
    pos = 0
    try:
        while pos < limit:
            shared, pos = read_varint(block, pos)
            fresh, pos = read_varint(block, pos)
            length, pos = read_varint(block, pos)
            if shared > len(key) or pos + fresh + length > limit:
                raise Malformed(f"entry at offset {pos} of a block runs past it")
            key = key[:shared] + block[pos : pos + fresh]
            pos += fresh
            yield key, block[pos : pos + length]
            pos += length
    except WireError as exc:
        raise Malformed(f"entry of a block is not well formed: {exc}") from exc


def table(data: bytes, index: BlockHandle) -> Iterator[tuple[bytes, bytes]]:
    """Every entry of the table, through its index block (each value a data block's handle)."""
    for _, value in _entries(_block(data, index)):
        try:
            handle, _ = _handle(value, 0)
        except WireError as exc:
            raise Malformed(f"index entry is not a block handle: {exc}") from exc
        yield from _entries(_block(data, handle))


class Entry(NamedTuple):
    dtype: int
    dims: list[int]
    shard: int
    offset: int
    size: int
    sliced: bool


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def read_entry(value: bytes) -> Entry:
    """A BundleEntryProto: dtype 1, shape 2 (TensorShapeProto.dim 2 {size 1}), shard_id 3, offset 4,
    size 5, crc32c 6, slices 7 (the last occurrence of a scalar wins, as in protobuf)."""
    source = BytesSource(value)
    scalars = {1: 0, 3: 0, 4: 0, 5: 0}
    dims: list[int] = []
    sliced = False
    for item in fields(source, 0, len(value), len(value) + 1):
        if item.number in scalars and item.wire_type == VARINT:
            scalars[item.number] = _signed(item.value)
        elif item.number == 2 and item.wire_type == LEN:
            for dim in fields(source, item.offset, item.offset + item.value, item.value + 1):
                if dim.number == 2 and dim.wire_type == LEN:
                    dims.append(_last_varint(fields(source, dim.offset, dim.offset + dim.value, dim.value + 1), 1))
        elif item.number == 7 and item.wire_type == LEN:
            sliced = True
    return Entry(scalars[1], dims, scalars[3], scalars[4], scalars[5], sliced)


def _last_varint(items: Iterable[Field], number: int) -> int:
    value = 0
    for item in items:
        if item.number == number and item.wire_type == VARINT:
            value = _signed(item.value)
    return value


def is_v1_slices(header: bytes) -> bool:
    """Whether the header entry is the V1 format's (`Saver(write_version=V1)`, tensor_slice_writer):
    a SavedTensorSlices whose field 1 is a SavedTensorSliceMeta message, where V2's BundleHeaderProto
    has the shard count as a varint. V1 tables keep tensor data in the table itself."""
    return any(f.number == 1 and f.wire_type == LEN for f in fields(BytesSource(header), 0, len(header), 64))


def problems(entries: Iterator[tuple[bytes, bytes]]) -> tuple[int, int, list[str]]:
    """(number of tensors, shard count, what contradicts): the header must come first (its key is
    empty and keys are sorted), every entry must fit its header and its own shape. A V1 table's
    entries are slices, not bundle entries: counted, not checked (the V1 reader checks them)."""
    found: list[str] = []
    tensors = 0
    shards = 0
    v1 = False
    for number, (key, value) in enumerate(entries):
        name = key.decode("utf-8", "replace")
        try:
            if number == 0:
                if key != b"":
                    found.append("the first entry is not the bundle header")
                v1 = is_v1_slices(value)
                if v1:
                    shards = 1
                    continue
                shards = _last_varint(fields(BytesSource(value), 0, len(value), len(value) + 1), 1)
                if shards < 1:
                    found.append(f"the header declares {shards} shards")
                continue
            tensors += 1
            if v1:
                continue
            entry = read_entry(value)
        except WireError as exc:
            found.append(f"{name!r} does not parse: {exc}")
            continue
        found.extend(f"{name!r} {text}" for text in _entry_problems(entry, shards))
    return tensors, shards, found


def _entry_problems(entry: Entry, shards: int) -> Iterator[str]:
    if entry.dtype not in _WIDTHS and entry.dtype not in _OTHER_DTYPES:
        yield f"has unknown dtype {entry.dtype}"
    if any(d < 0 for d in entry.dims):
        yield f"has a negative dimension in shape {entry.dims}"
    if not 0 <= entry.shard < max(shards, 1):
        yield f"is in shard {entry.shard} of {shards}"
    if entry.offset < 0 or entry.size < 0:
        yield f"has offset {entry.offset} and size {entry.size}"
    width = _WIDTHS.get(entry.dtype)
    if width is not None and not entry.sliced and all(d >= 0 for d in entry.dims):
        elements = 1
        for d in entry.dims:
            elements *= d
        if elements * width != entry.size:
            yield f"holds {entry.size} bytes for {elements} element(s) of {width} byte(s)"


class TensorBundleHandler(Handler):
    name = "tf-tensor-bundle"
    label = "TensorFlow checkpoint index (tensor bundle)"
    #: TF1 V1 checkpoints are one table named `model.ckpt` (a name PyTorch Lightning uses too); `.index`
    #: is not claimed: FAISS and others use it for files that are not tables
    extensions = frozenset({".ckpt"})
    rules = (INCONSISTENT,)

    def detect(self, source: Source) -> bool:
        return footer(source) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        index = footer(source)
        assert index is not None
        tensors, shards, found = problems(table(ctx.read_whole(source, "checkpoint index"), index))
        if found:
            shown = "; ".join(found[:_SHOWN]) + (f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else "")
            evidence = f"{len(found)} inconsistency(ies) among {tensors} tensor entries in {shards} shard(s): {shown}"
            yield ctx.finding(INCONSISTENT, evidence, tensors=tensors, shards=shards, problems=found[:_SHOWN])
