"""Pickle verdicts from the callable catalogue: what real files reference stays quiet, code stays flagged.

Benign cases are pickled by CPython, joblib or the real libraries (tests/fixtures/real/libraries and
code_at_load, written by scripts/make_fixtures.py); hostile ones are assembled opcode by opcode.
"""

from __future__ import annotations
import __future__

import collections.abc
import functools
import io
import os
import pickle
import typing
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest

from modelshield import FileResult, Policy, scan_file
from modelshield.core.rules import Severity
from tests.conftest import ScanData
from tests.formats.pickle_build import (
    APPENDS,
    BUILD,
    EMPTY_DICT,
    EMPTY_LIST,
    EMPTY_TUPLE,
    MARK,
    NEWOBJ,
    NONE,
    REDUCE,
    SETITEM,
    STOP,
    TUPLE,
    TUPLE1,
    TUPLE2,
    binbytes,
    binint1,
    call,
    evidence,
    glob,
    proto,
    rules,
    text,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LIBRARIES = FIXTURES / "real" / "libraries"
GRAPH_MODULE = FIXTURES / "code_at_load" / "torch_fx_graph_module.pt"


def loud(result: FileResult, at_least: Severity = Severity.MEDIUM) -> list[str]:
    return [f"{f.rule_id} {f.level.label}: {f.evidence}" for f in result.findings if f.level >= at_least]


# Harmless names missing from the allowlist -------------------------------------------------------------
HARMLESS: dict[str, object] = {
    "len-and-hash": {"key": len, "hash": hash},
    "typing-forms": [typing.List[int], typing.Optional[str], typing.Union[int, str], typing.Any],  # noqa: UP006, UP007, UP045
    "typing-callable": typing.Callable[[int], str],
    "builtin-generic": list[int],
    "collections-abc": [collections.abc.Mapping, collections.abc.Callable[[int], str]],
    "future-feature": __future__.annotations,
    "record-array": np.rec.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
}


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("name", sorted(HARMLESS))
def test_harmless_standard_objects_are_quiet(scan_data: ScanData, name: str, protocol: int) -> None:
    data = pickle.dumps(HARMLESS[name], protocol=protocol)
    assert not loud(scan_data(data, "data.pkl"), Severity.LOW)


def test_numpy_before_1_17_random_state_spelling_is_quiet(scan_data: ScanData) -> None:
    """numpy < 1.17 pickled RandomState as `numpy.random.__RandomState_ctor()` then BUILD."""
    data = proto(2) + glob("numpy.random", "__RandomState_ctor") + EMPTY_TUPLE + REDUCE + EMPTY_DICT + BUILD + STOP
    assert not rules(scan_data(data))


def test_numpy_core_and_numpy_underscore_core_are_one_name(scan_data: ScanData) -> None:
    for module in ("numpy.core.records", "numpy._core.records"):
        data = proto(2) + glob(module, "recarray") + NONE + TUPLE1 + REDUCE + STOP
        assert not rules(scan_data(data)), module


# sklearn.externals.joblib ----------------------------------------------------------------------------
def test_old_sklearn_joblib_dump_reads_its_inline_arrays(scan_data: ScanData) -> None:
    """scikit-learn < 0.23 dumps name joblib under sklearn.externals: the same NumpyArrayWrapper, whose
    array bytes follow inline and must not be parsed as opcodes."""
    buffer = io.BytesIO()
    joblib.dump({"weights": np.arange(64, dtype=np.float64), "labels": ["a", "b"]}, buffer, protocol=2)
    data = buffer.getvalue().replace(b"cjoblib.numpy_pickle\n", b"csklearn.externals.joblib.numpy_pickle\n")
    assert b"sklearn.externals.joblib" in data
    assert not rules(scan_data(data, "model.pkl"))


def test_old_sklearn_joblib_load_is_judged_as_joblib_load(scan_data: ScanData) -> None:
    result = scan_data(call("sklearn.externals.joblib", "load", text("other.pkl"), p=2))
    (found,) = [f for f in result.findings if f.rule_id == "PKL007"]
    assert found.details["callable"] == "joblib.load"
    assert "raw: sklearn.externals.joblib.load" in found.evidence


# getattr(<global>, '<constant>') ---------------------------------------------------------------------
def getattr_of(module: str, name: str, attr: str) -> bytes:
    return glob("builtins", "getattr") + glob(module, name) + text(attr) + TUPLE2 + REDUCE


def test_getattr_of_a_tensor_operation_is_that_operation(scan_data: ScanData) -> None:
    """How pickle stores `torch.add` and `Tensor.add`: getattr on the class that holds them."""
    for owner in ("_VariableFunctionsClass", "TensorBase"):
        data = proto(2) + getattr_of("torch._C", owner, "add") + STOP
        assert not rules(scan_data(data)), owner


def test_getattr_of_an_unknown_attribute_is_an_unknown_global(scan_data: ScanData) -> None:
    data = proto(2) + getattr_of("mylib.models", "Net", "build") + STOP
    result = scan_data(data)
    assert rules(result) == {"PKL006"}
    assert any("getattr(mylib.models.Net, 'build')" in e for e in evidence(result, "PKL006"))
    # Tensor methods that call Python callables are not tensor operations.
    data = proto(2) + getattr_of("torch._C", "TensorBase", "apply_") + STOP
    assert rules(scan_data(data), Severity.MEDIUM) == {"PKL006"}


GADGET_WALKS = ["os.path system", "collections.OrderedDict __init_subclass__", "torch._C.TensorBase _private"]


@pytest.mark.parametrize("walk", GADGET_WALKS)
def test_getattr_to_a_dangerous_or_private_attribute_stays_a_gadget(scan_data: ScanData, walk: str) -> None:
    owner, attr = walk.split()
    module, _, name = owner.rpartition(".")
    data = proto(2) + getattr_of(module, name, attr) + text("id") + TUPLE1 + REDUCE + STOP
    assert "PKL002" in rules(scan_data(data), Severity.CRITICAL)


def test_getattr_with_a_computed_name_stays_a_gadget(scan_data: ScanData) -> None:
    computed = glob("builtins", "str") + text("sys") + TUPLE1 + REDUCE
    data = proto(2) + glob("builtins", "getattr") + glob("torch._C", "TensorBase") + computed + TUPLE2 + REDUCE + STOP
    assert "PKL002" in rules(scan_data(data), Severity.CRITICAL)


# functools.partial -----------------------------------------------------------------------------------
def test_partial_of_a_data_function_is_quiet(scan_data: ScanData) -> None:
    data = pickle.dumps({"key": functools.partial(len), "args": functools.partial(max, 1)}, protocol=4)
    assert not rules(scan_data(data))


@pytest.mark.parametrize("wrapper", ["partial", "partialmethod"])
def test_partial_of_a_command_is_still_critical(scan_data: ScanData, wrapper: str) -> None:
    data = proto(2) + glob("functools", wrapper) + glob("os", "system") + text("id") + TUPLE2 + REDUCE + STOP
    result = scan_data(data)
    found = [f for f in result.findings if f.rule_id == "PKL001" and f.level is Severity.CRITICAL]
    assert found and "os.system('id')" in found[0].evidence and f"functools.{wrapper}" in found[0].evidence


def test_real_partial_of_os_system_is_critical(scan_data: ScanData) -> None:
    data = pickle.dumps(functools.partial(os.system, "touch /tmp/modelshield-never"), protocol=4)
    assert "PKL001" in rules(scan_data(data), Severity.CRITICAL)


def test_partial_whose_state_swaps_in_a_command_is_still_critical(scan_data: ScanData) -> None:
    """partial's BUILD state (func, args, kwds, dict) replaces the function it was built with."""
    state = MARK + glob("os", "system") + text("id") + TUPLE1 + NONE + NONE + TUPLE
    data = proto(2) + glob("functools", "partial") + glob("builtins", "len") + TUPLE1 + REDUCE + state + BUILD + STOP
    assert "PKL001" in rules(scan_data(data), Severity.CRITICAL)


# Third-party library classes -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gensim_word2vec.model", "statsmodels_ols_formula.pickle", "crfsuite_crf.pkl"])
def test_library_models_are_low_and_name_their_package(name: str) -> None:
    result = scan_file(str(LIBRARIES / name))
    assert result.format == "pickle"
    assert not loud(result)
    package = {"gensim": "gensim", "statsmodels": "statsmodels", "crfsuite": "sklearn_crfsuite"}[
        name.split("_", maxsplit=1)[0]
    ]
    assert any(f.level is Severity.LOW and f"needs {package} installed" in f.evidence for f in result.findings)


def test_unknown_module_class_stays_medium(scan_data: ScanData) -> None:
    data = proto(2) + glob("mylib.models", "Net") + EMPTY_TUPLE + NEWOBJ + EMPTY_DICT + BUILD + STOP
    assert rules(scan_data(data), Severity.MEDIUM) == {"PKL006"}


def test_policy_trusts_a_module_prefix() -> None:
    path = str(LIBRARIES / "gensim_word2vec.model")
    assert scan_file(path).findings
    assert not scan_file(path, Policy(allow={"pickle-globals": frozenset(["gensim.*"])})).findings


def test_a_prefix_never_trusts_what_the_catalogue_knows_to_be_dangerous(scan_data: ScanData) -> None:
    policy = Policy(allow={"pickle-globals": frozenset(["os.*", "gensim.*"])})
    for data in (call("os", "system", text("id")), call("gensim.utils", "unpickle", text("x.pkl"))):
        assert rules(scan_data(data, policy=policy), Severity.HIGH), data


def build(module: str, name: str, items: dict[str, bytes]) -> bytes:
    """`module.name.__new__()` then BUILD with a dict state of the given opcode-encoded values."""
    state = EMPTY_DICT + b"".join(text(k) + v + SETITEM for k, v in items.items())
    return proto(2) + glob(module, name) + EMPTY_TUPLE + NEWOBJ + state + BUILD + STOP


def test_file_resource_writing_outside_the_temp_directory_is_high(scan_data: ScanData) -> None:
    """sklearn_crfsuite's FileResource.__setstate__ writes the state's bytes to mkstemp(suffix, prefix)."""
    items = {"__FILE_RESOURCE_DATA__": binbytes(b"* * * * * root sh /tmp/x\n"), "name": NONE}
    module = "sklearn_crfsuite._fileresource"
    assert not rules(scan_data(build(module, "FileResource", {**items, "prefix": text("model")})), Severity.MEDIUM)
    hostile = scan_data(build(module, "FileResource", {**items, "prefix": text("/etc/cron.d/job")}))
    assert "PKL005" in rules(hostile, Severity.HIGH)


def test_statsmodels_formula_that_runs_code_is_critical(scan_data: ScanData) -> None:
    """statsmodels' ModelData.__setstate__ hands the pickled formula to patsy, which evaluates it."""
    items = {"restore_design_info": b"\x88", "formula": text("y ~ __import__('os').system('id')")}
    result = scan_data(build("statsmodels.base.data", "PandasData", items))
    found = [f for f in result.findings if f.level is Severity.CRITICAL and f.rule_id == "PKL001"]
    assert found and "patsy" in found[0].evidence and "system" in found[0].evidence


# babel's plural rules: a pickled syntax tree that babel compiles to Python and evals when used --------
@pytest.mark.parametrize("name", ["babel_ak.dat", "babel_plural_rule.pkl"])
def test_babel_locale_data_and_plural_rules_are_low(name: str) -> None:
    """The locale data Babel ships (a pickle per locale) and a rule pickled by babel itself."""
    result = scan_file(str(LIBRARIES / name))
    assert result.format == "pickle"
    assert not loud(result)
    assert any("babel.plural.PluralRule" in f.evidence and f.level is Severity.LOW for f in result.findings)


def plural_rule(value: bytes) -> bytes:
    """A PluralRule rebuilt as babel pickles it (NEWOBJ, then BUILD with its list of (tag, tree) pairs),
    whose one rule is the relation `n in value..value`."""
    node = text("value") + value + TUPLE1 + TUPLE2
    ranges = text("range_list") + EMPTY_LIST + MARK + node + node + TUPLE2 + APPENDS + TUPLE2
    relation = text("relation") + text("in") + text("n") + EMPTY_TUPLE + TUPLE2 + ranges + b"\x87" + TUPLE2
    state = EMPTY_LIST + MARK + text("one") + relation + TUPLE2 + APPENDS
    return proto(2) + glob("babel.plural", "PluralRule") + EMPTY_TUPLE + NEWOBJ + state + BUILD + STOP


def test_plural_rule_of_cldr_grammar_is_low(scan_data: ScanData) -> None:
    result = scan_data(plural_rule(binint1(1)))
    assert not rules(result, Severity.MEDIUM)
    assert "PKL006" in rules(result, Severity.LOW)


def test_plural_rule_that_injects_python_is_critical(scan_data: ScanData) -> None:
    """babel's compiler writes a `value` node with str(v) into the source it evals: a string there is code
    (checked in the real babel 2.16: formatting a plural with such a rule ran the command)."""
    result = scan_data(plural_rule(text("__import__('os').system('touch /tmp/modelshield-marker-babel')")))
    found = [f for f in result.findings if f.level is Severity.CRITICAL and f.rule_id == "PKL001"]
    assert found and "evals it when used" in found[0].evidence and "system" in found[0].evidence


def test_plural_rule_whose_operator_is_a_list_is_judged_not_an_internal_error(scan_data: ScanData) -> None:
    """Found by fuzzing: an unhashable operator made the grammar check raise (SCN003) instead of judging."""
    node = EMPTY_LIST + EMPTY_TUPLE + TUPLE2
    state = EMPTY_LIST + MARK + text("one") + node + TUPLE2 + APPENDS
    result = scan_data(proto(2) + glob("babel.plural", "PluralRule") + EMPTY_TUPLE + NEWOBJ + state + BUILD + STOP)
    assert "SCN003" not in rules(result, Severity.INFO)
    found = [f for f in result.findings if f.rule_id == "PKL001" and f.level is Severity.CRITICAL]
    assert found and "operator that is not a name" in found[0].evidence


def test_plural_rule_whose_tree_the_pickle_computes_is_critical(scan_data: ScanData) -> None:
    result = scan_data(plural_rule(call("builtins", "str", binint1(1), p=2)[2:-1]))
    assert "PKL001" in rules(result, Severity.CRITICAL)


# torch.fx GraphModule --------------------------------------------------------------------------------
def test_real_graph_module_is_reported_as_code_of_tensor_operations() -> None:
    result = scan_file(str(GRAPH_MODULE))
    (found,) = loud(result)
    assert found.startswith("PKL001 medium:")
    assert "only calls tensor and arithmetic operations" in found and "torch.relu" in found


def graph_module(code: str, imports: str = "import torch\n") -> bytes:
    body = EMPTY_DICT + text("training") + b"\x88" + SETITEM + text("_code") + text(code) + SETITEM
    return (
        proto(2) + glob("torch.fx.graph_module", "reduce_graph_module") + body + text(imports) + TUPLE2 + REDUCE + STOP
    )


def test_graph_module_whose_code_runs_a_command_is_critical(scan_data: ScanData) -> None:
    code = "\n\n\ndef forward(self, x):\n    os.system('touch /tmp/modelshield-never')\n    return torch.relu(x)\n"
    result = scan_data(graph_module(code, "import torch\nimport os\n"))
    found = [f for f in result.findings if f.rule_id == "PKL001" and f.level is Severity.CRITICAL]
    assert found and "os.system" in found[0].evidence


def test_hostile_code_in_the_real_graph_module_layout_is_critical(tmp_path: Path) -> None:
    """The real torch.save zip with its forward() code swapped for one that calls os.system."""
    with zipfile.ZipFile(GRAPH_MODULE) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    (name,) = [n for n in members if n.endswith("data.pkl")]
    old = b"relu = torch.relu(linear)"
    new = b"relu = os.system(linear) "
    assert old in members[name] and len(old) == len(new)
    members[name] = members[name].replace(old, new).replace(b"import torch\n", b"import os\n\n\n\n\n\n\n", 1)
    hostile = tmp_path / "model.pt"
    with zipfile.ZipFile(hostile, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    assert "PKL001" in rules(scan_file(str(hostile)), Severity.CRITICAL)


def test_graph_module_whose_code_is_not_a_constant_is_critical(scan_data: ScanData) -> None:
    computed = glob("builtins", "str") + text("x") + TUPLE1 + REDUCE
    body = EMPTY_DICT + text("_code") + computed + SETITEM
    data = proto(2) + glob("torch.fx.graph_module", "reduce_graph_module") + body + text("") + TUPLE2 + REDUCE + STOP
    assert "PKL001" in rules(scan_data(data), Severity.CRITICAL)


# DEP003 noise ----------------------------------------------------------------------------------------
def test_nested_pickle_bytes_are_not_a_dependency_path(scan_data: ScanData) -> None:
    inner = pickle.dumps({"a": 1}, protocol=2)
    result = scan_data(call("pickle", "loads", binbytes(inner)))
    (found,) = [f for f in result.findings if f.rule_id == "PKL007"]
    assert "dependency" not in found.details
    assert not [f for f in result.findings if f.rule_id.startswith("DEP")]


def test_a_path_argument_is_still_a_dependency(scan_data: ScanData) -> None:
    result = scan_data(call("torch", "load", text("../other.pt")))
    (found,) = [f for f in result.findings if f.rule_id == "PKL007"]
    assert found.details["dependency"]["ref"] == "../other.pt"
