"""Keras model configurations (`config.json` inside a `.keras` archive, legacy `model.to_json()`
files): recognised by their JSON shape, not yet analysed (fail closed).

No suffix is claimed: `.keras` is a zip (the zip walker hands its members to the engine, which is
how `config.json` gets here) and `.json` names every kind of configuration.
"""

from __future__ import annotations

import json
import re

from modelshield.core.source import Source
from modelshield.formats._unanalysed import UnanalysedFormat

#: Configs larger than this are judged on their first bytes alone rather than parsed in full.
MAX_PARSE_BYTES = 16 * 1024 * 1024
_SNIFF_BYTES = 4096
_KERAS_MODULE = re.compile(rb'"module"\s*:\s*"keras')
_MARKERS = (b'"registered_name"', b'"keras_version"')


def _is_keras_object(obj: object) -> bool:
    """A serialized Keras object: `class_name` and `config`, plus a Keras module, a registered
    name (Keras 3) or a `keras_version` (Keras 2 / tf.keras)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("class_name"), str) or "config" not in obj:
        return False
    module = obj.get("module")
    return (
        (isinstance(module, str) and module.startswith("keras")) or "registered_name" in obj or "keras_version" in obj
    )


def model_class(source: Source) -> str | None:
    """The top-level `class_name` of a Keras model config, or None if this is not one."""
    head = source.head(_SNIFF_BYTES)
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") or b'"class_name"' not in head:
        return None
    if source.size > MAX_PARSE_BYTES:
        if b'"config"' in head and (_KERAS_MODULE.search(head) or any(m in head for m in _MARKERS)):
            match = re.search(rb'"class_name"\s*:\s*"([^"\\]{1,200})"', head)
            return match.group(1).decode("utf-8", "replace") if match else "?"
        return None
    try:
        obj = json.loads(source.read_at(0, source.size).decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return str(obj["class_name"]) if _is_keras_object(obj) else None


class KerasConfigHandler(UnanalysedFormat):
    name = "keras-config"
    label = "Keras model config"
    unchecked = "layer modules and class names, Lambda bytecode, function references and file paths"

    def detect(self, source: Source) -> bool:
        return model_class(source) is not None

    def describe(self, source: Source) -> str:
        return f"Keras model config (top-level class {model_class(source)!r})"
