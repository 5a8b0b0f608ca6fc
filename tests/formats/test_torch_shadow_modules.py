"""MOD001: files in a model folder that Python imports instead of an installed module a loader imports,
when it runs from that folder (checked: `python -c "import json"` in such a folder runs its `json.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelshield import scan
from modelshield.core.rules import Severity

REMOTE_CODE = Path(__file__).resolve().parents[1] / "fixtures" / "remote_code"


def findings(folder: Path) -> dict[str, Severity]:
    report = scan([str(folder)])
    return {
        Path(f.location.path).relative_to(folder).as_posix(): f.level
        for r in report.files
        for f in r.findings
        if f.rule_id == "MOD001"
    }


@pytest.mark.parametrize(
    ("name", "text", "severity"),
    [
        ("torch.py", "import os\nos.system('id')\n", Severity.CRITICAL),
        ("numpy/__init__.py", "from os import *\nsystem('id')\n", Severity.CRITICAL),
        ("pynvml.py", "", Severity.HIGH),  # torch tries to import it: an optional import that fails silently
        ("json.py", "from _json import *\n", Severity.HIGH),
        ("pickle.cpython-311-x86_64-linux-gnu.so", "\x7fELF", Severity.HIGH),
        ("safetensors.pyc", "\x00", Severity.HIGH),
        ("yaml/__init__.pyc", "\x00", Severity.HIGH),  # a sourceless package: imported all the same
    ],
)
def test_a_module_shadowing_a_loader_import_is_reported(
    tmp_path: Path, name: str, text: str, severity: Severity
) -> None:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
    (tmp_path / "config.json").write_text("{}")
    assert findings(tmp_path) == {name: severity}


def test_ordinary_model_folders_are_quiet(tmp_path: Path) -> None:
    """Remote code and helper files of real repositories; `os.py` cannot shadow (imported at start-up)."""
    for source in REMOTE_CODE.glob("*.py.txt"):
        (tmp_path / source.name.removesuffix(".txt")).write_text(source.read_text())
    for name in ("utils.py", "configuration_x.py", "train.py", "handler.py", "os.py", "sys.py"):
        (tmp_path / name).write_text("x = 1\n")
    (tmp_path / "code").mkdir()  # a folder without __init__.py is a namespace portion: never shadows
    (tmp_path / "code" / "run.py").write_text("x = 1\n")
    assert findings(tmp_path) == {}


def test_an_installed_package_is_not_a_shadow(tmp_path: Path) -> None:
    site = tmp_path / "lib"
    (site / "yaml").mkdir(parents=True)
    (site / "yaml" / "__init__.py").write_text("x = 1\n")
    (site / "yaml-6.0.dist-info").mkdir()
    (site / "yaml-6.0.dist-info" / "METADATA").write_text("Name: PyYAML\n")
    assert findings(tmp_path) == {}
