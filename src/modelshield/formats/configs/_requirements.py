"""pip requirement lines that a model server installs for a model (TorchServe's `requirements.txt`, MLflow's
`requirements.txt`, `python_env.yaml` and conda `pip:` lists): parsed as text, never resolved.

Installing a requirement runs code: a source distribution's build backend (`setup.py`) runs at install, an
installed package's `.pth` files run at every interpreter start. A name from the index is the ordinary
case; options that switch the index, direct URLs, VCS links and local archives fetch what the model's
author chose from wherever they chose, bypassing whatever the operator's index vets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

#: Requirements kept per file (real ones list tens); the rest are counted.
MAX_REQUIREMENTS = 200
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_INDEX_OPTIONS = (
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--no-index", "-e",
    "--editable", "-c", "--constraint", "--pre", "--prefer-binary", "--only-binary", "--no-binary",
)  # fmt: skip
_INCLUDES = ("-r", "--requirement")
_ARCHIVE = re.compile(r"\.(whl|tar\.gz|tgz|zip|tar\.bz2|egg)\b", re.IGNORECASE)


class Requirement(NamedTuple):
    """One requirement line: the distribution it names (if a plain name) and why it is not a plain name."""

    text: str
    name: str | None
    unusual: str | None = None


def parse_line(line: str) -> Requirement | None:
    """One line of a requirements file (comments and blank lines are None)."""
    text = line.split(" #", 1)[0].strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith(_INCLUDES):
        return Requirement(text, None)
    if text.startswith("-"):
        option = text.split("=", 1)[0].split(None, 1)[0]
        reason = "changes where pip installs from" if option in _INDEX_OPTIONS else "passes an option to pip"
        return Requirement(text, None, f"{option} {reason}")
    if "://" in text or text.startswith(("git+", "hg+", "svn+", "bzr+")) or " @ " in text:
        return Requirement(text, _name(text), "installs from a URL or VCS link, not the package index")
    if text.startswith((".", "/", "~")) or _ARCHIVE.search(text):
        return Requirement(text, None, "installs a local file or archive")
    return Requirement(text, _name(text))


def _name(text: str) -> str | None:
    match = _NAME.match(text)
    return match.group(1) if match else None


def parse(lines: Iterable[str]) -> list[Requirement]:
    """Requirement lines (bounded at MAX_REQUIREMENTS)."""
    found: list[Requirement] = []
    for line in lines:
        requirement = parse_line(line)
        if requirement is not None:
            found.append(requirement)
            if len(found) >= MAX_REQUIREMENTS:
                break
    return found


def summary(requirements: list[Requirement], limit: int = 8) -> str:
    """`numpy, torch==2.1, ...` for evidence."""
    shown = ", ".join(r.text[:60] for r in requirements[:limit])
    return shown + (f", ... ({len(requirements)} in all)" if len(requirements) > limit else "")
