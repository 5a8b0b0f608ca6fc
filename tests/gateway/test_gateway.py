"""The gateway end to end: the real huggingface_hub client through `modelshield serve` in front of a
Hub-compatible upstream on loopback. Benign revisions arrive byte-identical, malicious ones are refused
with the finding named, and nothing is served whose fetch or scan did not finish."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

from tests.gateway.conftest import FIXTURES, UPSTREAM_TOKEN, Gateway, _env, benign_repo, malicious_repo
from tests.sources.hubserver import HubServer


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def _resolve_gets(hub: HubServer, repo: str) -> list[str]:
    return [r.path for r in hub.requests if r.method == "GET" and f"/{repo}/resolve/" in r.path]


def test_benign_repo_downloads_byte_identical(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    commit = hub.add_repo("org/benign", source, private=True)  # private: only the gateway's own token reads it
    token = gateway.add_token("research")
    gateway.start()
    snapshot = snapshot_download("org/benign", endpoint=gateway.url, token=token, cache_dir=tmp_path / "c1")
    assert _files(Path(snapshot)) == _files(source)
    assert Path(snapshot).name == commit
    single = hf_hub_download(
        "org/benign", "model.safetensors", endpoint=gateway.url, token=token, cache_dir=tmp_path / "c2"
    )
    assert Path(single).read_bytes() == (source / "model.safetensors").read_bytes()
    assert len(gateway.events("scan")) == 1  # the second client was served the stored verdict
    log = gateway.log_path.read_text()
    assert UPSTREAM_TOKEN not in log and token not in log
    # The upstream token went to the Hub (private repository) but not to its storage on another origin.
    assert all(r.authorized for r in hub.requests if r.server == "hub")
    storage = [r for r in hub.requests if r.server == "storage"]
    assert storage and not any(r.authorized for r in storage)
    decisions = [e for e in gateway.events("decision") if e["action"] == "serve"]
    assert {e["who"] for e in decisions} == {"team:research"}


def test_ranges_and_headers(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    commit = hub.add_repo("org/benign", source, private=True)
    gateway.anonymous = True
    gateway.start()
    url = f"{gateway.url}/org/benign/resolve/main/model.safetensors"
    status, headers, body = _get(url, method="HEAD")
    data = (source / "model.safetensors").read_bytes()
    assert status == 200 and body == b""
    assert headers["x-repo-commit"] == commit
    assert headers["x-linked-size"] == headers["content-length"] == str(len(data))
    assert headers["x-linked-etag"].strip('"') == headers["etag"].strip('"') != ""
    request = urllib.request.Request(url, headers={"Range": "bytes=8-15"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 206
        assert answer.read() == data[8:16]
    assert all(UPSTREAM_TOKEN not in value for value in headers.values())


def test_malicious_repo_is_refused_naming_the_finding(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/evil", malicious_repo(tmp_path / "evil"), private=True)
    token = gateway.add_token("research")
    gateway.start()
    with pytest.raises(GatedRepoError) as single:
        hf_hub_download("org/evil", "config.json", endpoint=gateway.url, token=token, cache_dir=tmp_path / "c")
    message = str(single.value)
    assert "PKL001" in message and "pytorch_model.bin" in message and "modelshield explain PKL001" in message
    # The threat page the refusal links to is served by the gateway itself, to anyone (documentation).
    assert f"{gateway.url}/rules/PKL001" in message
    status, headers, page = _get(f"{gateway.url}/rules/PKL001")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"Remediation" in page
    assert "default-src 'none'" in headers["content-security-policy"]
    assert _get(f"{gateway.url}/rules/NOPE999")[0] == 404
    with pytest.raises(GatedRepoError) as whole:
        snapshot_download("org/evil", endpoint=gateway.url, token=token, cache_dir=tmp_path / "c")
    assert "PKL001" in str(whole.value)
    assert not list((tmp_path / "c").rglob("pytorch_model.bin"))
    blocked = [e for e in gateway.events("decision") if e["decision"] == "block"]
    assert blocked and all("PKL001" in e["reason"] for e in blocked)
    status, _headers, body = _get(f"{gateway.url}/metrics")
    metrics = body.decode()
    assert status == 200 and "modelshield_gateway_scans_total 1\n" in metrics
    served_blocks = sum(1 for e in blocked if e["action"] == "serve")
    assert f'modelshield_gateway_decisions_total{{action="serve",decision="block"}} {served_blocks}\n' in metrics


def test_concurrent_first_requests_cause_one_fetch_and_one_scan(
    hub: HubServer, gateway: Gateway, tmp_path: Path
) -> None:
    source = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", source, private=True)
    token = gateway.add_token("research")
    gateway.start()
    results: list[Any] = []

    def download(i: int) -> None:
        try:
            path = hf_hub_download(
                "org/benign", "model.safetensors", endpoint=gateway.url, token=token, cache_dir=tmp_path / f"c{i}"
            )
            results.append(Path(path).read_bytes())
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=download, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [(source / "model.safetensors").read_bytes()] * 8
    assert len(gateway.events("scan")) == 1
    assert len(gateway.events("fetch")) == 1
    assert sorted(_resolve_gets(hub, "org/benign")) == sorted(
        f"/org/benign/resolve/{hub.repo('org/benign', 'main')[0].commit}/{name}"  # type: ignore[union-attr]
        for name in _files(source)
    )


def test_tokens_are_required_and_checked(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/benign", benign_repo(tmp_path / "benign"), private=True)
    gateway.start()
    with pytest.raises(HfHubHTTPError) as unknown:
        hf_hub_download("org/benign", "config.json", endpoint=gateway.url, token="msg_guess", cache_dir=tmp_path / "c")
    assert unknown.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as missing:
        hf_hub_download("org/benign", "config.json", endpoint=gateway.url, token=False, cache_dir=tmp_path / "c")
    assert missing.value.response.status_code == 401
    assert "token is required" in str(missing.value)
    assert not [r for r in hub.requests if "/resolve/" in r.path]  # refused before anything was fetched


def test_anonymous_allowed_with_the_flag(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", source, private=True)
    gateway.anonymous = True
    gateway.start()
    path = hf_hub_download("org/benign", "config.json", endpoint=gateway.url, token=False, cache_dir=tmp_path / "c")
    assert Path(path).read_bytes() == (source / "config.json").read_bytes()
    assert {e["who"] for e in gateway.events("decision")} == {"anonymous"}


PATH_TRICKS = [
    "/org/benign/resolve/main/..%2Fconfig.json",
    "/org/benign/resolve/main/tokenizer/..%2F..%2Fetc/passwd",
    "/org/benign/resolve/main/%2Fetc%2Fpasswd",
    "/org/benign/resolve/main/tokenizer%5Cvocab.txt",
    "/org/benign/resolve/main/tokenizer/./vocab.txt",
    "/org/benign/resolve/main/tokenizer//vocab.txt",
    "/org/benign/resolve/main/config.json%00.txt",
    "/org/..%2F..%2Fetc/resolve/main/config.json",
    "/org/be--nign/resolve/main/config.json",
    "/org/benign/resolve/..%2Fmain/config.json",
    "/api/models/org/benign/revision/..%2F..",
    "/api/models/org/benign/tree/main/..%2F..",
    "/org/benign/resolve/main/" + "a/" * 600 + "x",
]


def test_path_tricks_are_refused(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/benign", benign_repo(tmp_path / "benign"), private=True)
    gateway.anonymous = True
    gateway.start()
    for path in PATH_TRICKS:
        status, _headers, body = _get(gateway.url + path)
        assert status in (400, 404), (path, body)
        assert b"[PAD]" not in body and b"root:" not in body
    assert _get(gateway.url + "/org/benign/resolve/main/tokenizer/vocab.txt")[0] == 200  # the real name works


def test_upstream_failure_mid_transfer_is_not_served(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", source, private=True)
    hub.fail_after = 100  # every file body is cut off after 100 bytes
    gateway.anonymous = True
    gateway.start()
    status, headers, _body = _get(f"{gateway.url}/org/benign/resolve/main/model.safetensors")
    assert status == 502
    assert "nothing of org/benign is served" in headers["x-error-message"]
    with pytest.raises(Exception, match=r"upstream failed|truncated"):
        snapshot_download("org/benign", endpoint=gateway.url, token=False, cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c").rglob("model.safetensors"))
    kept = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (gateway.workdir / "store" / "blobs").iterdir()}
    whole = {hashlib.sha256(data).hexdigest() for data in _files(source).values()}
    assert kept <= whole  # only files that arrived whole and verified, never a cut-off one
    assert hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest() not in kept
    hub.fail_after = None  # once upstream recovers, the revision is fetched whole and served
    status, _headers, body = _get(f"{gateway.url}/org/benign/resolve/main/model.safetensors")
    assert status == 200 and body == (source / "model.safetensors").read_bytes()


def test_file_not_matching_its_listing_is_not_served(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/benign", benign_repo(tmp_path / "benign"), private=True)
    hub.understate = 10  # the listing hides the last bytes of every file
    gateway.anonymous = True
    gateway.start()
    status, headers, _body = _get(f"{gateway.url}/org/benign/resolve/main/config.json")
    assert status == 502
    assert "more than the" in headers["x-error-message"]


def test_policy_change_rejudges_without_refetching(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/evil", malicious_repo(tmp_path / "evil"), private=True)
    lenient = tmp_path / "lenient.toml"
    lenient.write_text('[severity]\nPKL001 = "low"\n')
    gateway.policy, gateway.anonymous = lenient, True
    gateway.start()
    url = "/org/evil/resolve/main/pytorch_model.bin"
    assert _get(gateway.url + url)[0] == 200
    fetched = len(_resolve_gets(hub, "org/evil"))
    gateway.stop()
    strict = Gateway(hub.url, gateway.workdir, anonymous=True).start()  # same database and store, default policy
    try:
        status, headers, _body = _get(strict.url + url)
        assert status == 403 and "PKL001" in headers["x-error-message"]
        assert len(_resolve_gets(hub, "org/evil")) == fetched  # judged again from the store
        assert len(strict.events("scan")) == 1
        strict.stop()
        again = Gateway(hub.url, gateway.workdir, anonymous=True).start()  # the verdict is remembered
        assert _get(again.url + url)[0] == 403
        assert again.events("scan") == []
        again.stop()
    finally:
        strict.stop()


def test_health_and_hf_endpoint(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", source, private=True)
    token = gateway.add_token("ml")
    gateway.start()
    status, _headers, body = _get(f"{gateway.url}/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    # The unmodified client configured only through HF_ENDPOINT and HF_TOKEN, in its own process.
    env = _env() | {"HF_ENDPOINT": gateway.url, "HF_TOKEN": token, "HF_HOME": str(tmp_path / "home")}
    code = "import sys; from huggingface_hub import snapshot_download; print(snapshot_download('org/benign'))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True, timeout=120)
    snapshot = Path(done.stdout.decode().strip().splitlines()[-1])
    assert _files(snapshot) == _files(source)
    assert os.path.commonpath([snapshot, tmp_path / "home"]) == str(tmp_path / "home")
    # ... and the `hf` command line, from the same environment as the interpreter running the tests.
    hf = Path(sys.executable).with_name("hf")
    if hf.exists():
        target = tmp_path / "hf-cli"
        command = [str(hf), "download", "org/benign", "--local-dir", str(target)]
        subprocess.run(command, env=env, capture_output=True, check=True, timeout=120)
        assert {k: v for k, v in _files(target).items() if not k.startswith(".cache/")} == _files(source)
    # Every decision is in the audit table: who, what, when, why.
    engine = sqlalchemy.create_engine(gateway.db)
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT at, who, action, repo, path, decision, reason FROM audit")).all()
    engine.dispose()
    served = {row.path for row in rows if row.action == "serve" and row.decision == "allow"}
    assert served == set(_files(source))
    assert {row.who for row in rows} == {"team:ml"} and all(row.at > 0 and row.reason for row in rows)
    assert [row.action for row in rows].count("scan") == 1


def test_adapter_with_malicious_base_is_blocked(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/evil", malicious_repo(tmp_path / "evil"), private=True)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {"base_model_name_or_path": "org/evil", "peft_type": "LORA", "task_type": "CAUSAL_LM"}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    hub.add_repo("org/adapter", adapter, private=True)
    gateway.anonymous = True
    gateway.start()
    with pytest.raises(GatedRepoError) as blocked:
        hf_hub_download("org/adapter", "adapter_config.json", endpoint=gateway.url, token=False, cache_dir=tmp_path)
    message = str(blocked.value)
    assert "PKL001" in message and "org/evil@" in message and "pytorch_model.bin" in message
    # The base was fetched through the gateway itself and judged on its own, once.
    assert [e["repo"] for e in gateway.events("fetch")] == ["org/adapter", "org/evil"]
    status, headers, _body = _get(f"{gateway.url}/org/evil/resolve/main/config.json")
    assert status == 403 and "PKL001" in headers["x-error-message"]


def test_adapter_with_benign_base_is_served(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/benign", benign_repo(tmp_path / "benign"), private=True)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {"base_model_name_or_path": "org/benign", "peft_type": "LORA", "task_type": "CAUSAL_LM"}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    hub.add_repo("org/adapter", adapter, private=True)
    gateway.anonymous = True
    gateway.start()
    path = hf_hub_download("org/adapter", "adapter_config.json", endpoint=gateway.url, token=False, cache_dir=tmp_path)
    assert json.loads(Path(path).read_text()) == config
    assert [e["repo"] for e in gateway.events("fetch")] == ["org/adapter", "org/benign"]


def test_empty_revision_is_judged(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    commit = hub.add_repo("org/empty", tmp_path / "empty", private=True)
    gateway.anonymous = True
    gateway.start()
    status, _headers, body = _get(f"{gateway.url}/api/models/org/empty/revision/main")
    assert status == 200 and json.loads(body)["sha"] == commit and json.loads(body)["siblings"] == []
    assert _get(f"{gateway.url}/org/empty/resolve/main/config.json")[0] == 404


def test_oversized_revision_is_refused_before_fetching(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/benign", benign_repo(tmp_path / "benign"), private=True)
    gateway.anonymous, gateway.options = True, ["--max-revision-bytes", "1000"]
    gateway.start()
    with pytest.raises(GatedRepoError, match="over the gateway's limit"):
        snapshot_download("org/benign", endpoint=gateway.url, token=False, cache_dir=tmp_path / "c")
    assert not _resolve_gets(hub, "org/benign")


def _adapter(folder: Path, base: str) -> Path:
    folder.mkdir()
    config = {"base_model_name_or_path": base, "peft_type": "LORA", "task_type": "CAUSAL_LM"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def test_dependency_cycle_is_judged_once_each(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/a", _adapter(tmp_path / "a", "org/b"), private=True)
    hub.add_repo("org/b", _adapter(tmp_path / "b", "org/a"), private=True)
    gateway.anonymous = True
    gateway.start()
    status, _headers, body = _get(f"{gateway.url}/org/a/resolve/main/adapter_config.json")
    assert status == 200 and b"org/b" in body
    assert [e["repo"] for e in gateway.events("fetch")] == ["org/a", "org/b"]


def _post(url: str, data: bytes, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, method="POST")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def test_post_scan_returns_the_report(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    token = gateway.add_token("ci")
    gateway.start()
    payload = (FIXTURES / "malicious" / "torch_payload.pt").read_bytes()
    status, headers, body = _post(f"{gateway.url}/api/scan?name=model.pt", payload, token)
    assert status == 200 and headers["x-modelshield-verdict"] == "block"
    report = json.loads(body)
    rules = {f["rule_id"] for f in report["files"][0]["findings"]}
    assert "PKL001" in rules and str(gateway.workdir) not in body.decode()
    status, headers, body = _post(f"{gateway.url}/api/scan?name=model.pt&format=sarif", payload, token)
    assert status == 200 and json.loads(body)["runs"][0]["results"][0]["ruleId"] == "PKL001"
    benign = (benign_repo(tmp_path / "b") / "model.safetensors").read_bytes()
    status, headers, _body = _post(f"{gateway.url}/api/scan?name=model.safetensors", benign, token)
    assert status == 200 and headers["x-modelshield-verdict"] == "allow"
    assert _post(f"{gateway.url}/api/scan", payload)[0] == 401
    assert _post(f"{gateway.url}/api/scan?name=../x", payload, token)[0] == 400
    uploads = [e for e in gateway.events("decision") if e["action"] == "upload"]
    assert [e["decision"] for e in uploads] == ["block", "block", "allow"]
    assert {e["who"] for e in uploads} == {"team:ci"}


def test_teams_are_judged_by_their_own_policy(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/evil", malicious_repo(tmp_path / "evil"), private=True)
    lenient = tmp_path / "lenient.toml"
    lenient.write_text('[severity]\nPKL001 = "low"\n')
    gateway.options = ["--team-policy", f"sandbox={lenient}"]
    sandbox, product = gateway.add_token("sandbox"), gateway.add_token("product")
    gateway.start()
    url = f"{gateway.url}/org/evil/resolve/main/pytorch_model.bin"
    status, _headers, body = _get(url, sandbox)
    assert status == 200 and body == (FIXTURES / "malicious" / "torch_payload.pt").read_bytes()
    status, headers, _body = _get(url, product)
    assert status == 403 and "PKL001" in headers["x-error-message"]
    assert len(gateway.events("fetch")) == 1 and len(gateway.events("scan")) == 2  # one fetch, one scan per policy


def test_upstream_listing_with_path_tricks_is_refused(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/benign", benign_repo(tmp_path / "benign"), private=True)
    hub.fake_names = ["../../outside.txt"]
    gateway.anonymous = True
    gateway.start()
    status, headers, _body = _get(f"{gateway.url}/org/benign/resolve/main/config.json")
    assert status == 502 and "invalid file name" in headers["x-error-message"]
    assert not (gateway.workdir / "store" / "outside.txt").exists()
    assert not _resolve_gets(hub, "org/benign")


def test_database_unavailable_serves_nothing(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", source, private=True)
    token = gateway.add_token("research")
    gateway.start()
    database = gateway.workdir / "gateway.db"
    database.write_bytes(b"not a database" * 100)  # in place: the open connections see it too
    status, headers, body = _get(f"{gateway.url}/org/benign/resolve/main/config.json", token)
    assert status >= 500 and body != (source / "config.json").read_bytes()
    assert "x-repo-commit" not in headers
    assert _get(f"{gateway.url}/health")[0] == 503


def test_two_processes_share_database_and_store(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", source, private=True)
    hub.add_repo("org/evil", malicious_repo(tmp_path / "evil"), private=True)
    gateway.anonymous = True
    gateway.start()
    other = Gateway(hub.url, gateway.workdir, anonymous=True).start()
    try:
        assert _get(f"{gateway.url}/org/evil/resolve/main/config.json")[0] == 403
        assert _get(f"{gateway.url}/org/benign/resolve/main/config.json")[0] == 200
        fetched = len(_resolve_gets(hub, "org/"))
        status, headers, _body = _get(f"{other.url}/org/evil/resolve/main/config.json")
        assert status == 403 and "PKL001" in headers["x-error-message"]
        status, _headers, body = _get(f"{other.url}/org/benign/resolve/main/model.safetensors")
        assert status == 200 and body == (source / "model.safetensors").read_bytes()
        assert other.events("scan") == [] and other.events("fetch") == []  # the first process's verdicts
        assert len(_resolve_gets(hub, "org/")) == fetched
    finally:
        other.stop()


def test_refusals_link_threat_pages_at_the_public_url(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/evil", malicious_repo(tmp_path / "evil"))
    gateway.anonymous = True
    gateway.options += ["--public-url", "https://models.internal/"]
    gateway.start()
    status, headers, _body = _get(f"{gateway.url}/org/evil/resolve/main/pytorch_model.bin")
    assert status == 403 and "https://models.internal/rules/PKL001" in headers["x-error-message"]
    # The audit log keeps the finding, not a link built from what a client sent.
    blocked = [e for e in gateway.events("decision") if e["decision"] == "block"]
    assert blocked and not any("/rules/" in e["reason"] for e in blocked)
