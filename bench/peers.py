"""Speed and memory of modelshield next to the scanners users would pick instead.

Installs the peers at pinned versions, each in its own virtual environment under bench/.peers-venv/
(so that one peer's pins cannot change another's results), generates inputs in a temporary folder
(removed afterwards), runs every tool on every input in fresh processes and prints one Markdown table
per input: median wall time, peak RSS, ratios to modelshield and what the tool concluded. Nothing here
loads the generated files: opcodes are counted with pickletools.genops, which only parses.

    python bench/peers.py            # full sizes: one input (at most 2 GiB) on disk at a time, ~15 minutes
    python bench/peers.py --quick    # sizes / 10 and one run: a smoke test

Building the inputs needs the `fixtures` extra (numpy, joblib, safetensors) and torch (the legacy
checkpoint) in the environment that runs this script; the tools themselves run from their own venvs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import pickletools
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import GNU_TIME, in_child, measure, write_folder, write_stored_zip

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "bench" / ".peers-venv"
SLOW = 60.0
"""Seconds after which a tool's first run is also its only one: the budget goes to the other tools."""


@dataclass(frozen=True)
class Tool:
    name: str
    requirements: tuple[str, ...]
    """Pinned PyPI requirements; for modelshield, this work tree (installed, not editable)."""
    command: tuple[str, ...]
    """The command a user would type, without the path; a peer's executable is taken from its venv."""
    note: str
    """Regex over the tool's output giving the reason behind a verdict other than clean (group 1 if any)."""

    def argv(self, path: Path) -> list[str]:
        return [str(VENVS / self.name / "bin" / self.command[0]), *self.command[1:], str(path)]


# Installed like every peer, the way users get it (`pip install`, which compiles bytecode): run from an
# editable checkout under PYTHONDONTWRITEBYTECODE, it would recompile its sources on every start.
MODELSHIELD = Tool("modelshield", (str(ROOT),), ("modelshield", "scan", "--format", "json"), r'"rule_id": "(\w+)"')
# Each peer with the optional extras it needs for the formats it claims, so that "could not scan"
# means the tool, not a missing library. torch resolves to the local CPU wheel (a bare `torch` would
# pull CUDA); fickling's `torch` extra is left out because it needs torchvision, which has no CPU
# build here, and fickling's command line reads no PyTorch zip with it anyway.
PEERS = (
    # picklescan scans .npy files with numpy but declares it nowhere (without it, it crashes on them).
    Tool("picklescan", ("picklescan[7z]==1.0.5", "numpy==2.4.6"), ("picklescan", "-p"), r"^(?:ERROR|WARNING): .*"),
    Tool(
        "modelscan",
        ("modelscan[h5py,tensorflow]==0.8.8",),
        ("modelscan", "-p"),
        r"^(?:Parsing error: |Error encountered ).*",
    ),
    # fickling 0.1.12 imports typing_extensions but declares it only for its dev extras.
    Tool(
        "fickling",
        ("fickling[archive]==0.1.12", "typing_extensions==4.16.0"),
        ("fickling", "--check-safety", "--print-results"),
        r"^(?!Warning|Do not)\S.*",
    ),
    # --no-cache: ModelAudit caches results by content, which would turn every run after the first into a lookup.
    Tool(
        "modelaudit",
        ("modelaudit[all,tensorflow]==0.2.54", "torch==2.13.0"),
        ("modelaudit", "scan", "--no-cache"),
        r"^Scanned .*?: (Found .*)",
    ),
)
EXCERPT = 256 * 1024
QUIET = {"PROMPTFOO_DISABLE_TELEMETRY": "1", "NO_ANALYTICS": "1", "NO_COLOR": "1"}
"""ModelAudit sends usage telemetry unless told not to; the same environment is given to every tool."""


def _tree_digest() -> str:
    """modelshield's sources and metadata, so that an edit reinstalls it."""
    digest = hashlib.sha256()
    for path in sorted([ROOT / "pyproject.toml", *(ROOT / "src").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def install(tool: Tool) -> None:
    """Create the tool's venv once; a changed pin (or, for modelshield, a changed source) rebuilds it."""
    venv = VENVS / tool.name
    pins = venv / "pins.txt"
    wanted = "\n".join(tool.requirements) + "\n"
    if tool is MODELSHIELD:
        wanted += _tree_digest() + "\n"
    if pins.is_file() and pins.read_text() == wanted:
        return
    print(f"installing {' '.join(tool.requirements)} into {venv}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *tool.requirements], check=True)
    pins.write_text(wanted)


def write_dense_pickle(path: Path, count: int) -> None:
    """Millions of tiny objects (ints, short strings, pairs): cost per opcode, not per byte."""
    objects = [(i, -i) if i % 3 == 2 else f"k{i}" if i % 3 else i for i in range(count)]
    with path.open("wb") as out:
        pickle.dump(objects, out, protocol=4)


def count_opcodes(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(1 for _ in pickletools.genops(stream))


def write_joblib(path: Path, size: int) -> None:
    """A real joblib dump: NumPy array bytes sit inline between the opcodes of one pickle."""
    import joblib
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {f"coef_{i}": rng.random(size // 4 // 8) for i in range(4)}
    joblib.dump({"arrays": arrays, "params": {"alpha": 0.5, "layers": [64, 32]}}, path)


def write_npy(path: Path, size: int) -> None:
    """A plain float32 .npy written in chunks, so that the writer never holds the array."""
    import numpy as np

    with path.open("wb") as out:
        np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": (size // 4,)})
        block = os.urandom(64 * 1024 * 1024)
        for left in range(size, 0, -len(block)):
            out.write(block[: min(left, len(block))])


def write_legacy_torch(path: Path, size: int) -> None:
    """A legacy (stacked-pickle) PyTorch checkpoint: five pickles, then every storage's raw bytes."""
    import torch

    tensors = {f"layer{i}.weight": torch.zeros(size // 4 // 4, dtype=torch.float32) for i in range(4)}
    torch.save(tensors, path, _use_new_zipfile_serialization=False)


def write_safetensors(path: Path, size: int) -> None:
    """A safetensors file written by the reference library: a JSON header, then raw tensor bytes."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({f"layer{i}.weight": np.zeros(size // 4 // 4, dtype=np.float32) for i in range(4)}, str(path))


@dataclass
class Outcome:
    seconds: float
    rss: int
    verdict: str
    note: str
    runs: int

    @property
    def scanned(self) -> bool:
        """A correct verdict: every input is a benign model, so "flagged" is a false alarm. Speed is
        compared only between tools that did the job (a parser that gives up early is fast, not done)."""
        return self.verdict == "clean"


def _excerpt(log: Path) -> str:
    """Head and tail of a tool's output: enough for a verdict, and a 100 MB log never grows this process."""
    with log.open("rb") as stream:
        head = stream.read(EXCERPT)
        stream.seek(max(stream.tell(), log.stat().st_size - EXCERPT))
        return (head + b"\n" + stream.read()).decode(errors="replace")


def _verdict(tool: Tool, code: int, output: str, timeout: float) -> tuple[str, str]:
    """What the exit code and output say; the exit codes all tools here document: 0 clean, 1 findings."""
    if code == -signal.SIGKILL:
        return f"timed out (> {timeout:g} s)", ""
    if "Traceback (most recent call last)" in output:
        return "could not scan", output.strip().splitlines()[-1]
    matches = [m.group(m.lastindex or 0) for m in re.finditer(tool.note, output, re.MULTILINE)]
    note = ", ".join(dict.fromkeys(matches)) if tool is MODELSHIELD else next(iter(matches), "")
    if code in (0, 1):
        return ("clean" if code == 0 else "flagged"), note if code else ""
    return "could not scan", note or f"exit code {code}"


def run_tool(tool: Tool, path: Path, root: Path, runs: int, timeout: float) -> Outcome:
    """Median of `runs` fresh processes; a single run when the first one fails or is slow."""
    env = os.environ | QUIET | {"HOME": str(root / "home")}
    log = root / "output.txt"
    samples: list[tuple[float, int]] = []
    for _ in range(runs):
        with log.open("wb") as out:
            seconds, rss, code = measure(tool.argv(path), cwd=root / "cwd", env=env, output=out, timeout=timeout)
        samples.append((seconds, rss))
        verdict, note = _verdict(tool, code, _excerpt(log), timeout)
        if verdict not in ("clean", "flagged") or seconds > SLOW:
            break
    note = note.replace(f"{path.parent}/", "").replace("|", "/")[:140]
    return Outcome(statistics.median(s for s, _ in samples), max(r for _, r in samples), verdict, note, len(samples))


def _ratio(value: float, base: float, ok: bool) -> str:
    return f"{value / base:.2f}x" if ok and base else "—"


def table(label: str, path: Path, outcomes: dict[str, Outcome], opcodes: int | None) -> str:
    disk = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
    base = outcomes[MODELSHIELD.name]
    head = "| tool | runs | time (s) | peak RSS (MiB) | time / modelshield | RSS / modelshield |"
    rule = "| --- | ---: | ---: | ---: | ---: | ---: |"
    if opcodes:
        head += " opcodes/s |"
        rule += " ---: |"
    lines = [f"### {label} ({disk / 1024**2:,.0f} MiB on disk)\n", head + " result |", rule + " --- |"]
    for name, o in outcomes.items():
        row = (
            f"| {name} | {o.runs} | {o.seconds:.2f} | {o.rss / 1024**2:,.0f} "
            f"| {_ratio(o.seconds, base.seconds, o.scanned)} | {_ratio(o.rss, base.rss, o.scanned)} |"
        )
        if opcodes:
            row += f" {opcodes / o.seconds:,.0f} |" if o.scanned else " — |"
        lines.append(row + f" {o.verdict}{': ' + o.note if o.note else ''} |")
    if opcodes:
        lines.append(f"\n{opcodes:,} opcodes (pickletools.genops).")
    return "\n".join(lines) + "\n"


def summary(results: list[tuple[str, dict[str, Outcome]]]) -> str:
    """Per input, modelshield against the fastest peer that gave the correct verdict."""
    lines = [
        "### Summary: modelshield against the fastest peer with a correct verdict\n",
        "| input | modelshield (s) | fastest correct peer | its time (s) | peer time / modelshield "
        "| modelshield peak RSS (MiB) | peer peak RSS (MiB) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, outcomes in results:
        ours = outcomes[MODELSHIELD.name]
        peers = [(o.seconds, name, o) for name, o in outcomes.items() if name != MODELSHIELD.name and o.scanned]
        if not peers:
            lines.append(f"| {label} | {ours.seconds:.2f} | none | — | — | {ours.rss / 1024**2:,.0f} | — |")
            continue
        seconds, name, best = min(peers, key=lambda p: p[0])
        lines.append(
            f"| {label} | {ours.seconds:.2f} | {name} | {seconds:.2f} | {seconds / ours.seconds:.2f}x "
            f"| {ours.rss / 1024**2:,.0f} | {best.rss / 1024**2:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes / 10 and one run, for a smoke test")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every input size (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="runs per tool and input (median reported)")
    parser.add_argument("--timeout", type=float, help="seconds before a run is killed (300, or 10 with --quick)")
    parser.add_argument("--inputs", help="comma-separated input file names to run (default: all)")
    args = parser.parse_args()
    scale, runs = (args.scale / 10, 1) if args.quick else (args.scale, args.runs)
    timeout = args.timeout or (10 if args.quick else 300)
    tools = (MODELSHIELD, *PEERS)
    for tool in tools:
        install(tool)
    mib = 1024**2
    cases: list[tuple[str, str, Callable[..., None], Any]] = [
        (
            f"opcode-dense pickle, {2_000_000 * scale:,.0f} objects",
            "dense.pkl",
            write_dense_pickle,
            int(2_000_000 * scale),
        ),
        (
            f"PyTorch zip checkpoint, {2048 * scale:,.0f} MiB",
            "checkpoint.pt",
            lambda p, n: write_stored_zip(p, n, 64),
            int(2048 * mib * scale),
        ),
        (
            f"joblib file with NumPy arrays, {512 * scale:,.0f} MiB",
            "model.joblib",
            write_joblib,
            int(512 * mib * scale),
        ),
        (f".npy array, {1024 * scale:,.0f} MiB", "weights.npy", write_npy, int(1024 * mib * scale)),
        (
            f"legacy PyTorch checkpoint, {1024 * scale:,.0f} MiB",
            "legacy.pt",
            write_legacy_torch,
            int(1024 * mib * scale),
        ),
        (f"safetensors file, {1024 * scale:,.0f} MiB", "model.safetensors", write_safetensors, int(1024 * mib * scale)),
        (f"folder of {round(300 * scale)} small pickles", "many", write_folder, round(300 * scale)),
    ]
    print(
        f"# modelshield and its peers ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}, {runs} run(s), timeout {timeout:g} s)\n"
    )
    print("Peers: " + ", ".join(" ".join(p.requirements) for p in PEERS) + "\n")
    with tempfile.TemporaryDirectory(prefix="modelshield-peers-") as tmp:
        root = Path(tmp)
        (root / "cwd").mkdir()
        (root / "home").mkdir()
        wanted = set(args.inputs.split(",")) if args.inputs else None
        results: list[tuple[str, dict[str, Outcome]]] = []
        for label, name, make, size in cases:
            if wanted is not None and name not in wanted:
                continue
            path = root / name
            in_child(make, path, size)
            opcodes = in_child(count_opcodes, path) if name == "dense.pkl" else None
            outcomes = {t.name: run_tool(t, path, root, runs, timeout) for t in tools}
            print(table(label, path, outcomes, opcodes), flush=True)
            results.append((label, outcomes))
            shutil.rmtree(path) if path.is_dir() else path.unlink()  # one input on disk at a time
    print(summary(results))
    if GNU_TIME:
        print("Peak RSS: GNU time's %M of each command (the largest of the process and its reaped workers).")
    else:
        floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"Peak RSS of this benchmark process, a floor under every figure above: {floor:.0f} MiB.")


if __name__ == "__main__":
    main()
