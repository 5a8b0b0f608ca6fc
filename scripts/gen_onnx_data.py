"""Freeze the ONNX operator registries into modelshield's data lists (formats/data/).

Scanning imports neither onnx nor onnxruntime: importing onnx alone costs most of a second (its numpy
and ml_dtypes extensions) in every process. Two tables:

- `onnx_ops.json`: every operator schema of onnx (`onnx.defs.get_all_schemas_with_history`), per domain,
  with the onnx version. A scan that meets an operator of an ONNX domain missing from it asks the
  installed onnx package instead, so a newer onnx release's operators are never false alarms.
  Regenerate with the project's own environment: `python scripts/gen_onnx_data.py onnx`.
- `onnxruntime_ops.json`: ONNX Runtime's registry, which tells operators onnxruntime implements itself
  (its contrib ops in `com.microsoft`, its layout domains, and the extra ops it registers in the default
  domain, such as `SimplifiedLayerNormalization` in onnxruntime-genai's LLMs) from names no kernel of it
  has. Regenerate when a new onnxruntime release adds operators, in a separate virtualenv:

    python3 -m venv /tmp/ort-env && /tmp/ort-env/bin/pip install onnxruntime
    /tmp/ort-env/bin/python scripts/gen_onnx_data.py onnxruntime
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "src" / "modelshield" / "formats" / "data"


def write(name: str, version_key: str, version: str, schemas: Iterable[tuple[str, str]]) -> None:
    """`schemas` as (domain, operator name) pairs, written as sorted names per domain."""
    domains: dict[str, set[str]] = {}
    for domain, op in schemas:
        domains.setdefault(domain, set()).add(op)
    data = {
        version_key: version,
        "generated_by": "scripts/gen_onnx_data.py",
        "domains": {domain: sorted(names) for domain, names in sorted(domains.items())},
    }
    (DATA / name).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(DATA / name, {domain: len(names) for domain, names in domains.items()})


def onnx_table() -> None:
    import onnx
    import onnx.defs

    schemas = onnx.defs.get_all_schemas_with_history()
    write("onnx_ops.json", "onnx_version", onnx.__version__, ((s.domain, s.name) for s in schemas))


def onnxruntime_table() -> None:
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    schemas = state.get_all_operator_schema()
    write("onnxruntime_ops.json", "onnxruntime_version", onnxruntime.__version__, ((s.domain, s.name) for s in schemas))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("table", choices=["onnx", "onnxruntime"])
    {"onnx": onnx_table, "onnxruntime": onnxruntime_table}[parser.parse_args().table]()


if __name__ == "__main__":
    main()
