"""A real headless Chromium (Debian's chromium and chromedriver) driven by Selenium, for page tests.

`.ci/run` installs the browser and sets MODELSHIELD_REQUIRE_BROWSER=1, so in CI a missing browser fails
the tests; on a machine without Chromium they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        if os.environ.get("MODELSHIELD_REQUIRE_BROWSER"):
            pytest.fail("Chromium and chromedriver are required here (MODELSHIELD_REQUIRE_BROWSER is set)")
        pytest.skip("needs Chromium and chromedriver (Debian: apt install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
