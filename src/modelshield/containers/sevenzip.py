"""7z archives (the nullifAI models were 7z-wrapped PyTorch files), decoded in memory with py7zr.

py7zr's public extraction API checks member names against the file system and aborts the whole archive on a
name like `../x`; that abort is exactly what an attacker wants. So members are registered with py7zr's worker
directly, written into bounded in-memory buffers (never to disk) and scanned by index. Declared sizes, which
bound what py7zr decodes per member, are checked against the limits before anything is decompressed.
"""

from __future__ import annotations

from collections.abc import Iterator

from modelshield.containers.rules import DUPLICATE_NAME, FLAGGED_MEMBER, LINK_ESCAPE, PATH_ESCAPE, SPECIAL_FILE
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.source import Source

MAGIC = b"7z\xbc\xaf\x27\x1c"


class SevenZipHandler(Handler):
    name = "7z"
    label = "7z archive"
    extensions = frozenset({".7z"})
    rules = (PATH_ESCAPE, LINK_ESCAPE, SPECIAL_FILE, DUPLICATE_NAME, FLAGGED_MEMBER)

    def detect(self, source: Source) -> bool:
        return source.head(len(MAGIC)) == MAGIC

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        from modelshield.containers._sevenzip_reader import scan_7z  # noqa: PLC0415 - py7zr is heavy

        yield from scan_7z(source, ctx)
