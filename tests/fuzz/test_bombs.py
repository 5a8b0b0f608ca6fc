"""Resource bombs give a finding in bounded time and memory (harness.scan_bytes checks the memory bound;
the hypothesis-free tests here only assert the finding: timing belongs to the benchmarks). Bombs that
already have a test elsewhere: zip member-count, ratio and total-bytes bombs (tests/containers/test_zip.py),
nested-archive depth bomb (test_tar_7z_compressed.py), pickle billion laughs (test_pickle_layouts.py),
safetensors header claim under the reference bound (test_safetensors.py), huge numpy shape
(test_numpy.py), GGUF string arrays (test_gguf.py), ONNX node bound (test_onnx.py), TFLite vector length
(test_tflite.py), Keras config nesting (test_keras.py)."""

from __future__ import annotations

import json
import struct
import zipfile

from modelshield import Policy
from modelshield.core.limits import Limits
from tests.fuzz import seeds
from tests.fuzz.harness import has, scan_bytes

DEEP = 50_000  # beyond what json (and so any loader) parses


def test_nested_zip_bomb_hits_the_total_bytes_bound() -> None:
    # 42.zip-style: each level holds 16 copies of the level below; 16^4 x 1 MiB of zeros at the bottom.
    level = seeds.make_zip({"zeros.bin": b"\0" * (1 << 20)}, zipfile.ZIP_DEFLATED)
    for _ in range(4):
        level = seeds.make_zip({f"{i}.zip": level for i in range(16)}, zipfile.ZIP_DEFLATED)
    result = scan_bytes(level, "bomb.zip", Policy(limits=Limits(max_total_bytes=64 << 20)))
    assert has(result, "SCN005", "max_total_bytes") or has(result, "SCN005", "bytes decompressed in total")


def test_pickle_memo_fan_out_is_bounded() -> None:
    # Every level's list holds its predecessor ten times through the memo: 10^12 objects if expanded.
    data = b"\x80\x04]\x94"
    for level in range(12):
        data += b"(" + (b"h" + bytes([level])) * 10 + b"l\x94"
    result = scan_bytes(data + b".", "data.pkl")
    assert has(result, "SCN005")


def test_pickle_memo_index_claim_is_malformed_not_allocated() -> None:
    # LONG_BINPUT/LONG_BINGET at index 2^32-1: a memo sized by the index would be 32 GiB.
    data = b"\x80\x04N" + b"r\xff\xff\xff\xff" + b"j\xff\xff\xff\xff" + b"j\xfe\xff\xff\xff."
    result = scan_bytes(data, "data.pkl")
    assert any(f.rule_id.startswith("PKL") or f.rule_id == "SCN003" for f in result.findings)


def test_2_to_the_50_safetensors_header_claim() -> None:
    result = scan_bytes(struct.pack("<Q", 1 << 50) + b'{"a": 1}', "model.safetensors")
    assert [f.rule_id for f in result.findings] == ["SCN004"]  # no loader reads it: not safetensors at all


def test_npy_header_length_claim() -> None:
    result = scan_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFFF) + b"{'descr'", "a.npy")
    assert has(result, "NPY001", "exceeds")


def test_npy_2_to_the_50_element_claim() -> None:
    result = scan_bytes(seeds.npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1125899906842624,), }"), "a.npy")
    assert has(result, "NPY003")


def test_gguf_2_to_the_50_counts() -> None:
    tensors = b"GGUF" + struct.pack("<IQQ", 3, 1 << 50, 0)
    keys = b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 50)
    array = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + seeds.gstr("x") + struct.pack("<IIQ", 9, 4, 1 << 50)
    string = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + seeds.gstr("x") + struct.pack("<IQ", 8, 1 << 50) + b"abc"
    for data in (tensors, keys, array, string):
        assert has(scan_bytes(data, "model.gguf"), "GGF001"), data


def _deep(prefix: str, depth: int = DEEP) -> bytes:
    return (prefix + "[" * depth + "]" * depth + "}").encode()


def test_unparseably_deep_json_configs_are_not_models() -> None:
    # json.loads (what transformers, Keras and this scanner use) refuses such nesting: nothing can load
    # these, so they are plain text, without an internal error or a RecursionError.
    cases = {
        "config.json": '{"model_type": "x", "auto_map": {"AutoModel": "a.B"}, "x": ',
        "tokenizer_config.json": '{"chat_template": "{{ messages }}", "x": ',
        "adapter_config.json": '{"peft_type": "LORA", "base_model_name_or_path": "org/m", "x": ',
        "model.safetensors.index.json": '{"weight_map": {"a": "m.safetensors"}, "metadata": ',
    }
    for name, prefix in cases.items():
        result = scan_bytes(_deep(prefix), name)
        assert result.format == "text" and result.findings == [], name
    keras = scan_bytes(_deep('{"module": "keras", "class_name": "Sequential", "config": '), "config.json")
    assert {f.rule_id for f in keras.findings} <= {"SCN003"}


def test_deep_but_parseable_json_configs_are_walked() -> None:
    def nest(key: str, leaf: object, outer: dict[str, object], depth: int = 900) -> bytes:
        text = json.dumps(leaf)
        head = json.dumps(outer)[:-1]
        return (f'{head}, "{key}": ' * depth + text + "}" * depth).encode()

    outer = {"model_type": "x", "_name_or_path": "org/m"}
    hf = scan_bytes(nest("text_config", {"model_type": "llama"}, outer), "config.json")
    assert hf.format == "hf-config" and has(hf, "DEP002", "org/m")
    evil = {"chat_template": seeds.EVIL_TEMPLATE}
    tok = scan_bytes(nest("x", 1, evil), "tokenizer_config.json")
    assert has(tok, "TPL001")
    index = scan_bytes(nest("x", 1, {"weight_map": {"a": "../m.safetensors"}}), "model.safetensors.index.json")
    assert has(index, "IDX001")


def test_deeply_nested_chat_template_fails_closed() -> None:
    template = "{% for m in messages %}" + "{{ (" * 3000 + "1" + ") }}" * 3000 + "{% endfor %}"
    result = scan_bytes(seeds.tokenizer_config(template), "tokenizer_config.json")
    assert has(result, "TPL006", "nested too deeply")


def aliasing_tflite(subgraphs: int, operators: int) -> bytes:
    """A valid LiteRT flatbuffer whose `subgraphs` vector repeats one SubGraph table `subgraphs` times,
    and whose operator vector repeats one Operator `operators` times: offsets loop back onto the same
    tables, so a naive walk reads subgraphs x operators tables from a file of a few kilobytes."""
    # vtables: Model (slots 1, 2) at 8, OperatorCode at 20, Operator at 24, SubGraph (slot 3) at 28
    out = bytearray(struct.pack("<I4s", 40, b"TFL3"))
    out += struct.pack("<5H", 10, 12, 0, 4, 8) + b"\0\0"
    out += struct.pack("<2H", 4, 4) + struct.pack("<2H", 4, 4) + struct.pack("<6H", 12, 8, 0, 0, 0, 4)
    out += struct.pack("<iII", 40 - 8, 52 - 44, 64 - 48)  # Model table at 40: operator_codes, subgraphs
    out += struct.pack("<II", 1, 4) + struct.pack("<i", 60 - 20)  # operator_codes [OperatorCode at 60]
    subgraph = 68 + 4 * subgraphs
    out += struct.pack("<I", subgraphs) + b"".join(struct.pack("<I", subgraph - (68 + 4 * i)) for i in range(subgraphs))
    vector = subgraph + 8
    out += struct.pack("<iI", subgraph - 28, vector - (subgraph + 4))  # SubGraph: operators
    operator = vector + 4 + 4 * operators
    out += struct.pack("<I", operators) + b"".join(
        struct.pack("<I", operator - (vector + 4 + 4 * i)) for i in range(operators)
    )
    out += struct.pack("<i", operator - 24)  # Operator: opcode_index 0
    return bytes(out)


def test_tflite_offsets_looping_onto_the_same_tables_are_bounded() -> None:
    assert scan_bytes(aliasing_tflite(2, 2), "m.tflite").findings == []  # the builder makes valid models
    result = scan_bytes(aliasing_tflite(2000, 2000), "m.tflite")
    assert has(result, "SCN005", "alias")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_onnx_huge_repeated_node_field_is_analysed() -> None:
    # 100k empty nodes in 200 kB (the walk stops at onnx.MAX_NODES, tested in tests/formats/test_onnx.py)
    model = b"\x08\x08" + _ld(8, _ld(1, b"") + b"\x10\x11") + _ld(7, _ld(1, b"") * 100_000)
    result = scan_bytes(model, "model.onnx", measure=False)  # protobuf allocates in C++, not traced
    assert has(result, "ONX003", "100000 node(s)")


def test_savedmodel_flood_of_meta_graphs_is_bounded() -> None:
    # MetaGraphDef { meta_info_def { meta_graph_version }, graph_def { node { op: "Const" } } }
    meta_graph = _ld(2, _ld(1, _ld(1, b"x")) + _ld(2, _ld(1, _ld(2, b"Const"))))
    result = scan_bytes(b"\x08\x01" + meta_graph * 5_000, "saved_model.pb")
    assert has(result, "SCN005", "meta graphs")
