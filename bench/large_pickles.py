"""Large single pickles against issue 15's targets: the inputs are built here, the scans run as CLI processes.

- the opcode-dense pickle: `peers.write_dense_pickle` with 3,000,000 objects (about 26 MiB, protocol 4);
  target at least 4x faster than picklescan, peak under 150 MiB;
- a plain data pickle of about 100 MB with 5,000,000 memo entries: a lemma dictionary of 2,500,000
  distinct keys, each a list of two of 64 shared strings (every key and list is memoised), protocol 4;
- the same, gzip-compressed (level 6).
Targets for the two dictionaries: under 5 s and under 300 MiB, with no finding.

Each scan is one fresh `modelshield scan --format json` process under GNU time (wall, user + system CPU,
peak RSS); the figure kept is the fastest of `--runs`. A peer (`--peer PATH/bin/picklescan`) runs on the
same inputs in the same run.

    python bench/large_pickles.py [--runs 3] [--peer /path/to/picklescan]
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import GNU_TIME
from peers import write_dense_pickle

KEYS = 2_500_000
DENSE = 3_000_000


def write_lemmas(path: Path) -> None:
    """2,500,000 keys, each a list of two shared forms: 5,000,000 memo entries (keys and lists)."""
    forms = [f"form-{i:02d}" for i in range(64)]
    lemmas = {f"lemma/{i:08d}/headword-forms": [forms[i % 64], forms[(i * 7) % 64]] for i in range(KEYS)}
    path.write_bytes(pickle.dumps(lemmas, protocol=4))


def timed(argv: list[str]) -> tuple[float, float, float, int, str]:
    """(wall s, CPU s, peak RSS MiB, exit code, stdout) of one process under GNU time."""
    with tempfile.NamedTemporaryFile("r", prefix="bench-time-") as report:
        command = [GNU_TIME, "-f", "%U %S %M", "-o", report.name, *argv] if GNU_TIME else argv
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        fields = report.read().split()[-3:] if GNU_TIME else []
    if len(fields) == 3:
        return wall, float(fields[0]) + float(fields[1]), int(fields[2]) / 1024, done.returncode, done.stdout
    return wall, float("nan"), float("nan"), done.returncode, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modelshield", default=f"{shlex.quote(sys.executable)} -m modelshield")
    parser.add_argument("--peer", action="append", default=[], help="a peer CLI (picklescan), run with -p PATH")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelshield-large-") as tmp:
        root = Path(tmp)
        dense, lemmas, packed = root / "dense.pkl", root / "lemmas.pkl", root / "lemmas.pkl.gz"
        write_dense_pickle(dense, DENSE)
        write_lemmas(lemmas)
        packed.write_bytes(gzip.compress(lemmas.read_bytes(), compresslevel=6))
        print(f"# large pickles ({time.strftime('%Y-%m-%d %H:%M')} UTC, best of {args.runs})\n")
        print("| input | size (MB) | tool | wall (s) | CPU (s) | peak RSS (MiB) | result |")
        print("| --- | ---: | --- | ---: | ---: | ---: | --- |")
        for path in (dense, lemmas, packed):
            tools = [("modelshield", [*shlex.split(args.modelshield), "scan", "--format", "json", str(path)])]
            tools += [(Path(peer).name, [peer, "-p", str(path)]) for peer in args.peer]
            for name, argv in tools:
                runs = [timed(argv) for _ in range(args.runs)]
                wall, cpu, peak, code, out = min(runs)
                if name == "modelshield":
                    result = "clean" if code == 0 else f"exit {code}: {out.count('rule_id')} findings"
                else:
                    result = f"exit {code}"
                size = path.stat().st_size / 1e6
                print(f"| {path.name} | {size:.1f} | {name} | {wall:.2f} | {cpu:.2f} | {peak:.0f} | {result} |")


if __name__ == "__main__":
    main()
