"""The gateway under faults of its own machine: a full disk while fetching, oversized requests. Each one
answers an error, serves nothing it has not fetched whole and judged, and leaves the gateway working."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import snapshot_download
from safetensors.numpy import save_file

from tests.gateway.conftest import Gateway, benign_repo
from tests.gateway.test_gateway import _get
from tests.sources.hubserver import HubServer

#: the store's file system in the disk-full test: room for the small revision, not for the large one
STORE_BYTES = 1 << 20


def _can_mount() -> bool:
    """Whether this machine lets a test mount a tmpfs in a mount namespace of its own (root in most CI
    containers; otherwise an unprivileged user namespace)."""
    command = [*_UNSHARE, "sh", "-c", "mount -t tmpfs -o size=4096 probe /mnt"]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


_UNSHARE = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--mount", "--map-root-user"]


class _SmallDisk(Gateway):
    """The gateway with its store on a 1 MiB tmpfs in its own mount namespace (a real ENOSPC); where no
    mount is allowed, under a 1 MiB file-size limit instead (the same refused write, EFBIG)."""

    def _command(self, *extra: str) -> list[str]:
        store = self.workdir / "store"
        store.mkdir(exist_ok=True)
        if not _can_mount():
            return ["prlimit", f"--fsize={STORE_BYTES}", "--", *super()._command(*extra)]
        script = f'mount -t tmpfs -o size={STORE_BYTES} modelshield-test "$0" && exec "$@"'
        return [*_UNSHARE, "sh", "-c", script, str(store), *super()._command(*extra)]


def test_disk_full_while_fetching_serves_nothing_and_recovers(hub: HubServer, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    save_file({"w": np.ones(2 * STORE_BYTES // 4, dtype=np.float32)}, str(big / "model.safetensors"))
    (big / "config.json").write_text('{"model_type": "bert"}')
    hub.add_repo("org/big", big)
    small = benign_repo(tmp_path / "small")
    hub.add_repo("org/small", small)
    workdir = tmp_path / "gateway"
    workdir.mkdir()
    gateway = _SmallDisk(hub.url, workdir, anonymous=True).start()
    try:
        status, headers, body = _get(f"{gateway.url}/org/big/resolve/main/config.json")
        assert status == 507, (status, body)  # Insufficient Storage: the gateway's disk, not the upstream
        message = headers["x-error-message"]
        assert "store could not keep model.safetensors" in message and "nothing of org/big is served" in message
        with pytest.raises(Exception, match="nothing of org/big is served"):
            snapshot_download("org/big", endpoint=gateway.url, token=False, cache_dir=tmp_path / "c1")
        assert not list((tmp_path / "c1").rglob("config.json"))
        # The cut-off temporary file was removed (it had filled the disk): a revision that fits is served.
        folder = snapshot_download("org/small", endpoint=gateway.url, token=False, cache_dir=tmp_path / "c2")
        assert (Path(folder) / "model.safetensors").read_bytes() == (small / "model.safetensors").read_bytes()
        assert _get(f"{gateway.url}/health")[0] == 200
    finally:
        gateway.stop()


def test_oversized_requests_are_refused(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/benign", benign_repo(tmp_path / "benign"))
    gateway.anonymous = True
    gateway.options += ["--max-revision-bytes", "100000"]
    gateway.start()
    host, port = "127.0.0.1", gateway.port
    # A header block far over any client's: the connection is refused, the gateway goes on.
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (1 << 20) + b"\r\n\r\n")
        answer = sock.recv(64)
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), answer
    # A path over the gateway's limit, and an upload over the revision limit.
    assert _get(f"{gateway.url}/org/benign/resolve/main/{'a' * 2000}")[0] == 400
    with socket.create_connection((host, port), timeout=30) as sock:
        head = b"POST /api/scan?name=x.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"
        sock.sendall(head + b"\0" * 200000)
        answer = sock.recv(64)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert _get(f"{gateway.url}/org/benign/resolve/main/config.json")[0] == 200
