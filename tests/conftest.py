"""Shared test helpers: scan bytes from a temporary file and build hostile payloads by hand."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from modelshield import FileResult, Policy, scan_file
from modelshield.core.limits import Limits, Meter
from modelshield.core.source import BytesSource, DecodedSource

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


UnsizedStream = Callable[[bytes], DecodedSource]


@pytest.fixture
def unsized_stream(monkeypatch: pytest.MonkeyPatch) -> UnsizedStream:
    """A gzip-decoded view of some bytes that fails the test if anything decodes it whole (asks for its
    size or random access): detection must rule content out from the head first."""

    def refuse(self: DecodedSource) -> bytes:
        raise AssertionError("detection decoded the whole stream")

    monkeypatch.setattr(DecodedSource, "_materialize", refuse)

    def make(data: bytes) -> DecodedSource:
        encoded = BytesSource(gzip.compress(data))
        return DecodedSource(encoded, lambda: zlib.decompressobj(31), Meter(Limits()), "gzip stream")

    return make
