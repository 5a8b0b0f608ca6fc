"""Tar, 7z and compression wrappers: anomalies are reported and payloads inside are still found."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import sys
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import lz4.frame
import py7zr
import pytest

from modelshield.core.limits import Limits
from modelshield.core.policy import Policy
from modelshield.core.rules import Severity
from tests.conftest import ScanData
from tests.containers.assertions import has_rule, quiet
from tests.containers.zipbuilder import Member, build
from tests.helpers import evil_pickle, is_code_execution

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd


def make_tar(*members: tuple[str, bytes] | tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                archive.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def make_7z(members: dict[str, bytes], password: str | None = None, plain_header: bool = False) -> bytes:
    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w", password=password) as archive:
        if plain_header:
            archive.set_encoded_header_mode(False)
        for name, data in members.items():
            archive.writestr(data, name)
    return buffer.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_tar_member(scan_data: ScanData) -> None:
    result = scan_data(make_tar(("pickle", evil_pickle()), ("storages", b"\x00" * 100)), "legacy.tar")
    assert is_code_execution(result, "legacy.tar!pickle")


def test_tar_traversal_and_absolute_names(scan_data: ScanData) -> None:
    for name in ("../../evil.pkl", "/etc/evil.pkl"):
        result = scan_data(make_tar((name, evil_pickle())), "bundle.tar")
        assert has_rule(result, "ARC001", f"bundle.tar!{name}")
        assert is_code_execution(result, f"bundle.tar!{name}")


def test_tar_links_and_devices(scan_data: ScanData) -> None:
    device = tarfile.TarInfo("dev/sda")
    device.type = tarfile.BLKTYPE
    data = make_tar(
        link("weights", "/home/user/.ssh"),
        link("hard", "../../etc/passwd", tarfile.LNKTYPE),
        link("ok", "data.pkl"),
        device,
        ("data.pkl", evil_pickle()),
    )
    result = scan_data(data, "bundle.tar")
    assert has_rule(result, "ARC002", "bundle.tar!weights")
    assert has_rule(result, "ARC002", "bundle.tar!hard")
    assert not has_rule(result, "ARC002", "bundle.tar!ok")
    assert has_rule(result, "ARC003", "bundle.tar!dev/sda")
    assert is_code_execution(result, "bundle.tar!data.pkl")


def test_tar_duplicates(scan_data: ScanData) -> None:
    result = scan_data(make_tar(("data.pkl", b"\x80\x02N."), ("data.pkl", evil_pickle())), "bundle.tar")
    assert has_rule(result, "ARC004", "bundle.tar!data.pkl[#2]")
    assert is_code_execution(result, "bundle.tar!data.pkl[#2]")


def test_truncated_tar_keeps_earlier_members(scan_data: ScanData) -> None:
    data = make_tar(("data.pkl", evil_pickle()), ("big", b"\x01" * 5000))
    result = scan_data(data[:1500], "bundle.tar")
    assert is_code_execution(result, "bundle.tar!data.pkl")
    assert has_rule(result, "SCN003", "bundle.tar")


def test_tar_in_gzip_too_big_to_buffer(scan_data: ScanData) -> None:
    data = gzip.compress(make_tar(("data.pkl", evil_pickle()), ("pad", b"\x00" * 200_000)))
    result = scan_data(data, "bundle.tar.gz", Policy(limits=Limits(max_buffer_bytes=50_000)))
    finding = next(f for f in result.findings if f.rule_id == "SCN005")
    assert finding.details.get("limit") == "max_buffer_bytes"


def test_7z_member(scan_data: ScanData) -> None:
    result = scan_data(make_7z({"model/data.pkl": evil_pickle(), "model/version": b"3"}), "m.7z")
    assert is_code_execution(result, "m.7z!model/data.pkl")


def test_7z_traversal_name_does_not_stop_the_scan(scan_data: ScanData) -> None:
    data = bytearray(make_7z({"xx/evil.pkl": evil_pickle(), "ok.txt": b"hello"}, plain_header=True))
    # py7zr refuses to write '..' names; patch the UTF-16 name in the plain header instead.
    needle = "xx/evil.pkl".encode("utf-16-le")
    at = data.index(needle)
    data[at : at + 4] = "..".encode("utf-16-le")
    offset, size = struct.unpack_from("<QQ", data, 12)
    struct.pack_into("<L", data, 28, zlib.crc32(data[32 + offset : 32 + offset + size]))
    struct.pack_into("<L", data, 8, zlib.crc32(data[12:32]))
    result = scan_data(bytes(data), "m.7z")
    assert has_rule(result, "ARC001", "m.7z!../evil.pkl")
    assert is_code_execution(result, "m.7z!../evil.pkl")


def test_encrypted_7z_is_not_analysed(scan_data: ScanData) -> None:
    result = scan_data(make_7z({"data.pkl": evil_pickle()}, password="secret"), "m.7z")
    assert has_rule(result, "ARC008", "m.7z")
    assert has_rule(result, "SCN003", "m.7z")


def test_7z_declared_size_over_buffer_limit(scan_data: ScanData) -> None:
    data = make_7z({"data.pkl": evil_pickle(), "zeros": b"\x00" * 100_000})
    result = scan_data(data, "m.7z", Policy(limits=Limits(max_buffer_bytes=50_000)))
    assert has_rule(result, "SCN005", "m.7z!zeros")
    assert is_code_execution(result, "m.7z!data.pkl")


def test_codecs_wrapping_a_pickle(scan_data: ScanData) -> None:
    payload = evil_pickle()
    cases = {
        "model.pkl.gz": gzip.compress(payload),
        "model.pkl.bz2": bz2.compress(payload),
        "model.pkl.xz": lzma.compress(payload),
        "model.pkl.lzma": lzma.compress(payload, format=lzma.FORMAT_ALONE),
        "model.joblib": zlib.compress(payload),
    }
    for name, data in cases.items():
        result = scan_data(data, name)
        inner = name.rsplit(".", 1)[0] if name != "model.joblib" else name
        assert is_code_execution(result, f"{name}!{inner}"), name
        assert not has_rule(result, "SCN001"), name


def test_multi_member_gzip(scan_data: ScanData) -> None:
    data = gzip.compress(b"\x80\x02N") + gzip.compress(evil_pickle()[2:])
    result = scan_data(data, "model.pkl.gz")
    assert is_code_execution(result, "model.pkl.gz!model.pkl")


def test_truncated_gzip_keeps_the_payload_before_the_break(scan_data: ScanData) -> None:
    payload = evil_pickle() + b"\x00" * 50_000
    data = gzip.compress(payload)
    result = scan_data(data[: len(data) // 2], "model.pkl.gz")
    assert is_code_execution(result, "model.pkl.gz!model.pkl")
    assert any(f.rule_id == "SCN003" or "trunc" in f.evidence.lower() for f in result.findings)


@pytest.mark.parametrize(
    ("name", "compress"),
    [("m.pkl.lz4", lz4.frame.compress), ("m.pkl.zst", zstd.compress)],
)
def test_lz4_and_zstd_streams(scan_data: ScanData, name: str, compress: Callable[[bytes], bytes]) -> None:
    result = scan_data(compress(evil_pickle()), name)
    assert is_code_execution(result, f"{name}!m.pkl")


def test_corrupt_lz4_and_zstd_fail_closed(scan_data: ScanData) -> None:
    for name, magic in (("m.pkl.lz4", b"\x04\x22\x4d\x18"), ("m.pkl.zst", b"\x28\xb5\x2f\xfd")):
        result = scan_data(magic + b"\x00" * 32, name)
        assert has_rule(result, "SCN003", f"{name}!m.pkl"), name


def test_zlib_detection_needs_a_decodable_stream(scan_data: ScanData) -> None:
    result = scan_data(b"\x78\x9c" + b"\xff" * 64, "blob.dat")
    assert result.format != "zlib"


def test_nested_zip_in_zip_in_tar_in_gzip_in_7z(scan_data: ScanData) -> None:
    inner = build([Member("archive/data.pkl", evil_pickle())])
    middle = build([Member("model/pytorch_model.bin", inner)])
    tar = make_tar(("bundle.zip", middle))
    data = make_7z({"release.tar.gz": gzip.compress(tar)})
    result = scan_data(data, "release.7z")
    location = "release.7z!release.tar.gz!release.tar!bundle.zip!model/pytorch_model.bin!archive/data.pkl"
    assert is_code_execution(result, location)


def test_depth_bomb(scan_data: ScanData) -> None:
    data = evil_pickle()
    for _ in range(8):
        data = gzip.compress(data)
    result = scan_data(data, "deep.gz", Policy(limits=Limits(max_depth=4)))
    assert has_rule(result, "SCN005")
    assert not is_code_execution(result)


def test_ordinary_archives_are_quiet(scan_data: ScanData) -> None:
    content = {"config.json": b'{"a": 1}', "data.pkl": b"\x80\x02}q\x00.", "weights/0": b"\x01" * 4096}
    archives = {
        "a.tar": make_tar(*content.items()),
        "a.tar.gz": gzip.compress(make_tar(*content.items())),
        "a.7z": make_7z(content),
        "data.pkl.gz": gzip.compress(content["data.pkl"]),
        "data.pkl.xz": lzma.compress(content["data.pkl"]),
    }
    for name, data in archives.items():
        result = scan_data(data, name)
        assert quiet(result), (name, result.findings)
        assert len(result.objects) > 1, name


def test_old_joblib_zfile_is_decoded(scan_data: ScanData) -> None:
    payload = evil_pickle()
    header = b"ZF" + hex(len(payload)).encode().ljust(19)
    result = scan_data(header + zlib.compress(payload), "model.pkl")
    assert result.format == "joblib-zfile"
    assert is_code_execution(result, "model.pkl!model.pkl")


def test_decoded_name_drops_any_compression_suffix(scan_data: ScanData) -> None:
    result = scan_data(zlib.compress(b"\x80\x02}q\x00."), "model.gz")
    assert result.objects[1].location == result.path + "!model"
    assert quiet(result) and not result.findings


def test_data_that_merely_starts_like_lzma_alone_is_not_claimed(scan_data: ScanData) -> None:
    # A MATLAB v4 file whose header bytes happen to pass the lzma-alone header check.
    head = bytes.fromhex("00000000020000000100000000000000") + b"\x0b\x00\x00\x00fit_params\x00\x81"
    result = scan_data(head + bytes(range(256)) * 32, "data.mat")
    assert result.format == "binary"
    assert result.findings == []


def test_tar_member_cut_short_is_reported(scan_data: ScanData) -> None:
    data = make_tar(("big.pkl", evil_pickle() + b"\x00" * 5000))
    result = scan_data(data[:2000], "bundle.tar")
    assert is_code_execution(result, "bundle.tar!big.pkl")
    finding = next(f for f in result.findings if f.rule_id == "SCN003")
    assert "truncated" in finding.evidence and finding.location.display.endswith("bundle.tar!big.pkl")


def test_tar_member_of_unknown_type_is_scanned(scan_data: ScanData) -> None:
    # tarfile's extractfile() and extract() treat an unknown type flag as a regular file: torch.load reads it.
    info = tarfile.TarInfo("pickle")
    info.type = b"Z"
    payload = evil_pickle()
    info.size = len(payload)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        archive.addfile(info, io.BytesIO(payload))
    with tarfile.open(fileobj=io.BytesIO(buffer.getvalue())) as archive:
        extracted = archive.extractfile("pickle")
        assert extracted is not None and extracted.read() == payload
    result = scan_data(buffer.getvalue(), "legacy.tar")
    assert is_code_execution(result, "legacy.tar!pickle")


def test_tar_of_a_zip_checkpoint_is_not_a_polyglot(scan_data: ScanData) -> None:
    """`tar cf model.tar model.pt`: the zip's end record sits near the tar's end, but it is a member."""
    checkpoint = build([Member("archive/data.pkl", b"\x80\x02}q\x00.")])
    result = scan_data(make_tar(("model.pt", checkpoint)), "model.tar")
    assert result.format == "tar"
    assert result.findings == []


def test_tar_of_an_hdf5_file_is_not_a_polyglot(scan_data: ScanData) -> None:
    """An HDF5 file as the first tar member starts at 512, where a user block would end."""
    h5 = Path(__file__).parents[1] / "fixtures" / "keras" / "real" / "k3_functional.h5"
    result = scan_data(make_tar(("model.h5", h5.read_bytes())), "model.tar")
    assert result.format == "tar"
    assert not [f for f in result.findings if f.level >= Severity.MEDIUM]


def test_zip_appended_after_a_tar_is_scanned(scan_data: ScanData) -> None:
    appended = build([Member("data.pkl", evil_pickle())])
    result = scan_data(make_tar(("readme.txt", b"hello\n")) + appended, "bundle.tar")
    assert has_rule(result, "ARC010", "bundle.tar")
    assert is_code_execution(result, "bundle.tar!<trailing data>!data.pkl")
