"""The progress display: on a terminal (stderr) it names the file being read and the bytes read so
far, even before the first file is done; never off a terminal, in CI, or with --no-progress."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from modelshield.core import activity
from modelshield.core.source import FileSource
from tests.cli.terminal import on_terminal

#: The real command, with file reads slowed down: the first read of each file then waits 3 s.
SLOW = """
import sys, time
import modelshield.core.source as source
read_at = source.FileSource.read_at
seen = set()
def slow(self, offset, n):
    data = read_at(self, offset, n)
    if self.path not in seen:
        seen.add(self.path)
        time.sleep(3)
    return data
source.FileSource.read_at = slow
from modelshield.cli import entry
sys.exit(entry())
"""


def run_on_terminal(argv: list[str], **env: str) -> tuple[int, bytes, bytes]:
    """Run the slowed command with stderr on a pseudo-terminal: (exit code, stdout, screen)."""
    return on_terminal(["-c", SLOW, *argv], "stderr", {"CI", "NO_COLOR"}, env)


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(300_000))
    return path


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_display_names_the_file_being_read(big: Path, tmp_path: Path, jobs: str) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    code, out, screen = run_on_terminal(["scan", "--jobs", jobs, str(tmp_path)])
    assert code == 0 and b"PASSED" in out
    assert b"scanning" in screen and str(big).encode() in screen
    assert b"4.1 kB of 300.0 kB" in screen  # the head read to identify the content, of the whole file
    assert b"0/2" in screen  # shown before the first file is done
    assert b"scanning" not in out


@pytest.mark.parametrize(("argv", "env"), [(["--no-progress"], {}), ([], {"CI": "true"})])
def test_no_display(big: Path, argv: list[str], env: dict[str, str]) -> None:
    code, out, screen = run_on_terminal(["scan", *argv, str(big)], **env)
    assert code == 0 and b"PASSED" in out
    assert screen == b""


def test_file_reads_are_counted(big: Path) -> None:
    cells = [0, 0]
    activity.attach(cells, 0)
    try:
        activity.started(6)
        source = FileSource(str(big))
        source.read_at(10, 1000)
        with source.stream() as stream:
            stream.read()
        source.close()
        assert cells == [7, 1000 + 300_000]
        activity.finished()
        assert cells[0] == 0
    finally:
        activity.attach(None, 0)
    activity.read(5)  # off: nothing to count into
    assert cells[1] == 301_000


def test_board_lists_the_files_being_read() -> None:
    board = activity.Board(["a", "b", "c"], 2)
    activity.join_pool(board.cells, board.counter)
    try:
        activity.started(2)
        activity.read(10)
        assert board.reading() == [("c", 10)]
    finally:
        activity.attach(None, 0)
