"""Write the skops, MLflow and TorchServe fixtures of tests/fixtures/configs/ with the real libraries.

Each part runs in the environment that has its library (none of them is needed by the tests):

    /work/envs/cfg/bin/python scripts/make_package_config_fixtures.py skops mlflow
    <venv with torch and torch-model-archiver>/bin/python scripts/make_package_config_fixtures.py torchserve
    <venv with safetensors and numpy>/bin/python scripts/make_package_config_fixtures.py safetensors

Real files (what the libraries write for ordinary models) must scan clean; the hostile ones are written
by the same libraries with a harmless payload (`echo`), and scripts/prove_package_config_paths.py shows
that the same constructions fire in the real loaders.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "configs"
PAYLOAD = "echo modelshield-fixture"


def _data() -> tuple[object, object]:
    import numpy as np

    rng = np.random.default_rng(0)
    features = rng.random((40, 3))
    return features, (features[:, 0] > 0.5).astype(int)


def skops_fixtures() -> None:
    """Ordinary estimators saved with skops.io.dump, and one hostile schema edited from a real dump."""
    import numpy as np
    import skops.io as sio
    from sklearn.cluster import KMeans
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.model_selection import GridSearchCV
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    out = ROOT / "skops"
    out.mkdir(parents=True, exist_ok=True)
    x, y = _data()
    pipeline = make_pipeline(FunctionTransformer(np.log1p), StandardScaler(), LogisticRegression()).fit(x, y)
    sio.dump(pipeline, out / "real_pipeline.skops")
    estimators = [
        DecisionTreeClassifier(max_depth=2).fit(x, y),
        RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(x, y),
        SGDClassifier(loss="hinge").fit(x, y),
        HistGradientBoostingClassifier(max_iter=2).fit(x, y),
        KMeans(n_clusters=2, n_init=1, random_state=0).fit(x),
        GaussianNB().fit(x, y),
        np.random.default_rng(1),
        np.random.RandomState(2),
    ]
    sio.dump(estimators, out / "real_estimators.skops", compression=zipfile.ZIP_DEFLATED)
    # A fitted search keeps its scorer: skops lists the metric function among the types to trust.
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, scoring="accuracy", cv=2).fit(x, y)
    sio.dump(search, out / "real_search.skops", compression=zipfile.ZIP_DEFLATED)
    print("real_search untrusted:", sio.get_untrusted_types(file=out / "real_search.skops"))
    # A dict whose key is Python source: skops calls each key type with its key, so a key type of
    # builtins.eval runs it once the user trusts what get_untrusted_types reports.
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.skops"
        sio.dump({f"__import__('os').system({PAYLOAD!r})": 1}, plain)
        _rewrite_schema(plain, out / "eval_key_type.skops", lambda text: text.replace('"str"', '"eval"', 1))
        print("eval_key_type untrusted:", sio.get_untrusted_types(file=out / "eval_key_type.skops"))


def _rewrite_schema(source: Path, target: Path, edit: object) -> None:
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(members["schema.json"])
    # the key types' TypeNode is the first "str" class in the schema text
    text = json.dumps(schema["key_types"], indent=2)
    schema["key_types"] = json.loads(edit(text))  # type: ignore[operator]
    members["schema.json"] = json.dumps(schema, indent=2).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def mlflow_fixtures() -> None:
    """MLflow-saved sklearn models (cloudpickle, pickle and skops formats) and a pyfunc model whose
    `loader_module` is a shipped code module."""
    import mlflow.pyfunc
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    out = ROOT / "mlflow"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    x, y = _data()
    model = LogisticRegression().fit(x, y)
    for fmt in ("cloudpickle", "pickle", "skops"):
        mlflow.sklearn.save_model(model, out / f"sklearn_{fmt}", serialization_format=fmt)
    with tempfile.TemporaryDirectory() as tmp:
        loader = Path(tmp) / "evil_loader.py"
        loader.write_text(
            f"import os\n\nos.system({PAYLOAD!r})\n\n\ndef _load_pyfunc(path):\n    return None\n", encoding="utf-8"
        )
        mlflow.pyfunc.save_model(out / "pyfunc_loader_module", loader_module="evil_loader", code_paths=[str(loader)])
    for folder in out.iterdir():  # the creation time and ids differ on every run; keep the files stable
        _strip_volatile(folder / "MLmodel")


def _strip_volatile(mlmodel: Path) -> None:
    lines = mlmodel.read_text(encoding="utf-8").splitlines()
    keep = [line for line in lines if not line.startswith(("utc_time_created", "model_uuid", "model_id"))]
    mlmodel.write_text("\n".join(keep) + "\n", encoding="utf-8")


def torchserve_fixtures() -> None:
    """`.mar` archives written by torch-model-archiver: a TorchScript model with a built-in handler, and a
    custom handler module with a requirements file."""
    import torch

    out = ROOT / "torchserve"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), work / "model.pt")
        (work / "index_to_name.json").write_text('{"0": "cat", "1": "dog"}', encoding="utf-8")
        _archive("real_image_classifier", work, out, "image_classifier", extra="index_to_name.json")
        (work / "my_handler.py").write_text(
            "import os\n\nfrom ts.torch_handler.base_handler import BaseHandler\n\n"
            f"os.system({PAYLOAD!r})\n\n\nclass MyHandler(BaseHandler):\n    pass\n",
            encoding="utf-8",
        )
        (work / "requirements.txt").write_text("numpy\n", encoding="utf-8")
        _archive("custom_handler", work, out, str(work / "my_handler.py"), requirements=str(work / "requirements.txt"))


def _archive(name: str, work: Path, out: Path, handler: str, *, extra: str = "", requirements: str = "") -> None:
    command = [
        str(Path(sys.executable).with_name("torch-model-archiver")),
        "--model-name", name, "--version", "1.0", "--serialized-file", str(work / "model.pt"),
        "--handler", handler, "--export-path", str(out), "--force",
    ]  # fmt: skip
    if extra:
        command += ["--extra-files", str(work / extra)]
    if requirements:
        command += ["--requirements-file", requirements]
    subprocess.run(command, check=True, cwd=work, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def safetensors_fixtures() -> None:
    """safetensors files whose `__metadata__` holds JSON: ordinary training metadata and a framework Hydra
    config, and a Hydra config whose target runs code (what a project that instantiates it would call)."""
    import numpy as np
    from safetensors.numpy import save_file

    out = ROOT / "safetensors"
    out.mkdir(parents=True, exist_ok=True)
    tensors = {"weight": np.zeros((2, 2), dtype=np.float32)}
    real = {
        "format": "pt",
        "ss_network_args": json.dumps({"conv_dim": 4, "conv_alpha": 1}),
        "ss_tag_frequency": json.dumps({"cats": {"cat": 3, "sitting": 1}}),
        "config": json.dumps({"model": {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 2}}),
    }
    save_file(tensors, str(out / "real_metadata.safetensors"), metadata=real)
    hostile = {"config": json.dumps({"_target_": "builtins.exec", "_args_": [f"print({PAYLOAD!r})"]})}
    save_file(tensors, str(out / "hydra_target_metadata.safetensors"), metadata=hostile)


PARTS = {
    "skops": skops_fixtures,
    "mlflow": mlflow_fixtures,
    "torchserve": torchserve_fixtures,
    "safetensors": safetensors_fixtures,
}

if __name__ == "__main__":
    for part in sys.argv[1:] or list(PARTS):
        PARTS[part]()
