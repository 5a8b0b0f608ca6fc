"""docs/loaders.md stays honest: its rules exist, its tests exist, a row without both says "gap", its
proof-of-fire scripts exist; and the README's coverage table claims no more than the catalogue does."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from modelshield import CATALOGUE
from modelshield.core.scan_rules import ENGINE_RULES
from modelshield.formats.pickle.rules import SCAN_BOUND

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "loaders.md"
README = ROOT / "README.md"
COLUMNS = ["path", "what the file controls", "analysed by", "rule", "test", "status"]
REAL_TEST = "tests/test_loaders_doc.py::test_the_checker_accepts_honest_rows"
RULE_ID = re.compile(r"\b[A-Z]{3}\d{3}\b")
TEST_REF = re.compile(r"\b(tests/[\w/]+\.py)::(\w+)")
PROOF_LINE = re.compile(r"^proof of fire: (.+)$", re.MULTILINE)
PROOF_SCRIPT = re.compile(r"scripts/prove_\w+\.py")
#: The README coverage table is the one whose header starts with these cells.
COVERAGE_HEADER = ["family", "rules", "what is checked"]
#: A link to a catalogue section with its number of open gaps, as the README's last column writes it.
SECTION_LINK = re.compile(r"\[([^\]]+)\]\(docs/loaders\.md#([\w-]+)\) \((no gap|1 gap|\d+ gaps)\)")
#: The last cell of a README row that is not a loader (archives, signatures): they apply to every loader's files.
NOT_A_LOADER = "—"
README_RULE = re.compile(r"`([A-Z]{3}(?:\d{3})?)`")
#: Rules about the scan's own bounds and verdicts, not about a loader path: the README may name them anywhere.
SCANNER_RULES = frozenset({rule.id for rule in ENGINE_RULES} | {SCAN_BOUND.id})


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def rows(text: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every row of every loader table: the tables whose header is COLUMNS."""
    found: list[tuple[int, list[str]]] = []
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            in_table = False
        elif cells(line) == COLUMNS:
            in_table = True
        elif in_table and not set(line) <= set("|-: "):
            found.append((number, cells(line)))
    return found


@cache
def defined_tests(path: str) -> frozenset[str]:
    """Names of the test functions defined in a test file (module level or in classes), from its ast."""
    file = ROOT / path
    if not file.is_file():
        return frozenset()
    tree = ast.parse(file.read_text(encoding="utf-8"))
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    )


def problems(row: list[str]) -> list[str]:
    """What is wrong with one table row; empty when it is honest."""
    if len(row) != len(COLUMNS):
        return [f"has {len(row)} cells, not {len(COLUMNS)}"]
    _, _, _, rule, test, status = row
    rule_ids = RULE_ID.findall(rule)
    tests = TEST_REF.findall(test)
    errors = [f"rule {rule_id} is not in the catalogue" for rule_id in rule_ids if rule_id not in CATALOGUE]
    errors += [f"test {path}::{name} does not exist" for path, name in tests if name not in defined_tests(path)]
    if not (rule_ids and tests) and "gap" not in status.lower():
        errors.append("has no rule and test, and its status does not say gap")
    return errors


def test_every_row_names_real_rules_and_tests_or_says_gap() -> None:
    table = rows(DOC.read_text(encoding="utf-8"))
    assert len(table) > 50  # the parser found the tables
    errors = [f"docs/loaders.md:{number}: {error}" for number, row in table for error in problems(row)]
    assert not errors, "\n".join(errors)


def test_every_loader_section_has_a_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    loaders = [section for section in sections if not section.startswith("How to read")]
    assert len(loaders) >= 15
    empty = [section.splitlines()[0] for section in loaders if not rows(section)]
    assert not empty, empty


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (["p", "c", "a", "XYZ999", REAL_TEST, "covered"], "not in the catalogue"),
        (["p", "c", "a", "PKL001", "tests/test_loaders_doc.py::test_nothing_here", "covered"], "does not exist"),
        (["p", "c", "a", "PKL001", "tests/no_such_file.py::test_x", "covered"], "does not exist"),
        (["p", "c", "a", "PKL001", "—", "covered"], "does not say gap"),
        (["p", "c", "a", "—", "—", "covered"], "does not say gap"),
        (["p", "c", "a", "PKL001"], "cells"),
    ],
)
def test_the_checker_reports_dishonest_rows(row: list[str], expected: str) -> None:
    assert any(expected in error for error in problems(row))


def test_the_checker_accepts_honest_rows() -> None:
    assert problems(["p", "c", "a", "PKL001", REAL_TEST, "covered"]) == []
    assert problems(["p", "c", "a", "—", "—", "GAP — not modelled"]) == []


# -- proof-of-fire scripts ---------------------------------------------------------------------------


def proof_problems(text: str, scripts: set[str]) -> list[str]:
    """Prove scripts the catalogue names that do not exist, and prove scripts it never names.

    `proof of fire:` lines are the convention under a section's heading; a script named in a row or in
    prose counts as named too."""
    named = set(PROOF_SCRIPT.findall(text))
    errors = [f"docs/loaders.md names {script}, which does not exist" for script in sorted(named - scripts)]
    errors += [
        f"{script} is not named in docs/loaders.md (add 'proof of fire: {script}')"
        for script in sorted(scripts - named)
    ]
    errors += [
        f"'proof of fire: {line}' names no scripts/prove_*.py"
        for line in PROOF_LINE.findall(text)
        if not PROOF_SCRIPT.search(line)
    ]
    return errors


def test_proof_of_fire_scripts_exist_and_are_named() -> None:
    scripts = {f"scripts/{path.name}" for path in (ROOT / "scripts").glob("prove_*.py")}
    assert not proof_problems(DOC.read_text(encoding="utf-8"), scripts)


def test_the_proof_checker_reports_missing_and_unnamed_scripts() -> None:
    text = "## x\n\nproof of fire: scripts/prove_gone.py\n\nproof of fire: by hand\n"
    assert proof_problems(text, {"scripts/prove_here.py"}) == [
        "docs/loaders.md names scripts/prove_gone.py, which does not exist",
        "scripts/prove_here.py is not named in docs/loaders.md (add 'proof of fire: scripts/prove_here.py')",
        "'proof of fire: by hand' names no scripts/prove_*.py",
    ]


# -- the README coverage table against the catalogue ------------------------------------------------


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def sections(text: str) -> dict[str, str]:
    """Loader sections of the catalogue by anchor."""
    found = {}
    for part in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title = part.splitlines()[0]
        if not title.startswith("How to read"):
            found[anchor(title)] = part
    return found


def gap_text(section: str) -> str:
    count = sum(1 for _, row in rows(section) if len(row) == len(COLUMNS) and "gap" in row[-1].lower())
    return "no gap" if count == 0 else "1 gap" if count == 1 else f"{count} gaps"


def coverage_rows(readme: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of the README table whose header starts with COVERAGE_HEADER."""
    found: list[tuple[int, list[str]]] = []
    in_table = False
    for number, line in enumerate(readme.splitlines(), 1):
        if not line.startswith("|"):
            in_table = False
        elif cells(line)[:3] == COVERAGE_HEADER:
            in_table = True
        elif in_table and not set(line) <= set("|-: "):
            found.append((number, cells(line)))
    return found


def _row_problems(number: int, row: list[str], catalogue: dict[str, str], linked: set[str]) -> list[str]:
    family, rules, checked, loaders = row
    where = f"README.md:{number} ({family.split(' (')[0]})"
    if loaders == NOT_A_LOADER:
        return []
    links = SECTION_LINK.findall(loaders)
    if not links or SECTION_LINK.sub("", loaders).replace(",", "").strip():
        return [f"{where}: the last cell must be links like [name](docs/loaders.md#anchor) (2 gaps), or {NOT_A_LOADER}"]
    errors = []
    named: set[str] = set()
    covered: set[str] = set()
    for text, target, stated in links:
        if target not in catalogue:
            errors.append(f"{where}: links #{target}, a loader docs/loaders.md does not have")
            continue
        linked.add(target)
        expected = gap_text(catalogue[target])
        if stated != expected:
            errors.append(f"{where}: [{text}] says ({stated}); docs/loaders.md#{target} has ({expected})")
        for _, doc_row in rows(catalogue[target]):
            ids = set(RULE_ID.findall(doc_row[3])) if len(doc_row) == len(COLUMNS) else set()
            named |= ids
            if "gap" not in doc_row[-1].lower():
                covered |= ids
    for claim in README_RULE.findall(rules + " " + checked):
        if len(claim) == 3 and not any(rule_id.startswith(claim) for rule_id in named):
            errors.append(f"{where}: claims {claim} rules, but no row of its loaders names one")
        elif len(claim) > 3 and claim not in covered and claim not in SCANNER_RULES:
            errors.append(f"{where}: names {claim} as checked, but no covered row of its loaders names it")
    return errors


def coverage_problems(readme: str, doc: str) -> list[str]:
    """Where the README's coverage table claims more than docs/loaders.md, or misses a loader of it."""
    table = coverage_rows(readme)
    if not table:
        return ["README.md has no coverage table"]
    catalogue = sections(doc)
    linked: set[str] = set()
    errors = []
    for number, row in table:
        if len(row) != len(COVERAGE_HEADER) + 1:
            errors.append(f"README.md:{number}: has {len(row)} cells, not {len(COVERAGE_HEADER) + 1}")
            continue
        errors += _row_problems(number, row, catalogue, linked)
    errors += [
        f"docs/loaders.md#{target} is linked from no README coverage row"
        for target in catalogue
        if target not in linked
    ]
    return errors


def test_readme_coverage_table_matches_the_catalogue() -> None:
    errors = coverage_problems(README.read_text(encoding="utf-8"), DOC.read_text(encoding="utf-8"))
    assert not errors, "\n".join(errors)


FAKE_DOC = f"""## How to read it

## Loader A

| {" | ".join(COLUMNS)} |
|---|---|---|---|---|---|
| p | c | a | ONX001 | {REAL_TEST} | covered |
| q | c | a | ONX004 | {REAL_TEST} | partial — gap: not judged |

## Loader B

| {" | ".join(COLUMNS)} |
|---|---|---|---|---|---|
| p | c | a | — | — | GAP — nothing |
"""


def fake_readme(*rows_: str) -> str:
    return "| family | rules | what is checked | loaders |\n| --- | --- | --- | --- |\n" + "\n".join(rows_) + "\n"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            "| A | `ONX` | x | [A](docs/loaders.md#loader-a) (no gap), [B](docs/loaders.md#loader-b) (1 gap) |",
            "has (1 gap)",
        ),
        (
            "| A | `ONX` | `ONX004` | [A](docs/loaders.md#loader-a) (1 gap), [B](docs/loaders.md#loader-b) (1 gap) |",
            "ONX004 as checked",
        ),
        (
            "| A | `SFT` | x | [A](docs/loaders.md#loader-a) (1 gap), [B](docs/loaders.md#loader-b) (1 gap) |",
            "SFT rules",
        ),
        (
            "| A | `ONX` | x | [A](docs/loaders.md#loader-a) (1 gap), [C](docs/loaders.md#loader-c) (no gap) |",
            "does not have",
        ),
        ("| A | `ONX` | x | [A](docs/loaders.md#loader-a) (1 gap) |", "loader-b is linked from no"),
        ("| A | `ONX` | x | see docs |", "must be links"),
    ],
)
def test_the_coverage_checker_reports_overclaiming_rows(row: str, expected: str) -> None:
    errors = coverage_problems(fake_readme(row), FAKE_DOC)
    assert any(expected in error for error in errors), errors


def test_the_coverage_checker_accepts_an_honest_table() -> None:
    honest = "| A | `ONX` | `ONX001` | [A](docs/loaders.md#loader-a) (1 gap), [B](docs/loaders.md#loader-b) (1 gap) |"
    other = f"| Archives | `ARC` | zips | {NOT_A_LOADER} |"
    assert coverage_problems(fake_readme(honest, other), FAKE_DOC) == []
