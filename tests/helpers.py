"""Hand-assembled hostile payloads and assertions shared by the tests."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

from modelshield import FileResult
from modelshield.cli import main
from modelshield.core.rules import Category, Severity


def evil_pickle(command: str = "echo pwned", protocol: int = 2) -> bytes:
    """A pickle that calls os.system(command) when loaded, assembled opcode by opcode."""
    arg = command.encode()
    if protocol == 0:
        return b"cos\nsystem\n(S'" + arg + b"'\ntR."
    return bytes([0x80, protocol]) + b"cos\nsystem\n" + b"X" + len(arg).to_bytes(4, "little") + arg + b"\x85R."


def is_code_execution(result: FileResult, member: str | None = None) -> bool:
    """Whether the result has a high-or-worse load-time code finding (at `member`'s location)."""
    for finding in result.findings:
        if finding.category is not Category.LOAD_TIME_CODE or finding.level < Severity.HIGH:
            continue
        if member is None or finding.location.display.endswith(member):
            return True
    return False


NOBODY = 65534

Run = tuple[int, str, str]


def run(*argv: str) -> Run:
    """`main(argv)` with its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def run_unprivileged(*argv: str, warm_up: Sequence[str] | None = None) -> Run:
    """`main(argv)` as a user without root's right to read everything: as root, in a forked child that
    drops to uid/gid 65534 once `warm_up` (by default the same command, which must then have no side
    effect) has imported, as root, whatever the command imports lazily; so the child needs no access to
    the checkout or the venv."""
    if os.geteuid() != 0:
        return run(*argv)
    run(*(argv if warm_up is None else warm_up))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status = 99
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            status, out, err = run(*argv)
            payload = json.dumps([status, out, err])
        except BaseException:
            payload = json.dumps([99, "", traceback.format_exc()])
        finally:
            with os.fdopen(write_end, "w") as pipe:
                pipe.write(payload)
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    code, out, err = json.loads(text)
    return code, out, err


@contextlib.contextmanager
def world_readable_folder(prefix: str) -> Iterator[Path]:
    """An empty folder in the system temporary folder that uid 65534 can reach (pytest's own temporary
    folders are private to root), removed afterwards whatever modes the test left inside it."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(folder)
