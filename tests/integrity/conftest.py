"""Real keys, certificates and a small real model folder for the integrity tests."""

from __future__ import annotations

import datetime
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import NameOID

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real"


#: Edwards-curve keys sign certificates without a separate hash.
EDWARDS = (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    key: ec.EllipticCurvePrivateKey


def write_pem_pair(folder: Path, name: str, key: PrivateKeyTypes, password: bytes | None = None) -> tuple[Path, Path]:
    """Any private key (PKCS#8, encrypted with `password`) and its public key as PEM files."""
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub"
    encryption = (
        serialization.BestAvailableEncryption(password) if password is not None else serialization.NoEncryption()
    )
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def write_key_pair(folder: Path, name: str) -> KeyPair:
    """An EC P-256 key pair as PEM files, as `openssl ecparam -genkey` users would have."""
    key = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(*write_pem_pair(folder, name, key), key)


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    folder = tmp_path / "keys"
    folder.mkdir(exist_ok=True)
    return write_key_pair(folder, "signer")


@pytest.fixture
def other_keys(tmp_path: Path) -> KeyPair:
    folder = tmp_path / "keys"
    folder.mkdir(exist_ok=True)
    return write_key_pair(folder, "other")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A small real model folder: safetensors weights, a config, and a nested tokenizer file."""
    folder = tmp_path / "model"
    (folder / "tokenizer").mkdir(parents=True)
    shutil.copy(FIXTURES / "model.safetensors", folder / "model.safetensors")
    (folder / "config.json").write_text('{"architectures": ["TinyModel"], "hidden_size": 8}\n')
    (folder / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    return folder


def _certificate(
    subject: str,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: str,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(issuer_key, None if isinstance(issuer_key, EDWARDS) else hashes.SHA256())
    )


@dataclass(frozen=True)
class Pki:
    root: Path
    leaf: Path


def write_pki(
    folder: Path, key: CertificateIssuerPrivateKeyTypes, root_key: CertificateIssuerPrivateKeyTypes, name: str = ""
) -> Pki:
    """A root CA (of any key type) and a signing certificate for `key`, as PEM files."""
    root = _certificate("modelshield test root", root_key, "modelshield test root", root_key, ca=True)
    leaf = _certificate("model publisher", key, "modelshield test root", root_key, ca=False)
    paths = Pki(folder / f"{name}root.crt", folder / f"{name}leaf.crt")
    paths.root.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    paths.leaf.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return paths


@pytest.fixture
def pki(tmp_path: Path, keys: KeyPair) -> Pki:
    """An EC root CA and a signing certificate for `keys`."""
    return write_pki(tmp_path / "keys", keys.key, ec.generate_private_key(ec.SECP256R1()))
