"""Static analysis of Python pickles: every pickle in a file, run symbolically, never loaded."""

from __future__ import annotations

from modelshield.formats.pickle.handler import PickleHandler, looks_like_pickle

__all__ = ["PickleHandler", "looks_like_pickle"]
