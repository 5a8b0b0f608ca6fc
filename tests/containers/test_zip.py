"""The zip walker: every anomaly is reported, and a pickle payload behind it is still found."""

from __future__ import annotations

import gc
import io
import struct
import zipfile
from typing import Any

import pytest

from modelshield.core.limits import Limits
from modelshield.core.policy import Policy
from modelshield.core.rules import CATALOGUE
from modelshield.core.source import BytesSource
from modelshield.formats import _archive
from tests.conftest import ScanData
from tests.containers.assertions import has_rule, quiet
from tests.containers.zipbuilder import BZIP2, DEFLATED, S_IFLNK, Member, build
from tests.helpers import evil_pickle, is_code_execution

BENIGN = b"\x80\x02}q\x00."  # an empty dict


def test_plain_member_is_found_at_its_location(scan_data: ScanData) -> None:
    data = build([Member("archive/data.pkl", evil_pickle(), method=DEFLATED)])
    result = scan_data(data, "model.pt")
    assert is_code_execution(result, "model.pt!archive/data.pkl")
    assert not has_rule(result, "ARC007")


def test_bzip2_member_is_decoded(scan_data: ScanData) -> None:
    result = scan_data(build([Member("data.pkl", evil_pickle(), method=BZIP2)]), "m.zip")
    assert is_code_execution(result, "m.zip!data.pkl")


def test_lzma_member_is_decoded(scan_data: ScanData) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_LZMA) as archive:
        archive.writestr("data.pkl", evil_pickle())
    result = scan_data(buffer.getvalue(), "m.zip")
    assert is_code_execution(result, "m.zip!data.pkl")
    assert not has_rule(result, "ARC006")


def test_bad_crc(scan_data: ScanData) -> None:
    data = build([Member("archive/data.pkl", evil_pickle(), crc=0xDEADBEEF)])
    result = scan_data(data, "model.pt")
    assert has_rule(result, "ARC007", "model.pt!archive/data.pkl")
    assert is_code_execution(result, "model.pt!archive/data.pkl")


def test_bad_crc_on_deflated_member(scan_data: ScanData) -> None:
    result = scan_data(build([Member("data.pkl", evil_pickle(), method=DEFLATED, crc=1)]), "model.pt")
    assert has_rule(result, "ARC007", "model.pt!data.pkl")
    assert is_code_execution(result, "model.pt!data.pkl")


def test_encrypted_and_strong_encryption_flags_are_decoded_anyway(scan_data: ScanData) -> None:
    for flag in (0x1, 0x20, 0x40):
        result = scan_data(build([Member("data.pkl", evil_pickle(), method=DEFLATED, flags=flag)]), "model.pt")
        finding = next(f for f in result.findings if f.rule_id == "ARC008")
        assert f"0x{flag:x}" in finding.evidence
        assert is_code_execution(result, "model.pt!data.pkl")


def test_local_and_central_names_differ(scan_data: ScanData) -> None:
    data = build([Member("archive/data.pkl", evil_pickle(), local_name="archive/other.txt")])
    result = scan_data(data, "model.pt")
    finding = next(f for f in result.findings if f.rule_id == "ARC005")
    assert "archive/data.pkl" in finding.evidence and "archive/other.txt" in finding.evidence
    assert is_code_execution(result, "model.pt!archive/data.pkl")


def test_local_and_central_methods_differ(scan_data: ScanData) -> None:
    data = build([Member("data.pkl", evil_pickle(), method=DEFLATED, local_method=0)])
    result = scan_data(data, "model.pt")
    assert has_rule(result, "ARC006", "model.pt!data.pkl")
    assert is_code_execution(result, "model.pt!data.pkl")


def test_declared_size_lies(scan_data: ScanData) -> None:
    data = build([Member("data.pkl", evil_pickle(), method=DEFLATED, usize=3)])
    result = scan_data(data, "model.pt")
    assert has_rule(result, "ARC006", "model.pt!data.pkl")
    assert is_code_execution(result, "model.pt!data.pkl")


def test_duplicate_names_malicious_first(scan_data: ScanData) -> None:
    data = build([Member("archive/data.pkl", evil_pickle()), Member("archive/data.pkl", BENIGN)])
    result = scan_data(data, "model.pt")
    assert has_rule(result, "ARC004", "model.pt!archive/data.pkl[#2]")
    assert is_code_execution(result, "model.pt!archive/data.pkl")
    assert not is_code_execution(result, "model.pt!archive/data.pkl[#2]")


def test_duplicate_names_malicious_second(scan_data: ScanData) -> None:
    data = build([Member("archive/data.pkl", BENIGN), Member("archive/data.pkl", evil_pickle())])
    result = scan_data(data, "model.pt")
    assert has_rule(result, "ARC004", "model.pt!archive/data.pkl[#2]")
    assert is_code_execution(result, "model.pt!archive/data.pkl[#2]")
    assert not is_code_execution(result, "model.pt!archive/data.pkl")


def test_prepended_pickle_is_a_polyglot(scan_data: ScanData) -> None:
    data = build([Member("archive/data.pkl", BENIGN)], prefix=evil_pickle())
    result = scan_data(data, "model.pt")
    assert has_rule(result, "ARC009", "model.pt")
    assert has_rule(result, "SCN002", "model.pt")
    assert is_code_execution(result, "model.pt")
    assert any(o.location == "model.pt" or o.location.endswith("/model.pt") for o in result.objects)


def test_prefix_with_adjusted_offsets(scan_data: ScanData) -> None:
    prefix = evil_pickle()
    data = build([Member("data.pkl", evil_pickle("id"))], prefix=prefix, offsets_include_prefix=True)
    result = scan_data(data, "model.pt")
    prefix_finding = next(f for f in result.findings if f.rule_id == "ARC009")
    assert prefix_finding.evidence.startswith(f"{len(prefix)} bytes")
    assert is_code_execution(result, "model.pt")
    assert is_code_execution(result, "model.pt!data.pkl")


def test_unrecognised_prefix_is_scanned_as_its_own_view(scan_data: ScanData) -> None:
    data = build([Member("data.pkl", BENIGN)], prefix=b"\x00" * 100)
    result = scan_data(data, "model.pt")
    assert has_rule(result, "ARC009", "model.pt")
    assert any(o.location.endswith("model.pt!<prefix>") for o in result.objects)


def test_missing_central_directory(scan_data: ScanData) -> None:
    data = build([Member("archive/data.pkl", evil_pickle(), method=DEFLATED)], central=False)
    result = scan_data(data, "model.pt")
    assert has_rule(result, "ARC012", "model.pt")
    assert is_code_execution(result, "model.pt!archive/data.pkl")


def test_member_only_in_a_local_header(scan_data: ScanData) -> None:
    data = build(
        [
            Member("archive/data.pkl", BENIGN),
            Member("archive/hidden.pkl", evil_pickle(), in_central=False),
            Member("archive/version", b"3\n"),
        ]
    )
    result = scan_data(data, "model.pt")
    assert has_rule(result, "ARC011", "model.pt!archive/hidden.pkl")
    assert is_code_execution(result, "model.pt!archive/hidden.pkl")


def test_hidden_member_before_the_first_listed_one(scan_data: ScanData) -> None:
    data = build([Member("hidden.pkl", evil_pickle(), in_central=False), Member("data.pkl", BENIGN)])
    result = scan_data(data, "model.pt")
    assert has_rule(result, "ARC011", "model.pt!hidden.pkl")
    assert is_code_execution(result, "model.pt!hidden.pkl")


def test_traversal_and_absolute_names(scan_data: ScanData) -> None:
    for name in ("../../evil.pkl", "/tmp/evil.pkl", "C:/evil.pkl", "..\\..\\evil.pkl", "a/../../evil.pkl"):
        result = scan_data(build([Member(name, evil_pickle())]), "bundle.zip")
        assert has_rule(result, "ARC001", f"bundle.zip!{name}"), name
        assert is_code_execution(result, f"bundle.zip!{name}"), name


def test_harmless_dotted_names_are_not_traversal(scan_data: ScanData) -> None:
    result = scan_data(build([Member("a/b/../c.txt", b"x"), Member("..hidden", b"x")]), "bundle.zip")
    assert not has_rule(result, "ARC001")


def test_symlink_member_pointing_outside(scan_data: ScanData) -> None:
    data = build(
        [
            Member("weights", b"../../../home/user/.ssh", mode=S_IFLNK | 0o777),
            Member("data.pkl", evil_pickle()),
        ]
    )
    result = scan_data(data, "bundle.zip")
    assert has_rule(result, "ARC002", "bundle.zip!weights")
    assert is_code_execution(result, "bundle.zip!data.pkl")


def test_symlink_inside_the_archive_is_fine(scan_data: ScanData) -> None:
    result = scan_data(build([Member("a/link", b"../b", mode=S_IFLNK | 0o777)]), "bundle.zip")
    assert not has_rule(result, "ARC002")


def test_pickle_marked_as_symlink_is_still_scanned(scan_data: ScanData) -> None:
    result = scan_data(build([Member("data.pkl", evil_pickle(), mode=S_IFLNK | 0o777)]), "model.pt")
    assert is_code_execution(result, "model.pt!data.pkl")


def test_overlapping_members(scan_data: ScanData) -> None:
    data = bytearray(build([Member("data.pkl", evil_pickle()), Member("b.pkl", BENIGN)]))
    # Point the second central entry at the first member's local header.
    second = data.rfind(b"PK\x01\x02")
    struct.pack_into("<L", data, second + 42, 0)
    result = scan_data(bytes(data), "model.pt")
    assert has_rule(result, "ARC013", "model.pt")
    assert is_code_execution(result, "model.pt!data.pkl")


def test_trailing_bytes(scan_data: ScanData) -> None:
    result = scan_data(build([Member("data.pkl", evil_pickle())], trailing=b"junk" * 10), "model.pt")
    assert has_rule(result, "ARC010", "model.pt")
    assert is_code_execution(result, "model.pt!data.pkl")


def test_wrong_entry_count_in_end_record(scan_data: ScanData) -> None:
    result = scan_data(build([Member("data.pkl", evil_pickle())], entries=5), "model.pt")
    assert has_rule(result, "ARC012", "model.pt")
    assert is_code_execution(result, "model.pt!data.pkl")


def test_corrupt_central_directory_falls_back_to_local_headers(scan_data: ScanData) -> None:
    data = bytearray(build([Member("a.txt", b"x"), Member("data.pkl", evil_pickle())]))
    second = data.rfind(b"PK\x01\x02")
    data[second : second + 4] = b"XXXX"
    result = scan_data(bytes(data), "model.pt")
    assert has_rule(result, "ARC012", "model.pt")
    assert not has_rule(result, "ARC011")
    assert is_code_execution(result, "model.pt!data.pkl")


def test_unsupported_method_fails_closed(scan_data: ScanData) -> None:
    result = scan_data(build([Member("data.pkl", b"x", method=93, payload=b"\x28\xb5\x2f\xfd")]), "model.pt")
    finding = next(f for f in result.findings if f.rule_id == "SCN003")
    assert "zstd" in finding.evidence and finding.location.display.endswith("model.pt!data.pkl")


def test_zip64_archive_from_stdlib(scan_data: ScanData) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, archive.open("archive/data.pkl", "w", force_zip64=True) as f:
        f.write(evil_pickle())
    result = scan_data(buffer.getvalue(), "model.pt")
    assert is_code_execution(result, "model.pt!archive/data.pkl")
    assert not has_rule(result, "ARC006") and not has_rule(result, "ARC012")


def test_member_count_bomb(scan_data: ScanData) -> None:
    members = [Member(f"m{i}", b"") for i in range(30)]
    result = scan_data(build(members), "bundle.zip", Policy(limits=Limits(max_members=10)))
    assert has_rule(result, "SCN005")
    assert len(result.objects) <= 11


def test_ratio_bomb(scan_data: ScanData) -> None:
    zeros = b"\x00" * (4 * 1024 * 1024)
    policy = Policy(limits=Limits(max_ratio=20, ratio_floor_bytes=1024 * 1024))
    result = scan_data(build([Member("zeros.bin", zeros, method=DEFLATED)]), "bundle.zip", policy)
    finding = next(f for f in result.findings if f.rule_id == "SCN005")
    assert finding.details.get("limit") == "max_ratio"


def test_total_bytes_bomb(scan_data: ScanData) -> None:
    members = [Member(f"m{i}.pkl", evil_pickle() + b"\x00" * 100_000, method=DEFLATED) for i in range(5)]
    policy = Policy(limits=Limits(max_total_bytes=250_000))
    result = scan_data(build(members), "bundle.zip", policy)
    finding = next(f for f in result.findings if f.rule_id == "SCN005")
    assert finding.details.get("limit") == "max_total_bytes"
    assert is_code_execution(result, "bundle.zip!m0.pkl")


def test_stdlib_zip_is_quiet(scan_data: ScanData) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", BENIGN)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/data/0", b"\x01\x02\x03\x04" * 1000)
        archive.writestr("README.txt", "hello")
        archive.writestr("folder/", b"")
    result = scan_data(buffer.getvalue(), "model.zip")
    assert quiet(result), result.findings
    assert any(o.location.endswith("model.zip!archive/data.pkl") for o in result.objects)


def test_every_archive_rule_has_a_full_page() -> None:
    import modelshield.registry  # noqa: F401 - registers the catalogue

    archive_rules = [rule for rule in CATALOGUE if rule.id.startswith("ARC")]
    assert len(archive_rules) == 13
    for rule in archive_rules:
        assert rule.overview and rule.attack and rule.impact and rule.remediation
        assert rule.category.value == "archive-and-container"


def test_member_names_are_read_once_per_zip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four detectors ask for a zip's names; its directory is parsed once, and forgotten with the zip."""
    opened: list[object] = []

    class Counting(zipfile.ZipFile):
        def __init__(self, file: Any, *args: Any, **kwargs: Any) -> None:
            opened.append(file)
            super().__init__(file, *args, **kwargs)

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", BENIGN)
    monkeypatch.setattr(_archive.zipfile, "ZipFile", Counting)
    source = BytesSource(buffer.getvalue())
    first, second = _archive.zip_names(source), _archive.zip_names(source)
    assert first == second == ("archive/data.pkl",)
    assert len(opened) == 1
    assert _archive.zip_names(BytesSource(b"PK\x03\x04 broken")) is None
    del source
    gc.collect()
    assert len(_archive._NAMES) == 0
