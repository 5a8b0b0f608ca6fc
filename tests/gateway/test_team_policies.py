"""Team policies end to end: rules and formats that always block, repository access lists, required
signatures per team, and re-judging stored verdicts when the gateway policy, a team's scanner policy or
its public key changes, with the real huggingface_hub client through `modelshield serve`."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import GatedRepoError

from modelshield.gateway.app import policy_digest
from modelshield.gateway.db import Verdict
from modelshield.gateway.policy import BLOCKED_FORMAT, Block, GatewayPolicyError, Tolerance, load_gateway_policy
from modelshield.integrity.signing import sign_model
from tests.gateway.conftest import FIXTURES, Gateway, _env, benign_repo
from tests.gateway.test_gateway import _files, _get, _post, _resolve_gets
from tests.integrity.conftest import write_key_pair
from tests.sources.hubserver import HubServer

REAL = FIXTURES / "real"
TODAY = datetime.datetime.now(datetime.timezone.utc).date()
CONFIG = json.dumps({"model_type": "bert", "architectures": ["BertModel"]})


def _repo(folder: Path, fixture: str, name: str) -> Path:
    """A repository with one real, clean file of the scanner's fixtures and a config."""
    folder.mkdir(parents=True)
    shutil.copy(REAL / fixture, folder / name)
    (folder / "config.json").write_text(CONFIG)
    return folder


def _gated(gateway: Gateway, repo: str, filename: str, token: str, cache: Path) -> str:
    with pytest.raises(GatedRepoError) as refused:
        hf_hub_download(repo, filename, endpoint=gateway.url, token=token, cache_dir=cache)
    assert not list(cache.rglob(filename))  # nothing of it reached the client
    return str(refused.value)


def _fetched(hub: HubServer, repo: str) -> list[str]:
    """Every upstream request about `repo` (its info, listing and files)."""
    return [r.path for r in hub.requests if f"/{repo}/" in r.path or r.path.endswith(f"/{repo}")]


def test_blocked_formats_and_rules(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/pickled", _repo(tmp_path / "pickled", "python_data_p4.pkl", "data.pkl"), private=True)
    hub.add_repo("org/ckpt", _repo(tmp_path / "ckpt", "torch_state_dict.pt", "pytorch_model.bin"), private=True)
    hub.add_repo("org/traced", _repo(tmp_path / "traced", "torchscript_traced.pt", "model.pt"), private=True)
    benign = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", benign, private=True)
    file = tmp_path / "gateway.toml"
    expires = (TODAY + datetime.timedelta(days=7)).isoformat()
    file.write_text(
        '[team.strict]\nblock = [{format = "pickle", reason = "no pickles, SEC-7"}]\n'
        '[[team.strict.waive]]\nformat = "pickle"\nrepo = "org/ckpt"\nreason = "converting, SEC-8"\n'
        f"expires = {expires}\n"
        '[team.noscript]\nblock = [{rule = "TSC001"}]\n'
    )
    gateway.options = ["--gateway-policy", str(file)]
    strict, noscript, product = (gateway.add_token(team) for team in ("strict", "noscript", "product"))
    gateway.start()
    # A clean pickle blocks for a team that refuses the format, naming the format, the file and the reason.
    message = _gated(gateway, "org/pickled", "data.pkl", strict, tmp_path / "c1")
    assert BLOCKED_FORMAT in message and "format pickle" in message and "data.pkl" in message and "SEC-7" in message
    assert "team strict" in message
    # The pickle found inside a TorchScript archive blocks too (a layer found inside the file).
    assert "format pickle" in _gated(gateway, "org/traced", "model.pt", strict, tmp_path / "c2")
    # ... but a waiver scopes an exception to the block: the checkpoint is served, audited with its reason.
    path = hf_hub_download(
        "org/ckpt", "pytorch_model.bin", endpoint=gateway.url, token=strict, cache_dir=tmp_path / "c3"
    )
    assert Path(path).read_bytes() == (REAL / "torch_state_dict.pt").read_bytes()
    assert any("SEC-8" in e["reason"] for e in gateway.events("decision") if e["decision"] == "allow")
    # TSC001 is info, below the failing severity: it blocks for the team that always blocks it.
    message = _gated(gateway, "org/traced", "model.pt", noscript, tmp_path / "c4")
    assert "TSC001 (info) in model.pt" in message and "rule TSC001 always blocks for team noscript" in message
    assert "modelshield explain TSC001" in message
    for token in (noscript, product):  # the clean pickle for teams that do not refuse the format
        path = hf_hub_download("org/pickled", "data.pkl", endpoint=gateway.url, token=token, cache_dir=tmp_path / "c5")
        assert Path(path).read_bytes() == (REAL / "python_data_p4.pkl").read_bytes()
    path = hf_hub_download("org/traced", "model.pt", endpoint=gateway.url, token=product, cache_dir=tmp_path / "c6")
    assert Path(path).read_bytes() == (REAL / "torchscript_traced.pt").read_bytes()
    for token in (strict, noscript):  # benign content stays byte-identical under the blocking teams
        folder = snapshot_download("org/benign", endpoint=gateway.url, token=token, cache_dir=tmp_path / token[-6:])
        assert _files(Path(folder)) == _files(benign)
    assert len(gateway.events("scan")) == 4  # one scan per revision: blocks are applied to stored verdicts
    # CI uploads are gated by the same team policy.
    pickle = (REAL / "python_data_p4.pkl").read_bytes()
    for token, expected in ((strict, "block"), (product, "allow")):
        status, headers, _body = _post(f"{gateway.url}/api/scan?name=data.pkl", pickle, token)
        assert (status, headers["x-modelshield-verdict"]) == (200, expected)


def test_repository_allow_and_deny_lists(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    benign = benign_repo(tmp_path / "benign")
    for repo in ("org/benign", "org/secret-notes", "elsewhere/benign"):
        hub.add_repo(repo, benign, private=True)
    file = tmp_path / "gateway.toml"
    file.write_text('[team.narrow]\nallow = ["org/*"]\ndeny = ["ORG/secret-*"]\ntrusted = ["org/*"]\n')
    gateway.options = ["--gateway-policy", str(file)]
    narrow, product = gateway.add_token("narrow"), gateway.add_token("product")
    gateway.start()
    folder = snapshot_download("org/benign", endpoint=gateway.url, token=narrow, cache_dir=tmp_path / "c1")
    assert _files(Path(folder)) == _files(benign)
    # Denied, even though trusted: refused before anything is asked upstream.
    message = _gated(gateway, "org/secret-notes", "config.json", narrow, tmp_path / "c2")
    assert "policy of team narrow denies org/secret-notes" in message and "ORG/secret-*" in message
    with pytest.raises(GatedRepoError, match="does not allow elsewhere/benign"):
        snapshot_download("elsewhere/benign", endpoint=gateway.url, token=narrow, cache_dir=tmp_path / "c3")
    for path in ("/api/models/elsewhere/benign/tree/main", "/elsewhere/benign/resolve/main/config.json"):
        status, headers, _body = _get(gateway.url + path, narrow, method="HEAD" if "resolve" in path else "GET")
        assert status == 403 and headers["x-error-code"] == "GatedRepo"
    assert _fetched(hub, "org/secret-notes") == [] and _fetched(hub, "elsewhere/benign") == []
    assert [e["repo"] for e in gateway.events("fetch")] == ["org/benign"]
    refused = [e for e in gateway.events("decision") if e["decision"] == "block"]
    assert {e["repo"] for e in refused} == {"org/secret-notes", "elsewhere/benign"}
    assert all(e["who"] == "team:narrow" and "policy of team narrow" in e["reason"] for e in refused)
    assert all(e["action"] == "serve" for e in refused)  # among the recent decisions on the security page
    # An adapter the team may ask for, on a base it may not: blocked for the team, naming the base.
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {"base_model_name_or_path": "elsewhere/benign", "peft_type": "LORA", "task_type": "CAUSAL_LM"}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    hub.add_repo("org/adapter", adapter, private=True)
    message = _gated(gateway, "org/adapter", "adapter_config.json", narrow, tmp_path / "c4")
    assert "ACCESS (policy) in elsewhere/benign" in message and "this revision loads it" in message
    # Other teams are not bound by narrow's lists.
    path = hf_hub_download(
        "org/adapter", "adapter_config.json", endpoint=gateway.url, token=product, cache_dir=tmp_path
    )
    assert json.loads(Path(path).read_text()) == config
    for repo in ("org/secret-notes", "elsewhere/benign"):
        folder = snapshot_download(
            repo, endpoint=gateway.url, token=product, cache_dir=tmp_path / repo.replace("/", "-")
        )
        assert _files(Path(folder)) == _files(benign)


def _signed(folder: Path, key: Path) -> Path:
    sign_model(str(folder), str(key))
    return folder


def test_required_signatures_per_team(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    signer, other = write_key_pair(keys, "signer"), write_key_pair(keys, "other")
    signed = _signed(benign_repo(tmp_path / "signed"), signer.private)
    hub.add_repo("org/signed", signed, private=True)
    hub.add_repo("org/unsigned", benign_repo(tmp_path / "unsigned"), private=True)
    hub.add_repo("org/forged", _signed(benign_repo(tmp_path / "forged"), other.private), private=True)
    tampered = _signed(benign_repo(tmp_path / "tampered"), signer.private)
    (tampered / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    hub.add_repo("org/tampered", tampered, private=True)
    trusted_key = tmp_path / "policy" / "trusted.pub"
    trusted_key.parent.mkdir()
    shutil.copy(signer.public, trusted_key)
    team_policy = trusted_key.parent / "signed.toml"
    team_policy.write_text('require-signature = true\npublic-key = "trusted.pub"\n')
    gateway.options = ["--team-policy", f"signing={team_policy}"]
    signing, product = gateway.add_token("signing"), gateway.add_token("product")
    gateway.start()
    folder = snapshot_download("org/signed", endpoint=gateway.url, token=signing, cache_dir=tmp_path / "c1")
    assert _files(Path(folder)) == _files(signed) and (Path(folder) / "model.sig").is_file()
    assert "INT002" in _gated(gateway, "org/unsigned", "config.json", signing, tmp_path / "c2")
    assert "INT001" in _gated(gateway, "org/forged", "config.json", signing, tmp_path / "c3")
    message = _gated(gateway, "org/tampered", "model.safetensors", signing, tmp_path / "c4")
    assert "INT001" in message and "config.json" in message
    for name in ("unsigned", "forged", "tampered"):  # other teams require no signature
        folder = snapshot_download(f"org/{name}", endpoint=gateway.url, token=product, cache_dir=tmp_path / f"c-{name}")
        assert _files(Path(folder)) == _files(tmp_path / name)
    gateway.stop()
    fetched = {repo: len(_resolve_gets(hub, repo)) for repo in ("org/signed", "org/forged")}
    # The team now trusts the other key: same policy file, new key bytes: re-judged from the store.
    shutil.copy(other.public, trusted_key)
    again = Gateway(hub.url, gateway.workdir, options=gateway.options).start()
    try:
        assert "INT001" in _gated(again, "org/signed", "config.json", signing, tmp_path / "c5")
        path = hf_hub_download(
            "org/forged", "config.json", endpoint=again.url, token=signing, cache_dir=tmp_path / "c6"
        )
        assert Path(path).read_bytes() == (tmp_path / "forged" / "config.json").read_bytes()
        assert len(again.events("scan")) == 2 and again.events("fetch") == []
    finally:
        again.stop()
    assert {repo: len(_resolve_gets(hub, repo)) for repo in fetched} == fetched


def test_policy_changes_rejudge_without_refetching(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    # A real library pickle with a low finding (PKL006): served by the default policies.
    hub.add_repo("org/babel", _repo(tmp_path / "babel", "libraries/babel_plural_rule.pkl", "rule.pkl"), private=True)
    url = "/org/babel/resolve/main/rule.pkl"
    team = gateway.add_token("research")
    gateway.start()
    assert _get(gateway.url + url, team)[0] == 200
    gateway.stop()
    fetched = len(_resolve_gets(hub, "org/babel"))
    file = tmp_path / "gateway.toml"
    file.write_text('[default]\nblock = [{format = "pickle"}]\n')
    # A new gateway policy: the same stored verdict, judged again; nothing fetched or scanned.
    blocking = Gateway(hub.url, gateway.workdir, options=["--gateway-policy", str(file)]).start()
    try:
        status, headers, _body = _get(blocking.url + url, team)
        assert status == 403 and "format pickle" in headers["x-error-message"]
        assert blocking.events("scan") == [] and blocking.events("fetch") == []
    finally:
        blocking.stop()
    # A new scanner policy for the team: scanned again from the store, not fetched again.
    strict = tmp_path / "scan-strict.toml"
    strict.write_text('[severity]\nPKL006 = "high"\n')
    rescanned = Gateway(hub.url, gateway.workdir, options=["--team-policy", f"research={strict}"]).start()
    try:
        status, headers, _body = _get(rescanned.url + url, team)
        assert status == 403 and "PKL006 (high) in rule.pkl" in headers["x-error-message"]
        assert len(rescanned.events("scan")) == 1 and rescanned.events("fetch") == []
    finally:
        rescanned.stop()
    assert len(_resolve_gets(hub, "org/babel")) == fetched


def test_verdicts_stored_before_findings_and_formats_were(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/pickled", _repo(tmp_path / "pickled", "python_data_p4.pkl", "data.pkl"), private=True)
    file = tmp_path / "gateway.toml"
    file.write_text(
        '[team.strict]\nblock = [{format = "pickle"}]\n[team.noscript]\nblock = [{rule = "TSC001"}]\n'
        '[team.narrow]\nallow = ["org/*"]\n'
    )
    gateway.options = ["--gateway-policy", str(file)]
    tokens = {team: gateway.add_token(team) for team in ("strict", "noscript", "narrow", "product")}
    gateway.start()
    assert _get(gateway.url + "/org/pickled/resolve/main/data.pkl", tokens["product"])[0] == 200
    gateway.stop()
    engine = sqlalchemy.create_engine(gateway.db)
    with engine.begin() as conn:  # the row as the gateway stored it before: the reasons' list alone
        (stored,) = conn.execute(sqlalchemy.text("SELECT reasons FROM verdicts")).one()
        assert json.loads(stored)["formats"]["data.pkl"] == ["pickle"]
        conn.execute(sqlalchemy.text("UPDATE verdicts SET reasons = '[]'"))
    engine.dispose()
    again = Gateway(hub.url, gateway.workdir, options=gateway.options).start()
    try:
        assert _get(again.url + "/org/pickled/resolve/main/data.pkl", tokens["product"])[0] == 200
        for team in ("strict", "noscript", "narrow"):  # what the old row cannot tell blocks: fail closed
            status, headers, _body = _get(again.url + "/org/pickled/resolve/main/data.pkl", tokens[team])
            assert status == 403 and "predates" in headers["x-error-message"], headers
        assert again.events("scan") == []
    finally:
        again.stop()


def _blocks(tmp_path: Path, line: str) -> tuple[Block, ...]:
    path = tmp_path / "gateway.toml"
    path.write_text(f"[default]\n{line}\n")
    return load_gateway_policy(str(path)).default.blocks


def test_old_verdicts_are_read_and_judged_fail_closed(tmp_path: Path) -> None:
    failing = {"rule": "PKL001", "severity": "critical", "file": "a.bin", "member": "", "title": "t", "evidence": ""}
    old = Verdict.loads(True, json.dumps([failing]))
    assert (old.reasons, old.findings, old.formats) == ([failing], None, None)
    new = Verdict(True, [failing], [failing], {"a.bin": ["pickle"]}, ["org/base"])
    assert Verdict.loads(True, new.dumps()) == new
    assert Tolerance().decide("org/m", old, TODAY)[0] == [failing]
    blocks_failing = Tolerance(blocks=_blocks(tmp_path, 'block = [{rule = "PKL001"}]'))
    assert blocks_failing.decide("org/m", old, TODAY)[0] == [failing]  # it fails already: nothing to add
    for entry in ('block = [{rule = "PKL006"}]', 'block = [{format = "safetensors"}]'):
        left, _waived = Tolerance(blocks=_blocks(tmp_path, entry)).decide("org/m", Verdict(False, []), TODAY)
        assert len(left) == 1 and "predates" in left[0]["title"]
        left, _waived = Tolerance(blocks=_blocks(tmp_path, entry)).decide("org/m", Verdict(False, [], [], {}), TODAY)
        assert left == []  # a new verdict that records nothing of the kind: nothing to block


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[default]\nblock = "pickle"\n', "must be a list of tables"),
        ('[default]\nblock = [{rule = "PKL001", format = "pickle"}]\n', "exactly one of rule or format"),
        ("[default]\nblock = [{}]\n", "exactly one of rule or format"),
        ('[default]\nblock = [{format = "pikle"}]\n', "not a format the scanner detects"),
        ('[default]\nblock = [{rule = "NOPE9"}]\n', "not a rule id"),
        ('[default]\nblock = [{rule = "UNSCANNED"}]\n', "unscannable"),
        ('[default]\nblock = [{rule = "PKL001", expires = 2030-01-01}]\n', "unknown key 'expires'"),
        ('[default]\nblock = [{rule = "PKL001", repo = 3}]\n', "repo must be a glob"),
        ('[default]\nallow = "org/*"\n', "allow must be a list"),
        ('[team.x]\ndeny = ["org"]\n', "team.x.deny must be a list of ORG/NAME globs"),
    ],
)
def test_invalid_team_policies_are_refused(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text(text)
    with pytest.raises(GatewayPolicyError, match=message):
        load_gateway_policy(str(file))


def test_policy_digest_covers_the_public_key_and_paths(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    first, second = write_key_pair(keys, "first"), write_key_pair(keys, "second")
    policy = tmp_path / "a" / "policy.toml"
    policy.parent.mkdir()
    policy.write_text('require-signature = true\npublic-key = "key.pub"\n')
    shutil.copy(first.public, policy.parent / "key.pub")
    before = policy_digest(str(policy))
    assert policy_digest(str(policy)) == before
    shutil.copy(second.public, policy.parent / "key.pub")  # same policy bytes, another key
    assert policy_digest(str(policy)) != before
    moved = tmp_path / "b" / "policy.toml"  # same bytes elsewhere: its relative paths mean other files
    shutil.copytree(policy.parent, moved.parent)
    assert policy_digest(str(moved)) != policy_digest(str(policy))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("require-signature = true\n", "needs a public-key"),
        ('require-signature = true\npublic-key = "missing.pub"\n', "cannot read its public-key"),
    ],
)
def test_gateway_refuses_to_start_with_an_unusable_signature_policy(
    hub: HubServer, gateway: Gateway, tmp_path: Path, text: str, message: str
) -> None:
    policy = tmp_path / "signed.toml"
    policy.write_text(text)
    command = gateway._command("--team-policy", f"signing={policy}", "--port", str(gateway.port))
    done = subprocess.run(command, check=False, env=_env(), capture_output=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr.decode()


def test_files_the_scanner_skips_are_not_served(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    """A listing may name files under .git/, which the scanner walks past and signatures leave out."""
    source = benign_repo(tmp_path / "hidden")
    (source / ".git").mkdir()
    shutil.copy(FIXTURES / "malicious" / "torch_payload.pt", source / ".git" / "pytorch_model.bin")
    hub.add_repo("org/hidden", source, private=True)
    file = tmp_path / "gateway.toml"
    file.write_text('[default]\nunscannable = "allow"\n')
    gateway.anonymous, gateway.options = True, ["--gateway-policy", str(file)]
    gateway.start()
    for name in (".git/pytorch_model.bin", "model.safetensors"):  # the revision is judged whole
        status, headers, _body = _get(f"{gateway.url}/org/hidden/resolve/main/{name}")
        assert status == 403 and "SKIPPED (high) in .git/pytorch_model.bin" in headers["x-error-message"]
    gateway.stop()
    # Files a team's scanner policy excludes on purpose are its choice: served.
    hub.add_repo("org/benign", benign_repo(tmp_path / "benign"), private=True)
    excluding = tmp_path / "exclude.toml"
    excluding.write_text('exclude = ["tokenizer"]\n')
    lax = Gateway(hub.url, gateway.workdir, anonymous=True, options=["--policy", str(excluding)]).start()
    try:
        status, _headers, body = _get(f"{lax.url}/org/benign/resolve/main/tokenizer/vocab.txt")
        assert (status, body) == (200, (tmp_path / "benign" / "tokenizer" / "vocab.txt").read_bytes())
    finally:
        lax.stop()


def test_block_entries_scoped_to_repositories(tmp_path: Path) -> None:
    verdict = Verdict(False, [], [], {"data.pkl": ["pickle"], "model.safetensors": ["safetensors"]}, [])
    scoped = Tolerance(blocks=_blocks(tmp_path, 'block = [{format = "pickle", repo = "Outside/*"}]'))
    left, _waived = scoped.decide("outside/model", verdict, TODAY)
    assert [(r["rule"], r["file"]) for r in left] == [(BLOCKED_FORMAT, "data.pkl")]
    assert scoped.decide("org/model", verdict, TODAY) == ([], [])
