"""The gateway policy file: waivers with a reason and an expiry, trusted repositories, unscannable files,
per team; changing it re-judges the stored verdicts without fetching or scanning again."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from modelshield.gateway.policy import GatewayPolicyError, load_gateway_policy
from tests.gateway.conftest import Gateway, benign_repo, malicious_repo
from tests.gateway.test_gateway import _get, _resolve_gets
from tests.sources.hubserver import HubServer

TODAY = datetime.datetime.now(datetime.timezone.utc).date()
URL = "/org/evil/resolve/main/pytorch_model.bin"


def _waiver(key: str, expires: datetime.date, repo: str = "org/evil") -> str:
    return f'[[waive]]\n{key}\nrepo = "{repo}"\nreason = "reviewed, SEC-12"\nexpires = {expires.isoformat()}\n'


def test_waivers_trust_and_expiry_rejudge_stored_verdicts(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/evil", malicious_repo(tmp_path / "evil"), private=True)
    gateway.anonymous = True
    gateway.start()
    assert _get(gateway.url + URL)[0] == 403
    fetched = len(_resolve_gets(hub, "org/evil"))
    gateway.stop()
    file = tmp_path / "gateway.toml"
    tomorrow, yesterday = TODAY + datetime.timedelta(days=1), TODAY - datetime.timedelta(days=1)
    cases = [
        # (the [default] table, the answer to the pickle file)
        (_waiver('rule = "PKL001"', tomorrow), 200),
        (_waiver('rule = "PKL001"', yesterday), 403),  # expired: no longer applies
        (_waiver('rule = "PKL001"', tomorrow, repo="other/*"), 403),  # another repository's waiver
        (_waiver('format = "torch-checkpoint"', tomorrow), 200),
        (_waiver('format = "safetensors"', tomorrow), 403),
        ('trusted = ["org/*"]\n', 200),
    ]
    for table, expected in cases:
        file.write_text("[default]\n" + table.replace("[[waive]]", "[[default.waive]]"))
        again = Gateway(hub.url, gateway.workdir, anonymous=True, options=["--gateway-policy", str(file)]).start()
        try:
            status, headers, _body = _get(again.url + URL)
            assert status == expected, (table, headers.get("x-error-message"))
            if expected == 403:
                assert "PKL001" in headers["x-error-message"]
            else:
                allowed = [e for e in again.events("decision") if e["decision"] == "allow" and e["path"]]
                assert allowed and ("SEC-12" in allowed[-1]["reason"] or "trusted" in allowed[-1]["reason"])
            assert again.events("scan") == [] and again.events("fetch") == []  # the stored verdict, re-judged
        finally:
            again.stop()
    assert len(_resolve_gets(hub, "org/evil")) == fetched


def test_waivers_are_per_team_and_unscannable_files(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/evil", malicious_repo(tmp_path / "evil"), private=True)
    broken = benign_repo(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\xff" * 7)  # too short for its header: not analysable
    hub.add_repo("org/broken", broken, private=True)
    file = tmp_path / "gateway.toml"
    expires = (TODAY + datetime.timedelta(days=30)).isoformat()
    file.write_text(
        '[team.research]\nunscannable = "allow"\n'
        f'[[team.research.waive]]\nrule = "PKL001"\nreason = "sandboxed red team"\nexpires = {expires}\n'
    )
    gateway.options = ["--gateway-policy", str(file)]
    research, other = gateway.add_token("research"), gateway.add_token("product")
    gateway.start()
    assert _get(gateway.url + URL, research)[0] == 200
    assert _get(gateway.url + URL, other)[0] == 403
    status, headers, _body = _get(f"{gateway.url}/org/broken/resolve/main/model.safetensors", other)
    assert status == 403, headers
    assert _get(f"{gateway.url}/org/broken/resolve/main/model.safetensors", research)[0] == 200


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[default.waive]]\nrule = "PKL001"\nexpires = 2030-01-01\n', "needs a reason"),
        ('[[default.waive]]\nrule = "PKL001"\nreason = "x"\n', "needs an expiry date"),
        ('[[default.waive]]\nrule = "PKL001"\nreason = "x"\nexpires = "soon"\n', "needs an expiry date"),
        ('[[default.waive]]\nrule = "NOPE9"\nreason = "x"\nexpires = 2030-01-01\n', "not a rule id"),
        ('[[default.waive]]\nreason = "x"\nexpires = 2030-01-01\n', "exactly one of rule or format"),
        ('[default]\nunscannable = "maybe"\n', "unscannable"),
        ('[default]\ntrusted = "org"\n', "trusted"),
        ('[defaults]\ntrusted = ["org/*"]\n', "unknown key 'defaults'"),
    ],
)
def test_invalid_gateway_policies_are_refused(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text(text)
    with pytest.raises(GatewayPolicyError, match=message):
        load_gateway_policy(str(file))
