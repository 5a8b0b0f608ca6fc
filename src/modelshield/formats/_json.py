"""Reading small JSON configuration files (tokenizer configs, shard indexes) recognised by content."""

from __future__ import annotations

import json
from typing import Any

from modelshield.core.source import Source

#: Configuration files larger than this are not parsed: real ones are kilobytes to a few megabytes.
MAX_JSON_BYTES = 64 * 1024 * 1024
_LEADING = b"\xef\xbb\xbf \t\r\n"


def json_object(source: Source, marker: bytes) -> dict[str, Any] | None:
    """The file as a JSON object if it starts like one and contains `marker`, else None.

    The cheap checks (an opening brace, the marker key somewhere) keep detection fast on the many
    files that are not this config; only candidates are parsed in full.
    """
    if source.size > MAX_JSON_BYTES or not source.head(64).lstrip(_LEADING).startswith(b"{"):
        return None
    raw = source.read_at(0, source.size)
    if marker not in raw:
        return None
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None
