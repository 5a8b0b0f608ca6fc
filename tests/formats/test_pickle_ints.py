"""BININT and BININT2 read their arguments with prebuilt structs: values and cuts stay exact."""

from __future__ import annotations

import pytest

from tests.conftest import ScanData


@pytest.mark.parametrize(
    ("opcode", "value"),
    [
        (b"J\xfb\xff\xff\xff", "-5"),
        (b"J\x00\x00\x00\x80", "-2147483648"),
        (b"M\xff\xff", "65535"),
        (b"M\x01\x01", "257"),
    ],
)
def test_integer_arguments_are_decoded_exactly(scan_data: ScanData, opcode: bytes, value: str) -> None:
    result = scan_data(b"\x80\x02cos\nsystem\n(" + opcode + b"tR.", "model.pkl")
    assert any(f.rule_id == "PKL001" and f"os.system({value})" in f.evidence for f in result.findings)


@pytest.mark.parametrize("cut", [b"J\x01\x02", b"M\x01"])
def test_integer_argument_cut_by_the_end_of_data_is_malformed(scan_data: ScanData, cut: bytes) -> None:
    result = scan_data(b"\x80\x02]q\x00(" + cut, "model.pkl")
    assert [f.rule_id for f in result.findings] == ["PKL014"]
    assert "ends inside" in result.findings[0].evidence
