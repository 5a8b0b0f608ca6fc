"""Shared shape of the fail-closed handlers for formats that are recognised but not yet analysed."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator

from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.scan_rules import NO_ANALYSER
from modelshield.core.source import Source


class UnanalysedFormat(Handler):
    """Claims a format by content and reports `NO_ANALYSER`, so the file is never called clean.

    A full analyser replaces the subclass outright and keeps its detection function.
    """

    #: what the missing analyser would look for, appended to the evidence
    unchecked: str

    @abstractmethod
    def describe(self, source: Source) -> str:
        """A short identification of the content (version, counts) for the evidence."""

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        yield ctx.finding(NO_ANALYSER, f"{self.describe(source)}; not analysed: {self.unchecked}", format=self.name)
