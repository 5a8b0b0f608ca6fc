"""Foundation benchmark: scan cost follows what a format needs, not file size.

Generates its inputs in a temporary folder (removed afterwards), runs `modelshield scan` on each in a
fresh process several times, and prints a Markdown table of median wall time and peak memory (RSS).

    python bench/run.py                 # default sizes (about 4.5 GB of temporary files)
    python bench/run.py --gb 1 --runs 3 # smaller
"""

from __future__ import annotations

import argparse
import gzip
import os
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import in_child, measure, write_folder, write_stored_zip
from peers import MODELSHIELD, VENVS, install


def _write_gzip(path: Path, size: int) -> None:
    """A large gzip-compressed pickle of bytes: the stream is decoded once, never held whole."""
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(pickle.dumps(os.urandom(size), protocol=4))


def _write_trailing(path: Path, size: int) -> None:
    """A small pickle followed by `size` bytes of zeros (a sparse file): the trailing-data search."""
    with open(path, "wb") as out:
        out.write(pickle.dumps({"weights": [0.5] * 16}, protocol=4))
        out.truncate(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="size of the large zip checkpoint in GiB")
    parser.add_argument("--runs", type=int, default=5, help="runs per input (median reported)")
    args = parser.parse_args()
    install(MODELSHIELD)
    scan = [str(VENVS / "modelshield" / "bin" / "modelshield"), "scan", "--format", "json"]
    with tempfile.TemporaryDirectory(prefix="modelshield-bench-") as tmp:
        root = Path(tmp)
        size = int(args.gb * 1024**3)
        cases: list[tuple[str, Path, Callable[[Path], None], list[str]]] = [
            ("zip checkpoint, 64 MiB", root / "small.pt", lambda p: write_stored_zip(p, 64 * 1024**2, 16), []),
            (f"zip checkpoint, {args.gb:g} GiB", root / "large.pt", lambda p: write_stored_zip(p, size, 64), []),
            (f"pickle + {args.gb:g} GiB trailing zeros", root / "trailing.pkl", lambda p: _write_trailing(p, size), []),
            ("gzip stream, 256 MiB decoded", root / "big.pkl.gz", lambda p: _write_gzip(p, 256 * 1024**2), []),
            ("folder of 300 small pickles, 1 job", root / "many", lambda p: write_folder(p, 300), ["-j", "1"]),
            ("folder of 300 small pickles, 2 jobs", root / "many", lambda p: None, ["-j", "2"]),
        ]
        print(
            f"# modelshield foundation benchmark ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
            f"Python {sys.version.split()[0]})\n"
        )
        print("| input | on disk | median time (s) | peak RSS (MiB) |")
        print("| --- | ---: | ---: | ---: |")
        for label, path, make, extra in cases:
            if not path.exists():
                in_child(make, path)
            disk = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
            runs = [measure([*scan, *extra, str(path)]) for _ in range(args.runs)]
            failed = {code for _, _, code in runs} - {0, 1}
            if failed:
                raise SystemExit(f"modelshield exited {failed.pop()} on {path}")
            seconds = statistics.median(r[0] for r in runs)
            peak = max(r[1] for r in runs) / 1024**2
            print(f"| {label} | {disk / 1024**2:,.0f} MiB | {seconds:.3f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
