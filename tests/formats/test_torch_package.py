"""torch.package archives: shipped `.py` members judged as code (PKG001), shipped modules named like known
packages (PKG002), members past the bound (PKG003). Fixtures from scripts/make_fixtures.py (torch.package)."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import pytest

from modelshield import scan_file
from modelshield.core.rules import Severity
from tests.conftest import ScanData

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "code_in_archives"
REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"


def package(modules: dict[str, str], pickled: bytes = b"\x80\x02}q\x00.") -> bytes:
    """A torch.package layout (`<root>/.data/extern_modules`) with the given module sources."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pkg/model/model.pkl", pickled)
        for name, text in modules.items():
            archive.writestr(f"pkg/{name}", text)
        archive.writestr("pkg/.data/extern_modules", "torch\n")
        archive.writestr("pkg/.data/version", "6\n")
    return buffer.getvalue()


def rules(result: object) -> dict[str, Severity]:
    found: dict[str, Severity] = {}
    for f in result.findings:  # type: ignore[attr-defined]
        found[f.rule_id] = max(found.get(f.rule_id, Severity.INFO), f.level)
    return found


def test_shipped_module_running_a_command_at_import_is_critical() -> None:
    result = scan_file(str(FIXTURES / "import_runs_command.pt"))
    (finding,) = [f for f in result.findings if f.rule_id == "PKG001"]
    assert finding.level is Severity.CRITICAL
    assert finding.location.members[-1] == "import_runs_command/packaged/net.py"
    assert "os.system" in finding.evidence


def test_shipped_module_shadowing_numpy_is_judged_by_its_source() -> None:
    """The array pickle names `numpy.core.multiarray._reconstruct`, which the allowlist trusts; the archive
    ships that module, so the shipped source decides."""
    result = scan_file(str(FIXTURES / "shadows_numpy.pt"))
    found = rules(result)
    assert found["PKG001"] is Severity.CRITICAL
    assert found["PKG002"] is Severity.CRITICAL  # the pickle takes the verdict of the shipped source
    shadowed = {f.evidence.split()[1] for f in result.findings if f.rule_id == "PKG002"}
    assert "numpy.core.multiarray._reconstruct" in shadowed


@pytest.mark.parametrize("name", ["code_in_archives/packaged_model.pt", "real/torch_package.pt"])
def test_benign_packages_have_no_package_findings(name: str) -> None:
    result = scan_file(str(FIXTURES.parent / name))
    assert "torch-package" in result.objects[0].format
    assert not {f.rule_id for f in result.findings} & {"PKG001", "PKG002", "PKG003", "SCN002"}


RED_TEAM = [
    "import os as o\no.system('id')\n",
    "from os import system as s\ns('id')\n",
    "def f(x=exec('import os')):\n    return x\n",
    "@eval\ndef g():\n    pass\n",
    "class A:\n    x = __import__('o' + 's')\n",
    "class A:\n    def __setstate__(self, state):\n        import subprocess\n        subprocess.run(['id'])\n",
    "class A:\n    def __reduce__(self):\n        return (eval, ('1',))\n",
    "getattr(__import__('os'), 'system')('id')\n",
    "import os\ngetattr(os, 'sys' + 'tem')('id')\n",
    "import importlib\nimportlib.import_module('os').system('id')\n",
    "f = (lambda x=exec('1'): x)\n",
    "import pathlib\npathlib.Path('/tmp/x').write_text('a')\n",
    "import os\nrun = os.system\nrun('id')\n",
]


@pytest.mark.parametrize("source", RED_TEAM)
def test_red_team_forms_are_reported(scan_data: ScanData, source: str) -> None:
    result = scan_data(package({"evil/mod.py": source}), "model.pt")
    assert rules(result).get("PKG001", Severity.INFO) >= Severity.HIGH, result.findings


def test_shadowing_through_stack_global_and_a_package_init(scan_data: ScanData) -> None:
    """Protocol 4 names globals with STACK_GLOBAL; `collections/__init__.py` ships `collections` itself."""
    pickled = pickle.dumps(__import__("collections").OrderedDict(), protocol=4)
    result = scan_data(package({"collections/__init__.py": "OrderedDict = dict\n"}, pickled), "model.pt")
    assert rules(result).get("PKG002") is Severity.MEDIUM  # benign shipped code: at most medium
    assert "PKG001" not in rules(result)


def test_unknown_shipped_module_is_not_a_shadow(scan_data: ScanData) -> None:
    pickled = b"\x80\x02cmymodels.net\nNet\nq\x00)\x81q\x01."
    result = scan_data(package({"mymodels/net.py": "class Net:\n    pass\n"}, pickled), "model.pt")
    assert not {"PKG001", "PKG002"} & set(rules(result))


def test_oversized_member_fails_closed(scan_data: ScanData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelshield.formats.pickle.torch_package.MAX_MEMBER", 16)
    result = scan_data(package({"evil/mod.py": "# padding padding padding\nimport os\n"}), "model.pt")
    assert rules(result).get("PKG003") is Severity.MEDIUM


def test_a_zip_without_the_layout_is_not_a_package(scan_data: ScanData) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pkg/evil/mod.py", "import os\nos.system('id')\n")
    result = scan_data(buffer.getvalue(), "code.zip")
    assert "PKG001" not in rules(result)
