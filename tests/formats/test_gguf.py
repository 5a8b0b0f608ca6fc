"""GGUF analysis: files written by llama.cpp's gguf package are clean; hostile counts, lengths, types
and offsets are findings without allocating what they claim; chat templates in metadata are analysed."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelshield import FileResult, scan_file
from modelshield.core import native
from modelshield.core.rules import Severity
from modelshield.formats.llm import gguf as gguf_format
from tests.conftest import ScanData
from tests.formats.test_templates import LLAMA_3_1

gguf = pytest.importorskip("gguf")


def rule_ids(result: FileResult) -> list[str]:
    return sorted(f.rule_id for f in result.findings)


def written(path: Path, template: str = LLAMA_3_1, **extra: str) -> Path:
    """A small llama-architecture GGUF as llama.cpp's converter writes one."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(2048)
    writer.add_block_count(1)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["<s>", "</s>", "hello", "world"])
    writer.add_token_scores([0.0, 0.0, -1.5, -2.5])
    writer.add_array("x.nested", [[1, 2], [3]])
    writer.add_chat_template(template)
    for name, value in extra.items():
        writer.add_string(name, value)
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), dtype=np.float16))
    writer.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# -- a hand-written GGUF for hostile variants -------------------------------------------------------


def gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv_u32(key: str, value: int) -> bytes:
    return gstr(key) + struct.pack("<II", 4, value)


def kv_str(key: str, value: str) -> bytes:
    return gstr(key) + struct.pack("<I", 8) + gstr(value)


def tensor_info(name: str, shape: tuple[int, ...], ggml_type: int = 0, offset: int = 0) -> bytes:
    return (
        gstr(name)
        + struct.pack("<I", len(shape))
        + struct.pack(f"<{len(shape)}Q", *shape)
        + struct.pack("<IQ", ggml_type, offset)
    )


def build(
    kvs: list[bytes], infos: list[bytes], data: bytes = b"", alignment: int = 32, counts: tuple[int, int] | None = None
) -> bytes:
    n_tensors, n_kvs = counts or (len(infos), len(kvs))
    body = b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kvs) + b"".join(kvs) + b"".join(infos)
    body += b"\0" * (-len(body) % alignment)
    return body + data


def test_file_written_by_the_gguf_package_is_clean(tmp_path: Path) -> None:
    result = scan_file(str(written(tmp_path / "tiny.gguf")))
    assert result.format == "gguf"
    assert result.findings == []


def test_hand_built_file_is_clean(scan_data: ScanData) -> None:
    data = build(
        [kv_u32("general.alignment", 64)], [tensor_info("a", (16,)), tensor_info("b", (4,), offset=64)], b"\0" * 80, 64
    )
    assert scan_data(data, "model.gguf").findings == []


def test_big_endian_file_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "be.gguf"
    writer = gguf.GGUFWriter(str(path), "llama", endianess=gguf.GGUFEndian.BIG)
    writer.add_chat_template("{{ lipsum.__globals__ }}")
    writer.add_tensor("w", np.zeros(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert rule_ids(scan_file(str(path))) == ["TPL001", "TPL003"]


def test_hostile_chat_templates_are_critical(tmp_path: Path) -> None:
    path = written(
        tmp_path / "evil.gguf",
        **{"tokenizer.chat_template.tool_use": "{{ cycler.__init__.__globals__.os.popen('id').read() }}"},
    )
    result = scan_file(str(path))
    critical = [f for f in result.findings if f.level is Severity.CRITICAL]
    assert {f.rule_id for f in critical} == {"TPL001", "TPL002"}
    assert all(f.location.display.endswith("!tokenizer.chat_template.tool_use") for f in critical)


def test_unparseable_template_fails_closed(tmp_path: Path) -> None:
    result = scan_file(str(written(tmp_path / "m.gguf", template="{% if messages %}")))
    assert rule_ids(result) == ["TPL006"]


def test_oversized_template_is_skipped_not_read(scan_data: ScanData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf_format.templates, "MAX_TEMPLATE_CHARS", 10)
    result = scan_data(build([kv_str("tokenizer.chat_template", "{{ messages }}" * 5)], []), "m.gguf")
    assert rule_ids(result) == ["TPL006"]


# -- hostile structure -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "evidence"),
    [
        (build([], [], counts=(0, 2**60)), "declares 1152921504606846976 metadata keys"),
        (build([], [], counts=(2**62, 0)), "declares 4611686018427387904 tensors"),
        (build([gstr("k") + struct.pack("<IIQ", 9, 0, 2**61)], []), "elements in k"),
        (build([gstr("k") + struct.pack("<IIQ", 9, 8, 2**40)], []), "strings in k"),
        (build([gstr("k") + struct.pack("<IQ", 8, 2**50)], []), "k needs 1125899906842624 bytes"),
        (build([struct.pack("<Q", 2**63) + b"k"], []), "metadata key needs 9223372036854775808 bytes"),
        (build([gstr("k") + struct.pack("<I", 13)], []), "unknown value type 13"),
        (build([gstr("k") + struct.pack("<II", 9, 77) + struct.pack("<Q", 1)], []), "unknown array element type 77"),
        (build([gstr("k") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 9, 1) * 6], []), "nested more than"),
        (build([kv_u32("general.alignment", 24)], []), "not a power of two"),
        (build([gstr("general.alignment") + struct.pack("<IQ", 10, 32)], []), "not UINT32"),
        (build([], [tensor_info("w", (1, 1, 1, 1, 1))]), "has 5 dimensions"),
    ],
)
def test_malformed_metadata(scan_data: ScanData, data: bytes, evidence: str) -> None:
    result = scan_data(data, "model.gguf")  # a declared count is never looped over: this returns at once
    assert [f.rule_id for f in result.findings] == ["GGF001"]
    assert evidence in result.findings[0].evidence


@pytest.mark.parametrize(
    ("infos", "data", "evidence"),
    [
        ([tensor_info("w", (2**40, 2**40))], b"", "overflows 64-bit"),
        ([tensor_info("w", (4,), ggml_type=4)], b"\0" * 32, "unknown ggml type 4"),
        ([tensor_info("w", (30,), ggml_type=2)], b"\0" * 32, "not whole Q4_0 blocks of 32"),
        ([tensor_info("w", (4,), offset=1)], b"\0" * 64, "is not 32-byte aligned"),
        ([tensor_info("w", (64,))], b"\0" * 32, "runs past the 32-byte data section"),
        ([tensor_info("a", (16,)), tensor_info("b", (8,), offset=32)], b"\0" * 64, "overlaps earlier tensor"),
        ([tensor_info("a", (4,)), tensor_info("b", (4,), offset=64)], b"\0" * 96, "leaves 48 unreferenced bytes"),
        ([tensor_info("x" * 64, (4,))], b"\0" * 32, "64 bytes or longer"),
    ],
)
def test_invalid_tensor_info(scan_data: ScanData, infos: list[bytes], data: bytes, evidence: str) -> None:
    result = scan_data(build([], infos, data), "model.gguf")
    assert [f.rule_id for f in result.findings] == ["GGF002"]
    assert evidence in result.findings[0].evidence


def test_overlong_keys_are_skipped_not_read(scan_data: ScanData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf_format, "MAX_KEY", 4)
    result = scan_data(build([kv_u32("general.toolong", 1)], []), "model.gguf")
    assert [f.evidence for f in result.findings] == ["a metadata key is longer than 4 bytes"]


def test_duplicates(scan_data: ScanData) -> None:
    kvs = [kv_str("tokenizer.chat_template", "{{ messages }}")] * 2
    infos = [tensor_info("w", (8,)), tensor_info("w", (8,), offset=32)]
    result = scan_data(build(kvs, infos, b"\0" * 64), "model.gguf")
    assert rule_ids(result) == ["GGF003", "GGF003"]


def test_findings_are_capped(scan_data: ScanData) -> None:
    infos = [tensor_info(f"w{i}", (4,), ggml_type=99) for i in range(50)]
    result = scan_data(build([], infos, b"\0" * 32), "model.gguf")
    assert len(result.findings) == gguf_format.MAX_FINDINGS_PER_RULE + 1


def test_huge_string_arrays_are_bounded(scan_data: ScanData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf_format, "MAX_ARRAY_STRINGS", 10)
    array = gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 20) + gstr("t") * 20
    assert rule_ids(scan_data(build([array], []), "model.gguf")) == ["SCN005"]


def _one_by_one(reader: gguf_format._Reader, count: int, what: str) -> None:
    """What the bulk skip replaces: each string's length read and its bytes skipped on their own."""
    for _ in range(count):
        reader.skip(reader.unpack("Q", f"string length in {what}"), what)


class _CountedStep:
    """The C vocabulary step, counting the strings it stepped over."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.stepped = 0

    def skip_strings(self, buf: bytes, at: int, end: int, count: int, big: bool) -> tuple[int, int]:
        done: tuple[int, int] = self.real.skip_strings(buf, at, end, count, big)
        self.stepped += count - done[1]
        return done


@pytest.mark.parametrize("loop", ["c", "python"])
def test_bulk_vocabulary_skip_reports_what_the_string_by_string_walk_does(
    loop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Strings of every length around a 40-byte window (one longer than it), then the file cut at
    # every byte of the array: each cut must give the same findings, evidence and offsets either way,
    # with the C step (`_gguf.c`) and with the Python loop.
    monkeypatch.setattr(gguf_format, "_CHUNK", 40)
    counted = None
    if loop == "c":
        if gguf_format._native is None:
            if os.environ.get("MODELSHIELD_REQUIRE_NATIVE") == "1":
                pytest.fail("the C vocabulary step (modelshield.formats.llm._gguf) is not built")
            pytest.skip("the C vocabulary step (modelshield.formats.llm._gguf) is not built")
        counted = _CountedStep(gguf_format._native)
        monkeypatch.setattr(gguf_format, "_native", counted)
    monkeypatch.setattr(native, "PURE_PYTHON", loop == "python")
    tokens = [gstr("t" * (i % 7)) for i in range(30)] + [gstr("w" * 100)] + [gstr("end")]
    array = gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, len(tokens)) + b"".join(tokens)
    whole = build([array, kv_u32("x.after", 1)], [tensor_info("w", (8,))], b"\0" * 32)
    start = whole.index(tokens[0])
    path = tmp_path / "model.gguf"
    for cut in [*range(start, start + len(b"".join(tokens)) + 1), len(whole)]:
        path.write_bytes(whole[:cut])
        bulk = [(f.rule_id, f.evidence, str(f.location)) for f in scan_file(str(path)).findings]
        with monkeypatch.context() as patched:
            patched.setattr(gguf_format._Reader, "skip_strings", _one_by_one)
            single = [(f.rule_id, f.evidence, str(f.location)) for f in scan_file(str(path)).findings]
        assert bulk == single, cut
        assert (cut == len(whole)) == (bulk == []), cut
    assert counted is None or counted.stepped > len(tokens)  # the C step really ran, across the cuts


def test_the_c_step_reads_both_byte_orders_and_stops_where_a_string_leaves_the_window() -> None:
    if gguf_format._native is None:
        pytest.skip("the C vocabulary step is not built")
    little = struct.pack("<Q", 3) + b"abc" + struct.pack("<Q", 2) + b"de" + struct.pack("<Q", 9) + b"fgh"
    big = struct.pack(">Q", 3) + b"abc" + struct.pack(">Q", 2) + b"de" + struct.pack(">Q", 9) + b"fgh"
    assert gguf_format._native.skip_strings(little, 0, len(little), 5, False) == (21, 3)
    assert gguf_format._native.skip_strings(big, 0, len(big), 5, True) == (21, 3)
    assert gguf_format._native.skip_strings(little, 0, len(little), 1, False) == (11, 0)
    huge = struct.pack("<Q", (1 << 64) - 1) + b"x"
    assert gguf_format._native.skip_strings(huge, 0, len(huge), 1, False) == (0, 1)
    with pytest.raises(ValueError):
        gguf_format._native.skip_strings(little, 0, len(little) + 1, 1, False)


def test_version_1_fails_closed(scan_data: ScanData) -> None:
    result = scan_data(b"GGUF" + struct.pack("<III", 1, 0, 0), "model.gguf")
    assert [f.rule_id for f in result.findings] == ["SCN003"]


def test_ggml_type_table_matches_the_gguf_package() -> None:
    expected = {t.value: (t.name, *size) for t, size in gguf.GGML_QUANT_SIZES.items()}
    assert {k: v for k, v in gguf_format.GGML_TYPES.items() if k in expected} == expected


# -- split models and every template key ------------------------------------------------------------


def split_part(path: Path, number: int, count: int) -> Path:
    """One part of a split model as `llama-gguf-split` writes it (split.no, split.count, split.tensors.count)."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint16(gguf_format.SPLIT_NO, number)
    writer.add_uint16(gguf_format.SPLIT_COUNT, count)
    writer.add_int32("split.tensors.count", count)
    writer.add_tensor(f"blk.{number}.attn_q.weight", np.zeros((32, 32), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_split_parts_are_dependencies_and_missing_parts_are_reported(tmp_path: Path) -> None:
    first = split_part(tmp_path / "tiny-00001-of-00003.gguf", 0, 3)
    split_part(tmp_path / "tiny-00002-of-00003.gguf", 1, 3)
    result = scan_file(str(first))
    linked = [f.details["dependency"] for f in result.findings if f.rule_id == "DEP002"]
    assert [(d["kind"], d["ref"], d["role"]) for d in linked] == [
        ("path", "tiny-00002-of-00003.gguf", "GGUF split part")
    ]
    [missing] = [f for f in result.findings if f.rule_id == "GGF004"]
    assert "tiny-00003-of-00003.gguf" in missing.evidence and missing.level is Severity.LOW
    assert scan_file(str(tmp_path / "tiny-00002-of-00003.gguf")).findings == []  # later parts name nothing


def test_split_part_under_a_name_llama_cpp_refuses(tmp_path: Path) -> None:
    result = scan_file(str(split_part(tmp_path / "renamed.gguf", 0, 2)))
    assert [f.rule_id for f in result.findings] == ["GGF004"]
    assert "00001-of-00002" in result.findings[0].evidence


def test_a_single_file_model_names_no_parts(tmp_path: Path) -> None:
    assert rule_ids(scan_file(str(split_part(tmp_path / "whole-00001-of-00001.gguf", 0, 1)))) == []


def test_every_template_key_is_analysed(scan_data: ScanData) -> None:
    """Named templates (`tokenizer.chat_template.tool_use`) and template keys stored as string arrays,
    which gguf-py based readers take the first string of, are analysed like the default one."""
    payload = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"
    array = gstr(gguf_format.TEMPLATE_KEY) + struct.pack("<IIQ", 9, 8, 2) + gstr(payload) + gstr("{{ messages }}")
    data = build([kv_str(gguf_format.TEMPLATE_KEY + ".tool_use", payload), array], [])
    result = scan_data(data, "model.gguf")
    critical = {f.location.members[-1] for f in result.findings if f.level is Severity.CRITICAL}
    assert critical == {"tokenizer.chat_template.tool_use", "tokenizer.chat_template[0]"}
    assert any(f.rule_id == "TPL006" and "value type 9" in f.evidence for f in result.findings)
    scalar = build([gstr(gguf_format.TEMPLATE_KEY) + struct.pack("<II", 4, 7)], [])
    assert rule_ids(scan_data(scalar, "model.gguf")) == ["TPL006"]
