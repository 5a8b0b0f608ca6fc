"""Reading small JSON configuration files (tokenizer configs, shard indexes) recognised by content."""

from __future__ import annotations

import json
from typing import Any

from modelshield.core.source import Source

#: Configuration files larger than this are not parsed: real ones are kilobytes to a few megabytes.
MAX_JSON_BYTES = 64 * 1024 * 1024
_LEADING = b"\xef\xbb\xbf \t\r\n"


def json_document(source: Source, *markers: bytes, opening: bytes = b"{") -> Any:
    """The file parsed as JSON if it starts with `opening` and contains one of `markers`, else None.

    The cheap checks (the opening bracket, a marker key somewhere) keep detection fast on the many
    files that are not this config; only candidates are parsed in full.
    """
    # The head first: asking a decoded stream for its size decodes all of it.
    if not source.head(64).lstrip(_LEADING).startswith(opening) or source.size > MAX_JSON_BYTES:
        return None
    raw = source.read_at(0, source.size)
    # A key may be spelled with \u escapes (`"chat\u005ftemplate"`): json.loads reads it as the
    # marker, so escaped text is parsed rather than ruled out by its bytes.
    if b"\\u" not in raw and not any(marker in raw for marker in markers):
        return None
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def json_object(source: Source, *markers: bytes) -> dict[str, Any] | None:
    """The file as a JSON object if it starts like one and contains one of `markers`, else None."""
    obj = json_document(source, *markers)
    return obj if isinstance(obj, dict) else None
