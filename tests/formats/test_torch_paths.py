"""torch loader paths on files torch 2.13 wrote (tests/fixtures/torch_paths/, scripts/make_torch_fixtures.py;
scripts/prove_torch_paths.py proves each hostile one fires in the real loader): torch.package pickles judged
by the shipped source they import (PKG004, PKG002), externs nothing names (PKG005), TorchScript inside a
package (TSC003), `torch.jit.load`, `torch.load(weights_only=False)`."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import pytest

from modelshield import scan_file
from modelshield.core.rules import Severity
from tests.conftest import ScanData

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "torch_paths"


def worst(result: object, rule: str) -> Severity | None:
    found = [f.level for f in result.findings if f.rule_id == rule]  # type: ignore[attr-defined]
    return max(found, default=None)


@pytest.mark.parametrize(
    "name", ["pkg_init_runs_command", "pkg_helper_in_setstate", "pkg_star_import", "pkg_hidden_import"]
)
def test_the_pickle_of_a_real_package_takes_the_verdict_of_the_shipped_source(name: str) -> None:
    """The pickle names an unknown shipped class (PKL006 medium from the pickle analyser); the module it
    imports (or its parent `__init__.py`) runs a command while the pickle is loaded."""
    result = scan_file(str(FIXTURES / f"{name}.pt"))
    (finding,) = [f for f in result.findings if f.rule_id == "PKG004"]
    assert finding.level is Severity.CRITICAL
    assert finding.location.members[-1] == f"{name}/model/model.pkl"
    assert worst(result, "PKG001") is Severity.CRITICAL


def test_a_helper_called_from_setstate_is_shown_as_running_at_load() -> None:
    result = scan_file(str(FIXTURES / "pkg_helper_in_setstate.pt"))
    (finding,) = [f for f in result.findings if f.rule_id == "PKG001"]
    assert "_restore(), which runs at load" in finding.evidence


def test_an_extern_that_no_shipped_source_imports_is_reported() -> None:
    """`os` is imported by a computed name; the exporter was told to extern it."""
    result = scan_file(str(FIXTURES / "pkg_hidden_import.pt"))
    (finding,) = [f for f in result.findings if f.rule_id == "PKG005"]
    assert "'os'" in finding.evidence and finding.level is Severity.HIGH


@pytest.mark.parametrize("name", ["pkg_benign", "pkg_torchscript"])
def test_real_benign_packages_stay_at_most_medium(name: str) -> None:
    result = scan_file(str(FIXTURES / f"{name}.pt"))
    assert not {f.rule_id for f in result.findings} & {"PKG001", "PKG002", "PKG004", "PKG005", "TEN001", "PKL001"}
    assert max((f.level for f in result.findings), default=Severity.INFO) <= Severity.MEDIUM


def test_torchscript_inside_a_real_package_is_judged_as_torchscript() -> None:
    result = scan_file(str(FIXTURES / "pkg_torchscript_saves_at_load.pt"))
    (finding,) = [f for f in result.findings if f.rule_id == "TSC003"]
    assert finding.location.members[-1].startswith("pkg_torchscript_saves_at_load/.data/ts_code/code/__torch__/")
    assert "__setstate__" in finding.evidence and "torch.save" in finding.evidence
    assert "PKL001" not in {f.rule_id for f in result.findings}  # unpackage_script_module loads the archive's own


def test_torchscript_and_reduce_payloads_for_torch_load() -> None:
    assert worst(scan_file(str(FIXTURES / "jit_saves_at_load.pt")), "TSC003") is Severity.HIGH
    assert worst(scan_file(str(FIXTURES / "torch_save_reduce.pt")), "PKL001") is Severity.CRITICAL


def package(modules: dict[str, str], pickled: bytes, externs: str = "torch\n") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pkg/model/model.pkl", pickled)
        for name, text in modules.items():
            archive.writestr(f"pkg/{name}", text)
        archive.writestr("pkg/.data/extern_modules", externs)
    return buffer.getvalue()


NET = b"\x80\x02cmymodels.net\nNet\nq\x00)\x81q\x01."


def test_a_shipped_module_imported_by_the_named_one_decides(scan_data: ScanData) -> None:
    """`mymodels/net.py` is clean but imports `mymodels._boot`, which runs a command at import."""
    modules = {
        "mymodels/__init__.py": "",
        "mymodels/net.py": "from . import _boot\nclass Net:\n    pass\n",
        "mymodels/_boot.py": "import subprocess\nsubprocess.call(['id'])\n",
    }
    result = scan_data(package(modules, NET), "model.pt")
    assert worst(result, "PKG004") is Severity.CRITICAL


def test_a_shipped_module_under_an_extern_name_is_the_host_module(scan_data: ScanData) -> None:
    """The importer adds externs before files; a member under an extern prefix never runs (the importer
    refuses the archive), so the pickle's global is the host module's."""
    modules = {"mymodels/net.py": "import os\nos.system('id')\nclass Net:\n    pass\n"}
    result = scan_data(package(modules, NET, externs="mymodels\nos\n"), "model.pt")
    assert worst(result, "PKG004") is None
    assert worst(result, "PKG001") is Severity.CRITICAL  # the member itself is still reported


def test_an_allowlisted_name_shipped_with_a_payload_is_critical_on_the_pickle(scan_data: ScanData) -> None:
    pickled = pickle.dumps(__import__("collections").OrderedDict(), protocol=4)
    modules = {"collections/__init__.py": "import os\nos.system('id')\nOrderedDict = dict\n"}
    result = scan_data(package(modules, pickled, externs="os\n"), "model.pt")
    (finding,) = [f for f in result.findings if f.rule_id == "PKG002"]
    assert finding.level is Severity.CRITICAL and finding.location.members[-1] == "pkg/model/model.pkl"


def test_externs_the_shipped_code_imports_are_not_reported(scan_data: ScanData) -> None:
    modules = {"mymodels/net.py": "import os.path\nclass Net:\n    root = os.path.join('a', 'b')\n"}
    result = scan_data(package(modules, NET, externs="os\nos.path\nsubprocess\n"), "model.pt")
    assert [f.evidence.split("'")[1] for f in result.findings if f.rule_id == "PKG005"] == ["subprocess"]


def test_a_shipped_module_imported_with_dunder_import_decides(scan_data: ScanData) -> None:
    """Red team: the importer patches `__import__`, so a constant `__import__('mymodels._boot')` in a
    constructor loads a shipped module without an import statement."""
    modules = {
        "mymodels/net.py": "class Net:\n    def __setstate__(self, s):\n        __import__('mymodels._boot')\n",
        "mymodels/_boot.py": "import os\nos.system('id')\n",
    }
    result = scan_data(package(modules, NET, externs="os\n"), "model.pt")
    assert worst(result, "PKG004") is Severity.CRITICAL


def test_the_package_importer_loading_another_pickle_at_load_is_high(scan_data: ScanData) -> None:
    source = "import torch_package_importer as imp\nclass Net:\n    def __setstate__(self, s):\n"
    source += "        self.m = imp.load_pickle('hidden', 'second.pkl')\n"
    result = scan_data(package({"mymodels/net.py": source}, NET), "model.pt")
    assert worst(result, "PKG001") is Severity.HIGH
    assert worst(result, "PKG004") is Severity.HIGH
