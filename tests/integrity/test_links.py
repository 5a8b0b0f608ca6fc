"""Signatures and symbolic links: the Hugging Face cache layout (a snapshot's files link into the
repository's `blobs/`) signs and verifies like the plain folder; a link that leaves the folder and its
cache, a broken link, a link to a folder or a special file is refused by `sign` (exit 2, naming it) and is
a mismatch for `verify` (exit 1) and for `scan --public-key` (INT001 at the file)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import model_signing.hashing
import model_signing.signing
import model_signing.verifying
import pytest

from modelshield.cli import main
from modelshield.integrity.check import SIGNATURE_FORMAT
from modelshield.integrity.signing import sign_model
from tests.helpers import run_unprivileged, world_readable_folder
from tests.integrity.conftest import KeyPair

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def verify(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "verify", str(model), "--public-key", str(keys.public), *extra)


def verify_fails(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair) -> str:
    code, out, err = verify(capsys, model, keys)
    assert (code, out) == (1, ""), err
    assert err.count("\n") == 1 and err.startswith("modelshield: verification failed: ")
    return err


def sign_refused(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair) -> str:
    output = model.parent / "x.sig"
    code, out, err = run(capsys, "sign", str(model), "--private-key", str(keys.private), "-o", str(output))
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1 and err.startswith(f"modelshield: error: cannot sign {model}: ")
    assert not output.exists()
    return err


def into_cache(folder: Path, hub: Path, repo: str = "models--org--tiny") -> Path:
    """Copy a model folder into the Hugging Face hub cache layout, as huggingface_hub writes it: content in
    `blobs/<sha256>`, the snapshot's files relative links to them, `refs/main` naming the commit."""
    repository = hub / repo
    snapshot = repository / "snapshots" / COMMIT
    (repository / "blobs").mkdir(parents=True)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(COMMIT)
    for source in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = source.read_bytes()
        blob = repository / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / source.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def blob_of(link: Path) -> Path:
    assert link.is_symlink()
    return link.resolve()


@pytest.fixture
def signed(model: Path, keys: KeyPair) -> Path:
    sign_model(str(model), str(keys.private))
    return model


@pytest.fixture
def snapshot(signed: Path, tmp_path: Path) -> Path:
    """The signed model, signature included, as a cache snapshot."""
    return into_cache(signed, tmp_path / "hub")


def test_cache_snapshot_of_a_signed_model_verifies(
    capsys: pytest.CaptureFixture[str], snapshot: Path, keys: KeyPair
) -> None:
    assert (snapshot / "tokenizer" / "vocab.txt").is_symlink()
    code, out, err = verify(capsys, snapshot, keys)
    assert (code, err) == (0, "")
    assert "verified" in out


def test_modified_blob_names_the_file(capsys: pytest.CaptureFixture[str], snapshot: Path, keys: KeyPair) -> None:
    blob = blob_of(snapshot / "model.safetensors")
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    assert "model.safetensors was modified after signing" in verify_fails(capsys, snapshot, keys)


def test_snapshot_signs_under_the_link_names(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, tmp_path: Path
) -> None:
    snapshot = into_cache(model, tmp_path / "hub")
    code, _, err = run(capsys, "sign", str(snapshot), "--private-key", str(keys.private))
    assert (code, err) == (0, "")
    assert verify(capsys, snapshot, keys)[0] == 0
    # model-signing's own verifier, following links as its CLI's --allow_symlinks does, agrees
    hashing = model_signing.hashing.Config().set_allow_symlinks(True)
    verifier = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=keys.public)
    verifier.set_hashing_config(hashing).verify(snapshot, snapshot / "model.sig")
    # ...and the same signature holds for the plain folder: it lists names and contents, not blobs
    shutil.copy(snapshot / "model.sig", model / "model.sig")
    assert verify(capsys, model, keys)[0] == 0


def test_link_to_the_snapshot_and_single_linked_file(
    capsys: pytest.CaptureFixture[str], snapshot: Path, keys: KeyPair, tmp_path: Path
) -> None:
    """The model the user names may itself be a link, and a single-file model may be a blob link."""
    named = tmp_path / "my-model"
    named.symlink_to(snapshot)
    assert verify(capsys, named, keys)[0] == 0
    weights = snapshot / "model.safetensors"
    code, _, err = run(capsys, "sign", str(weights), "--private-key", str(keys.private), "-o", str(tmp_path / "w.sig"))
    assert (code, err) == (0, "")
    assert verify(capsys, weights, keys, "--signature", str(tmp_path / "w.sig"))[0] == 0


def test_link_inside_a_plain_folder_is_its_target(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair
) -> None:
    (model / "pytorch_model.safetensors").symlink_to("model.safetensors")
    assert run(capsys, "sign", str(model), "--private-key", str(keys.private))[0] == 0
    assert verify(capsys, model, keys)[0] == 0
    (model / "pytorch_model.safetensors").unlink()
    (model / "pytorch_model.safetensors").symlink_to("config.json")
    assert "pytorch_model.safetensors was modified" in verify_fails(capsys, model, keys)


def test_link_out_of_the_cache_is_refused_and_a_mismatch(
    capsys: pytest.CaptureFixture[str], snapshot: Path, keys: KeyPair, tmp_path: Path
) -> None:
    """Even with the signed content: what is outside can change after the check, and is not the model."""
    outside = tmp_path / "elsewhere.json"
    shutil.copy(blob_of(snapshot / "config.json"), outside)
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to(outside)
    err = verify_fails(capsys, snapshot, keys)
    assert f"config.json is a link to {outside}, outside the model folder and its cache" in err
    assert "config.json is a link to" in sign_refused(capsys, snapshot, keys)


def test_link_into_another_cached_repository_leaves_the_cache(
    capsys: pytest.CaptureFixture[str], snapshot: Path, keys: KeyPair, tmp_path: Path
) -> None:
    other = into_cache(snapshot, tmp_path / "hub", "models--other--repo")
    (snapshot / "extra.json").symlink_to(other / "config.json")
    assert "extra.json is a link to" in sign_refused(capsys, snapshot, keys)


def test_broken_link(capsys: pytest.CaptureFixture[str], snapshot: Path, keys: KeyPair) -> None:
    blob_of(snapshot / "tokenizer" / "vocab.txt").unlink()  # an interrupted download, a pruned cache
    err = verify_fails(capsys, snapshot, keys)
    assert "tokenizer/vocab.txt is a broken link (to ../../../blobs/" in err
    assert "tokenizer/vocab.txt is a broken link" in sign_refused(capsys, snapshot, keys)


def test_link_loop_is_a_broken_link(capsys: pytest.CaptureFixture[str], signed: Path, keys: KeyPair) -> None:
    (signed / "a").symlink_to("b")
    (signed / "b").symlink_to("a")
    err = verify_fails(capsys, signed, keys)
    assert "a is a broken link (to b); b is a broken link (to a)" in err


def test_link_to_a_folder_is_not_signed_around(
    capsys: pytest.CaptureFixture[str], signed: Path, keys: KeyPair, tmp_path: Path
) -> None:
    """model-signing does not hash the files under a linked folder: a folder link added after signing
    passes its own verifier, though a loader reads the files through it."""
    payload = signed / "tokenizer" / "extra"
    payload.mkdir()
    (payload / "evil.pkl").write_bytes(b"\x80\x04N.")
    shutil.move(payload, tmp_path / "planted")
    (signed / "tokenizer" / "extra").symlink_to(tmp_path / "planted")
    library = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=keys.public)
    library.set_hashing_config(model_signing.hashing.Config().set_allow_symlinks(True))
    library.verify(signed, signed / "model.sig")  # the library's own verdict: it matches
    assert "tokenizer/extra is a link to" in verify_fails(capsys, signed, keys)
    (signed / "tokenizer" / "extra").unlink()
    (signed / "tokenizer" / "extra").symlink_to(".")  # inside the folder: still not covered
    assert "tokenizer/extra is a link to a folder (.)" in verify_fails(capsys, signed, keys)
    assert "tokenizer/extra is a link to a folder" in sign_refused(capsys, signed, keys)


def test_fifo_is_refused(capsys: pytest.CaptureFixture[str], signed: Path, keys: KeyPair) -> None:
    os.mkfifo(signed / "pipe")
    assert "pipe is not a regular file or folder" in verify_fails(capsys, signed, keys)
    assert "pipe is not a regular file or folder" in sign_refused(capsys, signed, keys)


def test_links_in_ignored_folders_may_point_anywhere(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, tmp_path: Path
) -> None:
    (model / ".git").mkdir()
    (model / ".git" / "alternates").symlink_to(tmp_path)
    assert run(capsys, "sign", str(model), "--private-key", str(keys.private))[0] == 0
    assert verify(capsys, model, keys)[0] == 0


def scan_signature(capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair) -> tuple[int, dict[str, Any]]:
    code = main(["scan", "--format", "json", "--verbose", "--public-key", str(keys.public), str(model)])
    doc = json.loads(capsys.readouterr().out)
    return code, next(f for f in doc["files"] if f["format"] == SIGNATURE_FORMAT)


def test_scan_of_a_signed_snapshot(capsys: pytest.CaptureFixture[str], snapshot: Path, keys: KeyPair) -> None:
    code, entry = scan_signature(capsys, snapshot, keys)
    assert entry["findings"] == []
    assert code == 0
    blob = blob_of(snapshot / "model.safetensors")
    blob.write_bytes(blob.read_bytes() + b" ")
    code, entry = scan_signature(capsys, snapshot, keys)
    assert code == 1
    (finding,) = entry["findings"]
    assert (finding["rule_id"], finding["details"]["change"]) == ("INT001", "modified")
    assert finding["location"]["path"] == str(snapshot / "model.safetensors")


def test_scan_names_a_link_out_of_the_cache(
    capsys: pytest.CaptureFixture[str], snapshot: Path, keys: KeyPair, tmp_path: Path
) -> None:
    (tmp_path / "evil.py").write_text("import os\n")
    (snapshot / "evil.py").symlink_to(tmp_path / "evil.py")
    code, entry = scan_signature(capsys, snapshot, keys)
    assert code == 1
    (finding,) = entry["findings"]
    assert finding["rule_id"] == "INT001"
    assert finding["location"]["path"] == str(snapshot / "evil.py")
    assert finding["details"] == {
        "change": "outside link",
        "signature": str(snapshot / "model.sig"),
        "target": str(tmp_path / "evil.py"),
    }


def test_unreadable_folder_is_not_left_out(signed: Path, keys: KeyPair) -> None:
    """The library's walk skips a folder it cannot read; a signature over the rest must not pass. Run as
    a user that permissions bind (uid 65534 when the tests run as root)."""
    with world_readable_folder("modelshield-sign-") as root:
        model = Path(shutil.copytree(signed, root / "model"))
        public = Path(shutil.copy(keys.public, root / "signer.pub"))
        private = Path(shutil.copy(keys.private, root / "signer.key"))
        for path in [model, *model.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        private.chmod(0o644)
        verify_argv = ("verify", str(model), "--public-key", str(public))
        locked = model / "tokenizer"
        locked.chmod(0o700)  # root's own folder: uid 65534 cannot list it
        code, out, err = run_unprivileged(*verify_argv)
        assert (code, out) == (2, "")
        assert f"cannot read {locked}: Permission denied" in err and err.count("\n") == 1
        output = str(root / "u.sig")
        sign_argv = ("sign", str(model), "--private-key", str(private), "-o", output)
        code, out, err = run_unprivileged(*sign_argv, warm_up=verify_argv)
        assert (code, out) == (2, "")
        assert f"cannot read {locked}: Permission denied" in err and err.count("\n") == 1
        assert not os.path.exists(output)


@pytest.mark.parametrize("method", ["shards", "files"])
def test_library_signature_of_another_serialization_verifies_in_the_cache(
    capsys: pytest.CaptureFixture[str], model: Path, keys: KeyPair, tmp_path: Path, method: str
) -> None:
    """A signature made by model-signing itself, hashing BLAKE2 shards (which the library's own verifier
    cannot read back: it records "blake2b" and accepts only "blake2") or whole files with BLAKE3, is
    checked the way it was made, links followed."""
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=["model.sig"])
    if method == "shards":
        hashing.use_shard_serialization(hashing_algorithm="blake2", shard_size=64)
    else:
        hashing.use_file_serialization(hashing_algorithm="blake3")
    signer = model_signing.signing.Config().use_elliptic_key_signer(private_key=keys.private)
    signer.set_hashing_config(hashing).sign(model, model / "model.sig")
    snapshot = into_cache(model, tmp_path / "hub")
    code, _, err = verify(capsys, snapshot, keys)
    assert (code, err) == (0, "")
    blob = blob_of(snapshot / "config.json")
    blob.write_bytes(blob.read_bytes().replace(b"8", b"9"))
    weights = blob_of(snapshot / "model.safetensors")
    weights.write_bytes(bytes(b ^ 1 for b in weights.read_bytes()))
    err = verify_fails(capsys, snapshot, keys)
    assert err.endswith(": config.json was modified after signing; model.safetensors was modified after signing\n")
