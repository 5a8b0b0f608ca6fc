"""Show how the installed Keras 3 resolves the references formats/keras/config.py judges by name.

Run by hand, never in CI, in an environment with Keras 3 (/work/envs/tf here):

    python scripts/prove_keras_references.py

Each config is handed to `keras.saving.deserialize_keras_object` with safe mode on and off. Nothing here
runs a payload: the references name `get_file`, `exec` and a TFSMLayer on a path that does not exist,
and the point is which name Keras resolves (its error names the object it found) and what it refuses.
With Keras 3.15.1: `{"module": "keras", "class_name": "layers.Dense"}` is the Dense layer (a dotted name is
looked up as `module + "." + class_name`), `utils.get_file` is found as `keras.utils.get_file` and refused
as a non-modelling API, `layers.TFSMLayer` is refused in safe mode and loads its SavedModel without it.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
from keras.saving import deserialize_keras_object

CONFIGS: list[dict[str, Any]] = [
    {"module": "keras", "class_name": "layers.Dense", "config": {"units": 2, "name": "d"}, "registered_name": None},
    {"module": "keras", "class_name": "function", "config": "utils.get_file", "registered_name": None},
    {"module": "keras.src.utils.file_utils", "class_name": "function", "config": "get_file", "registered_name": None},
    {"module": "builtins", "class_name": "function", "config": "exec", "registered_name": None},
    {
        "module": "keras",
        "class_name": "layers.TFSMLayer",
        "config": {"filepath": "/nonexistent-modelshield-proof", "name": "t"},
        "registered_name": None,
    },
]


def main() -> int:
    print(f"keras {keras.__version__}")
    for config in CONFIGS:
        shown = f"{config['module']} / {config['class_name']}" + (
            f" / {config['config']}" if isinstance(config["config"], str) else ""
        )
        for safe in (True, False):
            try:
                found = deserialize_keras_object(config, safe_mode=safe)
                outcome = f"{getattr(found, '__module__', '')}.{getattr(found, '__name__', type(found).__name__)}"
            except Exception as exc:
                outcome = f"refused: {type(exc).__name__}: {str(exc)[:140]}".replace("\n", " ")
            print(f"{shown:60} safe_mode={safe!s:5} -> {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
