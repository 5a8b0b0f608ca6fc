"""The C data loop of the pickle machine (`_hot.c`); optional, see `machine._native`."""

from typing import Any

def setup(
    fresh: type,
    plain: type,
    blob: type,
    tuple_marker: Any,
    plain_marker: Any,
    markers: dict[str, Any],
    shared_weights: int,
    limit_exceeded: type,
    memo: type,
    off: int,
    arena_max: int,
) -> None: ...
def hot(
    machine: Any, item_cap: int, nested_kept: int, max_weight: int, tuple_slots_max: int, span: int, max_line: int
) -> int: ...
