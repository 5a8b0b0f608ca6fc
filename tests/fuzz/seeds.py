"""Seed inputs for the fuzzers: the committed fixtures, and small files of every other format built here
with each format's own writer (tar, 7z, compressed streams, GGUF, configs, templates)."""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import json
import lzma
import struct
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import lz4.frame
import py7zr

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

PICKLE = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(G?\xf0\x00\x00\x00\x00\x00\x00e.u."
EVIL_PICKLE = b"\x80\x02cos\nsystem\nX\x0b\x00\x00\x00echo pwned\x85R."

TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{{- '<|' + message['role'] + '|>' + message['content'] }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|assistant|>' }}{%- endif %}"
)
EVIL_TEMPLATE = "{% for m in messages %}{{ m.__class__.__mro__[1].__subclasses__() }}{% endfor %}"


def fixture(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def fixture_names(*suffixes: str) -> list[str]:
    """Committed fixtures with one of `suffixes` (all when none), relative to tests/fixtures."""
    found = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.stat().st_size <= 400_000)
    return [str(p.relative_to(FIXTURES)) for p in found if not suffixes or p.name.endswith(suffixes)]


def make_zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def make_tar(members: dict[str, bytes], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_7z(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(data, name)
    return buffer.getvalue()


def npy(header: str, data: bytes = b"") -> bytes:
    text = header.encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def safetensors(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def gstr(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def gguf() -> bytes:
    """A small GGUF v3 file: a string, a u32, a string array, a chat template and two tensors."""
    kvs = [
        gstr("general.architecture") + struct.pack("<I", 8) + gstr("llama"),
        gstr("llama.block_count") + struct.pack("<II", 4, 1),
        gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + gstr("<s>") + gstr("a") + gstr("b"),
        gstr("tokenizer.chat_template") + struct.pack("<I", 8) + gstr(TEMPLATE),
    ]
    infos = [
        gstr("token_embd.weight") + struct.pack("<I2QIQ", 2, 4, 2, 0, 0),
        gstr("output_norm.weight") + struct.pack("<I1QIQ", 1, 4, 0, 32),
    ]
    body = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    body += b"\0" * (-len(body) % 32)
    return body + b"\0" * 48


def tokenizer_config(template: str = TEMPLATE) -> bytes:
    config = {"bos_token": "<s>", "chat_template": template, "tokenizer_class": "PreTrainedTokenizerFast"}
    return json.dumps(config, indent=2).encode()


def hf_config() -> bytes:
    config = {
        "architectures": ["MyModel"],
        "auto_map": {"AutoConfig": "configuration_my.MyConfig", "AutoModel": "org/repo--modeling_my.MyModel"},
        "model_type": "my",
        "_name_or_path": "org/base",
        "text_config": {"model_type": "llama", "_name_or_path": "org/text"},
    }
    return json.dumps(config).encode()


def adapter_config() -> bytes:
    return json.dumps({"peft_type": "LORA", "base_model_name_or_path": "org/base", "r": 8}).encode()


def safetensors_index() -> bytes:
    return json.dumps({"metadata": {}, "weight_map": {"a": "model-1.safetensors", "b": "../x.safetensors"}}).encode()


def keras_config() -> bytes:
    layers = [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 4], "name": "in"}},
        {"module": "keras.layers", "class_name": "Dense", "config": {"units": 2, "name": "d"}},
        {
            "module": "keras.layers",
            "class_name": "Lambda",
            "config": {"name": "l", "function": {"class_name": "__lambda__", "config": {"code": "4wAAAA=="}}},
        },
    ]
    config = {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": layers}}
    return json.dumps(config).encode()


@functools.cache
def built() -> dict[str, bytes]:
    """Small files of every format the fixtures do not cover, by the name they are scanned under."""
    model = fixture("real/model.safetensors")
    return {
        "data.pkl": PICKLE,
        "evil.pkl": EVIL_PICKLE,
        "bundle.zip": make_zip({"model/data.pkl": EVIL_PICKLE, "model/version": b"3"}, zipfile.ZIP_DEFLATED),
        "nested.zip": make_zip(
            {
                "inner.zip": make_zip({"a/data.pkl": PICKLE}),
                "m.npy": npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", b"\0" * 8),
            }
        ),
        "model.tar": make_tar({"model/data.pkl": EVIL_PICKLE, "model/w.safetensors": model}),
        "model.pax.tar": make_tar({"x/data.pkl": PICKLE}, tarfile.PAX_FORMAT),
        "model.7z": make_7z({"model/data.pkl": EVIL_PICKLE, "version": b"3"}),
        "data.pkl.gz": gzip.compress(EVIL_PICKLE),
        "data.pkl.bz2": bz2.compress(EVIL_PICKLE),
        "data.pkl.xz": lzma.compress(EVIL_PICKLE),
        "data.pkl.lzma": lzma.compress(EVIL_PICKLE, format=lzma.FORMAT_ALONE),
        "data.pkl.z": zlib.compress(EVIL_PICKLE),
        "data.pkl.lz4": lz4.frame.compress(EVIL_PICKLE),
        "data.pkl.zst": zstd.compress(EVIL_PICKLE),
        "array.npy": npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", b"\0" * 32),
        "objects.npy": npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", EVIL_PICKLE),
        "small.safetensors": safetensors(
            {"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8
        ),
        "model.gguf": gguf(),
        "tokenizer_config.json": tokenizer_config(),
        "evil_tokenizer_config.json": tokenizer_config(EVIL_TEMPLATE),
        "chat_template.jinja": TEMPLATE.encode(),
        "config.json": hf_config(),
        "adapter_config.json": adapter_config(),
        "model.safetensors.index.json": safetensors_index(),
        "keras_config.json": keras_config(),
    }


def scan_name(seed: str) -> str:
    """The file name a seed is scanned under (names matter to some detectors)."""
    base = seed.rsplit("/", 1)[-1]
    if base == "keras_config.json":
        return "config.json"
    if base == "evil_tokenizer_config.json":
        return "tokenizer_config.json"
    return base


def seed_bytes(seed: str) -> bytes:
    data = built().get(seed)
    return data if data is not None else fixture(seed)


def all_seeds() -> list[str]:
    return fixture_names() + sorted(built())
