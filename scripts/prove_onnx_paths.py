"""Prove in real onnxruntime that the ONNX paths modelshield reports do what their rules say. Not run in CI.

Run with onnxruntime and onnx installed, in a throwaway environment:

    python3 -m venv /tmp/ort-env && /tmp/ort-env/bin/pip install onnxruntime onnx numpy
    MODELSHIELD_PYTHON=.venv/bin/python /tmp/ort-env/bin/python scripts/prove_onnx_paths.py

(`MODELSHIELD_PYTHON` is an interpreter with modelshield's dependencies; it defaults to this one.)
Measured on 2026-12-02: onnxruntime 1.16.3 (`pip install "onnxruntime<1.17" "numpy<2"`) returns the
sentinel for the `..` location, the link out of the folder and the memory address, and writes the
profile; onnxruntime 1.32.0 refuses the first three (path validation, "in-memory address marker ... not
allowed in a model protobuf") and still writes the profile. Neither ships a provider that owns EPContext.

Everything happens in a fresh temporary folder; the "secret" is a sentinel file written there, and each
model is also scanned with modelshield (from this checkout) so the verdict is shown beside the effect:
  1. ONX004: external data whose location climbs out of the model folder, and a name linked out of it;
     the sentinel's bytes come back as the model's output if onnxruntime reads them.
  2. ONX009: `*/_ORT_MEM_ADDR_/*` in a model loaded from a file, pointing at a buffer of this process.
  3. ONX007 / ONX008: an `EPContext` node naming a context file outside the folder. Only the providers
     that own the node read the file (TensorRT, QNN, OpenVINO, Vitis AI: each needs its hardware), so on
     a CPU-only machine this shows how far onnxruntime takes the node: to the provider named by `source`.
  4. ONX010: `ort_config` session options applied with `ORT_LOAD_CONFIG_FROM_MODEL=1` (profiling writes a file).
  5. ONX001 in the ORT format: the converter's `.ort` output loads, and a custom operator in it is
     resolved by (domain, op type) like in ONNX.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
SENTINEL = b"MODELSHIELD-SENTINEL-0123456789"  # 31 bytes; padded to whole float32 values below
WIDTH = 8  # float32 values: 32 bytes


def identity_model(tensor: TensorProto, **kwargs: object) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [WIDTH])],
        initializer=[tensor],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9, **kwargs)  # type: ignore[arg-type]


def external(location: str, offset: int = 0, length: int = 4 * WIDTH) -> TensorProto:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[WIDTH], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        tensor.external_data.add(key=key, value=value)
    return tensor


def scan(path: Path) -> str:
    """modelshield's rule ids for the file, from this checkout."""
    result = subprocess.run(
        [
            os.environ.get("MODELSHIELD_PYTHON", sys.executable),
            "-m",
            "modelshield",
            "scan",
            "--format",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=False,
    )
    try:
        files = json.loads(result.stdout)["files"]
    except (ValueError, KeyError):
        return f"modelshield not runnable here ({result.stderr.strip()[:120]})"
    return ", ".join(sorted({f["rule_id"] for entry in files for f in entry["findings"]})) or "clean"


def run(path: Path) -> str:
    """What onnxruntime makes of the file: the output bytes, or its error."""
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (output,) = session.run(None, {})
    except Exception as exc:
        return f"refused: {str(exc).splitlines()[0][:160]}"
    data = np.asarray(output, dtype=np.float32).tobytes()
    return "READ THE SENTINEL" if data.startswith(SENTINEL) else f"output {data[:16]!r}"


def external_data(work: Path) -> None:
    outside = work / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(SENTINEL.ljust(4 * WIDTH, b"\0"))
    folder = work / "model"
    folder.mkdir()
    for name, location in (("climb.onnx", "../outside/secret.bin"), ("absolute.onnx", str(outside / "secret.bin"))):
        path = folder / name
        path.write_bytes(identity_model(external(location)).SerializeToString())
        print(f"[ONX004] {name:14} location {location!r}: onnxruntime {run(path)}; modelshield {scan(path)}")
    os.symlink(outside / "secret.bin", folder / "weights.bin")
    path = folder / "link.onnx"
    path.write_bytes(identity_model(external("weights.bin")).SerializeToString())
    print(f"[ONX004] link.onnx      weights.bin -> ../outside: onnxruntime {run(path)}; modelshield {scan(path)}")


def memory_address(work: Path) -> None:
    buffer = ctypes.create_string_buffer(SENTINEL.ljust(4 * WIDTH, b"\0"), 4 * WIDTH)
    path = work / "memory.onnx"
    path.write_bytes(identity_model(external("*/_ORT_MEM_ADDR_/*", ctypes.addressof(buffer))).SerializeToString())
    address = ctypes.addressof(buffer)
    print(f"[ONX009] memory.onnx    address {address:#x}: onnxruntime {run(path)}; modelshield {scan(path)}")


def ep_context(work: Path) -> None:
    (work / "engine.bin").write_bytes(SENTINEL)
    folder = work / "ctx"
    folder.mkdir()
    node = helper.make_node(
        "EPContext", ["x"], ["y"], domain="com.microsoft", embed_mode=0, ep_cache_context="../engine.bin", source="QNN"
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [WIDTH])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    path = folder / "model_ctx.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=opsets, ir_version=9).SerializeToString())
    print(
        f"[ONX007] model_ctx.onnx ep_cache_context '../engine.bin': onnxruntime {run(path)}; modelshield {scan(path)}"
    )
    print(f"         providers in this onnxruntime: {ort.get_available_providers()}")


def session_config(work: Path) -> None:
    folder = work / "cwd"
    folder.mkdir()
    model = identity_model(onnx.numpy_helper.from_array(np.zeros(WIDTH, dtype=np.float32), "w"))
    helper.set_model_props(model, {"ort_config": '{"session_options": {"enable_profiling": 1}}'})
    path = folder / "config.onnx"
    path.write_bytes(model.SerializeToString())
    code = f"import onnxruntime as o; o.InferenceSession({str(path)!r}).run(None, {{}})"
    env = {**os.environ, "ORT_LOAD_CONFIG_FROM_MODEL": "1"}
    subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, check=False, capture_output=True)
    written = sorted(p.name for p in folder.glob("onnxruntime_profile_*.json"))
    print(
        f"[ONX010] config.onnx    ORT_LOAD_CONFIG_FROM_MODEL=1 wrote {written or 'nothing'}; modelshield {scan(path)}"
    )


def ort_format(work: Path) -> None:
    fixtures = ROOT / "tests" / "fixtures" / "onnx"
    for name in ("standard.ort", "custom_op_in_a_branch.ort", "ep_context_escape.ort"):
        path = work / name
        path.write_bytes((fixtures / name).read_bytes())
        try:
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            outcome = "loads"
        except Exception as exc:
            outcome = f"refused: {str(exc).splitlines()[0][:150]}"
        print(f"[ORT]    {name:26} onnxruntime {outcome}; modelshield {scan(path)}")


def main() -> None:
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}")
    with tempfile.TemporaryDirectory(prefix="modelshield-onnx-proof-") as tmp:
        work = Path(tmp)
        external_data(work)
        memory_address(work)
        ep_context(work)
        session_config(work)
        ort_format(work)


if __name__ == "__main__":
    main()
