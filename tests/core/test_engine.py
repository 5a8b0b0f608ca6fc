"""The engine's own decisions: names versus content, fail-closed errors, bounds and de-duplication."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

import modelshield
from modelshield import Policy
from modelshield.core.engine import BATCH_BYTES, BATCH_FILES, Engine, work_order
from modelshield.core.errors import ScanError
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.limits import Limits
from modelshield.core.rules import Severity
from modelshield.core.scan_rules import NOT_ANALYSED
from modelshield.core.sniff import classify_plain
from modelshield.core.source import HEAD, DecodedSource, FileSource, Source
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


def test_a_short_head_is_read_and_decoded_once(scan_data: ScanData, monkeypatch: pytest.MonkeyPatch) -> None:
    """A head shorter than asked for is the whole content: the next detector's look costs no read
    (a file) nor a new pass of the decompressor (a gzip member)."""
    streams: list[str] = []
    reads: list[int] = []
    original_stream, original_read = DecodedSource.stream, FileSource.read_at

    def stream(self: DecodedSource) -> BinaryIO:
        streams.append(self._what)
        return original_stream(self)

    def read_at(self: FileSource, offset: int, n: int) -> bytes:
        reads.append(n)
        return original_read(self, offset, n)

    monkeypatch.setattr(DecodedSource, "stream", stream)
    monkeypatch.setattr(FileSource, "read_at", read_at)
    result = scan_data(gzip.compress(bytes(range(256))), "blob.gz")
    assert [o.format for o in result.objects] == ["gzip", "binary"]
    assert len(streams) == 1  # the head; before, each of some thirty detectors decoded it again
    assert reads.count(HEAD) == 1  # the file's head, asked for by every detector


def test_work_order_is_largest_first_in_bounded_batches(tmp_path: Path) -> None:
    sizes = [10, 3 * BATCH_BYTES, 0, BATCH_BYTES // 2, 7, BATCH_BYTES // 2 + 1, *[1] * (BATCH_FILES + 5)]
    paths = []
    for index, size in enumerate(sizes):
        path = tmp_path / f"f{index}"
        path.write_bytes(b"x" * size)
        paths.append(str(path))
    paths.append(str(tmp_path / "missing"))  # unreadable: scanned (and reported) like the smallest
    batches = work_order(paths)
    order = [index for batch in batches for index in batch]
    assert sorted(order) == list(range(len(paths)))
    assert [sizes[i] if i < len(sizes) else 0 for i in order] == sorted([*sizes, 0], reverse=True)
    assert batches[0] == [1]  # a file of at least BATCH_BYTES goes alone
    assert batches[1] == [5]  # two halves would exceed BATCH_BYTES together
    for batch in batches:
        held = sum(os.path.getsize(paths[i]) if i < len(sizes) else 0 for i in batch)
        assert len(batch) <= BATCH_FILES and (held <= BATCH_BYTES or len(batch) == 1)


def test_jobs_report_files_in_the_order_given(tmp_path: Path) -> None:
    # The largest files are scanned first and come back in any order; the report keeps the given one.
    for index in range(40):
        (tmp_path / f"m{index:02d}.pkl").write_bytes(evil_pickle() if index % 7 == 0 else pickle.dumps(b"x" * index))
    one, two = modelshield.scan(tmp_path, jobs=1), modelshield.scan(tmp_path, jobs=2)
    assert [r.path for r in two.files] == [r.path for r in one.files] == sorted(r.path for r in one.files)
    assert [[f.rule_id for f in r.findings] for r in two.files] == [[f.rule_id for f in r.findings] for r in one.files]


def test_scan_file_takes_a_path_object_as_scan_does(tmp_path: Path) -> None:
    """`scan_file(Path(...))` used to fail inside the engine (a Path joined as a str): it is the same scan."""
    path = tmp_path / "model.pkl"
    path.write_bytes(b"cos\nsystem\n(S'id'\ntR.")
    by_path = modelshield.scan_file(path)
    by_text = modelshield.scan_file(str(path))
    assert by_path.path == str(path)
    assert [(f.rule_id, str(f.location), f.evidence) for f in by_path.findings] == [
        (f.rule_id, str(f.location), f.evidence) for f in by_text.findings
    ]
    assert "PKL001" in {f.rule_id for f in by_path.findings}
