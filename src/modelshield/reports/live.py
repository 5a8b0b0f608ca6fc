"""The progress display on a terminal (stderr): files done, and the file being read with its bytes.

Imported only when the display appears: rich's progress machinery costs start-up time.
"""

from __future__ import annotations

import os

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from modelshield.core.activity import Board
from modelshield.reports import one_line


class _Reading(ProgressColumn):
    """The earliest-started file still being read, how far, and how many others are in progress."""

    def __init__(self, board: Board) -> None:
        super().__init__()
        self.board = board
        self.sizes: dict[str, int] = {}

    def _size(self, path: str) -> int:
        if path not in self.sizes:
            try:
                self.sizes[path] = os.stat(path).st_size
            except OSError:
                self.sizes[path] = 0
        return self.sizes[path]

    def render(self, task: Task) -> Text:
        reading = self.board.reading()
        if not reading:
            return Text("")
        path, done = reading[0]
        text = Text.assemble((one_line(path), "bold"), f"  {decimal(done)} of {decimal(self._size(path))}")
        if len(reading) > 1:
            text.append(f"  (+{len(reading) - 1} more)", style="dim")
        return text


def display(board: Board) -> Progress:
    """A started display on stderr; the caller updates its one task and stops it."""
    progress = Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        _Reading(board),
        console=Console(stderr=True),
        transient=True,
        refresh_per_second=4,
    )
    progress.start()
    return progress
