"""Shared test helpers: scan bytes from a temporary file and build hostile payloads by hand."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelshield import FileResult, Policy, scan_file
from modelshield.core.rules import Category, Severity

ScanData = Callable[..., FileResult]


def evil_pickle(command: str = "echo pwned", protocol: int = 2) -> bytes:
    """A pickle that calls os.system(command) when loaded, assembled opcode by opcode."""
    arg = command.encode()
    if protocol == 0:
        return b"cos\nsystem\n(S'" + arg + b"'\ntR."
    return (
        bytes([0x80, protocol])
        + b"cos\nsystem\n"
        + b"X"
        + len(arg).to_bytes(4, "little")
        + arg
        + b"\x85R."
    )


def is_code_execution(result: FileResult, member: str | None = None) -> bool:
    """Whether the result has a high-or-worse load-time code finding (at `member`'s location)."""
    for finding in result.findings:
        if finding.category is not Category.LOAD_TIME_CODE or finding.level < Severity.HIGH:
            continue
        if member is None or finding.location.display.endswith(member):
            return True
    return False


@pytest.fixture
def scan_data(tmp_path: Path) -> ScanData:
    """Write bytes to a file named `name` and scan it."""

    def run(data: bytes, name: str = "model.bin", policy: Policy | None = None) -> FileResult:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return scan_file(str(path), policy)

    return run
