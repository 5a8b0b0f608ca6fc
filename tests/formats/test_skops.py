"""skops archives: every node's callable judged by what skops does with it (SKP001 dangerous, SKP002 not
trusted by skops and unknown, SKP003 not analysed). Real fixtures from scripts/make_package_config_fixtures.py."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from modelshield import scan_file
from modelshield.core.rules import Severity
from modelshield.formats.configs import skops

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "configs" / "skops"


def node(loader: str, module: str, cls: str, **rest: Any) -> dict[str, Any]:
    return {"__loader__": loader, "__module__": module, "__class__": cls, **rest}


def json_node(value: Any) -> dict[str, Any]:
    return node("JsonNode", "builtins", "str", content=json.dumps(value), is_json=True)


def archive(tmp_path: Path, root: dict[str, Any], protocol: int = 2, extra: dict[str, bytes] | None = None) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("schema.json", json.dumps({**root, "protocol": protocol, "_skops_version": "0.16.0"}))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    path = tmp_path / "model.skops"
    path.write_bytes(buffer.getvalue())
    return str(path)


def worst(path: str, rule: str) -> Severity | None:
    levels = [f.level for f in scan_file(path).findings if f.rule_id == rule]
    return max(levels) if levels else None


@pytest.mark.parametrize("name", ["real_pipeline.skops", "real_estimators.skops"])
def test_real_skops_estimators_are_clean(name: str) -> None:
    """Pipelines with a numpy ufunc, trees, forests, SGD losses, histogram boosting, k-means, numpy random
    generators: everything skops.io.dump writes for ordinary models."""
    result = scan_file(str(FIXTURES / name))
    assert "skops" in result.format
    assert [f for f in result.findings if f.level > Severity.INFO] == []


def test_real_search_with_a_scorer_is_low() -> None:
    """GridSearchCV keeps sklearn.metrics.accuracy_score, which skops asks the user to trust: a metric."""
    result = scan_file(str(FIXTURES / "real_search.skops"))
    assert {(f.rule_id, f.level) for f in result.findings if f.level > Severity.INFO} == {("SKP002", Severity.LOW)}


def test_eval_as_a_dict_key_type_is_critical() -> None:
    """Written with the real skops, then the key type edited: `get_untrusted_types` lists builtins.eval."""
    result = scan_file(str(FIXTURES / "eval_key_type.skops"))
    (finding,) = [f for f in result.findings if f.rule_id == "SKP001"]
    assert finding.level is Severity.CRITICAL
    assert finding.location.members == ("schema.json",)
    assert "builtins.eval" in finding.evidence and "key type" in finding.evidence


def test_function_node_naming_os_system_is_critical(tmp_path: Path) -> None:
    transformer = node(
        "ObjectNode",
        "sklearn.preprocessing._function_transformer",
        "FunctionTransformer",
        content=node("DictNode", "builtins", "dict", content={"func": node("FunctionNode", "posix", "system")}),
    )
    assert worst(archive(tmp_path, transformer), "SKP001") is Severity.CRITICAL


def test_protocol_0_function_node_is_judged_by_its_content(tmp_path: Path) -> None:
    """skops' old FunctionNode imports content.module_path.function, whatever __module__ says."""
    old = node("FunctionNode", "numpy", "log1p", content={"module_path": "subprocess", "function": "getoutput"})
    assert worst(archive(tmp_path, old, protocol=0), "SKP001") is Severity.CRITICAL
    assert worst(archive(tmp_path, old, protocol=2), "SKP001") is None  # protocol 2 imports numpy.log1p


def test_operator_call_node_is_critical(tmp_path: Path) -> None:
    """`getattr(operator, 'call')(os.system, cmd)` at construction: an OperatorFuncNode calls its operator."""
    attrs = node("TupleNode", "builtins", "tuple", content=[node("FunctionNode", "os", "system"), json_node("id")])
    found = archive(tmp_path, node("OperatorFuncNode", "operator", "call", attrs=attrs))
    evidence = " ".join(f.evidence for f in scan_file(found).findings if f.rule_id == "SKP001")
    assert "operator.call" in evidence and "os.system" in evidence


def test_method_node_walking_to_a_dunder_is_critical(tmp_path: Path) -> None:
    owner = node("ObjectNode", "sklearn.preprocessing._data", "StandardScaler")
    method = node(
        "MethodNode", "sklearn.preprocessing._data", "StandardScaler", content={"func": "__reduce__", "obj": owner}
    )
    assert worst(archive(tmp_path, method), "SKP001") is Severity.CRITICAL


def test_random_generator_name_in_the_state_is_judged(tmp_path: Path) -> None:
    """RandomGeneratorNode calls numpy.random.<bit_generator> named by a string inside its state."""

    def generator(name: str) -> dict[str, Any]:
        state = node("DictNode", "builtins", "dict", content={"bit_generator": json_node(name)})
        content = {"bit_generator": state, "seed_seq": node("DictNode", "builtins", "dict", content={})}
        return node("RandomGeneratorNode", "numpy.random._generator", "Generator", content=content)

    assert worst(archive(tmp_path, generator("PCG64")), "SKP002") is None
    assert worst(archive(tmp_path, generator("PCG64")), "SKP001") is None
    assert worst(archive(tmp_path, generator("load")), "SKP001") is Severity.HIGH


def test_constructor_node_of_an_unknown_class_needs_trust(tmp_path: Path) -> None:
    unknown = node(
        "ConstructorFromReduceNode",
        "mypkg.model",
        "Wrapper",
        content=node("TupleNode", "builtins", "tuple", content=[]),
    )
    assert worst(archive(tmp_path, unknown), "SKP002") is Severity.MEDIUM
    assert worst(archive(tmp_path, unknown), "SKP001") is None


def test_object_state_of_a_side_effect_class_is_judged(tmp_path: Path) -> None:
    """An ObjectNode's state reaches `__setstate__`: statsmodels' ModelData with a formula runs patsy."""
    state = node(
        "DictNode",
        "builtins",
        "dict",
        content={
            "formula": json_node("y ~ __import__('os').system('id')"),
            "restore_design_info": json_node(True),
        },
    )
    data = node("ObjectNode", "statsmodels.base.data", "ModelData", content=state)
    assert worst(archive(tmp_path, data), "SKP001") is Severity.CRITICAL


def test_names_skops_ignores_are_not_judged(tmp_path: Path) -> None:
    """JsonNode, SliceNode and a json-typed array never import their __module__: no finding for them."""
    ignored = node(
        "ListNode",
        "builtins",
        "list",
        content=[
            node("JsonNode", "os", "system", content="1", is_json=True),
            node("SliceNode", "os", "system", content={"start": 0, "stop": 1, "step": None}),
            node("NdArrayNode", "os", "system", type="json", content=[], shape=json_node([0])),
        ],
    )
    assert [f.rule_id for f in scan_file(archive(tmp_path, ignored)).findings if f.rule_id.startswith("SKP")] == []


def test_unknown_node_type_and_broken_schema_are_reported(tmp_path: Path) -> None:
    assert worst(archive(tmp_path, node("FutureNode", "builtins", "dict")), "SKP003") is Severity.MEDIUM
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("schema.json", b"{not json")
    broken = tmp_path / "broken.skops"
    broken.write_bytes(buffer.getvalue())
    assert worst(str(broken), "SKP003") is Severity.MEDIUM


def test_node_count_and_depth_are_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(skops, "MAX_NODES", 10)
    many = node(
        "ListNode",
        "builtins",
        "list",
        content=[json_node(i) for i in range(20)] + [node("FunctionNode", "os", "system")],
    )
    result = scan_file(archive(tmp_path, many))
    assert any(f.rule_id == "SKP003" and "nodes" in f.evidence for f in result.findings)
    deep: dict[str, Any] = json_node(0)
    for _ in range(skops.MAX_DEPTH + 5):
        deep = node("ListNode", "builtins", "list", content=[deep])
    monkeypatch.setattr(skops, "MAX_NODES", 200_000)
    assert worst(archive(tmp_path, deep), "SKP003") is Severity.MEDIUM


def test_nested_members_go_through_their_own_analysers(tmp_path: Path) -> None:
    """An array member that is really a pickle is the pickle analyser's (skops loads it with
    allow_pickle=False, but a renamed member is still scanned)."""
    payload = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00idq\x85R."
    array = node("NdArrayNode", "numpy", "ndarray", type="numpy", file="a.npy")
    result = scan_file(archive(tmp_path, array, extra={"a.npy": payload}))
    assert any(f.rule_id.startswith("PKL") and f.level is Severity.CRITICAL for f in result.findings)
