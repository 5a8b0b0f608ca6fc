"""`modelshield convert`: checkpoints written by torch become safetensors that hold exactly the bytes
`torch.load(weights_only=True)` returns (digests committed by scripts/make_convert_fixtures.py), with
no torch here; unsafe or unexpected checkpoints are refused and nothing is written."""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

from modelshield import scan_file
from modelshield.cli import main
from modelshield.convert import ConversionInputError, ConversionRefused, convert, convert_sharded
from modelshield.convert.rebuild import DTYPES
from tests.helpers import evil_pickle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "convert"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FIXTURES / "expected.json").read_text())


def tensors_of(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each tensor's dtype, shape and SHA-256 as written, read straight from the file's layout."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    metadata = header.pop("__metadata__")
    body = data[8 + length :]
    ends = sorted(entry["data_offsets"][1] for entry in header.values())
    assert len(body) == (ends[-1] if ends else 0)
    out = {}
    for name, entry in header.items():
        start, end = entry["data_offsets"]
        out[name] = {
            "dtype": entry["dtype"],
            "shape": entry["shape"],
            "sha256": hashlib.sha256(body[start:end]).hexdigest(),
        }
    return out, metadata


@pytest.mark.parametrize("name", sorted(k for k in EXPECTED if k.endswith(".pt")))
def test_converted_tensors_equal_what_torch_loads(tmp_path: Path, name: str) -> None:
    target = tmp_path / "model.safetensors"
    result = convert(str(FIXTURES / name), str(target))
    written, metadata = tensors_of(target)
    assert metadata == {"format": "pt"}
    expected = {
        key: {"dtype": DTYPES[e["dtype"]].name, "shape": e["shape"], "sha256": e["sha256"]}
        for key, e in EXPECTED[name].items()
    }
    assert written == expected
    assert [t[0] for t in result.tensors] == list(written)
    check = scan_file(str(target))
    assert check.format == "safetensors" and check.findings == []


def test_every_safetensors_dtype_is_covered() -> None:
    assert {DTYPES[e["dtype"]].name for e in EXPECTED["dtypes.pt"].values()} == {d.name for d in DTYPES.values()}


def test_training_checkpoint_keeps_the_state_dict(tmp_path: Path) -> None:
    result = convert(str(FIXTURES / "training.pt"), str(tmp_path / "m.safetensors"))
    assert sorted(result.skipped) == ["arch", "best_score", "epoch", "optimizer"]
    assert [t[0] for t in result.tensors] == ["0.weight", "0.bias", "2.weight", "2.bias"]


def _u(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _i(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tensor_pickle(numel: int, offset: int, size: int) -> bytes:
    """`{'w': _rebuild_tensor_v2(storage '0' of `numel` floats, offset, (size,), (1,), False, OrderedDict())}`."""
    storage = b"(" + _u("storage") + _glob("torch", "FloatStorage") + _u("0") + _u("cpu") + _i(numel) + b"tQ"
    hooks = _glob("collections", "OrderedDict") + b")R"
    call = _glob("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + _i(offset) + _i(size) + b"\x85" + _i(1)
    return b"\x80\x02}" + _u("w") + call + b"\x85\x89" + hooks + b"tRs."


def checkpoint(path: Path, pickle: bytes, records: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle)
        for name, data in records.items():
            archive.writestr(f"archive/data/{name}", data)
    return path


def test_hand_assembled_checkpoint_converts(tmp_path: Path) -> None:
    floats = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
    source = checkpoint(tmp_path / "m.pt", tensor_pickle(4, 1, 3), {"0": floats})
    convert(str(source), str(tmp_path / "m.safetensors"))
    written, _ = tensors_of(tmp_path / "m.safetensors")
    assert written["w"]["sha256"] == hashlib.sha256(floats[4:]).hexdigest()


@pytest.mark.parametrize(
    ("pickle", "records", "reason"),
    [
        (tensor_pickle(4, 2, 4), {"0": bytes(16)}, "TEN001|view reaches element 5 of a storage of 4"),
        (tensor_pickle(8, 0, 4), {"0": bytes(16)}, "holds 16 bytes, the pickle says 32"),
        (tensor_pickle(4, 0, 4), {}, "storage record 0 is missing"),
        (b"\x80\x02" + _glob("collections", "Counter") + b")R.", {}, "imports collections.Counter"),
        (b"\x80\x02]" + tensor_pickle(4, 0, 4)[3 + len(_u("w")) : -2] + b"a.", {"0": bytes(16)}, "not a state dict"),
    ],
)
def test_unexpected_checkpoints_are_refused(
    tmp_path: Path, pickle: bytes, records: dict[str, bytes], reason: str
) -> None:
    source = checkpoint(tmp_path / "m.pt", pickle, records)
    target = tmp_path / "m.safetensors"
    with pytest.raises(ConversionRefused) as refused:
        convert(str(source), str(target))
    reasons = reason.split("|")  # the scanner's rule that refuses it first, or the converter's own check
    explained = [str(refused.value), *(f"{f.rule_id} {f.evidence}" for f in refused.value.findings)]
    assert any(r in text for r in reasons for text in explained)
    assert not target.exists() and list(tmp_path.iterdir()) == [source]


def test_malicious_checkpoint_is_refused_with_its_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = checkpoint(tmp_path / "m.pt", evil_pickle("touch /tmp/owned"), {})
    target = tmp_path / "m.safetensors"
    assert main(["convert", str(source), "-o", str(target)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "conversion refused, nothing written" in err and "PKL001" in err
    assert not target.exists()


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["convert", str(text), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["convert", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "x.safetensors")]) == 2
    with pytest.raises(ConversionInputError):
        convert(str(text), str(tmp_path / "x.safetensors"))


def test_cli_converts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "m.safetensors"
    assert main(["convert", str(FIXTURES / "layouts.pt"), "-o", str(target)]) == 0
    assert "11 tensors" in capsys.readouterr().out
    assert main(["scan", str(target)]) == 0


def test_ordered_dict_of_pairs_as_older_torch_wrote_it(tmp_path: Path) -> None:
    """`OrderedDict([[name, tensor], ...])`: how torch under Python 2 pickled a state dict."""
    tensor = tensor_pickle(4, 0, 4)[3 + len(_u("w")) : -2]
    pairs = b"](](" + _u("w") + tensor + b"ee"  # [[ 'w', tensor ]] by EMPTY_LIST, MARK ... APPENDS
    source = checkpoint(
        tmp_path / "m.pt", b"\x80\x02" + _glob("collections", "OrderedDict") + pairs + b"\x85R.", {"0": bytes(16)}
    )
    result = convert(str(source), str(tmp_path / "m.safetensors"))
    assert [t[0] for t in result.tensors] == ["w"]


def test_sharded_checkpoint_becomes_sharded_safetensors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["convert", str(FIXTURES / "sharded"), "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    written: dict[str, dict[str, Any]] = {}
    for shard in sorted(out.glob("*.safetensors")):
        tensors, _ = tensors_of(shard)
        written.update(tensors)
        assert all(index["weight_map"][name] == shard.name for name in tensors)
    expected = {k: {**e, "dtype": DTYPES[e["dtype"]].name} for k, e in EXPECTED["sharded"].items()}
    assert written == expected and sorted(index["weight_map"]) == sorted(expected)
    assert index["metadata"]["total_size"] == sum(p.stat().st_size for p in out.glob("*.safetensors"))
    assert main(["scan", str(out)]) == 0


def test_a_refused_shard_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "sharded"
    source.mkdir()
    for part in (FIXTURES / "sharded").iterdir():
        (source / part.name).write_bytes(part.read_bytes())
    second = sorted(source.glob("*.bin"))[1]
    checkpoint(second, evil_pickle("touch /tmp/owned"), {})
    out = tmp_path / "out"
    with pytest.raises(ConversionRefused):
        convert_sharded(str(source), str(out))
    assert list(out.iterdir()) == []


def test_shard_names_outside_the_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"w": "../elsewhere.bin"}}))
    with pytest.raises(ConversionRefused, match="outside its folder"):
        convert_sharded(str(tmp_path), str(tmp_path / "out"))
