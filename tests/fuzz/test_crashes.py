"""Every input the fuzzers found crashing the scanner, kept as a regression test: each must now give a
proper fail-closed finding (no internal error, bounded memory; see harness.py)."""

from __future__ import annotations

import lzma
import os
import struct
from pathlib import Path

import pytest

from tests.fuzz import seeds
from tests.fuzz.harness import has, scan_bytes

CRASHES = Path(__file__).resolve().parent / "crashes"


def test_7z_with_a_corrupt_lzma_block_is_not_analysed() -> None:
    # py7zr let lzma.LZMAError escape while reading the (LZMA-packed) header; one flipped bit.
    result = scan_bytes((CRASHES / "7z_corrupt_lzma_block.7z").read_bytes(), "model.7z")
    assert has(result, "SCN003", "Corrupt input data")


def test_zstd_frame_naming_an_unknown_dictionary_is_not_analysed() -> None:
    # ZstdError ('Dictionary mismatch') escaped the zstd decoder, and a zip detector probing the decoded
    # member's tail crashed on it.
    result = scan_bytes((CRASHES / "zstd_unknown_dictionary.pkl.zst").read_bytes(), "data.pkl.zst")
    assert has(result, "SCN003", "Dictionary mismatch")


def test_hdf5_with_a_bad_attribute_message_is_not_analysed() -> None:
    # h5py raised RuntimeError ("Can't synchronously determine if attribute exists") on a flipped bit.
    result = scan_bytes((CRASHES / "hdf5_bad_attribute_message.h5").read_bytes(), "model.h5")
    assert has(result, "SCN003", "HDF5 attributes could not be read")


def test_appends_on_a_dict_keeps_its_items_pairs() -> None:
    # The long fuzz run spliced an APPENDS onto a dict in a cloudpickle payload: the dict then held a
    # bare item, and rendering it as key/value pairs raised TypeError (an internal error). Reduced here:
    # os.system(({} APPENDS 1,)).
    data = b"\x80\x02cos\nsystem\n}(K\x01e\x85R."
    result = scan_bytes(data, "model.pkl")
    assert has(result, "PKL001", "os.system({})")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the HDF5 child process needs fork")
def test_hdf5_attribute_that_hangs_the_library_is_bounded() -> None:
    # Two flipped bits and a splice in a real Keras H5 file make the HDF5 library loop forever reading
    # `model_config` (found by the long fuzz run once HDF5 ran in a child; before, the scan hung). The
    # child is killed at its timeout (1 s under tests/fuzz/conftest.py).
    result = scan_bytes((CRASHES / "hdf5_attribute_read_hangs.h5").read_bytes(), "model.h5")
    assert has(result, "SCN003", "did not finish reading the attributes in 1 s")


def test_lzma_alone_header_claiming_a_huge_dictionary_is_bounded() -> None:
    # A header dictionary of up to 1 GiB made liblzma reserve it while merely probing 4 KiB (a flipped
    # bit at offset 0 turned a .keras zip into such a header): now the decoder has a memory limit, and
    # a stream over it fails closed instead of passing as unknown bytes.
    data = bytearray(lzma.compress(seeds.EVIL_PICKLE, format=lzma.FORMAT_ALONE))
    data[1:5] = struct.pack("<I", 1 << 30)
    result = scan_bytes(bytes(data), "weights.bin")  # measured against harness.MEMORY_BOUND
    assert has(result, "SCN003", "Memory usage limit")


def test_keras_archive_with_a_flipped_first_byte_is_bounded() -> None:
    data = bytearray(seeds.fixture("keras/malicious/k3_lambda.keras"))
    data[0] ^= 1  # 'PK' -> 'QK': read as an lzma-alone header with a 335 MB dictionary
    result = scan_bytes(bytes(data), "k3_lambda.keras")
    assert has(result, "KRS001")
