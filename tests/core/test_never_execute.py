"""Scanning must never run what it scans: payloads that would create a marker file stay inert."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from modelshield import scan
from tests.helpers import evil_pickle, is_code_execution


def payload(marker: Path) -> bytes:
    return evil_pickle(f"touch {marker}")


def test_payload_is_live_when_actually_loaded(tmp_path: Path) -> None:
    """Positive control: the same payload does create its marker when a real unpickler loads it."""
    marker = tmp_path / "control-marker"
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], input=payload(marker), check=True)
    assert marker.exists()


def test_scanning_never_creates_the_marker(tmp_path: Path) -> None:
    marker = tmp_path / "scan-marker"
    data = payload(marker)
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(data)
    (folder / "model.pkl.gz").write_bytes(gzip.compress(data))
    with zipfile.ZipFile(folder / "checkpoint.pt", "w") as zf:
        zf.writestr("archive/data.pkl", data)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        info = tarfile.TarInfo("nested/data.pkl")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    (folder / "bundle.tar").write_bytes(buffer.getvalue())

    report = scan([folder], jobs=2)

    assert not marker.exists()
    assert all(is_code_execution(result) for result in report.files), [r.path for r in report.files]
