"""YAML bombs: every hostile shape is answered within bounds, with a finding (issue 14: a 100 MB YAML bomb
in under 2 s and 256 MiB).

Writes each input into a temporary folder, runs `modelshield scan --format json` on it in a fresh
process (this interpreter, the checkout's `src`), and prints a Markdown table of median wall time, peak
RSS and the rules reported.

    python bench/yaml_bombs.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import scan_case

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
#: Just under the reader's byte bound (`YamlLimits.max_bytes`, 16 MiB): what an attacker sends to be parsed.
UNDER = 16 * MiB - 4096


def laughs(levels: int = 9) -> bytes:
    lines = [b"l0: &l0 [" + b", ".join([b"lol"] * 9) + b"]"]
    lines += [b"l%d: &l%d [" % (i, i) + b", ".join([b"*l%d" % (i - 1)] * 9) + b"]" for i in range(1, levels + 1)]
    return b"\n".join(lines) + b"\n"


def fill(path: Path, head: bytes, line: bytes, size: int, tail: bytes = b"") -> None:
    with open(path, "wb") as out:
        out.write(head)
        out.write(line * ((size - len(head) - len(tail)) // len(line)))
        out.write(tail)


def interpolations(levels: int) -> bytes:
    """`b: ${a}${a}${a}${a}`, `c: ${b}...`: each level four copies of the one before."""
    return b"a: lol\n" + b"".join(b"%c: " % (98 + i) + b"${%c}" % (97 + i) * 4 + b"\n" for i in range(levels))


PAYLOAD = b'pwn: !!python/object/apply:os.system ["id"]\n'

CASES: list[tuple[str, str, Callable[[Path], None]]] = [
    ("100 MB alias bomb (billion laughs + 100 MB of aliases)", "laughs100.yaml",
     lambda p: fill(p, laughs() + b"more:\n", b"  - *l9\n", 100 * MiB)),
    ("100 MB nesting `[[[...` with a payload after it", "deep100.yaml",
     lambda p: fill(p, b"a: ", b"[", 100 * MiB - 64, b"\n" + PAYLOAD)),
    ("16 MiB alias bomb (parsed: the expansion bound)", "laughs16.yaml",
     lambda p: fill(p, laughs() + b"more:\n", b"  - *l9\n", UNDER)),
    ("16 MiB flat list of 4 M scalars (parsed: the node bound)", "flat16.yaml",
     lambda p: fill(p, PAYLOAD + b"x:\n", b"- a\n", UNDER)),
    ("16 MiB nesting with a payload after it (parsed: the depth bound)", "deep16.yaml",
     lambda p: fill(p, b"a: ", b"[", UNDER - 64, b"\n" + PAYLOAD)),
    ("16 MiB single scalar after a payload", "scalar16.yaml",
     lambda p: fill(p, PAYLOAD + b"b: ", b"x", UNDER, b"\n")),
    ("16 MiB of `<<` merges (parsed: the expansion bound)", "merge16.yaml",
     lambda p: fill(p, b"a: &a {k0: 0, k1: 1, k2: 2, k3: 3}\n_target_: x.Y\nmore:\n", b"  - {<<: [*a, *a]}\n", UNDER)),
    ("OmegaConf interpolation bomb (4^15 copies)", "interp.yaml",
     lambda p: p.write_bytes(interpolations(15))),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per input (median reported)")
    parser.add_argument("--python", default=sys.executable, help="interpreter with modelshield's dependencies")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    print(
        f"# YAML bombs ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python {sys.version.split()[0]})\n\n"
        "| input | size | median s | peak RSS MiB | exit | rules |\n| --- | ---: | ---: | ---: | ---: | --- |"
    )
    with tempfile.TemporaryDirectory(prefix="modelshield-yaml-bench-") as tmp:
        for label, name, write in CASES:
            path = Path(tmp) / name
            write(path)
            seconds, rss, code, rules = scan_case(args.python, path, env, args.runs, 120)
            size = path.stat().st_size / MiB
            print(f"| {label} | {size:.0f} MiB | {seconds:.2f} | {rss:.0f} | {code} | {', '.join(rules)} |")
            path.unlink()


if __name__ == "__main__":
    main()
