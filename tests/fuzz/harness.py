"""What a fuzz example must satisfy: the scan ends, no exception escapes it, no handler or detector hits an
internal error (the engine turns those into `SCN003 internal error` findings, or drops a failing detector
silently when another one recognises the bytes), and memory stays within a bound."""

from __future__ import annotations

import os
import tempfile
import tracemalloc

from modelshield import FileResult, Policy
from modelshield.core.engine import Engine
from modelshield.core.handler import Handler
from modelshield.core.limits import Limits
from modelshield.core.source import Source
from modelshield.registry import HANDLERS

#: Peak Python memory one small (< 1 MiB) fuzzed input may make a scan allocate.
MEMORY_BOUND = 192 * 1024 * 1024
#: Tighter bounds than the defaults so a hostile claim hits a limit quickly instead of allocating.
FUZZ_POLICY = Policy(limits=Limits(max_total_bytes=64 * 1024 * 1024, max_buffer_bytes=32 * 1024 * 1024))


class DetectorCrash(AssertionError):
    pass


class _Engine(Engine):
    """The engine records a detector's internal error only when no other handler recognises the bytes;
    the fuzzer fails on it either way."""

    def _identify(self, source: Source) -> tuple[list[Handler], list[str]]:
        detected, problems = super()._identify(source)
        for problem in problems:
            if problem.startswith("internal error"):
                raise DetectorCrash(problem)
        return detected, problems


def scan_path(path: str, policy: Policy = FUZZ_POLICY) -> FileResult:
    """Scan one file with every detector checked; fail the example on any crash."""
    result = _Engine(HANDLERS, policy).scan_file(path)
    assert result.error is None, result.error
    crashes = [f.evidence for f in result.findings if "internal error" in f.evidence]
    assert not crashes, crashes
    return result


def scan_bytes(data: bytes, name: str, policy: Policy = FUZZ_POLICY, measure: bool = True) -> FileResult:
    """Write `data` to a fresh file called `name`, scan it, and check the memory it took."""
    with tempfile.TemporaryDirectory(prefix="modelshield-fuzz-") as folder:
        path = os.path.join(folder, name)
        with open(path, "wb") as out:
            out.write(data)
        if not measure:
            return scan_path(path, policy)
        tracemalloc.start()
        try:
            result = scan_path(path, policy)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < MEMORY_BOUND, f"peak {peak} bytes"
        return result


def has(result: FileResult, rule: str, text: str = "") -> bool:
    return any(f.rule_id == rule and text in f.evidence for f in result.findings)
