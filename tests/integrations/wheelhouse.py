"""An offline wheelhouse for tools that install modelshield into their own environment (pre-commit,
the GitHub Action's install step): tests must not need the network, so every distribution modelshield
needs at run time and to build is repacked, from this test environment's installed copy, into a wheel
that pip installs with `--no-index --find-links`."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
#: What building modelshield from source needs besides its dependencies (pyproject's build-system).
BUILD = ("setuptools",)


def _project_requirements() -> list[str]:
    """modelshield's run-time requirements as this checkout's pyproject.toml declares them (the installed
    metadata may be another checkout's)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    with open(ROOT / "pyproject.toml", "rb") as handle:
        requirements: list[str] = tomllib.load(handle)["project"]["dependencies"]
    return requirements


def _needed() -> set[str]:
    """Names of the installed distributions modelshield needs at run time, and the build backend
    (with what the extras they are asked for with need)."""
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    todo = [(r, "") for r in BUILD]
    todo += [
        (Requirement(r).name, "")
        for r in _project_requirements()
        if Requirement(r).marker is None or Requirement(r).marker.evaluate()
    ]
    while todo:
        raw_name, extra = todo.pop()
        name = re.sub(r"[-_.]+", "-", raw_name).lower()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # a requirement whose marker excludes this Python
        names.add(name)
        for raw in requires:
            requirement = Requirement(raw)
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                if extra and (requirement.marker is None or "extra" not in str(requirement.marker)):
                    continue  # already followed without the extra
                todo.append((requirement.name, ""))
                todo += [(requirement.name, e) for e in requirement.extras]
    return names


def _repack(dist: metadata.Distribution, folder: Path) -> None:
    """The installed files of `dist` (those inside site-packages) as a wheel with a fresh RECORD."""
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    wheel = folder / f"{name}-{dist.version}-py3-none-any.whl"
    record_name = ""
    rows = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for file in dist.files or []:
            path = str(file)
            if path.startswith("..") or "__pycache__" in path or path.endswith(".pyc"):
                continue  # console scripts are regenerated from entry_points.txt; bytecode is rebuilt
            folder, _, base = path.partition("/")
            own = folder.endswith(".dist-info") and "/" not in base  # not a vendored package's dist-info
            if own and base == "RECORD":
                record_name = path
                continue
            if own and base in ("INSTALLER", "direct_url.json", "REQUESTED"):
                continue
            data = Path(str(dist.locate_file(file))).read_bytes()
            archive.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append(f"{path},sha256={digest},{len(data)}")
        rows.append(f"{record_name},,")
        archive.writestr(record_name, "\n".join(rows) + "\n")


def build(folder: Path) -> Path:
    """Fill `folder` with the wheels; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(_needed()):
        if name != "modelshield":
            _repack(metadata.distribution(name), folder)
    return folder


def offline_pip(folder: Path) -> dict[str, str]:
    """Environment variables that make pip install only from the wheelhouse."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(folder), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def source_copy(target: Path) -> Path:
    """modelshield's source as a fresh git repository (whatever state the checkout under test is in)."""
    names = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", ".pre-commit-hooks.yaml"]
    names += ["action.yml", "src"]
    target.mkdir(parents=True)
    for name in names:
        source = ROOT / name
        if source.is_dir():
            subprocess.run(["cp", "-r", str(source), str(target / name)], check=True)
        elif source.exists():
            (target / name).write_bytes(source.read_bytes())
    for cache in target.rglob("__pycache__"):
        subprocess.run(["rm", "-rf", str(cache)], check=True)
    for built in target.rglob("*.so"):  # an in-place build of the native loop: installs build their own
        built.unlink()
    git(target, "init", "-q")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "modelshield")
    return target


def git(folder: Path, *argv: str) -> None:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", *identity, *argv], cwd=folder, check=True)


PYTHON = sys.executable
