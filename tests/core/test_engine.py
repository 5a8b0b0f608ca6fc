"""The engine's own decisions: names versus content, fail-closed errors, bounds and de-duplication."""

from __future__ import annotations

import gzip
import io
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelshield import Policy
from modelshield.core.engine import Engine
from modelshield.core.errors import ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.limits import Limits
from modelshield.core.rules import Severity
from modelshield.core.scan_rules import NOT_ANALYSED
from modelshield.core.sniff import classify_plain
from modelshield.core.source import DecodedSource, Source
from tests.conftest import ScanData
from tests.helpers import evil_pickle, is_code_execution


def rules(result: object) -> list[str]:
    return [f.rule_id for f in result.findings]  # type: ignore[attr-defined]


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def test_pickle_named_safetensors_is_a_mismatch_and_still_scanned(scan_data: ScanData) -> None:
    result = scan_data(evil_pickle(), "model.safetensors")
    assert "SCN001" in rules(result)
    assert is_code_execution(result)


def test_pth_tar_is_pytorch_naming_not_a_mismatch(scan_data: ScanData) -> None:
    checkpoint = zipped("archive/data.pkl", b"\x80\x02}q\x00.")
    assert "SCN001" not in rules(scan_data(checkpoint, "checkpoint.pth.tar"))
    assert "SCN001" in rules(scan_data(checkpoint, "weights.tar"))


def test_compressed_content_is_judged_by_what_it_contains(scan_data: ScanData) -> None:
    result = scan_data(gzip.compress(b"\x80\x02}q\x00."), "model.joblib")
    assert rules(result) == []
    assert [o.format for o in result.objects] == ["gzip", "pickle"]


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("model.pt", b"\x00\x01\x02\x03" * 64, [("SCN004", Severity.MEDIUM)]),
        ("model.pkl", b"just some words\n", [("SCN004", Severity.LOW)]),
        ("weights.bin", b"\x00\x01\x02\x03" * 64, []),
        ("model.pkl", b"", [("SCN006", Severity.MEDIUM)]),
        ("model.safetensors", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, [("SCN004", Severity.LOW)]),
        ("model.bin", b"", [("SCN006", Severity.MEDIUM)]),
        ("notes.txt", b"", []),
        ("notes.txt", b"hello\n", []),
    ],
)
def test_unrecognised_content(
    scan_data: ScanData, name: str, data: bytes, expected: list[tuple[str, Severity]]
) -> None:
    result = scan_data(data, name)
    assert [(f.rule_id, f.level) for f in result.findings] == expected
    assert result.is_model is bool(expected)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n....", "image"),
        ("plain text, with ünïcode\n".encode(), "text"),
        (b"\x00\xff\xfe\x01" * 10, "binary"),
    ],
)
def test_classify_plain(head: bytes, kind: str) -> None:
    assert classify_plain(head) == kind


class _Recognises(Handler):
    name = "fake"
    label = "fake format"

    def __init__(self, detect_error: Exception | None = None, scan_error: Exception | None = None) -> None:
        self.detect_error = detect_error
        self.scan_error = scan_error

    def detect(self, source: Source) -> bool:
        if self.detect_error is not None:
            raise self.detect_error
        return True

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        yield ctx.finding(NOT_ANALYSED, "first", offset=1)
        yield ctx.finding(NOT_ANALYSED, "first", offset=1)  # reported once
        if self.scan_error is not None:
            raise self.scan_error


def engine_scan(tmp_path: Path, *handlers: Handler) -> list[tuple[str, str]]:
    path = tmp_path / "x.dat"
    path.write_bytes(b"data")
    result = Engine(handlers, Policy()).scan_file(str(path))
    return [(f.rule_id, f.evidence) for f in result.findings]


def test_a_failing_detector_does_not_stop_the_others(tmp_path: Path) -> None:
    found = engine_scan(tmp_path, _Recognises(detect_error=ScanError("broken")), _Recognises())
    assert found == [("SCN003", "first")]


def test_content_no_detector_could_decide_is_reported(tmp_path: Path) -> None:
    found = engine_scan(tmp_path, _Recognises(detect_error=ScanError("broken stream")))
    assert found == [("SCN003", "could not identify the content: fake format: broken stream")]


def test_analyser_crash_fails_closed_and_keeps_earlier_findings(tmp_path: Path) -> None:
    found = engine_scan(tmp_path, _Recognises(scan_error=KeyError("bug")))
    assert found[0] == ("SCN003", "first")
    assert found[1][0] == "SCN003" and "internal error in the fake analyser: KeyError" in found[1][1]


def test_member_count_bound_is_a_finding(scan_data: ScanData) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(20):
            archive.writestr(f"m{index}.txt", "x")
    result = scan_data(buffer.getvalue(), "many.zip", Policy(limits=Limits(max_members=5)))
    assert set(rules(result)) == {"SCN005"}
    assert len(result.objects) <= 6


def test_depth_bound_is_a_finding(scan_data: ScanData) -> None:
    data = evil_pickle()
    for _ in range(4):
        data = gzip.compress(data)
    result = scan_data(data, "deep.gz", Policy(limits=Limits(max_depth=2)))
    assert rules(result) == ["SCN005"]
    assert "max_depth=2" in result.findings[0].evidence


def test_detection_never_materialises_a_decoded_stream(scan_data: ScanData, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sniffing reads heads only: a compressed pickle is streamed, never held whole in memory."""
    materialised: list[str] = []
    original = DecodedSource._materialize

    def record(self: DecodedSource) -> bytes:
        materialised.append(self._what)
        return original(self)

    monkeypatch.setattr(DecodedSource, "_materialize", record)
    result = scan_data(gzip.compress(pickle.dumps({"w": list(range(1000))}, protocol=4)), "model.pkl.gz")
    assert result.findings == []
    assert [o.format for o in result.objects] == ["gzip", "pickle"]
    assert materialised == []
