"""Freeze the standard Keras names into src/modelshield/formats/data/keras_layers.json.

The scanner never imports Keras, so the names Keras itself resolves (layer classes of Keras 3 and of
tf.keras / Keras 2, initializers, regularizers, constraints, activations, losses, metrics, optimizers,
learning-rate schedules, models and dtype policies) are read once from the real packages. Run it with the
fixture venv after upgrading Keras (see scripts/make_keras_fixtures.py for how to create it):

    .venv-keras/bin/python scripts/gen_keras_names.py
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import tf_keras
from tf_keras.src.layers import serialization as tf_keras_layers

TARGET = Path(__file__).resolve().parents[1] / "src" / "modelshield" / "formats" / "data" / "keras_layers.json"

#: Groups of names and the namespaces (Keras 3, Keras 2) they are read from.
GROUPS: dict[str, tuple[str, ...]] = {
    "initializers": ("initializers",),
    "regularizers": ("regularizers",),
    "constraints": ("constraints",),
    "activations": ("activations",),
    "losses": ("losses",),
    "metrics": ("metrics",),
    "optimizers": ("optimizers", "optimizers.legacy", "optimizers.experimental"),
    "schedules": ("optimizers.schedules",),
    "other": ("models", "dtype_policies", "quantizers", "mixed_precision"),
}
#: Helpers every namespace exports that a config never names as an object.
HELPERS = frozenset({"deserialize", "serialize", "get"})


def namespace(package: ModuleType, dotted: str) -> ModuleType | None:
    module: Any = package
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module if inspect.ismodule(module) else None


def public(module: ModuleType | None, functions: bool = True) -> set[str]:
    """Public classes (and functions) a Keras namespace exports: what `class_name` or a string can name."""
    if module is None:
        return set()
    names = set()
    for name in dir(module):
        value = getattr(module, name, None)
        if name.startswith("_") or name in HELPERS:
            continue
        if inspect.isclass(value) or (functions and inspect.isfunction(value)):
            names.add(name)
    return names


def layer_names() -> set[str]:
    names = {n for n in public(keras.layers, functions=False) if issubclass(getattr(keras.layers, n), keras.Layer)}
    names |= public(namespace(keras, "src.legacy.layers"), functions=False)
    tf_keras_layers.populate_deserializable_objects()
    names |= {n for n, v in tf_keras_layers.LOCAL.ALL_OBJECTS.items() if inspect.isclass(v)}
    names |= {
        n
        for n in public(tf_keras.layers, functions=False)
        if issubclass(getattr(tf_keras.layers, n), tf_keras.layers.Layer)
    }
    return names


def main() -> None:
    data: dict[str, Any] = {
        "generated_by": "scripts/gen_keras_names.py",
        "keras_version": keras.__version__,
        "tf_keras_version": tf_keras.__version__,
        "module_roots": ["keras", "tf_keras"],
        "layers": sorted(layer_names()),
    }
    for group, spaces in GROUPS.items():
        names: set[str] = set()
        for package in (keras, tf_keras):
            for dotted in spaces:
                names |= public(namespace(package, dotted), functions=group != "other")
        data[group] = sorted(names)
    data["other"] = sorted({*data["other"], "Functional", "InputSpec"})
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"{TARGET}: {', '.join(f'{len(v)} {k}' for k, v in data.items() if isinstance(v, list))}")


if __name__ == "__main__":
    main()
