"""The callable catalogue (core/callables.py) and the shared Python-source analyser (core/pysource.py)."""

from __future__ import annotations

import pytest

from modelshield.core.callables import Kind, Trust, canonical, judge, judge_state
from modelshield.core.pysource import analyse_generated, formula_problems
from modelshield.core.rules import Severity


@pytest.mark.parametrize(
    ("module", "qualname", "kind", "severity"),
    [
        ("os", "system", Kind.CODE, Severity.CRITICAL),
        ("posix", "system", Kind.CODE, Severity.CRITICAL),
        ("builtins", "getattr", Kind.GADGET, Severity.CRITICAL),
        ("numpy", "__builtins__.eval", Kind.CODE, Severity.CRITICAL),
        ("collections", "OrderedDict._x", Kind.WALK, Severity.CRITICAL),
        ("socket", "create_connection", Kind.ACCESS, Severity.HIGH),
        ("torch", "load", Kind.LOADER, Severity.HIGH),
        ("mylib.models", "Net", Kind.UNKNOWN, Severity.MEDIUM),
        ("gensim.models.word2vec", "Word2Vec", Kind.LIBRARY, Severity.LOW),
        ("gensim.utils", "call_on_class_only", Kind.LIBRARY, Severity.LOW),
        ("gensim.utils", "unpickle", Kind.LOADER, Severity.HIGH),
        ("gensim.corpora.mmcorpus", "MmCorpus", Kind.ACCESS, Severity.HIGH),
        ("collections", "OrderedDict", Kind.DATA, Severity.INFO),
        ("builtins", "len", Kind.DATA, Severity.INFO),
        ("typing", "Optional", Kind.DATA, Severity.INFO),
        ("collections.abc", "Mapping", Kind.DATA, Severity.INFO),
        ("__future__", "_Feature", Kind.DATA, Severity.INFO),
        ("torch.torch_version", "TorchVersion", Kind.DATA, Severity.INFO),
        ("torch._C._VariableFunctionsClass", "add", Kind.DATA, Severity.INFO),
        ("torch._C.TensorBase", "apply_", Kind.UNKNOWN, Severity.MEDIUM),
        ("torch", "from_file", Kind.ACCESS, Severity.HIGH),
        ("pandas", "ExcelWriter", Kind.ACCESS, Severity.HIGH),
        ("numpy.core.multiarray", "fromfile", Kind.ACCESS, Severity.HIGH),
        ("numpy.core.memmap", "memmap", Kind.ACCESS, Severity.HIGH),
        ("rdkit.Chem", "SDMolSupplier", Kind.UNKNOWN, Severity.MEDIUM),
        ("gensim.models.word2vec", "Word2Vec.load", Kind.LOADER, Severity.HIGH),
    ],
)
def test_verdicts_say_what_the_callable_does(module: str, qualname: str, kind: Kind, severity: Severity) -> None:
    verdict = judge(module, qualname)
    assert (verdict.kind, verdict.severity) == (kind, severity), verdict
    assert verdict.package == canonical(module).partition(".")[0]


def test_library_verdicts_name_the_package_the_file_needs() -> None:
    verdict = judge("statsmodels.regression.linear_model", "OLSResults")
    assert verdict.package == "statsmodels"
    assert "needs statsmodels installed" in verdict.reason


@pytest.mark.parametrize(
    ("spelled", "canonical_name"),
    [
        (("sklearn.externals.joblib", "load"), ("joblib", "load")),
        (("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper"), ("joblib.numpy_pickle", "NumpyArrayWrapper")),
        (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")),
        (("numpy.core.records", "recarray"), ("numpy._core.records", "recarray")),
        (("_collections_abc", "Mapping"), ("collections.abc", "Mapping")),
    ],
)
def test_spellings_of_one_thing_get_one_verdict(spelled: tuple[str, str], canonical_name: tuple[str, str]) -> None:
    assert canonical(spelled[0]) == canonical_name[0]
    assert judge(*spelled) == judge(*canonical_name)


def test_sklearn_externals_joblib_is_joblib_not_a_model_loader_by_name() -> None:
    assert judge("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper").kind is Kind.DATA
    assert judge("sklearn.externals.joblib", "load").reason == judge("joblib", "load").reason


def test_module_imports_are_judged_by_the_module() -> None:
    assert judge("torch", "").kind is Kind.DATA
    assert judge("os", "").kind is Kind.CODE
    assert judge("torch", "jit").kind is Kind.CODE
    assert judge("mylib", "").kind is Kind.UNKNOWN


# judge_state ------------------------------------------------------------------------------------------
FILE_RESOURCE = ("sklearn_crfsuite._fileresource", "FileResource")
STANDARD = {"__FILE_RESOURCE_DATA__": b"lCRF", "name": None, "auto": True, "fd": 3, "prefix": "", "suffix": ".crf"}


def test_file_resource_in_its_own_shape_writes_a_temp_file_and_is_low() -> None:
    verdict = judge_state(*FILE_RESOURCE, STANDARD)
    assert verdict is not None and verdict.severity is Severity.LOW and "temporary file" in verdict.reason


@pytest.mark.parametrize(
    "changes",
    [{"prefix": "/etc/cron.d/job"}, {"suffix": "/../../x"}, {"name": "/home/user/.ssh/id_rsa"}],
    ids=["prefix-path", "suffix-path", "named-file"],
)
def test_file_resource_that_writes_or_deletes_elsewhere_is_high(changes: dict[str, object]) -> None:
    state = {**STANDARD, **changes}
    verdict = judge_state(*FILE_RESOURCE, state)
    assert verdict is not None and verdict.kind is Kind.ACCESS and verdict.severity is Severity.HIGH


def test_file_resource_without_data_unlinks_its_name_at_garbage_collection() -> None:
    verdict = judge_state(*FILE_RESOURCE, {"name": "/important", "auto": True, "fd": 0})
    assert verdict is not None and verdict.severity is Severity.HIGH and "unlink" in verdict.reason


@pytest.mark.parametrize(
    ("formula", "kind"),
    [
        ("y ~ np.log(x) + C(g):z - 1", Kind.LIBRARY),
        ("~ x + I(x ** 2)", Kind.LIBRARY),
        ("y ~ __import__('os').system('id')", Kind.CODE),
        ("y ~ x + open('/etc/passwd').read()", Kind.CODE),
        ("y ~ ((", Kind.CODE),
    ],
)
def test_statsmodels_formula_is_judged_by_what_patsy_evaluates(formula: str, kind: Kind) -> None:
    verdict = judge_state("statsmodels.base.data", "PandasData", {"restore_design_info": True, "formula": formula})
    assert verdict is not None and verdict.kind is kind, verdict


def test_statsmodels_data_without_a_readable_formula_is_code() -> None:
    verdict = judge_state("statsmodels.base.data", "ModelData", {"restore_design_info": True})
    assert verdict is not None and verdict.severity is Severity.CRITICAL
    assert judge_state("statsmodels.base.data", "ModelData", {"endog": None}) is None


def test_formula_problems_lists_the_code_it_finds() -> None:
    assert formula_problems("y ~ x * z") == []
    found = formula_problems("y ~ x.__class__")
    assert found and "x.__class__" in found[0]


# Trust ------------------------------------------------------------------------------------------------
def test_trust_prefix_covers_unknown_and_library_names_below_it_only() -> None:
    trust = Trust(["gensim.*", "mylib:*"])
    assert trust.judge("gensim.models.word2vec", "Word2Vec").trusted
    assert trust.judge("mylib.models", "Net").trusted
    assert not trust.judge("gensim.utils", "unpickle").trusted
    assert not trust.judge("gensimx.models", "Net").trusted
    assert not trust.judge("mylib.models", "Net.build").trusted  # an attribute walk, not a class
    assert not Trust(["os.*"]).judge("os", "system").trusted


def test_trust_exact_names_in_both_spellings() -> None:
    for entry in ("mylib.models:Net", "mylib.models.Net"):
        assert Trust([entry]).judge("mylib.models", "Net").trusted
        assert not Trust([entry]).judge("mylib.models", "Other").trusted


# analyse_generated ------------------------------------------------------------------------------------
FX_IMPORTS = (
    "NoneType = type(None)\nfrom builtins import getattr as getattr\nfrom math import inf\nfrom torch import device\n"
    "import torch\nimport torch.fx._pytree as fx_pytree\nimport torch.utils._pytree as pytree\n"
)
FX_FORWARD = """
def forward(self, x):
    linear = self.linear(x);  x = None
    relu = torch.relu(linear);  linear = None
    add = relu + 1
    getattr_1 = add.shape
    return torch.cat([add, add.view(-1, getattr_1[1])], dim = 1)
"""


def test_generated_code_of_tensor_operations_only_is_medium() -> None:
    found = analyse_generated(FX_IMPORTS + FX_FORWARD, "<fx>", judge)
    assert found.problems == []
    assert found.severity is Severity.MEDIUM
    assert found.operations == ["torch.relu", "torch.cat"]


@pytest.mark.parametrize(
    ("code", "quote"),
    [
        ("import os\ndef forward(self, x):\n    os.system('id')\n    return x\n", "os"),
        ("from os import system as relu\ndef forward(self, x):\n    return relu(x)\n", "system"),
        ("import torch\ndef forward(self, x):\n    return torch.load('/tmp/evil.pt')\n", "torch.load"),
        ("def forward(self, x):\n    return eval('x')\n", "eval"),
        ("def forward(self, x):\n    return x.__class__.__base__.__subclasses__()\n", "__class__"),
        ("def forward(self, x):\n    return getattr(x, '__' + 'class__')\n", "getattr"),
        ("import subprocess\n", "subprocess"),
        ("def forward(self, x):\n    x.numpy().tofile('/tmp/x')\n    return x\n", "tofile"),
    ],
    ids=["os-call", "aliased-import", "loader", "eval", "dunder-walk", "computed-getattr", "import-only", "method"],
)
def test_generated_code_that_does_more_than_compute_is_critical(code: str, quote: str) -> None:
    found = analyse_generated(code, "<fx>", judge)
    assert found.severity is Severity.CRITICAL, found
    assert any(quote in str(p) for p in found.problems), found


def test_generated_code_calling_an_unknown_function_is_high() -> None:
    found = analyse_generated("from mylib import op as op\ndef forward(self, x):\n    return op(x)\n", "<fx>", judge)
    assert found.severity is Severity.HIGH
