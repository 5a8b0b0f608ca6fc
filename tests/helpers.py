"""Hand-assembled hostile payloads and assertions shared by the tests."""

from __future__ import annotations

from modelshield import FileResult
from modelshield.core.rules import Category, Severity


def evil_pickle(command: str = "echo pwned", protocol: int = 2) -> bytes:
    """A pickle that calls os.system(command) when loaded, assembled opcode by opcode."""
    arg = command.encode()
    if protocol == 0:
        return b"cos\nsystem\n(S'" + arg + b"'\ntR."
    return (
        bytes([0x80, protocol])
        + b"cos\nsystem\n"
        + b"X"
        + len(arg).to_bytes(4, "little")
        + arg
        + b"\x85R."
    )


def is_code_execution(result: FileResult, member: str | None = None) -> bool:
    """Whether the result has a high-or-worse load-time code finding (at `member`'s location)."""
    for finding in result.findings:
        if finding.category is not Category.LOAD_TIME_CODE or finding.level < Severity.HIGH:
            continue
        if member is None or finding.location.display.endswith(member):
            return True
    return False
