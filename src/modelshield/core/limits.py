"""Resource bounds that keep a scan finite on hostile input, and the meter that enforces them."""

from __future__ import annotations

from dataclasses import dataclass, fields

from modelshield.core.errors import LimitExceeded

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds per top-level file, and on the dependencies a scan follows; each can be set in the
    policy's `[limits]` table."""

    max_depth: int = 10
    max_members: int = 100_000
    max_total_bytes: int = 8 * 1024 * MiB
    #: real sparse data reaches hundreds to one (a published boolean land mask: 375:1 in an npz), while one
    #: layer of deflate cannot pass about 1032:1: past this, the stream is nested or crafted
    max_ratio: int = 1100
    ratio_floor_bytes: int = 64 * MiB
    max_buffer_bytes: int = 512 * MiB
    #: links followed from a scanned model to a dependency's dependency, and so on
    max_dependency_depth: int = 5
    #: dependencies resolved and scanned in one scan, in all
    max_dependencies: int = 64
    #: memory the pickle analyser may spend on one pickle's stack and memo, counted as held: 8 bytes a
    #: memo index, the bytes of the constants it keeps, 192 bytes an object kept whole (plain data is
    #: collapsed, so a data pickle holds far less than one object per entry); past it the pickle is
    #: reported as not fully analysed (PKL020), not as a bomb
    pickle_memory_bytes: int = 2048 * MiB
    #: bytes after a pickle searched for further protocol 0/1 pickles; past them only binary pickle
    #: starts (PROTO) are searched, at disk speed, and the cut is reported (PKL020)
    pickle_trailing_search_bytes: int = 64 * MiB

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))


class Meter:
    """Counts decompressed bytes for one top-level file across every nested stream."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total = 0

    def add(self, produced: int, consumed: int, stream_out: int, what: str) -> None:
        """Record `produced` new bytes; `stream_out`/`consumed` are that stream's running totals."""
        self.total += produced
        if self.total > self.limits.max_total_bytes:
            raise LimitExceeded(
                "max_total_bytes",
                f"more than {self.limits.max_total_bytes} bytes decompressed in total ({what})",
            )
        if stream_out > self.limits.ratio_floor_bytes and stream_out > self.limits.max_ratio * max(consumed, 1):
            raise LimitExceeded(
                "max_ratio",
                f"{what} expands more than {self.limits.max_ratio}:1 ({consumed} -> {stream_out}+ bytes)",
            )
