"""A scan writes nothing but its output file and opens no network connection or process.

The scan runs in a fresh interpreter whose first act is to install an audit hook (before modelshield
is imported): every `open` for writing, every socket connect or name lookup, and every process start or
exec is recorded, and the child prints the record as JSON. The only write allowed is the `--output`
file, plus the interpreter's own bytecode cache (`__pycache__/*.pyc`, written when a module is first
imported) — nothing else, not even temporary files. With `--jobs 2` the hook is inherited by the
forked workers; the pool itself starts through `os.fork` and `os.pipe`, which are not recorded events.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

CHILD = r"""
import json, os, sys

def report(violation):
    # Written at once to the inherited stderr, so forked pool workers (--jobs 2) report too.
    os.write(2, ("\nVIOLATION " + json.dumps([os.getpid(), *violation]) + "\n").encode())

KNOWN_UNAME = sys.platform.startswith("linux")
OUTPUT = os.path.realpath(sys.argv[1])

def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC)
        )
        if not writes or isinstance(path, int):
            return
        real = os.path.realpath(os.fsdecode(path))
        if real == OUTPUT or (real.endswith(".pyc") or ".pyc." in real) and "__pycache__" in real:
            return
        if real == os.devnull:  # writing to /dev/null writes nothing (the `uname -p` probe below uses it)
            return
        report([event, real, str(mode), flags])
    elif event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto"):
        report([event, repr(args[1:])[:200]])
    elif event == "subprocess.Popen" and list(args[1]) == ["uname", "-p"] and KNOWN_UNAME:
        # Known, not from scanned content: importing h5py calls platform.uname()[...], and CPython's
        # platform.processor() runs `uname -p` once. Allowed by exact argv only (see the report).
        return
    elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.startfile"):
        report([event, repr(args)[:200]])

sys.addaudithook(hook)

from modelshield.cli import main

try:
    code = main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
sys.stderr.write("\nDONE " + json.dumps(code) + "\n")
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_scan_writes_only_its_output_and_opens_no_connection(tmp_path: Path, jobs: str) -> None:
    output = tmp_path / "report.json"
    args = ["scan", "--format", "json", "--output", str(output), "--jobs", jobs, str(FIXTURES)]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(output), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    lines = done.stderr.splitlines()
    codes = [json.loads(line.removeprefix("DONE ")) for line in lines if line.startswith("DONE ")]
    assert codes == [1], done.stderr[-2000:]  # one scan, finished; exit 1: the fixtures include unsafe models
    assert [line for line in lines if line.startswith("VIOLATION ")] == []
    report = json.loads(output.read_text())
    assert len(report["files"]) >= 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
