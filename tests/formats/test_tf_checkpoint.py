"""TensorFlow checkpoint tensor bundles (`.index`): real ones written by TensorFlow's savers
(tests/fixtures/tf, scripts/make_tf_fixtures.py) stay quiet; tables built or edited by hand are judged."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelshield
from modelshield.core.source import BytesSource
from modelshield.formats.tensorflow import checkpoint
from tests.conftest import ScanData
from tests.formats.test_format_detection import pb_int, pb_msg

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"
REAL = [
    "savedmodel_module/variables/variables.index",
    "savedmodel_keras_export/variables/variables.index",
    "savedmodel_tf1/variables/variables.index",
    "checkpoint_tf1/model.ckpt.index",
    "checkpoint_tf1_v1/model.ckpt",  # the V1 format (`Saver(write_version=V1)`): slices in the table
    "checkpoint_tf2/ckpt-1.index",
]


@pytest.mark.parametrize("name", REAL)
def test_real_tensor_bundles_are_recognised_and_quiet(name: str) -> None:
    [result] = modelshield.scan(FIXTURES / name).files
    assert (result.format, result.findings) == ("tf-tensor-bundle", [])


def test_the_table_reads_as_tensorflow_wrote_it() -> None:
    """A TF1 Saver checkpoint: a partitioned variable (its full entry carries slices and no bytes, each
    part's key is the encoded slice), a string variable, the header first."""
    data = (FIXTURES / "checkpoint_tf1/model.ckpt.index").read_bytes()
    index = checkpoint.footer(BytesSource(data))
    assert index is not None
    entries = list(checkpoint.table(data, index))
    assert entries[0][0] == b""
    by_key = {key: checkpoint.read_entry(value) for key, value in entries[1:]}
    assert by_key[b"w"].sliced and by_key[b"w"].size == 0
    assert by_key[b"words"].dtype == 7
    tensors, shards, problems = checkpoint.problems(iter(entries))
    assert (tensors, shards, problems) == (len(entries) - 1, 1, [])


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in entries)
    return body + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")


TRAILER = b"\x00\x00\x00\x00\x00"


def table(*blocks: list[tuple[bytes, bytes]], order: list[int] | None = None) -> bytes:
    """A LevelDB table as tsl's TableBuilder lays it out: data blocks, an empty meta index, the index
    (listing the data blocks in `order`, by default as written)."""
    data = b""
    handles = []
    for entries in blocks:
        block = _block(entries)
        handles.append((entries[-1][0] + b"\xff", _varint(len(data)) + _varint(len(block))))
        data += block + TRAILER
    meta_at, meta = len(data), _block([])
    index_at = meta_at + len(meta) + 5
    index = _block([handles[i] for i in (order or range(len(blocks)))])
    footer = _varint(meta_at) + _varint(len(meta)) + _varint(index_at) + _varint(len(index))
    return data + meta + TRAILER + index + TRAILER + footer.ljust(40, b"\x00") + checkpoint.MAGIC


HEADER = (b"", pb_int(1, 1) + pb_msg(3, pb_int(1, 1)))


def entry(dtype: int, dims: list[int], size: int, shard: int = 0) -> bytes:
    shape = pb_msg(2, b"".join(pb_msg(2, pb_int(1, d & (2**64 - 1))) for d in dims))
    return pb_int(1, dtype) + shape + pb_int(3, shard) + pb_int(5, size)


def test_a_consistent_hand_built_table_is_quiet(scan_data: ScanData) -> None:
    result = scan_data(table([HEADER, (b"w", entry(1, [4, 1], 16))]), "m.index")
    assert (result.format, result.findings) == ("tf-tensor-bundle", [])


@pytest.mark.parametrize(
    ("value", "evidence"),
    [
        pytest.param(entry(1, [4, 1], 4096), "holds 4096 bytes for 4 element(s) of 4 byte(s)", id="size"),
        pytest.param(entry(1, [4, -1], 16), "negative dimension", id="negative-dimension"),
        pytest.param(entry(99, [4], 16), "unknown dtype 99", id="dtype"),
        pytest.param(entry(1, [4], 16, shard=3), "is in shard 3 of 1", id="shard"),
    ],
)
def test_inconsistent_entries_are_reported(scan_data: ScanData, value: bytes, evidence: str) -> None:
    result = scan_data(table([HEADER, (b"w", value)]), "variables.index")
    [finding] = result.findings
    assert finding.rule_id == "TFC001" and evidence in finding.evidence


def test_a_table_without_its_header_first_is_reported(scan_data: ScanData) -> None:
    """Keys are sorted, so the header (key "") comes first; an index that lists blocks out of order
    makes the reader meet a tensor before it."""
    result = scan_data(table([HEADER], [(b"w", entry(1, [1], 4))], order=[1, 0]), "m.index")
    assert [f.rule_id for f in result.findings] == ["TFC001"]


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d[:-48] + b"\x7f" * 40 + d[-8:], id="footer-handles-past-the-end"),
        pytest.param(lambda d: d[:-1] + b"\x00", id="no-magic"),
        pytest.param(lambda d: b"\x01" + d[1:], id="first-key-shares-a-prefix"),
    ],
)
def test_other_bytes_are_not_tensor_bundles(edit: object) -> None:
    data = table([HEADER, (b"w", entry(1, [4, 1], 16))])
    assert callable(edit)
    assert checkpoint.footer(BytesSource(edit(data))) is None


def test_a_broken_block_fails_closed(scan_data: ScanData) -> None:
    data = bytearray(table([HEADER, (b"w", entry(1, [4, 1], 16))]))
    data[2] = 0x7F  # the header entry's value now runs past its block
    result = scan_data(bytes(data), "m.index")
    assert (result.format, [f.rule_id for f in result.findings]) == ("tf-tensor-bundle", ["SCN003"])


def test_a_compressed_block_is_not_analysed(scan_data: ScanData) -> None:
    data = table([HEADER, (b"w", entry(1, [4, 1], 16))])
    first_trailer = len(_block([HEADER, (b"w", entry(1, [4, 1], 16))]))
    data = data[:first_trailer] + b"\x01" + data[first_trailer + 1 :]
    assert [f.rule_id for f in scan_data(data, "m.index").findings] == ["SCN003"]
