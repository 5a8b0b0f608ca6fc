"""Abstract values on the symbolic unpickler's stack, and bounded rendering of them as evidence.

Constants (int, float, str, bytes, bool, None, tuples of values) are plain Python objects; everything the
loader would compute is one of the classes below, so that nothing from the file is ever executed.
"""

from __future__ import annotations

from typing import Any

from modelshield.formats.pickle.names import Name, Verdict

#: Items kept per container: enough for state dicts and argument evidence, bounded for huge lists.
ITEM_CAP = 65_536


class Global:
    """An imported module attribute (or an import the scanner cannot name: EXT codes, dynamic names)."""

    __slots__ = ("called", "name", "offset", "text", "verdict")

    def __init__(self, name: Name | None, verdict: Verdict, text: str, offset: int) -> None:
        self.name = name
        self.verdict = verdict
        self.text = text
        self.offset = offset
        self.called = False

    @property
    def dotted(self) -> str:
        return self.name.dotted if self.name is not None else self.text

    @property
    def raw_note(self) -> str:
        """' (raw: posix.system)' when the file spells the name differently from what the loader imports."""
        name = self.name
        return "" if name is None or name.raw == name.dotted else f" (raw: {name.raw})"


class Call:
    """The result of calling `func` at load time; `trusted` when the callee was allowlisted."""

    __slots__ = ("args", "func", "state", "tag", "trusted")

    def __init__(self, func: Any, args: tuple[Any, ...], trusted: bool, tag: str = "") -> None:
        self.func = func
        self.args = args
        self.trusted = trusted
        self.tag = tag
        self.state: Any = None


class Fresh:
    """A list, dict, set or frozenset the pickle built itself; `weight` counts what it expands to.

    `items` holds at most ITEM_CAP entries (callers cap them); `plain` stays true while every item added
    is plain data, so the memo can drop the container for a `Plain` marker once a parent takes it
    (`slot`: its index in the memo's object list; -1 when not memoised, `-2 - index` once collapsed)."""

    __slots__ = ("items", "kind", "plain", "slot", "weight")

    def __init__(self, kind: str, items: list[Any], weight: int = 0, plain: bool = True) -> None:
        self.kind = kind
        self.items = items
        self.weight = weight
        self.plain = plain
        self.slot = -1


class Plain:
    """What the memo keeps of a container or tuple of plain data once a parent container took it:
    its kind and expansion weight, not its items. Shared between equal (kind, weight) pairs."""

    __slots__ = ("kind", "weight")

    def __init__(self, kind: str, weight: int) -> None:
        self.kind = kind
        self.weight = weight


SHARED_WEIGHTS = 4096
MARKERS: dict[str, list[Plain | None]] = {}  # kind -> marker by weight (below SHARED_WEIGHTS)


def plain_marker(kind: str, weight: int) -> Plain:
    """The marker for a collapsed container: one shared object per small (kind, weight), so that
    millions of small collapsed lists cost one pointer each."""
    if weight >= SHARED_WEIGHTS:
        return Plain(kind, weight)
    table = MARKERS.get(kind)
    if table is None:
        table = MARKERS[kind] = [None] * SHARED_WEIGHTS
    marker = table[weight]
    if marker is None:
        marker = table[weight] = Plain(kind, weight)
    return marker


class Unknown:
    """A value the loader computes from outside the stream (persistent objects, buffers, arrays)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


class Blob:
    """A bytes or text constant too large to keep: its first bytes, its size and its file offset."""

    __slots__ = ("offset", "prefix", "size")

    def __init__(self, prefix: bytes, size: int, offset: int) -> None:
        self.prefix = prefix
        self.size = size
        self.offset = offset


_SHORT = 80
_ITEMS = 6
_DEPTH = 3


def render(value: Any, depth: int = 0) -> str:
    """A short, bounded, Python-like rendering of an abstract value."""
    kind = type(value)
    if kind is str:
        return repr(value) if len(value) <= _SHORT else repr(value[:_SHORT]) + f"...({len(value)} chars)"
    if kind is bytes or kind is bytearray:
        return repr(bytes(value[:48])) + (f"...({len(value)} bytes)" if len(value) > 48 else "")
    if kind is int:
        return repr(value) if value.bit_length() <= 128 else f"<int of {value.bit_length()} bits>"
    if kind is Global:
        return str(value.text)
    if kind is Call:
        return f"{render(value.func, depth + 1)}({render_args(value.args, depth + 1)})"
    if kind is Unknown:
        return f"<{value.what}>"
    if kind is Blob:
        return f"<{value.size} bytes: {value.prefix[:32]!r}...>"
    if kind is Plain:
        return _COLLAPSED.get(value.kind, f"{value.kind}([...])")
    if depth >= _DEPTH and kind in (tuple, Fresh):
        return "..."
    if kind is tuple:
        inner = render_args(value, depth + 1)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if kind is Fresh:
        if value.kind == "dict":
            pairs = value.items
            shown = ", ".join(f"{render(k, depth + 1)}: {render(v, depth + 1)}" for k, v in pairs[:_ITEMS])
            return "{" + shown + (", ..." if len(pairs) > _ITEMS else "") + "}"
        inner = render_args(value.items, depth + 1)
        return {"list": f"[{inner}]", "set": f"{{{inner}}}"}.get(value.kind, f"{value.kind}([{inner}])")
    return repr(value)[:_SHORT]


_COLLAPSED = {"list": "[...]", "dict": "{...}", "set": "{...}", "tuple": "(...)"}


def render_args(args: Any, depth: int = 0) -> str:
    shown = ", ".join(render(a, depth) for a in list(args)[:_ITEMS])
    return shown + (", ..." if len(args) > _ITEMS else "")


def plain(value: Any, depth: int = 0) -> Any:
    """A JSON-friendly form of a constant argument for finding details (bounded: tuples nest deeply)."""
    if value is None or type(value) in (bool, float, str):
        return value
    if type(value) is int:
        return value if value.bit_length() <= 63 else render(value)
    if type(value) is tuple and depth < _DEPTH:
        return [plain(v, depth + 1) for v in value[: _ITEMS * 2]]
    return render(value, depth)
