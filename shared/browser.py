"""A real headless browser for the signup page: Chromium driven by selenium.

The browser comes from the system (Debian: ``apt-get install chromium
chromium-driver``); selenium comes from PyPI. :func:`browser_problem` says
why no browser can run here, so a test can skip with that reason.

:func:`submit_signup` signs up in the page and records every text its job
rows show, with when (:func:`recorded`); :func:`wait_for_row` waits for a
row to show something (a retry waiting, say); :func:`wait_until_finished`
waits for both jobs. Lesson 04 drives the page live with them.

``python -m shared.browser OUT.png`` serves the page, signs up in the
browser, waits for both jobs and the avatar, and saves a screenshot.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
DRIVERS = ("chromedriver",)
INSTALL_HINT = ("install one: `apt-get install chromium chromium-driver` (Debian/Ubuntu), "
                "or put chromium and a matching chromedriver on PATH")
WINDOW = (600, 600)
FINISHED = ("done", "failed")


MAC_APPS = ("/Applications/Chromium.app/Contents/MacOS/Chromium",
            "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome")  # not on PATH by default


def _which(names: tuple[str, ...], also: tuple[str, ...] = ()) -> str | None:
    for name in names:
        if found := shutil.which(name):
            return found
    return next((path for path in also if Path(path).is_file()), None)


def browser_problem() -> str | None:
    """None if a headless Chromium can be driven here, else why not (with the fix)."""
    try:
        import selenium  # noqa: F401, PLC0415
    except ImportError:
        return "selenium is not installed: pip install selenium"
    if _which(BROWSERS, MAC_APPS) is None:
        return f"no Chromium or Chrome on PATH (nor in /Applications); {INSTALL_HINT}"
    if _which(DRIVERS) is None:
        return f"no chromedriver on PATH; {INSTALL_HINT}"
    return None


@contextmanager
def headless_chromium(width: int = WINDOW[0], height: int = WINDOW[1]) -> Iterator[WebDriver]:
    """A headless Chromium (selenium WebDriver) that is quit, with all its processes, on exit."""
    problem = browser_problem()
    browser, chromedriver = _which(BROWSERS, MAC_APPS), _which(DRIVERS)
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


def open_page(driver: WebDriver, page_url: str) -> None:
    """Open the signup page and start recording what its job rows show (:func:`recorded`)."""
    driver.get(page_url)
    driver.execute_script(RECORD_JS)


def submit_email(driver: WebDriver, email: str) -> None:
    """Put ``email`` into the open page's form and click its button, in one call to the
    browser (typing key by key through the driver takes a few hundred ms)."""
    driver.execute_script("document.getElementById('email').value = arguments[0];"
                          "document.getElementById('submit').click();", email)


def submit_signup(driver: WebDriver, page_url: str, email: str) -> None:
    """Open the page, start recording what its job rows show, type ``email`` and submit."""
    open_page(driver, page_url)
    submit_email(driver, email)


#: Records every change of a job row's text, with when (ms since the form was sent).
RECORD_JS = """
window.__shown = [];
let started = performance.now();
document.getElementById("signup").addEventListener("submit", () => { started = performance.now(); });
const table = document.getElementById("jobs");
new MutationObserver(() => {
  for (const row of table.rows) {
    const cells = [...row.cells].map((cell) => cell.textContent);
    const last = window.__shown.filter((s) => s.row === row.id).pop();
    if (cells.length === 3 && cells[1] !== "" && (!last || last.cells.join("|") !== cells.join("|"))) {
      window.__shown.push({row: row.id, cells, at: performance.now() - started});
    }
  }
}).observe(table, {subtree: true, childList: true, characterData: true});
"""


@dataclass(frozen=True)
class Shown:
    """One thing a job row showed: when (seconds since the form was sent), its status, its detail."""

    at: float
    kind: str
    status: str
    detail: str


def recorded(driver: WebDriver) -> list[Shown]:
    """Every distinct text the page's job rows showed since :func:`submit_signup`, in order."""
    return [Shown(item["at"] / 1000, item["cells"][0], item["cells"][1], item["cells"][2])
            for item in driver.execute_script("return window.__shown || [];")]


STATES = ("queued", "running", "done")


def in_order(statuses: list[str], order: tuple[str, ...] = STATES) -> bool:
    """True if ``statuses`` (as a row showed them) follow ``order``, some maybe unseen:
    a 150 ms poll can miss a short state, but never shows them out of order."""
    position = 0
    for status in statuses:
        if status not in order[position:]:
            return False
        position = order.index(status, position)
    return True


def plot_shown(shown: list[Shown], *, title: str = ""):
    """Each job row's texts on one time axis: a bar per status, from when the row showed it
    until it showed the next (the last one gets a short stub)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 - only where a figure is wanted

    kinds = list(dict.fromkeys(s.kind for s in shown))
    colors = {"queued": "C7", "running": "C0", "done": "C2", "failed": "C3"}
    end = max((s.at for s in shown), default=0.0)
    fig, ax = plt.subplots(figsize=(7.0, 0.5 * len(kinds) + 1.2), dpi=90)
    for row, kind in enumerate(kinds):
        texts = [s for s in shown if s.kind == kind]
        for this, after in zip(texts, [*texts[1:], None], strict=True):
            until = after.at if after is not None else this.at + 0.08 * (end or 1.0)
            ax.barh(row, until - this.at, left=this.at, color=colors.get(this.status, "C1"), height=0.5)
            ax.annotate(this.status, (this.at, row), xytext=(2, 0), textcoords="offset points",
                        va="center", fontsize=7, color="white" if this.status != "queued" else "black")
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_ylim(len(kinds) - 0.5, -0.5)
    ax.set_xlabel("seconds since the form was sent")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def rows_now(driver: WebDriver) -> dict[str, tuple[str, str]]:
    """What each job row shows now: ``{"welcome email": ("queued", "waiting for a worker")}``."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#jobs tr')].map("
        "(row) => [...row.cells].map((cell) => cell.textContent));")
    return {cells[0]: (cells[1], cells[2]) for cells in rows if len(cells) == 3}


def wait_for_row(driver: WebDriver, kind: str, test: Callable[[str, str], bool], what: str, *,
                 timeout: float = 30.0) -> tuple[str, str]:
    """Wait until the row of ``kind`` shows a (status, detail) that passes ``test``; return it."""
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    def shown(d: WebDriver) -> tuple[str, str] | Literal[False]:
        row = rows_now(d).get(kind)
        return row if row is not None and test(*row) else False

    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        shown, message=f"the {kind} row to show {what} within {timeout:g} s")


def wait_until_finished(driver: WebDriver, *, timeout: float = 30.0) -> dict[str, str]:
    """Wait until both job rows show done or failed (and the avatar has loaded, if done).

    Returns each row's status, with the detail after a failure:
    ``{"welcome email": "done", "avatar": "failed: gave up after 1 attempt(s): ..."}``.
    """
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    def finished(d: WebDriver) -> dict[str, str] | Literal[False]:
        rows = rows_now(d)
        if len(rows) != 2 or any(status not in FINISHED for status, _ in rows.values()):
            return False
        return {kind: status + (f": {detail}" if status == "failed" else "")
                for kind, (status, detail) in rows.items()}

    shown = WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        finished, message=f"both job rows to show done or failed within {timeout:g} s")
    if shown.get("avatar") == "done":
        WebDriverWait(driver, timeout, poll_frequency=0.05).until(
            lambda d: d.execute_script(
                "const i = document.getElementById('avatar-image'); "
                "return i !== null && i.complete && i.naturalWidth > 0;"),
            message=f"the avatar image to load within {timeout:g} s")
    return shown


def sign_up_in_browser(driver: WebDriver, page_url: str, email: str, *,
                       timeout: float = 30.0) -> dict[str, str]:
    """Type ``email`` into the page, submit, wait until both jobs finished.

    Returns what the page shows per job row, e.g. ``{"welcome email": "done"}``.
    """
    submit_signup(driver, page_url, email)
    return wait_until_finished(driver, timeout=timeout)


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
