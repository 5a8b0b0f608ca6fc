"""Write the committed model fixtures and bundled examples with the real frameworks.

The tests read the files this script wrote and committed, so CI needs none of these frameworks.
Regenerate them only when a fixture must change:

    pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl  # any CPU wheel
    pip install -e '.[fixtures]'  # scikit-learn, joblib, safetensors, dill, cloudpickle
    python scripts/make_fixtures.py

It writes:
  tests/fixtures/real/       benign files as torch, scikit-learn/joblib, numpy, safetensors, dill and
                             cloudpickle save them
  tests/fixtures/real/libraries/   models as gensim, statsmodels and sklearn_crfsuite save them, and
                             Babel's locale data (`--only libraries`; needs gensim, statsmodels,
                             sklearn-crfsuite, babel)
  tests/fixtures/code_at_load/     standard files whose loader runs code they carry (a torch.fx
                             GraphModule; `--only code-at-load`): reported, graded by that code
  tests/fixtures/malicious/  hostile files: a payload object serialised next to real model data
  examples/safe/, examples/unsafe/   the small models the README quickstart scans

Hostile files are only ever dumped, never loaded: their payloads run `touch /tmp/modelshield-marker-NAME`,
harmless if a loader were ever pointed at them, and the tests only scan them. Seeds and the string hash
seed are fixed, so reruns write the same bytes, except in torch's legacy format, which names storages by
memory address, and in TorchScript archives, which carry a random serialization id.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import dill
import joblib
import numpy as np
import safetensors.numpy
import safetensors.torch
import torch
import torch.fx
import torch.package
from sklearn.cluster import KMeans
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "tests" / "fixtures" / "real"
MALICIOUS = ROOT / "tests" / "fixtures" / "malicious"
CODE_AT_LOAD = ROOT / "tests" / "fixtures" / "code_at_load"
CODE_IN_ARCHIVES = ROOT / "tests" / "fixtures" / "code_in_archives"
EXAMPLES = ROOT / "examples"
#: A deterministic timestamp for the archives this script assembles itself (tar, zip, gzip).
EPOCH = 1_700_000_000


class Payload:
    """Pickles as a call to `func(*args)`: what a poisoned model runs when it is loaded."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return self.func, self.args


def marker(name: str) -> str:
    return f"touch /tmp/modelshield-marker-{name}"


def marker_function(name: str) -> Callable[[], int]:
    """A function that runs the marker command when called, compiled under a fixed file name: dill
    and cloudpickle serialise its code object, which records where it was compiled."""
    source = f"lambda: __import__('os').system({marker(name)!r})"
    function: Callable[[], int] = eval(compile(source, "<modelshield-fixture>", "eval"))
    return function


def seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


# ---------------------------------------------------------------- benign model objects


class TinyNet(nn.Module):
    """A small model of torch's own layers, the shape of a typical state_dict."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.norm = nn.BatchNorm1d(8)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.head = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 4), nn.ReLU(), nn.Dropout(0.1), nn.Linear(4, 2))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens).transpose(1, 2)
        x = torch.relu(self.norm(self.conv(x))).transpose(1, 2)
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def whole_module() -> nn.Module:
    """An nn.Sequential pickled whole (torch's classes only, so it loads without user code)."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4, 4),
        nn.GELU(),
        nn.LayerNorm(4),
        nn.Linear(4, 2),
        nn.Softmax(dim=-1),
    )


def training_checkpoint() -> dict[str, Any]:
    """What a training loop saves: model, Adam state after a few steps, scheduler, epoch, loss."""
    model = TinyNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    tokens = torch.randint(0, 16, (4, 5))
    for _ in range(2):
        optimizer.zero_grad()
        loss = model(tokens).pow(2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return {
        "epoch": 2,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "scheduler_state_dict": scheduler.state_dict(),
        "loss": loss.item(),
        "config": {"vocab": 16, "hidden": 8, "layers": [8, 4, 2], "dropout": 0.1, "name": "tiny"},
    }


def mixed_dtype_state() -> dict[str, torch.Tensor]:
    """Half, bfloat16, integer, boolean and shared-storage tensors, as quantised/HF checkpoints hold."""
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    return {
        "fp16": base.half(),
        "bf16": base.bfloat16(),
        "int8": torch.arange(-4, 4, dtype=torch.int8),
        "mask": torch.tensor([True, False, True]),
        "view": base[1:],  # shares storage with "base"
        "base": base,
        "scalar": torch.tensor(3.5),
    }


def torch_extras() -> dict[str, Any]:
    """Values beyond plain tensors that real checkpoints carry, one file each: quantised and sparse
    tensors, dtypes, devices and sizes in configs, and fairseq-style `argparse.Namespace` arguments."""
    return {
        "quantised": {"weight": torch.quantize_per_tensor(torch.linspace(-1, 1, 8), 0.01, 0, torch.qint8)},
        "sparse": {"adjacency": torch.eye(3).to_sparse()},
        "config_values": {"dtype": torch.bfloat16, "device": torch.device("cpu"), "shape": torch.Size([2, 3])},
        "namespace_args": {"args": argparse.Namespace(arch="tiny", lr=1e-3, layers=[8, 4]), "model": {}},
    }


class GraphNet(nn.Module):
    """A model for torch.fx: its traced GraphModule pickles the generated forward() source."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    # No annotations: under `from __future__ import annotations` torch.fx puts the string 'torch.Tensor'
    # among the generated code's globals, and pickling the GraphModule then fails.
    def forward(self, x):  # type: ignore[no-untyped-def]
        y = torch.relu(self.linear(x)) + 1
        return torch.cat([y, y.flatten(1) * x.shape[0]], dim=1)


def write_torch_package(path: Path) -> None:
    """A torch.package archive of a state dict (its pickles key storages by int, not by str)."""
    with torch.package.PackageExporter(str(path)) as exporter:
        exporter.save_pickle("weights", "state.pkl", TinyNet().state_dict())


PACKAGED_NET = """import torch
from torch import nn


class PackagedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))
"""
#: A harmless sentinel: PackageImporter runs it when the pickle imports the shipped module.
SENTINEL_IMPORT = "import os\nos.system('touch /tmp/modelshield_sentinel_torch_package')\n"


def write_torch_packages(out: Path) -> None:
    """torch.package archives whose shipped `.py` members PackageImporter executes when a pickle names them:
    a benign packaged model, one whose module runs a command at import, and one shipping `numpy/core/multiarray.py`
    so that an ordinary array pickle's `numpy.core.multiarray._reconstruct` resolves to the archive's code.
    Run `PackageImporter(path).load_pickle("model", "model.pkl")` in a throwaway environment to see the sentinel."""
    seed()
    src = out / "_src"
    (src / "packaged").mkdir(parents=True)
    (src / "packaged" / "__init__.py").write_text("")
    (src / "packaged" / "net.py").write_text(PACKAGED_NET)
    sys.path.insert(0, str(src))
    try:
        from packaged.net import PackagedNet  # type: ignore[import-not-found]

        with torch.package.PackageExporter(str(out / "packaged_model.pt")) as exporter:
            exporter.extern(["torch", "torch.**"])
            exporter.intern("packaged.**")
            exporter.save_pickle("model", "model.pkl", PackagedNet())
        with torch.package.PackageExporter(str(out / "import_runs_command.pt")) as exporter:
            exporter.extern(["torch", "torch.**"])
            exporter.intern("packaged.**")
            exporter.save_pickle("model", "model.pkl", PackagedNet())
            exporter.save_source_string("packaged.net", SENTINEL_IMPORT + PACKAGED_NET)
    finally:
        sys.path.remove(str(src))
        shutil.rmtree(src)
    with torch.package.PackageExporter(str(out / "shadows_numpy.pt")) as exporter:
        shim = "def ndarray(*a):\n    return None\n\n\ndtype = ndarray\n"
        exporter.save_source_string("numpy", shim, is_package=True)
        exporter.save_source_string("numpy.core", "", is_package=True)
        exporter.save_source_string(
            "numpy.core.multiarray", SENTINEL_IMPORT + "\n\ndef _reconstruct(*args):\n    return None\n"
        )
        exporter.save_pickle("model", "model.pkl", np.zeros(2))


class ReadsAtLoad(nn.Module):
    """A scripted module whose `__setstate__` (run by torch.jit.load) maps a file outside the archive."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.ones(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.w

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        self.w = state[0]
        self.training = state[1]
        self.w = self.w + torch.from_file("/etc/hostname", False, 1, dtype=torch.uint8).float()


def write_torchscript_setstate(out: Path) -> None:
    """torch.jit.save output (compiled by torch, not hand-edited) whose `__setstate__` reads a file at load."""
    torch.jit.save(torch.jit.script(ReadsAtLoad()), out / "torchscript_setstate_reads_file.pt")


def write_code_at_load(out: Path) -> None:
    """Standard files that make their loader run code they carry (reported, graded by what it does)."""
    seed()
    torch.save(torch.fx.symbolic_trace(GraphNet()), out / "torch_fx_graph_module.pt")


def write_libraries(out: Path) -> None:
    """Models as third-party libraries save them (their classes rebuild data, or act in __setstate__):
    gensim's Word2Vec.save, a statsmodels formula fit (its data rebuilds the design with patsy at load),
    a sklearn_crfsuite CRF (its FileResource writes the model to a temporary file at load)."""
    import gensim.models  # only this writer needs them: pip install gensim statsmodels sklearn-crfsuite
    import pandas as pd
    import sklearn_crfsuite
    import statsmodels.formula.api as smf

    sentences = [["model", "file", "scan"], ["pickle", "model", "load"], ["scan", "pickle", "file"]] * 4
    gensim.models.Word2Vec(sentences, vector_size=4, min_count=1, epochs=1, seed=0, workers=1).save(
        str(out / "gensim_word2vec.model")
    )
    frame = pd.DataFrame({"y": [1.0, 2.1, 2.9, 4.2, 5.1, 5.8], "x": [1.0, 2, 3, 4, 5, 6], "g": list("ababab")})
    smf.ols("y ~ np.log(x) + C(g)", data=frame).fit().save(str(out / "statsmodels_ols_formula.pickle"))
    crf = sklearn_crfsuite.CRF(max_iterations=5)
    crf.fit([[{"w": "a"}, {"w": "b"}]] * 3, [["X", "Y"]] * 3)
    with open(out / "crfsuite_crf.pkl", "wb") as fh:
        pickle.dump(crf, fh, protocol=4)
    write_babel(out)


def write_babel(out: Path) -> None:
    """Babel's CLDR locale data as Babel ships it (a pickle per locale: pattern classes and plural rules,
    whose syntax tree babel compiles to Python and evals when a plural is formatted), and one rule."""
    import babel  # pip install babel==2.16.0
    from babel.plural import PluralRule

    shutil.copyfile(Path(babel.__file__).parent / "locale-data" / "ak.dat", out / "babel_ak.dat")
    rule = PluralRule({"one": "n in 0..1", "few": "n mod 10 in 3..4,9 and n mod 100 not in 10..19,70..79,90..99"})
    with open(out / "babel_plural_rule.pkl", "wb") as fh:
        pickle.dump(rule, fh, protocol=2)


def sklearn_estimators() -> dict[str, Any]:
    """Small fitted scikit-learn estimators of the common kinds."""
    x, y = make_classification(n_samples=60, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    return {
        "logistic": LogisticRegression(max_iter=200).fit(x, y),
        "forest": RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y),
        "pipeline": Pipeline(
            [("scale", StandardScaler()), ("pca", PCA(n_components=2, random_state=0)), ("svc", SVC())]
        ).fit(x, y),
        "boosting": GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0).fit(x, y),
        "kmeans": KMeans(n_clusters=3, n_init=2, random_state=0).fit(x),
        "tree": DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y),
        "linear": LinearRegression().fit(x, y.astype(float)),
        "string_labels": LogisticRegression(max_iter=200).fit(x, np.array(["cat", "dog"], dtype=object)[y]),
    }


def plain_data() -> dict[str, Any]:
    """Builtin data as vocabularies, label maps and configs pickled next to models hold it."""
    return {
        "labels": ["negative", "neutral", "positive"],
        "label2id": collections.OrderedDict([("negative", 0), ("neutral", 1), ("positive", 2)]),
        "vocab": {"<pad>": 0, "<unk>": 1, "héllo": 2, "世界": 3},
        "stopwords": {"a", "an", "the"},
        "frozen": frozenset({1, 2, 3}),
        "shape": (3, 4),
        "weights": [0.25, -1.5, 1e-300, float("inf")],
        "big": 2**100,
        "raw": b"\x00\x01binary",
        "buffer": bytearray(b"abc"),
        "flags": {"trained": True, "tuned": False, "notes": None},
    }


# ---------------------------------------------------------------- writers


def write_onnx_export(out: Path) -> None:
    """A small CNN exported by torch's own ONNX exporter (the legacy one works offline)."""
    seed()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2), nn.Softmax(-1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, 8, 8),), out / "torch_export.onnx", dynamo=False)


def write_real(out: Path) -> None:
    seed()
    net = TinyNet()
    torch.save(net.state_dict(), out / "torch_state_dict.pt")
    torch.save(net.state_dict(), out / "pytorch_model.bin")
    torch.save(net.state_dict(), out / "torch_state_dict_legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(whole_module(), out / "torch_whole_module.pt")
    torch.save(whole_module(), out / "torch_whole_module_legacy.pth", _use_new_zipfile_serialization=False)
    torch.save(training_checkpoint(), out / "torch_checkpoint.pth.tar")
    torch.save(mixed_dtype_state(), out / "torch_mixed_dtypes.pt")
    write_torch_package(out / "torch_package.pt")
    for name, value in torch_extras().items():
        torch.save(value, out / f"torch_{name}.pt")

    net.eval()
    write_onnx_export(out)
    torch.jit.save(torch.jit.script(net), out / "torchscript_scripted.pt")
    sample = (torch.randn(2, 4),)
    torch.jit.save(torch.jit.trace(nn.Sequential(nn.Linear(4, 3), nn.Tanh()), sample), out / "torchscript_traced.pt")

    estimators = sklearn_estimators()
    joblib.dump(estimators, out / "sklearn_estimators.joblib")
    joblib.dump(estimators["pipeline"], out / "sklearn_pipeline.pkl")
    for compress, name in [
        (3, "sklearn_estimators_zlib3.joblib"),
        ("gzip", "sklearn_estimators.joblib.gz"),
        ("bz2", "sklearn_estimators.joblib.bz2"),
        ("xz", "sklearn_estimators.joblib.xz"),
        ("lzma", "sklearn_estimators.joblib.lzma"),
    ]:
        joblib.dump(estimators, out / name, compress=compress)
    for protocol in (2, 3, 4, 5):
        with open(out / f"sklearn_estimators_p{protocol}.pkl", "wb") as fh:
            pickle.dump(estimators, fh, protocol=protocol)

    rng = np.random.default_rng(0)
    np.save(out / "numpy_float32.npy", rng.standard_normal((8, 4), dtype=np.float32))
    np.save(out / "numpy_fortran_int64.npy", np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)))
    np.save(out / "numpy_bigendian.npy", np.arange(5, dtype=">f8"))
    np.save(out / "numpy_strings.npy", np.array(["cat", "dog", "émeu"]))
    np.save(out / "numpy_object_labels.npy", np.array(["cat", "dog", None, 1.5], dtype=object), allow_pickle=True)
    records = np.array(
        [(1, 0.5, b"ab", [1, 2]), (2, 1.5, b"cd", [3, 4])],
        dtype=[("id", "<i4"), ("score", "<f8"), ("tag", "S2"), ("pair", "<u2", (2,))],
    )
    np.save(out / "numpy_structured.npy", records)
    arrays = {"embeddings": rng.standard_normal((16, 8)).astype(np.float16), "bias": np.zeros(8), "ids": np.arange(16)}
    np.savez(out / "numpy_arrays.npz", **arrays)
    np.savez_compressed(out / "numpy_arrays_compressed.npz", **arrays, records=records)

    safetensors.numpy.save_file(
        {"weight": rng.standard_normal((4, 4)).astype(np.float32), "bias": np.zeros(4, dtype=np.float64)},
        out / "numpy.safetensors",
        metadata={"format": "np", "note": "generated by make_fixtures"},
    )
    state = {k: v.contiguous() for k, v in mixed_dtype_state().items() if k != "view"}
    safetensors.torch.save_file(state, out / "torch.safetensors", metadata={"format": "pt"})
    safetensors.torch.save_file(net.state_dict(), out / "model.safetensors")

    for protocol in range(6):
        with open(out / f"python_data_p{protocol}.pkl", "wb") as fh:
            pickle.dump(plain_data(), fh, protocol=protocol)

    # dill and cloudpickle dumps of ordinary data: dill routes every array through its own helper.
    arrays_and_lists = {**arrays, "labels": plain_data()["labels"], "weights": plain_data()["weights"]}
    (out / "dill_arrays.pkl").write_bytes(dill.dumps(arrays_and_lists))
    (out / "cloudpickle_arrays.pkl").write_bytes(cloudpickle.dumps(arrays_and_lists))


def write_malicious(out: Path) -> None:
    seed()
    state = TinyNet().state_dict()
    torch.save({"state_dict": state, "hook": Payload(os.system, marker("torch-zip"))}, out / "torch_payload.pt")
    torch.save(
        {"state_dict": state, "hook": Payload(exec, "import os; os.system('" + marker("torch-legacy") + "')")},
        out / "torch_legacy_payload.pt",
        _use_new_zipfile_serialization=False,
    )
    arrays = {"coef": np.ones((4, 3)), "intercept": np.zeros(3)}
    for name, compress in [("joblib_payload.joblib", 0), ("joblib_payload_zlib.joblib", 3)]:
        payload = Payload(subprocess.call, ["sh", "-c", marker(name)])
        joblib.dump({**arrays, "postprocess": payload}, out / name, compress=compress)
    objects = np.empty(2, dtype=object)
    objects[0] = "weights"
    objects[1] = Payload(os.system, marker("numpy-object"))
    np.save(out / "numpy_object_payload.npy", objects, allow_pickle=True)
    np.savez(out / "numpy_payload.npz", weights=np.ones(4), extra=objects)
    # Serialised functions: loading rebuilds a code object that runs when the model calls it.
    (out / "dill_lambda.pkl").write_bytes(dill.dumps({"weights": [0.5], "postprocess": marker_function("dill")}))
    cloudpickled = cloudpickle.dumps({"weights": [0.5], "postprocess": marker_function("cloudpickle")})
    (out / "cloudpickle_function.pkl").write_bytes(cloudpickled)
    with open(out / "pickle_as.safetensors", "wb") as fh:
        pickle.dump({"weight": [0.0] * 4, "meta": Payload(eval, f"__import__('os').system('{marker('st')}')")}, fh)


def write_examples(out: Path) -> None:
    seed()
    safe, unsafe = out / "safe", out / "unsafe"
    safe.mkdir()
    unsafe.mkdir()
    net = TinyNet()
    torch.save(net.state_dict(), safe / "state_dict.pt")
    joblib.dump(sklearn_estimators()["pipeline"], safe / "classifier.joblib")
    safetensors.torch.save_file(net.state_dict(), safe / "weights.safetensors")

    hook = Payload(os.system, marker("example-checkpoint"))
    torch.save({"model": net.state_dict(), "callback": hook}, unsafe / "poisoned_checkpoint.pt")
    with open(unsafe / "model.safetensors", "wb") as fh:
        pickle.dump({"weight": [0.0] * 4, "init": Payload(os.system, marker("example-renamed"))}, fh, protocol=4)
    bundle_tar(unsafe / "release.tar.gz", Payload(os.system, marker("example-nested")))


def bundle_tar(path: Path, payload: Payload) -> None:
    """release.tar.gz holding model.zip holding a poisoned pickle beside harmless files."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in [
            ("model/config.json", b'{"hidden": 8}\n'),
            ("model/weights.pkl", pickle.dumps({"weight": [1.0, 2.0], "init": payload}, protocol=4)),
        ]:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in [("release/README.txt", b"Model release 1.0\n"), ("release/model.zip", inner.getvalue())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = EPOCH
            tf.addfile(info, io.BytesIO(data))
    with open(path, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=EPOCH, filename="") as gz:
        gz.write(raw.getvalue())


def fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def main() -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":  # set order in pickles follows the string hash seed
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    parser = argparse.ArgumentParser(description="Write the committed fixtures (all by default).")
    parser.add_argument(
        "--only", choices=["libraries", "code-at-load", "torch-package"], help="write only these, keep the others"
    )
    only = parser.parse_args().only
    if only is None:
        write_real(fresh(REAL))
    if only in (None, "libraries"):
        write_libraries(fresh(REAL / "libraries"))
    if only in (None, "code-at-load"):
        write_code_at_load(fresh(CODE_AT_LOAD))
    if only in (None, "torch-package"):
        write_torch_packages(fresh(CODE_IN_ARCHIVES))
        write_torchscript_setstate(CODE_IN_ARCHIVES)
    if only is not None:
        return
    write_malicious(fresh(MALICIOUS))
    for sub in ("safe", "unsafe"):
        if (EXAMPLES / sub).exists():
            shutil.rmtree(EXAMPLES / sub)
    EXAMPLES.mkdir(exist_ok=True)
    write_examples(EXAMPLES)
    total = 0
    for folder in (REAL, MALICIOUS, EXAMPLES):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix != ".md":
                total += path.stat().st_size
                print(f"{path.stat().st_size:>8}  {path.relative_to(ROOT)}")
    print(f"{total:>8}  total")


if __name__ == "__main__":
    main()
