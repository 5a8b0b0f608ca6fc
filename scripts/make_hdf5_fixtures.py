"""Write the pandas / PyTables HDF5 fixtures in tests/fixtures/hdf5 with the real libraries.

Run in a throwaway venv with pandas and tables (the `fixtures` extra), never in CI:
    /work/envs/pd/bin/python scripts/make_hdf5_fixtures.py
The hostile files carry pickles whose __reduce__ names os.system with a harmless sentinel command; this
script only writes them (PyTables pickles the objects) and never reads them back.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pandas as pd
import tables

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "hdf5"
SENTINEL = "touch /tmp/modelshield-hdf5-sentinel"


class Payload:
    """Pickles as a call to os.system; instances are only ever written."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (SENTINEL,))


def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6]})


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")  # PerformanceWarning: PyTables will pickle object types
    frame().to_hdf(OUT / "pandas_frame.h5", key="df", mode="w")
    frame().to_hdf(OUT / "pandas_table.h5", key="df", mode="w", format="table")
    objects = pd.DataFrame({"o": [{"k": 1}, [1, 2], "text"]})
    objects.to_hdf(OUT / "pandas_object_column.h5", key="df", mode="w", complevel=9)
    hostile = pd.DataFrame({"o": [Payload(), 1, "x"]})
    hostile.to_hdf(OUT / "pandas_object_column_os_system.h5", key="df", mode="w", complevel=9)
    path = OUT / "pandas_attribute_os_system.h5"
    with pd.HDFStore(path, mode="w") as store:
        store.put("df", frame())
        store.get_storer("df").attrs.note = Payload()  # PyTables stores it pickled; read_hdf unpickles it
    with tables.open_file(OUT / "tables_vlarray_os_system.h5", mode="w") as handle:
        rows = handle.create_vlarray("/", "objects", tables.ObjectAtom(), expectedrows=1, chunkshape=(1,))
        rows.append(Payload())
    print(
        f"wrote {sorted(p.name for p in OUT.glob('*.h5'))} with pandas {pd.__version__}, tables "
        f"{tables.__version__}, Python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
