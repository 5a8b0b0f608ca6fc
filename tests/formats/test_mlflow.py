"""MLflow model folders: shipped loader code (MLF001), loader modules from the environment (MLF002), code
paths that shadow modules or leave the folder (MLF003), skops types the model trusts (MLF004), the packages
it names (MLF005), what could not be analysed (MLF006). Real folders from scripts/make_package_config_fixtures.py."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest

from modelshield import scan, scan_file
from modelshield.core.rules import Severity

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "configs" / "mlflow"


def copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def levels(path: Path) -> dict[str, Severity]:
    found: dict[str, Severity] = {}
    for f in scan_file(str(path)).findings:
        found[f.rule_id] = max(found.get(f.rule_id, Severity.INFO), f.level)
    return found


def edit(mlmodel: Path, old: str, new: str) -> None:
    text = mlmodel.read_text(encoding="utf-8")
    assert old in text
    mlmodel.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize("name", ["sklearn_cloudpickle", "sklearn_pickle", "sklearn_skops"])
def test_real_mlflow_sklearn_models_are_clean(name: str) -> None:
    """Folders written by mlflow.sklearn.save_model: the MLmodel, its environment files and the model file."""
    results = scan(str(FIXTURES / name), follow_dependencies=False).files
    assert any(r.format == "mlflow" for r in results)
    assert [f.rule_id for r in results for f in r.findings if f.level > Severity.INFO] == []
    (requirements,) = [f for r in results for f in r.findings if f.rule_id == "MLF005"]
    assert "scikit-learn" in requirements.evidence and "requirements.txt" in requirements.details["requirements"]


def test_shipped_loader_module_running_a_command_is_critical() -> None:
    """Written by mlflow.pyfunc.save_model(loader_module=..., code_paths=[...]) with the real mlflow."""
    (finding,) = [
        f for f in scan_file(str(FIXTURES / "pyfunc_loader_module" / "MLmodel")).findings if f.rule_id == "MLF001"
    ]
    assert finding.level is Severity.CRITICAL
    assert "evil_loader" in finding.evidence and "os.system" in finding.evidence


def test_clean_shipped_loader_is_medium(tmp_path: Path) -> None:
    model = copy(tmp_path, "pyfunc_loader_module")
    (model / "code" / "evil_loader.py").write_text("def _load_pyfunc(path):\n    return None\n", encoding="utf-8")
    assert levels(model / "MLmodel")["MLF001"] is Severity.MEDIUM


@pytest.mark.parametrize(
    ("module", "severity"), [("subprocess", Severity.CRITICAL), ("some_pkg.loader", Severity.MEDIUM)]
)
def test_loader_module_from_the_environment_is_judged(tmp_path: Path, module: str, severity: Severity) -> None:
    model = copy(tmp_path, "pyfunc_loader_module")
    edit(model / "MLmodel", "loader_module: evil_loader", f"loader_module: {module}")
    assert levels(model / "MLmodel")["MLF002"] is severity


def test_code_folder_shadowing_a_package_and_escaping_code_path(tmp_path: Path) -> None:
    model = copy(tmp_path, "pyfunc_loader_module")
    (model / "code" / "numpy.py").write_text("X = 1\n", encoding="utf-8")
    (finding,) = [f for f in scan_file(str(model / "MLmodel")).findings if f.rule_id == "MLF003"]
    assert finding.level is Severity.HIGH and "numpy" in finding.evidence
    edit(model / "MLmodel", "code: code", "code: ../../site")
    assert levels(model / "MLmodel")["MLF003"] is Severity.HIGH


def test_skops_types_the_model_trusts_are_judged(tmp_path: Path) -> None:
    model = copy(tmp_path, "sklearn_skops")
    edit(model / "MLmodel", "skops_trusted_types: null", "skops_trusted_types:\n    - sklearn.tree._tree.Tree")
    assert "MLF004" not in levels(model / "MLmodel")
    edit(
        model / "MLmodel",
        "- sklearn.tree._tree.Tree",
        "- sklearn.tree._tree.Tree\n    - builtins.eval\n    - mypkg.Thing",
    )
    found = [f for f in scan_file(str(model / "MLmodel")).findings if f.rule_id == "MLF004"]
    assert {f.details["callable"]: f.level for f in found} == {
        "builtins.eval": Severity.CRITICAL,
        "mypkg.Thing": Severity.MEDIUM,
    }


def test_requirements_from_urls_and_vcs_are_high(tmp_path: Path) -> None:
    model = copy(tmp_path, "sklearn_pickle")
    with (model / "requirements.txt").open("a", encoding="utf-8") as handle:
        handle.write("git+https://github.com/evil/pkg\n")
    (finding,) = [f for f in scan_file(str(model / "MLmodel")).findings if f.rule_id == "MLF005"]
    assert finding.level is Severity.HIGH and "VCS" in finding.evidence


def test_models_from_code_are_analysed(tmp_path: Path) -> None:
    model = copy(tmp_path, "pyfunc_loader_module")
    edit(
        model / "MLmodel",
        "loader_module: evil_loader",
        "loader_module: mlflow.pyfunc.model\n    model_code_path: /x/agent.py",
    )
    (model / "agent.py").write_text("import subprocess\nsubprocess.run(['id'])\n", encoding="utf-8")
    (model / "code" / "evil_loader.py").unlink()
    found = [f for f in scan_file(str(model / "MLmodel")).findings if f.rule_id == "MLF001"]
    assert [f.level for f in found] == [Severity.CRITICAL] and "agent.py" in found[0].evidence


def test_model_file_outside_the_folder_is_a_dependency(tmp_path: Path) -> None:
    model = copy(tmp_path, "sklearn_pickle")
    edit(model / "MLmodel", "pickled_model: model.pkl", "pickled_model: /srv/shared/model.pkl")
    deps = [f for f in scan_file(str(model / "MLmodel")).findings if f.rule_id == "DEP002"]
    assert deps and deps[0].details["dependency"]["ref"] == "/srv/shared/model.pkl"


def test_mlmodel_inside_an_archive_is_judged_alone(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.write(FIXTURES / "pyfunc_loader_module" / "MLmodel", "model/MLmodel")
    path = tmp_path / "model.zip"
    path.write_bytes(buffer.getvalue())
    found = levels(path)
    assert found["MLF006"] is Severity.MEDIUM and found["MLF002"] is Severity.MEDIUM


def test_mlmodel_that_is_not_yaml_or_too_deep_is_not_claimed(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("flavors: [unclosed\n", encoding="utf-8")
    assert scan_file(str(tmp_path / "MLmodel")).format != "mlflow"
    (tmp_path / "MLmodel").write_text("flavors: " + "[" * 300 + "]" * 300 + "\n", encoding="utf-8")
    result = scan_file(str(tmp_path / "MLmodel"))
    assert any(f.level >= Severity.MEDIUM for f in result.findings)  # the YAML bound, fail-closed


def test_loader_package_and_other_code_files_are_analysed(tmp_path: Path) -> None:
    """A loader module that is a package of code/, and a code/ file only the pickled model imports."""
    model = copy(tmp_path, "pyfunc_loader_module")
    (model / "code" / "evil_loader.py").unlink()
    (model / "code" / "evil_loader").mkdir()
    (model / "code" / "evil_loader" / "__init__.py").write_text("import os\nos.system('id')\n", encoding="utf-8")
    (model / "code" / "helpers.py").write_text("import subprocess\nsubprocess.call('id')\n", encoding="utf-8")
    found = {f.location.path: f for f in scan_file(str(model / "MLmodel")).findings if f.rule_id == "MLF001"}
    assert found[str(model / "MLmodel")].level is Severity.CRITICAL  # the loader package
    assert found[str(model / "code" / "helpers.py")].level is Severity.CRITICAL
    assert "MLF002" not in levels(model / "MLmodel")


def test_python_of_the_code_folder_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelshield.formats.configs import mlflow

    model = copy(tmp_path, "pyfunc_loader_module")
    (model / "code" / "helpers.py").write_text("import os\nos.system('id')\n" + "#" * 100, encoding="utf-8")
    monkeypatch.setattr(mlflow, "MAX_CODE_BYTES", 10)
    found = [(f.rule_id, f.location.path) for f in scan_file(str(model / "MLmodel")).findings]
    assert ("MLF006", str(model / "code" / "helpers.py")) in found


def test_environment_files_named_by_the_flavour_and_includes_are_read(tmp_path: Path) -> None:
    model = copy(tmp_path, "sklearn_pickle")
    edit(model / "MLmodel", "virtualenv: python_env.yaml", "virtualenv: env/other_env.yaml")
    (model / "env").mkdir()
    (model / "env" / "other_env.yaml").write_text("python: 3.11\ndependencies:\n- -r extra.txt\n", encoding="utf-8")
    (model / "extra.txt").write_text("--extra-index-url https://evil.example/simple\nnumpy\n", encoding="utf-8")
    (finding,) = [f for f in scan_file(str(model / "MLmodel")).findings if f.rule_id == "MLF005"]
    assert finding.level is Severity.HIGH and "extra.txt" in finding.details["requirements"]


def test_code_folder_linked_out_of_the_model(tmp_path: Path) -> None:
    model = copy(tmp_path, "pyfunc_loader_module")
    shutil.rmtree(model / "code")
    (tmp_path / "elsewhere").mkdir()
    (model / "code").symlink_to(tmp_path / "elsewhere")
    (finding,) = [f for f in scan_file(str(model / "MLmodel")).findings if f.rule_id == "MLF003"]
    assert "outside the model folder" in finding.evidence
