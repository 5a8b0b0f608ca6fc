"""`scan --format html`: one self-contained page, rendered in a real headless Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelshield import scan
from modelshield.cli import main
from modelshield.reports import render
from tests.deps.conftest import AddRepo, adapter_folder, llama_files, weights
from tests.helpers import evil_pickle
from tests.reports.browser import browser

__all__ = ["browser"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def page(driver: Any, html: str, tmp_path: Path) -> Any:
    """Open the report as a file, the way a user opens a downloaded CI artifact; console errors fail."""
    from selenium.webdriver.common.by import By

    target = tmp_path / "report.html"
    target.write_text(html, encoding="utf-8")
    driver.get(target.as_uri())
    assert driver.find_element(By.TAG_NAME, "h1").text == "modelshield scan report"
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    return By


def test_examples_report_shows_every_finding(browser: Any, tmp_path: Path) -> None:
    report = scan([str(EXAMPLES)])
    by = page(browser, render("html", report), tmp_path)
    assert browser.find_element(by.ID, "verdict").text == "FAIL (exit code 1)"
    rows = browser.find_elements(by.CSS_SELECTOR, "tr.finding")
    assert len(rows) == len(report.findings)
    shown = sorted(row.find_elements(by.TAG_NAME, "a")[0].text for row in rows)
    assert shown == sorted(f.rule_id for f in report.findings)
    for finding in report.findings:
        section = browser.find_element(by.ID, f"rule-{finding.rule_id}")
        assert "Remediation" in section.text
    assert all(row.find_elements(by.CSS_SELECTOR, "td")[4].text for row in rows)  # every finding has its fix
    counts = browser.find_element(by.ID, "counts").text
    assert f"critical {report.counts[max(report.counts)]}" in counts


def test_clean_model_passes(browser: Any, tmp_path: Path) -> None:
    weights(tmp_path / "m" / "model.safetensors", w=(2, 2))
    by = page(browser, render("html", scan([str(tmp_path / "m")])), tmp_path)
    assert browser.find_element(by.ID, "verdict").text == "PASS (exit code 0)"
    assert browser.find_elements(by.CSS_SELECTOR, "tr.finding") == []


def test_dependency_graph_is_drawn(browser: Any, tmp_path: Path, hub_cache: AddRepo) -> None:
    hub_cache("evil-org/llama-7b-base", llama_files(evil=True))
    report = scan([str(adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base"))])
    by = page(browser, render("html", report), tmp_path)
    svg = browser.find_element(by.ID, "dependency-graph")
    labels = [node.text for node in svg.find_elements(by.CSS_SELECTOR, "g.node")]
    assert any("evil-org/llama-7b-base" in label and "critical" in label for label in labels)
    assert svg.find_elements(by.TAG_NAME, "line")


def test_hostile_names_and_evidence_are_text_not_markup(browser: Any, tmp_path: Path) -> None:
    name = '<img src=x onerror="document.title=1">.pkl'
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / name).write_bytes(evil_pickle("<script>document.title='owned'</script>"))
    by = page(browser, render("html", scan([str(folder)])), tmp_path)
    assert browser.find_elements(by.CSS_SELECTOR, "img") == []
    assert browser.find_elements(by.CSS_SELECTOR, "body script") == []
    assert browser.title == "modelshield report"
    assert name in browser.find_element(by.TAG_NAME, "body").text


def test_page_needs_no_network() -> None:
    html = render("html", scan([str(EXAMPLES)]))
    for reference in ("http://", "https://", "src=", "<link", "<script", "@import"):
        assert reference not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_written_with_o(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert main(["scan", "-f", "html", "-o", str(out), str(EXAMPLES)]) == 1
    assert capsys.readouterr().out == ""
    assert out.read_text().startswith("<!DOCTYPE html>")
