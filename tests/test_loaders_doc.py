"""docs/loaders.md stays honest: its rules exist, its tests exist, and a row without both says "gap"."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from modelshield import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "loaders.md"
COLUMNS = ["path", "what the file controls", "analysed by", "rule", "test", "status"]
REAL_TEST = "tests/test_loaders_doc.py::test_the_checker_accepts_honest_rows"
RULE_ID = re.compile(r"\b[A-Z]{3}\d{3}\b")
TEST_REF = re.compile(r"\b(tests/[\w/]+\.py)::(\w+)")


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
