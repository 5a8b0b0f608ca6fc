"""Model files that real projects publish on PyPI must not raise false alarms.

The packages are in the `test` extra and must be installed: a missing one fails rather than skips,
since a false-alarm test that passes on an empty file list proves nothing. The files are found through
the installed distribution's file list; the packages themselves are never imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from modelshield import Policy, scan_file
from modelshield.core.rules import Severity


@dataclass(frozen=True)
class Package:
    """Where a distribution keeps its model files, and what a user has to trust to load them."""

    suffixes: tuple[str, ...]
    count: int
    #: the package's own classes its pickles build: unknown to modelshield until a user allowlists them
    trusted: frozenset[str] = frozenset()


PUBLISHED: dict[str, Package] = {
    # HMM segmenter and POS tagger probabilities: protocol-0 pickles of dicts of floats.
    "jieba": Package((".p",), 7),
    # A grapheme-to-phoneme GRU: an npz of twelve float32 arrays.
    "g2p-en": Package((".npz",), 1),
    # The three MTCNN face-detector networks: joblib pickles of numpy weights, LZ4-compressed.
    "mtcnn": Package((".lz4",), 3),
    # Vietnamese tokenizer and POS tagger: pickled sklearn-crfsuite CRFs (protocols 0, 2 and 3) that
    # embed the binary crfsuite model, up to 12 MB each.
    "pyvi": Package(
        (".pkl",),
        4,
        trusted=frozenset(
            {
                "sklearn_crfsuite.estimator.CRF",
                "sklearn_crfsuite._fileresource.FileResource",
                "pycrfsuite._logparser.TrainLogParser",
            }
        ),
    ),
}


def installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def require(name: str) -> metadata.Distribution:
    """The distribution; a missing one fails the test (see the module docstring)."""
    dist = installed(name)
    if dist is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return dist


def model_files(dist: metadata.Distribution, suffixes: tuple[str, ...]) -> list[str]:
    return sorted(str(f) for f in dist.files or () if f.name.endswith(suffixes))


def published_files() -> list[pytest.ParameterSet]:
    """One parameter per model file; a missing package gets one parameter ('') that fails or skips."""
    params = []
    for name, package in PUBLISHED.items():
        dist = installed(name)
        for relative in model_files(dist, package.suffixes) if dist else [""]:
            params.append(pytest.param(name, relative, id=relative or f"{name}-missing"))
    return params


@pytest.mark.parametrize("dist_name", sorted(PUBLISHED))
def test_package_ships_its_model_files(dist_name: str) -> None:
    package = PUBLISHED[dist_name]
    found = model_files(require(dist_name), package.suffixes)
    assert len(found) == package.count, f"{dist_name}: expected {package.count} model files, found {found}"


@pytest.mark.parametrize(("dist_name", "relative"), published_files())
def test_published_model_file_is_clean(dist_name: str, relative: str) -> None:
    dist = require(dist_name)
    trusted = PUBLISHED[dist_name].trusted
    policy = Policy(allow={"pickle-globals": trusted}) if trusted else None
    result = scan_file(str(Path(str(dist.locate_file(relative)))), policy)
    assert result.error is None, result.error
    assert result.is_model, f"{relative} was not recognised as a model (format: {result.format})"
    loud = [f for f in result.findings if f.level >= Severity.MEDIUM]
    details = "\n".join(f"  {f.rule_id} {f.level.label} {f.location.display}: {f.evidence}" for f in loud)
    assert not loud, f"false alarm on {dist_name}'s {relative}:\n{details}"
