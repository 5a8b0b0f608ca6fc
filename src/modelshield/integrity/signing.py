"""Signing and verifying models in the OpenSSF model signing format, through the `model-signing` package.

The signature is a Sigstore bundle whose DSSE payload lists every file of the model with its SHA-256, so
any modified, missing or added file breaks it. `model_signing` is imported only when signing or verifying:
it takes seconds to import and most commands never need it.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Sequence
from typing import Literal, NamedTuple

from modelshield.core.files import SKIPPED_DIRS

#: The library's conventional signature name inside a model folder.
SIGNATURE_NAME = "model.sig"

ChangeKind = Literal["modified", "missing", "added"]

_DESCRIBE: dict[ChangeKind, str] = {
    "modified": "{} was modified after signing",
    "missing": "{} is missing (it is in the signature)",
    "added": "{} was added after signing (it is not in the signature)",
}
_MISMATCH_PREFIX = "Signature mismatch: "
_KEY_MISMATCH_PREFIX = "Key mismatch"
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


class FileChange(NamedTuple):
    """A file whose state differs from the signed manifest; `name` is relative to the model folder."""

    kind: ChangeKind
    name: str

    def describe(self) -> str:
        return _DESCRIBE[self.kind].format(self.name)


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


def sign_model(
    model: str,
    private_key: str,
    signature: str | None = None,
    *,
    signing_certificate: str | None = None,
    certificate_chain: Sequence[str] = (),
) -> str:
    """Sign every file of `model` (a folder or one file) with an EC private key; returns the signature path.

    With `signing_certificate` the bundle carries the certificate and its chain (PKI mode) instead of a
    public-key hint.
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
    signature = signature or default_signature_path(model)
    config = model_signing.signing.Config()
    try:
        if signing_certificate is None:
            config.use_elliptic_key_signer(private_key=private_key)
        else:
            config.use_certificate_signer(
                private_key=private_key, signing_certificate=signing_certificate, certificate_chain=certificate_chain
            )
    except Exception as exc:  # the library raises ValueError, TypeError or cryptography's own errors
        raise SigningInputError(f"cannot sign with {private_key}: {_one_line(exc)}") from None
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=_ignored_paths(model, signature))
    try:
        config.set_hashing_config(hashing).sign(model, signature)
    except (OSError, ValueError) as exc:  # unreadable files, symbolic links in the model
        raise SigningInputError(f"cannot sign {model}: {_one_line(exc)}") from None
    return signature


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
    trusted = public_key or ", ".join(certificate_chain)
    try:
        if public_key is not None:
            config.use_elliptic_key_verifier(public_key=public_key)
        else:
            config.use_certificate_verifier(certificate_chain=certificate_chain)
    except Exception as exc:  # the library raises ValueError or cryptography's own errors
        raise SigningInputError(f"cannot use {trusted}: {_one_line(exc)}") from None
    try:
        config.verify(model, signature)
    except OSError as exc:
        raise SigningInputError(f"cannot verify {model}: {exc.strerror or exc}") from None
    except Exception as exc:  # fail closed: a hostile signature file may make the library raise anything
        raise _verification_error(model, signature, exc) from None
    return signature


def _verification_error(model: str, signature: str, exc: Exception) -> VerificationError:
    """One clear error from what the library raised, naming each file it reports as differing."""
    text = str(exc)
    if text.startswith(_MISMATCH_PREFIX):
        changes = _library_diff(text[len(_MISMATCH_PREFIX) :], os.path.basename(os.path.abspath(model)))
        if changes:
            return VerificationError("; ".join(c.describe() for c in changes), changes)
    if text.startswith(_KEY_MISMATCH_PREFIX):
        return VerificationError(f"{signature} was made with a different key than the one given")
    if not text:  # cryptography's InvalidSignature carries no message
        return VerificationError(f"{signature} does not match the trusted key (wrong key, or the file was altered)")
    return VerificationError(f"{signature} is not a valid signature for {model}: {_one_line(exc)}")


def _library_diff(listing: str, model_name: str) -> list[FileChange]:
    """Parse the library's manifest diff (a Python list of sentences); [] if its wording is not recognised.

    A single-file model is one resource named '.', reported here under the file's own name.
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
                changes += [FileChange(kind, model_name if n == "." else n) for n in names]
                break
        else:
            return []
    return changes
