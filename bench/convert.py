"""Conversion benchmark: a 1 GiB PyTorch checkpoint to safetensors, against a plain disk copy.

The checkpoint is assembled as torch.save lays it out (a small data.pkl and stored storage records):
eight float32 tensors of 128 MiB, all contiguous as in a state dict, and then the same with one of
them saved transposed (a non-contiguous view, materialised from a memory map of its storage). Each
command runs in a fresh process; the table gives median wall time and peak RSS.

    python bench/convert.py              # 1 GiB, 3 runs
    python bench/convert.py --mib 256 --runs 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

from _common import measure

ROOT = Path(__file__).resolve().parents[1]


def _u(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _i(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _tensor(key: str, rows: int, cols: int, transposed: bool) -> bytes:
    glob = b"ctorch\nFloatStorage\n"
    storage = b"(" + _u("storage") + glob + _u(key) + _u("cpu") + _i(rows * cols) + b"tQ"
    size, stride = ((cols, rows), (1, cols)) if transposed else ((rows, cols), (cols, 1))
    shape = _i(size[0]) + _i(size[1]) + b"\x86" + _i(stride[0]) + _i(stride[1]) + b"\x86"
    hooks = b"ccollections\nOrderedDict\n)R"
    return b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + _i(0) + shape + b"\x89" + hooks + b"tR"


def build(path: Path, total: int, transposed: bool, tensors: int = 8) -> None:
    per = total // tensors
    cols = 1024
    rows = per // 4 // cols
    entries = (_u(f"layer{i}.weight") + _tensor(str(i), rows, cols, transposed and i == 3) for i in range(tensors))
    pickle = b"\x80\x02}(" + b"".join(entries)
    block = os.urandom(16 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.writestr("archive/data.pkl", pickle + b"u.")
        for index in range(tensors):
            with archive.open(f"archive/data/{index}", "w", force_zip64=True) as out:
                left = rows * cols * 4
                while left > 0:
                    out.write(block[: min(left, len(block))])
                    left -= len(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for transposed in (False, True):
        with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
            source = Path(tmp) / "pytorch_model.bin"
            build(source, args.mib << 20, transposed)
            target = Path(tmp) / "model.safetensors"
            commands = {
                "modelshield convert": [sys.executable, "-m", "modelshield", "convert", str(source), "-o", str(target)],
                "cp (disk copy)": [shutil.which("cp") or "cp", str(source), str(target)],
            }
            kind = "one tensor transposed" if transposed else "contiguous tensors"
            print(f"\n| {source.stat().st_size / (1 << 20):.0f} MiB checkpoint, {kind} | wall | peak RSS |")
            print("| --- | ---: | ---: |")
            for label, argv in commands.items():
                samples = []
                for _ in range(args.runs):
                    target.unlink(missing_ok=True)
                    samples.append(measure(argv, env=env))
                    if samples[-1][2] != 0:
                        raise SystemExit(f"{label} exited {samples[-1][2]}")
                wall = statistics.median(s[0] for s in samples)
                rss = statistics.median(s[1] for s in samples)
                print(f"| {label} | {wall:.2f} s | {rss / (1 << 20):.0f} MiB |")


if __name__ == "__main__":
    main()
