"""Show which encodings of an HDF5 attribute PyTables unpickles when a loader reads the attribute.

Run by hand, never in CI, in a throwaway directory, with an environment that has h5py and PyTables
(/work/envs/tf here):

    cd "$(mktemp -d)" && python /path/to/repo/scripts/prove_pytables_attributes.py

Each attribute holds a protocol-0 pickle that calls `open(sentinel, 'w')` (creating an empty sentinel file
named after the encoding). The script reads every attribute as `pandas.read_hdf` / PyTables does
(`node._v_attrs.<name>`, `tables/attributeset.py`) and prints which sentinels appeared.
tests/formats/test_hdf5_objects.py::test_string_attributes_are_pickles_exactly_when_pytables_unpickles_them
expects exactly these verdicts from the scanner.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import tables


def payload(name: str) -> bytes:
    sentinel = str(Path(f"sentinel-{name}").resolve())
    return f"c__builtin__\nopen\n(V{sentinel}\nVw\ntR.".encode()


ENCODINGS: dict[str, Callable[[h5py.AttributeManager, str, bytes], None]] = {
    "fixed-ascii-scalar": lambda attrs, name, value: attrs.__setitem__(name, np.bytes_(value)),
    "fixed-ascii-nul-padded": lambda attrs, name, value: attrs.create(name, value, dtype=f"S{len(value) + 8}"),
    "vlen-ascii-scalar": lambda attrs, name, value: attrs.create(name, value, dtype=h5py.string_dtype("ascii")),
    "vlen-utf8-scalar": lambda attrs, name, value: attrs.create(name, value.decode(), dtype=h5py.string_dtype()),
    "fixed-utf8-scalar": lambda attrs, name, value: attrs.create(
        name, np.bytes_(value), dtype=h5py.string_dtype("utf-8", len(value))
    ),
    "fixed-ascii-array-1": lambda attrs, name, value: attrs.__setitem__(name, np.array([value])),
    "vlen-ascii-array-2": lambda attrs, name, value: attrs.create(
        name, [value, value], dtype=h5py.string_dtype("ascii")
    ),
}


def main() -> int:
    if any(Path().iterdir()):
        print("run this in an empty throwaway directory (it writes sentinel files)", file=sys.stderr)
        return 2
    with h5py.File("attributes.h5", "w") as handle:
        group = handle.create_group("g")
        for name, store in ENCODINGS.items():
            store(group.attrs, name, payload(name))
    warnings.simplefilter("ignore")
    with tables.open_file("attributes.h5") as handle:
        attrs = handle.root.g._v_attrs
        for name in ENCODINGS:
            value = getattr(attrs, name)
            fired = Path(f"sentinel-{name}").exists()
            print(
                f"{name:24} -> {type(value).__name__:10} {'UNPICKLED (sentinel written)' if fired else 'not unpickled'}"
            )
    print(f"PyTables {tables.__version__}, h5py {h5py.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
