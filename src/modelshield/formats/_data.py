"""The name lists generated from the real frameworks (`formats/data/*.json`), read when first needed."""

from __future__ import annotations

import json
from typing import Any


def load_data(name: str) -> Any:
    """`formats/data/NAME`, parsed. Callers cache the result; importlib.resources is imported here
    because it costs start-up time that scans without Keras or TensorFlow files should not pay."""
    from importlib import resources  # noqa: PLC0415

    return json.loads(resources.files(__package__).joinpath(f"data/{name}").read_text(encoding="utf-8"))
