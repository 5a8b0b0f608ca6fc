"""Folder walking never passes over a path in silence: unreadable folders, pipes, sockets, broken links
and link loops are reported by `scan` (exit 2, one line each) and by `hash` (exit 2, one line each).

Permission denial needs a user that is not root: as root, each scan runs in a forked child that drops to
uid/gid 65534 after everything is imported (so it needs no access to the checkout or the venv), over a
tree in the system temporary folder made traversable for it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelshield import scan
from modelshield.core.files import Skipped, walk
from tests.helpers import evil_pickle, run, run_unprivileged, world_readable_folder


@pytest.fixture
def tree() -> Iterator[Path]:
    """An empty folder that uid 65534 can reach (pytest's own temporary folders are private to root)."""
    with world_readable_folder("modelshield-walk-") as folder:
        yield folder


def model_folder(root: Path) -> Path:
    """A folder with one clean file, readable by everyone."""
    folder = root / "model"
    folder.mkdir()
    folder.chmod(0o755)
    (folder / "config.json").write_text('{"model_type": "bert"}\n')
    (folder / "config.json").chmod(0o644)
    return folder


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("modelshield: error:")]


def test_unreadable_folder_inside_a_scanned_folder(tree: Path) -> None:
    folder = model_folder(tree)
    locked = folder / "private"
    locked.mkdir()
    (locked / "model.pkl").write_bytes(evil_pickle())
    locked.chmod(0o700)  # root's own folder: uid 65534 cannot list it
    code, out, err = run_unprivileged("scan", "--format", "json", str(folder))
    assert code == 2, err
    assert error_lines(err) == [f"modelshield: error: cannot read folder {locked}: Permission denied"]
    doc = json.loads(out)
    assert doc["errors"] == [{"path": str(locked), "message": f"cannot read folder {locked}: Permission denied"}]
    code, out, err = run_unprivileged("hash", str(folder))
    assert code == 2
    assert out.endswith("  config.json\n")
    assert error_lines(err) == [f"modelshield: error: cannot read folder {locked}: Permission denied"]


def test_scanned_folder_that_is_itself_unreadable(tree: Path) -> None:
    folder = model_folder(tree)
    folder.chmod(0o700)
    for command in ("scan", "hash"):
        code, _, err = run_unprivileged(command, str(folder))
        assert code == 2, (command, err)
        assert error_lines(err) == [f"modelshield: error: cannot read folder {folder}: Permission denied"]


def test_folder_listed_but_not_searchable_reports_each_entry(tree: Path) -> None:
    folder = model_folder(tree)
    listed = folder / "weights"
    listed.mkdir()
    (listed / "a.pt").write_bytes(evil_pickle())
    (listed / "b.pt").write_bytes(evil_pickle())
    listed.chmod(0o744)  # others may read the names but not reach the files
    code, _, err = run_unprivileged("scan", str(folder))
    assert code == 2
    assert error_lines(err) == [
        f"modelshield: error: cannot read {listed / name}: Permission denied" for name in ("a.pt", "b.pt")
    ]


def special_entries(folder: Path) -> dict[str, str]:
    """A pipe, a socket, a broken link and a link loop in `folder`, with the reason each is reported."""
    os.mkfifo(folder / "model.pt")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "server.sock"))
    (folder / "pytorch_model.bin").symlink_to("../blobs/missing")
    (folder / "a.ckpt").symlink_to("b.ckpt")
    (folder / "b.ckpt").symlink_to("a.ckpt")
    return {
        "a.ckpt": "a link loop (to b.ckpt)",
        "b.ckpt": "a link loop (to a.ckpt)",
        "model.pt": "a named pipe (FIFO)",
        "pytorch_model.bin": "a broken link (to ../blobs/missing)",
        "server.sock": "a socket",
    }


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")
def test_pipes_sockets_broken_links_and_loops_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}\n')
    expected = special_entries(folder)
    for command in ("scan", "hash"):
        code, _, err = run(command, str(folder))
        assert code == 2, command
        lines = error_lines(err)
        assert len(lines) == len(expected), lines
        for line, (name, why) in zip(lines, sorted(expected.items()), strict=True):
            assert line.startswith(f"modelshield: error: cannot read {folder / name}: {why}"), line
    report = scan(folder)
    assert sorted(os.path.basename(path) for path, _ in report.errors) == sorted(expected)
    assert report.exit_code == 2


def test_a_named_pipe_given_to_hash_is_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "model.pt")
    code, out, err = run("hash", str(tmp_path / "model.pt"))  # opening it would block for ever
    assert (code, out) == (2, "")
    assert error_lines(err) == [f"modelshield: error: cannot read {tmp_path / 'model.pt'}: a named pipe (FIFO)"]


def test_linked_folders_are_followed_once_and_loops_end(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "model.pkl").write_bytes(evil_pickle())
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights").symlink_to(outside)
    (folder / "sub" / "up").symlink_to("..")  # a loop back to the folder
    (folder / "sub" / "again").symlink_to("../weights")
    entries = list(walk(str(folder)))
    assert entries == [str(folder / "weights" / "model.pkl")]
    report = scan(folder)
    assert report.exit_code == 1 and report.errors == []
    assert {f.location.path for f in report.findings if f.rule_id.startswith("PKL")} == {
        str(folder / "weights" / "model.pkl")
    }


def test_version_control_folders_are_still_skipped(tmp_path: Path) -> None:
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    os.mkfifo(tmp_path / ".git" / "fsmonitor")
    (tmp_path / "config.json").write_text("{}")
    assert list(walk(str(tmp_path))) == [str(tmp_path / "config.json")]


def test_skipped_paths_are_whole_sentences(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    [entry] = list(walk(str(tmp_path)))
    assert isinstance(entry, Skipped)
    assert entry == Skipped(str(tmp_path / "pipe"), f"cannot read {tmp_path / 'pipe'}: a named pipe (FIFO)")
