"""Freeze TensorFlow's op registry and LiteRT's builtin operators into modelshield's data lists.

Scanning never imports TensorFlow; these lists let it tell stock ops from custom ones. Regenerate
them when a new TensorFlow release adds ops, in a separate virtualenv (TensorFlow is large and not
a dependency of modelshield):

    python3 -m venv .venv-tf && .venv-tf/bin/pip install tensorflow-cpu
    .venv-tf/bin/python scripts/gen_tf_data.py

Writes src/modelshield/formats/data/tf_ops.json (every op in the C++ registry, including the
`_`-prefixed internal ones a graph may legitimately hold after optimisation) and
src/modelshield/formats/data/tflite_builtins.json (BuiltinOperator names and codes, plus the custom
ops that the stock interpreter's BuiltinOpResolver registers, checked by building a one-op model
for each candidate and asking the real interpreter to resolve it).
"""

from __future__ import annotations

import json
from pathlib import Path

import flatbuffers
import tensorflow as tf
from flatbuffers import flexbuffers
from tensorflow.core.framework import op_def_pb2
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.python.client import pywrap_tf_session

DATA = Path(__file__).resolve().parents[1] / "src" / "modelshield" / "formats" / "data"

#: Custom ops that might ship with the stock runtime: those named in register.cc over the years and
#: the MediaPipe ones that are common in published models. Only those the interpreter resolves are kept.
CANDIDATE_CUSTOM_OPS = (
    "Mfcc",
    "AudioSpectrogram",
    "TFLite_Detection_PostProcess",
    "NumericVerify",
    "Convolution2DTransposeBias",
    "MaxPoolingWithArgmax2D",
    "MaxUnpooling2D",
    "Landmarks2TransformMatrix",
    "TransformTensorBilinear",
    "TransformLandmarks",
    "RaggedTensorToTensor",
    "SentencepieceTokenizeOp",
)


def registered_ops() -> list[str]:
    """Every op name in TensorFlow's C++ registry (a superset of `tf.raw_ops`)."""
    buffer = pywrap_tf_session.TF_GetAllOpList()
    op_list = op_def_pb2.OpList()
    op_list.ParseFromString(pywrap_tf_session.TF_GetBuffer(buffer))
    return sorted({op.name for op in op_list.op})


def builtin_operators() -> dict[str, int]:
    codes = {name: code for name, code in vars(schema.BuiltinOperator).items() if isinstance(code, int)}
    return dict(sorted(codes.items(), key=lambda item: item[1]))


def one_custom_op_model(name: str) -> bytes:
    """A valid model with one tensor and one custom op named `name`, to ask the interpreter about."""
    tensors = []
    for index in range(2):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [1], schema.TensorType.FLOAT32, 0, f"t{index}"
        tensors.append(tensor)
    operator = schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 0, [0], [1]
    operator.customOptions = list(flexbuffers.Dumps({}))  # kernels' Init parse their options as a map
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = tensors, [0], [1], [operator]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode, code.version = name, 1
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [subgraph], [schema.BufferT()]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def stock_custom_ops() -> list[str]:
    """The candidates that `tf.lite.Interpreter` resolves without any extra op resolver.

    Resolution happens when tensors are allocated: an unknown op fails with "unresolved custom op",
    a known one gets as far as its kernel's Prepare (which then rejects the dummy tensors).
    """
    stock = []
    for name in CANDIDATE_CUSTOM_OPS:
        try:
            tf.lite.Interpreter(model_content=one_custom_op_model(name)).allocate_tensors()
        except RuntimeError as exc:
            if f"unresolved custom op: {name}" in str(exc):
                continue
        stock.append(name)
    return stock


def write(name: str, content: dict[str, object]) -> None:
    path = DATA / name
    path.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    generated = {"tensorflow_version": tf.__version__, "generated_by": "scripts/gen_tf_data.py"}
    write("tf_ops.json", {**generated, "ops": registered_ops()})
    write(
        "tflite_builtins.json", {**generated, "builtins": builtin_operators(), "stock_custom_ops": stock_custom_ops()}
    )


if __name__ == "__main__":
    main()
