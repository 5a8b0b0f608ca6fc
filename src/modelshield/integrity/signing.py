"""Signing and verifying models in the OpenSSF model signing format, through the `model-signing` package.

The signature is a Sigstore bundle whose DSSE payload lists every file of the model with its SHA-256, so
any modified, missing or added file breaks it. `model_signing` is imported only when signing or verifying:
it takes seconds to import and most commands never need it.

Symbolic links are the normal layout of the Hugging Face cache (a snapshot's files link into the
repository's `blobs/`): a link that stays inside the model folder or its cache repository is hashed as its
target under the link's name, as the library does with `allow_symlinks`. A link that leaves them, a broken
link, a special file, or a link to a folder (the library does not hash the files under it, so they would be
loaded unsigned) is refused when signing and is a mismatch when verifying.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from modelshield.core.files import SKIPPED_DIRS, is_hf_repo_name

if TYPE_CHECKING:  # cryptography is imported only when signing or verifying
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

#: The library's conventional signature name inside a model folder.
SIGNATURE_NAME = "model.sig"

#: What the library leaves out of every folder signature by default (its `ignore_git_paths`).
_LIBRARY_IGNORED = (".git", ".gitattributes", ".github", ".gitignore")
#: Curves of the elliptic-curve keys model-signing signs with (its Sigstore-compatible set).
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
#: The library's configuration name of a digest it records under another name (its own guess of the
#: hashing configuration fails on it: "Unsupported hashing method blake2b").
_CONFIG_ALGORITHMS = {"blake2b": "blake2"}
#: How many link problems a refusal to sign names before counting the rest.
_NAMED_PROBLEMS = 3

ChangeKind = Literal["modified", "missing", "added", "broken link", "outside link", "folder link", "special file"]

_DESCRIBE: dict[ChangeKind, str] = {
    "modified": "{} was modified after signing",
    "missing": "{} is missing (it is in the signature)",
    "added": "{} was added after signing (it is not in the signature)",
    "broken link": "{} is a broken link (to {})",
    "outside link": "{} is a link to {}, outside the model folder and its cache",
    "folder link": "{} is a link to a folder ({}): a model signature does not cover the files under it",
    "special file": "{} is not a regular file or folder",
}
_MISMATCH_PREFIX = "Signature mismatch: "
_KEY_MISMATCH_PREFIX = "Key mismatch"
_SHARD_RANGE = re.compile(r":[0-9]+:[0-9]+\Z")
_LIBRARY_DIFF: tuple[tuple[ChangeKind, re.Pattern[str]], ...] = (
    ("modified", re.compile(r"Hash mismatch for '(.*)': Expected .*", re.S)),
    ("added", re.compile(r"Extra files found in model '.*?': (.*)", re.S)),
    ("missing", re.compile(r"Missing files in model '.*?': (.*)", re.S)),
)


class SigningInputError(ValueError):
    """A missing model, key or certificate, or one the library cannot use; the CLI exits 2."""


class VerificationError(Exception):
    """The model does not match its signature, or the signature is not valid for the trusted key."""

    def __init__(self, message: str, changes: Sequence[FileChange] = ()) -> None:
        super().__init__(message)
        self.changes = tuple(changes)


class SignatureMissing(VerificationError):
    """There is no signature file where one was expected."""


class PasswordRequired(SigningInputError):
    """The private key is encrypted and no password was given (the CLI may prompt on a terminal)."""


class FileChange(NamedTuple):
    """A file whose state differs from the signed manifest, or a link or special file that no signature
    can cover; `name` is relative to the model folder, `target` is where a link points."""

    kind: ChangeKind
    name: str
    target: str = ""

    def describe(self) -> str:
        return _DESCRIBE[self.kind].format(self.name, self.target)


def default_signature_path(model: str) -> str:
    """`model.sig` inside a model folder; `NAME.sig` next to a single-file model."""
    if os.path.isdir(model):
        return os.path.join(model, SIGNATURE_NAME)
    return model + ".sig"


def require_file(path: str, what: str) -> None:
    """Fail early, with one line, for a key or certificate that is not there."""
    if not os.path.isfile(path):
        raise SigningInputError(f"{what} not found: {path}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _ignored_paths(model: str, signature: str) -> list[str]:
    """What signing leaves out (relative to the model folder): the signature itself and the version-control
    folders the scanner skips (the library already leaves out `.git` and the git metadata files)."""
    if not os.path.isdir(model):
        return []
    ignored = sorted(SKIPPED_DIRS)
    relative = os.path.relpath(os.path.abspath(signature), os.path.abspath(model))
    if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
        ignored.append(relative)
    return ignored


def _is_ignored(name: str, ignored: Iterable[str]) -> bool:
    """Whether a model-relative name ('/'-separated) is, or is under, one of the ignored paths."""
    for path in ignored:
        prefix = path.replace(os.sep, "/").strip("/")
        if name == prefix or name.startswith(prefix + "/"):
            return True
    return False


def _cache_repository(folder: str) -> str | None:
    """The Hugging Face cache repository (`.../models--org--name`) whose `snapshots/<commit>` holds `folder`
    (a real path), if any: its snapshots' files are links into its `blobs/`."""
    parts = folder.split(os.sep)
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and is_hf_repo_name(parts[i - 1]):
            repository = os.sep.join(parts[:i])
            return repository if os.path.isdir(os.path.join(repository, "blobs")) else None
    return None


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _check_links(model: str, ignored: Collection[str]) -> tuple[bool, list[FileChange]]:
    """Whether the model has symbolic links, and what no signature can cover: broken links, links out of
    the model folder and its cache repository, links to folders, and special files.

    Everything the library walks is checked (it fails on a broken link or a FIFO even in an ignored
    folder); links in ignored paths may point anywhere. The model itself may be a link: it is what the
    user named. A folder that cannot be read is an error: the library would silently leave it out.
    """
    has_links = os.path.islink(model)
    if not os.path.isdir(model):
        return has_links, []
    try:
        return _walk_links(model, ignored, has_links)
    except OSError as exc:
        raise SigningInputError(f"cannot read {exc.filename or model}: {exc.strerror or exc}") from None


def _walk_links(model: str, ignored: Collection[str], has_links: bool) -> tuple[bool, list[FileChange]]:
    """The walk of `_check_links`, on directory entries (their type costs no system call on most systems)."""
    folder = os.path.realpath(model)
    allowed = [folder, *filter(None, [_cache_repository(folder)])]
    problems: list[FileChange] = []
    pending = [(model, "")]
    while pending:
        path, prefix = pending.pop()
        with os.scandir(path) as scan:
            entries = sorted(scan, key=lambda e: e.name, reverse=True)
        for entry in entries:
            name = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append((entry.path, name + "/"))
            elif entry.is_symlink():
                has_links = True
                problem = _link_problem(entry.path, name, allowed, ignored)
                problems += [problem] if problem else []
            elif not entry.is_file(follow_symlinks=False):
                problems.append(FileChange("special file", name))
    return has_links, sorted(problems, key=lambda p: p.name)


def _link_problem(path: str, name: str, allowed: Sequence[str], ignored: Collection[str]) -> FileChange | None:
    if not os.path.exists(path):  # also a link loop
        return FileChange("broken link", name, os.readlink(path))
    if _is_ignored(name, ignored):
        return None
    target = os.path.realpath(path)
    if not any(_inside(target, root) for root in allowed):
        return FileChange("outside link", name, target)
    if os.path.isdir(path):
        return FileChange("folder link", name, os.readlink(path))
    if not os.path.isfile(path):
        return FileChange("special file", name)
    return None


def _model_signing_version() -> str:
    from importlib.metadata import version  # noqa: PLC0415 - only to explain a refused key

    return version("model-signing")


def _key_kind(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    """A key's family as people name it ("RSA", "Ed25519", "elliptic-curve secp256k1")."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa  # noqa: PLC0415

    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"elliptic-curve {_CURVES.get(key.curve.name, key.curve.name)}"
    families: tuple[tuple[str, tuple[type, ...]], ...] = (
        ("RSA", (rsa.RSAPrivateKey, rsa.RSAPublicKey)),
        ("Ed25519", (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)),
        ("Ed448", (ed448.Ed448PrivateKey, ed448.Ed448PublicKey)),
        ("DSA", (dsa.DSAPrivateKey, dsa.DSAPublicKey)),
    )
    return next((name for name, types in families if isinstance(key, types)), type(key).__name__)


def _refused_key(path: str, key: PrivateKeyTypes | PublicKeyTypes, exc: Exception, action: str) -> SigningInputError:
    """One line for a key the library refused: its family when model-signing does not support it."""
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    supported = isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and key.curve.name in _CURVES
    if supported:
        return SigningInputError(f"cannot {action} with {path}: {_one_line(exc)}")
    return SigningInputError(
        f"model-signing {_model_signing_version()} does not support {_key_kind(key)} keys ({path}): "
        "use an elliptic-curve P-256, P-384 or P-521 key"
    )


def _load_private_key(path: str, password: bytes | None) -> tuple[PrivateKeyTypes, bool]:
    """The PEM private key and whether it is encrypted; a password given for a plain key is not needed."""
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import load_pem_private_key  # noqa: PLC0415

    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise SigningInputError(f"cannot read private key {path}: {exc.strerror or exc}") from None
    try:
        return load_pem_private_key(data, None), False
    except TypeError:  # "Password was not given but private key is encrypted"
        pass
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningInputError(f"{path} is not a PEM private key: {_one_line(exc)}") from None
    if password is None:
        raise PasswordRequired(f"private key {path} is encrypted and no password was given")
    try:
        return load_pem_private_key(data, password), True
    except ValueError:
        raise SigningInputError(f"wrong password for private key {path}") from None


def _load_public_key(path: str) -> PublicKeyTypes | None:
    """The PEM public key, or None if it is not one (the library's own error then says why)."""
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import load_pem_public_key  # noqa: PLC0415

    try:
        with open(path, "rb") as handle:
            return load_pem_public_key(handle.read())
    except (OSError, ValueError, UnsupportedAlgorithm):
        return None


def _describe_problems(problems: Sequence[FileChange]) -> str:
    named = "; ".join(p.describe() for p in problems[:_NAMED_PROBLEMS])
    more = len(problems) - _NAMED_PROBLEMS
    return f"{named} (and {more} more)" if more > 0 else named


def sign_model(
    model: str,
    private_key: str,
    signature: str | None = None,
    *,
    signing_certificate: str | None = None,
    certificate_chain: Sequence[str] = (),
    password: bytes | None = None,
) -> str:
    """Sign every file of `model` (a folder or one file) with an EC private key; returns the signature path.

    With `signing_certificate` the bundle carries the certificate and its chain (PKI mode) instead of a
    public-key hint. `password` decrypts an encrypted private key (`PasswordRequired` without it).
    """
    import model_signing.hashing  # noqa: PLC0415 - slow to import: only when signing
    import model_signing.signing  # noqa: PLC0415

    if not os.path.exists(model):
        raise SigningInputError(f"no such file or directory: {model}")
    require_file(private_key, "private key")
    if (signing_certificate is None) != (not certificate_chain):  # the library needs both or neither
        raise SigningInputError("--signing-certificate and --certificate-chain go together when signing")
    for cert in (signing_certificate, *certificate_chain):
        if cert is not None:
            require_file(cert, "certificate")
    key, encrypted = _load_private_key(private_key, password)
    signature = signature or default_signature_path(model)
    config = model_signing.signing.Config()
    try:
        if signing_certificate is None:
            # The library annotates the password as str, but hands it to cryptography, which needs bytes.
            key_password: Any = password if encrypted else None
            config.use_elliptic_key_signer(private_key=private_key, password=key_password)
        elif encrypted:
            raise SigningInputError(
                f"model-signing {_model_signing_version()} takes no password for a key used with a signing "
                f"certificate: {private_key} is encrypted"
            )
        else:
            config.use_certificate_signer(
                private_key=private_key, signing_certificate=signing_certificate, certificate_chain=certificate_chain
            )
    except SigningInputError:
        raise
    except Exception as exc:  # the library raises ValueError, TypeError or cryptography's own errors
        raise _refused_key(private_key, key, exc, "sign") from None
    ignored = _ignored_paths(model, signature)
    has_links, problems = _check_links(model, [*ignored, *_LIBRARY_IGNORED])
    if problems:
        raise SigningInputError(f"cannot sign {model}: {_describe_problems(problems)}")
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=ignored).set_allow_symlinks(has_links)
    try:
        config.set_hashing_config(hashing).sign(model, signature)
    except (OSError, ValueError) as exc:  # unreadable files, files changed while signing
        raise SigningInputError(f"cannot sign {model}: {_one_line(exc)}") from None
    return signature


def _read_bundle(signature: str) -> Any:
    """The signature file's JSON (a Sigstore bundle, unverified); None when it is not JSON."""
    try:
        with open(signature, "rb") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _signed_serialization(bundle: Any) -> dict[str, Any]:
    """How the signer hashed the model (the DSSE payload's `serialization`, read before it is verified: a
    forged value only makes verification fail); {} when the file is not a readable bundle."""
    import base64  # noqa: PLC0415 - only when verifying

    try:
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"], validate=True))
        serialization = statement["predicate"]["serialization"]
    except (ValueError, TypeError, KeyError):
        return {}
    return serialization if isinstance(serialization, dict) else {}


def _unsupported_certificate_key(bundle: Any) -> str | None:
    """The family of the bundle's signing-certificate key when model-signing cannot verify with it (the
    library would fail inside itself), None otherwise."""
    import base64  # noqa: PLC0415 - only when verifying

    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    try:
        raw = bundle["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"]
        key = x509.load_der_x509_certificate(base64.b64decode(raw, validate=True)).public_key()
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return None
    return _key_kind(key)


def _verifying_hashing(serialization: dict[str, Any], has_links: bool) -> Any:
    """The library's hashing configuration for the signer's serialization, following links when the model
    has them (the library would otherwise take the signer's `allow_symlinks`, and a model signed as plain
    files would fail in the cache, where its files are links). The library adds the signed ignore paths.
    Protobuf JSON writes the shard size as a float."""
    import model_signing.hashing  # noqa: PLC0415

    config = model_signing.hashing.Config()
    algorithm = serialization.get("hash_type", "sha256")
    algorithm = _CONFIG_ALGORITHMS.get(algorithm, algorithm)
    if serialization.get("method") == "shards":
        config.use_shard_serialization(hashing_algorithm=algorithm, shard_size=int(serialization["shard_size"]))
    else:
        config.use_file_serialization(hashing_algorithm=algorithm)
    return config.set_allow_symlinks(has_links)


def verify_model(
    model: str,
    signature: str | None = None,
    *,
    public_key: str | None = None,
    certificate_chain: Sequence[str] = (),
) -> str:
    """Verify `model` against its signature with a public key or a certificate chain; returns the signature
    path. Raises `VerificationError` (naming each differing file) or `SigningInputError`."""
    import model_signing.verifying  # noqa: PLC0415 - slow to import: only when verifying

    if not os.path.exists(model):
        raise SigningInputError(f"no such file or directory: {model}")
    if (public_key is None) == (not certificate_chain):
        raise SigningInputError("verify needs exactly one of --public-key and --certificate-chain")
    for path, what in ((public_key, "public key"), *((c, "certificate") for c in certificate_chain)):
        if path is not None:
            require_file(path, what)
    signature = signature or default_signature_path(model)
    if not os.path.isfile(signature):
        raise SignatureMissing(f"no signature for {model} at {signature}")
    config = model_signing.verifying.Config()
    try:
        if public_key is not None:
            config.use_elliptic_key_verifier(public_key=public_key)
        else:
            config.use_certificate_verifier(certificate_chain=certificate_chain)
    except Exception as exc:  # the library raises ValueError or cryptography's own errors
        key = None if public_key is None else _load_public_key(public_key)
        if key is not None:
            raise _refused_key(public_key or "", key, exc, "verify") from None
        raise SigningInputError(f"cannot use {public_key or ', '.join(certificate_chain)}: {_one_line(exc)}") from None
    bundle = _read_bundle(signature)
    serialization = _signed_serialization(bundle)
    signed_ignored = serialization.get("ignore_paths", [])
    ignored = [*_LIBRARY_IGNORED, *(p for p in signed_ignored if isinstance(p, str))]
    has_links, problems = _check_links(model, ignored)
    if problems:
        raise VerificationError("; ".join(p.describe() for p in problems), problems)
    try:
        config.set_hashing_config(_verifying_hashing(serialization, has_links)).verify(model, signature)
    except OSError as exc:
        raise SigningInputError(f"cannot verify {model}: {exc.strerror or exc}") from None
    except Exception as exc:  # fail closed: a hostile signature file may make the library raise anything
        unsupported = _unsupported_certificate_key(bundle) if certificate_chain else None
        if unsupported:
            raise SigningInputError(
                f"{signature} is signed with a certificate for an {unsupported} key, which model-signing "
                f"{_model_signing_version()} cannot verify (elliptic-curve P-256, P-384 or P-521 only)"
            ) from None
        raise _verification_error(model, signature, exc, sharded=serialization.get("method") == "shards") from None
    return signature


def _verification_error(model: str, signature: str, exc: Exception, *, sharded: bool) -> VerificationError:
    """One clear error from what the library raised, naming each file it reports as differing."""
    text = str(exc)
    if text.startswith(_MISMATCH_PREFIX):
        changes = _library_diff(text[len(_MISMATCH_PREFIX) :], os.path.basename(os.path.abspath(model)), sharded)
        if changes:
            return VerificationError("; ".join(c.describe() for c in changes), changes)
    if text.startswith(_KEY_MISMATCH_PREFIX):
        return VerificationError(f"{signature} was made with a different key than the one given")
    if not text:  # cryptography's InvalidSignature carries no message
        return VerificationError(f"{signature} does not match the trusted key (wrong key, or the file was altered)")
    return VerificationError(f"{signature} is not a valid signature for {model}: {_one_line(exc)}")


def _library_diff(listing: str, model_name: str, sharded: bool) -> list[FileChange]:
    """Parse the library's manifest diff (a Python list of sentences); [] if its wording is not recognised.

    A single-file model is one resource named '.', reported here under the file's own name; a shard
    (`name:start:end`) is reported as its file, once.
    """
    try:
        items = ast.literal_eval(listing)
    except (ValueError, SyntaxError):
        return []
    changes: list[FileChange] = []
    for item in items if isinstance(items, list) else ():
        for kind, pattern in _LIBRARY_DIFF:
            match = pattern.fullmatch(item) if isinstance(item, str) else None
            if match:
                names = [match.group(1)] if kind == "modified" else match.group(1).split(", ")
                if sharded:
                    names = [_SHARD_RANGE.sub("", n) for n in names]
                changes += [FileChange(kind, model_name if n == "." else n) for n in names]
                break
        else:
            return []
    return list(dict.fromkeys(changes))
