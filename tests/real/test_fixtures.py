"""Files written by the real frameworks (scripts/make_fixtures.py): no false alarms, no misses.

Hand-assembled payloads prove the analysers' logic; these prove it holds on the bytes torch, joblib,
numpy and safetensors actually write, and that the bundled examples do what examples/README.md says.
The hostile fixtures are only ever scanned, never loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelshield import FileResult, scan_file
from modelshield.core.rules import Category, Severity

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLES = ROOT / "examples"


#: `Expect.member` for a finding on the file itself rather than inside one of its members.
AT_FILE = ""


@dataclass(frozen=True)
class Expect:
    """A finding of `category` at `level` or worse, inside archive member `member` (or at the file
    itself for AT_FILE; anywhere for None, where the scanner names the decoded stream)."""

    category: Category
    member: str | None = AT_FILE
    level: Severity = Severity.HIGH

    def at(self, members: tuple[str, ...]) -> bool:
        if self.member is None:
            return True
        return self.member in members if self.member else not members

    def met_by(self, result: FileResult) -> bool:
        return any(
            f.category is self.category and f.level >= self.level and self.at(f.location.members)
            for f in result.findings
        )


CODE = Category.LOAD_TIME_CODE

#: What each hostile fixture must be reported for; a new fixture without an entry fails the coverage test.
MALICIOUS: dict[str, tuple[Expect, ...]] = {
    "torch_payload.pt": (Expect(CODE, "torch_payload/data.pkl"),),
    "torch_legacy_payload.pt": (Expect(CODE),),
    "joblib_payload.joblib": (Expect(CODE),),
    "joblib_payload_zlib.joblib": (Expect(CODE, None),),
    "numpy_object_payload.npy": (Expect(CODE, None),),
    "numpy_payload.npz": (Expect(CODE, "extra.npy"),),
    "pickle_as.safetensors": (Expect(CODE), Expect(Category.ARCHIVE, level=Severity.MEDIUM)),
    "dill_lambda.pkl": (Expect(CODE, level=Severity.CRITICAL),),
    "cloudpickle_function.pkl": (Expect(CODE, level=Severity.CRITICAL),),
}


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "README.md")


def describe(result: FileResult) -> str:
    return "\n".join(f"  {f.rule_id} {f.level.label} {f.location.display}: {f.evidence}" for f in result.findings)


def assert_clean(path: Path) -> None:
    """No finding of medium or above, and the file was recognised (an unrecognised file is no evidence)."""
    result = scan_file(str(path))
    assert result.error is None, result.error
    assert result.is_model, f"{path.name} was not recognised as a model (format: {result.format})"
    loud = [f for f in result.findings if f.level >= Severity.MEDIUM]
    assert not loud, f"false alarm on {path.name}:\n{describe(result)}"


def real_files() -> list[pytest.ParameterSet]:
    return [pytest.param(path, id=path.name) for path in files_in(FIXTURES / "real")]


@pytest.mark.parametrize("path", real_files())
def test_real_framework_file_is_clean(path: Path) -> None:
    assert_clean(path)


def markers() -> set[Path]:
    """Files the fixtures' payloads would create if anything ever ran them."""
    return set(Path("/tmp").glob("modelshield-marker-*"))


@pytest.mark.parametrize("name", sorted(MALICIOUS))
def test_malicious_fixture_is_caught(name: str) -> None:
    before = markers()
    result = scan_file(str(FIXTURES / "malicious" / name))
    assert markers() == before, f"scanning {name} ran its payload"
    for expect in MALICIOUS[name]:
        assert expect.met_by(result), f"{name}: no {expect} among:\n{describe(result)}"


def test_every_malicious_fixture_has_an_expectation() -> None:
    assert {p.name for p in files_in(FIXTURES / "malicious")} == set(MALICIOUS)


def test_fixture_set_stays_small() -> None:
    """make_fixtures.py's files are committed: keep each file, and the whole set, small."""
    files = files_in(FIXTURES / "real") + files_in(FIXTURES / "malicious") + files_in(EXAMPLES)
    assert max(p.stat().st_size for p in files) < 64 * 1024
    assert sum(p.stat().st_size for p in files) < 2 * 1024 * 1024


def example_table() -> dict[str, Expect | None]:
    """examples/README.md's table: file -> what an unsafe file must be reported for (None: clean)."""
    rows: dict[str, Expect | None] = {}
    for line in (EXAMPLES / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not re.fullmatch(r"(safe|unsafe)/\S+", cells[0]):
            continue
        name, verdict, category, member = cells[:4]
        if verdict not in ("clean", "unsafe"):
            raise ValueError(f"examples/README.md: unknown verdict {verdict!r} for {name}")
        rows[name] = None if verdict == "clean" else Expect(Category(category), AT_FILE if member == "-" else member)
    return rows


def test_examples_readme_lists_every_example() -> None:
    listed = set(example_table())
    assert listed, "no table rows found in examples/README.md"
    assert listed == {p.relative_to(EXAMPLES).as_posix() for p in files_in(EXAMPLES)}


@pytest.mark.parametrize("name", sorted(example_table()))
def test_example_behaves_as_documented(name: str) -> None:
    expect = example_table()[name]
    if expect is None:
        assert_clean(EXAMPLES / name)
        return
    result = scan_file(str(EXAMPLES / name))
    assert expect.met_by(result), f"{name}: no {expect} among:\n{describe(result)}"
