"""What the gateway serves and judges is what it fetched and verified: stored blobs changed on disk are
caught (before a re-judge, and while serving), an adapter is judged again when its base model's branch
moves, and the upstream's redirects go only where they belong. The real huggingface_hub client, through
`modelshield serve` (or the same app under uvicorn in this process, where a shorter REF_TTL is needed)."""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError
from safetensors.numpy import save_file

from modelshield.gateway import app as gateway_app
from modelshield.gateway.upstream import MAX_REDIRECTS, Upstream
from tests.gateway.conftest import Gateway, benign_repo, in_process, malicious_repo
from tests.sources.hubserver import HubServer


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def _large_repo(folder: Path) -> Path:
    """A benign repository whose weights span several of the gateway's 1 MiB chunks."""
    benign_repo(folder)
    save_file({"w": np.arange(3 * 2**18, dtype=np.float32)}, str(folder / "model.safetensors"))  # 3 MiB
    return folder


def _serving(hub: HubServer, gateway: Gateway, name: str, source: Path) -> None:
    """`source` published privately as `name`, and the gateway started in front of the hub, anonymous."""
    hub.add_repo(name, source, private=True)
    gateway.anonymous = True
    gateway.start()


def _blob(gateway: Gateway, data: bytes) -> Path:
    return gateway.workdir / "store" / "blobs" / hashlib.sha256(data).hexdigest()


def _alter(blob: Path, at: int = 0) -> None:
    """Change bytes in place (same size, same inode: what disk corruption or a careless hand does)."""
    with blob.open("r+b") as handle:
        handle.seek(at)
        old = handle.read(64)
        handle.seek(at)
        handle.write(bytes(b ^ 0xFF for b in old))


def _resolve_gets(hub: HubServer, name: str) -> int:
    return sum(1 for r in hub.requests if r.method == "GET" and r.path.split("?")[0].endswith("/" + name))


def _verify_errors(gateway: Gateway) -> list[dict[str, str]]:
    return [e for e in gateway.events("decision") if e["action"] == "verify" and e["decision"] == "error"]


# -- 1. stored content is what was judged -------------------------------------------------------------


@pytest.mark.parametrize("damage", ["altered", "truncated"])
def test_rejudge_hashes_the_store_and_refetches_what_changed(
    hub: HubServer, gateway: Gateway, tmp_path: Path, damage: str
) -> None:
    source = benign_repo(tmp_path / "benign")
    _serving(hub, gateway, "org/benign", source)
    assert _get(f"{gateway.url}/org/benign/resolve/main/config.json")[0] == 200
    gateway.stop()
    weights = (source / "model.safetensors").read_bytes()
    blob = _blob(gateway, weights)
    if damage == "altered":
        _alter(blob, len(weights) - 64)  # the tensor bytes: same size, found only by hashing
    else:
        blob.write_bytes(weights[:100])
    fetched = _resolve_gets(hub, "model.safetensors")
    stricter = tmp_path / "strict.toml"
    stricter.write_text('[severity]\nPKL001 = "critical"\n')  # another policy: the verdict is computed again
    again = Gateway(hub.url, gateway.workdir, policy=stricter, anonymous=True).start()
    try:
        snapshot = snapshot_download("org/benign", endpoint=again.url, token=False, cache_dir=tmp_path / "c")
        assert (Path(snapshot) / "model.safetensors").read_bytes() == weights
        assert len(again.events("scan")) == 1
        assert _resolve_gets(hub, "model.safetensors") == fetched + 1  # that file only, fetched again
        assert blob.read_bytes() == weights
        quarantined = gateway.workdir / "store" / "quarantine" / blob.name
        assert quarantined.read_bytes() != weights
        (error,) = _verify_errors(again)
        assert error["path"] == "model.safetensors" and "fetched again" in error["reason"]
    finally:
        again.stop()


def test_rejudge_fails_closed_when_the_upstream_cannot_give_it_again(
    hub: HubServer, gateway: Gateway, tmp_path: Path
) -> None:
    source = malicious_repo(tmp_path / "evil")
    hub.add_repo("org/evil", source, private=True)
    lenient = tmp_path / "lenient.toml"
    lenient.write_text('[severity]\nPKL001 = "low"\n')
    gateway.anonymous, gateway.policy = True, lenient
    gateway.start()
    assert _get(f"{gateway.url}/org/evil/resolve/main/config.json")[0] == 200
    gateway.stop()
    payload = (source / "pytorch_model.bin").read_bytes()
    _alter(_blob(gateway, payload), 2)  # the pickle no longer parses: a re-judge would see other bytes
    hub.fail_after = 10  # ... and the upstream cannot give the file again
    strict = Gateway(hub.url, gateway.workdir, anonymous=True).start()
    try:
        status, headers, body = _get(f"{strict.url}/org/evil/resolve/main/config.json")
        assert status == 502 and b"bert" not in body
        assert "does not match its digest and the upstream cannot give it again" in headers["x-error-message"]
        assert strict.events("scan") == []  # nothing was judged from the changed bytes
        fetch_errors = [e for e in strict.events("decision") if e["action"] == "fetch" and e["decision"] == "error"]
        assert [e["path"] for e in fetch_errors] == ["pytorch_model.bin"]
        hub.fail_after = None  # once the upstream gives it again, the verdict is the real one
        status, headers, _body = _get(f"{strict.url}/org/evil/resolve/main/config.json")
        assert status == 403 and "PKL001" in headers["x-error-message"]
    finally:
        strict.stop()


def test_serving_an_altered_blob_is_cut_off_and_never_completes(
    hub: HubServer, gateway: Gateway, tmp_path: Path
) -> None:
    source = _large_repo(tmp_path / "benign")
    _serving(hub, gateway, "org/benign", source)
    weights = (source / "model.safetensors").read_bytes()
    first = hf_hub_download("org/benign", "model.safetensors", endpoint=gateway.url, token=False, cache_dir=tmp_path)
    assert Path(first).read_bytes() == weights
    blob = _blob(gateway, weights)
    fetched = _resolve_gets(hub, "model.safetensors")
    _alter(blob, 100)  # early: the changed bytes go out before the end is reached
    # huggingface_hub: cut off after the altered prefix, it resumes with Range and is answered whole (200)
    # from the blob fetched again, so it starts over instead of stitching the good tail to the bad prefix.
    path = hf_hub_download(
        "org/benign", "model.safetensors", endpoint=gateway.url, token=False, cache_dir=tmp_path / "c2"
    )
    assert Path(path).read_bytes() == weights
    assert _resolve_gets(hub, "model.safetensors") == fetched + 1 and blob.read_bytes() == weights
    cut, refetched = (e["reason"] for e in _verify_errors(gateway))
    assert "response cut off, blob quarantined" in cut and "missing" in refetched and "fetched again" in refetched
    # A plain client: a short body, never the whole file (the last chunk is held back until the digest matched).
    _alter(blob, 100)
    altered = blob.read_bytes()
    address = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(str(address.hostname), address.port, timeout=30)
    connection.request("GET", "/org/benign/resolve/main/model.safetensors")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == str(len(weights))
    with pytest.raises(http.client.IncompleteRead) as short:
        response.read()
    connection.close()
    assert 0 < len(short.value.partial) < len(weights)
    assert short.value.partial[100:164] != weights[100:164]  # what was sent is the altered prefix
    assert len(_verify_errors(gateway)) == 3
    assert (gateway.workdir / "store" / "quarantine" / blob.name).read_bytes() == altered
    assert (gateway.workdir / "store" / "quarantine" / f"{blob.name}.sent").exists()


def test_resumed_download_of_an_altered_blob_is_not_stitched(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    """A client holding the altered prefix resumes with `Range` (huggingface_hub within one call, older
    versions across calls from their `.incomplete` file): the gateway answers whole (200), the client's cue
    to start over, rather than the tail of the blob fetched again."""
    source = _large_repo(tmp_path / "benign")
    _serving(hub, gateway, "org/benign", source)
    weights = (source / "model.safetensors").read_bytes()
    url = f"{gateway.url}/org/benign/resolve/main/model.safetensors"
    assert _get(url)[2] == weights
    _alter(_blob(gateway, weights), 100)
    hub.fail_after = 10  # the upstream cannot give the file again for now
    cache = tmp_path / "client"
    with pytest.raises(HfHubHTTPError) as failed:  # cut off, then its Range retry refused: nothing kept
        hf_hub_download("org/benign", "model.safetensors", endpoint=gateway.url, token=False, cache_dir=cache)
    assert failed.value.response.status_code == 502
    assert not [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size >= 2**20]
    hub.fail_after = None
    status, headers, body = _get(url, {"Range": "bytes=1048576-"})  # resuming after the altered prefix
    assert status == 200 and "content-range" not in headers and body == weights
    status, _headers, body = _get(url, {"Range": "bytes=0-9"})  # a plain range read stays whole too
    assert status == 200 and body == weights
    path = hf_hub_download("org/benign", "model.safetensors", endpoint=gateway.url, token=False, cache_dir=cache)
    assert Path(path).read_bytes() == weights


def test_range_on_an_altered_blob_is_verified_first(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = _large_repo(tmp_path / "benign")
    _serving(hub, gateway, "org/benign", source)
    weights = (source / "model.safetensors").read_bytes()
    url = f"{gateway.url}/org/benign/resolve/main/model.safetensors"
    assert _get(url, {"Range": "bytes=0-99"})[2] == weights[:100]
    _alter(_blob(gateway, weights), 2**20 + 10)
    status, _headers, body = _get(url, {"Range": "bytes=1048576-1048675"})
    assert status == 206 and body == weights[2**20 : 2**20 + 100]
    (error,) = _verify_errors(gateway)
    assert "does not match its digest" in error["reason"]
    status, _headers, _body = _get(url, {"Range": "bytes=0-9"})  # now verified: served as asked
    assert status == 206


def test_head_of_a_truncated_blob_refetches_it(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    _serving(hub, gateway, "org/benign", source)
    weights = (source / "model.safetensors").read_bytes()
    url = f"{gateway.url}/org/benign/resolve/main/model.safetensors"
    assert _get(url)[2] == weights
    _blob(gateway, weights).write_bytes(weights[:10])
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.headers["Content-Length"] == str(len(weights))
    assert _blob(gateway, weights).read_bytes() == weights
    assert _get(url)[2] == weights


# -- 2. an adapter whose base model moves ---------------------------------------------------------------


@pytest.fixture
def served(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The gateway app under uvicorn in this process, where a test decides when branches expire (REF_TTL)."""
    monkeypatch.setattr(gateway_app, "REF_TTL", 3600.0)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "store" / "hub"))  # as `modelshield serve` sets it
    with in_process(hub, tmp_path) as url:
        yield url


def _adapter(folder: Path, base: str) -> Path:
    folder.mkdir()
    config = {"base_model_name_or_path": base, "peft_type": "LORA", "task_type": "CAUSAL_LM"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def _audit(tmp_path: Path) -> list[dict[str, str]]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'gw.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT action, repo, revision, decision, reason FROM audit")).mappings()
        found = [dict(row) for row in rows]
    engine.dispose()
    return found


def _upstream_asks(hub: HubServer, repo: str) -> int:
    return sum(1 for r in hub.requests if r.path.startswith(f"/api/models/{repo}/"))


@pytest.mark.parametrize("first", ["base", "adapter"])
def test_moved_base_branch_blocks_base_and_adapter(
    hub: HubServer, served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    hub.add_repo("org/base", benign_repo(tmp_path / "base-v1"), private=True)
    hub.add_repo("org/adapter", _adapter(tmp_path / "adapter", "org/base"), private=True)
    path = hf_hub_download(
        "org/adapter", "adapter_config.json", endpoint=served, token=False, cache_dir=tmp_path / "c1"
    )
    assert json.loads(Path(path).read_text())["base_model_name_or_path"] == "org/base"
    scans = [e for e in _audit(tmp_path) if e["action"] == "scan"]
    assert [e["repo"] for e in scans] == ["org/base", "org/adapter"]
    # Nothing moved: a cached request asks nothing upstream within REF_TTL, and judges nothing again after.
    asks = _upstream_asks(hub, "org/base")
    assert _get(f"{served}/org/adapter/resolve/main/adapter_config.json")[0] == 200
    assert _upstream_asks(hub, "org/base") == asks
    monkeypatch.setattr(gateway_app, "REF_TTL", 0.0)  # from now on every branch is asked for again
    assert _get(f"{served}/org/adapter/resolve/main/adapter_config.json")[0] == 200
    assert _upstream_asks(hub, "org/base") == asks + 1
    assert len([e for e in _audit(tmp_path) if e["action"] == "scan"]) == 2

    moved = hub.add_repo("org/base", malicious_repo(tmp_path / "base-v2"), private=True)  # main -> a payload
    if first == "base":  # the base itself, fetched through the gateway and judged at its new commit
        with pytest.raises(GatedRepoError, match="PKL001"):
            hf_hub_download("org/base", "config.json", endpoint=served, token=False, cache_dir=tmp_path / "c2")
    with pytest.raises(GatedRepoError) as blocked:
        hf_hub_download("org/adapter", "adapter_config.json", endpoint=served, token=False, cache_dir=tmp_path / "c3")
    message = str(blocked.value)
    assert "PKL001" in message and f"org/base@{moved[:12]}" in message
    rejudged = [e for e in _audit(tmp_path) if e["action"] == "scan" and e["repo"] == "org/adapter"][-1]
    assert rejudged["decision"] == "block" and "org/base@main moved from " in rejudged["reason"]
    assert f"to {moved[:12]}" in rejudged["reason"]
    with pytest.raises(GatedRepoError):  # the old commit's verdict is not the one served any more
        hf_hub_download("org/adapter", "adapter_config.json", endpoint=served, token=False, cache_dir=tmp_path / "c4")
    assert len([e for e in _audit(tmp_path) if e["action"] == "scan" and e["repo"] == "org/adapter"]) == 2


# -- 3. upstream redirects stay where they belong --------------------------------------------------------


def test_redirect_to_a_host_not_allowed_is_an_upstream_error(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", source, private=True)
    with HubServer() as other:  # another port on the gateway's own machine
        other.add_repo("org/benign", source)
        gateway.anonymous = True
        gateway.start()
        for target, shown in [("http://169.254.169.254", "169.254.169.254:80"), (other.storage_url, "127.0.0.1")]:
            hub.redirect_to = target
            status, headers, body = _get(f"{gateway.url}/org/benign/resolve/main/config.json")
            assert status == 502 and b"[PAD]" not in body and b"bert" not in body
            assert "not an allowed upstream host" in headers["x-error-message"] and shown in headers["x-error-message"]
        assert other.requests == []
    errors = [e for e in gateway.events("decision") if e["action"] == "fetch" and e["decision"] == "error"]
    assert len(errors) == 2 and all(e["path"] == "model.safetensors" for e in errors)
    assert all("X-Signature" not in e["reason"] for e in errors)  # the signed URL is not repeated


def test_allowed_redirect_never_carries_the_upstream_token(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", source, private=True)
    with HubServer() as cdn:
        cdn.add_repo("org/benign", source)
        hub.redirect_to = cdn.storage_url
        gateway.anonymous = True
        gateway.options = ["--upstream-host", cdn.storage_url.removeprefix("http://")]
        gateway.start()
        snapshot = snapshot_download("org/benign", endpoint=gateway.url, token=False, cache_dir=tmp_path / "c")
        assert (Path(snapshot) / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
        assert cdn.requests and not any(r.authorized for r in cdn.requests)
    assert all(r.authorized for r in hub.requests if r.server == "hub")


def test_redirects_are_bounded(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/benign", benign_repo(tmp_path / "benign"), private=True)
    hub.redirect_loop = True
    gateway.anonymous = True
    gateway.start()
    status, headers, _body = _get(f"{gateway.url}/org/benign/resolve/main/config.json")
    assert status == 502 and f"more than {MAX_REDIRECTS} times" in headers["x-error-message"]
    assert max(_resolve_gets(hub, n) for n in ("config.json", "model.safetensors", "vocab.txt")) == MAX_REDIRECTS + 1


def test_https_upstream_follows_https_to_its_hosts_only() -> None:
    upstream = Upstream("https://huggingface.co", None)
    assert upstream.allowed("https://huggingface.co/org/renamed/resolve/main/x")
    assert upstream.allowed("https://cdn-lfs-us-1.hf.co/repos/ab/cd?X-Amz-Signature=1")
    assert upstream.allowed("https://cas-bridge.xethub.hf.co:443/xet-bridge-us/abc")
    for target in [
        "http://cdn-lfs-us-1.hf.co/repos/ab/cd",  # a downgrade to plain http
        "https://cdn-lfs-us-1.hf.co:8443/repos",  # another port
        "https://huggingface.co.evil.example/x",
        "https://cdn-lfs.hf.co@169.254.169.254/latest/meta-data",  # userinfo: the host is the metadata address
        "https://169.254.169.254/latest/meta-data",
        "file:///etc/passwd",
        "https:///nohost",
    ]:
        assert not upstream.allowed(target), target
    loopback = Upstream("http://127.0.0.1:8000", None, ["127.0.0.1:9000"])
    assert loopback.allowed("http://127.0.0.1:9000/blob") and loopback.allowed("http://127.0.0.1:8000/x")
    assert not loopback.allowed("http://127.0.0.1:9001/blob") and not loopback.allowed("http://localhost:9000/blob")


def test_rejudged_adapter_reads_its_base_as_judged(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    """A base model's snapshot file removed from the store (or replaced) is put back from its blob before
    an adapter is judged again with it: the adapter's new verdict is about the base that was fetched."""
    hub.add_repo("org/evil", malicious_repo(tmp_path / "evil"), private=True)
    hub.add_repo("org/adapter", _adapter(tmp_path / "adapter", "org/evil"), private=True)
    lenient = tmp_path / "lenient.toml"
    lenient.write_text('[severity]\nPKL001 = "low"\n')
    gateway.anonymous, gateway.policy = True, lenient
    gateway.start()
    assert _get(f"{gateway.url}/org/adapter/resolve/main/adapter_config.json")[0] == 200
    gateway.stop()
    (snapshot,) = (gateway.workdir / "store" / "hub" / "models--org--evil" / "snapshots").iterdir()
    (snapshot / "pytorch_model.bin").unlink()  # the adapter's scan would see a base without its payload
    strict = Gateway(hub.url, gateway.workdir, anonymous=True).start()
    try:
        status, headers, _body = _get(f"{strict.url}/org/adapter/resolve/main/adapter_config.json")
        assert status == 403 and "PKL001" in headers["x-error-message"] and "org/evil@" in headers["x-error-message"]
        assert (snapshot / "pytorch_model.bin").exists()
    finally:
        strict.stop()
