"""Frame bookkeeping around large arguments: CPython ends the frame before a big bytes or str object and
writes it unframed; the reader skips such payloads (seeking on files, reading through on streams) and
must keep counting the frame from where the skipped bytes really end."""

from __future__ import annotations

import gzip
import pickle
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from modelshield import Policy
from modelshield.core.engine import Engine
from modelshield.core.findings import Finding, Location
from modelshield.core.limits import Limits, Meter
from modelshield.core.source import BytesSource, DecodedSource, Source
from modelshield.registry import HANDLERS
from tests.conftest import ScanData
from tests.formats.pickle_build import binbytes, frame, glob, proto

#: Sizes past the loader's 64 KiB framing threshold and past the reader's 256 KiB read chunk.
BIG = 300_000

PAYLOADS: dict[str, Callable[[], Any]] = {
    "bytes": lambda: {"blob": b"\x01" * BIG, "after": [1, 2, 3]},
    "str": lambda: ["\u00e9" * BIG, {"k": "v"}],
    "bytearray": lambda: [bytearray(b"\x02" * BIG), (4, 5)],
    "ndarray": lambda: {"w": np.arange(BIG // 8, dtype="<f8"), "b": np.ones(3)},
    "two arrays": lambda: [np.zeros(BIG // 4, dtype="<f4"), np.zeros(BIG // 2, dtype="<i2"), "tail"],
}


def _pickles() -> list[tuple[str, bytes]]:
    out = []
    for protocol in (4, 5):
        for label, make in PAYLOADS.items():
            out.append((f"{label}, protocol {protocol}", pickle.dumps(make(), protocol=protocol)))
    buffers: list[pickle.PickleBuffer] = []
    oob = pickle.dumps([np.zeros(BIG // 8), b"\x03" * BIG], protocol=5, buffer_callback=buffers.append)
    out.append(("out-of-band buffer, protocol 5", oob))
    return out


PICKLES = _pickles()


def _in_memory(data: bytes) -> Source:
    return BytesSource(data)


def _decoded(data: bytes) -> Source:
    """A stream that cannot seek: large arguments are read through."""
    return DecodedSource(BytesSource(gzip.compress(data, 1)), lambda: zlib.decompressobj(31), Meter(Limits()), "gz")


def _scan_source(source: Source) -> list[Finding]:
    return list(Engine(HANDLERS, Policy()).scan_object(source, Location("model.pkl"), 0))


@pytest.mark.parametrize(("label", "data"), PICKLES, ids=[label for label, _ in PICKLES])
def test_large_unframed_objects_are_not_frame_violations_in_files(label: str, data: bytes, scan_data: ScanData) -> None:
    # Before the fix the seek past a large argument left the frame end where it was: PKL013 high.
    result = scan_data(data, "model.pkl")
    assert result.format == "pickle"
    assert [f.rule_id for f in result.findings] == [], label


@pytest.mark.parametrize("make", [_in_memory, _decoded], ids=["in memory", "unseekable stream"])
@pytest.mark.parametrize(("label", "data"), PICKLES, ids=[label for label, _ in PICKLES])
def test_large_unframed_objects_are_not_frame_violations_in_streams(
    label: str, data: bytes, make: Callable[[bytes], Source]
) -> None:
    assert [f.rule_id for f in _scan_source(make(data))] == [], label


def test_argument_crossing_the_frame_after_a_skip_is_still_caught(scan_data: ScanData) -> None:
    """A frame that starts after a skipped large argument is counted from its own start."""
    big = binbytes(b"\x00" * BIG)
    hidden = glob("os", "system") + b"\x8c\x02id\x85R."
    body = b"\x8c\x01a" + b"B" + (len(hidden) + 40).to_bytes(4, "little")  # declared past the frame end
    data = proto(4) + big + b"0" + frame(body) + hidden + b"\x00" * 40
    result = scan_data(data, "model.pkl")
    violations = [f for f in result.findings if f.rule_id == "PKL013"]
    assert violations, [f.rule_id for f in result.findings]
    frame_end = len(proto(4) + big + b"0") + 9 + len(body)
    assert f"frame ends at {frame_end}" in violations[0].evidence
