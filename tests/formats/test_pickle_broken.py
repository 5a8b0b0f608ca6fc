"""Broken streams: the loader runs every opcode before the one it rejects, so a pickle that breaks after
its payload call is a pickle, analysed up to the break, whatever its protocol, name or container."""

from __future__ import annotations

import os
import pickle
import pickletools

import pytest

from modelshield.core.rules import Severity
from tests.conftest import ScanData
from tests.containers.zipbuilder import Member, build
from tests.formats.pickle_build import evidence, rules
from tests.helpers import is_code_execution


class Payload:
    """Pickles as a call of os.system; only ever dumped here, never loaded."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def _after_payload_call(protocol: int) -> tuple[bytes, int]:
    """A real pickle of data around the payload, and the offset just after the REDUCE that calls it."""
    data = pickle.dumps({"weights": [0.5, 1.5], "hook": Payload(), "tail": list(range(30))}, protocol=protocol)
    reduce_at = next(pos for op, _, pos in pickletools.genops(data) if op.name == "REDUCE")
    assert reduce_at is not None
    return data, reduce_at + 1


def _broken(protocol: int, garbage: bytes) -> bytes:
    """The stream with everything after the payload call overwritten (frames keep their length, so the
    loader reads each frame whole and runs it up to the first byte it rejects)."""
    data, cut = _after_payload_call(protocol)
    rest = len(data) - cut
    return data[:cut] + (garbage * rest)[:rest]


BROKEN = [
    (f"protocol {p}, {label}", _broken(p, garbage))
    for p in range(6)
    for label, garbage in [("binary junk", b"\xff"), ("text", b"\nthis is not a pickle ")]
]
IDS = [label for label, _ in BROKEN]


@pytest.mark.parametrize("name", ["model.pkl", "pytorch_model.bin", "weights", "model.txt"])
@pytest.mark.parametrize(("label", "data"), BROKEN, ids=IDS)
def test_broken_stream_reports_the_call_it_ran(label: str, data: bytes, name: str, scan_data: ScanData) -> None:
    result = scan_data(data, name)
    assert result.format == "pickle", label
    assert is_code_execution(result), label
    assert any("os.system('echo pwned')" in text for text in evidence(result, "PKL001"))
    assert "PKL014" in rules(result, Severity.MEDIUM), label


@pytest.mark.parametrize(("label", "data"), BROKEN, ids=IDS)
def test_broken_stream_inside_a_pytorch_zip(label: str, data: bytes, scan_data: ScanData) -> None:
    archive = build([Member("archive/data.pkl", data), Member("archive/version", b"3\n")])
    result = scan_data(archive, "model.pt")
    assert is_code_execution(result, "model.pt!archive/data.pkl"), label
    assert "PKL014" in rules(result, Severity.MEDIUM)


@pytest.mark.parametrize(
    "text",
    [
        b"cat\ndog\nbird\nfish\n",  # a GLOBAL-like start, but nothing is called
        b"(imagine all the people\n",
        b"I am a text file\n",
        b"c\n\n",
        b"(lp0\nI1\naI2\na.",  # a real protocol-0 list (a pickle, and quiet)
    ],
)
def test_text_is_not_a_broken_pickle(text: bytes, scan_data: ScanData) -> None:
    result = scan_data(text, "notes")
    assert not rules(result, Severity.MEDIUM)
