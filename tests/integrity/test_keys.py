"""Key types and encrypted keys for `sign` / `verify`: every key model-signing accepts works, every other
one is refused with one line naming its family (exit 2), and an encrypted key's password comes from a
file, the environment or a terminal prompt, never from the command line."""

from __future__ import annotations

import base64
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from modelshield.cli import PASSWORD_ENV, main
from tests.integrity.conftest import KeyPair, Pki, write_pem_pair, write_pki

PASSWORD = b"correct horse battery staple"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1 and err.startswith("modelshield: error: ")
    return err


@pytest.fixture
def key_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(autouse=True)
def no_password_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()], ids=lambda c: c.name)
def test_every_supported_curve_signs_and_verifies(
    capsys: pytest.CaptureFixture[str], model: Path, key_folder: Path, curve: ec.EllipticCurve
) -> None:
    private, public = write_pem_pair(key_folder, curve.name, ec.generate_private_key(curve))
    code, _, err = run(capsys, "sign", str(model), "--private-key", str(private))
    assert (code, err) == (0, "")
    code, out, err = run(capsys, "verify", str(model), "--public-key", str(public))
    assert (code, err) == (0, "") and "verified" in out
    (model / "config.json").write_text("{}\n")
    assert run(capsys, "verify", str(model), "--public-key", str(public))[0] == 1


#: Key generators by the family name the errors use.
GENERATE: dict[str, Callable[[], CertificateIssuerPrivateKeyTypes]] = {
    "RSA": lambda: rsa.generate_private_key(65537, 2048),
    "Ed25519": ed25519.Ed25519PrivateKey.generate,
    "Ed448": ed448.Ed448PrivateKey.generate,
    "DSA": lambda: dsa.generate_private_key(2048),
    "elliptic-curve secp256k1": lambda: ec.generate_private_key(ec.SECP256K1()),
    "elliptic-curve P-521": lambda: ec.generate_private_key(ec.SECP521R1()),
}


@pytest.mark.parametrize("family", ["RSA", "Ed25519", "Ed448", "DSA", "elliptic-curve secp256k1"])
def test_unsupported_keys_are_one_line_naming_the_family(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, family: str
) -> None:
    private, public = write_pem_pair(keys.private.parent, "odd", GENERATE[family]())
    err = one_error_line(run(capsys, "sign", str(model), "--private-key", str(private)))
    assert f"does not support {family} keys ({private})" in err
    assert "P-256" in err and "attribute" not in err
    assert not (model / "model.sig").exists()
    assert run(capsys, "sign", str(model), "--private-key", str(keys.private))[0] == 0
    err = one_error_line(run(capsys, "verify", str(model), "--public-key", str(public)))
    assert f"does not support {family} keys ({public})" in err


@pytest.fixture
def encrypted(key_folder: Path) -> tuple[Path, Path]:
    return write_pem_pair(key_folder, "encrypted", ec.generate_private_key(ec.SECP384R1()), PASSWORD)


def test_password_file(
    capsys: pytest.CaptureFixture[str], model: Path, encrypted: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = encrypted
    password_file = tmp_path / "password"
    password_file.write_bytes(PASSWORD + b"\n")  # as `echo` writes it
    code, _, err = run(
        capsys, "sign", str(model), "--private-key", str(private), "--private-key-password-file", str(password_file)
    )
    assert (code, err) == (0, "")
    assert run(capsys, "verify", str(model), "--public-key", str(public))[0] == 0


def test_password_from_the_environment(
    capsys: pytest.CaptureFixture[str], model: Path, encrypted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = encrypted
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD.decode())
    code, _, err = run(capsys, "sign", str(model), "--private-key", str(private))
    assert (code, err) == (0, "")
    assert run(capsys, "verify", str(model), "--public-key", str(public))[0] == 0


def test_password_in_environment_is_not_needed_by_a_plain_key(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "unused")
    assert run(capsys, "sign", str(model), "--private-key", str(keys.private))[0] == 0


def test_wrong_password(
    capsys: pytest.CaptureFixture[str], model: Path, encrypted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    err = one_error_line(run(capsys, "sign", str(model), "--private-key", str(encrypted[0])))
    assert "wrong password" in err and str(encrypted[0]) in err
    assert not (model / "model.sig").exists()


def test_no_password_and_no_terminal_never_prompts(
    capsys: pytest.CaptureFixture[str], model: Path, encrypted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_prompt(prompt: str = "") -> str:
        raise AssertionError("prompted without a terminal")

    monkeypatch.setattr(getpass, "getpass", no_prompt)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    err = one_error_line(run(capsys, "sign", str(model), "--private-key", str(encrypted[0])))
    assert "is encrypted" in err and "--private-key-password-file" in err and PASSWORD_ENV in err


def test_prompt_on_a_terminal(
    capsys: pytest.CaptureFixture[str], model: Path, encrypted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts: list[str] = []

    def answer(prompt: str = "") -> str:
        prompts.append(prompt)
        return PASSWORD.decode()

    monkeypatch.setattr(getpass, "getpass", answer)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    code, _, err = run(capsys, "sign", str(model), "--private-key", str(encrypted[0]))
    assert (code, err) == (0, "")
    assert prompts == [f"password for {encrypted[0]}: "]
    assert run(capsys, "verify", str(model), "--public-key", str(encrypted[1]))[0] == 0


def test_unreadable_password_file(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair) -> None:
    err = one_error_line(
        run(capsys, "sign", str(model), "--private-key", str(keys.private), "--private-key-password-file", "/no/such")
    )
    assert "cannot read password file /no/such" in err


def test_encrypted_key_with_a_certificate_is_one_line(
    capsys: pytest.CaptureFixture[str], model: Path, pki: Pki, keys: KeyPair, tmp_path: Path
) -> None:
    """model-signing's certificate signer takes no password: say so rather than fail inside it."""
    private, _ = write_pem_pair(tmp_path / "keys", "signer-encrypted", keys.key, PASSWORD)
    password_file = tmp_path / "password"
    password_file.write_bytes(PASSWORD)
    err = one_error_line(
        run(
            capsys,
            "sign",
            str(model),
            "--private-key",
            str(private),
            "--private-key-password-file",
            str(password_file),
            "--signing-certificate",
            str(pki.leaf),
            "--certificate-chain",
            str(pki.root),
        )
    )
    assert "takes no password" in err and str(private) in err


@pytest.mark.parametrize("family", ["RSA", "Ed25519", "elliptic-curve P-521"])
def test_certificate_chain_with_a_root_of_any_type(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, family: str
) -> None:
    """Only the signing key must be elliptic-curve: a corporate RSA or Ed25519 root CA is fine."""
    pki = write_pki(keys.private.parent, keys.key, GENERATE[family](), family.replace(" ", "-"))
    signing = ("--signing-certificate", str(pki.leaf), "--certificate-chain", str(pki.root))
    code, _, err = run(capsys, "sign", str(model), "--private-key", str(keys.private), *signing)
    assert (code, err) == (0, "")
    code, _, err = run(capsys, "verify", str(model), "--certificate-chain", str(pki.root))
    assert (code, err) == (0, "")


def test_rsa_signing_certificate_is_one_line(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair) -> None:
    leaf_key = rsa.generate_private_key(65537, 2048)
    private, _ = write_pem_pair(keys.private.parent, "rsa-leaf", leaf_key)
    pki = write_pki(keys.private.parent, leaf_key, ec.generate_private_key(ec.SECP256R1()), "rsa-")
    signing = ("--signing-certificate", str(pki.leaf), "--certificate-chain", str(pki.root))
    err = one_error_line(run(capsys, "sign", str(model), "--private-key", str(private), *signing))
    assert f"does not support RSA keys ({private})" in err


def test_foreign_signature_with_an_rsa_certificate_is_one_line(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair
) -> None:
    """A bundle from another signer whose signing certificate holds an RSA key: the library cannot verify
    it (it fails inside itself); say so (exit 2) instead of passing on its internal error."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    pki = write_pki(keys.private.parent, keys.key, root_key)
    signing = ("--signing-certificate", str(pki.leaf), "--certificate-chain", str(pki.root))
    assert run(capsys, "sign", str(model), "--private-key", str(keys.private), *signing)[0] == 0
    rsa_pki = write_pki(keys.private.parent, rsa.generate_private_key(65537, 2048), root_key, "rsa-")
    leaf = x509.load_pem_x509_certificate(rsa_pki.leaf.read_bytes())
    bundle = json.loads((model / "model.sig").read_text())
    certificates = bundle["verificationMaterial"]["x509CertificateChain"]["certificates"]
    certificates[0]["rawBytes"] = base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode()
    (model / "model.sig").write_text(json.dumps(bundle))
    err = one_error_line(run(capsys, "verify", str(model), "--certificate-chain", str(pki.root)))
    assert "is signed with a certificate for an RSA key" in err and "attribute" not in err
