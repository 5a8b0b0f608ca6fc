"""skops, TorchServe, MLflow and safetensors-metadata inputs at and past their analysis bounds: each is
answered within the bound with its findings (issue 14).

Writes each input into a temporary folder, runs `modelshield scan --format json` on it in a fresh process
(this interpreter, the checkout's `src`), and prints a Markdown table of median wall time, peak RSS and
the rules reported.

    python bench/package_configs.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import scan_case

ROOT = Path(__file__).resolve().parent.parent
HANDLER = b"def f(x):\n    return x + 1\n" * 4000  # 100 kB of ordinary Python


def _node(loader: str, module: str, cls: str, **rest: Any) -> dict[str, Any]:
    return {"__loader__": loader, "__module__": module, "__class__": cls, **rest}


def skops_schema(path: Path, estimators: int) -> None:
    """A list of estimators, three nodes each (about 100 bytes a node), ending in an os.system node."""
    state = _node("DictNode", "builtins", "dict", content={"a": _node("JsonNode", "builtins", "str", content="1")})
    items = [_node("ObjectNode", "sklearn.tree._classes", "DecisionTreeClassifier", content=state)] * estimators
    items.append(_node("FunctionNode", "os", "system"))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "schema.json", json.dumps({**_node("ListNode", "builtins", "list", content=items), "protocol": 2})
        )


def mar(path: Path, files: int) -> None:
    manifest = {"runtime": "python", "model": {"handler": "m0.py"}, "archiverVersion": "0.12.0"}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        for i in range(files):
            archive.writestr(f"m{i}.py", HANDLER)


def mlflow_folder(path: Path, files: int) -> None:
    path.mkdir()
    (path / "MLmodel").write_text("flavors:\n  python_function:\n    code: code\n    loader_module: m0\n", "utf-8")
    (path / "code").mkdir()
    for i in range(files):
        (path / "code" / f"m{i}.py").write_bytes(HANDLER)


def safetensors_metadata(path: Path) -> None:
    """A Hydra config just under 256 KiB (the largest value judged) in `__metadata__`, its hook last."""
    layers = [{"_target_": "torch.nn.Linear", "in_features": i, "out_features": i} for i in range(3000)]
    text = json.dumps({"layers": layers, "hook": {"_target_": "os.system", "_args_": ["id"]}})
    assert len(text) < 256 * 1024, len(text)
    entry = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    header = json.dumps({"__metadata__": {"config": text}, "w": entry})
    raw = header.encode() + b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4)


CASES: list[tuple[str, str, Callable[[Path], None]]] = [
    ("skops schema, 60 k estimators (180 k nodes, 18 MB)", "big.skops", lambda p: skops_schema(p, 60_000)),
    ("skops schema past the node bound (210 k nodes)", "bound.skops", lambda p: skops_schema(p, 70_000)),
    (".mar with 64 handler files of 100 kB (code budget)", "many.mar", lambda p: mar(p, 64)),
    ("MLflow code/ with 64 files of 100 kB (code budget)", "mlflow_model", lambda p: mlflow_folder(p, 64)),
    ("safetensors with a 256 KiB Hydra config (3 k targets) in __metadata__", "meta.safetensors", safetensors_metadata),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per input (median reported)")
    parser.add_argument("--python", default=sys.executable, help="interpreter with modelshield's dependencies")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    print(
        f"# Package configs ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python {sys.version.split()[0]})\n\n"
        "| input | median s | peak RSS MiB | exit | rules |\n| --- | ---: | ---: | ---: | --- |"
    )
    with tempfile.TemporaryDirectory(prefix="modelshield-package-bench-") as tmp:
        for label, name, write in CASES:
            path = Path(tmp) / name
            write(path)
            seconds, rss, code, rules = scan_case(args.python, path, env, args.runs, 300, "--no-deps")
            print(f"| {label} | {seconds:.2f} | {rss:.0f} | {code} | {', '.join(rules)} |")


if __name__ == "__main__":
    main()
