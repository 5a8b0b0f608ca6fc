"""bench/survey.py keeps model files by their bytes, whatever their names, and only those.

The release is a wheel assembled here (no network); the survey's extraction walks it, nested
archives and compressed streams included, exactly as it walks a release downloaded from PyPI.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import pickle
import struct
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_survey() -> ModuleType:
    spec = importlib.util.spec_from_file_location("survey", ROOT / "bench" / "survey.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["survey"] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


survey = load_survey()


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def npz() -> bytes:
    out = io.BytesIO()
    np.savez(out, weights=np.arange(4.0), bias=np.zeros(2))
    return out.getvalue()


def torch_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("model/data.pkl", pickle.dumps({"w": 1}, protocol=2))
        archive.writestr("model/version", "3\n")
        archive.writestr("model/data/0", b"\0" * 16)
    return out.getvalue()


def safetensors() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 4


def nested_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, body in (("inner/weights.bin", safetensors()), ("inner/notes.txt", b"plain text\n")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return out.getvalue()


CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

#: member name -> (bytes, the format the survey must sniff, or None for "not a model")
MEMBERS: dict[str, tuple[bytes, str | None]] = {
    "pkg/data/readme.txt": (pickle.dumps({"a": list(range(50))}, protocol=4), "pickle"),
    "pkg/data/probabilities.p": (pickle.dumps({"word": 0.5, "other": [1, 2, 3]}, protocol=0), "pickle"),
    "pkg/data/table.dat": (gzip.compress(pickle.dumps(list(range(10)), protocol=2)), "pickle+gzip"),
    "pkg/data/array.bin": (npy(np.arange(6)), "npy"),
    "pkg/data/arrays": (npz(), "npz"),
    "pkg/models/net.pt": (torch_zip(), "pytorch-zip"),
    "pkg/models/legacy.pth": (survey.TORCH_LEGACY_MAGIC + b".\x80\x02}q\x00.", "pytorch-legacy"),
    "pkg/models/vocab.gguf.part": (b"GGUF" + struct.pack("<IQQ", 3, 0, 0), "gguf"),
    "pkg/models/net.tflite": (b"\x1c\0\0\0TFL3" + b"\0" * 24, "tflite"),
    "pkg/models/keras.h5": (b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "hdf5"),
    "pkg/templates/chat.txt": (CHAT_TEMPLATE.encode(), "jinja"),
    # a tool-use template that renders Python signatures is still a template (mostly tag lines)
    "pkg/templates/tool_use.jinja": (
        ("{%- macro sig(f) %}\ndef {{ f.name }}():\n{%- endmacro %}\n" + CHAT_TEMPLATE + "\n").encode(),
        "jinja",
    ),
    "pkg/tok/tokenizer_config.json": (json.dumps({"chat_template": CHAT_TEMPLATE}).encode(), "tokenizer-config"),
    "pkg/assets.tar.gz": (nested_tar(), None),
    # not models: source code quoting a template, text that starts like a protocol-0 GLOBAL, plain data
    "pkg/chat_format.py": (f"import jinja2\n\ndef render():\n    return '''{CHAT_TEMPLATE}'''\n".encode(), None),
    "pkg/TAGS.txt": (b"content.data-type.text # Contains text\ncontent.language.en # English.\n", None),
    "pkg/config.json": (json.dumps({"hidden": 8}).encode(), None),
    "pkg/__init__.py": (b"VERSION = '1.0'\n", None),
}


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, (body, _fmt) in MEMBERS.items():
            archive.writestr(name, body)
    return path


@pytest.mark.parametrize(("name", "fmt"), [(name, fmt) for name, (_body, fmt) in MEMBERS.items()])
def test_sniff_decides_by_bytes(name: str, fmt: str | None) -> None:
    assert survey.sniff(name.rsplit("/", 1)[-1], MEMBERS[name][0]) == fmt


def test_extract_keeps_exactly_the_model_files(wheel: Path, tmp_path: Path) -> None:
    package = survey.Package("pkg", "1.0", "wheel", "test")
    kept = survey.extract(package, wheel, tmp_path / "cache")
    found = {entry.inner: entry.fmt for entry in kept}
    expected = {name: fmt for name, (_body, fmt) in MEMBERS.items() if fmt is not None}
    expected["pkg/assets.tar.gz!/inner/weights.bin"] = "safetensors"
    assert found == expected
    for entry in kept:  # the copies on disk are the members' bytes, under the release's own paths
        assert Path(entry.disk).read_bytes() == (MEMBERS.get(entry.inner, (safetensors(), None))[0])


def test_extraction_is_cached_and_repeatable(wheel: Path, tmp_path: Path) -> None:
    package = survey.Package("pkg", "1.0", "wheel", "test")
    first = survey.extract(package, wheel, tmp_path / "cache")
    wheel.unlink()  # the second run must come from the manifest alone (offline re-runs)
    wheel.write_bytes(b"")
    assert survey.extract(package, wheel, tmp_path / "cache") == first


def test_choose_file_takes_the_linux_cpython_311_wheel_or_the_tar_gz() -> None:
    files = [
        {"filename": "pkg-1.0-cp311-cp311-win_amd64.whl"},
        {"filename": "pkg-1.0-py3-none-any.whl"},
        {"filename": "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"},
        {"filename": "pkg-1.1-cp311-cp311-manylinux_2_17_x86_64.whl"},
        {"filename": "pkg-1.0.zip"},
        {"filename": "pkg-1.0.tar.gz"},
    ]
    wheel = survey.choose_file(survey.Package("pkg", "1.0", "wheel", ""), files)
    sdist = survey.choose_file(survey.Package("pkg", "1.0", "sdist", ""), files)
    assert wheel["filename"] == "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert sdist["filename"] == "pkg-1.0.tar.gz"
    with pytest.raises(LookupError):
        survey.choose_file(survey.Package("pkg", "2.0", "wheel", ""), files)


def test_the_pinned_list_names_at_least_80_projects() -> None:
    packages = survey.load_packages()
    assert all(p.version and p.why for p in packages)
    assert len({p.name.lower() for p in packages}) >= 80
