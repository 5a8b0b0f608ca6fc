"""The verdict cache: keyed by digest, name, scanner version and policy; where it lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelshield.core.findings import Finding, Location
from modelshield.core.policy import Policy, Suppression
from modelshield.core.report import FileResult
from modelshield.core.rules import Severity
from modelshield.core.scan_rules import EXTENSION_MISMATCH
from modelshield.sources.cache import VerdictCache, cache_dir, policy_digest


def _result(path: str) -> FileResult:
    result = FileResult(path, "pickle", True, 10)
    result.findings = [Finding(EXTENSION_MISMATCH, Location(path, ("a",), 3), f"evidence about {path}")]
    return result


def test_stored_result_comes_back_under_the_new_path(tmp_path: Path) -> None:
    cache = VerdictCache(str(tmp_path))
    cache.put("sha256:00", "model.bin", Policy(), _result("/shadow/1/model.bin"))
    back = cache.get("sha256:00", "model.bin", Policy(), "/shadow/7/model.bin")
    assert back is not None and back.format == "pickle" and back.is_model
    (finding,) = back.findings
    assert finding.location == Location("/shadow/7/model.bin", ("a",), 3)
    assert finding.evidence == "evidence about /shadow/7/model.bin"


def test_other_name_or_policy_is_a_miss(tmp_path: Path) -> None:
    cache = VerdictCache(str(tmp_path))
    cache.put("sha256:00", "model.bin", Policy(), _result("/s/model.bin"))
    assert cache.get("sha256:00", "model.safetensors", Policy(), "/s/model.safetensors") is None
    strict = Policy(fail_on=Severity.LOW)
    assert policy_digest(strict) != policy_digest(Policy())
    assert cache.get("sha256:00", "model.bin", strict, "/s/model.bin") is None
    suppressing = Policy(suppressions=(Suppression("SCN001", "*", "known"),))
    assert cache.get("sha256:00", "model.bin", suppressing, "/s/model.bin") is None


def test_policy_digest_ignores_where_the_policy_was_read(tmp_path: Path) -> None:
    assert policy_digest(Policy(source="a/pyproject.toml")) == policy_digest(Policy(source="b/policy.toml"))


def test_unreadable_cache_is_no_cache(tmp_path: Path) -> None:
    (tmp_path / "verdicts.sqlite3").write_bytes(b"not a database" * 100)
    cache = VerdictCache(str(tmp_path))
    assert cache.get("sha256:00", "m", Policy(), "/m") is None
    cache.put("sha256:00", "m", Policy(), _result("/m"))  # does not raise


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MODELSHIELD_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == str(tmp_path / "xdg" / "modelshield")
    monkeypatch.setenv("MODELSHIELD_CACHE_DIR", str(tmp_path / "own"))
    assert cache_dir() == str(tmp_path / "own")
