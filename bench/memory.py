"""Memory across files: does one scan keep anything that makes the next one grow?

Generates a sequence of pickles (large data dictionaries, their gzip form, opcode-dense lists, small
state dicts), scans them one after another in ONE process with `modelshield.scan_file` (as the gateway
and each `--jobs` worker do), and prints, after each file, the objects still alive (without forcing a
collection, as the CLI runs), the resident set (VmRSS) and its high-water mark (VmHWM). Each order runs in a
fresh child process, so the two orders do not share a high-water mark.

    python bench/memory.py                 # default sizes
    python bench/memory.py --scale 0.2     # smaller inputs (a smoke test)
"""

from __future__ import annotations

import argparse
import gc
import gzip
import pickle
import sys
import tempfile
import time
from pathlib import Path

from _common import STATE, in_child


def _names(count: int) -> dict[str, list[str]]:
    """A lemma dictionary: distinct keys, each value a list of shared strings (memoised by pickle)."""
    forms = [f"form{i}" for i in range(64)]
    return {f"word{i:08d}": [forms[i % 64], forms[(i * 7) % 64]] for i in range(count)}


def _dense(count: int) -> list[object]:
    """Opcode-dense: many small distinct objects (tuples, floats, strings)."""
    return [(i, float(i), f"s{i}") for i in range(count)]


def _write(path: Path, obj: object, compress: bool = False) -> None:
    data = pickle.dumps(obj, protocol=4)
    if compress:
        with gzip.open(path, "wb", compresslevel=1) as out:
            out.write(data)
    else:
        path.write_bytes(data)


def build(root: Path, scale: float) -> list[Path]:
    """The inputs, large and small mixed, in a fixed order."""
    big = int(1_000_000 * scale)
    files = [
        (root / "names.pkl", lambda: _names(big), False),
        (root / "names.pkl.gz", lambda: _names(big), True),
        (root / "dense.pkl", lambda: _dense(big), False),
        (root / "names_half.pkl", lambda: _names(big // 2), False),
    ]
    for path, make, compress in files:
        _write(path, make(), compress)
    paths = [p for p, _, _ in files]
    for index in range(8):
        small = root / f"state{index}.pkl"
        _write(small, STATE)
        paths.append(small)
    return paths


def _status() -> tuple[float, float]:
    """Current and peak resident set of this process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def run_order(paths: list[str]) -> list[tuple[str, float, int, float, float, str]]:
    """Scan `paths` in order in this process as the CLI does (no forced collection): per file its time,
    the objects still alive afterwards beyond those before the first scan (what the scan left for the
    cyclic collector, or kept), the resident set and its high-water mark."""
    import modelshield  # imported in the child, after the inputs were written

    gc.collect()
    gc.freeze()  # as the console entry does
    base = len(gc.get_objects())
    rows = []
    for path in paths:
        started = time.perf_counter()
        result = modelshield.scan_file(path)
        seconds = time.perf_counter() - started
        verdict = "clean" if not result.findings and result.error is None else "flagged"
        del result
        left = len(gc.get_objects()) - base
        rss, peak = _status()
        rows.append((Path(path).name, seconds, left, rss, peak, verdict))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor of the large inputs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelshield-memory-") as tmp:
        paths = [str(p) for p in in_child(build, Path(tmp), args.scale)]
        print(f"# modelshield memory across files ({time.strftime('%Y-%m-%d')}, Python {sys.version.split()[0]})\n")
        for label, order in (("large first", paths), ("small first", paths[::-1])):
            rows = in_child(run_order, order)
            print(f"## {label}\n")
            print("| file | time (s) | objects left alive | RSS (MiB) | peak RSS (MiB) | result |")
            print("| --- | ---: | ---: | ---: | ---: | --- |")
            for name, seconds, left, rss, peak, verdict in rows:
                print(f"| {name} | {seconds:.2f} | {left:,} | {rss:.0f} | {peak:.0f} | {verdict} |")
            print()


if __name__ == "__main__":
    main()
