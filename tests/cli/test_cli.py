"""The command line as users and CI jobs call it: exit codes, clean stdout, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelshield import CATALOGUE, __version__
from modelshield.cli import main
from tests.helpers import evil_pickle

Run = tuple[int, str, str]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def evil(tmp_path: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(evil_pickle("echo pwned"))
    return path


@pytest.fixture
def disguised(tmp_path: Path) -> Path:
    """Unrecognised binary under a model name: a medium finding that needs no format analyser."""
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"\x00\x01\x02\x03" * 64)
    return path


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    return path


def test_clean_scan_exits_zero(capsys: pytest.CaptureFixture[str], clean: Path) -> None:
    code, out, err = run(capsys, "scan", str(clean))
    assert code == 0
    assert "PASSED" in out
    assert err == ""


def test_findings_at_default_threshold_exit_one(capsys: pytest.CaptureFixture[str], disguised: Path) -> None:
    code, out, _ = run(capsys, "scan", str(disguised))
    assert code == 1
    assert "SCN004" in out and "FAILED" in out


def test_malicious_pickle_exits_one(capsys: pytest.CaptureFixture[str], evil: Path) -> None:
    code, out, _ = run(capsys, "scan", str(evil))
    assert code == 1
    assert "critical" in out.lower()


@pytest.mark.parametrize(("fail_on", "expected"), [("low", 1), ("medium", 1), ("high", 0), ("critical", 0)])
def test_fail_on_sets_the_threshold(
    capsys: pytest.CaptureFixture[str], disguised: Path, fail_on: str, expected: int
) -> None:
    code, _, _ = run(capsys, "scan", "--fail-on", fail_on, str(disguised))
    assert code == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "/definitely/not/here"],
        ["scan"],
        ["scan", "--fail-on", "severe", "."],
        ["scan", "--format", "xml", "."],
        ["scan", "--jobs", "0", "."],
        ["scan", "--policy", "/no/such/policy.toml", "."],
        ["explain", "NOPE999"],
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_exit_two_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    if argv:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("modelshield: error:"), err
        assert "Traceback" not in err


def test_unreadable_file_exits_two(capsys: pytest.CaptureFixture[str], tmp_path: Path, clean: Path) -> None:
    broken = tmp_path / "gone.pkl"
    broken.symlink_to(tmp_path / "missing-target")
    fifo = tmp_path / "pipe.pkl"
    os.mkfifo(fifo)
    code, _, err = run(capsys, "scan", "--format", "json", str(broken), str(fifo), str(clean))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert all(line.startswith("modelshield: error: cannot read") for line in lines)


def test_json_is_the_only_thing_on_stdout(capsys: pytest.CaptureFixture[str], evil: Path, clean: Path) -> None:
    code, out, _ = run(capsys, "scan", "--format", "json", str(evil.parent))
    doc = json.loads(out)
    assert code == 1 == doc["summary"]["exit_code"]
    assert doc["summary"]["files"] == 2
    paths = [f["path"] for f in doc["files"]]
    assert str(evil) in paths and str(clean) not in paths  # not a model: shown only with --verbose


def test_verbose_lists_non_model_files(capsys: pytest.CaptureFixture[str], clean: Path) -> None:
    _, quiet, _ = run(capsys, "scan", str(clean))
    _, loud, _ = run(capsys, "scan", "--verbose", str(clean))
    assert str(clean) not in quiet
    assert str(clean) in loud and "not a model" in loud


def test_output_file_leaves_stdout_empty(capsys: pytest.CaptureFixture[str], tmp_path: Path, evil: Path) -> None:
    target = tmp_path / "out" / "report.sarif"
    target.parent.mkdir()
    code, out, _ = run(capsys, "scan", "--format", "sarif", "--output", str(target), str(evil))
    assert code == 1
    assert out == ""
    assert json.loads(target.read_text())["version"] == "2.1.0"


def test_unwritable_output_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, evil: Path) -> None:
    code, _, err = run(capsys, "scan", "--output", str(tmp_path / "no" / "dir" / "r.json"), str(evil))
    assert code == 2 and "cannot write report" in err


def test_rules_lists_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "rules", "--format", "json")
    assert code == 0
    assert {r["id"] for r in json.loads(out)} == {r.id for r in CATALOGUE}


def test_explain_prints_the_threat_page(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "scn005")
    assert code == 0
    for heading in ("# SCN005", "## Overview", "## How the attack works", "## Impact", "## Remediation"):
        assert heading in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_console_script_keeps_stderr_free_of_progress_when_not_a_terminal(tmp_path: Path, evil: Path) -> None:
    for i in range(30):
        (tmp_path / f"copy{i}.pkl").write_bytes(evil.read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    proc = subprocess.run(
        [sys.executable, "-m", "modelshield", "scan", "--format", "json", "--jobs", "2", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["summary"]["files"] == 31


_THREADS = """
import os, sys
from modelshield import cli
sys.argv = ["modelshield", "scan", "--format", "json", sys.argv[1]]
try:
    cli.entry()
finally:
    import numpy  # as the HDF5 and ONNX analysers do in a worker (OpenBLAS stops its pool at a fork)
    print(len(os.listdir("/proc/self/task")), file=sys.stderr)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or (os.cpu_count() or 1) < 2, reason="counts threads in /proc")
def test_the_command_starts_no_blas_threads(clean: Path) -> None:
    """numpy's OpenBLAS starts a thread per core, which spin at start-up; the scanner never calls BLAS."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", _THREADS, str(clean)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stderr.split()[-1:] == ["1"], done.stderr
