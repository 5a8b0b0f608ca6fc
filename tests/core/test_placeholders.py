"""Placeholders are not models: Git LFS pointers (by content, under any name, inside archives) and empty
files under model names are SCN006 (medium); text and images under a model name are SCN004 at low."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from modelshield import scan
from modelshield.cli import main
from modelshield.core.rules import Severity
from modelshield.core.sniff import lfs_pointer
from tests.conftest import ScanData
from tests.helpers import evil_pickle

#: What the pointer stands for: a model that would run a command.
WEIGHTS = evil_pickle() * 50


def pointer(data: bytes = WEIGHTS, newline: str = "\n") -> bytes:
    """The pointer git-lfs writes for `data` (spec v1: version, oid, size)."""
    lines = ["version https://git-lfs.github.com/spec/v1", f"oid sha256:{hashlib.sha256(data).hexdigest()}"]
    return newline.join([*lines, f"size {len(data)}", ""]).encode()


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.safetensors", "model.gguf", "weights", "README.md"])
def test_lfs_pointer_under_any_name(scan_data: ScanData, name: str) -> None:
    result = scan_data(pointer(), name)
    [finding] = result.findings
    assert (finding.rule_id, finding.level) == ("SCN006", Severity.MEDIUM)
    assert f"oid sha256:{hashlib.sha256(WEIGHTS).hexdigest()} size {len(WEIGHTS)}" in finding.evidence
    assert "git lfs pull" in finding.remediation
    assert result.is_model  # listed in reports without --verbose


def test_lfs_pointer_with_windows_line_ends_and_an_extension_line(scan_data: ScanData) -> None:
    text = pointer(newline="\r\n").replace(b"oid ", b"ext-0-foo sha256:" + b"0" * 64 + b"\r\noid ")
    assert [f.rule_id for f in scan_data(text, "model.pt").findings] == ["SCN006"]


def test_lfs_pointers_inside_archives(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("model/pytorch_model.bin", pointer())
        archive.writestr("model/config.json", '{"model_type": "bert"}')
    tarball = tmp_path / "release.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        info = tarfile.TarInfo("weights.safetensors")
        info.size = len(pointer())
        archive.addfile(info, io.BytesIO(pointer()))
    report = scan(tmp_path)
    located = sorted((f.rule_id, f.location.display) for f in report.findings if f.level >= Severity.MEDIUM)
    assert located == [
        ("SCN006", f"{bundle}!model/pytorch_model.bin"),
        ("SCN006", f"{tarball}!release.tar!weights.safetensors"),
    ]


def test_clone_without_git_lfs_fails_the_scan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}\n')
    (tmp_path / "model.safetensors").write_bytes(pointer())
    (tmp_path / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    assert main(["scan", str(tmp_path)]) == 1
    assert "SCN006" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text",
    [
        b"version https://git-lfs.github.com/spec/v1\n",  # no oid, no size
        b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n",  # not a SHA-256
        b"version https://example.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 12\n",
        b"To fetch the weights run `git lfs pull`; a pointer starts with\nversion https://git-lfs.github.com/spec/v1\n",
        pointer() + b"x" * 1024,  # pointers are under 1024 bytes
    ],
)
def test_text_that_is_not_a_pointer(text: bytes) -> None:
    assert lfs_pointer(text) is None


def test_empty_file_under_a_model_name(scan_data: ScanData, tmp_path: Path) -> None:
    [finding] = scan_data(b"", "pytorch_model.bin").findings
    assert (finding.rule_id, finding.level) == ("SCN006", Severity.MEDIUM)
    assert finding.evidence == "an empty file named '.bin': not the model"
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("model.pt", b"")
        archive.writestr("__init__.py", b"")
    report = scan(bundle)
    assert [(f.rule_id, f.location.display) for f in report.findings] == [("SCN006", f"{bundle}!model.pt")]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"<!DOCTYPE html><html><body>Access denied</body></html>\n", "text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64, "an image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x01" * 64, "an image"),
    ],
)
def test_text_and_images_under_a_model_name_are_low(scan_data: ScanData, data: bytes, kind: str) -> None:
    [finding] = scan_data(data, "model.pt").findings
    assert (finding.rule_id, finding.level) == ("SCN004", Severity.LOW)
    assert f"the content is {kind}, which no " in finding.evidence and "check that this is the file" in finding.evidence


def test_unknown_binary_under_a_model_name_stays_medium(scan_data: ScanData) -> None:
    [finding] = scan_data(bytes(range(256)) * 4, "model.pt").findings
    assert (finding.rule_id, finding.level) == ("SCN004", Severity.MEDIUM)
