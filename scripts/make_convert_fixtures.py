"""Write the PyTorch checkpoints that tests/convert/ converts, and the digests torch itself reads back.

Run with torch installed (CPU wheel), from the repository root:
    python scripts/make_convert_fixtures.py
It writes tests/fixtures/convert/*.pt and expected.json: for every tensor, its dtype, shape and the
SHA-256 of the bytes of `torch.load(weights_only=True)[name].contiguous()`, which the tests compare with
what `modelshield convert` wrote (no torch needed there).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import torch

torch.manual_seed(0)  # the unseeded tensors below are the same on every run

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "convert"
DTYPES = [
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
    torch.float8_e4m3fnuz,
    torch.float8_e5m2fnuz,
    torch.complex64,
    torch.uint16,
    torch.uint32,
    torch.uint64,
]


def values(dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=generator) > 0.5
    if dtype.is_floating_point or dtype.is_complex:
        base = torch.randn(shape, generator=generator, dtype=torch.complex64 if dtype.is_complex else torch.float32)
        return (base * 4).to(dtype)
    return torch.randint(0, 120, shape, generator=generator, dtype=torch.int64).to(dtype)


def digest(tensor: torch.Tensor) -> str:
    flat = tensor.contiguous().reshape(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"").hexdigest()


def save(name: str, obj: object, legacy: bool = False) -> None:
    torch.save(obj, OUT / name, _use_new_zipfile_serialization=not legacy)


def big_endian(source: str, target: str) -> None:
    """A checkpoint as a big-endian machine writes it: byteorder 'big' and every storage element swapped."""
    loaded = torch.load(OUT / source, weights_only=True)
    with zipfile.ZipFile(OUT / source) as archive:
        items = {info.filename: archive.read(info.filename) for info in archive.infolist()}
    prefix = next(n for n in items if n.endswith("/data.pkl"))[: -len("data.pkl")]
    itemsizes = {}
    for tensor in loaded.values():
        itemsizes[str(tensor.untyped_storage().data_ptr())] = tensor.element_size()
    # every tensor here has its own storage, in the order torch wrote them (data/0, data/1, ...)
    for index, tensor in enumerate(loaded.values()):
        key = f"{prefix}data/{index}"
        raw = bytearray(items[key])
        size = tensor.element_size() // (2 if tensor.is_complex() else 1)
        for start in range(0, len(raw), size):
            raw[start : start + size] = raw[start : start + size][::-1]
        items[key] = bytes(raw)
    items[f"{prefix}byteorder"] = b"big"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as out:
        for name, data in items.items():
            out.writestr(name, data)
    (OUT / target).write_bytes(buffer.getvalue())


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    save("dtypes.pt", {f"t.{str(d).removeprefix('torch.')}": values(d, (3, 5), i) for i, d in enumerate(DTYPES)})
    base = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    tied = torch.randn(4, 4)
    layouts = {
        "transposed": base.t(),
        "sliced": base[1:5, 2::3],
        "offset_row": base[3],
        "expanded": torch.arange(3.0).expand(4, 3),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "channels_last": torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
        "embed.weight": tied,
        "lm_head.weight": tied,
        "whole": base,
        "param": torch.nn.Parameter(torch.randn(3)),
    }
    save("layouts.pt", layouts)
    save("legacy_layouts.pt", layouts, legacy=True)
    classic = [d for d in DTYPES[:10]] + [torch.complex64]  # the dtypes with a typed storage class
    save(
        "legacy_dtypes.pt",
        {f"t.{str(d).removeprefix('torch.')}": values(d, (2, 3), i) for i, d in enumerate(classic)},
        legacy=True,
    )
    save(
        "training.pt",
        {
            "epoch": 7,
            "best_score": 0.91,
            "arch": "tiny-mlp",
            "state_dict": torch.nn.Sequential(
                torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)
            ).state_dict(),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1, 2, 3]}]},
        },
    )
    save(
        "little.pt",
        {
            "w": values(torch.float32, (4, 3), 1),
            "h": values(torch.float16, (5,), 2),
            "c": values(torch.complex64, (2, 2), 3),
            "i": values(torch.int64, (3,), 4),
        },
    )
    big_endian("little.pt", "big_endian.pt")
    expected = {}
    sharded = OUT / "sharded"
    sharded.mkdir(exist_ok=True)
    shard_tensors = [
        {"a.weight": values(torch.float16, (4, 4), 20), "a.bias": values(torch.float16, (4,), 21)},
        {"b.weight": values(torch.bfloat16, (3, 4), 22).t()},
    ]
    weight_map = {}
    for i, part in enumerate(shard_tensors, 1):
        shard = f"pytorch_model-{i:05d}-of-{len(shard_tensors):05d}.bin"
        torch.save(part, sharded / shard)
        weight_map.update({k: shard for k in part})
    (sharded / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}, indent=2)
    )
    names = (
        "dtypes.pt",
        "layouts.pt",
        "training.pt",
        "little.pt",
        "big_endian.pt",
        "legacy_layouts.pt",
        "legacy_dtypes.pt",
    )
    for name in names:
        loaded = torch.load(OUT / name, weights_only=True)
        tensors = loaded["state_dict"] if name == "training.pt" else loaded
        expected[name] = {
            key: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "sha256": digest(t)}
            for key, t in tensors.items()
        }
    expected["sharded"] = {}
    for part in sorted(sharded.glob("*.bin")):
        expected["sharded"].update(
            {
                k: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "sha256": digest(t)}
                for k, t in torch.load(part, weights_only=True).items()
            }
        )
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
