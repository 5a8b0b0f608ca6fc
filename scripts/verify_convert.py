"""Check `modelshield convert` against torch on real checkpoints: every converted tensor must equal, byte
for byte, what `torch.load(weights_only=True)` returns. Run in a throwaway environment with torch and
safetensors installed (never in CI):

    python scripts/verify_convert.py FILE_OR_FOLDER...

modelshield runs as `$MODELSHIELD` (a command line, default `modelshield`), so torch's environment needs
no modelshield of its own.

Prints one line per checkpoint (equal, refused with the reason, or DIFFERENT) and a summary; exits 1 if
any converted tensor differs from torch's.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

# The converter's own choice of state-dict keys (rebuild.py needs only the standard library), so that
# this check expects exactly the tensors `convert` is meant to keep.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from modelshield.convert.rebuild import STATE_KEYS

SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def flatten(value: object, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if isinstance(value, torch.Tensor):
        out[prefix] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def expected(loaded: object) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict):
        for key in STATE_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                return flatten(inner)
    return flatten(loaded)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def check(path: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model.safetensors"
        command = shlex.split(os.environ.get("MODELSHIELD", "modelshield"))
        run = subprocess.run(
            [*command, "convert", str(path), "-o", str(target)], capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            return f"refused ({run.returncode}): {run.stderr.strip().splitlines()[0][:160]}"
        mine = load_file(str(target))
        theirs = expected(torch.load(path, weights_only=True, map_location="cpu"))
        if set(mine) != set(theirs):
            return f"DIFFERENT names: {sorted(set(mine) ^ set(theirs))[:5]}"
        bad = [name for name in theirs if not same(theirs[name], mine[name])]
        return f"DIFFERENT tensors: {bad[:5]}" if bad else f"equal ({len(mine)} tensors)"


def main() -> int:
    files = []
    for arg in sys.argv[1:]:
        root = Path(arg)
        files += sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES) if root.is_dir() else [root]
    results = {}
    for path in files:
        results[path] = check(path)
        print(f"{results[path]:<70}  {path}")
    equal = sum(r.startswith("equal") for r in results.values())
    different = sum(r.startswith("DIFFERENT") for r in results.values())
    refused = len(results) - equal - different
    print(f"\n{len(results)} checkpoints: {equal} equal, {different} different, {refused} refused")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
