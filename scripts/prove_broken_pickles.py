"""Show with CPython's own unpickler that a stream broken after its payload call still makes that call.

The unpickler's `find_class` hands out a recording stub, never the real callable, so nothing named in the
stream runs; the stub records each call. For every protocol (0-5), the pickle of a payload object is
overwritten after its REDUCE opcode, as tests/formats/test_pickle_broken.py does, and loaded with both the
C (`_pickle`) and the pure-Python unpickler:

    python scripts/prove_broken_pickles.py
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from typing import Any


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def broken(protocol: int, garbage: bytes) -> bytes:
    data = pickle.dumps({"weights": [0.5, 1.5], "hook": Payload(), "tail": list(range(30))}, protocol=protocol)
    cut = next(pos for op, _, pos in pickletools.genops(data) if op.name == "REDUCE")
    assert cut is not None
    rest = len(data) - cut - 1
    return data[: cut + 1] + (garbage * rest)[:rest]


def record(unpickler_class: type[pickle.Unpickler], data: bytes) -> tuple[list[str], str]:
    calls: list[str] = []

    class Recorder(unpickler_class):  # type: ignore[misc, valid-type]
        def find_class(self, module: str, name: str) -> Any:
            def stub(*args: Any) -> None:
                calls.append(f"{module}.{name}{args!r}")

            return stub

    try:
        Recorder(io.BytesIO(data)).load()
    except Exception as exc:  # the break: report which error the loader raised
        return calls, f"{type(exc).__name__}: {exc}"
    return calls, "loaded"


def main() -> None:
    for protocol in range(6):
        for label, garbage in (("binary junk", b"\xff"), ("text", b"\nthis is not a pickle ")):
            data = broken(protocol, garbage)
            for kind, cls in (("C", pickle.Unpickler), ("Python", pickle._Unpickler)):  # type: ignore[attr-defined]
                calls, outcome = record(cls, data)
                print(f"protocol {protocol}, {label:11}, {kind:6}: calls {calls} then {outcome}")


if __name__ == "__main__":
    main()
