"""Prove that each torch loader-path fixture does what its test says, in the real loader (never in CI).

Each case loads one file of tests/fixtures/torch_paths/ (written by scripts/make_torch_fixtures.py) with
the loader the user would call, in a throwaway directory, in a separate interpreter of the torch
environment, and checks whether the payload's sentinel file (`sentinel_<fixture>`) appeared, or that
the loader refused the file. Run it only in a throwaway environment:

    python scripts/prove_torch_paths.py [--python /work/envs/torch/bin/python]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "torch_paths"

PACKAGE = "import torch.package as p; p.PackageImporter('{file}').load_pickle('model', 'model.pkl')"
#: (fixture, loader call, what must happen: "fires" = the sentinel appears, "refused" = the loader raises)
CASES = [
    ("pkg_init_runs_command.pt", PACKAGE, "fires"),
    ("pkg_helper_in_setstate.pt", PACKAGE, "fires"),
    ("pkg_star_import.pt", PACKAGE, "fires"),
    ("pkg_hidden_import.pt", PACKAGE, "fires"),
    ("pkg_torchscript_saves_at_load.pt", PACKAGE, "fires"),
    ("pkg_benign.pt", PACKAGE, "quiet"),
    ("pkg_torchscript.pt", PACKAGE, "quiet"),
    ("jit_saves_at_load.pt", "import torch; torch.jit.load('{file}')", "fires"),
    ("jit_saves_at_load.pt", "import torch; torch.load('{file}', weights_only=False)", "fires"),
    ("jit_saves_at_load.pt", "import torch; torch.load('{file}')", "refused"),
    ("torch_save_reduce.pt", "import torch; torch.load('{file}', weights_only=False)", "fires"),
    ("torch_save_reduce.pt", "import torch; torch.load('{file}')", "refused"),
    ("geometry_size_past_storage.pt", "import torch; torch.load('{file}')", "refused"),
    ("geometry_offset_past_storage.pt", "import torch; torch.load('{file}', weights_only=False)", "refused"),
    ("geometry_size_past_storage.pt", "import torch; torch.load('{file}', mmap=True)", "refused"),
]


def run(python: str, fixture: str, call: str) -> tuple[bool, bool, str]:
    """(loader raised, sentinel appeared, last line of stderr), in a fresh directory."""
    with tempfile.TemporaryDirectory(prefix="modelshield-prove-") as tmp:
        shutil.copy(FIXTURES / fixture, Path(tmp) / fixture)
        done = subprocess.run(
            [python, "-c", call.format(file=fixture)], cwd=tmp, capture_output=True, text=True, timeout=300, check=False
        )
        fired = any(p.name.startswith("sentinel_") for p in Path(tmp).iterdir())
        lines = done.stderr.strip().splitlines()
        return done.returncode != 0, fired, lines[-1] if lines else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="/work/envs/torch/bin/python", help="interpreter with torch installed")
    python = parser.parse_args().python
    failures = 0
    for fixture, call, expected in CASES:
        raised, fired, error = run(python, fixture, call)
        actual = "fires" if fired else "refused" if raised else "quiet"
        ok = actual == expected
        failures += not ok
        loader = call.split("; ", 1)[-1].format(file="")
        print(
            f"{'ok  ' if ok else 'FAIL'} {fixture:36s} {loader:60s} {actual}{'' if ok else f' (expected {expected})'}"
        )
        if raised and not ok:
            print(f"     {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
