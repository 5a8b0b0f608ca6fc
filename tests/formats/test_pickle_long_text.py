"""Protocol-0 text arguments longer than the line bound: skipped like large binary payloads, not fatal.

Real published pickles (pyvi's CRF taggers) carry multi-megabyte STRING arguments; names, numbers and
memo indices must stay short.
"""

from __future__ import annotations

from tests.conftest import ScanData

PREAMBLE = b"(dp0\nS'a'\np1\nI1\nsS'b'\np2\nI2\nsS'key'\np3\n"
LONG = b"a" * 3_000_000


def rules(result: object) -> list[str]:
    return [f.rule_id for f in result.findings]  # type: ignore[attr-defined]


def test_long_string_is_skipped_and_the_payload_after_it_found(scan_data: ScanData) -> None:
    data = PREAMBLE + b"S'" + LONG + b"'\np4\nscos\nsystem\n(S'ls'\ntR."
    result = scan_data(data, "model.pkl")
    (finding,) = result.findings
    assert finding.rule_id == "PKL001"
    assert finding.location.offset == data.index(b"R.")


def test_long_unicode_is_clean(scan_data: ScanData) -> None:
    assert rules(scan_data(PREAMBLE + b"V" + LONG + b"\np4\ns.", "model.pkl")) == []


def test_long_string_cut_by_the_end_of_data_is_malformed(scan_data: ScanData) -> None:
    assert rules(scan_data(PREAMBLE + b"S'" + LONG, "model.pkl")) == ["PKL014"]


def test_long_global_name_is_still_a_bound(scan_data: ScanData) -> None:
    result = scan_data(PREAMBLE + b"c" + LONG + b"\nsystem\n.", "model.pkl")
    assert "SCN005" in rules(result)
