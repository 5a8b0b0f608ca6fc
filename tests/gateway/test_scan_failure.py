"""A scan that does not finish never lets a file through: the gateway runs in this process (uvicorn in a
thread) with `modelshield.scan` made to fail, and answers an error instead of the file."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelshield
from tests.gateway.conftest import benign_repo, in_process
from tests.sources.hubserver import HubServer


@pytest.fixture
def served(hub: HubServer, tmp_path: Path) -> Iterator[str]:
    with in_process(hub, tmp_path) as url:
        yield url


def _status(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_scan_error_fails_closed(hub: HubServer, served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", source, private=True)
    real_scan = modelshield.scan

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("scanner ran out of memory")

    monkeypatch.setattr(modelshield, "scan", broken)
    status, body = _status(f"{served}/org/benign/resolve/main/config.json")
    assert status == 500 and b"did not finish" in body
    assert body != (source / "config.json").read_bytes()
    monkeypatch.setattr(modelshield, "scan", real_scan)  # no verdict was stored: the next request scans
    status, body = _status(f"{served}/org/benign/resolve/main/config.json")
    assert status == 200 and body == (source / "config.json").read_bytes()
