"""The TensorFlow operator catalogue and the frozen data lists it relies on."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from modelshield.core.rules import Rule
from modelshield.formats.tensorflow import ops as tensorflow_ops
from modelshield.formats.tensorflow.ops import (
    CODE_EXECUTION,
    FILE_READ,
    FILE_WRITE,
    NETWORK,
    RUNTIME_GRAPH,
    judge_op,
    judge_symbol,
    registered_ops,
)
from modelshield.formats.tensorflow.tflite import CUSTOM, RULES, STABLEHLO_CUSTOM_CALL


def test_every_catalogued_name_is_a_real_tensorflow_op() -> None:
    named = {*tensorflow_ops.JUDGED_OPS, *tensorflow_ops.CHECKPOINT_OPS, *tensorflow_ops._PYTHON_API.values()}
    assert named - registered_ops() == set()
    assert len(registered_ops()) > 1500


@pytest.mark.parametrize(
    ("op", "rule"),
    [
        ("EagerPyFunc", CODE_EXECUTION),
        ("ReadFile", FILE_READ),
        ("WriteFile", FILE_WRITE),
        ("RpcClient", NETWORK),
        ("DatasetFromGraph", RUNTIME_GRAPH),
    ],
)
def test_judge_op(op: str, rule: Rule) -> None:
    verdict = judge_op(op)
    assert verdict is not None
    assert verdict.rule is rule


@pytest.mark.parametrize("op", ["MatMul", "Send", "Recv", "CollectiveReduceV2", "RemoteCall", "ShardedFilename"])
def test_ordinary_and_cluster_internal_ops_are_not_judged(op: str) -> None:
    assert judge_op(op) is None


@pytest.mark.parametrize(
    ("symbol", "rule"),
    [
        ("tf.io.read_file", FILE_READ),
        ("tf.compat.v1.py_func", CODE_EXECUTION),
        ("py_function", CODE_EXECUTION),
        ("raw_ops.WriteFile", FILE_WRITE),
        ("tf.io.gfile.listdir", FILE_READ),
        ("math.add", None),
        ("nn.relu", None),
    ],
)
def test_judge_symbol(symbol: str, rule: Rule | None) -> None:
    verdict = judge_symbol(symbol)
    assert (verdict.rule if verdict else None) is rule


def test_litert_data_list() -> None:
    text = resources.files("modelshield.formats").joinpath("data/tflite_builtins.json").read_text(encoding="utf-8")
    data = json.loads(text)
    assert data["builtins"]["CUSTOM"] == CUSTOM
    assert data["builtins"]["STABLEHLO_CUSTOM_CALL"] == STABLEHLO_CUSTOM_CALL
    assert set(data["stock_custom_ops"]) == {
        "Mfcc",
        "AudioSpectrogram",
        "TFLite_Detection_PostProcess",
        "NumericVerify",
    }


@pytest.mark.parametrize("rule", [*tensorflow_ops.RULES, *RULES], ids=lambda r: r.id)
def test_threat_pages_are_complete(rule: Rule) -> None:
    page = rule.page()
    for heading in ("## Overview", "## How the attack works", "## Impact", "## Example", "## Remediation"):
        assert heading in page
