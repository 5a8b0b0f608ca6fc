"""The pickle machine's optional native data loop, built as pip builds modelshield: a machine without a C
compiler still installs it (the pure-Python loop), one with a compiler gets the extension, and both give
the same verdicts on every committed fixture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from modelshield import scan
from modelshield.formats.pickle import machine
from tests.integrations.wheelhouse import source_copy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: the extensions' files in a wheel (the C sources ship too, as package data)
NATIVE = ("modelshield/formats/pickle/_hot.", "modelshield/formats/llm/_gguf.")


def _wheel(env: dict[str, str], folder: Path, compiler: str | None) -> Path:
    """A wheel built offline from a fresh copy of this source (a shared copy keeps the `build/` folder of
    an earlier install, extensions included); `compiler` replaces the C compiler setuptools calls."""
    source = source_copy(folder / "source")
    build_env = {**env, "CC": compiler} if compiler else env
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(folder / "dist"), str(source)],
        env=build_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (folder / "dist").glob("modelshield-*.whl")
    return wheel


def _verdicts_here() -> list[list[str]]:
    report = scan([str(FIXTURES)], jobs=1, follow_dependencies=False)
    return sorted([r.path, f.rule_id, f.level, str(f.location), f.evidence] for r in report.files for f in r.findings)


_SCAN = """
import json, sys
import modelshield
from modelshield.formats.llm import gguf
from modelshield.formats.pickle import machine
assert modelshield.__file__.startswith(sys.argv[1]), modelshield.__file__
report = modelshield.scan([sys.argv[2]], jobs=1, follow_dependencies=False)
found = [[r.path, f.rule_id, f.level, str(f.location), f.evidence] for r in report.files for f in r.findings]
built = [machine._native is not None, gguf._native is not None]
print(json.dumps({"native": built, "verdicts": sorted(found)}))
"""


def _verdicts_of(wheel: Path, target: Path) -> dict[str, object]:
    """Install `wheel` alone into `target` and scan the fixtures with it (its dependencies are this
    environment's)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=600,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("MODELSHIELD_PURE_PYTHON", None)
    done = subprocess.run(
        [sys.executable, "-c", _SCAN, str(target), str(FIXTURES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_without_a_compiler_the_pure_loop_installs_and_gives_the_same_verdicts(
    tmp_path: Path, offline_env: dict[str, str]
) -> None:
    wheel = _wheel(offline_env, tmp_path / "wheel", compiler="/bin/false")
    assert not [name for name in zipfile.ZipFile(wheel).namelist() if name.startswith(NATIVE) and name.endswith(".so")]
    pure = _verdicts_of(wheel, tmp_path / "site")
    assert pure["native"] == [False, False]
    assert pure["verdicts"] == _verdicts_here()
    assert any(v[1] == "PKL001" for v in pure["verdicts"])  # the fixtures hold payloads: the comparison means something


@pytest.mark.skipif(
    machine._native is None and not os.environ.get("MODELSHIELD_REQUIRE_NATIVE"),
    reason="no C compiler here (CI sets MODELSHIELD_REQUIRE_NATIVE and has one)",
)
def test_with_a_compiler_the_wheel_carries_the_native_loop(tmp_path: Path, offline_env: dict[str, str]) -> None:
    wheel = _wheel(offline_env, tmp_path / "wheel", compiler=None)
    built = [name for name in zipfile.ZipFile(wheel).namelist() if name.startswith(NATIVE) and name.endswith(".so")]
    assert len(built) == len(NATIVE), built
    native = _verdicts_of(wheel, tmp_path / "site")
    assert native["native"] == [True, True]
    assert native["verdicts"] == _verdicts_here()
