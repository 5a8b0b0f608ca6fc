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


def test_text_pickle_whose_first_argument_outruns_the_head_is_recognised(scan_data: ScanData) -> None:
    """A long command string right after the GLOBAL must not hide the pickle from detection."""
    for body in (b"V" + b"echo " + b"A" * 5000 + b"\n", b"S'" + b"A" * 2_000_000 + b"'\n"):
        for name in ("model.bin", "pickle", "model.pkl"):
            result = scan_data(b"cos\nsystem\n(" + body + b"tR.", name)
            assert result.format == "pickle", (name, body[:10])
            assert "PKL001" in rules(result)


def test_length_prefixed_argument_longer_than_the_file_is_not_a_pickle(scan_data: ScanData) -> None:
    """Text that merely starts like a GLOBAL ('cat' / 'dog') is not claimed when the next 'opcode'
    declares more bytes than the file has."""
    result = scan_data(b"cat\ndog\nThe quick brown fox " + b"jumps over the lazy dog " * 400, "notes.txt")
    assert result.format == "text"
    assert result.findings == []
