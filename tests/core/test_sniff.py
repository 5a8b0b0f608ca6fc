"""Content sniffing helpers that every scan goes through."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelshield.core.sniff import suffix_of


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("model.PT", ".pt"),
        ("archive/data.pkl", ".pkl"),
        ("weights.tar.gz", ".gz"),
        ("dir\\model.bin", ".bin"),
        (".bashrc", ""),
        ("model.", ""),
        ("folder.d/", ".d"),
        ("a/./b.npy/.", ".npy"),
        ("", ""),
    ],
)
def test_suffix_of(name: str, suffix: str) -> None:
    assert suffix_of(name) == suffix


@given(st.text(alphabet="ab./\\ .Xé", max_size=12))
def test_suffix_of_agrees_with_pathlib(name: str) -> None:
    """The engine reads suffixes the way pathlib does (without importing it at start-up)."""
    assert suffix_of(name) == PurePosixPath(name.replace("\\", "/")).suffix.lower()
