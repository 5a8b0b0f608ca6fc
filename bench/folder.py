"""Folder throughput: one scan of a folder of real published model files, and the large single pickles.

The folder is the false-alarm survey's corpus (`bench/survey.py --no-scan` fills its cache): every kept
model file, hard-linked under its release into one temporary folder. Each command runs in its own
session; the peak RSS of the whole process tree (the CLI and its `--jobs` workers, summed) is sampled
from /proc every 20 ms, next to GNU time's `%M` (the largest single process). Per-file times come from
modelshield's JSON report (`seconds`). With `-j 1` the files are also given in reverse order, to show
that what one file leaves behind does not grow the next ones.

    python bench/folder.py                                  # modelshield from this work tree
    python bench/folder.py --peer /path/to/venv/bin/picklescan --large /tmp/large
    python bench/folder.py --modelshield "python -m modelshield" --runs 3
    python bench/folder.py --cases j2 --runs 3                  # only `-j 2`; CPU and load average are recorded
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import GNU_TIME

CACHE = Path.home() / ".cache" / "modelshield-survey"


def build_folder(cache: Path, target: Path) -> list[Path]:
    """Hard links (copies across file systems) to every model file the survey kept, in a fixed order."""
    files: list[Path] = []
    for manifest in sorted((cache / "extract").glob("*/manifest.json")):
        release = manifest.parent.name
        for entry in json.loads(manifest.read_text())["files"]:
            source = Path(entry["disk"])
            link = target / release / entry["inner"].replace("/", "__")
            link.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, link)
            except OSError:
                link.write_bytes(source.read_bytes())
            files.append(link)
    return files


def _tree_rss(session: int) -> int:
    """Summed VmRSS (bytes) of every process in the session `session`."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) != session:  # field 6 of stat: the session id
                continue
            for line in Path(entry.path, "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return total


def run(argv: list[str], output: Path | None = None) -> dict[str, float]:
    """Wall time, peak tree RSS and peak single-process RSS (GNU time) of one command."""
    report = tempfile.NamedTemporaryFile(prefix="bench-rss-", delete=False)  # noqa: SIM115 - removed below
    report.close()
    command = [GNU_TIME, "-f", "%M %U %S", "-o", report.name, *argv] if GNU_TIME else argv
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    single = Path(report.name).read_text().split()
    os.unlink(report.name)
    fields = single[-3:] if len(single) >= 3 else ["nan"] * 3
    try:
        single_mib, cpu = int(fields[0]) / 1024, float(fields[1]) + float(fields[2])
    except ValueError:
        single_mib = cpu = float("nan")
    return {"wall": wall, "cpu": cpu, "tree_mib": peak[0] / 1024**2, "single_mib": single_mib, "code": code}


def slowest(report: Path, count: int = 10) -> list[tuple[float, str, int]]:
    files = json.loads(report.read_text())["files"]
    ranked = sorted(((f.get("seconds") or 0.0, f["path"], f.get("size") or 0) for f in files), reverse=True)
    return ranked[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE, help="the survey cache (bench/survey.py --no-scan)")
    parser.add_argument("--modelshield", default=f"{shlex.quote(sys.executable)} -m modelshield")
    parser.add_argument("--peer", action="append", default=[], help="a peer CLI to run on the folder (picklescan)")
    parser.add_argument("--large", type=Path, help="a folder of large single pickles to time one by one too")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--cases", default="j2,j1,reverse", help="which modelshield runs, comma-separated: j2, j1, reverse (-j 1)"
    )
    args = parser.parse_args()
    tool = shlex.split(args.modelshield)
    with tempfile.TemporaryDirectory(prefix="modelshield-folder-") as tmp:
        root = Path(tmp) / "models"
        files = build_folder(args.cache, root)
        size = sum(f.stat().st_size for f in files)
        print(f"# folder of {len(files)} real model files, {size / 1024**2:,.0f} MiB ({time.strftime('%Y-%m-%d')})\n")
        print(
            "| command | run | load average | wall (s) | CPU, user + sys (s) | peak RSS, process tree (MiB) | "
            "peak RSS, largest process (MiB) | exit |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        reports: dict[str, Path] = {}
        cases = {
            "j2": ("modelshield -j 2", ["-j", "2", str(root)]),
            "j1": ("modelshield -j 1", ["-j", "1", str(root)]),
            "reverse": ("modelshield -j 1, reverse order", ["-j", "1", *map(str, reversed(files))]),
        }
        for label, extra in (cases[name] for name in args.cases.split(",")):
            for index in range(args.runs):
                out = Path(tmp) / f"report-{len(reports)}.json"
                argv = [*tool, "scan", "--format", "json", "--no-progress", "--no-deps", "-o", str(out), *extra]
                load = os.getloadavg()[0]
                result = run(argv)
                reports[f"{label} #{index}"] = out
                print(
                    f"| {label} | {index + 1} | {load:.1f} | {result['wall']:.1f} | {result['cpu']:.1f} | "
                    f"{result['tree_mib']:.0f} | {result['single_mib']:.0f} | {result['code']} |",
                    flush=True,
                )
        for peer in args.peer:
            load = os.getloadavg()[0]
            result = run([peer, "-p", str(root)])
            name = Path(peer).name
            print(
                f"| {name} -p | 1 | {load:.1f} | {result['wall']:.1f} | {result['cpu']:.1f} | "
                f"{result['tree_mib']:.0f} | {result['single_mib']:.0f} | {result['code']} |"
            )
        first = next(iter(reports), None)
        if first is not None:
            print(f"\nSlowest ten files ({first.rsplit(' #', 1)[0]}, first run):\n")
            print("| seconds | size (MiB) | file |")
            print("| ---: | ---: | --- |")
            for seconds, path, size_ in slowest(reports[first]):
                print(f"| {seconds:.2f} | {size_ / 1024**2:.1f} | {Path(path).relative_to(root)} |")
        if args.large:
            print("\n| large input | tool | wall (s) | peak RSS (MiB) | exit |")
            print("| --- | --- | ---: | ---: | ---: |")
            for path in sorted(args.large.iterdir()):
                commands = [("modelshield", [*tool, "scan", "--format", "json", str(path)])]
                commands += [(Path(p).name, [p, "-p", str(path)]) for p in args.peer]
                for name, argv in commands:
                    result = run(argv)
                    wall, peak, code = result["wall"], result["single_mib"], result["code"]
                    print(f"| {path.name} | {name} | {wall:.2f} | {peak:.0f} | {code} |")


if __name__ == "__main__":
    main()
