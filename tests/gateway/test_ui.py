"""The security team's page, served by a real `modelshield serve` and read in Debian's headless Chromium:
signing in with a security team's token, recent decisions, blocked revisions with their findings and
threat pages, the audit log; hostile names stay text; other tokens and no token see nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.gateway.conftest import FIXTURES, Gateway, benign_repo
from tests.gateway.test_gateway import _get
from tests.reports.browser import browser
from tests.sources.hubserver import HubServer

__all__ = ["browser"]

HOSTILE = "<img src=x onerror=document.title='owned'>.bin"


def _sign_in(driver: Any, url: str, token: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    driver.delete_all_cookies()
    driver.get(f"{url}/ui")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    # the click returns before the posted form's answer has loaded: wait for either page
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "login-error") or d.find_elements(By.ID, "recent"))
    return By


def test_security_page_in_a_real_browser(browser: Any, hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/benign", benign_repo(tmp_path / "benign"), private=True)
    evil = tmp_path / "evil"
    evil.mkdir()
    shutil.copy(FIXTURES / "malicious" / "torch_payload.pt", evil / HOSTILE)
    (evil / "config.json").write_text("{}")
    hub.add_repo("org/evil", evil, private=True)
    gateway.options = ["--admin-team", "security"]
    research, security = gateway.add_token("research"), gateway.add_token("security")
    gateway.start()
    assert _get(f"{gateway.url}/org/benign/resolve/main/config.json", research)[0] == 200
    status, headers, _body = _get(f"{gateway.url}/org/evil/resolve/main/config.json", research)
    assert status == 403 and "PKL001" in headers["x-error-message"]

    for token in (None, research, "msg_unknown"):  # no token, a developer's token, an unknown token
        status, headers, body = _get(f"{gateway.url}/ui", token)
        assert status == 200 and b"org/evil" not in body and b'name="token"' in body  # the sign-in form only
    by = _sign_in(browser, gateway.url, research)
    assert "not a security team" in browser.find_element(by.ID, "login-error").text
    assert browser.find_elements(by.ID, "blocked") == []
    browser.get_log("browser")  # drained: the refused sign-in's 401 is expected

    by = _sign_in(browser, gateway.url, security)
    assert browser.title == "modelshield gateway"  # the hostile name did not run
    assert browser.find_elements(by.CSS_SELECTOR, "img") == []
    assert browser.find_elements(by.CSS_SELECTOR, "body script") == []
    blocked = browser.find_elements(by.CSS_SELECTOR, "section.blocked")
    assert len(blocked) == 1 and "org/evil" in blocked[0].text
    findings = blocked[0].find_elements(by.CSS_SELECTOR, "tr.finding")
    assert any("PKL001" in row.text and HOSTILE in row.text for row in findings)
    link = blocked[0].find_element(by.CSS_SELECTOR, "a[href='#rule-PKL001']")
    link.click()
    page = browser.find_element(by.ID, "rule-PKL001")
    assert "Remediation" in page.text and page.is_displayed()
    recent = browser.find_elements(by.CSS_SELECTOR, "tr.decision")
    texts = [row.text for row in recent]
    assert any("team:research" in t and "org/benign" in t and "allow" in t for t in texts)
    assert any("team:research" in t and "org/evil" in t and "block" in t for t in texts)
    assert any("unknown" in t and "sign-in refused" in t for t in texts)  # the refused sign-in is audited
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], errors
    cookie = browser.get_cookie("modelshield_ui")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
