"""Prove that the TensorFlow / LiteRT execution paths modelshield reports really fire in the real loaders.

Not part of the test suite (it needs TensorFlow and runs payloads): run it by hand in a throwaway
environment, e.g. `/work/envs/tf/bin/python scripts/prove_tf_paths.py`. Every model is built in a
fresh temporary folder and every payload only touches files inside it (a sentinel file written, a
marker file read); the folder is deleted afterwards. Each check loads or runs the model with the
loader a user would call and looks at what happened:

  flex-disguised      `FlexStringLength` whose custom options run WriteFile (TFL005 + TFO003)
  flex-large-options  the same with the options after the flatbuffer (large_custom_options_offset)
  flex-print-to-file  FlexPrintV2 whose NodeDef sets `output_stream: file://...` (TFO003)
  tf1-saver-constant  TF1 loader: the Saver's RestoreV2 reads a constant path, not the fed one (TFO002)
  tf2-saver-constant  a TF2 export's traced restore function reads a constant path, TF1 loader (TFO002)
  asset-escape        asset_file_def names `../../marker.txt`: tf.saved_model.load feeds it to a table (TFM001)
  dataset-from-graph  DatasetFromGraph runs a dataset graph held in a string constant (TFO006)

Exit status 0 when every payload that could run fired, 1 otherwise. The Flex checks need an
interpreter with the Flex delegate linked (TensorFlow wheels up to 2.19, or an app/AAR built with
`tensorflow-lite-select-tf-ops`); without one they are reported as skipped.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the fixture builders, reused so that proofs and fixtures build the same payloads
from make_tf_fixtures import (
    VocabularyModel,
    convert,
    disguised_flex_tflite,
    point_restore_at,
    write_tf1_saved_model,
)


class Unavailable(Exception):
    """The loader this check needs is not in the environment (reported as skipped, not as fired)."""


def run_tflite(data: bytes, *inputs: object) -> None:
    interpreter = tf.lite.Interpreter(model_content=data)
    try:
        interpreter.allocate_tensors()
    except RuntimeError as exc:
        if "Select TensorFlow op" in str(exc):  # wheels since TF 2.20 no longer link the Flex delegate
            raise Unavailable("this tf.lite.Interpreter has no Flex delegate; use a build that links it") from exc
        raise
    for detail, value in zip(interpreter.get_input_details(), inputs, strict=True):
        interpreter.set_tensor(detail["index"], np.array(value, dtype=detail["dtype"]))
    interpreter.invoke()


def write_file_model() -> bytes:
    @tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string)])
    def write(path: tf.Tensor, data: tf.Tensor) -> tf.Tensor:
        with tf.control_dependencies([tf.io.write_file(path, data)]):
            return tf.identity(data)

    return convert(write.get_concrete_function(), flex=True)


def flex_disguised(work: Path, *, large: bool = False) -> str:
    sentinel = work / "sentinel-flex"
    model = disguised_flex_tflite(write_file_model(), "FlexStringLength", node_op="StringLength", large=large)
    run_tflite(model, str(sentinel).encode(), b"fired")
    return "sentinel written" if sentinel.exists() else ""


def flex_print_to_file(work: Path) -> str:
    sentinel = work / "sentinel-print"

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def log(x: tf.Tensor) -> tf.Tensor:
        with tf.control_dependencies([tf.print(x, output_stream=f"file://{sentinel}")]):
            return tf.identity(x) * 2

    run_tflite(convert(log.get_concrete_function(), flex=True), [1.0, 2.0])
    return "sentinel written" if sentinel.exists() else ""


def attacker_checkpoint(work: Path, value: float) -> str:
    """A checkpoint holding `w` (TF1 name) and the TF2 object key, both set to `value`."""
    prefix = str(work / "attacker" / "ckpt")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=["w", "w/.ATTRIBUTES/VARIABLE_VALUE", "_CHECKPOINTABLE_OBJECT_GRAPH"],
        shape_and_slices=["", "", ""],
        tensors=[tf.fill([4, 1], value), tf.fill([4, 1], value), tf.constant(b"")],
    )
    return prefix


def tf1_restored_value(export: Path, variable: str) -> float:
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.saved_model.loader.load(session, ["serve"], str(export))
        value = session.run(variable)
        return float(np.asarray(value).ravel()[0])


def tf1_saver_constant(work: Path) -> str:
    export = write_tf1_saved_model(work / "tf1")
    point_restore_at(export, attacker_checkpoint(work, 42.0), function_prefix="")
    value = tf1_restored_value(export, "w/Read/ReadVariableOp:0")
    return f"w restored as {value} from the attacker's checkpoint (saved as 1.0)" if value == 42.0 else ""


def tf2_saver_constant(work: Path) -> str:
    export = work / "tf2"
    module = tf.Module()
    module.w = tf.Variable(np.ones((4, 1), np.float32))
    module.f = tf.function(lambda x: tf.matmul(x, module.w), input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    tf.saved_model.save(module, str(export), signatures=module.f.get_concrete_function())
    point_restore_at(export, attacker_checkpoint(work, 42.0), function_prefix="__inference__traced_restore")
    value = tf1_restored_value(export, "Variable/Read/ReadVariableOp:0")
    return f"variable restored as {value} from the attacker's checkpoint (saved as 1.0)" if value == 42.0 else ""


def asset_escape(work: Path) -> str:
    export = work / "export" / "model"
    vocabulary = work / "vocab.txt"
    vocabulary.write_text("dog\ncat\n")
    (work / "marker.txt").write_text("only-outside-the-export\n")
    tf.saved_model.save(VocabularyModel(vocabulary), str(export))
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((export / "saved_model.pb").read_bytes())
    for asset in proto.meta_graphs[0].asset_file_def:
        asset.filename = "../../../marker.txt"  # <work>/export/model/assets/../../../marker.txt
    (export / "saved_model.pb").write_bytes(proto.SerializeToString())
    loaded = tf.saved_model.load(str(export))
    found = int(loaded(tf.constant(["only-outside-the-export"])).numpy()[0])
    return "the table was initialised from the file outside the export" if found == 0 else ""


def dataset_from_graph(work: Path) -> str:
    marker = work / "marker-dataset.txt"
    marker.write_text("read-by-a-hidden-graph\n")
    hidden = tf.data.TextLineDataset(str(marker))
    serialized = tf.raw_ops.DatasetToGraphV2(input_dataset=hidden._variant_tensor).numpy()

    module = tf.Module()
    # held in a variable (a constant would be folded at tracing): the hidden graph is then not even in
    # saved_model.pb but in the checkpoint, so only the DatasetFromGraph op itself gives it away
    module.graph = tf.Variable(serialized)

    @tf.function(input_signature=[])
    def serve() -> tf.Tensor:
        variant = tf.raw_ops.DatasetFromGraph(graph_def=module.graph)
        return tf.data.experimental.from_variant(variant, hidden.element_spec).get_single_element()

    export = work / "dfg"
    module.serve = serve
    tf.saved_model.save(module, str(export))
    loaded = tf.saved_model.load(str(export))  # kept: its variables die with it
    line = loaded.serve().numpy()
    return "the hidden graph read the marker file" if line == b"read-by-a-hidden-graph" else ""


CHECKS: dict[str, Callable[[Path], str]] = {
    "flex-disguised": flex_disguised,
    "flex-large-options": lambda work: flex_disguised(work, large=True),
    "flex-print-to-file": flex_print_to_file,
    "tf1-saver-constant": tf1_saver_constant,
    "tf2-saver-constant": tf2_saver_constant,
    "asset-escape": asset_escape,
    "dataset-from-graph": dataset_from_graph,
}


def main() -> int:
    failed = 0
    for name, check in CHECKS.items():
        work = Path(tempfile.mkdtemp(prefix=f"modelshield-prove-{name}-"))
        status, error = "", ""
        try:
            outcome = check(work)
        except Unavailable as exc:
            outcome, status = str(exc), "SKIPPED"
        except Exception as exc:  # a loader that refuses the payload is a result too
            outcome, error = "", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        finally:
            shutil.rmtree(work, ignore_errors=True)
        status = status or ("FIRED" if outcome else "DID NOT FIRE")
        failed += status == "DID NOT FIRE"
        print(f"{status:13} {name}: {outcome or error or 'no effect'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
