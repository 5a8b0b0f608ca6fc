"""The narrow interface every format and container module implements: bytes in, findings out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from modelshield.core.errors import LimitExceeded
from modelshield.core.findings import Finding, Location
from modelshield.core.rules import Rule, Severity
from modelshield.core.source import Source

if TYPE_CHECKING:
    from modelshield.core.engine import Engine
    from modelshield.core.policy import Policy


class Context:
    """What a handler may use while scanning one object: its location, the policy, recursion."""

    def __init__(self, engine: Engine, location: Location, depth: int) -> None:
        self.engine = engine
        self.location = location
        self.depth = depth

    @property
    def policy(self) -> Policy:
        return self.engine.policy

    def finding(
        self,
        rule: Rule,
        evidence: str,
        *,
        offset: int | None = None,
        severity: Severity | None = None,
        member: str | None = None,
        **details: Any,
    ) -> Finding:
        """A finding at this object (or one of its members), optionally at a byte offset."""
        location = self.location.child(member) if member is not None else self.location
        return Finding(rule, location.at(offset), evidence, severity, details)

    def read_whole(self, source: Source, what: str) -> bytes:
        """All of an object a parser needs in memory at once, within the policy's `max_buffer_bytes`;
        over it, `LimitExceeded` (a fail-closed finding): the object is not parsed."""
        limit = self.engine.limits.max_buffer_bytes
        if source.size > limit:
            raise LimitExceeded("max_buffer_bytes", f"{what} of {source.size} bytes is over {limit}")
        return source.read_at(0, source.size)

    def scan_member(self, name: str, source: Source) -> Iterator[Finding]:
        """Scan a member or embedded payload as an object of its own, one level deeper."""
        return self.engine.scan_object(source, self.location.child(name), self.depth + 1)

    def judge_listing(self, names: Sequence[str]) -> Iterator[Finding]:
        """Let every handler judge an archive's member names as a whole (archive handlers call this once):
        formats that are archives of a fixed layout, like `.keras`, report members that do not belong."""
        for handler in self.engine.handlers:
            yield from handler.check_listing(names, self)


class Handler(ABC):
    """One format family. Register an instance in `modelshield.registry` to add a format."""

    #: short stable name used in reports ("pickle", "zip", ...)
    name: str
    #: what users call it ("PyTorch/Python pickle")
    label: str
    #: file-name suffixes that claim this format; content that disagrees is a finding
    extensions: frozenset[str] = frozenset()
    #: the rules this module reports, added to the one catalogue
    rules: Sequence[Rule] = ()
    #: policy allowlist keys this module reads (e.g. "pickle-globals")
    allowlists: Sequence[str] = ()
    #: a wrapper (compression) whose name is judged by what it contains, not by itself
    transparent: bool = False
    #: a second reading of a container another handler walks (torch.package over zip), not another format
    companion: bool = False

    @abstractmethod
    def detect(self, source: Source) -> bool:
        """Whether the bytes are this format; look at as little as possible."""

    @abstractmethod
    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        """Yield findings as they are made, so an error later keeps what came before."""

    def check_listing(self, names: Sequence[str], ctx: Context) -> Iterator[Finding]:
        """Findings about an archive's member names, at the archive's context; only formats stored as
        archives of a known layout have any (members are scanned on their own either way)."""
        return iter(())
