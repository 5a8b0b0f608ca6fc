"""`modelshield convert`: PyTorch checkpoints, NumPy and joblib arrays to safetensors, without torch and
without running any pickle.

The file is first scanned: a checkpoint with any finding at or above the failing severity is refused
with the findings, and nothing is written. Then its pickle is read strictly (`rebuild`: only the calls a
tensor rebuild needs), the tensors are located in the archive's storages, and each is copied into the
safetensors file straight from the checkpoint's bytes (memory-mapped, in bounded chunks), so memory
stays flat whatever the size. The output is checked by modelshield's own safetensors analyser.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

from modelshield.convert.rebuild import Refused, Storage, Tensor, read, state_dict
from modelshield.convert.writer import TensorPlan, plan, write, zip_records
from modelshield.core.findings import Finding
from modelshield.core.policy import Policy

__all__ = ["Conversion", "ConversionInputError", "ConversionRefused", "convert", "convert_sharded"]

_PICKLE_LIMIT = 256 << 20


class ConversionInputError(ValueError):
    """The input is not something convert can read (one line, exit 2)."""


class ConversionRefused(Exception):
    """The checkpoint is unsafe or asks for more than tensors (exit 1): nothing was written."""

    def __init__(self, reason: str, findings: list[Finding] | None = None) -> None:
        super().__init__(reason)
        self.findings = findings or []


@dataclass
class Conversion:
    """What was written: the output file and each tensor's name, dtype and shape."""

    output: str
    tensors: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)
    bytes_written: int = 0
    #: entries of the checkpoint that were left out (plain data beside the state dict)
    skipped: list[str] = field(default_factory=list)


def _archive_pickle(archive: zipfile.ZipFile) -> tuple[str, bytes, str]:
    """The record prefix (`archive/`), the pickle, and the storages' byte order."""
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise ConversionInputError("not a PyTorch zip checkpoint (no single <name>/data.pkl record)")
    prefix = pickles[0][: -len("data.pkl")]
    info = archive.getinfo(pickles[0])
    if info.file_size > _PICKLE_LIMIT:
        raise ConversionInputError(f"the checkpoint's pickle is {info.file_size} bytes, over {_PICKLE_LIMIT}")
    byteorder = "little"
    if prefix + "byteorder" in archive.namelist():
        byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise ConversionInputError(f"unknown storage byte order {byteorder!r}")
    return prefix, archive.read(pickles[0]), byteorder


def _scan(path: str, policy: Policy) -> list[Finding]:
    """The scanner's findings on the checkpoint; raises ConversionRefused on any at the failing severity."""
    from modelshield.api import scan_file  # noqa: PLC0415 - the engine and every handler

    result = scan_file(path, policy)
    if result.error:
        raise ConversionInputError(result.error)
    failing = [f for f in result.findings if f.level >= policy.fail_on]
    if failing:
        raise ConversionRefused(f"{path} has {len(failing)} finding(s) at or above {policy.fail_on.label}", failing)
    return result.findings


def _verify(path: str, policy: Policy) -> None:
    from modelshield.api import scan_file  # noqa: PLC0415

    result = scan_file(path, policy)
    problems = [f for f in result.findings if f.level >= policy.fail_on] if result.format == "safetensors" else []
    if result.format != "safetensors" or problems:
        raise ConversionRefused(f"the written file did not pass the safetensors analyser: {problems}", problems)


#: The first pickle of a legacy (pre-1.6, `_use_new_zipfile_serialization=False`) checkpoint.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


def _zip_plans(archive: zipfile.ZipFile, path: str) -> tuple[list[TensorPlan], list[str]]:
    prefix, data, byteorder = _archive_pickle(archive)
    tensors, skipped = state_dict(read(data))
    return plan(path, zip_records(archive, prefix), tensors, byteorder == "big"), skipped


def _legacy_plans(path: str) -> tuple[list[TensorPlan], list[str]]:
    """The legacy format: pickles of the magic number, the protocol, the system info, the object and the
    storage keys, then each storage as an 8-byte element count and its raw elements, in key order."""
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        try:
            magic, protocol, info = read(stream), read(stream), read(stream)
        except Refused:
            raise ConversionInputError(f"{path}: not a PyTorch checkpoint (neither zip nor legacy format)") from None
        if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL or not isinstance(info, dict):
            raise ConversionInputError(f"{path}: not a PyTorch checkpoint (neither zip nor legacy format)")
        little = info.get("little_endian", True) is not False
        value = read(stream)
        tensors, skipped = state_dict(value)
        keys = read(stream)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise Refused("the legacy checkpoint's storage key list is malformed")
        itemsizes = {s.key: s.dtype.itemsize if s.dtype else 1 for s in _storages(value)}
        records: dict[str, tuple[int, int] | None] = {}
        position = stream.tell()
        for key in keys:
            head = stream.read(8)
            if len(head) != 8:
                raise Refused(f"the legacy checkpoint ends before storage {key}")
            count = int.from_bytes(head, "little" if little else "big")
            length = count * itemsizes.get(key, 1)
            if key not in itemsizes:
                raise Refused(f"storage {key} is used by no tensor, so its size in bytes is unknown")
            if position + 8 + length > size:
                raise Refused(f"storage {key} runs past the end of the file")
            records[key] = (position + 8, length)
            position += 8 + length
            stream.seek(position)
    return plan(path, records, tensors, not little), skipped


def _storages(value: object) -> Iterator[Storage]:
    """Every storage the checkpoint's tensors use, including those of entries left out."""
    if isinstance(value, Tensor):
        yield value.storage
    elif isinstance(value, dict):
        for item in value.values():
            yield from _storages(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _storages(item)


def _plans(path: str, stack: ExitStack) -> tuple[list[TensorPlan], list[str]]:
    """Tensor plans by what the file is: an `.npy`, a zip (an `.npz`, or a PyTorch checkpoint), or a
    legacy PyTorch checkpoint."""
    from modelshield.convert import joblib_files, numpy_files  # noqa: PLC0415

    if numpy_files.is_npy(path):
        return numpy_files.npy_plans(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if names and all(n.endswith(".npy") for n in names):
                return numpy_files.npz_plans(archive, path, stack)
            return _zip_plans(archive, path)
    if joblib_files.is_compressed(path) or not _is_legacy(path):
        return joblib_files.joblib_plans(path, stack)
    return _legacy_plans(path)


def _is_legacy(path: str) -> bool:
    """Whether the file starts with the pickled magic number of torch's legacy format."""
    with open(path, "rb") as stream:
        try:
            return bool(read(stream) == LEGACY_MAGIC)
        except Refused:
            return False


def convert(source: str, output: str, policy: Policy | None = None) -> Conversion:
    """Convert the checkpoint `source` to the safetensors file `output` (written atomically)."""
    policy = policy or Policy()
    if not os.path.isfile(source):
        raise ConversionInputError(f"no such file: {source}")
    findings = _scan(source, policy)
    try:
        with ExitStack() as stack:
            return _write(source, output, policy, stack)
    except Refused as exc:
        # The scanner's findings on what the strict reader refused (an unknown class, say) explain it.
        named = [f for f in findings if exc.name and exc.name in f.evidence]
        raise ConversionRefused(str(exc), named) from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ConversionInputError(f"cannot convert {source}: {getattr(exc, 'strerror', None) or exc}") from None


def _write(source: str, output: str, policy: Policy, stack: ExitStack) -> Conversion:
    plans, skipped = _plans(source, stack)
    folder = os.path.dirname(os.path.abspath(output))
    handle, temporary = tempfile.mkstemp(prefix=".modelshield-", suffix=".safetensors", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            written = write(out, plans, {"format": "pt"})
        _verify(temporary, policy)
        os.replace(temporary, output)
    except BaseException:
        os.unlink(temporary)
        raise
    tensors = [(p.name, p.tensor.dtype.name, p.tensor.size) for p in plans]
    return Conversion(output, tensors, written, skipped)


#: The index transformers writes beside sharded PyTorch checkpoints, and the one it reads beside safetensors.
TORCH_INDEX = "pytorch_model.bin.index.json"
SAFETENSORS_INDEX = "model.safetensors.index.json"
_INDEX_LIMIT = 64 << 20


def _shards(index_path: str) -> tuple[dict[str, str], dict[str, object]]:
    """The index's weight map (tensor name -> shard file, each inside the index's folder) and metadata."""
    try:
        if os.path.getsize(index_path) > _INDEX_LIMIT:
            raise ConversionInputError(f"{index_path} is larger than {_INDEX_LIMIT} bytes")
        with open(index_path, "rb") as handle:
            index = json.loads(handle.read())
    except (OSError, ValueError) as exc:
        raise ConversionInputError(f"cannot read {index_path}: {exc}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ConversionInputError(f"{index_path} has no weight_map of tensor names to shard files")
    for shard in set(weight_map.values()):
        if os.path.basename(shard) != shard or shard in (".", ".."):
            raise ConversionRefused(f"{index_path} names shard {shard!r} outside its folder")
    metadata = index.get("metadata")
    return weight_map, metadata if isinstance(metadata, dict) else {}


def convert_sharded(source: str, output_dir: str, policy: Policy | None = None) -> list[Conversion]:
    """Convert a sharded checkpoint (a folder with `pytorch_model.bin.index.json`, or that index) into
    `output_dir` as `model-0000i-of-0000n.safetensors` with `model.safetensors.index.json`. Every shard
    is converted before any file takes its final name, so a refusal leaves nothing behind."""
    policy = policy or Policy()
    index_path = os.path.join(source, TORCH_INDEX) if os.path.isdir(source) else source
    if not os.path.isfile(index_path):
        raise ConversionInputError(f"no {TORCH_INDEX} in {source}")
    folder = os.path.dirname(os.path.abspath(index_path))
    weight_map, _ = _shards(index_path)
    shards = sorted(set(weight_map.values()))
    os.makedirs(output_dir, exist_ok=True)
    names = {s: f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i, s in enumerate(shards, 1)}
    staged: list[tuple[str, str]] = []
    conversions = []
    try:
        for shard in shards:
            temporary = os.path.join(output_dir, f".modelshield-{names[shard]}")
            conversion = convert(os.path.join(folder, shard), temporary, policy)
            conversion.output = os.path.join(output_dir, names[shard])
            staged.append((temporary, conversion.output))
            conversions.append(conversion)
        written = {name: names[shard] for c, shard in zip(conversions, shards, strict=True) for name, *_ in c.tensors}
        missing = sorted(set(weight_map) - set(written))
        if missing:
            raise ConversionRefused(f"the index names tensors no shard holds: {', '.join(missing[:5])}")
        total = sum(c.bytes_written for c in conversions)
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(written.items()))}
        for temporary, final in staged:
            os.replace(temporary, final)
        with open(os.path.join(output_dir, SAFETENSORS_INDEX), "w", encoding="utf-8") as out:
            json.dump(index, out, indent=2)
            out.write("\n")
    except BaseException:
        for temporary, _final in staged:
            if os.path.exists(temporary):
                os.unlink(temporary)
        raise
    return conversions
