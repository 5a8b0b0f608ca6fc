"""Scan bounds: set in the policy, scaled to the memory the analyser spends, reported as limits
(PKL020, medium: not fully analysed), never as an attack; real amplification stays a bomb finding."""

from __future__ import annotations

import gzip
import pickle

from modelshield import Policy
from modelshield.core.limits import Limits
from modelshield.core.policy import parse_policy
from modelshield.core.rules import Severity
from modelshield.formats.pickle.machine import ENTRY_BYTES
from tests.conftest import ScanData
from tests.formats.pickle_build import MARK, MEMOIZE, STOP, binget, evidence, proto, rules
from tests.helpers import evil_pickle

#: Many distinct small objects: one memo entry each, as data pickles of vocabularies have.
ENTRIES = 20_000


def _data_pickle() -> bytes:
    return pickle.dumps({f"token{i}": (i, f"w{i}") for i in range(ENTRIES)}, protocol=4)


def _policy(memory: int) -> Policy:
    return parse_policy({"limits": {"pickle-memory-bytes": memory}}, ["pickle-globals"])


def test_a_memo_past_the_bound_is_a_limit_not_an_accusation(scan_data: ScanData) -> None:
    result = scan_data(_data_pickle(), "vocab.pkl", _policy(ENTRY_BYTES * 1000))
    found = {f.rule_id: f for f in result.findings}
    assert set(found) == {"PKL020"}
    assert found["PKL020"].level is Severity.MEDIUM  # fails the default gate: not fully analysed
    assert "pickle-memory-bytes" in found["PKL020"].evidence


def test_the_bound_scales_with_the_memory_allowed(scan_data: ScanData) -> None:
    assert not rules(scan_data(_data_pickle(), "vocab.pkl", _policy(ENTRY_BYTES * 200_000)))
    assert not rules(scan_data(_data_pickle(), "vocab.pkl"))  # the default budget holds millions of entries


def test_findings_before_the_bound_are_kept(scan_data: ScanData) -> None:
    data = evil_pickle(protocol=4)[:-1] + b"0" + _data_pickle()[2:]
    result = scan_data(data, "model.pkl", _policy(ENTRY_BYTES * 1000))
    assert {"PKL001", "PKL020"} <= rules(result)


def test_shared_reference_amplification_is_still_a_bomb(scan_data: ScanData) -> None:
    data = proto(4) + b"]" + MEMOIZE
    for level in range(10):
        data += MARK + binget(level) * 10 + b"l" + MEMOIZE
    result = scan_data(data + STOP)
    assert "SCN005" in rules(result, Severity.HIGH)
    assert "PKL020" not in rules(result)


def test_trailing_junk_search_is_bounded_and_reported(scan_data: ScanData) -> None:
    window = 64 * 1024
    policy = Policy(limits=Limits(pickle_trailing_search_bytes=window))
    hidden_text = evil_pickle(protocol=0)  # a protocol-0 pickle past the window: not searched for
    hidden_binary = evil_pickle(protocol=2)  # a binary one: still found
    junk = bytes(3 * window)
    data = pickle.dumps([1, 2], protocol=2) + junk + hidden_binary + junk + hidden_text
    result = scan_data(data, "model.pkl", policy)
    assert "PKL001" in rules(result, Severity.CRITICAL)
    assert len(evidence(result, "PKL001")) == 1
    binary_at = len(pickle.dumps([1, 2], protocol=2)) + len(junk)
    reduce_at = binary_at + len(hidden_binary) - 2
    assert [f.location.offset for f in result.findings if f.rule_id == "PKL001"] == [reduce_at]
    assert any("pickle-trailing-search-bytes" in text for text in evidence(result, "PKL020"))
    # Within the window both are found, and nothing is reported as cut.
    wide = scan_data(data, "model.pkl", Policy(limits=Limits(pickle_trailing_search_bytes=64 * window)))
    assert "PKL020" not in rules(wide)
    assert len(evidence(wide, "PKL001")) == 2


def test_trailing_search_past_the_window_in_a_decoded_stream(scan_data: ScanData) -> None:
    window = 64 * 1024
    junk = bytes(5 * window + 3)
    data = pickle.dumps([1, 2], protocol=2) + junk + evil_pickle(protocol=2) + junk
    policy = Policy(limits=Limits(pickle_trailing_search_bytes=window))
    result = scan_data(gzip.compress(data, 1), "model.pkl.gz", policy)
    assert "PKL001" in rules(result, Severity.CRITICAL)
    assert "PKL020" in rules(result)


def test_the_resync_cap_is_reported(scan_data: ScanData) -> None:
    candidates = b"\x80\x02(\xff" * 80  # each a PROTO start that breaks at once
    result = scan_data(pickle.dumps(1, protocol=2) + candidates, "model.pkl")
    assert any("candidate pickles" in text for text in evidence(result, "PKL020"))
