"""`modelshield sign` / `verify` with real keys and the OpenSSF model signing library: any modified,
missing or added file, or a wrong key, fails with one line naming what differs (exit 1)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import model_signing.verifying
import pytest

from modelshield.cli import main
from tests.integrity.conftest import KeyPair, Pki

Run = tuple[int, str, str]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sign(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, *extra: str) -> Run:
    return run(capsys, "sign", str(model), "--private-key", str(keys.private), *extra)


def verify(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, *extra: str) -> Run:
    return run(capsys, "verify", str(model), "--public-key", str(keys.public), *extra)


def failure(result: Run) -> str:
    """The one stderr line of a failed verification."""
    code, out, err = result
    assert code == 1, (out, err)
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("modelshield: verification failed: ")
    return err


@pytest.fixture
def signed(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair) -> Path:
    code, out, err = sign(capsys, model, keys)
    assert (code, err) == (0, ""), err
    assert str(model / "model.sig") in out
    return model


def test_signed_model_verifies(capsys: pytest.CaptureFixture[str], signed: Path, keys: KeyPair) -> None:
    code, out, err = verify(capsys, signed, keys)
    assert (code, err) == (0, "")
    assert "verified" in out


def test_signature_is_an_openssf_bundle_listing_every_file(signed: Path, keys: KeyPair) -> None:
    bundle = json.loads((signed / "model.sig").read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    names = {r["name"] for r in statement["predicate"]["resources"]}
    assert names == {"config.json", "model.safetensors", "tokenizer/vocab.txt"}
    assert "model.sig" in statement["predicate"]["serialization"]["ignore_paths"]
    # The library's own verifier accepts it: the format is the standard one, not ours.
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=keys.public).verify(
        signed, signed / "model.sig"
    )


def test_modified_byte_names_the_file(capsys: pytest.CaptureFixture[str], signed: Path, keys: KeyPair) -> None:
    weights = signed / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    err = failure(verify(capsys, signed, keys))
    assert "model.safetensors was modified after signing" in err


def test_missing_file_names_the_file(capsys: pytest.CaptureFixture[str], signed: Path, keys: KeyPair) -> None:
    (signed / "tokenizer" / "vocab.txt").unlink()
    err = failure(verify(capsys, signed, keys))
    assert "tokenizer/vocab.txt is missing" in err


def test_added_file_names_the_file(capsys: pytest.CaptureFixture[str], signed: Path, keys: KeyPair) -> None:
    (signed / "extra.pkl").write_bytes(b"\x80\x04N.")
    err = failure(verify(capsys, signed, keys))
    assert "extra.pkl was added after signing" in err


def test_wrong_key_fails(capsys: pytest.CaptureFixture[str], signed: Path, other_keys: KeyPair) -> None:
    err = failure(verify(capsys, signed, other_keys))
    assert "different key" in err


def test_altered_signed_manifest_fails(capsys: pytest.CaptureFixture[str], signed: Path, keys: KeyPair) -> None:
    """Editing the signed payload (to bless a swapped file) breaks the signature itself."""
    sig = signed / "model.sig"
    bundle = json.loads(sig.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(bundle))
    err = failure(verify(capsys, signed, keys))
    assert "does not match the trusted key" in err


def test_garbage_signature_fails_closed(capsys: pytest.CaptureFixture[str], signed: Path, keys: KeyPair) -> None:
    (signed / "model.sig").write_text('{"mediaType": 1}')
    err = failure(verify(capsys, signed, keys))
    assert "model.sig" in err


def test_missing_signature_fails(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair) -> None:
    err = failure(verify(capsys, model, keys))
    assert "no signature" in err and "model.sig" in err


def test_single_file_model(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair) -> None:
    weights = model / "model.safetensors"
    assert sign(capsys, weights, keys)[0] == 0
    assert (model / "model.safetensors.sig").is_file()
    assert verify(capsys, weights, keys)[0] == 0
    weights.write_bytes(weights.read_bytes() + b"\0")
    err = failure(verify(capsys, weights, keys))
    assert "model.safetensors was modified after signing" in err


def test_signature_elsewhere(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, tmp_path: Path) -> None:
    sig = tmp_path / "release.sig"
    assert sign(capsys, model, keys, "--output", str(sig))[0] == 0
    assert not (model / "model.sig").exists()
    assert verify(capsys, model, keys, "--signature", str(sig))[0] == 0


def test_certificate_mode(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, pki: Pki) -> None:
    code, _, err = sign(
        capsys, model, keys, "--signing-certificate", str(pki.leaf), "--certificate-chain", str(pki.root)
    )
    assert (code, err) == (0, "")
    code, _, err = run(capsys, "verify", str(model), "--certificate-chain", str(pki.root))
    assert (code, err) == (0, ""), err
    (model / "config.json").write_text("{}\n")
    err = failure(run(capsys, "verify", str(model), "--certificate-chain", str(pki.root)))
    assert "config.json was modified" in err


def test_certificate_from_an_untrusted_root_fails(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, pki: Pki
) -> None:
    signing = ("--signing-certificate", str(pki.leaf), "--certificate-chain", str(pki.root))
    assert sign(capsys, model, keys, *signing)[0] == 0
    err = failure(run(capsys, "verify", str(model), "--certificate-chain", str(pki.leaf)))
    assert "certificate" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["verify", "{model}", "--public-key", "{tmp}/nokey.pub"], "public key not found"),
        (["verify", "{model}"], "exactly one of --public-key and --certificate-chain"),
        (["verify", "{tmp}/nomodel", "--public-key", "{pub}"], "no such file or directory"),
        (["sign", "{model}", "--private-key", "{tmp}/nokey.pem"], "private key not found"),
        (["sign", "{model}", "--private-key", "{pub}"], "is not a PEM private key"),
        (["sign", "{model}", "--private-key", "{key}", "--certificate-chain", "{pub}"], "go together"),
        (["sign", "{model}", "--private-key", "{key}", "--signing-certificate", "{pub}"], "go together"),
        (["sign", "{model}"], "--private-key"),
    ],
)
def test_bad_arguments_exit_two_with_one_line(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, argv: list[str], needle: str
) -> None:
    values = {"model": model, "tmp": model.parent, "pub": keys.public, "key": keys.private}
    code, out, err = run(capsys, *(a.format(**values) for a in argv))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and needle in err


def test_console_script_signs_and_verifies(model: Path, keys: KeyPair) -> None:
    script = Path(sys.executable).with_name("modelshield")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "modelshield"]
    signed = subprocess.run([*command, "sign", str(model), "--private-key", str(keys.private)], check=False)
    assert signed.returncode == 0
    verify_cmd = [*command, "verify", str(model), "--public-key", str(keys.public)]
    assert subprocess.run(verify_cmd, capture_output=True, check=False).returncode == 0
    shutil.copy(model / "config.json", model / "config.json.bak")
    proc = subprocess.run(verify_cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "modelshield: verification failed: config.json.bak was added after signing (it is not in the signature)"
    )
