"""A local Hub-compatible server (tests/sources/hubserver.py) for every remote-scan test, with
huggingface_hub pointed at it through HF_ENDPOINT and the verdict cache in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sources.hubserver import HubServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored login is used
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setenv("MODELSHIELD_CACHE_DIR", str(tmp_path / "cache"))
        yield server


def model_requests(server: HubServer) -> list[str]:
    """Requests for the model (listing and files), without huggingface_hub's own bookkeeping."""
    return [f"{r.server} {r.path}" for r in server.requests if "agent-harnesses" not in r.path]
