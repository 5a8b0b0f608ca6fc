"""Configs stored in safetensors `__metadata__` strings, judged with the YAML analysers' Hydra and PyYAML
knowledge (YML001/YML002/YML003). Real fixtures from scripts/make_package_config_fixtures.py (safetensors)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from modelshield import scan_file
from modelshield.core.rules import Severity

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "configs" / "safetensors"


def safetensors_file(tmp_path: Path, metadata: dict[str, str]) -> str:
    header = json.dumps({"__metadata__": metadata, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})
    raw = header.encode() + b" " * (-len(header) % 8)
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 8)
    return str(path)


def findings(path: str) -> list[tuple[str, Severity, str]]:
    return [(f.rule_id, f.level, f.location.members[-1]) for f in scan_file(path).findings if f.level > Severity.INFO]


def test_real_metadata_is_quiet() -> None:
    """transformers' `format`, kohya-style training metadata with JSON values, and a Hydra config of a
    torch module (a framework target): written with the real safetensors."""
    result = scan_file(str(FIXTURES / "real_metadata.safetensors"))
    assert result.format == "safetensors"
    assert [f.rule_id for f in result.findings if f.level > Severity.INFO] == []


def test_hydra_target_in_metadata_is_critical() -> None:
    (finding,) = [
        f for f in scan_file(str(FIXTURES / "hydra_target_metadata.safetensors")).findings if f.level > Severity.INFO
    ]
    assert finding.rule_id == "YML002" and finding.level is Severity.CRITICAL
    assert finding.location.members == ("__metadata__[config]",)
    assert "builtins.exec" in finding.evidence


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("model:\n  _target_: subprocess.run\n  _args_: [[id]]\n", "YML002"),  # YAML text, not JSON
        ('{"a": "!!python/object/apply:os.system [id]"}', None),  # a string value, not a tag
        ("plain text naming a target", None),
        ("!!python/object/apply:os.system\n- id\n", "YML001"),
    ],
)
def test_yaml_and_tags_in_metadata(tmp_path: Path, value: str, rule: str | None) -> None:
    found = findings(safetensors_file(tmp_path, {"config": value}))
    if rule is None:
        assert found == []
    else:
        assert (rule, Severity.CRITICAL, "__metadata__[config]") in found


def test_metadata_bomb_is_bounded(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    )
    found = findings(safetensors_file(tmp_path, {"config": bomb + "t: {_target_: os.system}\n"}))
    assert any(rule == "YML005" for rule, _, _ in found)


def test_oversized_config_value_fails_closed(tmp_path: Path) -> None:
    big = json.dumps({"_target_": "os.system", "pad": "x" * (300 * 1024)})
    found = findings(safetensors_file(tmp_path, {"config": big}))
    assert any(rule == "YML005" and member == "__metadata__[config]" for rule, _, member in found)
