"""`modelshield hash`: a per-file SHA-256 manifest that agrees with hashlib and with `sha256sum -c`."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from modelshield.cli import main
from modelshield.integrity.hashing import CHUNK_SIZE, sha256_file


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_folder_manifest_names_files_relative_to_the_folder(capsys: pytest.CaptureFixture[str], model: Path) -> None:
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    code, out, err = run(capsys, "hash", str(model))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines == [
        f"{digest(model / 'config.json')}  config.json",
        f"{digest(model / 'model.safetensors')}  model.safetensors",
        f"{digest(model / 'tokenizer' / 'vocab.txt')}  tokenizer/vocab.txt",
    ]


def test_a_file_is_named_as_given(capsys: pytest.CaptureFixture[str], model: Path) -> None:
    weights = model / "model.safetensors"
    code, out, _ = run(capsys, "hash", str(weights))
    assert code == 0
    assert out == f"{digest(weights)}  {weights}\n"


def test_json_manifest(capsys: pytest.CaptureFixture[str], model: Path) -> None:
    code, out, _ = run(capsys, "hash", "--format", "json", str(model))
    assert code == 0
    doc = json.loads(out)
    assert doc["algorithm"] == "sha256"
    by_name = {f["path"]: f for f in doc["files"]}
    assert set(by_name) == {"config.json", "model.safetensors", "tokenizer/vocab.txt"}
    weights = model / "model.safetensors"
    assert by_name["model.safetensors"] == {
        "path": "model.safetensors",
        "sha256": digest(weights),
        "size": weights.stat().st_size,
    }


def test_files_larger_than_one_read_are_hashed_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (3 * CHUNK_SIZE // 256) + b"tail")
    assert sha256_file(str(big)) == digest(big)


def test_missing_path_exits_two_with_nothing_on_stdout(capsys: pytest.CaptureFixture[str], model: Path) -> None:
    code, out, err = run(capsys, "hash", str(model), str(model / "nope.bin"))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and "nope.bin" in err


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs GNU sha256sum")
def test_text_output_checks_with_sha256sum(capsys: pytest.CaptureFixture[str], model: Path, tmp_path: Path) -> None:
    (model / "odd\nname\\.txt").write_text("a file name with a newline and a backslash\n")
    code, out, _ = run(capsys, "hash", str(model))
    assert code == 0
    sums = tmp_path / "model.sha256"
    sums.write_text(out)
    check = ["sha256sum", "-c", "--strict", str(sums)]
    proc = subprocess.run(check, cwd=model, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": OK") == 4
    (model / "config.json").write_text("{}\n")
    proc = subprocess.run(check, cwd=model, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "config.json: FAILED" in proc.stdout
