"""A real headless browser for the signup page: Chromium driven by selenium.

The browser comes from the system (Debian: ``apt-get install chromium
chromium-driver``); selenium comes from PyPI. :func:`browser_problem` says
why no browser can run here, so a test can skip with that reason.

``python -m shared.browser OUT.png`` serves the page, signs up in the
browser, waits for both jobs and the avatar, and saves a screenshot (the
one lesson 04 shows).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
DRIVERS = ("chromedriver",)
INSTALL_HINT = ("install one: `apt-get install chromium chromium-driver` (Debian/Ubuntu), "
                "or put chromium and a matching chromedriver on PATH")
WINDOW = (600, 600)


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        if found := shutil.which(name):
            return found
    return None


def browser_problem() -> str | None:
    """None if a headless Chromium can be driven here, else why not (with the fix)."""
    try:
        import selenium  # noqa: F401, PLC0415
    except ImportError:
        return "selenium is not installed: pip install selenium"
    if _which(BROWSERS) is None:
        return f"no Chromium or Chrome on PATH; {INSTALL_HINT}"
    if _which(DRIVERS) is None:
        return f"no chromedriver on PATH; {INSTALL_HINT}"
    return None


@contextmanager
def headless_chromium(width: int = WINDOW[0], height: int = WINDOW[1]) -> Iterator[WebDriver]:
    """A headless Chromium (selenium WebDriver) that is quit, with all its processes, on exit."""
    problem = browser_problem()
    browser, chromedriver = _which(BROWSERS), _which(DRIVERS)
    if problem is not None or browser is None or chromedriver is None:
        raise RuntimeError(problem or f"no browser or driver on PATH; {INSTALL_HINT}")
    from selenium import webdriver  # noqa: PLC0415 - only where a browser is wanted
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", f"--window-size={width},{height}",
                     "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    # A driver from PATH: selenium must not try to download one.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def sign_up_in_browser(driver: WebDriver, page_url: str, email: str, *,
                       timeout: float = 30.0) -> dict[str, str]:
    """Type ``email`` into the page, submit, wait until both jobs finished.

    Returns what the page shows per job row, e.g. ``{"welcome email": "done"}``.
    """
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    driver.get(page_url)
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "submit").click()

    def rows_finished(d: WebDriver) -> dict[str, str] | Literal[False]:
        rows = d.find_elements(By.CSS_SELECTOR, "#jobs tr")
        shown = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text
                 for r in rows if len(r.find_elements(By.TAG_NAME, "td")) == 2}
        done = len(shown) == 2 and all(t.split(":")[0] in ("done", "failed") for t in shown.values())
        return shown if done else False

    shown = WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        rows_finished, message=f"both job rows to show done or failed within {timeout:g} s")
    if shown.get("avatar") == "done":
        WebDriverWait(driver, timeout, poll_frequency=0.1).until(
            lambda d: d.execute_script(
                "const i = document.getElementById('avatar-image'); "
                "return i !== null && i.complete && i.naturalWidth > 0;"),
            message=f"the avatar image to load within {timeout:g} s")
    return shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot the signup page after a signup.")
    parser.add_argument("output", type=Path)
    parser.add_argument("--mode", default="dramatiq")
    args = parser.parse_args(argv)
    problem = browser_problem()
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from shared.app import create_app, state  # noqa: PLC0415
    from shared.modes import redis_url_for  # noqa: PLC0415
    from shared.smtp_sink import SmtpSink  # noqa: PLC0415
    from shared.web import BackgroundServer  # noqa: PLC0415

    with SmtpSink(delay=0.25) as sink:
        app = create_app(args.mode, smtp_host=sink.host, smtp_port=sink.port,
                         redis_url=redis_url_for(args.mode))
        try:
            with BackgroundServer(app) as server, headless_chromium() as driver:
                shown = sign_up_in_browser(driver, server.url + "/", "ada@example.com")
                args.output.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(args.output))
        finally:
            state(app).close()
    print(f"{args.output}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
