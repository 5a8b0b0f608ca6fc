"""Which file each scanning process is reading, and how many of its bytes: what the progress display
on a terminal shows while one large file or the first slow files are scanned.

Off unless a `Watcher` asks for it: then each process owns two integers of a shared array (the index
of the file it is scanning, plus one, and the bytes read from it), which the parent reads when it
redraws. A read costs one check of a global and an addition; nothing crosses processes per read.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelshield.core.report import FileResult

#: This process's cells ([file index + 1 or 0 when idle, bytes read] from `_slot`), None when off.
_cells: MutableSequence[int] | None = None
_slot = 0


def attach(cells: MutableSequence[int] | None, slot: int) -> None:
    """Report into `cells` at `slot` (None: stop reporting)."""
    global _cells, _slot  # one reporter per process
    _cells, _slot = cells, 2 * slot


def started(index: int) -> None:
    cells = _cells
    if cells is not None:
        cells[_slot + 1] = 0
        cells[_slot] = index + 1


def finished() -> None:
    cells = _cells
    if cells is not None:
        cells[_slot] = 0


def read(n: int) -> None:
    """`n` bytes of the current file were read (called by the file readers)."""
    cells = _cells
    if cells is not None:
        cells[_slot + 1] += n


def join_pool(cells: MutableSequence[int] | None, counter: Any) -> None:
    """Process-pool initializer: take the next free slot of the shared cells (None: display off)."""
    if cells is None:
        return
    with counter.get_lock():
        slot = counter.value
        counter.value += 1
    attach(cells if 2 * slot < len(cells) else None, slot)


class Board:
    """The parent's view of what every scanning process is reading."""

    def __init__(self, files: list[str], workers: int) -> None:
        self.files = files
        self.workers = workers
        self.cells: MutableSequence[int]
        self.counter: Any = None
        if workers == 1:
            self.cells = [0, 0]
        else:
            # Imported here: shared memory is needed only by a display on a terminal.
            from multiprocessing import Value  # noqa: PLC0415
            from multiprocessing.sharedctypes import RawArray  # noqa: PLC0415

            self.cells = RawArray("q", 2 * workers)
            self.counter = Value("i", 0)

    def reading(self) -> list[tuple[str, int]]:
        """(path, bytes read) of every file being scanned now, in the order they were given."""
        cells = list(self.cells)
        active = sorted((cells[i] - 1, cells[i + 1]) for i in range(0, len(cells), 2) if cells[i] > 0)
        return [(self.files[index], done) for index, done in active if index < len(self.files)]


class Watcher:
    """A progress callback that also watches which files are being read (the CLI's terminal display)."""

    def __call__(self, result: FileResult, done: int, total: int) -> None:
        """One more file finished: `done` of `total`."""

    def watch(self, board: Board) -> None:
        """Called once, before the first file is scanned."""
