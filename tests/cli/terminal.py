"""Run the command line with one of its streams on a pseudo-terminal, as a user's shell does."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import modelshield

SRC = str(Path(modelshield.__file__).resolve().parents[1])


def on_terminal(argv: list[str], stream: str, drop: set[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run `python argv...` with `stream` ("stdout" or "stderr") on a terminal and the other piped;
    `drop` names environment variables removed. Returns (exit code, piped output, screen)."""
    master, slave = pty.openpty()
    child = {k: v for k, v in os.environ.items() if k not in drop}
    child.update(env, PYTHONPATH=SRC, COLUMNS="200")
    proc = subprocess.Popen(
        [sys.executable, *argv],
        stdin=subprocess.DEVNULL,
        stdout=slave if stream == "stdout" else subprocess.PIPE,
        stderr=slave if stream == "stderr" else subprocess.PIPE,
        env=child,
    )
    os.close(slave)
    screen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:  # the child closed the terminal
            chunk = b""
        if not chunk:
            break
        screen += chunk
    os.close(master)
    out, err = proc.communicate()  # small: the reports of the tests' few files
    return proc.returncode, (out if stream == "stderr" else err), screen
