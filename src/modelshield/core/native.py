"""Optional C accelerators: built by setup.py when a compiler is there, never required.

Each analyser with a C loop imports it through `load` and keeps its Python loop, which gives the same
results; `MODELSHIELD_PURE_PYTHON=1` (read at import) runs the Python loops even when the C ones are built
(tests compare both ways; a bug report can be checked against the pure path).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

PURE_PYTHON = os.environ.get("MODELSHIELD_PURE_PYTHON", "") not in ("", "0")


def load(name: str) -> ModuleType | None:
    """The built extension module `name`, or None when it was not built (installed without a compiler)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
