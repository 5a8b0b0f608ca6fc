"""Property-based fuzzing of every parser from mutated real files (see harness.py for what a crash is).

Each family draws one of its seeds (committed fixtures and small files built by seeds.py), applies a few
mutations (mutate.py) and scans the result through the engine under the name of the seed.
"""

from __future__ import annotations

import base64
import io
import json
import marshal
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelshield.formats.keras import marshal as _marshal
from tests.fuzz import seeds
from tests.fuzz.conftest import FUZZ_SETTINGS
from tests.fuzz.harness import scan_bytes
from tests.fuzz.mutate import Mutation, apply, mutations


def _keras_config_from(archive: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(seeds.fixture(archive))) as z:
        return z.read("config.json")


FAMILIES: dict[str, list[str]] = {
    "pickle": [*seeds.fixture_names(".pkl", "_legacy.pt", "_legacy.pth", "_legacy_payload.pt"), "data.pkl", "evil.pkl"],
    "zip": [
        *seeds.fixture_names("torch_state_dict.pt", "torchscript_traced.pt", ".npz", "k3_lambda.keras"),
        "bundle.zip",
        "nested.zip",
    ],
    "tar": ["model.tar", "model.pax.tar"],
    "7z": ["model.7z"],
    "compressed": [
        *(f"data.pkl.{suffix}" for suffix in ("gz", "bz2", "xz", "lzma", "z", "lz4", "zst")),
        "real/sklearn_estimators_zlib3.joblib",
        "malicious/joblib_payload_zlib.joblib",
    ],
    "npy": [*seeds.fixture_names(".npy"), "array.npy", "objects.npy"],
    "safetensors": [*seeds.fixture_names(".safetensors"), "small.safetensors"],
    "gguf": ["model.gguf"],
    "tflite": seeds.fixture_names(".tflite"),
    "protobuf": seeds.fixture_names(".onnx", "saved_model.pb", "keras_metadata.pb"),
    "keras": ["keras_config.json", "keras/malicious/k3_lambda.keras", "keras/real/k3_functional.keras"],
    "hdf5": ["keras/real/k3_sequential.h5", "keras/malicious/k2_lambda.h5"],
    "templates": ["tokenizer_config.json", "evil_tokenizer_config.json", "chat_template.jinja"],
    "hf_config": ["config.json", "adapter_config.json", "model.safetensors.index.json"],
}
EXTRA = {
    "keras_config.k3_lambda.json": lambda: _keras_config_from("keras/malicious/k3_lambda.keras"),
    "keras_config.nested.json": lambda: _keras_config_from("keras/malicious/k3_nested_lambda.keras"),
}
FAMILIES["keras"] += sorted(EXTRA)


def _data(seed: str) -> bytes:
    return EXTRA[seed]() if seed in EXTRA else seeds.seed_bytes(seed)


def _name(seed: str) -> str:
    return "config.json" if seed in EXTRA else seeds.scan_name(seed)


def test_every_family_has_seeds() -> None:
    for family, names in FAMILIES.items():
        assert names, family
        for name in names:
            assert _data(name), name


@pytest.mark.parametrize("family", sorted(FAMILIES))
@settings(FUZZ_SETTINGS)
@given(data=st.data(), changes=mutations)
def test_mutated_files_never_crash_the_scanner(family: str, data: st.DataObject, changes: list[Mutation]) -> None:
    seed = data.draw(st.sampled_from(FAMILIES[family]), label="seed")
    other = data.draw(st.sampled_from([*FAMILIES[family], "data.pkl"]), label="splice from")
    scan_bytes(apply(_data(seed), changes, _data(other)), _name(seed))


def _lambda_code() -> bytes:
    source = "def f(x):\n    import os\n    g = lambda y: os.system(y)\n    return g(str(x))\n"
    return marshal.dumps(compile(source, "<fuzz>", "exec"))  # compiled, never run


@settings(FUZZ_SETTINGS)
@given(changes=mutations)
def test_mutated_bytecode_never_crashes_the_marshal_reader(changes: list[Mutation]) -> None:
    raw = apply(_lambda_code(), changes)
    summary = _marshal.summarise(raw)
    assert isinstance(summary.parsed, bool)
    config = json.loads(seeds.keras_config())
    config["config"]["layers"][2]["config"]["function"]["config"]["code"] = base64.b64encode(raw).decode()
    scan_bytes(json.dumps(config).encode(), "config.json")
