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
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

CHUNK = 64 * 1024 * 1024
STATE = {f"layer{i}.weight": list(range(8)) for i in range(64)}


def _write_stored_zip(path: Path, tensor_bytes: int, members: int) -> None:
    """A PyTorch-like zip: one small data.pkl and large stored tensor members."""
    block = os.urandom(CHUNK)
    per_member = max(1, tensor_bytes // members)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(STATE, protocol=2))
        for index in range(members):
            with zf.open(f"archive/data/{index}", "w", force_zip64=True) as out:
                left = per_member
                while left > 0:
                    out.write(block[: min(left, CHUNK)])
                    left -= CHUNK


def _write_folder(path: Path, count: int) -> None:
    path.mkdir()
    payload = pickle.dumps(STATE, protocol=4)
    for index in range(count):
        (path / f"model_{index}.pkl").write_bytes(payload)


def _write_gzip(path: Path, size: int) -> None:
    """A large gzip-compressed pickle of bytes: the stream is decoded once, never held whole."""
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(pickle.dumps(os.urandom(size), protocol=4))


def measure(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} exited {code}")
    return elapsed, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="size of the large zip checkpoint in GiB")
    parser.add_argument("--runs", type=int, default=5, help="runs per input (median reported)")
    args = parser.parse_args()
    scan = [sys.executable, "-m", "modelshield", "scan", "--format", "json"]
    with tempfile.TemporaryDirectory(prefix="modelshield-bench-") as tmp:
        root = Path(tmp)
        size = int(args.gb * 1024**3)
        cases: list[tuple[str, Path, Callable[[Path], None], list[str]]] = [
            ("zip checkpoint, 64 MiB", root / "small.pt", lambda p: _write_stored_zip(p, 64 * 1024**2, 16), []),
            (f"zip checkpoint, {args.gb:g} GiB", root / "large.pt", lambda p: _write_stored_zip(p, size, 64), []),
            ("gzip stream, 256 MiB decoded", root / "big.pkl.gz", lambda p: _write_gzip(p, 256 * 1024**2), []),
            ("folder of 300 small pickles, 1 job", root / "many", lambda p: _write_folder(p, 300), ["-j", "1"]),
            ("folder of 300 small pickles, 2 jobs", root / "many", lambda p: None, ["-j", "2"]),
        ]
        print(f"# modelshield foundation benchmark ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
              f"Python {sys.version.split()[0]})\n")
        print("| input | on disk | median time (s) | peak RSS (MiB) |")
        print("| --- | ---: | ---: | ---: |")
        for label, path, make, extra in cases:
            if not path.exists():
                make(path)
            disk = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
            runs = [measure([*scan, *extra, str(path)]) for _ in range(args.runs)]
            seconds = statistics.median(r[0] for r in runs)
            peak = max(r[1] for r in runs) / 1024**2
            print(f"| {label} | {disk / 1024**2:,.0f} MiB | {seconds:.3f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
