"""Shared test helpers: scan bytes from a temporary file and build hostile payloads by hand."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelshield import FileResult, Policy, scan_file

ScanData = Callable[..., FileResult]


@pytest.fixture
def scan_data(tmp_path: Path) -> ScanData:
    """Write bytes to a file named `name` and scan it."""

    def run(data: bytes, name: str = "model.bin", policy: Policy | None = None) -> FileResult:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return scan_file(str(path), policy)

    return run
