"""What both benchmarks share: the way a scan is measured and the writers of the inputs they both use."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pickle
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

CHUNK = 64 * 1024 * 1024
STATE = {f"layer{i}.weight": list(range(8)) for i in range(64)}


def write_stored_zip(path: Path, tensor_bytes: int, members: int) -> None:
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


def write_folder(path: Path, count: int) -> None:
    """Many small pickles: measures per-file overhead rather than throughput."""
    path.mkdir()
    payload = pickle.dumps(STATE, protocol=4)
    for index in range(count):
        (path / f"model_{index}.pkl").write_bytes(payload)


def in_child(func: Callable[..., Any], *args: Any) -> Any:
    """`func(*args)` in a forked child, so that building inputs never grows the benchmark process.

    Linux charges a parent's peak RSS to every child it spawns (exec records the high-water mark of
    the memory it replaces), so a parent that once held a 500 MiB buffer makes even /bin/true report
    500 MiB.
    """
    ctx = multiprocessing.get_context("fork")
    results = ctx.SimpleQueue()
    child = ctx.Process(target=lambda: results.put(func(*args)))
    child.start()
    child.join()
    if child.exitcode:
        raise SystemExit(f"{func.__name__} failed in a child process (exit {child.exitcode})")
    return results.get()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def measure(
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    output: IO[bytes] | int = subprocess.DEVNULL,
    timeout: float | None = None,
) -> tuple[float, int, int]:
    """Wall seconds, peak RSS (bytes) and exit code of one fresh child process.

    The peak RSS is the child's own and that of its reaped workers (`wait4`). A process forked from
    this one starts with this process's high-water mark, which exec keeps, so the command runs under
    GNU time where there is one: forked from that small program, the tool's figure is its own. A child
    still running after `timeout` seconds is killed with its process group and reports -SIGKILL.
    """
    report = None
    if GNU_TIME:
        report = tempfile.NamedTemporaryFile(prefix="bench-rss-", delete=False)  # noqa: SIM115 - removed below
        report.close()
        argv = [GNU_TIME, "-f", "%M", "-o", report.name, *argv]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=output, stderr=output, start_new_session=True)
    timer = threading.Timer(timeout, _kill_group, (proc.pid,)) if timeout else None
    if timer:
        timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if timer:
        timer.cancel()
    code = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss * 1024
    if report is not None:
        lines = Path(report.name).read_text().split()
        os.unlink(report.name)
        if code != -signal.SIGKILL and lines and lines[-1].isdigit():
            rss = int(lines[-1]) * 1024
    return elapsed, rss, code


#: GNU time (`-f %M`), which measures a command's peak RSS without this process's memory under it.
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def scan_case(
    python: str, path: Path, env: dict[str, str], runs: int, timeout: float, *extra: str
) -> tuple[float, float, int, list[str]]:
    """One input scanned `runs` times by `python -m modelshield scan --format json`: median wall seconds,
    peak RSS (MiB, the largest run), the first run's exit code, and the rules found (`RULE severity`)."""
    argv = [python, "-m", "modelshield", "scan", *extra, "--format", "json", str(path)]
    results = [measure(argv, env=env, timeout=timeout) for _ in range(runs)]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False).stdout
    files = json.loads(out)["files"] if out.strip() else []
    rules = sorted({f"{f['rule_id']} {f['severity']}" for r in files for f in r.get("findings", [])})
    seconds = statistics.median(r[0] for r in results)
    return seconds, max(r[1] for r in results) / 2**20, results[0][2], rules
