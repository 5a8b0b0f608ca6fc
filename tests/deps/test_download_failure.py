"""`--download` that cannot fetch a dependency fails the scan (DEP003 at medium, high with
`fail-on-unresolved-dependencies`), with one line saying why. huggingface_hub itself talks to a closed
port on loopback and to a local server that answers as the Hub does for missing and private
repositories, so no test needs the internet."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.deps.conftest import adapter_folder

pytest.importorskip("huggingface_hub")

SRC = Path(__file__).resolve().parents[2] / "src"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def hub_answering(status: int, headers: dict[str, str]) -> Iterator[str]:
    """A local server answering every request with `status`, as the Hub answers for repositories it
    will not show; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"error": headers.get("X-Error-Message", "Repository not found")}).encode()
            self.send_response(status)
            for key, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def missing_repository_hub() -> Iterator[str]:
    yield from hub_answering(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})


@pytest.fixture
def bad_token_hub() -> Iterator[str]:
    yield from hub_answering(401, {"X-Error-Message": "Invalid credentials in Authorization header"})


def modelshield(endpoint: str, cache: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, with huggingface_hub pointed at `endpoint`."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))},
        "PYTHONPATH": str(SRC),
        "HF_ENDPOINT": endpoint,
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
        "HF_TOKEN": "hf_not_a_real_token",
    }
    command = [sys.executable, "-m", "modelshield", *argv]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


def dep003(out: str) -> list[dict[str, object]]:
    doc = json.loads(out)
    return [f for file in doc["files"] for f in file["findings"] if f["rule_id"] == "DEP003"]


def check_failure(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result.stderr
    [finding] = dep003(result.stdout)
    assert finding["severity"] == "medium"
    evidence = str(finding["evidence"])
    assert evidence.startswith("base model evil-org/llama-7b-base: download of evil-org/llama-7b-base failed: ")
    assert expected in evidence, evidence
    assert "\n" not in evidence and "Traceback" not in evidence and "http" not in evidence.split(": ", 2)[2]
    assert "Traceback" not in result.stderr


def test_unreachable_hub(tmp_path: Path) -> None:
    folder = adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result = modelshield(endpoint, tmp_path / "cache", "scan", "--download", "--format", "json", str(folder))
    check_failure(result, "the Hub could not be reached (")


def test_missing_repository(tmp_path: Path, missing_repository_hub: str) -> None:
    folder = adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base")
    result = modelshield(
        missing_repository_hub, tmp_path / "cache", "scan", "--download", "--format", "json", str(folder)
    )
    check_failure(result, "repository not found, or private and not visible with your credentials (HTTP 404)")


def test_rejected_credentials(tmp_path: Path, bad_token_hub: str) -> None:
    folder = adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base")
    result = modelshield(bad_token_hub, tmp_path / "cache", "scan", "--download", "--format", "json", str(folder))
    check_failure(result, "authentication failed (HTTP 401)")


def test_policy_makes_a_failed_download_high(tmp_path: Path) -> None:
    folder = adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base")
    policy = tmp_path / "policy.toml"
    policy.write_text("fail-on-unresolved-dependencies = true\n")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    argv = ("scan", "--download", "--format", "json", "--policy", str(policy), "--fail-on", "high", str(folder))
    result = modelshield(endpoint, tmp_path / "cache", *argv)
    assert result.returncode == 1, result.stderr
    assert [f["severity"] for f in dep003(result.stdout)] == ["high"]


def test_without_download_a_missing_dependency_stays_low(tmp_path: Path) -> None:
    folder = adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base")
    result = modelshield(
        f"http://127.0.0.1:{closed_port()}", tmp_path / "cache", "scan", "--format", "json", str(folder)
    )
    assert result.returncode == 0, result.stderr
    [finding] = dep003(result.stdout)
    assert finding["severity"] == "low" and "is not in the Hugging Face cache" in str(finding["evidence"])
