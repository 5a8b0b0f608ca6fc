"""Freeze ONNX Runtime's operator registry into modelshield's data list (formats/data/onnxruntime_ops.json).

Scanning never imports onnxruntime; the list tells operators onnxruntime implements itself (its
contrib ops in `com.microsoft`, its layout domains, and the extra ops it registers in the default
domain, such as `SimplifiedLayerNormalization` in onnxruntime-genai's LLMs) from names no kernel of
it has. Regenerate when a new onnxruntime release adds operators, in a separate virtualenv:

    python3 -m venv /tmp/ort-env && /tmp/ort-env/bin/pip install onnxruntime
    /tmp/ort-env/bin/python scripts/gen_onnx_data.py
"""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime
from onnxruntime.capi import onnxruntime_pybind11_state as state

DATA = Path(__file__).resolve().parents[1] / "src" / "modelshield" / "formats" / "data" / "onnxruntime_ops.json"


def main() -> None:
    domains: dict[str, set[str]] = {}
    for schema in state.get_all_operator_schema():
        domains.setdefault(schema.domain, set()).add(schema.name)
    data = {
        "onnxruntime_version": onnxruntime.__version__,
        "generated_by": "scripts/gen_onnx_data.py",
        "domains": {domain: sorted(names) for domain, names in sorted(domains.items())},
    }
    DATA.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(DATA, {domain: len(names) for domain, names in domains.items()})


if __name__ == "__main__":
    main()
