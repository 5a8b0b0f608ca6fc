"""Sharded-checkpoint indexes: Hugging Face's own layout is clean; shard names that leave the folder
are high; shards missing next to the index are low; the JSON shape, not the name, decides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelshield import scan_file
from modelshield.core.rules import Severity
from modelshield.core.source import BytesSource
from modelshield.formats.tensors.safetensors_index import SafetensorsIndexHandler


def write_index(folder: Path, weight_map: dict[str, str], name: str = "model.safetensors.index.json") -> Path:
    """An index as transformers' `save_pretrained(max_shard_size=...)` writes it."""
    path = folder / name
    index = {"metadata": {"total_size": 4096}, "weight_map": dict(sorted(weight_map.items()))}
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return path


def sharded_model(folder: Path) -> dict[str, str]:
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save_file({"model.embed_tokens.weight": np.zeros((4, 4), np.float32)}, str(folder / shards[0]), {"format": "pt"})
    save_file({"lm_head.weight": np.zeros((4, 4), np.float32)}, str(folder / shards[1]), {"format": "pt"})
    return {"model.embed_tokens.weight": shards[0], "lm_head.weight": shards[1]}


def test_real_sharded_model_is_clean(tmp_path: Path) -> None:
    index = write_index(tmp_path, sharded_model(tmp_path))
    result = scan_file(str(index))
    assert result.format == "checkpoint-index"
    assert result.findings == []


@pytest.mark.parametrize(
    "shard",
    [
        "../../../tmp/uploads/evil.bin",
        "/etc/passwd",
        "C:\\models\\x.bin",
        "..\\..\\x.bin",
        "https://attacker.example/x.bin",
    ],
)
def test_escaping_shard_is_high(tmp_path: Path, shard: str) -> None:
    weights = sharded_model(tmp_path)
    weights["lm_head.weight"] = shard
    weights["lm_head.bias"] = shard
    result = scan_file(str(write_index(tmp_path, weights, "pytorch_model.bin.index.json")))
    [finding] = result.findings
    assert finding.rule_id == "IDX001" and finding.level is Severity.HIGH
    assert "2 tensor(s)" in finding.evidence
    assert finding.details["shard"] == shard


def test_missing_shard_is_low(tmp_path: Path) -> None:
    weights = sharded_model(tmp_path)
    weights["extra.weight"] = "model-00003-of-00003.safetensors"
    [finding] = scan_file(str(write_index(tmp_path, weights))).findings
    assert finding.rule_id == "IDX002" and finding.level is Severity.LOW


def test_shards_in_a_subfolder_are_inside(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "sub" / "part.safetensors"))
    assert scan_file(str(write_index(tmp_path, {"w": "sub/part.safetensors"}))).findings == []


def test_many_missing_shards_are_capped(tmp_path: Path) -> None:
    weights = {f"w{i}": f"shard-{i}.safetensors" for i in range(30)}
    assert len(scan_file(str(write_index(tmp_path, weights))).findings) == 21


@pytest.mark.parametrize(
    "obj",
    [
        {"weight_map": {"w": 3}},
        {"weight_map": ["model.safetensors"]},
        {"weight_map": {"w": "a.safetensors"}, "metadata": "x"},
        {"metadata": {"total_size": 1}},
        [{"weight_map": {}}],
    ],
)
def test_other_json_is_not_claimed(obj: object) -> None:
    assert not SafetensorsIndexHandler().detect(BytesSource(json.dumps(obj).encode()))


def test_index_under_another_name_is_recognised(tmp_path: Path) -> None:
    index = write_index(tmp_path, {"w": "/abs/shard.safetensors"}, "weights.json")
    assert [f.rule_id for f in scan_file(str(index)).findings] == ["IDX001"]
