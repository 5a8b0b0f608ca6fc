"""Formats recognised by content (GGUF, ONNX, TFLite, HDF5, SavedModel, Keras config): each is
claimed by its bytes, and none claims ordinary files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from modelshield import scan_file
from modelshield.core.handler import Handler
from modelshield.core.source import BytesSource
from modelshield.formats._protobuf import WireError, fields, read_varint
from modelshield.formats.keras.config import KerasConfigHandler
from modelshield.formats.keras.hdf5 import Hdf5Handler
from modelshield.formats.llm.gguf import GgufHandler
from modelshield.formats.onnx.model import OnnxHandler
from modelshield.formats.tensorflow.savedmodel import SavedModelHandler
from modelshield.formats.tensorflow.tflite import TfliteHandler
from modelshield.formats.tensors.numpy_array import NpyHandler
from modelshield.formats.tensors.safetensors import SafetensorsHandler
from modelshield.registry import HANDLERS
from tests.conftest import ScanData
from tests.helpers import evil_pickle, is_code_execution

MY_HANDLERS: list[Handler] = [
    NpyHandler(),
    SafetensorsHandler(),
    GgufHandler(),
    OnnxHandler(),
    TfliteHandler(),
    Hdf5Handler(),
    SavedModelHandler(),
    KerasConfigHandler(),
]


def claimed_by(data: bytes) -> list[str]:
    source = BytesSource(data)
    return [h.name for h in MY_HANDLERS if h.detect(source)]


# -- tiny protobuf writer for hand-built messages --------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def pb_int(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def pb_msg(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


# -- GGUF -------------------------------------------------------------------------------------------


def gguf(version: int = 3, order: str = "<", tensors: int = 2, kvs: int = 1) -> bytes:
    count = "I" if version == 1 else "Q"
    return b"GGUF" + struct.pack(order + "I" + 2 * count, version, tensors, kvs) + b"\0" * 32


@pytest.mark.parametrize(("version", "order"), [(3, "<"), (2, "<"), (3, ">")])
def test_gguf_is_recognised_and_analysed(scan_data: ScanData, version: int, order: str) -> None:
    result = scan_data(gguf(version, order), "model.gguf")
    assert result.format == "gguf"
    # 32 zero bytes hold one empty key but not the two tensors the header declares (tests/formats/test_gguf.py)
    assert [f.rule_id for f in result.findings] == ["GGF001"]


def test_gguf_version_1_is_recognised_but_not_analysed(scan_data: ScanData) -> None:
    result = scan_data(gguf(1), "model.gguf")
    assert result.format == "gguf"
    assert [f.rule_id for f in result.findings] == ["SCN003"]


def test_gguf_written_by_the_gguf_package(tmp_path: Path) -> None:
    gguf_package = pytest.importorskip("gguf")
    path = tmp_path / "tiny.gguf"
    writer = gguf_package.GGUFWriter(str(path), "llama")
    writer.add_string("tokenizer.chat_template", "{{ messages }}")
    writer.add_tensor("w", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert scan_file(str(path)).findings == []


def test_gguf_with_an_unknown_version_is_not_claimed(scan_data: ScanData) -> None:
    result = scan_data(gguf(version=7), "model.gguf")
    assert [f.rule_id for f in result.findings] == ["SCN004"]


# -- ONNX -------------------------------------------------------------------------------------------


def onnx_model() -> bytes:
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, producer_name="modelshield-tests")
    helper.set_model_props(model, {"author": "tests"})
    return bytes(model.SerializeToString())


def test_onnx_is_recognised_and_analysed(scan_data: ScanData) -> None:
    result = scan_data(onnx_model(), "model.onnx")
    assert result.format == "onnx"
    assert result.findings == []  # analysis itself: tests/formats/test_onnx.py


def test_onnx_tensor_proto_is_not_claimed() -> None:
    onnx = pytest.importorskip("onnx")
    tensor = onnx.numpy_helper.from_array(np.arange(6, dtype=np.float32), "input_0")
    assert claimed_by(tensor.SerializeToString()) == []


def test_truncated_onnx_is_not_claimed() -> None:
    assert claimed_by(onnx_model()[:-3]) == []


def test_onnx_content_under_another_name_is_a_mismatch(scan_data: ScanData) -> None:
    result = scan_data(onnx_model(), "model.tflite")
    assert "SCN001" in [f.rule_id for f in result.findings]


# -- TFLite -----------------------------------------------------------------------------------------


def tflite(version: int = 3) -> bytes:
    """Root offset, identifier, a 6-byte vtable (one slot: version at +4), padding, the table."""
    vtable = struct.pack("<HHH", 6, 8, 4) + b"\0\0"
    table = struct.pack("<iI", 16 - 8, version)
    return struct.pack("<I", 16) + b"TFL3" + vtable + table


def test_tflite_is_recognised_and_analysed(scan_data: ScanData) -> None:
    result = scan_data(tflite(), "model.tflite")
    assert result.format == "tflite"
    assert result.findings == []  # no operators: nothing to report (tests/formats/test_tflite.py)


@pytest.mark.parametrize(
    "data",
    [
        b"\x10\0\0\0TFL3",  # root offset beyond the file
        struct.pack("<I", 8) + b"TFL3" + struct.pack("<i", 100),  # vtable before the file start
        b"The TFL3 identifier mentioned in text",
    ],
)
def test_tflite_identifier_alone_is_not_enough(data: bytes) -> None:
    assert claimed_by(data) == []


# -- HDF5 -------------------------------------------------------------------------------------------


def test_hdf5_is_recognised_and_analysed(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {}})
        handle["weights"] = np.zeros(3)
    result = scan_file(str(path))
    assert result.format == "hdf5"
    assert result.findings == []


def test_hdf5_user_block_is_scanned(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model.h5"
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle["weights"] = np.zeros(3)
    data = bytearray(path.read_bytes())
    payload = b"#" + evil_pickle()  # not at offset 0, so only the user-block scan can find it
    data[: len(payload)] = payload
    path.write_bytes(bytes(data))
    result = scan_file(str(path))
    assert any(o.location.endswith("!<user block>") for o in result.objects)


def test_hdf5_signature_is_found_after_a_user_block() -> None:
    signature = b"\x89HDF\r\n\x1a\n"
    assert claimed_by(b"\0" * 2048 + signature + b"\0" * 64) == ["hdf5"]
    assert claimed_by(b"\0" * 700 + signature + b"\0" * 64) == []


# -- SavedModel -------------------------------------------------------------------------------------


def saved_model() -> bytes:
    node = pb_msg(1, b"x") + pb_msg(2, b"Placeholder")
    graph_def = pb_msg(1, node)
    meta_info = pb_msg(4, b"serve") + pb_msg(5, b"2.21.0")
    meta_graph = pb_msg(1, meta_info) + pb_msg(2, graph_def) + pb_msg(5, pb_msg(1, b"serving_default"))
    return pb_int(1, 1) + pb_msg(2, meta_graph)


def test_saved_model_is_recognised_and_analysed(scan_data: ScanData) -> None:
    result = scan_data(saved_model(), "saved_model.pb")
    assert result.format == "savedmodel"
    assert result.findings == []  # one Placeholder node (tests/formats/test_savedmodel.py)


def test_other_protobufs_beside_a_saved_model_are_not_claimed(scan_data: ScanData) -> None:
    fingerprint = pb_int(1, 1234) + pb_int(2, 5678) + pb_msg(6, pb_int(1, 1))
    keras_metadata = pb_msg(1, pb_int(2, 0) + pb_msg(4, b"_tf_keras_network"))
    frozen_graph = pb_msg(1, pb_msg(1, b"x") + pb_msg(2, b"Const"))
    for data in (fingerprint, keras_metadata, frozen_graph):
        assert claimed_by(data) == []
        assert scan_data(data, "fingerprint.pb").findings == []


def test_saved_model_and_onnx_do_not_claim_each_other() -> None:
    assert claimed_by(saved_model()) == ["savedmodel"]
    assert claimed_by(onnx_model()) == ["onnx"]


# -- Keras config -----------------------------------------------------------------------------------

KERAS3_CONFIG = {
    "module": "keras.src.models.functional",
    "class_name": "Functional",
    "config": {"name": "m", "layers": []},
    "registered_name": "Functional",
}
LEGACY_CONFIG = {
    "class_name": "Sequential",
    "config": {"layers": [{"class_name": "Dense"}] * 300},
    "keras_version": "2.15.0",
}
CUSTOM_CONFIG: dict[str, object] = {
    "module": None,
    "class_name": "MyModel",
    "config": {},
    "registered_name": "MyPkg>MyModel",
}


@pytest.mark.parametrize(("config", "rules"), [(KERAS3_CONFIG, []), (LEGACY_CONFIG, []), (CUSTOM_CONFIG, ["KRS003"])])
def test_keras_config_is_recognised(scan_data: ScanData, config: dict[str, object], rules: list[str]) -> None:
    result = scan_data(json.dumps(config, indent=2).encode(), "config.json")
    assert result.format == "keras-config"
    assert [f.rule_id for f in result.findings] == rules


@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "Thing", "config": {}},  # no Keras marker
        {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0"},
        {"architectures": ["BertModel"], "model_type": "bert", "class_name": "x"},
        {"keras_version": "3.15.1", "date_saved": "2026-11-22@09:26:46"},  # metadata.json: no model
        [{"class_name": "Dense", "config": {}, "registered_name": None}],
    ],
)
def test_other_json_is_not_claimed(config: object) -> None:
    assert claimed_by(json.dumps(config).encode()) == []


# -- nothing ordinary is claimed --------------------------------------------------------------------

ORDINARY = [
    b"",
    b"hello world\n" * 50,
    b'{"vocab_size": 32000, "hidden_size": 4096}',
    b"a,b,c\n1,2,3\n",
    b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
    b"PK\x03\x04" + b"\0" * 64,
    evil_pickle(),
    b"\x08\x01",  # a lone varint field
]


@pytest.mark.parametrize("data", ORDINARY)
def test_ordinary_content_is_not_claimed(data: bytes) -> None:
    assert claimed_by(data) == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_are_not_claimed(data: bytes) -> None:
    # A magic number alone is that format by design (truncated, and reported as such).
    assume(not any(magic in data for magic in (b"\x93NUMPY", b"\x89HDF\r\n\x1a\n", b"GGUF", b"TFL3")))
    assert claimed_by(data) == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_after_a_model_field_tag_are_not_claimed(data: bytes) -> None:
    # Start like ONNX/SavedModel (field 1 varint) so the protobuf walkers really run.
    assert claimed_by(b"\x08\x07" + data) in ([], ["onnx"])
    assert claimed_by(b"\x08\x01" + data) in ([], ["savedmodel"])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_random_text_is_not_claimed(text: str) -> None:
    assert claimed_by(text.encode()) == []


def test_every_handler_is_registered() -> None:
    registered = {type(h) for h in HANDLERS}
    assert {type(h) for h in MY_HANDLERS} <= registered


# -- protobuf walker ---------------------------------------------------------------------------------


def test_varint_decoding() -> None:
    assert read_varint(b"\xac\x02", 0) == (300, 2)
    with pytest.raises(WireError):
        read_varint(b"\xff" * 11, 0)
    with pytest.raises(WireError):
        read_varint(b"\x80", 0)


@pytest.mark.parametrize("data", [b"\x0b", b"\x00\x01", b"\x12\x05ab", b"\x0d\x01\x02"])
def test_malformed_wire_data_raises(data: bytes) -> None:
    with pytest.raises(WireError):
        list(fields(BytesSource(data), 0, len(data), 10))


def test_fields_are_bounded() -> None:
    data = pb_int(1, 1) * 100
    assert len(list(fields(BytesSource(data), 0, len(data), 10))) == 10


def test_user_block_pickle_is_code_execution_when_the_pickle_analyser_exists(tmp_path: Path) -> None:
    if not any(h.name == "pickle" for h in HANDLERS):
        pytest.skip("the pickle analyser is not registered yet")
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model.h5"
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle["weights"] = np.zeros(3)
    data = bytearray(path.read_bytes())
    payload = evil_pickle()
    data[: len(payload)] = payload
    path.write_bytes(bytes(data))
    assert is_code_execution(scan_file(str(path)), "<user block>")
