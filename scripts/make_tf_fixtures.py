"""Write the committed TensorFlow SavedModel and LiteRT fixtures (tests/fixtures/tf/) with real TensorFlow.

The tests only read these files, so CI needs no TensorFlow. Regenerate in the TensorFlow virtualenv:

    python3 -m venv .venv-tf && .venv-tf/bin/pip install tensorflow-cpu
    .venv-tf/bin/python scripts/make_tf_fixtures.py

Nothing here runs a hostile function: `tf.py_function`, `tf.io.read_file` and `tf.io.write_file`
are only traced into graphs and saved (tracing records ops, it does not execute them). Models are
tiny so that each directory stays a few kilobytes. Besides real framework output it writes:
  - SavedModels edited through TensorFlow's own protos where TensorFlow cannot produce the attack
    (a custom op, which would need a compiled kernel library; a checkpoint op in a serving function;
    a text-format `saved_model.pbtxt`);
  - LiteRT flatbuffers built with the schema's object API (a custom op, an unknown builtin code, a
    StableHLO custom call), since the converter never emits those for standard models.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import flatbuffers
import numpy as np
import tensorflow as tf
from flatbuffers import flexbuffers
from google.protobuf import text_format
from tensorflow.core.framework import node_def_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.lite.python import schema_py_generated as schema

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tf"
SPEC = tf.TensorSpec([None, 4], tf.float32)


def reset(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return path


def small_keras(cnn: bool = False) -> tf.keras.Model:
    tf.keras.utils.set_random_seed(0)
    if cnn:
        layers = [
            tf.keras.Input((8, 8, 1)),
            tf.keras.layers.Conv2D(2, 3, activation="relu"),
            tf.keras.layers.MaxPooling2D(),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(2, activation="softmax"),
        ]
    else:
        layers = [tf.keras.Input((4,)), tf.keras.layers.Dense(3, activation="relu"), tf.keras.layers.Dense(1)]
    return tf.keras.Sequential(layers)


class Scale(tf.Module):
    """A plain tf.Module with a variable and one serving function."""

    def __init__(self) -> None:
        self.w = tf.Variable(np.ones((4, 1), np.float32))

    @tf.function(input_signature=[SPEC])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, self.w)


class PyFuncModel(Scale):
    @tf.function(input_signature=[SPEC])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.py_function(lambda t: t, [tf.matmul(x, self.w)], tf.float32)


class ReadFileModel(Scale):
    @tf.function(input_signature=[SPEC])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        secret = tf.strings.length(tf.io.read_file("/etc/passwd"))
        return tf.matmul(x, self.w) + tf.cast(secret, tf.float32)


class WriteFileModel(Scale):
    @tf.function(input_signature=[SPEC])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        with tf.control_dependencies([tf.io.write_file("/tmp/modelshield-marker-savedmodel", "x")]):
            return tf.matmul(x, self.w)


class RestoreInServingModel(Scale):
    """Calls RestoreV2 from the serving function: a checkpoint read outside the restore function."""

    @tf.function(input_signature=[SPEC])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        (stolen,) = tf.raw_ops.RestoreV2(
            prefix="/etc/model/ckpt", tensor_names=["w"], shape_and_slices=[""], dtypes=[tf.float32]
        )
        return tf.matmul(x, self.w) + tf.reduce_sum(stolen)


def save_module(module: tf.Module, name: str) -> Path:
    path = reset(OUT / name)
    tf.saved_model.save(module, str(path), signatures=module.__call__.get_concrete_function())
    return path


def edit_saved_model(source: Path, name: str, edit: str) -> Path:
    """Copy a SavedModel and rename every node with op `edit.split('->')[0]` to the second name."""
    old, new = edit.split("->")
    path = reset(OUT / name)
    shutil.copytree(source, path)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    renamed = 0
    for meta in proto.meta_graphs:
        nodes = list(meta.graph_def.node)
        for function in meta.graph_def.library.function:
            nodes += list(function.node_def)
        for node in nodes:
            if node.op == old:
                node.op = new
                renamed += 1
    assert renamed, f"no {old} op in {source}"
    (path / "saved_model.pb").write_bytes(proto.SerializeToString())
    return path


def write_pbtxt(source: Path, name: str) -> Path:
    """The same SavedModel in text format (`saved_model.pbtxt`), which loaders accept too."""
    path = reset(OUT / name)
    shutil.copytree(source, path)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    (path / "saved_model.pb").unlink()
    (path / "saved_model.pbtxt").write_text(text_format.MessageToString(proto))
    return path


def tf1_saved_model(name: str) -> Path:
    """A TF1-style SavedModel (graph mode, `tf.compat.v1.train.Saver`): save ops sit in the main graph."""
    return write_tf1_saved_model(reset(OUT / name))


def write_tf1_saved_model(path: Path) -> Path:
    """`tf1_saved_model` at `path`: a variable `w` (ones) behind `y = x @ w`, exported for `serve`."""
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", initializer=np.ones((4, 1), np.float32))
        y = tf.matmul(x, w, name="y")
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(path))
        signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
        builder.save()
    return path


def traced_checkpoint_functions(variable: tf.Variable) -> None:
    """Add to the current graph's library, uncalled, the traced save and restore functions a TF 2
    Estimator export carries (`__inference__traced_save_N` / `__inference__traced_restore_N`: the
    object-based saver traced for the model's trackables while nothing in the TF1 graph calls them)."""

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def _traced_save(prefix: tf.Tensor) -> tf.Tensor:
        tmp = tf.strings.join([prefix, "_temp/part"])
        shard = tf.raw_ops.ShardedFilename(basename=tmp, shard=0, num_shards=1)
        with tf.control_dependencies(
            [
                tf.raw_ops.SaveV2(
                    prefix=shard, tensor_names=["w"], shape_and_slices=[""], tensors=[variable.read_value()]
                )
            ]
        ):
            merge = tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=[shard], destination_prefix=prefix)
        with tf.control_dependencies([merge]):
            return tf.identity(prefix)

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def _traced_restore(prefix: tf.Tensor) -> tf.Tensor:
        (value,) = tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=["w"], shape_and_slices=[""], dtypes=[tf.float32])
        with tf.control_dependencies([variable.assign(value)]):
            return tf.identity(prefix)

    _traced_save.get_concrete_function().add_to_graph()
    _traced_restore.get_concrete_function().add_to_graph()


def estimator_saved_model(name: str, *, unused_read_file: bool = False) -> Path:
    """The layout of a TF 2 Estimator export (tf.estimator is gone from current TensorFlow, so it is
    rebuilt with the same APIs it used): a TF1 graph saved by `tf.compat.v1.saved_model.Builder`
    with its `Saver`, plus traced save/restore library functions that nothing calls. With
    `unused_read_file` an uncalled function also reads a file (still unreachable)."""
    path = reset(OUT / name)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", initializer=np.ones((4, 1), np.float32), use_resource=True)
        y = tf.matmul(x, w, name="y")
        traced_checkpoint_functions(w)
        if unused_read_file:

            @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
            def unused(path: tf.Tensor) -> tf.Tensor:
                return tf.io.read_file(path)

            unused.get_concrete_function().add_to_graph()
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(path))
        signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder.add_meta_graph_and_variables(
            session, ["serve"], signature_def_map={"serving_default": signature}, strip_default_attrs=True
        )
        builder.save()
    return path


def tf1_checkpoint_meta(name: str, *, read_file: bool = False, as_text: bool = False) -> Path:
    """The `.meta` a TF1 `Saver.save` writes beside a checkpoint (a whole MetaGraphDef); with
    `read_file` the graph also reads a file by path; `as_text` writes the text format (and the
    graph alone, as `tf.io.write_graph` does, beside it as `<name>.graph.pbtxt`)."""
    path = reset(OUT / name)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", initializer=np.ones((4, 1), np.float32))
        y = tf.matmul(x, w, name="y")
        if read_file:
            y = y + tf.cast(tf.strings.length(tf.io.read_file("/etc/passwd")), tf.float32)
        saver = tf.compat.v1.train.Saver()
        saver.export_meta_graph(str(path), clear_devices=True, strip_default_attrs=True, as_text=as_text)
        if as_text:
            tf.io.write_graph(graph, str(OUT), f"{path.stem}.graph.pbtxt", as_text=True)
    return path


def frozen_graph(name: str, *, read_file: bool = False) -> Path:
    """A frozen GraphDef (`convert_variables_to_constants_v2`, as `frozen_inference_graph.pb` files
    are made); with `read_file` the graph also reads a file by path."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    module = ReadFileModel() if read_file else Scale()
    frozen = convert_variables_to_constants_v2(module.__call__.get_concrete_function())
    path = reset(OUT / name)
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return path


class VocabularyModel(tf.Module):
    """A lookup table initialised from a SavedModel asset (`tf.saved_model.Asset`), as text models do."""

    def __init__(self, vocabulary: Path) -> None:
        self.vocab = tf.saved_model.Asset(str(vocabulary))
        initializer = tf.lookup.TextFileInitializer(
            self.vocab, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
        )
        self.table = tf.lookup.StaticHashTable(initializer, default_value=-1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, words: tf.Tensor) -> tf.Tensor:
        return self.table.lookup(words)


def asset_saved_model(name: str, escape: str | None = None) -> Path:
    """A SavedModel with a vocabulary asset; with `escape` its asset_file_def names that path instead
    (the loader joins it to assets/ and initialises the table from wherever it points)."""
    vocabulary = OUT / "vocab.txt"
    vocabulary.write_text("dog\ncat\n")  # ("cat\n" first reads as a text pickle GLOBAL: a pickle finding)
    module = VocabularyModel(vocabulary)
    path = save_module(module, name)
    vocabulary.unlink()
    if escape is not None:
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
        for meta in proto.meta_graphs:
            for asset in meta.asset_file_def:
                asset.filename = escape
        (path / "saved_model.pb").write_bytes(proto.SerializeToString())
    return path


def constant_checkpoint_path(source: Path, name: str, path_value: str, *, function_prefix: str) -> Path:
    """A copy of a SavedModel whose saver reads `path_value` (see `point_restore_at`)."""
    path = reset(OUT / name)
    shutil.copytree(source, path)
    point_restore_at(path, path_value, function_prefix=function_prefix)
    return path


def point_restore_at(path: Path, path_value: str, *, function_prefix: str) -> None:
    """Make the SavedModel's `RestoreV2` read `path_value` (a new Const) instead of the fed filename: in
    the graph (TF1 Saver, `function_prefix` empty) or in the library function whose name starts with
    `function_prefix` (TF2 `__inference__traced_restore`)."""
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    meta = proto.meta_graphs[0]
    if function_prefix:
        [function] = [f for f in meta.graph_def.library.function if f.signature.name.startswith(function_prefix)]
        nodes, suffix = function.node_def, ":output:0"
    else:
        nodes, suffix = meta.graph_def.node, ""
    const = nodes.add()
    const.name, const.op = "attacker_path", "Const"
    const.attr["dtype"].type = tf.string.as_datatype_enum
    const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(path_value))
    [restore] = [n for n in nodes if n.op == "RestoreV2"]
    restore.input[0] = "attacker_path" + suffix
    (path / "saved_model.pb").write_bytes(proto.SerializeToString())


def convert(
    concrete: tf.types.experimental.ConcreteFunction, owner: tf.Module | None = None, *, flex: bool = False
) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], owner)
    if flex:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    return bytes(converter.convert())


def keras_tflite(cnn: bool) -> bytes:
    return bytes(tf.lite.TFLiteConverter.from_keras_model(small_keras(cnn)).convert())


def flex_read_file_tflite() -> bytes:
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def read(path: tf.Tensor) -> tf.Tensor:
        return tf.io.read_file(path)

    return convert(read.get_concrete_function(), flex=True)


def flex_write_file_tflite() -> bytes:
    @tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string)])
    def write(path: tf.Tensor, data: tf.Tensor) -> tf.Tensor:
        with tf.control_dependencies([tf.io.write_file(path, data)]):
            return tf.identity(data)

    return convert(write.get_concrete_function(), flex=True)


def flex_benign_tflite() -> bytes:
    """A string op with no builtin kernel: converted as a harmless Flex op (FlexStringLength)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def lengths(text: tf.Tensor) -> tf.Tensor:
        return tf.strings.length(text) * 2

    return convert(lengths.get_concrete_function(), flex=True)


def flex_print_to_file_tflite() -> bytes:
    """`tf.print` to a file stream, converted with Select TF ops: a FlexPrintV2 whose NodeDef holds
    `output_stream: 'file:///tmp/modelshield-flex-print'` (only the NodeDef says where it writes)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def log(x: tf.Tensor) -> tf.Tensor:
        with tf.control_dependencies([tf.print(x, output_stream="file:///tmp/modelshield-flex-print")]):
            return tf.identity(x) * 2

    return convert(log.get_concrete_function(), flex=True)


def flex_options(op: str, node_def: bytes) -> list[int]:
    """Custom options as the converter writes them (flatbuffer_export.cc): a flexbuffer vector of the
    op name and the serialized NodeDef."""
    builder = flexbuffers.Builder()
    with builder.Vector():
        builder.String(op)
        # `Builder.String` takes text; a NodeDef is bytes stored as a STRING, as the C++ builder does
        builder._WriteBlob(node_def, append_zero=True, type_=flexbuffers.Type.STRING)
    return list(builder.Finish())


#: A placeholder for the large custom options offset, patched once the flatbuffer's size is known.
_LARGE_OFFSET = 0x0123456789ABCDEF


def disguised_flex_tflite(
    data: bytes, code_name: str, runs: str | None = None, node_op: str | None = None, *, large: bool = False
) -> bytes:
    """Rewrite a converted Flex model: rename its Flex custom code (`code_name`) and optionally the op
    its options run (`runs`) or its NodeDef's op (`node_op`), keeping everything else. With `large`
    the options move after the flatbuffer (`large_custom_options_offset/size`, as the converter
    writes models over 2 GB), where only a reader that follows those fields finds them."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    [index] = [i for i, c in enumerate(model.operatorCodes) if (c.customCode or b"").startswith(b"Flex")]
    old = model.operatorCodes[index].customCode.decode()
    model.operatorCodes[index].customCode = code_name
    for subgraph in model.subgraphs:
        for operator in subgraph.operators:
            if operator.opcodeIndex == index:
                root = flexbuffers.GetRoot(bytes(operator.customOptions)).AsVector
                node = node_def_pb2.NodeDef()
                node.ParseFromString(root[1].AsStringBytes)
                node.op = node_op or node.op
                options = flex_options(runs or root[0].AsString, node.SerializeToString())
                if large:
                    operator.customOptions = None
                    operator.largeCustomOptionsOffset, operator.largeCustomOptionsSize = _LARGE_OFFSET, len(options)
                else:
                    operator.customOptions = options
    assert old != code_name or runs or node_op
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    output = bytes(builder.Output())
    if not large:
        return output
    placeholder = _LARGE_OFFSET.to_bytes(8, "little")
    assert output.count(placeholder) == 1
    padded = output + bytes(-len(output) % 16)
    return padded.replace(placeholder, len(padded).to_bytes(8, "little")) + bytes(options)


def one_op_tflite(code: schema.OperatorCodeT, operator_options: schema.OperatorT | None = None) -> bytes:
    """A valid two-tensor model whose only operator uses `code`; the op sits in a second subgraph
    called from the main one, so the reader must judge operators of every subgraph."""
    tensors = []
    for index in range(2):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [1], schema.TensorType.FLOAT32, 0, f"t{index}"
        tensors.append(tensor)
    operator = operator_options or schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 1, [0], [1]
    body = schema.SubGraphT()
    body.tensors, body.inputs, body.outputs, body.operators, body.name = tensors, [0], [1], [operator], "body"
    call_options = schema.CallOnceOptionsT()
    call_options.initSubgraphIndex = 1
    call = schema.OperatorT()
    call.opcodeIndex, call.inputs, call.outputs = 0, [], []
    call.builtinOptionsType, call.builtinOptions = schema.BuiltinOptions.CallOnceOptions, call_options
    main = schema.SubGraphT()
    main.tensors, main.inputs, main.outputs, main.operators, main.name = tensors, [0], [1], [call], "main"
    call_once = schema.OperatorCodeT()
    call_once.builtinCode, call_once.deprecatedBuiltinCode = schema.BuiltinOperator.CALL_ONCE, 127
    model = schema.ModelT()
    model.version, model.description = 3, "modelshield hand-built fixture"
    model.operatorCodes, model.subgraphs, model.buffers = [call_once, code], [main, body], [schema.BufferT()]
    builder = flatbuffers.Builder(512)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def custom_code(name: str) -> schema.OperatorCodeT:
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode, code.version = name, 1
    return code


def builtin_code(value: int) -> schema.OperatorCodeT:
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = value, min(value, 127), 1
    return code


def stablehlo_custom_call_tflite() -> bytes:
    options = schema.StablehloCustomCallOptionsT()
    options.callTargetName, options.hasSideEffect = "my_native_kernel", True
    operator = schema.OperatorT()
    operator.builtinOptions2Type = schema.BuiltinOptions2.StablehloCustomCallOptions
    operator.builtinOptions2 = options
    return one_op_tflite(builtin_code(schema.BuiltinOperator.STABLEHLO_CUSTOM_CALL), operator)


def with_associated_files(model: bytes, path: Path) -> None:
    """Write `model` with TFLite Metadata and a label file packed the standard way, by the real
    `MetadataPopulator` (what MediaPipe's and TFLite Support's metadata writers call): the metadata
    flatbuffer goes into `Model.metadata` as TFLITE_METADATA and the files into a zip appended to
    the model. Needs `pip install --no-deps tflite-support` (and libusb) in the TensorFlow venv."""
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    from tensorflow_lite_support.metadata import metadata_schema_py_generated as md
    from tensorflow_lite_support.metadata.python import metadata

    labels = path.with_name("labels.txt")
    labels.write_text("cat\ndog\nbird\n")
    output = md.TensorMetadataT()
    output.name = "probabilities"
    label_file = md.AssociatedFileT()
    label_file.name, label_file.description = "labels.txt", "class labels"
    label_file.type = md.AssociatedFileType.TENSOR_AXIS_LABELS
    output.associatedFiles = [label_file]
    subgraph = md.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [md.TensorMetadataT()], [output]
    model_metadata = md.ModelMetadataT()
    model_metadata.name, model_metadata.description = "dense classifier", "modelshield fixture"
    model_metadata.subgraphMetadata = [subgraph]
    builder = flatbuffers.Builder(0)
    builder.Finish(model_metadata.Pack(builder), metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    path.write_bytes(model)
    populator = metadata.MetadataPopulator.with_model_file(str(path))
    populator.load_metadata_buffer(builder.Output())
    populator.load_associated_files([str(labels)])
    populator.populate()
    labels.unlink()


def checkpoints() -> None:
    """Tensor bundles as the savers write them: a TF1 `Saver` checkpoint with a partitioned variable
    (its index holds slice entries) and a string variable, and a TF2 `tf.train.Checkpoint`."""
    path = reset(OUT / "checkpoint_tf1")
    path.mkdir()
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.get_variable(
            "w", [4, 2], tf.float32, tf.compat.v1.ones_initializer(), partitioner=tf.compat.v1.fixed_size_partitioner(2)
        )
        tf.compat.v1.get_variable("words", initializer=tf.constant(["a", "bc"]))
        session.run(tf.compat.v1.global_variables_initializer())
        saver = tf.compat.v1.train.Saver(save_relative_paths=True)
        saver.save(session, str(path / "model.ckpt"), write_meta_graph=False)
    path = reset(OUT / "checkpoint_tf1_v1")  # the V1 format: one table holding the slices themselves
    path.mkdir()
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.get_variable("w", initializer=np.ones((4, 1), np.float32))
        session.run(tf.compat.v1.global_variables_initializer())
        saver = tf.compat.v1.train.Saver(write_version=tf.compat.v1.train.SaverDef.V1, save_relative_paths=True)
        saver.save(session, str(path / "model.ckpt"), write_meta_graph=False)
    path = reset(OUT / "checkpoint_tf2")
    checkpoint = tf.train.Checkpoint(w=tf.Variable(np.ones((3,), np.int64)), step=tf.Variable(7))
    checkpoint.save(str(path / "ckpt"))


def issue13_fixtures() -> None:
    """What the loader-semantics work (issue 13) added: assets, the saver's filename, Flex NodeDefs."""
    checkpoints()
    asset_saved_model("savedmodel_asset_vocabulary")
    asset_saved_model("savedmodel_asset_escape", escape="../../../../../etc/passwd")
    constant_checkpoint_path(
        OUT / "savedmodel_tf1", "savedmodel_tf1_restore_constant_path", "/etc/model/ckpt", function_prefix=""
    )
    constant_checkpoint_path(
        OUT / "savedmodel_module",
        "savedmodel_restore_constant_path",
        "/etc/model/ckpt",
        function_prefix="__inference__traced_restore",
    )
    frozen = tf.compat.v1.GraphDef()
    frozen.ParseFromString((OUT / "frozen_graph.pb").read_bytes())
    for node in frozen.node:
        node.op = "Custom" + node.op  # a graph of custom ops only: nothing TensorFlow registers
    (OUT / "frozen_graph_custom_ops.pb").write_bytes(frozen.SerializeToString())
    write_file = flex_write_file_tflite()
    tflite = {
        "flex_print_to_file.tflite": flex_print_to_file_tflite(),
        "flex_disguised_code.tflite": disguised_flex_tflite(write_file, "FlexStringLength"),
        "flex_disguised_options.tflite": disguised_flex_tflite(write_file, "FlexStringLength", node_op="StringLength"),
        "flex_large_options.tflite": disguised_flex_tflite(
            write_file, "FlexStringLength", node_op="StringLength", large=True
        ),
    }
    for name, data in tflite.items():
        (OUT / name).write_bytes(data)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:] == ["--issue13"]:  # only the newer fixtures, leaving the committed ones as they are
        issue13_fixtures()
        return
    module = save_module(Scale(), "savedmodel_module")
    keras_export = reset(OUT / "savedmodel_keras_export")
    small_keras().export(str(keras_export))
    tf1_saved_model("savedmodel_tf1")
    pyfunc = save_module(PyFuncModel(), "savedmodel_pyfunc")
    save_module(ReadFileModel(), "savedmodel_read_file")
    save_module(WriteFileModel(), "savedmodel_write_file")
    save_module(RestoreInServingModel(), "savedmodel_restore_in_serving")
    edit_saved_model(module, "savedmodel_custom_op", "MatMul->ZeroOut")
    write_pbtxt(pyfunc, "savedmodel_pyfunc_pbtxt")
    estimator_saved_model("savedmodel_estimator_tf2")
    estimator_saved_model("savedmodel_estimator_unused_read_file", unused_read_file=True)
    tf1_checkpoint_meta("model.ckpt.meta")
    tf1_checkpoint_meta("read_file.ckpt.meta", read_file=True)
    tf1_checkpoint_meta("read_file_text.ckpt.meta", read_file=True, as_text=True)
    frozen_graph("frozen_graph.pb")
    frozen_graph("frozen_graph_read_file.pb", read_file=True)

    scale = Scale()
    tflite = {
        "dense.tflite": keras_tflite(cnn=False),
        "cnn.tflite": keras_tflite(cnn=True),
        "module.tflite": convert(scale.__call__.get_concrete_function(), scale),
        "flex_read_file.tflite": flex_read_file_tflite(),
        "flex_write_file.tflite": flex_write_file_tflite(),
        "flex_benign.tflite": flex_benign_tflite(),
        "custom_op.tflite": one_op_tflite(custom_code("MyNativeKernel")),
        "stock_custom_op.tflite": one_op_tflite(custom_code("TFLite_Detection_PostProcess")),
        "unknown_builtin.tflite": one_op_tflite(builtin_code(250)),
        "stablehlo_custom_call.tflite": stablehlo_custom_call_tflite(),
    }
    for name, data in tflite.items():
        (OUT / name).write_bytes(data)
    with_associated_files(tflite["dense.tflite"], OUT / "dense_with_metadata.tflite")
    issue13_fixtures()
    for path in sorted(OUT.rglob("*")):
        if path.is_file():
            print(f"{path.stat().st_size:8d}  {path.relative_to(OUT)}")


if __name__ == "__main__":
    main()
