"""The gateway as a real process (`modelshield serve` on a loopback port) in front of the Hub-compatible
test server (tests/sources/hubserver.py), and model folders to serve through them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from safetensors.numpy import save_file

from modelshield.gateway.app import Config, create_app
from tests.gateway.postgres import postgres_url
from tests.sources.hubserver import HubServer, storage_hosts

__all__ = ["postgres_url"]  # a fixture for the PostgreSQL tests

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent.parent
#: the gateway's own upstream token: it must never reach a client or a log line
UPSTREAM_TOKEN = "hf_upstream_secret_" + "x" * 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@dataclass
class Gateway:
    """A `modelshield serve` process; `start()` waits for /health, `stop()` ends it."""

    upstream: str
    workdir: Path
    policy: Path | None = None
    anonymous: bool = False
    options: list[str] = field(default_factory=list)
    database: str | None = None  # a SQLAlchemy URL; by default SQLite in workdir
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> str:
        return self.database or f"sqlite:///{self.workdir / 'gateway.db'}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"gateway-{self.port}.log"

    def _command(self, *extra: str) -> list[str]:
        command = [sys.executable, "-m", "modelshield", "serve", "--upstream", self.upstream, "--db", self.db]
        command += ["--store", str(self.workdir / "store"), *extra]
        command += [f"--upstream-host={host}" for host in storage_hosts(self.upstream)]  # its "CDN"
        return command

    def add_token(self, team: str) -> str:
        done = subprocess.run(self._command("--add-token", team), env=_env(), capture_output=True, check=True)
        return done.stdout.decode().strip()

    def start(self) -> Gateway:
        extra = ["--port", str(self.port)]
        if self.policy:
            extra += ["--policy", str(self.policy)]
        if self.anonymous:
            extra.append("--anonymous")
        extra += self.options
        env = _env() | {"HF_TOKEN": UPSTREAM_TOKEN}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self._command(*extra), env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gateway did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def events(self, event: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == event]


@contextlib.contextmanager
def in_process(hub: HubServer, tmp_path: Path) -> Iterator[str]:
    """The gateway app under uvicorn in a thread of this process (anonymous, SQLite and store in
    `tmp_path`), for tests that patch the app or the scanner; yields its URL."""
    config = Config(hub.url, f"sqlite:///{tmp_path / 'gw.db'}", str(tmp_path / "store"), anonymous=True)
    config.upstream_token, config.upstream_hosts = UPSTREAM_TOKEN, tuple(storage_hosts(hub.url))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    with HubServer(token=UPSTREAM_TOKEN) as server:
        yield server


@pytest.fixture
def gateway(hub: HubServer, tmp_path: Path) -> Iterator[Gateway]:
    workdir = tmp_path / "gateway"
    workdir.mkdir()
    running = Gateway(hub.url, workdir)
    yield running
    running.stop()


def benign_repo(folder: Path) -> Path:
    folder.mkdir(parents=True)
    save_file({"w": np.arange(4096, dtype=np.float32)}, str(folder / "model.safetensors"))  # LFS-sized
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    return folder


def malicious_repo(folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "malicious" / "torch_payload.pt", folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    return folder
