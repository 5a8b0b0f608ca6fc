"""Memory across files: a scan must leave nothing behind for the next one. Whatever a scan builds is
freed when its result is returned, by reference counting alone: objects left in reference cycles
wait for a full collection, which in a long-running process (the gateway, a `--jobs` worker) comes
only after the next files have grown the heap further."""

from __future__ import annotations

import gc
import gzip
import io
import pickle
import zipfile

import pytest

from tests.conftest import ScanData
from tests.helpers import evil_pickle

DATA = {f"word{i}": [f"form{i % 7}", i, (float(i), None)] for i in range(300)}


def _zip_checkpoint() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(DATA, protocol=2))
        zf.writestr("archive/data/0", b"\0" * 64)
    return out.getvalue()


CASES = {
    "data pickle": (pickle.dumps(DATA, protocol=4), "data.pkl"),
    "gzip pickle": (gzip.compress(pickle.dumps(DATA, protocol=4)), "data.pkl.gz"),
    "two pickles in one stream": (pickle.dumps(DATA, protocol=2) + pickle.dumps(DATA, protocol=4), "two.pkl"),
    "zip checkpoint": (_zip_checkpoint(), "model.pt"),
    "pickle with findings": (evil_pickle(), "evil.pkl"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_scan_leaves_no_reference_cycles(scan_data: ScanData, case: str) -> None:
    data, name = CASES[case]
    expected = scan_data(data, name)  # first imports build classes, which are cyclic by nature
    gc.collect()
    gc.disable()
    try:
        gc.collect()
        result = scan_data(data, name)
        assert result.findings == expected.findings
        del result
        left = gc.collect()
    finally:
        gc.enable()
    assert left == 0, f"the scan left {left} objects that only the cyclic collector can free"
